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

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus::core::Collector;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::domain::{Channel, Language};
use crate::sources::SourceHealth;
use crate::tracker::event::{ExclusionReason, Outcome, UnmatchedReason};
use crate::tracker::{Event, OpenStatus, Tracker};

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
pub const ALLOWED_LABELS: [&str; 9] = [
    "channel", "language", "source", "reason", "kind", "notifier", "outcome", "state", "result",
];

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

        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(received.clone()),
            Box::new(excluded.clone()),
            Box::new(withheld_calls.clone()),
            Box::new(first_response.clone()),
            Box::new(deadlines.clone()),
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
            render_lock: Mutex::new(()),
        })
    }

    /// Counts one event. Called by the engine for each event after it is appended to the ledger
    /// *and applied* to `tracker`, so the inquiry it concerns is there with its channel, language
    /// and state.
    ///
    /// `slawatch_deadlines_total` counts each inquiry once: `met` at an in-time response;
    /// `missed` at `InquiryBreached`, or at a late `InquiryResponded` only if no breach was
    /// counted before (e.g. a manual ack after the deadline, before the scheduler fired).
    pub fn record(&self, event: &Event, tracker: &Tracker) {
        self.ledger_events.inc();
        match event {
            Event::InquiryOpened(e) => {
                self.received
                    .with_label_values(&[e.channel.as_str(), e.language.as_str()])
                    .inc();
                self.observe_detection(e.received_at, e.first_seen_at);
                if e.call.as_ref().is_some_and(|c| c.withheld) {
                    self.withheld_calls
                        .with_label_values(&[e.language.as_str(), "open"])
                        .inc();
                }
            }
            Event::InquiryExcluded(e) => {
                self.excluded
                    .with_label_values(&[e.channel.as_str(), e.reason.as_str()])
                    .inc();
                if e.reason == ExclusionReason::WithheldNumber {
                    self.withheld_calls
                        .with_label_values(&[e.language.as_str(), "excluded"])
                        .inc();
                }
                self.observe_detection(e.received_at, e.first_seen_at);
            }
            Event::InquiryResponded(e) => {
                let Some(inquiry) = tracker.get(&e.inquiry_id) else {
                    return;
                };
                let labels = [inquiry.channel.as_str(), inquiry.language.as_str()];
                self.first_response
                    .with_label_values(&labels)
                    .observe(e.response_seconds.max(0) as f64);
                let counted_at_breach = inquiry.breached_at.is_some();
                if e.outcome == Outcome::Met || !counted_at_breach {
                    self.deadlines
                        .with_label_values(&[labels[0], labels[1], e.outcome.as_str()])
                        .inc();
                }
            }
            Event::InquiryBreached { inquiry_id, .. } => {
                if let Some(inquiry) = tracker.get(inquiry_id) {
                    self.deadlines
                        .with_label_values(&[
                            inquiry.channel.as_str(),
                            inquiry.language.as_str(),
                            Outcome::Missed.as_str(),
                        ])
                        .inc();
                }
            }
            Event::ReplyUnmatched { reason, .. } => {
                self.replies_unmatched
                    .with_label_values(&[reason.as_str()])
                    .inc();
            }
            Event::PolicyActivated { .. }
            | Event::FollowUpAttached { .. }
            | Event::MessageLinked { .. }
            | Event::InquiryWarned { .. }
            | Event::MonitorStarted { .. }
            | Event::MonitorHeartbeat { .. }
            | Event::MonitorStopped { .. }
            | Event::SourceDown { .. }
            | Event::SourceUp { .. }
            | Event::InquiryRenotified { .. }
            | Event::AlertDelivered { .. }
            | Event::AlertFailed { .. } => {}
        }
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

    /// Sets the gauges that describe the open inquiries at `now`, then encodes every metric in
    /// the text format ([`Metrics::CONTENT_TYPE`]). One pass over the open inquiries.
    pub fn render(&self, tracker: &Tracker, now: DateTime<Utc>) -> Result<String, TelemetryError> {
        let _serial = self
            .render_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);

        let mut open = [[[0i64; OpenStatus::ALL.len()]; Language::ALL.len()]; Channel::ALL.len()];
        let mut oldest: [Option<DateTime<Utc>>; Channel::ALL.len()] = [None; Channel::ALL.len()];
        let mut next: [Option<DateTime<Utc>>; Channel::ALL.len()] = [None; Channel::ALL.len()];
        for inquiry in tracker.open_summaries() {
            let status = inquiry.status_at(now);
            let c = channel_index(inquiry.channel);
            open[c][language_index(inquiry.language)][status_index(status)] += 1;
            if oldest[c].is_none_or(|o| inquiry.received_at < o) {
                oldest[c] = Some(inquiry.received_at);
            }
            if !inquiry.breached && next[c].is_none_or(|n| inquiry.deadline_at < n) {
                next[c] = Some(inquiry.deadline_at);
            }
        }
        for (ci, channel) in Channel::ALL.into_iter().enumerate() {
            let c = channel.as_str();
            for (li, language) in Language::ALL.into_iter().enumerate() {
                for (si, state) in OpenStatus::ALL.into_iter().enumerate() {
                    self.open
                        .with_label_values(&[c, language.as_str(), state.as_str()])
                        .set(open[ci][li][si]);
                }
            }
            let age = oldest[ci].map_or(0.0, |o| seconds(now - o).max(0.0));
            self.oldest_open_age.with_label_values(&[c]).set(age);
            let next_at = next[ci].map_or(0.0, timestamp_seconds);
            self.next_deadline.with_label_values(&[c]).set(next_at);
        }

        Ok(TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }

    /// The registry (for tests and for adding collectors owned elsewhere).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn observe_detection(&self, received_at: DateTime<Utc>, first_seen_at: DateTime<Utc>) {
        self.detection_latency
            .observe(seconds(first_seen_at - received_at).max(0.0));
    }
}

impl SourceHealth for Metrics {
    fn set_up(&self, source: &str, up: bool) {
        self.source_up
            .with_label_values(&[source])
            .set(i64::from(up));
    }

    fn succeeded(&self, source: &str, at: DateTime<Utc>) {
        self.source_last_success
            .with_label_values(&[source])
            .set(timestamp_seconds(at));
    }

    fn error(&self, source: &str, kind: &str) {
        self.source_errors.with_label_values(&[source, kind]).inc();
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
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use chrono::TimeDelta;
    use prometheus::Encoder;
    use prometheus::proto::MetricType;

    use super::*;
    use crate::domain::InquiryId;
    use crate::tracker::event::{InquiryExcluded, InquiryResponded, ResponseKind};

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    use crate::testing::tracker;

    /// Fixture inquiry `n`, seen 2 s after it was received.
    fn opened(n: u64, channel: Channel, language: Language, received_at: DateTime<Utc>) -> Event {
        let mut opened = crate::testing::opened(n, channel, language, received_at);
        opened.first_seen_at = received_at + TimeDelta::seconds(2);
        Event::InquiryOpened(opened)
    }

    fn id_of(event: &Event) -> InquiryId {
        event.inquiry_id().cloned().unwrap_or_default()
    }

    fn responded(id: &InquiryId, after: TimeDelta, outcome: Outcome) -> Event {
        Event::InquiryResponded(Box::new(InquiryResponded {
            inquiry_id: id.clone(),
            at: t0() + after,
            response_seconds: after.num_seconds(),
            kind: ResponseKind::Manual,
            responder: "agent".into(),
            external_id: None,
            outcome,
            via: None,
            note: None,
        }))
    }

    /// Applies then records, as the engine does.
    fn feed(metrics: &Metrics, tracker: &mut Tracker, event: Event) {
        tracker.apply(&event);
        metrics.record(&event, tracker);
    }

    fn value(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let family = metrics
            .registry()
            .gather()
            .into_iter()
            .find(|f| f.name() == name)?;
        let kind = family.get_field_type();
        family
            .get_metric()
            .iter()
            .find(|m| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|m| match kind {
                MetricType::COUNTER => m.get_counter().get_value(),
                MetricType::GAUGE => m.get_gauge().get_value(),
                _ => m.get_histogram().get_sample_count() as f64,
            })
    }

    fn deadlines(metrics: &Metrics, outcome: &str) -> f64 {
        value(
            metrics,
            "slawatch_deadlines_total",
            &[
                ("channel", "email"),
                ("language", "en"),
                ("outcome", outcome),
            ],
        )
        .unwrap_or(-1.0)
    }

    #[test]
    fn every_known_series_exists_at_zero() {
        let metrics = Metrics::new("1.2.3", &["inbox".to_string()]);
        let text = metrics.render(&tracker(), t0()).unwrap_or_default();
        for channel in Channel::ALL {
            for language in Language::ALL {
                let (c, l) = (channel.as_str(), language.as_str());
                assert!(text.contains(&format!(
                    "slawatch_inquiries_received_total{{channel=\"{c}\",language=\"{l}\"}} 0"
                )));
                assert!(text.contains(&format!(
                    "slawatch_first_response_seconds_count{{channel=\"{c}\",language=\"{l}\"}} 0"
                )));
                for outcome in ["met", "missed"] {
                    assert!(text.contains(&format!(
                        "slawatch_deadlines_total{{channel=\"{c}\",language=\"{l}\",outcome=\"{outcome}\"}} 0"
                    )));
                }
                for state in ["ok", "warning", "breached"] {
                    assert!(text.contains(&format!(
                        "slawatch_open_inquiries{{channel=\"{c}\",language=\"{l}\",state=\"{state}\"}} 0"
                    )));
                }
            }
            for reason in ExclusionReason::ALL {
                assert!(text.contains(&format!(
                    "slawatch_inquiries_excluded_total{{channel=\"{}\",reason=\"{}\"}} 0",
                    channel.as_str(),
                    reason.as_str()
                )));
            }
        }
        for kind in SOURCE_ERROR_KINDS {
            assert!(text.contains(&format!(
                "slawatch_source_errors_total{{kind=\"{kind}\",source=\"inbox\"}} 0"
            )));
        }
        assert!(text.contains("slawatch_source_up{source=\"inbox\"} 0"));
        assert!(text.contains(
            "slawatch_alerts_total{kind=\"breach\",notifier=\"log\",result=\"failed\"} 0"
        ));
        assert!(text.contains("slawatch_replies_unmatched_total{reason=\"not_threaded\"} 0"));
        assert!(text.contains("slawatch_build_info{version=\"1.2.3\"} 1"));
        assert!(text.contains("slawatch_ledger_events_total 0"));
        assert!(text.contains("slawatch_detection_latency_seconds_count 0"));
        assert!(text.contains("slawatch_oldest_open_inquiry_age_seconds{channel=\"phone\"} 0"));
        assert!(text.contains("slawatch_next_deadline_timestamp_seconds{channel=\"email\"} 0"));
        #[cfg(target_os = "linux")]
        assert!(text.contains("process_resident_memory_bytes"));
    }

    #[test]
    fn index_helpers_follow_the_all_arrays() {
        for (i, c) in Channel::ALL.into_iter().enumerate() {
            assert_eq!(channel_index(c), i);
        }
        for (i, l) in Language::ALL.into_iter().enumerate() {
            assert_eq!(language_index(l), i);
        }
        for (i, s) in OpenStatus::ALL.into_iter().enumerate() {
            assert_eq!(status_index(s), i);
        }
        assert_eq!(Metrics::CONTENT_TYPE, TextEncoder::new().format_type());
    }

    #[test]
    fn in_time_response_counts_met_once_and_observes_the_histogram() {
        let metrics = Metrics::new("t", &[]);
        let mut tracker = tracker();
        let open = opened(1, Channel::Email, Language::En, t0());
        let id = id_of(&open);
        feed(&metrics, &mut tracker, open);
        feed(
            &metrics,
            &mut tracker,
            responded(&id, TimeDelta::minutes(5), Outcome::Met),
        );
        assert_eq!(deadlines(&metrics, "met"), 1.0);
        assert_eq!(deadlines(&metrics, "missed"), 0.0);
        let received = [("channel", "email"), ("language", "en")];
        assert_eq!(
            value(&metrics, "slawatch_inquiries_received_total", &received),
            Some(1.0)
        );
        assert_eq!(
            value(&metrics, "slawatch_first_response_seconds", &received),
            Some(1.0)
        );
        assert_eq!(
            value(&metrics, "slawatch_ledger_events_total", &[]),
            Some(2.0)
        );
        assert_eq!(
            value(&metrics, "slawatch_detection_latency_seconds", &[]),
            Some(1.0)
        );
    }

    #[test]
    fn breach_counts_missed_and_a_later_response_does_not_count_again() {
        let metrics = Metrics::new("t", &[]);
        let mut tracker = tracker();
        let open = opened(1, Channel::Email, Language::En, t0());
        let id = id_of(&open);
        feed(&metrics, &mut tracker, open);
        let breach = Event::InquiryBreached {
            inquiry_id: id.clone(),
            at: t0() + TimeDelta::minutes(15),
        };
        feed(&metrics, &mut tracker, breach);
        assert_eq!(deadlines(&metrics, "missed"), 1.0);
        feed(
            &metrics,
            &mut tracker,
            responded(&id, TimeDelta::minutes(40), Outcome::Missed),
        );
        assert_eq!(deadlines(&metrics, "missed"), 1.0);
        assert_eq!(deadlines(&metrics, "met"), 0.0);
        // The late answer is still part of the response-time distribution.
        let labels = [("channel", "email"), ("language", "en")];
        assert_eq!(
            value(&metrics, "slawatch_first_response_seconds", &labels),
            Some(1.0)
        );
    }

    #[test]
    fn withheld_callers_are_counted_in_their_own_bucket_tracked_or_excluded() {
        let metrics = Metrics::new("t", &[]);
        let mut tracker = tracker();
        let withheld = |state: &str| {
            value(
                &metrics,
                "slawatch_withheld_calls_total",
                &[("language", "es"), ("state", state)],
            )
        };
        assert_eq!(withheld("open"), Some(0.0));
        assert_eq!(withheld("excluded"), Some(0.0));

        // A call from a known number is not in the bucket; a withheld one is.
        let mut known = opened(1, Channel::Phone, Language::Es, t0());
        if let Event::InquiryOpened(o) = &mut known {
            o.call = Some(crate::tracker::event::CallDetails::default());
        }
        feed(&metrics, &mut tracker, known);
        let mut hidden = opened(2, Channel::Phone, Language::Es, t0());
        if let Event::InquiryOpened(o) = &mut hidden {
            o.call = Some(crate::tracker::event::CallDetails {
                withheld: true,
                ..Default::default()
            });
        }
        feed(&metrics, &mut tracker, hidden);
        assert_eq!(withheld("open"), Some(1.0));

        let excluded = Event::InquiryExcluded(Box::new(InquiryExcluded {
            inquiry_id: InquiryId::derive(Channel::Phone, "call:1767604542.1"),
            channel: Channel::Phone,
            source: "cdr".into(),
            external_id: "call:1767604542.1".into(),
            thread_id: "tel:withheld:1767604542.1".into(),
            digest: None,
            customer: "withheld".into(),
            customer_name: None,
            subject: "Call from a withheld number".into(),
            language: Language::Es,
            received_at: t0(),
            first_seen_at: t0(),
            reason: ExclusionReason::WithheldNumber,
            detail: "withheld number, excluded by configuration".into(),
        }));
        feed(&metrics, &mut tracker, excluded);
        assert_eq!(withheld("excluded"), Some(1.0));
        assert_eq!(withheld("open"), Some(1.0));
    }

    #[test]
    fn late_response_without_a_prior_breach_counts_missed() {
        let metrics = Metrics::new("t", &[]);
        let mut tracker = tracker();
        let open = opened(1, Channel::Email, Language::En, t0());
        let id = id_of(&open);
        feed(&metrics, &mut tracker, open);
        feed(
            &metrics,
            &mut tracker,
            responded(&id, TimeDelta::minutes(20), Outcome::Missed),
        );
        assert_eq!(deadlines(&metrics, "missed"), 1.0);
        assert_eq!(deadlines(&metrics, "met"), 0.0);
    }

    #[test]
    fn exclusions_and_unmatched_replies_are_counted_by_reason_not_as_received() {
        let metrics = Metrics::new("t", &[]);
        let mut tracker = tracker();
        let excluded = Event::InquiryExcluded(Box::new(InquiryExcluded {
            inquiry_id: InquiryId::derive(Channel::Email, "<bounce@x>"),
            channel: Channel::Email,
            source: "inbox".into(),
            external_id: "<bounce@x>".into(),
            thread_id: "<bounce@x>".into(),
            digest: None,
            customer: "mailer-daemon@x".into(),
            customer_name: None,
            subject: "Undelivered".into(),
            language: Language::En,
            received_at: t0(),
            first_seen_at: t0(),
            reason: ExclusionReason::Bounce,
            detail: "MAILER-DAEMON".into(),
        }));
        feed(&metrics, &mut tracker, excluded);
        let unmatched = Event::ReplyUnmatched {
            external_id: "<r@desk>".into(),
            digest: "d".into(),
            source: "inbox".into(),
            at: t0(),
            reason: UnmatchedReason::NotThreaded,
            responder: "support@desk.example".into(),
            references: Vec::new(),
            recipients: Vec::new(),
        };
        feed(&metrics, &mut tracker, unmatched);
        let bounce = [("channel", "email"), ("reason", "bounce")];
        assert_eq!(
            value(&metrics, "slawatch_inquiries_excluded_total", &bounce),
            Some(1.0)
        );
        let received = [("channel", "email"), ("language", "en")];
        assert_eq!(
            value(&metrics, "slawatch_inquiries_received_total", &received),
            Some(0.0)
        );
        let reason = [("reason", "not_threaded")];
        assert_eq!(
            value(&metrics, "slawatch_replies_unmatched_total", &reason),
            Some(1.0)
        );
    }

    #[test]
    fn render_time_gauges_follow_the_clock() {
        let metrics = Metrics::new("t", &[]);
        let mut tracker = tracker();
        feed(
            &metrics,
            &mut tracker,
            opened(1, Channel::Email, Language::Ar, t0()),
        );
        feed(
            &metrics,
            &mut tracker,
            opened(
                2,
                Channel::Email,
                Language::Ar,
                t0() + TimeDelta::minutes(5),
            ),
        );
        let ar = |state| [("channel", "email"), ("language", "ar"), ("state", state)];

        metrics
            .render(&tracker, t0() + TimeDelta::minutes(1))
            .unwrap_or_default();
        assert_eq!(
            value(&metrics, "slawatch_open_inquiries", &ar("ok")),
            Some(2.0)
        );
        let email = [("channel", "email")];
        assert_eq!(
            value(&metrics, "slawatch_oldest_open_inquiry_age_seconds", &email),
            Some(60.0)
        );
        let first_deadline = timestamp_seconds(t0() + TimeDelta::minutes(15));
        assert_eq!(
            value(&metrics, "slawatch_next_deadline_timestamp_seconds", &email),
            Some(first_deadline)
        );

        // 16 minutes later nothing has happened, but the first is overdue and the second warned.
        metrics
            .render(&tracker, t0() + TimeDelta::minutes(16))
            .unwrap_or_default();
        assert_eq!(
            value(&metrics, "slawatch_open_inquiries", &ar("breached")),
            Some(1.0)
        );
        assert_eq!(
            value(&metrics, "slawatch_open_inquiries", &ar("warning")),
            Some(1.0)
        );
        assert_eq!(
            value(&metrics, "slawatch_open_inquiries", &ar("ok")),
            Some(0.0)
        );
        assert_eq!(
            value(&metrics, "slawatch_oldest_open_inquiry_age_seconds", &email),
            Some(960.0)
        );
    }

    #[test]
    fn histogram_has_exact_600_and_900_buckets() {
        let metrics = Metrics::new("t", &[]);
        let text = metrics.render(&tracker(), t0()).unwrap_or_default();
        for le in ["600", "900"] {
            assert!(text.contains(&format!(
                "slawatch_first_response_seconds_bucket{{channel=\"email\",language=\"en\",le=\"{le}\"}} 0"
            )));
        }
    }

    #[test]
    fn no_metric_carries_a_label_outside_the_allowed_set() {
        let metrics = Metrics::new("t", &["inbox".to_string()]);
        metrics.record_alert("warning", "smtp", true);
        metrics.error("inbox", "missing_message_id");
        let mut tracker = tracker();
        feed(
            &metrics,
            &mut tracker,
            opened(1, Channel::Phone, Language::Es, t0()),
        );
        let mut seen = BTreeSet::new();
        for family in metrics.registry().gather() {
            assert!(
                family.name().starts_with("slawatch_") || family.name().starts_with("process_"),
                "{}",
                family.name()
            );
            for m in family.get_metric() {
                for l in m.get_label() {
                    let allowed = ALLOWED_LABELS.contains(&l.name())
                        || (family.name() == "slawatch_build_info" && l.name() == "version");
                    assert!(allowed, "{} has label {}", family.name(), l.name());
                    seen.insert(l.value().to_string());
                }
            }
        }
        // No customer data: the inquiry's address and subject never become label values.
        assert!(
            !seen
                .iter()
                .any(|v| v.contains('@') || v.contains("Question"))
        );
    }

    #[test]
    fn source_health_is_reported() {
        let metrics = Metrics::new("t", &["inbox".to_string()]);
        metrics.set_up("inbox", true);
        metrics.succeeded("inbox", t0());
        metrics.error("inbox", "timeout");
        metrics.error("inbox", "timeout");
        let src = [("source", "inbox")];
        assert_eq!(value(&metrics, "slawatch_source_up", &src), Some(1.0));
        assert_eq!(
            value(
                &metrics,
                "slawatch_source_last_success_timestamp_seconds",
                &src
            ),
            Some(t0().timestamp() as f64)
        );
        let timeout = [("source", "inbox"), ("kind", "timeout")];
        assert_eq!(
            value(&metrics, "slawatch_source_errors_total", &timeout),
            Some(2.0)
        );
    }

    /// CI installs Debian's `prometheus` package; a missing promtool is a failure, not a skip.
    #[test]
    fn promtool_accepts_the_exposition() {
        let metrics = Metrics::new("0.1.0", &["inbox".to_string()]);
        let mut tracker = tracker();
        let open = opened(1, Channel::Email, Language::En, t0());
        let id = id_of(&open);
        feed(&metrics, &mut tracker, open);
        feed(
            &metrics,
            &mut tracker,
            responded(&id, TimeDelta::minutes(3), Outcome::Met),
        );
        metrics.record_alert("warning", "log", true);
        let text = metrics.render(&tracker, t0()).unwrap_or_default();

        let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "/usr/bin/promtool".into());
        let child = std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => panic!(
                "promtool is required for this test (Debian package `prometheus`; set PROMTOOL \
                 to its path): cannot run {promtool}: {e}"
            ),
        };
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(text.as_bytes()).unwrap_or_default();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let output = loop {
            if let Ok(Some(_)) = child.try_wait() {
                break child.wait_with_output();
            }
            assert!(std::time::Instant::now() < deadline, "promtool hung");
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = output.unwrap_or_else(|e| panic!("promtool output: {e}"));
        assert!(
            output.status.success(),
            "promtool check metrics failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
