//! The tracker: all SLA rules, as pure functions.
//!
//! `Tracker::decide(observation, now)` looks at the current state and returns the events the
//! observation causes; `Tracker::apply(event)` folds an event into the state. The engine decides
//! and applies, then appends the events to the ledger (retrying until it succeeds, see
//! `engine`); a restart applies the whole ledger. No sockets, no clock reads, no database here:
//! `now` is an argument, so every rule is tested with any clock in microseconds.
//!
//! **Evidence order** (DESIGN.md): the outcome of every inquiry is a function of the evidence,
//! never of the order in which it is read. Folders are read on separate connections, call logs
//! are written at hangup, a restart re-reads what was not committed; so the rules place each
//! message by its own time, as if everything had been read in this order:
//!
//! 1. by server time (IMAP INTERNALDATE, Maildir delivery, call start);
//! 2. at the same second, a message before anything that references it; then a customer
//!    message before the desk's reply (a customer message and a reply in the same second belong
//!    to the clock the reply answers); then by folder and Message-ID.
//!
//! Evidence read after a decision that it changes does not rewrite the ledger: it appends the
//! correction, and the last word wins.
//! - A response at or before the deadline is met, even if the breach fired before it was read
//!   (`InquiryRevised`, `answered_before_deadline`; the alert is resolved).
//! - A response sent before the recorded one becomes the first response (`earlier_response`).
//! - A customer message delivered before an answer joins the inquiry it answered; one delivered
//!   before an inquiry's first message starts the older clock, and the later inquiry is merged
//!   into it (`InquiryMerged`: state `merged`, `merged_into`).
//! - A customer message is a next reply when the desk answered in its conversation before it
//!   came, whatever was read first: one that opened a first inquiry because the older message
//!   and its reply were read after it becomes a next reply (`InquiryReclassified`).
//! - A phone pickup is a person: with a queue_log, a queue call's pickup is its `CONNECT`, never
//!   the CDR's `answer` (an IVR's `Answer()`), whichever feed is read first (the call sources
//!   decide this; `sources::calls::lines` in the daemon).
//! - A reply read before the message it replies to waits for it (`ReplyUnmatched` with
//!   `unknown_thread`, or `ReplyAwaiting` when it answered an older inquiry meanwhile); a customer
//!   message that refers only to unread messages joins the conversation's root.
//!
//! The scheduler's instants are evidence too: a deadline observed at `now` decides on what was
//! read by then, and later evidence revises it. `order_tests` proves all this over generated
//! desks read in random orders, with the clock advancing and restarts between arrivals.
//!
//! Known limits: a customer message that replies to a desk reply delivered in the same second
//! is placed before it (the second rule); conversations joined only through a message that
//! references nothing but an unread intermediate message (clients that write `In-Reply-To`
//! without `References`) are joined when that message is read, not before; with next replies
//! not tracked (`next_reply = false`), a customer message read before the older message and
//! the reply that make it a next reply keeps the inquiry it opened; without a queue_log, a
//! queue call's pickup is the CDR's `answer`, which is the IVR's when the dialplan answers
//! before `Queue()`.
//!
//! What the rules are (received time, what is an inquiry, threads, what is a response, policy
//! versions) is written in DESIGN.md; each function below names the rule it implements.

mod ack;
pub mod alert;
mod apply;
pub mod classify;
pub mod contacts;
mod email;
pub mod event;
pub mod inquiry;
mod instant;
pub mod language;
pub mod observation;
mod phone;
pub mod policy;
mod revision;
pub mod state;
mod threads;
pub mod working_set;

pub use alert::AlertKind;
pub use event::Event;
pub use inquiry::{Inquiry, InquiryState, OpenStatus, SlaStatus, Taken};
pub use observation::Observation;
pub use state::{Tracker, TrackerRules};

#[cfg(test)]
mod contacts_tests;
#[cfg(test)]
mod order_tests;
#[cfg(test)]
mod phone_tests;
#[cfg(test)]
mod tests;
