//! Rule tests for answers across channels: the contact map on, off, an unmapped customer, a
//! customer with several numbers.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use super::contacts::ContactMap;
use super::event::{Event, ResponseKind};
use super::inquiry::{InquiryState, SlaStatus};
use super::observation::{Address, Call, CallDirection, CallOutcome, Mail, Observation};
use super::policy::{Policy, PolicySet};
use super::state::{Tracker, TrackerRules};
use crate::desk::DeskSettings;
use crate::domain::{Channel, InquiryId, Language};
use crate::phone_number::{normalize, region};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn now() -> DateTime<Utc> {
    t("2026-11-24T12:00:00Z")
}

/// A tracker whose contact map says Ana is ana@customer.test with two numbers.
fn tracker(answer_across_channels: bool) -> Tracker {
    let mut tr = Tracker::new(Arc::new(TrackerRules {
        desk: DeskSettings::with_address("support@example.com"),
        policies: PolicySet::single(Policy::default()),
    }));
    tr.set_contacts(Arc::new(ContactMap::new(
        answer_across_channels,
        [(
            "Ana@Customer.test".to_string(),
            vec!["+34600123456".to_string(), "+34911222333".to_string()],
        )],
    )));
    tr
}

/// Decides and applies one observation at [`now`], as the engine does.
fn feed(tr: &mut Tracker, observation: &Observation) -> Vec<Event> {
    tr.observe(observation, now()).unwrap()
}

fn addr(email: &str) -> Address {
    Address {
        name: None,
        email: email.into(),
    }
}

fn customer_mail(id: &str, from: &str, at: &str) -> Observation {
    Observation::MessageReceived(Mail {
        source: "mail".into(),
        folder: "INBOX".into(),
        message_id: format!("<{id}>"),
        digest: format!("digest-{id}"),
        delivered_at: t(at),
        seen_at: t(at),
        from: Some(addr(from)),
        to: vec![addr("support@example.com")],
        subject: "My invoice".into(),
        text_sample: "I need help with my invoice, it shows the wrong amount for November.".into(),
        ..Mail::default()
    })
}

/// A reply from the desk to `to` that threads to no customer mail (written fresh).
fn desk_mail(id: &str, to: &str, at: &str) -> Observation {
    Observation::MessageSent(Mail {
        source: "mail".into(),
        folder: "Sent".into(),
        message_id: format!("<{id}>"),
        digest: format!("digest-{id}"),
        delivered_at: t(at),
        seen_at: t(at),
        from: Some(addr("support@example.com")),
        to: vec![addr(to)],
        subject: "Your call this morning".into(),
        in_reply_to: vec!["<unknown@elsewhere>".into()],
        ..Mail::default()
    })
}

fn call(id: &str, number: &str, at: &str, direction: CallDirection) -> Call {
    Call {
        source: "pbx".into(),
        call_id: id.into(),
        record_id: format!("{id}-1"),
        direction,
        number: normalize(number, region("ES")),
        name: None,
        line: Some("soporte-es".into()),
        language: Some(Language::Es),
        started_at: t(at),
        queue_entered_at: None,
        answered_at: None,
        ended_at: None,
        agent: Some("PJSIP/2001".into()),
        outcome: CallOutcome::NoAnswer,
        seen_at: t(at),
        ignore: None,
    }
}

fn missed_call(id: &str, number: &str, at: &str) -> Observation {
    Observation::CallEnded(call(id, number, at, CallDirection::Inbound))
}

fn callback(id: &str, number: &str, at: &str) -> Observation {
    let mut c = call(id, number, at, CallDirection::Outbound);
    c.answered_at = Some(t(at) + Duration::seconds(5));
    c.outcome = CallOutcome::Answered;
    Observation::CallAnswered(c)
}

fn mail_id(id: &str) -> InquiryId {
    InquiryId::derive(Channel::Email, &format!("<{id}>"))
}

fn call_id(id: &str) -> InquiryId {
    InquiryId::derive(Channel::Phone, &format!("call:{id}"))
}

fn responded(events: &[Event]) -> Vec<InquiryId> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::InquiryResponded(r) => Some(r.inquiry_id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn with_the_switch_on_a_connected_callback_answers_the_customers_open_mail() {
    let mut tr = tracker(true);
    feed(
        &mut tr,
        &customer_mail("m1", "ana@customer.test", "2026-01-05T09:00:00Z"),
    );
    let events = feed(
        &mut tr,
        &callback("cb1", "0034 600 12 34 56", "2026-01-05T09:05:00Z"),
    );
    assert_eq!(responded(&events), [mail_id("m1")]);
    // Recorded as a linked response, not as a callback to nobody.
    assert!(
        !events.iter().any(|e| e.kind() == "reply_unmatched"),
        "{events:?}"
    );
    let i = tr.get(&mail_id("m1")).unwrap();
    assert_eq!((i.state, i.sla), (InquiryState::Responded, SlaStatus::Met));
    assert_eq!(i.response_kind, Some(ResponseKind::Phone));
    assert_eq!(i.responded_at, Some(t("2026-01-05T09:05:05Z")));
}

#[test]
fn with_the_switch_on_a_reply_mail_answers_the_customers_missed_call() {
    let mut tr = tracker(true);
    feed(
        &mut tr,
        &missed_call("c1", "600123456", "2026-01-05T09:00:00Z"),
    );
    let events = feed(
        &mut tr,
        &desk_mail("r1", "ANA@customer.test", "2026-01-05T09:10:00Z"),
    );
    assert_eq!(responded(&events), [call_id("c1")]);
    assert!(
        !events.iter().any(|e| e.kind() == "reply_unmatched"),
        "{events:?}"
    );
    let i = tr.get(&call_id("c1")).unwrap();
    assert_eq!((i.state, i.sla), (InquiryState::Responded, SlaStatus::Met));
    assert_eq!(i.response_kind, Some(ResponseKind::Email));
}

#[test]
fn with_the_switch_off_nothing_crosses_channels() {
    let mut tr = tracker(false);
    feed(
        &mut tr,
        &customer_mail("m1", "ana@customer.test", "2026-01-05T09:00:00Z"),
    );
    feed(
        &mut tr,
        &missed_call("c1", "600123456", "2026-01-05T09:00:00Z"),
    );
    let events = feed(
        &mut tr,
        &callback("cb1", "+34911222333", "2026-01-05T09:05:00Z"),
    );
    assert!(responded(&events).is_empty(), "{events:?}");
    let events = feed(
        &mut tr,
        &desk_mail("r1", "ana@customer.test", "2026-01-05T09:10:00Z"),
    );
    assert!(responded(&events).is_empty(), "{events:?}");
    assert_eq!(tr.get(&mail_id("m1")).unwrap().state, InquiryState::Open);
    assert_eq!(tr.get(&call_id("c1")).unwrap().state, InquiryState::Open);
}

#[test]
fn an_unmapped_customer_is_never_matched_across_channels() {
    let mut tr = tracker(true);
    feed(
        &mut tr,
        &customer_mail("m2", "bob@other.test", "2026-01-05T09:00:00Z"),
    );
    feed(
        &mut tr,
        &missed_call("c2", "+34622000111", "2026-01-05T09:00:00Z"),
    );
    // Bob's own number, but the map does not say it is his.
    let events = feed(
        &mut tr,
        &callback("cb2", "+34622000111", "2026-01-05T09:05:00Z"),
    );
    assert_eq!(responded(&events), [call_id("c2")]);
    assert_eq!(tr.get(&mail_id("m2")).unwrap().state, InquiryState::Open);
    feed(
        &mut tr,
        &missed_call("c3", "+34633000222", "2026-01-05T09:06:00Z"),
    );
    let events = feed(
        &mut tr,
        &desk_mail("r2", "bob@other.test", "2026-01-05T09:10:00Z"),
    );
    assert!(responded(&events).is_empty(), "{events:?}");
    assert_eq!(tr.get(&call_id("c3")).unwrap().state, InquiryState::Open);
}

#[test]
fn a_customer_with_several_numbers_is_answered_on_all_of_them_but_not_before_they_called() {
    let mut tr = tracker(true);
    feed(
        &mut tr,
        &missed_call("c1", "+34600123456", "2026-01-05T09:00:00Z"),
    );
    feed(
        &mut tr,
        &missed_call("c2", "911222333", "2026-01-05T09:02:00Z"),
    );
    // Received after the reply: the reply cannot have answered it.
    feed(
        &mut tr,
        &missed_call("c3", "+34600123456", "2026-01-05T09:20:00Z"),
    );
    let events = feed(
        &mut tr,
        &desk_mail("r1", "ana@customer.test", "2026-01-05T09:10:00Z"),
    );
    let mut answered = responded(&events);
    answered.sort();
    let mut expected = vec![call_id("c1"), call_id("c2")];
    expected.sort();
    assert_eq!(answered, expected);
    // The later call from the first number is a new inquiry of its own, still open.
    let open: Vec<_> = tr.open().map(|i| i.received_at).collect();
    assert_eq!(open, [t("2026-01-05T09:20:00Z")]);
    // And a callback to the second number answers a mail from Ana, whichever number.
    feed(
        &mut tr,
        &customer_mail("m3", "ana@customer.test", "2026-01-05T09:30:00Z"),
    );
    let events = feed(
        &mut tr,
        &callback("cb3", "+34911222333", "2026-01-05T09:31:00Z"),
    );
    assert_eq!(responded(&events), [mail_id("m3")]);
}
