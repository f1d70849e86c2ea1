//! The metrics' tests: every series at zero, counting from events, render-time gauges, label
//! rules, and promtool on the exposition.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::TimeDelta;
use prometheus::proto::MetricType;
use prometheus::{Encoder, TextEncoder};
use slawatch_core::domain::InquiryId;
use slawatch_core::tracker::event::{
    ExclusionReason, InquiryExcluded, InquiryResponded, Outcome, ResponseKind,
};
use slawatch_core::tracker::{Event, Tracker};

use super::*;

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

use slawatch_core::testing::tracker;

/// Fixture inquiry `n`, seen 2 s after it was received.
fn opened(n: u64, channel: Channel, language: Language, received_at: DateTime<Utc>) -> Event {
    let mut opened = slawatch_core::testing::opened(n, channel, language, received_at);
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
    assert!(
        text.contains(
            "slawatch_alerts_total{kind=\"breach\",notifier=\"log\",result=\"failed\"} 0"
        )
    );
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
fn a_breach_answered_in_time_after_all_counts_a_revision_not_a_second_deadline() {
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
    // The reply, delivered at minute 12, is read after the breach fired.
    feed(
        &metrics,
        &mut tracker,
        responded(&id, TimeDelta::minutes(12), Outcome::Met),
    );
    let revised = Event::InquiryRevised {
        inquiry_id: id.clone(),
        at: t0() + TimeDelta::minutes(16),
        reason: slawatch_core::tracker::event::RevisionReason::AnsweredBeforeDeadline,
        from: Outcome::Missed,
        to: Outcome::Met,
        evidence: None,
        response: None,
    };
    feed(&metrics, &mut tracker, revised);
    assert_eq!(deadlines(&metrics, "missed"), 1.0);
    assert_eq!(deadlines(&metrics, "met"), 0.0);
    let labels = [
        ("channel", "email"),
        ("language", "en"),
        ("from", "missed"),
        ("to", "met"),
    ];
    assert_eq!(
        value(&metrics, "slawatch_deadline_revisions_total", &labels),
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
        o.call = Some(slawatch_core::tracker::event::CallDetails::default());
    }
    feed(&metrics, &mut tracker, known);
    let mut hidden = opened(2, Channel::Phone, Language::Es, t0());
    if let Event::InquiryOpened(o) = &mut hidden {
        o.call = Some(slawatch_core::tracker::event::CallDetails {
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

#[test]
fn contradictory_evidence_is_counted_with_the_sources_errors_by_kind() {
    let metrics = Metrics::new("t", &["inbox".to_string()]);
    let mut tracker = tracker();
    let flagged = Event::EvidenceContradicted {
        source: "inbox".into(),
        external_id: "<r@desk.example>".into(),
        kind: slawatch_core::tracker::event::Contradiction::ReplyBeforeMessage,
        detail: "reply before message".into(),
        at: t0(),
    };
    feed(&metrics, &mut tracker, flagged);
    let labels = [("source", "inbox"), ("kind", "reply_before_message")];
    assert_eq!(
        value(&metrics, "slawatch_source_errors_total", &labels),
        Some(1.0)
    );
}
