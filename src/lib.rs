//! slawatch watches a support desk keep its promise: every customer inquiry, by email or phone,
//! answered within 15 minutes.
//!
//! The flow, one module per part (see DESIGN.md):
//!
//! ```text
//! sources ──Observation──▶ tracker ──Event──▶ store (ledger) ──▶ http (API, status page)
//!                                 └──deadlines──▶ scheduler ──Alert──▶ notify
//! ```
//!
//! - [`sources`]: thin I/O shells (IMAP, Maildir) with durable cursors and pure parsers;
//! - [`tracker`]: every SLA rule, pure: `(state, observation, now) -> events`;
//! - [`store`]: the append-only, hash-chained ledger and source cursors;
//! - [`scheduler`]: every future deadline in one ordered set;
//! - [`notify`]: alert delivery;
//! - [`http`]: metrics, health, JSON API;
//! - [`report`]: compliance reports for auditors, derived from the ledger;
//! - [`monitor`]: the monitor's own record (start, stop, heartbeats, source health);
//! - [`engine`]: wires them together and owns the one writer of the ledger;
//! - [`config`]: file + environment → validated [`config::Settings`].

pub mod config;
pub mod daemon;
pub mod domain;
pub mod engine;
pub mod http;
pub mod monitor;
pub mod notify;
pub mod report;
pub mod scheduler;
pub mod sources;
pub mod store;
pub mod telemetry;
#[doc(hidden)]
pub mod testing;
pub mod tracker;
