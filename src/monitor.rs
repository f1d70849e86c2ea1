//! The monitor's own record: proof in the ledger of when slawatch was watching.
//!
//! An auditor must see the monitor's gaps, not only the desk's. This module owns the events
//! that make them provable, all additive to the ledger and ignored by inquiry state:
//!
//! - `MonitorStarted` / `MonitorStopped`, appended by the daemon after the start-up replay and
//!   after a clean shutdown (a start with no stop before it means a crash or a kill);
//! - `MonitorHeartbeat` every [`HEARTBEAT_EVERY`] from a small task, through the engine (the
//!   one writer), so "no heartbeat for an hour" proves the daemon was not running or stuck;
//! - `SourceDown` / `SourceUp` on a source's health *transitions*, recorded by
//!   [`LedgerHealth`], which wraps the metrics' [`SourceHealth`] and forwards every call to it.
//!
//! Reports turn these into coverage gaps (`report::Coverage`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slawatch_core::tracker::Event;
use slawatch_core::tracker::event::MonitorProblem;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::EngineHandle;
use crate::scheduler::Clock;
use crate::telemetry::SourceHealth;

/// A change in what the monitor can see or tell (a source silent or back, a notifier giving up
/// or delivering again): the engine raises or resolves the monitor alert about it, once per
/// episode (`Tracker::raise_monitor_alert`), so a signal sent twice pages once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    pub problem: MonitorProblem,
    /// The source or notifier.
    pub subject: String,
    /// `true`: the problem began (or goes on); `false`: it is over.
    pub failing: bool,
    /// What was seen, for the person paged.
    pub detail: String,
}

/// Where signals go: the engine.
pub type Signals = mpsc::UnboundedSender<Signal>;

/// How often the daemon proves it is alive: short against the 15-minute promise (a gap of two
/// missed beats is visible well within one deadline), long enough to add only 288 rows a day.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(300);

/// A source's last known health.
#[derive(Debug, Default)]
struct Health {
    up: Option<bool>,
    last_error: Option<String>,
}

/// Forwards to the wrapped [`SourceHealth`] (the metrics) and records up/down transitions in
/// the ledger.
pub struct LedgerHealth {
    inner: Arc<dyn SourceHealth>,
    clock: Clock,
    events: mpsc::UnboundedSender<Event>,
    health: Mutex<HashMap<String, Health>>,
}

impl LedgerHealth {
    /// The wrapper, and the stream of transition events it produces (for [`run`]).
    pub fn new(
        inner: Arc<dyn SourceHealth>,
        clock: Clock,
    ) -> (LedgerHealth, mpsc::UnboundedReceiver<Event>) {
        let (events, rx) = mpsc::unbounded_channel();
        (
            LedgerHealth {
                inner,
                clock,
                events,
                health: Mutex::new(HashMap::new()),
            },
            rx,
        )
    }
}

impl SourceHealth for LedgerHealth {
    fn set_up(&self, source: &str, up: bool) {
        self.inner.set_up(source, up);
        let event = {
            let mut all = self.health.lock().unwrap_or_else(|e| e.into_inner());
            let h = all.entry(source.to_string()).or_default();
            let before = h.up.replace(up);
            match (before, up) {
                // Down from the start counts too: the source never came up.
                (Some(true) | None, false) => Some(Event::SourceDown {
                    source: source.to_string(),
                    at: self.clock.now(),
                    error_kind: h.last_error.clone().unwrap_or_else(|| "unknown".into()),
                }),
                (Some(false), true) => Some(Event::SourceUp {
                    source: source.to_string(),
                    at: self.clock.now(),
                }),
                _ => None,
            }
        };
        if let Some(e) = event {
            // Unbounded: a transition is rare and must not be dropped or block a source.
            let _ = self.events.send(e);
        }
    }

    fn succeeded(&self, source: &str, at: chrono::DateTime<chrono::Utc>) {
        self.inner.succeeded(source, at);
    }

    fn error(&self, source: &str, kind: &str) {
        self.inner.error(source, kind);
        let mut all = self.health.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(source.to_string()).or_default().last_error = Some(kind.to_string());
    }
}

/// Sends a heartbeat every [`HEARTBEAT_EVERY`] and every source transition to the engine, until
/// `shutdown`.
pub async fn run(
    engine: EngineHandle,
    clock: Clock,
    mut transitions: mpsc::UnboundedReceiver<Event>,
    shutdown: CancellationToken,
) {
    let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the start itself is recorded as MonitorStarted.
    beat.tick().await;
    loop {
        let event = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(e) = transitions.recv() => e,
            _ = beat.tick() => Event::MonitorHeartbeat { at: clock.now() },
        };
        if !engine.record(event).await {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl SourceHealth for Seen {
        fn set_up(&self, source: &str, up: bool) {
            self.0.lock().unwrap().push(format!("{source} up={up}"));
        }
        fn succeeded(&self, _: &str, _: chrono::DateTime<chrono::Utc>) {}
        fn error(&self, source: &str, kind: &str) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{source} error={kind}"));
        }
    }

    #[test]
    fn only_transitions_are_recorded_and_every_call_is_forwarded() {
        let inner = Arc::new(Seen::default());
        let at = chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
            .unwrap()
            .to_utc();
        let (health, mut rx) = LedgerHealth::new(inner.clone(), Clock::anchored(at));
        health.set_up("imap", true);
        health.set_up("imap", true);
        health.error("imap", "timeout");
        health.set_up("imap", false);
        health.set_up("imap", false);
        health.set_up("imap", true);
        health.set_up("maildir", false);
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e.kind().to_string() + " " + &serde_json::to_string(&e).unwrap());
        }
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(events[0].starts_with("source_down") && events[0].contains("\"timeout\""));
        assert!(events[1].starts_with("source_up") && events[1].contains("imap"));
        assert!(events[2].starts_with("source_down") && events[2].contains("\"unknown\""));
        assert_eq!(inner.0.lock().unwrap().len(), 7);
    }
}
