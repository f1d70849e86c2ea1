//! The tracker: all SLA rules, as pure functions.
//!
//! `Tracker::decide(observation, now)` looks at the current state and returns the events the
//! observation causes; `Tracker::apply(event)` folds an event into the state. The engine decides
//! and applies, then appends the events to the ledger (retrying until it succeeds, see
//! `engine`); a restart applies the whole ledger. No sockets, no clock reads, no database here:
//! `now` is an argument, so every rule is tested with any clock in microseconds.
//!
//! Folders are read independently (inbox and sent are separate IMAP connections), so messages
//! may be observed out of order; the rules are written so the outcome does not depend on it: a
//! reply read before the message it answers waits for it, and a customer message read before the
//! reply that preceded it becomes a next-reply inquiry when that reply is read.
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
pub mod state;
mod threads;

pub use alert::AlertKind;
pub use event::Event;
pub use inquiry::{Inquiry, InquiryState, OpenStatus, SlaStatus};
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
