//! slawatch, the daemon: watches a support desk keep its promise (every customer inquiry, by
//! email or phone, answered within 15 minutes) with the I/O around the pure core.
//!
//! The rules that decide the numbers live in the core crate, `slawatch_core` (`core/`): domain
//! types, observations, events, the tracker's decide/apply, policy, classification, language,
//! phone numbers, alert kinds. This crate owns everything that touches the world, one module per
//! part of the flow (see DESIGN.md):
//!
//! ```text
//! sources ──Observation──▶ slawatch_core::tracker ──Event──▶ store (ledger) ──▶ http, report
//!                                 └──deadlines──▶ scheduler ──Alert──▶ notify
//! ```
//!
//! - [`sources`]: thin I/O shells (IMAP, Maildir, call logs) with durable cursors;
//! - [`store`]: the append-only, hash-chained ledger and source cursors;
//! - [`scheduler`]: every future deadline in one ordered set;
//! - [`notify`]: alert delivery;
//! - [`http`]: health, JSON API, status page, pushed calls;
//! - [`telemetry`]: every metric, and how sources report their health;
//! - [`report`]: compliance reports for auditors, derived from the ledger;
//! - [`monitor`]: the monitor's own record (start, stop, heartbeats, source health);
//! - [`replica`]: an active/standby pair on one PostgreSQL ledger (the standby's following,
//!   the active's lease);
//! - [`service`]: what systemd hears (readiness, status, watchdog);
//! - [`engine`]: wires them together and owns the one writer of the ledger;
//! - [`oauth2`]: access tokens for mailboxes that take no password (Microsoft 365, Google);
//! - [`tls`]: whom every outgoing TLS connection trusts (CA files, pinned certificates);
//! - [`config`]: file + environment → validated [`config::Settings`] (and the core's settings).
//!
//! It depends on the core, never the other way: an SLA rule written here would escape the
//! core's guarantee (no I/O, no clock), so the rules stay in `slawatch_core` and this crate only
//! feeds them observations with `now` and acts on the events they return.

pub mod config;
pub mod daemon;
pub mod engine;
pub mod http;
pub mod memory;
pub mod monitor;
pub mod notify;
pub mod oauth2;
pub mod replica;
pub mod report;
pub mod scheduler;
pub mod service;
pub mod sources;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod working_set;
