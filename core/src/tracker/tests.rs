//! Rule tests for the tracker: plain values in, events out, any clock.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::event::{
    Event, ExclusionReason, InquiryKind, LinkRole, Outcome, ResponseKind, UnmatchedReason,
};
use super::inquiry::{InquiryState, SlaStatus};
use super::observation::{AckVia, Address, Mail, ManualAck, Observation, Stage};
use super::policy::{Policy, PolicySet};
use super::state::{Rejected, Tracker, TrackerRules};
use crate::desk::DeskSettings;
use crate::domain::{Channel, InquiryId};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn desk() -> DeskSettings {
    DeskSettings {
        auto_ack_subjects: vec!["auto:".into()],
        time_zone: chrono_tz::Europe::Madrid,
        ..DeskSettings::with_address("support@example.com")
    }
}

fn tracker_with(policy: Policy) -> Tracker {
    Tracker::new(Arc::new(TrackerRules {
        desk: desk(),
        policies: PolicySet::single(policy),
    }))
}

fn tracker() -> Tracker {
    tracker_with(Policy::default())
}

fn addr(email: &str) -> Address {
    Address {
        name: None,
        email: email.into(),
    }
}

/// A customer message delivered at `at`.
fn customer(id: &str, at: &str) -> Mail {
    Mail {
        source: "imap".into(),
        folder: "INBOX".into(),
        message_id: format!("<{id}>"),
        digest: format!("digest-{id}"),
        delivered_at: t(at),
        seen_at: t(at) + Duration::seconds(1),
        from: Some(Address {
            name: Some("Ana Ruiz".into()),
            email: "ana@customer.test".into(),
        }),
        to: vec![addr("support@example.com")],
        subject: format!("Question {id}"),
        text_sample: "I need help with my invoice, it shows the wrong amount for November.".into(),
        ..Mail::default()
    }
}

/// The desk's reply sent at `at`, threaded to `parent`.
fn reply(id: &str, parent: &str, at: &str) -> Mail {
    Mail {
        source: "imap".into(),
        folder: "Sent".into(),
        message_id: format!("<{id}>"),
        digest: format!("digest-{id}"),
        delivered_at: t(at),
        seen_at: t(at),
        from: Some(addr("support@example.com")),
        to: vec![addr("ana@customer.test")],
        subject: "Re: Question".into(),
        in_reply_to: vec![format!("<{parent}>")],
        references: vec![format!("<{parent}>")],
        ..Mail::default()
    }
}

fn received(m: Mail) -> Observation {
    Observation::MessageReceived(m)
}

fn sent(m: Mail) -> Observation {
    Observation::MessageSent(m)
}

fn id_of(message: &str) -> InquiryId {
    InquiryId::derive(Channel::Email, &format!("<{message}>"))
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::kind).collect()
}

#[test]
fn a_customer_message_opens_an_inquiry_timed_from_server_delivery() {
    let mut tr = tracker();
    let mut m = customer("m1", "2026-11-24T10:00:00Z");
    m.date_header = Some(t("2026-11-24T09:20:00Z")); // the sender's clock is 40 minutes off
    let events = tr.observe(&received(m), t("2026-11-24T10:00:01Z")).unwrap();
    assert_eq!(kinds(&events), ["policy_activated", "inquiry_opened"]);
    let Event::InquiryOpened(open) = &events[1] else {
        panic!()
    };
    assert_eq!(open.received_at, t("2026-11-24T10:00:00Z"));
    assert_eq!(open.deadline_at, t("2026-11-24T10:15:00Z"));
    assert_eq!(open.warn_at, vec![t("2026-11-24T10:10:00Z")]);
    assert_eq!(open.date_header, Some(t("2026-11-24T09:20:00Z")));
    assert_eq!(open.policy, Policy::default().version());
    assert_eq!(open.kind, InquiryKind::First);
    let i = tr.get(&id_of("m1")).unwrap();
    assert_eq!((i.state, i.sla), (InquiryState::Open, SlaStatus::Pending));

    // The policy is recorded once, not per inquiry.
    let events = tr
        .observe(
            &received(customer("m2", "2026-11-24T10:01:00Z")),
            t("2026-11-24T10:01:01Z"),
        )
        .unwrap();
    assert_eq!(kinds(&events), ["inquiry_opened"]);
}

#[test]
fn the_same_message_read_twice_is_counted_once() {
    let mut tr = tracker();
    let m = customer("m1", "2026-11-24T10:00:00Z");
    tr.observe(&received(m.clone()), t("2026-11-24T10:00:01Z"))
        .unwrap();
    let mut again = m;
    again.folder = "INBOX".into();
    again.seen_at = t("2026-11-24T11:00:00Z"); // e.g. re-fetched after a UIDVALIDITY change
    assert!(
        tr.observe(&received(again), t("2026-11-24T11:00:00Z"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(tr.len(), 1);
}

#[test]
fn a_reused_message_id_on_different_bytes_is_a_second_inquiry() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("dup", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    let mut other = customer("dup", "2026-11-24T10:05:00Z");
    other.digest = "digest-other".into();
    other.from = Some(addr("someone.else@customer2.test"));
    let events = tr
        .observe(&received(other), t("2026-11-24T10:05:01Z"))
        .unwrap();
    // Kept under a disambiguated id, never dropped.
    assert_eq!(kinds(&events), ["inquiry_opened"]);
    let Event::InquiryOpened(open) = &events[0] else {
        panic!()
    };
    assert!(
        open.external_id.starts_with("<dup>#"),
        "{}",
        open.external_id
    );
    assert_eq!(open.customer, "someone.else@customer2.test");
    assert_eq!(tr.len(), 2);
}

#[test]
fn a_follow_up_before_any_reply_keeps_the_oldest_clock() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    let mut second = customer("m2", "2026-11-24T10:08:00Z");
    second.in_reply_to = vec!["<m1>".into()];
    let events = tr
        .observe(&received(second), t("2026-11-24T10:08:01Z"))
        .unwrap();
    assert_eq!(kinds(&events), ["follow_up_attached"]);
    let i = tr.get(&id_of("m1")).unwrap();
    assert_eq!(i.deadline_at, Some(t("2026-11-24T10:15:00Z")));
    assert_eq!(i.follow_ups, 1);
    assert_eq!(tr.len(), 1);
}

#[test]
fn a_threaded_reply_from_the_desk_in_time_is_met() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    let events = tr
        .observe(
            &sent(reply("r1", "m1", "2026-11-24T10:12:30Z")),
            t("2026-11-24T10:12:31Z"),
        )
        .unwrap();
    assert_eq!(kinds(&events), ["message_linked", "inquiry_responded"]);
    let i = tr.get(&id_of("m1")).unwrap();
    assert_eq!(i.state, InquiryState::Responded);
    assert_eq!(i.sla, SlaStatus::Met);
    assert_eq!(i.response_seconds, Some(750));
    assert_eq!(i.response_kind, Some(ResponseKind::Email));
    assert_eq!(i.responder.as_deref(), Some("support@example.com"));
}

#[test]
fn a_reply_threaded_only_through_references_to_a_follow_up_answers() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    let mut follow = customer("m2", "2026-11-24T10:03:00Z");
    follow.references = vec!["<m1>".into()];
    tr.observe(&received(follow), t("2026-11-24T10:03:01Z"))
        .unwrap();
    let mut r = reply("r1", "m2", "2026-11-24T10:05:00Z");
    r.in_reply_to.clear();
    r.references = vec!["<unknown-older>".into(), "<m2>".into()];
    tr.observe(&sent(r), t("2026-11-24T10:05:01Z")).unwrap();
    assert_eq!(tr.get(&id_of("m1")).unwrap().sla, SlaStatus::Met);
    assert_eq!(tr.get(&id_of("m1")).unwrap().response_seconds, Some(300));
}

#[test]
fn a_late_reply_is_missed_and_counted_at_the_breach_not_again() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    let breach = Observation::DeadlineReached {
        inquiry_id: id_of("m1"),
        stage: Stage::Breach,
    };
    let events = tr.observe(&breach, t("2026-11-24T10:15:00Z")).unwrap();
    assert_eq!(kinds(&events), ["inquiry_breached"]);
    let Event::InquiryBreached { at, .. } = &events[0] else {
        panic!()
    };
    assert_eq!(*at, t("2026-11-24T10:15:00Z"));
    assert_eq!(tr.get(&id_of("m1")).unwrap().sla, SlaStatus::Missed);

    let events = tr
        .observe(
            &sent(reply("r1", "m1", "2026-11-24T10:40:00Z")),
            t("2026-11-24T10:40:01Z"),
        )
        .unwrap();
    let Event::InquiryResponded(r) = &events[1] else {
        panic!()
    };
    assert_eq!(r.outcome, Outcome::Missed);
    assert_eq!(r.response_seconds, 2400);
    let i = tr.get(&id_of("m1")).unwrap();
    assert_eq!(
        (i.state, i.sla),
        (InquiryState::Responded, SlaStatus::Missed)
    );
}

#[test]
fn a_late_reply_read_before_the_scheduler_fired_is_still_missed() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    let events = tr
        .observe(
            &sent(reply("r1", "m1", "2026-11-24T10:15:01Z")),
            t("2026-11-24T10:15:02Z"),
        )
        .unwrap();
    let Event::InquiryResponded(r) = &events[1] else {
        panic!()
    };
    assert_eq!(r.outcome, Outcome::Missed);
}

#[test]
fn the_desks_auto_acknowledgement_never_stops_the_clock() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    let mut ack = reply("ack1", "m1", "2026-11-24T10:00:05Z");
    ack.signals.auto_submitted = Some("auto-replied".into());
    let events = tr.observe(&sent(ack), t("2026-11-24T10:00:06Z")).unwrap();
    assert_eq!(kinds(&events), ["message_linked"]);
    let Event::MessageLinked { role, .. } = &events[0] else {
        panic!()
    };
    assert_eq!(*role, LinkRole::AutoAcknowledgement);
    assert_eq!(tr.get(&id_of("m1")).unwrap().state, InquiryState::Open);
    // …and a customer answer to the auto-ack is still the same inquiry, not a next reply.
    let mut again = customer("m2", "2026-11-24T10:02:00Z");
    again.in_reply_to = vec!["<ack1>".into()];
    assert_eq!(
        kinds(
            &tr.observe(&received(again), t("2026-11-24T10:02:01Z"))
                .unwrap()
        ),
        ["follow_up_attached"]
    );
}

#[test]
fn a_forward_only_to_colleagues_is_not_a_response() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    let mut fwd = reply("f1", "m1", "2026-11-24T10:03:00Z");
    fwd.to = vec![addr("billing@example.com")];
    let events = tr.observe(&sent(fwd), t("2026-11-24T10:03:01Z")).unwrap();
    let Event::MessageLinked { role, .. } = &events[0] else {
        panic!()
    };
    assert_eq!(*role, LinkRole::InternalForward);
    assert_eq!(tr.get(&id_of("m1")).unwrap().state, InquiryState::Open);
}

#[test]
fn a_reply_without_thread_headers_answers_nothing_and_is_counted() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    let mut r = reply("r1", "m1", "2026-11-24T10:03:00Z");
    r.in_reply_to.clear();
    r.references.clear();
    let events = tr.observe(&sent(r), t("2026-11-24T10:03:01Z")).unwrap();
    assert!(matches!(
        events[..],
        [Event::ReplyUnmatched {
            reason: UnmatchedReason::NotThreaded,
            ..
        }]
    ));
    assert_eq!(tr.get(&id_of("m1")).unwrap().state, InquiryState::Open);
}

#[test]
fn mail_in_sent_from_a_non_support_address_answers_nothing() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    let mut r = reply("r1", "m1", "2026-11-24T10:03:00Z");
    r.from = Some(addr("intern@gmail.test"));
    let events = tr.observe(&sent(r), t("2026-11-24T10:03:01Z")).unwrap();
    assert!(matches!(
        events[..],
        [Event::ReplyUnmatched {
            reason: UnmatchedReason::NotFromSupport,
            ..
        }]
    ));
    assert_eq!(tr.get(&id_of("m1")).unwrap().state, InquiryState::Open);
}

#[test]
fn a_reply_read_before_the_message_it_answers_still_answers_it() {
    let mut tr = tracker();
    // The Sent folder was read first (e.g. a quick reply, or backfill order).
    let events = tr
        .observe(
            &sent(reply("r1", "m1", "2026-11-24T10:04:00Z")),
            t("2026-11-24T10:04:01Z"),
        )
        .unwrap();
    assert!(matches!(
        events[..],
        [Event::ReplyUnmatched {
            reason: UnmatchedReason::UnknownThread,
            ..
        }]
    ));
    let events = tr
        .observe(
            &received(customer("m1", "2026-11-24T10:00:00Z")),
            t("2026-11-24T10:04:02Z"),
        )
        .unwrap();
    assert_eq!(
        kinds(&events),
        ["policy_activated", "inquiry_opened", "inquiry_responded"]
    );
    let i = tr.get(&id_of("m1")).unwrap();
    assert_eq!((i.sla, i.response_seconds), (SlaStatus::Met, Some(240)));
}

#[test]
fn a_customer_message_after_the_reply_opens_a_next_reply_inquiry() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    tr.observe(
        &sent(reply("r1", "m1", "2026-11-24T10:05:00Z")),
        t("2026-11-24T10:05:01Z"),
    )
    .unwrap();
    let mut next = customer("m2", "2026-11-24T11:00:00Z");
    next.in_reply_to = vec!["<r1>".into()];
    let events = tr
        .observe(&received(next), t("2026-11-24T11:00:01Z"))
        .unwrap();
    let Event::InquiryOpened(open) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(open.kind, InquiryKind::NextReply);
    assert_eq!(open.thread_id, "<m1>");
    assert_eq!(open.deadline_at, t("2026-11-24T11:15:00Z"));
}

#[test]
fn next_reply_tracking_can_be_switched_off_by_policy() {
    let policy = Policy {
        next_reply: false,
        ..Policy::default()
    };
    let mut tr = tracker_with(policy);
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    tr.observe(
        &sent(reply("r1", "m1", "2026-11-24T10:05:00Z")),
        t("2026-11-24T10:05:01Z"),
    )
    .unwrap();
    let mut next = customer("m2", "2026-11-24T11:00:00Z");
    next.in_reply_to = vec!["<r1>".into()];
    let events = tr
        .observe(&received(next), t("2026-11-24T11:00:01Z"))
        .unwrap();
    assert!(matches!(
        events[..],
        [Event::MessageLinked {
            role: LinkRole::CustomerMessage,
            ..
        }]
    ));
    assert_eq!(tr.len(), 1);
}

#[test]
fn automatic_mail_is_excluded_with_its_reason_and_never_scheduled() {
    let mut tr = tracker();
    let mut m = customer("ooo", "2026-11-24T10:00:00Z");
    m.signals.auto_submitted = Some("auto-replied".into());
    let events = tr.observe(&received(m), t("2026-11-24T10:00:01Z")).unwrap();
    let Event::InquiryExcluded(e) = &events[0] else {
        panic!()
    };
    assert_eq!(e.reason, ExclusionReason::AutoSubmitted);
    assert!(e.detail.contains("auto-replied"));
    let i = tr.get(&id_of("ooo")).unwrap();
    assert_eq!(i.state, InquiryState::Excluded);
    assert_eq!(i.deadline_at, None);
    let breach = Observation::DeadlineReached {
        inquiry_id: id_of("ooo"),
        stage: Stage::Breach,
    };
    assert!(
        tr.observe(&breach, t("2026-11-24T12:00:00Z"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn an_excluded_message_says_sla_excluded_in_the_api_as_in_the_reports() {
    let mut tr = tracker();
    let mut m = customer("bounce", "2026-11-24T10:00:00Z");
    m.signals.auto_submitted = Some("auto-replied".into());
    tr.observe(&received(m), t("2026-11-24T10:00:01Z")).unwrap();
    let i = tr.get(&id_of("bounce")).unwrap();
    assert_eq!(i.sla, SlaStatus::Excluded);
    let json = serde_json::to_value(i).unwrap();
    assert_eq!(json["sla"], "excluded", "{json}");
    assert_eq!(json["state"], "excluded");
    // An open inquiry is the only one pending.
    tr.observe(
        &received(customer("q", "2026-11-24T10:01:00Z")),
        t("2026-11-24T10:01:01Z"),
    )
    .unwrap();
    let json = serde_json::to_value(tr.get(&id_of("q")).unwrap()).unwrap();
    assert_eq!(json["sla"], "pending");
}

#[test]
fn outlooks_auto_response_suppress_alone_is_a_real_customer() {
    let mut tr = tracker();
    let mut m = customer("outlook", "2026-11-24T10:00:00Z");
    m.signals.auto_response_suppress = true;
    let events = tr.observe(&received(m), t("2026-11-24T10:00:01Z")).unwrap();
    assert!(kinds(&events).contains(&"inquiry_opened"));
}

#[test]
fn warnings_and_breach_fire_once_at_their_instants_and_not_after_a_response() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    let warn = Observation::DeadlineReached {
        inquiry_id: id_of("m1"),
        stage: Stage::Warning(0),
    };
    // Too early: nothing.
    assert!(
        tr.observe(&warn, t("2026-11-24T10:09:59Z"))
            .unwrap()
            .is_empty()
    );
    let events = tr.observe(&warn, t("2026-11-24T10:10:00Z")).unwrap();
    assert!(matches!(
        events[..],
        [Event::InquiryWarned { index: 0, .. }]
    ));
    assert_eq!(
        tr.get(&id_of("m1")).unwrap().open_status(),
        Some(super::inquiry::OpenStatus::Warning)
    );
    // Once only.
    assert!(
        tr.observe(&warn, t("2026-11-24T10:10:01Z"))
            .unwrap()
            .is_empty()
    );
    tr.observe(
        &sent(reply("r1", "m1", "2026-11-24T10:14:00Z")),
        t("2026-11-24T10:14:01Z"),
    )
    .unwrap();
    let breach = Observation::DeadlineReached {
        inquiry_id: id_of("m1"),
        stage: Stage::Breach,
    };
    assert!(
        tr.observe(&breach, t("2026-11-24T10:15:00Z"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(tr.get(&id_of("m1")).unwrap().sla, SlaStatus::Met);
}

#[test]
fn manual_acks_answer_open_inquiries_and_are_refused_otherwise() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    let ack = |at: &str, id: InquiryId| {
        Observation::ManualAck(ManualAck {
            inquiry_id: id,
            by: "Laila".into(),
            via: AckVia::Phone,
            at: t(at),
            note: Some("called back".into()),
        })
    };
    assert_eq!(
        tr.observe(
            &ack("2026-11-24T10:05:00Z", InquiryId("nope".into())),
            t("2026-11-24T10:05:00Z")
        ),
        Err(Rejected::UnknownInquiry(InquiryId("nope".into())))
    );
    assert!(matches!(
        tr.observe(
            &ack("2026-11-24T09:59:00Z", id_of("m1")),
            t("2026-11-24T10:05:00Z")
        ),
        Err(Rejected::AckBeforeReceipt { .. })
    ));
    let events = tr
        .observe(
            &ack("2026-11-24T10:05:00Z", id_of("m1")),
            t("2026-11-24T10:06:00Z"),
        )
        .unwrap();
    let Event::InquiryResponded(r) = &events[0] else {
        panic!()
    };
    assert_eq!(
        (r.kind, r.outcome, r.response_seconds),
        (ResponseKind::Manual, Outcome::Met, 300)
    );
    assert_eq!(
        (r.responder.as_str(), r.via, r.note.as_deref()),
        ("Laila", Some(AckVia::Phone), Some("called back"))
    );
    assert!(matches!(
        tr.observe(
            &ack("2026-11-24T10:07:00Z", id_of("m1")),
            t("2026-11-24T10:07:00Z")
        ),
        Err(Rejected::NotOpen(..))
    ));
}

#[test]
fn taking_an_inquiry_is_not_a_response() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    let id = id_of("m1");
    let at = t("2026-11-24T10:12:00Z");
    let until = at + Duration::minutes(30);
    let taken = tr.take(&id, "ana", "link", at, until).unwrap();
    // Kept as it is written in the ledger, and read back the same.
    let json = serde_json::to_string(&taken).unwrap();
    assert!(json.contains("\"type\":\"inquiry_taken\""), "{json}");
    assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), taken);
    assert_eq!(taken.kind(), "inquiry_taken");
    assert_eq!(taken.inquiry_id(), Some(&id));
    tr.apply(&taken);
    let i = tr.get(&id).unwrap();
    assert_eq!((i.state, i.sla), (InquiryState::Open, SlaStatus::Pending));
    assert_eq!(i.taken_at(at).map(|t| t.by.as_str()), Some("ana"));
    assert!(i.taken_at(until).is_none(), "runs out at until");
    // The deadline still breaches: taking does not stop the clock.
    let breach = Observation::DeadlineReached {
        inquiry_id: id.clone(),
        stage: Stage::Breach,
    };
    let events = tr.observe(&breach, t("2026-11-24T10:15:00Z")).unwrap();
    assert!(matches!(events[..], [Event::InquiryBreached { .. }]));
    assert_eq!(tr.get(&id).unwrap().sla, SlaStatus::Missed);
    // Unknown and closed inquiries cannot be taken.
    assert!(matches!(
        tr.take(&InquiryId("nope".into()), "ana", "link", at, until),
        Err(Rejected::UnknownInquiry(_))
    ));
    tr.observe(
        &Observation::ManualAck(ManualAck {
            inquiry_id: id.clone(),
            by: "ana".into(),
            via: AckVia::Phone,
            at: t("2026-11-24T10:20:00Z"),
            note: None,
        }),
        t("2026-11-24T10:20:00Z"),
    )
    .unwrap();
    assert!(matches!(
        tr.take(&id, "ana", "link", at, until),
        Err(Rejected::NotOpen(..))
    ));
}

#[test]
fn replaying_the_events_rebuilds_the_same_state() {
    let mut tr = tracker();
    let mut log = Vec::new();
    let mut feed =
        |tr: &mut Tracker, o: Observation, now: &str| log.extend(tr.observe(&o, t(now)).unwrap());
    feed(
        &mut tr,
        received(customer("a", "2026-11-24T10:00:00Z")),
        "2026-11-24T10:00:01Z",
    );
    feed(
        &mut tr,
        received(customer("b", "2026-11-24T10:01:00Z")),
        "2026-11-24T10:01:01Z",
    );
    feed(
        &mut tr,
        sent(reply("ra", "a", "2026-11-24T10:04:00Z")),
        "2026-11-24T10:04:01Z",
    );
    feed(
        &mut tr,
        Observation::DeadlineReached {
            inquiry_id: id_of("b"),
            stage: Stage::Warning(0),
        },
        "2026-11-24T10:11:00Z",
    );
    feed(
        &mut tr,
        Observation::DeadlineReached {
            inquiry_id: id_of("b"),
            stage: Stage::Breach,
        },
        "2026-11-24T10:16:00Z",
    );
    let mut next = customer("a2", "2026-11-24T12:00:00Z");
    next.in_reply_to = vec!["<ra>".into()];
    feed(&mut tr, received(next), "2026-11-24T12:00:01Z");

    // Through JSON, as the ledger stores them.
    let stored: Vec<Event> = log
        .iter()
        .map(|e| serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap())
        .collect();
    let mut replayed = tracker();
    for e in &stored {
        replayed.apply(e);
    }
    let view = |tr: &Tracker| serde_json::to_value(tr.newest_first().collect::<Vec<_>>()).unwrap();
    assert_eq!(view(&tr), view(&replayed));
    // And the replayed state goes on deciding the same way: re-reading a known message is a no-op.
    assert!(
        replayed
            .observe(
                &received(customer("a", "2026-11-24T10:00:00Z")),
                t("2026-11-24T13:00:00Z")
            )
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_policy_change_never_rewrites_past_inquiries() {
    let mut tr = tracker();
    let events = tr
        .observe(
            &received(customer("old", "2026-11-24T10:00:00Z")),
            t("2026-11-24T10:00:01Z"),
        )
        .unwrap();
    let stricter = Policy {
        target: std::time::Duration::from_secs(10 * 60),
        warn_offsets: vec![std::time::Duration::from_secs(5 * 60)],
        ..Policy::default()
    };
    // Restart with the new policy: the past is replayed as it was decided.
    let mut tr2 = tracker_with(stricter.clone());
    for e in &events {
        tr2.apply(e);
    }
    let old = tr2.get(&id_of("old")).unwrap();
    assert_eq!(old.deadline_at, Some(t("2026-11-24T10:15:00Z")));
    assert_eq!(
        old.policy.as_deref(),
        Some(Policy::default().version().as_str())
    );
    let events = tr2
        .observe(
            &received(customer("new", "2026-11-24T11:00:00Z")),
            t("2026-11-24T11:00:01Z"),
        )
        .unwrap();
    assert_eq!(kinds(&events), ["policy_activated", "inquiry_opened"]);
    let new = tr2.get(&id_of("new")).unwrap();
    assert_eq!(new.deadline_at, Some(t("2026-11-24T11:10:00Z")));
    assert_eq!(new.policy.as_deref(), Some(stricter.version().as_str()));
}

#[test]
fn paging_walks_every_inquiry_once_newest_first() {
    let mut tr = tracker();
    for n in 0..25 {
        let at = t("2026-11-24T10:00:00Z") + Duration::minutes(n);
        let mut m = customer(&format!("p{n}"), "2026-11-24T10:00:00Z");
        m.delivered_at = at;
        tr.observe(&received(m), at).unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<(DateTime<Utc>, InquiryId)> = None;
    loop {
        let page: Vec<_> = match &cursor {
            None => tr.newest_first().take(10).cloned().collect(),
            Some((at, id)) => tr.newest_before(*at, id).take(10).cloned().collect(),
        };
        if page.is_empty() {
            break;
        }
        cursor = page.last().map(|i| (i.received_at, i.id.clone()));
        seen.extend(page.into_iter().map(|i| i.received_at));
    }
    assert_eq!(seen.len(), 25);
    assert!(seen.windows(2).all(|w| w[0] > w[1]));
}

#[test]
fn a_warning_that_comes_due_after_its_deadline_is_skipped_for_the_breach() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    // The daemon was down from 10:05 to 11:00: both instants are due at once.
    let warn = Observation::DeadlineReached {
        inquiry_id: id_of("m1"),
        stage: Stage::Warning(0),
    };
    let breach = Observation::DeadlineReached {
        inquiry_id: id_of("m1"),
        stage: Stage::Breach,
    };
    assert!(
        tr.observe(&warn, t("2026-11-24T11:00:00Z"))
            .unwrap()
            .is_empty()
    );
    let events = tr.observe(&breach, t("2026-11-24T11:00:00Z")).unwrap();
    assert!(matches!(events[..], [Event::InquiryBreached { .. }]));
}

#[test]
fn a_threaded_message_to_a_third_party_is_not_a_response() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    let mut fwd = reply("f1", "m1", "2026-11-24T10:03:00Z");
    fwd.to = vec![addr("dispatch@courier.test")];
    let events = tr.observe(&sent(fwd), t("2026-11-24T10:03:01Z")).unwrap();
    assert!(
        matches!(
            events[..],
            [Event::MessageLinked {
                role: LinkRole::Forward,
                ..
            }]
        ),
        "{events:?}"
    );
    assert_eq!(tr.get(&id_of("m1")).unwrap().state, InquiryState::Open);
}

#[test]
fn a_reply_to_the_customers_reply_to_address_answers() {
    let mut tr = tracker();
    let mut m = customer("m1", "2026-11-24T10:00:00Z");
    m.reply_to = vec![addr("ana.private@home.test")];
    tr.observe(&received(m), t("2026-11-24T10:00:01Z")).unwrap();
    let mut r = reply("r1", "m1", "2026-11-24T10:04:00Z");
    r.to = vec![addr("ana.private@home.test")];
    tr.observe(&sent(r), t("2026-11-24T10:04:01Z")).unwrap();
    assert_eq!(tr.get(&id_of("m1")).unwrap().sla, SlaStatus::Met);
}

#[test]
fn a_customer_answer_read_before_the_desks_reply_still_opens_a_next_reply() {
    // A at 10:00, the desk replies R at 10:05, the customer answers B at 10:06; the inbox is
    // read before the sent folder, so B first looks like a follow-up of the open A.
    let mut tr = tracker();
    let mut log = Vec::new();
    log.extend(
        tr.observe(
            &received(customer("a", "2026-11-24T10:00:00Z")),
            t("2026-11-24T10:00:01Z"),
        )
        .unwrap(),
    );
    let mut b = customer("b", "2026-11-24T10:06:00Z");
    b.in_reply_to = vec!["<r>".into()];
    b.references = vec!["<a>".into(), "<r>".into()];
    let events = tr.observe(&received(b), t("2026-11-24T10:06:01Z")).unwrap();
    assert_eq!(kinds(&events), ["follow_up_attached"]);
    log.extend(events);
    let events = tr
        .observe(
            &sent(reply("r", "a", "2026-11-24T10:05:00Z")),
            t("2026-11-24T10:07:00Z"),
        )
        .unwrap();
    assert_eq!(
        kinds(&events),
        ["message_linked", "inquiry_responded", "inquiry_opened"]
    );
    log.extend(events);
    let a = tr.get(&id_of("a")).unwrap();
    assert_eq!((a.sla, a.response_seconds), (SlaStatus::Met, Some(300)));
    let b = tr.get(&id_of("b")).unwrap();
    assert_eq!(
        (b.state, b.kind),
        (InquiryState::Open, Some(InquiryKind::NextReply))
    );
    assert_eq!(b.received_at, t("2026-11-24T10:06:00Z"));
    assert_eq!(b.deadline_at, Some(t("2026-11-24T10:21:00Z")));
    // …and the same after a replay of the ledger.
    let mut replayed = tracker();
    for e in &log {
        replayed.apply(e);
    }
    assert_eq!(
        replayed.get(&id_of("b")).unwrap().kind,
        Some(InquiryKind::NextReply)
    );
    assert_eq!(replayed.open().count(), 1);
}

#[test]
fn the_same_message_delivered_twice_is_one_inquiry() {
    let mut tr = tracker();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    // Delivered again through another alias: other Received: lines, so another header digest.
    let mut copy = customer("m1", "2026-11-24T10:00:02Z");
    copy.digest = "digest-m1-second-delivery".into();
    assert!(
        tr.observe(&received(copy), t("2026-11-24T10:00:03Z"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(tr.len(), 1);
}

#[test]
fn each_warn_offset_fires_once_whatever_the_order() {
    let policy = Policy {
        warn_offsets: vec![
            std::time::Duration::from_secs(300),
            std::time::Duration::from_secs(600),
        ],
        ..Policy::default()
    };
    let mut tr = tracker_with(policy);
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:00:01Z"),
    )
    .unwrap();
    let warn = |i| Observation::DeadlineReached {
        inquiry_id: id_of("m1"),
        stage: Stage::Warning(i),
    };
    // The later offset's instant is handled first (e.g. both held during a sync).
    assert_eq!(
        kinds(&tr.observe(&warn(1), t("2026-11-24T10:10:00Z")).unwrap()),
        ["inquiry_warned"]
    );
    assert_eq!(
        kinds(&tr.observe(&warn(0), t("2026-11-24T10:10:00Z")).unwrap()),
        ["inquiry_warned"]
    );
    assert!(
        tr.observe(&warn(0), t("2026-11-24T10:10:01Z"))
            .unwrap()
            .is_empty()
    );
    assert!(
        tr.observe(&warn(1), t("2026-11-24T10:10:01Z"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn an_early_read_reply_to_someone_else_does_not_answer_a_later_read_message() {
    let mut tr = tracker();
    let mut r = reply("r1", "m1", "2026-11-24T10:04:00Z");
    r.to = vec![addr("dispatch@courier.test")];
    tr.observe(&sent(r), t("2026-11-24T10:04:01Z")).unwrap();
    tr.observe(
        &received(customer("m1", "2026-11-24T10:00:00Z")),
        t("2026-11-24T10:04:02Z"),
    )
    .unwrap();
    assert_eq!(tr.get(&id_of("m1")).unwrap().state, InquiryState::Open);
}

#[test]
fn an_inquiry_notes_the_seqs_of_its_first_and_last_ledger_event() {
    let mut tr = tracker();
    let opened = tr
        .observe(
            &received(customer("m1", "2026-11-24T10:00:00Z")),
            t("2026-11-24T10:00:01Z"),
        )
        .unwrap();
    assert_eq!(
        tr.get(&id_of("m1")).unwrap().ledger_seqs,
        None,
        "not committed yet"
    );
    // Committed as seqs 10.. (a policy record first, then the opening).
    for (seq, e) in (10..).zip(&opened) {
        tr.note_ledger_seq(e, seq);
    }
    assert_eq!(kinds(&opened), ["policy_activated", "inquiry_opened"]);
    assert_eq!(tr.get(&id_of("m1")).unwrap().ledger_seqs, Some((11, 11)));
    let answered = tr
        .observe(
            &sent(reply("r1", "m1", "2026-11-24T10:12:30Z")),
            t("2026-11-24T10:12:31Z"),
        )
        .unwrap();
    for (seq, e) in (40..).zip(&answered) {
        tr.note_ledger_seq(e, seq);
    }
    // message_linked (40) is not about the inquiry; inquiry_responded (41) is.
    assert_eq!(tr.get(&id_of("m1")).unwrap().ledger_seqs, Some((11, 41)));
}

#[test]
fn a_reply_delivered_before_the_message_it_replies_to_is_flagged_in_either_read_order() {
    let contradicted = |events: &[Event]| {
        events.iter().any(|e| {
            matches!(e, Event::EvidenceContradicted { kind, external_id, .. }
                if *kind == super::event::Contradiction::ReplyBeforeMessage && external_id == "<r>")
        })
    };
    // The reply says it was delivered at 09:59, the message at 10:00.
    let message = customer("m", "2026-11-24T10:00:00Z");
    let early = reply("r", "m", "2026-11-24T09:59:00Z");

    let mut tr = tracker();
    tr.observe(&sent(early.clone()), t("2026-11-24T10:01:00Z"))
        .unwrap();
    let events = tr
        .observe(&received(message.clone()), t("2026-11-24T10:02:00Z"))
        .unwrap();
    assert!(contradicted(&events), "{events:?}");
    // Kept, and it answers nothing: the inquiry stays open.
    assert_eq!(tr.get(&id_of("m")).unwrap().state, InquiryState::Open);

    let mut tr = tracker();
    tr.observe(&received(message), t("2026-11-24T10:01:00Z"))
        .unwrap();
    let events = tr.observe(&sent(early), t("2026-11-24T10:02:00Z")).unwrap();
    assert!(contradicted(&events), "{events:?}");
    assert_eq!(tr.get(&id_of("m")).unwrap().state, InquiryState::Open);
}

#[test]
fn an_inquiry_record_stays_small() {
    // 100,000 open inquiries are held at once on a bad day (the scheduler bench's figure).
    // 448: a boxed "taken" (one pointer, 800 KB over 100,000 inquiries) came on top of 440.
    let size = std::mem::size_of::<super::inquiry::Inquiry>();
    assert!(size <= 448, "Inquiry is {size} bytes");
}
