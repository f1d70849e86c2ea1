//! Whether the ledger takes writes: what `/readyz`, the wallboard and the monitor's own alert
//! about the ledger read.
//!
//! The engine is the one writer. It reports every write's outcome here; a write that fails is
//! retried with backoff while alerts keep going out and decided events wait in memory (see
//! `engine`). A write that neither succeeds nor fails for [`STALL`] counts as not writable too
//! (a hung disk, an NFS stall), so a stuck ledger shows even when nothing errors.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// How long the ledger may refuse or stall writes before it counts as not writable: past a
/// transient lock (SQLite's `busy_timeout` is 5 s), well within a warning's lead time. Alerts do
/// not wait for it either way; this decides what `/readyz` says and when someone is paged.
pub const STALL: Duration = Duration::from_secs(5);

/// The ledger's write state at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteStatus {
    /// Since when writes fail (or the write in flight stalls); `None` while they succeed.
    pub failing_since: Option<DateTime<Utc>>,
    /// The last write error (`None` once a write succeeds again).
    pub last_error: Option<String>,
    /// Failed write attempts since the start.
    pub failures: u64,
    /// Decided events waiting in memory for the ledger (in flight included).
    pub backlog_events: usize,
    /// The last successful write.
    pub last_write: Option<DateTime<Utc>>,
}

impl WriteStatus {
    /// Whether the ledger has refused or stalled writes for at least [`STALL`] at `now`.
    pub fn is_stuck(&self, now: DateTime<Utc>) -> bool {
        self.failing_since.is_some_and(|since| {
            now - since >= chrono::Duration::from_std(STALL).unwrap_or_default()
        })
    }

    /// One line for people: `writable` or `NOT WRITABLE since … (error), N events waiting`.
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        match self.failing_since {
            Some(since) if self.is_stuck(now) => format!(
                "ledger NOT WRITABLE since {} ({} s): {}; {} events waiting in memory, alerts still go out",
                since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                (now - since).num_seconds(),
                self.last_error
                    .as_deref()
                    .unwrap_or("the write in flight does not finish"),
                self.backlog_events
            ),
            _ => "ledger writable".to_string(),
        }
    }
}

/// The shared write state (updated by the engine, read by HTTP handlers).
#[derive(Debug, Default)]
pub struct WriteState(Mutex<WriteStatus>);

impl WriteState {
    pub fn snapshot(&self) -> WriteStatus {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn update(&self, change: impl FnOnce(&mut WriteStatus)) {
        change(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }
}
