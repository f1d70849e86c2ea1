//! Delivery records in the ledger: an alert raised but never delivered (every notifier failed,
//! or the daemon stopped between the ledger write and the send) is sent again at the next
//! start-up, exactly once; a delivered one never is. Answering an alerted inquiry sends a
//! `resolved` alert; a breach still unanswered is re-notified at the policy's interval, capped.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use slawatch::notify::{Alert, AlertKind, Delivery, DeliveryError, Notifier};
use slawatch::sources::SourceBatch;
use slawatch::store::Store;
use slawatch_core::desk::DeskSettings;
use slawatch_core::domain::{Channel, InquiryId};
use slawatch_core::tracker::TrackerRules;
use slawatch_core::tracker::observation::{AckVia, Address, Mail, ManualAck, Observation};
use slawatch_core::tracker::policy::{Policy, PolicySet};
use support::engine::{Running, Setup, stop};

#[derive(Default)]
struct Recorder {
    fail: bool,
    calls: AtomicUsize,
    got: Mutex<Vec<(AlertKind, InquiryId)>>,
    /// What the engine said was still firing at start-up.
    firing: Mutex<Vec<(AlertKind, InquiryId)>>,
}

impl Notifier for Recorder {
    fn name(&self) -> &str {
        "test"
    }
    fn still_firing(&self, alerts: &[Alert]) {
        self.firing
            .lock()
            .unwrap()
            .extend(alerts.iter().map(|a| (a.kind, a.inquiry_id.clone())));
    }
    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.got
            .lock()
            .unwrap()
            .extend(alerts.iter().map(|a| (a.kind, a.inquiry_id.clone())));
        let fail = self.fail;
        Box::pin(async move {
            alerts
                .iter()
                .map(|_| {
                    if fail {
                        Err(DeliveryError {
                            notifier: "test".into(),
                            message: "down".into(),
                        })
                    } else {
                        Ok(())
                    }
                })
                .collect()
        })
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
}

async fn start(store: Store, notifier: Arc<Recorder>) -> Running {
    start_with(store, notifier, Policy::default()).await
}

async fn start_with(store: Store, notifier: Arc<Recorder>, policy: Policy) -> Running {
    let rules = Arc::new(TrackerRules {
        desk: DeskSettings::with_address("support@example.com"),
        policies: PolicySet::single(policy),
    });
    support::engine::start(store, rules, notifier, Setup::at(t0())).await
}

fn overdue(id: &str) -> SourceBatch {
    SourceBatch {
        source: "s".into(),
        observations: vec![Observation::MessageReceived(Mail {
            source: "s".into(),
            folder: "INBOX".into(),
            message_id: format!("<{id}>"),
            digest: format!("digest-{id}"),
            delivered_at: t0() - chrono::Duration::minutes(20),
            seen_at: t0(),
            from: Some(Address {
                name: None,
                email: format!("{id}@customer.test"),
            }),
            to: vec![Address {
                name: None,
                email: "support@example.com".into(),
            }],
            subject: format!("question {id}"),
            ..Mail::default()
        })],
        cursors: vec![],
        initial_sync_done: true,
    }
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    let limit = tokio::time::Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < limit,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn delivered(r: &Running, id: &InquiryId) -> bool {
    let tracker = r.shared.tracker.read().unwrap();
    tracker
        .get(id)
        .is_some_and(|i| i.alerts.iter().all(|m| m.delivered_at.is_some()) && !i.alerts.is_empty())
}

#[tokio::test]
async fn an_undelivered_alert_is_sent_again_at_start_up_exactly_once_and_a_delivered_one_still_fires()
 {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let id = InquiryId::derive(Channel::Email, "<m1>");

    // Every notifier fails: the breach is in the ledger, its delivery is not.
    let failing = Arc::new(Recorder {
        fail: true,
        ..Recorder::default()
    });
    let r = start(Store::open(&url).await.unwrap(), failing.clone()).await;
    r.sink.submit(overdue("m1")).await.unwrap();
    until("the failed attempt", || {
        failing.calls.load(Ordering::SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!delivered(&r, &id));
    let store = r.shared.store.clone();
    stop(r).await;
    store.close().await;

    // After the restart it goes out at once, and its delivery is recorded.
    let ok = Arc::new(Recorder::default());
    let r = start(Store::open(&url).await.unwrap(), ok.clone()).await;
    until("the resent breach", || !ok.got.lock().unwrap().is_empty()).await;
    until("the delivery record", || delivered(&r, &id)).await;
    assert_eq!(
        ok.got.lock().unwrap().as_slice(),
        [(AlertKind::Breach, id.clone())]
    );
    // Not delivered before this start: resent, not "still firing".
    assert!(ok.firing.lock().unwrap().is_empty());
    let store = r.shared.store.clone();
    stop(r).await;
    store.close().await;

    // Once delivered, never again.
    let again = Arc::new(Recorder::default());
    let r = start(Store::open(&url).await.unwrap(), again.clone()).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(delivered(&r, &id));
    assert!(again.got.lock().unwrap().is_empty(), "sent twice");
    // Delivered and still unanswered: notifiers that keep alerts alive are told it still fires.
    assert_eq!(
        again.firing.lock().unwrap().as_slice(),
        [(AlertKind::Breach, id.clone())]
    );
    stop(r).await;
}

#[tokio::test]
async fn answering_an_alerted_inquiry_sends_resolved_and_an_unalerted_one_sends_nothing() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let rec = Arc::new(Recorder::default());
    let r = start(store, rec.clone()).await;
    let alerted = InquiryId::derive(Channel::Email, "<m2>");
    r.sink.submit(overdue("m2")).await.unwrap();
    until("the breach", || rec.got.lock().unwrap().len() == 1).await;
    r.engine
        .ack(ManualAck {
            inquiry_id: alerted.clone(),
            by: "Ana".into(),
            via: AckVia::Phone,
            at: t0(),
            note: None,
        })
        .await
        .unwrap();
    until("the resolved alert", || rec.got.lock().unwrap().len() == 2).await;
    assert_eq!(
        rec.got.lock().unwrap()[1],
        (AlertKind::Resolved, alerted.clone())
    );
    // A fresh inquiry answered before any alert: no resolved mail.
    let mut fresh = overdue("m3");
    if let Observation::MessageReceived(m) = &mut fresh.observations[0] {
        m.delivered_at = t0();
    }
    r.sink.submit(fresh).await.unwrap();
    let quiet = InquiryId::derive(Channel::Email, "<m3>");
    until("m3 to open", || {
        r.shared.tracker.read().unwrap().get(&quiet).is_some()
    })
    .await;
    r.engine
        .ack(ManualAck {
            inquiry_id: quiet,
            by: "Ana".into(),
            via: AckVia::Email,
            at: t0(),
            note: None,
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rec.got.lock().unwrap().len(), 2);
    stop(r).await;
}

#[tokio::test]
async fn a_breach_left_unanswered_is_renotified_at_its_interval_up_to_the_cap_then_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let policy = Policy {
        renotify_every: Duration::from_secs(1),
        renotify_max: 2,
        warn_offsets: vec![],
        ..Policy::default()
    };
    let rec = Arc::new(Recorder::default());
    let r = start_with(
        Store::open(&url).await.unwrap(),
        rec.clone(),
        policy.clone(),
    )
    .await;
    // Deadline 1 s from now: breach then, re-notifications 1 s and 2 s after it.
    let mut b = overdue("m4");
    if let Observation::MessageReceived(m) = &mut b.observations[0] {
        m.delivered_at = t0() - chrono::Duration::minutes(15) + chrono::Duration::seconds(1);
    }
    let started = tokio::time::Instant::now();
    r.sink.submit(b).await.unwrap();
    let id = InquiryId::derive(Channel::Email, "<m4>");
    until("two re-notifications", || {
        rec.got.lock().unwrap().len() == 3
    })
    .await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(2900), "too early: {took:?}");
    assert_eq!(
        rec.got.lock().unwrap().as_slice(),
        [
            (AlertKind::Breach, id.clone()),
            (AlertKind::Renotify, id.clone()),
            (AlertKind::Renotify, id.clone())
        ]
    );
    // The cap holds, also across a restart.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rec.got.lock().unwrap().len(), 3);
    until("deliveries recorded", || delivered(&r, &id)).await;
    let store = r.shared.store.clone();
    stop(r).await;
    store.close().await;
    let r = start_with(Store::open(&url).await.unwrap(), rec.clone(), policy).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        rec.got.lock().unwrap().len(),
        3,
        "{:?}",
        rec.got.lock().unwrap()
    );
    r.engine
        .ack(ManualAck {
            inquiry_id: id.clone(),
            by: "Omar".into(),
            via: AckVia::Phone,
            at: t0(),
            note: None,
        })
        .await
        .unwrap();
    until("resolved", || rec.got.lock().unwrap().len() == 4).await;
    assert_eq!(rec.got.lock().unwrap()[3], (AlertKind::Resolved, id));
    stop(r).await;
}
