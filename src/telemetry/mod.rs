//! Telemetry: every `slawatch_*` metric handle, in one place.
//!
//! This module owns the Prometheus registry and the label order of every metric, so no other
//! module calls `with_label_values` (whose arity mistakes panic) or invents a label. Other parts
//! report what happened through one method per fact: the engine calls [`Metrics::record`] for
//! each event it has applied, sources report through [`SourceHealth`], notifiers through
//! [`Metrics::record_alert`], and the HTTP layer calls [`Metrics::render`].
//!
//! Rules kept here (DESIGN.md "Metrics", prometheus.io naming and instrumentation guides):
//! - base units, `_total` counters, `_timestamp_seconds` points in time;
//! - labels only from `channel, language, source, reason, kind, notifier, outcome, state,
//!   result`, and only with bounded values: never an inquiry id, a customer, a sender or an
//!   agent;
//! - every series we know may exist is created at zero at start-up, so `rate()`, ratios and
//!   `absent()` behave from the first scrape;
//! - gauges that describe *now* (open inquiries, oldest age, next deadline) are computed from the
//!   tracker when `/metrics` is rendered, so an age keeps growing while nothing happens and the
//!   gauges never drift from the state;
//! - an own [`Registry`], not the global one, so tests do not share state.

mod record;
mod render;
mod source_health;

pub use source_health::SourceHealth;

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus::core::Collector;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use slawatch_core::domain::{Channel, Language};
use slawatch_core::tracker::OpenStatus;
use slawatch_core::tracker::event::{ExclusionReason, Outcome, UnmatchedReason};

/// Buckets of `slawatch_first_response_seconds`.
///
/// 600 (the warning offset) and 900 (the 15-minute promise) must be exact bounds: a classic
/// histogram cannot interpolate, so "share answered within 900 s" is only computable from a
/// `le="900"` bucket. 3600 is four times the target (Apdex "tolerated"); the tail up to 4 h
/// shows how late the late ones were.
pub const FIRST_RESPONSE_BUCKETS: [f64; 10] = [
    60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

/// Buckets of `slawatch_detection_latency_seconds` (received → first seen by slawatch).
///
/// IMAP IDLE and a Maildir scan see mail within a second or a few; polling takes up to its
/// interval; an outage or a backfill takes minutes to hours. Anything over 1 h lands in `+Inf`.
pub const DETECTION_LATENCY_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 3600.0,
];

/// Source error kinds created at zero for every source. Other kinds (such as parse problem
/// codes) appear when first counted.
pub const SOURCE_ERROR_KINDS: [&str; 6] = ["connect", "tls", "auth", "timeout", "protocol", "io"];

/// Values of `slawatch_withheld_calls_total{state}`: the configuration (`withheld = "track"` or
/// `"exclude"` on a call-log source) opens an inquiry for such a call or excludes it.
pub const WITHHELD_CALL_STATES: [&str; 2] = ["open", "excluded"];

/// Alert kinds, the values of `slawatch_alerts_total{kind}`.
pub const ALERT_KINDS: [&str; 4] = ["warning", "breach", "renotify", "resolved"];

/// Notifiers whose alert series are created at zero (more appear when first used).
pub const DEFAULT_NOTIFIERS: [&str; 1] = ["log"];

/// The labels any `slawatch_*` metric may carry (DESIGN.md).
/// `from` and `to` (of `slawatch_deadline_revisions_total`) take only `met`, `missed` and
/// `merged`.
pub const ALLOWED_LABELS: [&str; 11] = [
    "channel", "language", "source", "reason", "kind", "notifier", "outcome", "state", "result",
    "from", "to",
];

/// The revisions of a counted deadline that can happen (`from`, `to`): a breach the evidence
/// shows was answered in time, and a counted inquiry merged into an older clock.
pub const DEADLINE_REVISIONS: [(&str, &str); 3] =
    [("missed", "met"), ("met", "merged"), ("missed", "merged")];

const UNMATCHED_REASONS: [UnmatchedReason; 5] = [
    UnmatchedReason::NotThreaded,
    UnmatchedReason::UnknownThread,
    UnmatchedReason::NotFromSupport,
    UnmatchedReason::CallbackUnrelated,
    UnmatchedReason::CallbackNotConnected,
];

/// Why metrics could not be built or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("metrics registry: {0}")]
    Prometheus(#[from] prometheus::Error),
}

/// Every `slawatch_*` handle, registered in an own registry.
pub struct Metrics {
    registry: Registry,
    received: IntCounterVec,
    excluded: IntCounterVec,
    withheld_calls: IntCounterVec,
    first_response: HistogramVec,
    deadlines: IntCounterVec,
    deadline_revisions: IntCounterVec,
    open: IntGaugeVec,
    oldest_open_age: GaugeVec,
    next_deadline: GaugeVec,
    alerts: IntCounterVec,
    replies_unmatched: IntCounterVec,
    source_up: IntGaugeVec,
    source_last_success: GaugeVec,
    source_errors: IntCounterVec,
    detection_latency: Histogram,
    ledger_events: IntCounter,
    call_joins_ambiguous: IntCounter,
    ledger_write_failures: IntCounter,
    ledger_writable: IntGauge,
    ledger_backlog: IntGauge,
    clock_steps: IntCounter,
    clock_offset: Gauge,
    monitor_alerts: IntGaugeVec,
    /// Serialises renders: the render-time gauges are set and gathered as one step, so two
    /// concurrent scrapes cannot interleave their values.
    render_lock: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// The `Content-Type` of [`Metrics::render`]'s output (`text/plain; version=0.0.4`).
    pub const CONTENT_TYPE: &'static str = prometheus::TEXT_FORMAT;

    /// Builds the registry with every known series at zero. `sources` are the configured source
    /// names.
    pub fn new(version: &str, sources: &[String]) -> Metrics {
        // Registration fails only on duplicate or malformed names, which are fixed here and
        // covered by the tests below.
        Metrics::try_new(version, sources).expect("slawatch metric definitions are valid")
    }

    /// Like [`Metrics::new`], returning registration errors.
    pub fn try_new(version: &str, sources: &[String]) -> Result<Metrics, TelemetryError> {
        let registry = Registry::new();

        let received = IntCounterVec::new(
            Opts::new(
                "slawatch_inquiries_received_total",
                "Inquiries opened (excluded messages are not counted here).",
            ),
            &["channel", "language"],
        )?;
        let excluded = IntCounterVec::new(
            Opts::new(
                "slawatch_inquiries_excluded_total",
                "Inbound messages that are not inquiries, by exclusion reason.",
            ),
            &["channel", "reason"],
        )?;
        let withheld_calls = IntCounterVec::new(
            Opts::new(
                "slawatch_withheld_calls_total",
                "Inbound calls from withheld numbers (nobody can call back), by what the \
                 configuration made of them: state=\"open\" opened an inquiry of its own, \
                 state=\"excluded\" was excluded.",
            ),
            &["language", "state"],
        )?;
        let first_response = HistogramVec::new(
            HistogramOpts::new(
                "slawatch_first_response_seconds",
                "Time from receipt to first response of answered inquiries.",
            )
            .buckets(FIRST_RESPONSE_BUCKETS.to_vec()),
            &["channel", "language"],
        )?;
        let deadlines = IntCounterVec::new(
            Opts::new(
                "slawatch_deadlines_total",
                "Inquiries counted once against their deadline: met when answered in time, \
                 missed the instant the deadline passes.",
            ),
            &["channel", "language", "outcome"],
        )?;
        let deadline_revisions = IntCounterVec::new(
            Opts::new(
                "slawatch_deadline_revisions_total",
                "Deadlines already counted in slawatch_deadlines_total whose outcome later \
                 evidence changed (from, to): a breach answered in time after all (missed → met), \
                 an inquiry merged into an older clock (→ merged).",
            ),
            &["channel", "language", "from", "to"],
        )?;
        let open = IntGaugeVec::new(
            Opts::new(
                "slawatch_open_inquiries",
                "Open inquiries by state (ok, warning, breached).",
            ),
            &["channel", "language", "state"],
        )?;
        let oldest_open_age = GaugeVec::new(
            Opts::new(
                "slawatch_oldest_open_inquiry_age_seconds",
                "Age of the oldest open inquiry (0 when none is open).",
            ),
            &["channel"],
        )?;
        let next_deadline = GaugeVec::new(
            Opts::new(
                "slawatch_next_deadline_timestamp_seconds",
                "Earliest deadline of an open inquiry not yet counted as breached \
                 (0 when there is none).",
            ),
            &["channel"],
        )?;
        let alerts = IntCounterVec::new(
            Opts::new(
                "slawatch_alerts_total",
                "Alert deliveries by kind, notifier and result.",
            ),
            &["kind", "notifier", "result"],
        )?;
        let replies_unmatched = IntCounterVec::new(
            Opts::new(
                "slawatch_replies_unmatched_total",
                "Messages from the desk that answered no inquiry, by reason.",
            ),
            &["reason"],
        )?;
        let source_up = IntGaugeVec::new(
            Opts::new(
                "slawatch_source_up",
                "1 when the source reaches its server or folder, else 0.",
            ),
            &["source"],
        )?;
        let source_last_success = GaugeVec::new(
            Opts::new(
                "slawatch_source_last_success_timestamp_seconds",
                "When the source last completed a sync round (0 = never).",
            ),
            &["source"],
        )?;
        let source_errors = IntCounterVec::new(
            Opts::new(
                "slawatch_source_errors_total",
                "Source errors and message parse problems, by kind.",
            ),
            &["source", "kind"],
        )?;
        let detection_latency = Histogram::with_opts(
            HistogramOpts::new(
                "slawatch_detection_latency_seconds",
                "Time from the server's receipt of a message to slawatch first seeing it.",
            )
            .buckets(DETECTION_LATENCY_BUCKETS.to_vec()),
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "slawatch_build_info",
                "Always 1; the version is in the label.",
            ),
            &["version"],
        )?;
        let ledger_events = IntCounter::new(
            "slawatch_ledger_events_total",
            "Events appended to the ledger by this process.",
        )?;

        let call_joins_ambiguous = IntCounter::new(
            "slawatch_call_joins_ambiguous_total",
            "CDR rows without uniqueid that matched several queue_log calls (not merged, reported).",
        )?;

        let ledger_write_failures = IntCounter::new(
            "slawatch_ledger_write_failures_total",
            "Ledger writes that failed (each retried until it succeeds; alerts do not wait).",
        )?;
        let ledger_writable = IntGauge::new(
            "slawatch_ledger_writable",
            "1 while the ledger takes writes, 0 once it has refused or stalled them for 5 s.",
        )?;
        let ledger_backlog = IntGauge::new(
            "slawatch_ledger_backlog_events",
            "Decided events waiting in memory for the ledger (written in order once it takes them).",
        )?;
        let clock_steps = IntCounter::new(
            "slawatch_clock_steps_total",
            "Wall-clock steps of more than 2 s seen while running (deadlines run on the monotonic clock).",
        )?;
        let clock_offset = Gauge::new(
            "slawatch_clock_offset_seconds",
            "The wall clock minus slawatch's own (monotonic) clock: how far the wall clock stepped since the start.",
        )?;
        let monitor_alerts = IntGaugeVec::new(
            Opts::new(
                "slawatch_monitor_alerts_active",
                "The monitor's own alerts active (it cannot see or tell), by kind.",
            ),
            &["kind"],
        )?;

        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(ledger_write_failures.clone()),
            Box::new(ledger_writable.clone()),
            Box::new(ledger_backlog.clone()),
            Box::new(clock_steps.clone()),
            Box::new(clock_offset.clone()),
            Box::new(monitor_alerts.clone()),
            Box::new(call_joins_ambiguous.clone()),
            Box::new(received.clone()),
            Box::new(excluded.clone()),
            Box::new(withheld_calls.clone()),
            Box::new(first_response.clone()),
            Box::new(deadlines.clone()),
            Box::new(deadline_revisions.clone()),
            Box::new(open.clone()),
            Box::new(oldest_open_age.clone()),
            Box::new(next_deadline.clone()),
            Box::new(alerts.clone()),
            Box::new(replies_unmatched.clone()),
            Box::new(source_up.clone()),
            Box::new(source_last_success.clone()),
            Box::new(source_errors.clone()),
            Box::new(detection_latency.clone()),
            Box::new(build_info.clone()),
            Box::new(ledger_events.clone()),
        ];
        for c in collectors {
            registry.register(c)?;
        }
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        build_info.with_label_values(&[version]).set(1);
        for language in Language::ALL {
            for state in WITHHELD_CALL_STATES {
                withheld_calls.with_label_values(&[language.as_str(), state]);
            }
        }
        for channel in Channel::ALL {
            let c = channel.as_str();
            for language in Language::ALL {
                let l = language.as_str();
                received.with_label_values(&[c, l]);
                first_response.with_label_values(&[c, l]);
                for outcome in Outcome::ALL {
                    deadlines.with_label_values(&[c, l, outcome.as_str()]);
                }
                for (from, to) in DEADLINE_REVISIONS {
                    deadline_revisions.with_label_values(&[c, l, from, to]);
                }
                for state in OpenStatus::ALL {
                    open.with_label_values(&[c, l, state.as_str()]);
                }
            }
            for reason in ExclusionReason::ALL {
                excluded.with_label_values(&[c, reason.as_str()]);
            }
            oldest_open_age.with_label_values(&[c]);
            next_deadline.with_label_values(&[c]);
        }
        for reason in UNMATCHED_REASONS {
            replies_unmatched.with_label_values(&[reason.as_str()]);
        }
        for kind in ALERT_KINDS {
            for notifier in DEFAULT_NOTIFIERS {
                for result in ["sent", "failed"] {
                    alerts.with_label_values(&[kind, notifier, result]);
                }
            }
        }
        ledger_writable.set(1);
        for problem in slawatch_core::tracker::event::MonitorProblem::ALL {
            monitor_alerts.with_label_values(&[problem.as_str()]);
        }
        for source in sources {
            source_up.with_label_values(&[source.as_str()]);
            source_last_success.with_label_values(&[source.as_str()]);
            for kind in SOURCE_ERROR_KINDS {
                source_errors.with_label_values(&[source.as_str(), kind]);
            }
        }

        Ok(Metrics {
            registry,
            received,
            excluded,
            withheld_calls,
            first_response,
            deadlines,
            deadline_revisions,
            open,
            oldest_open_age,
            next_deadline,
            alerts,
            replies_unmatched,
            source_up,
            source_last_success,
            source_errors,
            detection_latency,
            ledger_events,
            call_joins_ambiguous,
            ledger_write_failures,
            ledger_writable,
            ledger_backlog,
            clock_steps,
            clock_offset,
            monitor_alerts,
            render_lock: Mutex::new(()),
        })
    }

    /// Registers a collector owned by another part (notifier health) in this registry, so it is
    /// rendered with the rest.
    pub fn register(&self, collector: Box<dyn Collector>) -> Result<(), TelemetryError> {
        Ok(self.registry.register(collector)?)
    }
    /// Counts one alert delivery attempt. `kind` is one of [`ALERT_KINDS`]; `notifier` is the
    /// configured notifier's name (`log`, `smtp`, …), never an address.
    pub fn record_alert(&self, kind: &str, notifier: &str, sent: bool) {
        let result = if sent { "sent" } else { "failed" };
        self.alerts
            .with_label_values(&[kind, notifier, result])
            .inc();
    }
    /// Counts a CDR row without uniqueid that matched several calls of another feed.
    pub fn record_ambiguous_call_join(&self) {
        self.call_joins_ambiguous.inc();
    }
    /// A ledger write's outcome; `stuck` once it has refused or stalled writes for
    /// [`crate::store::health::STALL`]; `backlog` events wait in memory.
    pub fn record_ledger_write(&self, failed: bool, stuck: bool, backlog: usize) {
        if failed {
            self.ledger_write_failures.inc();
        }
        self.ledger_writable.set(i64::from(!stuck));
        self.ledger_backlog.set(backlog as i64);
    }
    /// A wall-clock step seen (`counted`), and the wall clock's offset from slawatch's clock.
    pub fn record_clock(&self, offset_seconds: f64, counted: bool) {
        if counted {
            self.clock_steps.inc();
        }
        self.clock_offset.set(offset_seconds);
    }
    /// The wall clock's last offset from slawatch's clock, in seconds.
    pub fn clock_offset(&self) -> f64 {
        self.clock_offset.get()
    }
    /// The registry (for tests and for adding collectors owned elsewhere).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

fn seconds(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

fn timestamp_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

fn channel_index(c: Channel) -> usize {
    match c {
        Channel::Email => 0,
        Channel::Phone => 1,
    }
}

fn language_index(l: Language) -> usize {
    match l {
        Language::En => 0,
        Language::Es => 1,
        Language::Ar => 2,
    }
}

fn status_index(s: OpenStatus) -> usize {
    match s {
        OpenStatus::Ok => 0,
        OpenStatus::Warning => 1,
        OpenStatus::Breached => 2,
    }
}

#[cfg(test)]
mod tests;
