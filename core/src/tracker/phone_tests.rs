//! Rule tests for the phone channel: call facts in, events out, any clock.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::event::{Event, ExclusionReason, Outcome, ResponseKind, UnmatchedReason};
use super::inquiry::{InquiryState, SlaStatus};
use super::observation::{Call, CallDirection, CallIgnore, CallOutcome, Observation};
use super::policy::{Policy, PolicySet};
use super::state::{Tracker, TrackerRules};
use crate::desk::DeskSettings;
use crate::domain::{Channel, InquiryId, Language};
use crate::phone_number::{normalize, region};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn tracker() -> Tracker {
    Tracker::new(Arc::new(TrackerRules {
        desk: DeskSettings {
            support_addresses: vec!["support@example.com".into()],
            internal_domains: vec!["example.com".into()],
            ignore_senders: vec![],
            ignore_subjects: vec![],
            auto_ack_subjects: vec![],
            default_language: Language::En,
            time_zone: chrono_tz::UTC,
        },
        policies: PolicySet::single(Policy::default()),
    }))
}

/// An inbound call `id` from `number` that reached the PBX at `at`.
fn inbound(id: &str, number: &str, at: &str) -> Call {
    Call {
        source: "pbx".into(),
        call_id: id.into(),
        record_id: format!("{id}-1"),
        direction: CallDirection::Inbound,
        number: normalize(number, region("ES")),
        name: Some("Ana Ruiz".into()),
        line: Some("soporte-es".into()),
        language: Some(Language::Es),
        started_at: t(at),
        queue_entered_at: None,
        answered_at: None,
        ended_at: None,
        agent: None,
        outcome: CallOutcome::InProgress,
        seen_at: t(at) + Duration::seconds(2),
        ignore: None,
    }
}

fn answered(mut c: Call, record: &str, at: &str, agent: &str) -> Observation {
    c.record_id = record.into();
    c.answered_at = Some(t(at));
    c.agent = Some(agent.into());
    c.outcome = CallOutcome::Answered;
    Observation::CallAnswered(c)
}

fn ended(mut c: Call, record: &str, outcome: CallOutcome) -> Observation {
    c.record_id = record.into();
    c.outcome = outcome;
    Observation::CallEnded(c)
}

/// A callback from extension 2001 to `number`, connected at `at` (or not).
fn callback(id: &str, number: &str, at: &str, connected: bool) -> Observation {
    let mut c = inbound(id, number, at);
    c.direction = CallDirection::Outbound;
    c.agent = Some("PJSIP/2001".into());
    if connected {
        c.answered_at = Some(t(at) + Duration::seconds(5));
        c.outcome = CallOutcome::Answered;
        Observation::CallAnswered(c)
    } else {
        c.outcome = CallOutcome::NoAnswer;
        Observation::CallEnded(c)
    }
}

fn id(call: &str) -> InquiryId {
    InquiryId::derive(Channel::Phone, &format!("call:{call}"))
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::kind).collect()
}

fn now() -> DateTime<Utc> {
    t("2026-11-24T12:00:00Z")
}

#[test]
fn an_answered_call_is_an_inquiry_met_at_pickup() {
    let mut tr = tracker();
    let c = inbound("1767604542.1187", "+34600123456", "2026-01-05T09:15:42Z");
    let events = tr
        .observe(
            &answered(c, "r2", "2026-01-05T09:16:30Z", "Agent Luis"),
            now(),
        )
        .unwrap();
    assert_eq!(
        kinds(&events),
        ["policy_activated", "inquiry_opened", "inquiry_responded"]
    );
    let i = tr.get(&id("1767604542.1187")).unwrap();
    assert_eq!(i.channel, Channel::Phone);
    assert_eq!(&*i.customer, "+34600123456");
    assert_eq!(i.language, Language::Es);
    assert_eq!(i.received_at, t("2026-01-05T09:15:42Z"));
    assert_eq!(i.response_seconds, Some(48));
    assert_eq!(i.response_kind, Some(ResponseKind::Phone));
    assert_eq!(i.responder.as_deref(), Some("Agent Luis"));
    assert_eq!((i.state, i.sla), (InquiryState::Responded, SlaStatus::Met));
}

#[test]
fn several_records_of_one_call_are_one_inquiry() {
    let mut tr = tracker();
    let c = inbound("L1", "600123456", "2026-01-05T09:15:42Z");
    // Queue member attempts first (hangup order), then the member who picked up.
    tr.observe(&ended(c.clone(), "m1", CallOutcome::NoAnswer), now())
        .unwrap();
    tr.observe(&ended(c.clone(), "m2", CallOutcome::Busy), now())
        .unwrap();
    let events = tr
        .observe(
            &answered(c.clone(), "m3", "2026-01-05T09:17:00Z", "2002"),
            now(),
        )
        .unwrap();
    assert_eq!(kinds(&events), ["inquiry_responded"]);
    assert_eq!(tr.len(), 1);
    // Read again (restart, second feed): nothing more.
    assert!(
        tr.observe(&answered(c, "m3", "2026-01-05T09:17:00Z", "2002"), now())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn voicemail_stays_open_until_a_connected_callback() {
    let mut tr = tracker();
    let c = inbound("L1", "0034600123456", "2026-01-05T09:00:00Z");
    tr.observe(&ended(c, "v", CallOutcome::Voicemail), now())
        .unwrap();
    assert_eq!(tr.get(&id("L1")).unwrap().state, InquiryState::Open);

    // A callback that rang out answers nothing.
    let events = tr
        .observe(
            &callback("O1", "600123456", "2026-01-05T09:05:00Z", false),
            now(),
        )
        .unwrap();
    assert!(matches!(
        &events[..],
        [Event::ReplyUnmatched {
            reason: UnmatchedReason::CallbackNotConnected,
            ..
        }]
    ));
    assert_eq!(tr.get(&id("L1")).unwrap().state, InquiryState::Open);

    // The agent dials it national, with the number as typed: it connects.
    let events = tr
        .observe(
            &callback("O2", "600 12 34 56", "2026-01-05T09:10:00Z", true),
            now(),
        )
        .unwrap();
    assert_eq!(kinds(&events), ["message_linked", "inquiry_responded"]);
    let i = tr.get(&id("L1")).unwrap();
    assert_eq!(i.responded_at, Some(t("2026-01-05T09:10:05Z")));
    assert_eq!(i.sla, SlaStatus::Met);
    assert_eq!(i.responder.as_deref(), Some("PJSIP/2001"));
}

#[test]
fn an_outbound_call_to_a_number_with_nothing_open_is_unrelated() {
    let mut tr = tracker();
    let events = tr
        .observe(
            &callback("O1", "+34911222333", "2026-01-05T09:10:00Z", true),
            now(),
        )
        .unwrap();
    assert!(matches!(
        &events[..],
        [Event::ReplyUnmatched {
            reason: UnmatchedReason::CallbackUnrelated,
            ..
        }]
    ));
    assert!(tr.is_empty());
    // Counted once.
    assert!(
        tr.observe(
            &callback("O1", "+34911222333", "2026-01-05T09:10:00Z", true),
            now()
        )
        .unwrap()
        .is_empty()
    );
}

#[test]
fn repeat_missed_calls_merge_and_a_later_answered_call_answers() {
    let mut tr = tracker();
    tr.observe(
        &ended(
            inbound("L1", "+34600123456", "2026-01-05T09:00:00Z"),
            "a",
            CallOutcome::Abandoned,
        ),
        now(),
    )
    .unwrap();
    let events = tr
        .observe(
            &ended(
                inbound("L2", "34600123456", "2026-01-05T09:04:00Z"),
                "b",
                CallOutcome::Abandoned,
            ),
            now(),
        )
        .unwrap();
    assert_eq!(kinds(&events), ["follow_up_attached"]);
    let events = tr
        .observe(
            &answered(
                inbound("L3", "600123456", "2026-01-05T09:20:00Z"),
                "c",
                "2026-01-05T09:21:00Z",
                "2003",
            ),
            now(),
        )
        .unwrap();
    assert_eq!(kinds(&events), ["follow_up_attached", "inquiry_responded"]);
    let i = tr.get(&id("L1")).unwrap();
    assert_eq!(i.follow_ups, 2);
    // Clock from the oldest call: 21 minutes, missed.
    assert_eq!(i.response_seconds, Some(21 * 60));
    assert_eq!(i.sla, SlaStatus::Missed);
    assert_eq!(tr.len(), 1);
}

#[test]
fn a_call_placed_after_the_callback_but_read_before_it_opens_again() {
    let mut tr = tracker();
    tr.observe(
        &ended(
            inbound("L1", "+34600123456", "2026-01-05T09:00:00Z"),
            "a",
            CallOutcome::Voicemail,
        ),
        now(),
    )
    .unwrap();
    // Second missed call at 09:20 is written (hangup) before the 09:10 callback's record.
    tr.observe(
        &ended(
            inbound("L2", "+34600123456", "2026-01-05T09:20:00Z"),
            "b",
            CallOutcome::NoAnswer,
        ),
        now(),
    )
    .unwrap();
    let events = tr
        .observe(
            &callback("O1", "+34600123456", "2026-01-05T09:10:00Z", true),
            now(),
        )
        .unwrap();
    assert_eq!(
        kinds(&events),
        ["message_linked", "inquiry_responded", "inquiry_opened"]
    );
    let second = tr.get(&id("L2")).unwrap();
    assert_eq!(second.state, InquiryState::Open);
    assert_eq!(second.received_at, t("2026-01-05T09:20:00Z"));
}

#[test]
fn a_callback_before_the_call_arrived_answers_nothing() {
    let mut tr = tracker();
    tr.observe(
        &ended(
            inbound("L1", "+34600123456", "2026-01-05T09:00:00Z"),
            "a",
            CallOutcome::NoAnswer,
        ),
        now(),
    )
    .unwrap();
    let events = tr
        .observe(
            &callback("O1", "+34600123456", "2026-01-05T08:50:00Z", true),
            now(),
        )
        .unwrap();
    assert_eq!(kinds(&events), ["reply_unmatched"]);
    assert_eq!(tr.get(&id("L1")).unwrap().state, InquiryState::Open);
}

#[test]
fn withheld_callers_get_an_inquiry_each_and_cannot_be_called_back() {
    let mut tr = tracker();
    for (call, at) in [
        ("W1", "2026-01-05T09:00:00Z"),
        ("W2", "2026-01-05T09:01:00Z"),
    ] {
        let events = tr
            .observe(
                &ended(inbound(call, "anonymous", at), "x", CallOutcome::Abandoned),
                now(),
            )
            .unwrap();
        assert!(kinds(&events).contains(&"inquiry_opened"));
    }
    assert_eq!(tr.len(), 2);
    let w = tr.get(&id("W1")).unwrap();
    assert_eq!(&*w.customer, "withheld");
    assert!(w.subject.contains("withheld"), "{}", w.subject);
    // Flagged as data, for the API, the metrics' bucket and reports.
    assert!(w.call.as_ref().is_some_and(|c| c.withheld), "{:?}", w.call);
    let events = tr
        .observe(
            &callback("O1", "anonymous", "2026-01-05T09:05:00Z", true),
            now(),
        )
        .unwrap();
    assert_eq!(kinds(&events), ["reply_unmatched"]);
}

#[test]
fn ignored_calls_are_excluded_with_their_reason() {
    let mut tr = tracker();
    for (call, ignore, reason) in [
        ("I1", CallIgnore::Internal, ExclusionReason::InternalCall),
        (
            "I2",
            CallIgnore::NotSupportLine,
            ExclusionReason::NotSupportLine,
        ),
        ("I3", CallIgnore::Withheld, ExclusionReason::WithheldNumber),
    ] {
        let mut c = inbound(call, "2003", "2026-01-05T09:00:00Z");
        c.ignore = Some(ignore);
        let events = tr.observe(&Observation::CallStarted(c), now()).unwrap();
        assert_eq!(kinds(&events), ["inquiry_excluded"]);
        let i = tr.get(&id(call)).unwrap();
        assert_eq!(i.excluded_reason, Some(reason));
    }
}

#[test]
fn an_unparseable_number_is_kept_raw_and_flagged() {
    let mut tr = tracker();
    let c = inbound("U1", "sip-trunk-7", "2026-01-05T09:00:00Z");
    tr.observe(&Observation::CallStarted(c), now()).unwrap();
    let i = tr.get(&id("U1")).unwrap();
    assert_eq!(&*i.customer, "raw:sip-trunk-7");
    assert!(i.subject.contains("unparseable"), "{}", i.subject);
}

#[test]
fn a_pickup_before_the_deadline_read_after_the_breach_is_met_and_revises_it() {
    let mut tr = tracker();
    let c = inbound("L1", "+34600123456", "2026-01-05T09:00:00Z");
    tr.observe(&Observation::CallStarted(c.clone()), now())
        .unwrap();
    tr.observe(
        &Observation::DeadlineReached {
            inquiry_id: id("L1"),
            stage: super::observation::Stage::Breach,
        },
        t("2026-01-05T09:15:00Z"),
    )
    .unwrap();
    let events = tr
        .observe(&answered(c, "r", "2026-01-05T09:14:00Z", "2001"), now())
        .unwrap();
    let Event::InquiryResponded(r) = &events[0] else {
        panic!("{events:?}")
    };
    // The pickup was in time; its record was written at hangup, after the breach fired. The
    // evidence wins: met, and the breach is revised on the record.
    assert_eq!(r.outcome, Outcome::Met);
    let Event::InquiryRevised {
        reason, from, to, ..
    } = &events[1]
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        *reason,
        super::event::RevisionReason::AnsweredBeforeDeadline
    );
    assert_eq!((*from, *to), (Outcome::Missed, Outcome::Met));
    assert_eq!(tr.get(&id("L1")).unwrap().sla, SlaStatus::Met);
}

#[test]
fn a_pickup_after_the_deadline_stays_missed() {
    let mut tr = tracker();
    let c = inbound("L2", "+34600123457", "2026-01-05T09:00:00Z");
    tr.observe(&Observation::CallStarted(c.clone()), now())
        .unwrap();
    tr.observe(
        &Observation::DeadlineReached {
            inquiry_id: id("L2"),
            stage: super::observation::Stage::Breach,
        },
        t("2026-01-05T09:15:00Z"),
    )
    .unwrap();
    let events = tr
        .observe(&answered(c, "r", "2026-01-05T09:16:00Z", "2001"), now())
        .unwrap();
    assert_eq!(kinds_of(&events), ["inquiry_responded"]);
    let Event::InquiryResponded(r) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(r.outcome, Outcome::Missed);
}

#[test]
fn the_queue_entry_and_line_are_kept_as_data_on_the_inquiry_and_its_event() {
    let mut tr = tracker();
    let mut c = inbound("Q1", "+34600123456", "2026-01-05T09:00:00Z");
    c.queue_entered_at = Some(t("2026-01-05T09:00:40Z"));
    let events = tr.observe(&Observation::CallStarted(c), now()).unwrap();
    let Some(Event::InquiryOpened(opened)) = events.last() else {
        panic!("{events:?}");
    };
    let details = opened.call.clone().expect("call details on the event");
    assert_eq!(details.queue_entered_at, Some(t("2026-01-05T09:00:40Z")));
    assert_eq!(details.line.as_deref(), Some("soporte-es"));
    assert!(!details.withheld);
    let inquiry = tr.get(&id("Q1")).unwrap();
    assert_eq!(inquiry.call.as_deref(), Some(&details));
    // Received time is still the arrival at the phone system, not the queue entry.
    assert_eq!(inquiry.received_at, t("2026-01-05T09:00:00Z"));
    let json = serde_json::to_value(inquiry).unwrap();
    assert_eq!(json["call"]["queue_entered_at"], "2026-01-05T09:00:40Z");
}

#[test]
fn events_written_before_call_details_existed_still_read() {
    let mut tr = tracker();
    let c = inbound("Q2", "+34600123456", "2026-01-05T09:00:00Z");
    let events = tr.observe(&Observation::CallStarted(c), now()).unwrap();
    let mut json = serde_json::to_value(events.last().unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("call");
    let old: Event = serde_json::from_value(json).unwrap();
    let Event::InquiryOpened(old) = old else {
        panic!("{old:?}");
    };
    assert_eq!(old.call, None);
}

fn kinds_of(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::kind).collect()
}

#[test]
fn a_call_picked_up_before_it_started_is_flagged_and_answers_nothing() {
    let mut tr = tracker();
    let c = inbound("B1", "+34600123458", "2026-01-05T09:00:00Z");
    let events = tr
        .observe(&answered(c, "r", "2026-01-05T08:59:00Z", "2001"), now())
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::EvidenceContradicted { kind, .. }
            if *kind == super::event::Contradiction::AnsweredBeforeStart)),
        "{events:?}"
    );
    assert_eq!(tr.get(&id("B1")).unwrap().state, InquiryState::Open);
}

/// A call record looks for the same call read from another feed only when the received-time
/// index lists a phone inquiry of another source: kept by `apply`, so a replay has it too.
#[test]
fn calls_of_other_sources_are_counted_as_they_are_listed_and_merged() {
    let mut tr = tracker();
    assert!(!tr.lists_calls_from_other_sources("pbx"));
    let mut events = Vec::new();
    let later = inbound("1767600300.2", "600123456", "2026-01-05T08:05:00Z");
    events.extend(tr.observe(&Observation::CallStarted(later), now()).unwrap());
    assert!(!tr.lists_calls_from_other_sources("pbx"));
    assert!(tr.lists_calls_from_other_sources("queue_log"));
    // The same number five minutes earlier, read from another feed: it takes the later clock
    // over, and the later inquiry (merged) is no longer listed.
    let mut earlier = inbound("1767600000.1", "600123456", "2026-01-05T08:00:00Z");
    earlier.source = "queue_log".into();
    let merged = tr
        .observe(&Observation::CallStarted(earlier), now())
        .unwrap();
    assert!(
        kinds(&merged).contains(&"inquiry_merged"),
        "{:?}",
        kinds(&merged)
    );
    events.extend(merged);
    assert!(tr.lists_calls_from_other_sources("pbx"));
    assert!(!tr.lists_calls_from_other_sources("queue_log"));
    let mut replayed = tracker();
    for e in &events {
        replayed.apply(e);
    }
    assert!(replayed.lists_calls_from_other_sources("pbx"));
    assert!(!replayed.lists_calls_from_other_sources("queue_log"));
}
