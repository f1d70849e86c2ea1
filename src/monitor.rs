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
    /// The last successful check, on slawatch's clock.
    last_success: Option<chrono::DateTime<chrono::Utc>>,
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
        let mut all = self.health.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(source.to_string()).or_default().last_success = Some(self.clock.now());
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

impl LedgerHealth {
    /// Whether `source` has gone without a successful check, and without a committed batch
    /// (`progress`: a backfill in progress), for longer than `limit` at `now` (counted from
    /// `started` before the first): `Some(detail)` for the person paged.
    fn silence(
        &self,
        source: &str,
        limit: Duration,
        progress: Option<chrono::DateTime<chrono::Utc>>,
        started: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<String> {
        let all = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let h = all.get(source);
        let last = match (h.and_then(|h| h.last_success), progress) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let since = last.unwrap_or(started);
        let limit = chrono::Duration::from_std(limit).unwrap_or(chrono::Duration::MAX);
        if now - since <= limit {
            return None;
        }
        let silent = (now - since).num_seconds();
        let span = if silent < 120 {
            format!("{silent} s")
        } else {
            format!("{} min", silent / 60)
        };
        let what = match last {
            Some(_) => format!("nothing read and no successful check for {span}"),
            None => format!("nothing read and no successful check since the start {span} ago"),
        };
        let state = match h.and_then(|h| h.up) {
            Some(false) => "down",
            Some(true) => "connected but not completing a check",
            None => "not connected yet",
        };
        let error = h
            .and_then(|h| h.last_error.clone())
            .map(|e| format!(", last error: {e}"))
            .unwrap_or_default();
        Some(format!("{what}; {state}{error}"))
    }
}

/// How often [`watch_sources`] looks: a silent source is paged within this of its limit.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Signals each source going silent past its `silent_after` (no successful poll, IDLE round or
/// file check, and no batch committed) and coming back, until `shutdown`. `limits` are
/// `(source, silent_after)`.
pub async fn watch_sources(
    health: Arc<LedgerHealth>,
    shared: Arc<crate::engine::Shared>,
    limits: Vec<(String, Duration)>,
    clock: Clock,
    signals: Signals,
    shutdown: CancellationToken,
) {
    let started = clock.now();
    // The verdict last signalled per source (`None`: none yet; the engine resolves an alert
    // left active from before a restart on the first `false`).
    let mut signalled: HashMap<String, bool> = HashMap::new();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = clock.now();
        for (source, limit) in &limits {
            let progress = shared
                .progress
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(source)
                .copied();
            let silence = health.silence(source, *limit, progress, started, now);
            let ok_once = progress.is_some()
                || health
                    .health
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(source)
                    .is_some_and(|h| h.last_success.is_some());
            let failing = silence.is_some();
            // Good news only once there is some: a source that never checked yet is not "back".
            if (!failing && !ok_once) || signalled.get(source) == Some(&failing) {
                continue;
            }
            signalled.insert(source.clone(), failing);
            let sent = signals.send(Signal {
                problem: MonitorProblem::SourceSilent,
                subject: source.clone(),
                failing,
                detail: silence.unwrap_or_default(),
            });
            if sent.is_err() {
                return;
            }
        }
    }
}

/// The dead-man's switch for what the daemon cannot report itself (its process or machine
/// dying): requests `settings.url` every `settings.every` while it runs, so a
/// healthchecks-style service pages when the requests stop. Failures are logged (the switch's
/// own service pages if they last), never retried in between.
pub async fn heartbeat(settings: crate::config::HeartbeatSettings, shutdown: CancellationToken) {
    let client = match crate::tls::http_client(settings.timeout, &crate::tls::TlsTrust::default()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Cannot build the heartbeat's HTTP client; no heartbeat is sent.");
            return;
        }
    };
    let mut tick = tokio::time::interval(settings.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let url = settings.url.expose();
        let request = match settings.method {
            crate::config::HeartbeatMethod::Get => client.get(url),
            crate::config::HeartbeatMethod::Post => client
                .post(url)
                .header("content-type", "text/plain")
                .body(format!("slawatch {} alive", env!("CARGO_PKG_VERSION"))),
        };
        let result = match request.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("answered {}", r.status())),
            Err(e) => Err(e.without_url().to_string()),
        };
        match (&result, failing) {
            (Err(e), false) => {
                tracing::warn!(error = %e, "Heartbeat not accepted; the dead-man's switch will page if this lasts.")
            }
            (Ok(()), true) => tracing::info!("Heartbeat accepted again."),
            _ => {}
        }
        failing = result.is_err();
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

    #[test]
    fn a_source_is_silent_past_its_limit_without_a_check_or_a_committed_batch() {
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-03-01T09:00:00Z")
            .unwrap()
            .to_utc();
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        let (health, _rx) = LedgerHealth::new(Arc::new(Seen::default()), Clock::anchored(t0));
        let limit = Duration::from_secs(60);
        // Never checked since the start: silent once the limit has passed.
        assert_eq!(health.silence("imap", limit, None, t0, at(60)), None);
        let detail = health.silence("imap", limit, None, t0, at(61)).unwrap();
        assert!(detail.contains("since the start 61 s ago"), "{detail}");
        assert!(detail.contains("not connected yet"), "{detail}");
        // A backfill committing batches is not silent, though no round completed yet.
        assert_eq!(
            health.silence("imap", limit, Some(at(50)), t0, at(100)),
            None
        );
        // Down, with its last error.
        health.error("imap", "auth");
        health.set_up("imap", false);
        let detail = health
            .silence("imap", limit, Some(at(50)), t0, at(111))
            .unwrap();
        assert!(
            detail.contains("no successful check for 61 s; down, last error: auth"),
            "{detail}"
        );
        assert!(
            detail.starts_with("nothing read and no successful check"),
            "{detail}"
        );
    }
}
