//! slawatch's pure core: what an inquiry is and every rule that decides its numbers.
//!
//! Owns the domain types ([`domain`]), who the desk is ([`desk`]), the parsed forms of what the
//! sources read ([`mail`] for messages, [`phone_number`] for caller numbers), the one
//! [`tracker::Observation`] in and the [`tracker::Event`]s out, and the tracker's rules:
//! classification, threads, language, policy and calendars, phone and cross-channel answers,
//! the alert stages. `(state, observation, now) -> events`, with `now` an argument.
//!
//! It must never import an async runtime, a database, a mail or HTTP client or server, or a
//! logging backend (no tokio, sqlx, lettre, axum, reqwest, async-imap, tracing-subscriber), and
//! never read a clock, a file or a socket: the compiler keeps these rules pure because the crate
//! cannot reach anything else, and `.ci/run` checks its dependency tree against an allow-list.
//! The daemon crate (`slawatch`) depends on this one, never the other way.

pub mod desk;
pub mod domain;
pub mod mail;
pub mod phone_number;
#[doc(hidden)]
pub mod testing;
pub mod tracker;
