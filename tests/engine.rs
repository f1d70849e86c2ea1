//! The engine with a controlled clock and a real (SQLite) ledger: deadlines held while a source
//! syncs, the grace cap, alerts once, and a failing ledger write that neither loses nor double
//! counts anything.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use slawatch::engine::Shared;
use slawatch::notify::{Alert, AlertKind, Delivery, Notifier};
use slawatch::sources::{EngineSink, SourceBatch};
use slawatch::store::Store;
use slawatch_core::desk::DeskSettings;
use slawatch_core::domain::{Channel, InquiryId};
use slawatch_core::tracker::observation::{Address, Mail, Observation};
use slawatch_core::tracker::policy::{Policy, PolicySet};
use slawatch_core::tracker::{SlaStatus, TrackerRules};
use support::engine::Setup;
use tokio_util::sync::CancellationToken;

/// The engine runs on real time from an anchored UTC instant: the ledger's SQLite works on its
/// own threads, which a paused tokio clock would skip past. Instants are placed a second or two
/// ahead, and conditions are polled with generous limits.
const GRACE: Duration = Duration::from_secs(3);

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

#[derive(Default)]
struct Recorder(Mutex<Vec<(AlertKind, InquiryId)>>);

impl Notifier for Recorder {
    fn name(&self) -> &str {
        "test"
    }
    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        self.0
            .lock()
            .unwrap()
            .extend(alerts.iter().map(|a| (a.kind, a.inquiry_id.clone())));
        Box::pin(async move { alerts.iter().map(|_| Ok(())).collect() })
    }
}

struct World {
    shared: Arc<Shared>,
    sink: EngineSink,
    alerts: Arc<Recorder>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
}

/// The engine with its clock anchored at [`t0`] (advancing in real time), `sources` still in
/// their first sync, and a short sync grace.
async fn world(store: Store, sources: &[&str]) -> World {
    let rules = Arc::new(TrackerRules {
        desk: DeskSettings::with_address("support@example.com"),
        policies: PolicySet::single(Policy::default()),
    });
    let alerts = Arc::new(Recorder::default());
    let setup = Setup {
        sources: sources.iter().map(|s| s.to_string()).collect(),
        pending: true,
        sync_grace: GRACE,
        ..Setup::at(t0())
    };
    let r = support::engine::start(store, rules, alerts.clone(), setup).await;
    World {
        shared: r.shared,
        sink: r.sink,
        alerts,
        shutdown: r.shutdown,
        task: r.task,
    }
}

fn mail(source: &str, id: &str, received: DateTime<Utc>) -> Observation {
    Observation::MessageReceived(Mail {
        source: source.into(),
        folder: "INBOX".into(),
        message_id: format!("<{id}>"),
        digest: format!("digest-{id}"),
        delivered_at: received,
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
    })
}

fn batch(source: &str, observations: Vec<Observation>, done: bool) -> SourceBatch {
    SourceBatch {
        source: source.into(),
        observations,
        cursors: vec![],
        initial_sync_done: done,
    }
}

fn sla(w: &World, id: &str) -> SlaStatus {
    let tracker = w.shared.tracker.read().unwrap();
    tracker
        .get(&InquiryId::derive(Channel::Email, &format!("<{id}>")))
        .unwrap()
        .sla
}

fn breaches(w: &World) -> usize {
    w.alerts
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k == AlertKind::Breach)
        .count()
}

async fn memory_store() -> Store {
    Store::open("sqlite::memory:").await.unwrap()
}

/// A ledger in `dir` that refuses every insert of a row matching `when` (SQL over `NEW`), as a
/// full disk would, until its `refuse` trigger is dropped.
async fn refusing_store(dir: &std::path::Path, when: &str) -> Store {
    let store = Store::open(&format!("sqlite://{}/ledger.db", dir.display()))
        .await
        .unwrap();
    let Store::Sqlite(pool) = &store else {
        unreachable!("an SQLite store")
    };
    // The condition is the test's own text, not input.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TRIGGER refuse BEFORE INSERT ON ledger WHEN {when} \
         BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END"
    )))
    .execute(pool)
    .await
    .unwrap();
    store
}

#[tokio::test]
async fn deadlines_wait_for_their_own_sources_first_sync_only() {
    let w = world(memory_store().await, &["slow", "fast"]).await;
    let an_hour_ago = t0() - chrono::Duration::hours(1);
    let slow = batch("slow", vec![mail("slow", "s1", an_hour_ago)], false);
    w.sink.submit(slow).await.unwrap();
    let fast = batch("fast", vec![mail("fast", "f1", an_hour_ago)], true);
    w.sink.submit(fast).await.unwrap();
    // The synced source's overdue inquiry breaches at once; the other waits for its sync (its
    // reply may be further down the backfill).
    until("f1 to breach", || sla(&w, "f1") == SlaStatus::Missed).await;
    assert_eq!(sla(&w, "s1"), SlaStatus::Pending);
    w.sink.submit(batch("slow", vec![], true)).await.unwrap();
    until("s1 to breach once its source synced", || {
        sla(&w, "s1") == SlaStatus::Missed
    })
    .await;
    until("both breach alerts", || breaches(&w) == 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One breach alert each, no stale "5 min left" warning for either.
    assert_eq!(breaches(&w), 2);
    assert_eq!(w.alerts.0.lock().unwrap().len(), 2);
    w.shutdown.cancel();
    w.task.await.unwrap();
}

#[tokio::test]
async fn a_source_that_never_syncs_cannot_silence_alerts_past_the_grace_period() {
    let w = world(memory_store().await, &["broken"]).await;
    let started = tokio::time::Instant::now();
    let overdue = mail("broken", "b1", t0() - chrono::Duration::hours(1));
    w.sink
        .submit(batch("broken", vec![overdue], false))
        .await
        .unwrap();
    until("b1 to breach after the grace period", || {
        sla(&w, "b1") == SlaStatus::Missed
    })
    .await;
    let took = started.elapsed();
    assert!(
        took >= GRACE,
        "fired after {took:?}, before the grace period ended"
    );
    // The state changes before the ledger write; the alert is handed over after it.
    until("the breach alert", || breaches(&w) >= 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(breaches(&w), 1);
    w.shutdown.cancel();
    w.task.await.unwrap();
}

#[tokio::test]
async fn a_warning_and_a_breach_fire_at_their_instants_once() {
    let w = world(memory_store().await, &["s"]).await;
    // Received so that the 10-minute warning is 1 s away and the 15-minute breach 2 s after it.
    let received = t0() - chrono::Duration::minutes(10) + chrono::Duration::seconds(1);
    let received = received - chrono::Duration::minutes(5) + chrono::Duration::seconds(2);
    let started = tokio::time::Instant::now();
    w.sink
        .submit(batch("s", vec![mail("s", "m1", received)], true))
        .await
        .unwrap();
    let id = InquiryId::derive(Channel::Email, "<m1>");
    until("the warning", || !w.alerts.0.lock().unwrap().is_empty()).await;
    assert_eq!(
        w.alerts.0.lock().unwrap().as_slice(),
        [(AlertKind::Warning, id.clone())]
    );
    assert_eq!(sla(&w, "m1"), SlaStatus::Pending);
    until("the breach", || breaches(&w) == 1).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3),
        "breach fired early, after {took:?}"
    );
    assert_eq!(sla(&w, "m1"), SlaStatus::Missed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        w.alerts.0.lock().unwrap().len(),
        2,
        "each stage alerted once"
    );
    w.shutdown.cancel();
    w.task.await.unwrap();
}

#[tokio::test]
async fn a_failing_ledger_write_is_retried_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = refusing_store(dir.path(), "1").await;
    let Store::Sqlite(pool) = &store else {
        unreachable!("an SQLite store")
    };
    let w = world(store.clone(), &["s"]).await;
    let sink = w.sink.clone();
    let submitted = tokio::spawn(async move {
        sink.submit(batch("s", vec![mail("s", "m1", t0())], true))
            .await
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        !submitted.is_finished(),
        "the batch must wait while the ledger refuses it"
    );
    let received = |w: &World| {
        let tracker = w.shared.tracker.read().unwrap();
        w.shared.metrics.render(&tracker, Utc::now()).unwrap()
    };
    assert!(
        received(&w)
            .contains(r#"slawatch_inquiries_received_total{channel="email",language="en"} 0"#)
    );
    sqlx::query("DROP TRIGGER refuse")
        .execute(pool)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), submitted)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        received(&w)
            .contains(r#"slawatch_inquiries_received_total{channel="email",language="en"} 1"#)
    );
    let opened = store
        .events()
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event.kind() == "inquiry_opened")
        .count();
    assert_eq!(opened, 1);
    w.shutdown.cancel();
    w.task.await.unwrap();
}

#[tokio::test]
async fn an_inquirys_history_is_read_back_by_its_seqs_live_and_after_replay() {
    let store = memory_store().await;
    let w = world(store.clone(), &["s"]).await;
    let received = t0() - chrono::Duration::minutes(1);
    // m1 opens, m2 opens in between, then the desk answers m1: m1's events are not adjacent.
    for observations in [
        vec![mail("s", "m1", received)],
        vec![mail("s", "m2", received)],
        vec![Observation::MessageSent(Mail {
            source: "s".into(),
            folder: "Sent".into(),
            message_id: "<r1>".into(),
            digest: "digest-r1".into(),
            delivered_at: t0(),
            seen_at: t0(),
            from: Some(Address {
                name: None,
                email: "support@example.com".into(),
            }),
            to: vec![Address {
                name: None,
                email: "m1@customer.test".into(),
            }],
            subject: "Re: question m1".into(),
            in_reply_to: vec!["<m1>".into()],
            references: vec!["<m1>".into()],
            ..Mail::default()
        })],
    ] {
        w.sink.submit(batch("s", observations, true)).await.unwrap();
    }
    let m1 = InquiryId::derive(Channel::Email, "<m1>");
    let live = w
        .shared
        .tracker
        .read()
        .unwrap()
        .get(&m1)
        .unwrap()
        .ledger_seqs;
    let seqs = live.expect("m1 was committed");
    let kinds: Vec<&str> = store
        .events_for_inquiry(&m1, seqs)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.kind())
        .collect();
    assert_eq!(kinds, ["inquiry_opened", "inquiry_responded"]);
    // Exactly m1's events: every ledger row about m1 lies in its range.
    let all = store.events().await.unwrap();
    let about_m1: Vec<i64> = all
        .iter()
        .filter(|e| e.event.inquiry_id() == Some(&m1))
        .map(|e| e.seq)
        .collect();
    assert_eq!((about_m1[0], *about_m1.last().unwrap()), seqs);
    assert!(
        all.iter().any(|e| e.seq > seqs.0 && e.seq < seqs.1),
        "m2 lies in between"
    );
    w.shutdown.cancel();
    w.task.await.unwrap();

    // A restart finds the same range by replaying the ledger.
    let rules = w.shared.tracker.read().unwrap().rules().clone();
    let (replayed, _) = slawatch::engine::replay(&store, Arc::new(rules))
        .await
        .unwrap();
    assert_eq!(replayed.get(&m1).unwrap().ledger_seqs, live);
}

#[tokio::test]
async fn each_batch_writes_its_inquiries_projection_rows_in_its_transaction() {
    let store = memory_store().await;
    let w = world(store.clone(), &["s"]).await;
    let received = t0() - chrono::Duration::minutes(1);
    let reply = Observation::MessageSent(Mail {
        source: "s".into(),
        folder: "Sent".into(),
        message_id: "<r1>".into(),
        digest: "digest-r1".into(),
        delivered_at: t0(),
        seen_at: t0(),
        from: Some(Address {
            name: None,
            email: "support@example.com".into(),
        }),
        to: vec![Address {
            name: None,
            email: "m1@customer.test".into(),
        }],
        subject: "Re: question m1".into(),
        in_reply_to: vec!["<m1>".into()],
        references: vec!["<m1>".into()],
        ..Mail::default()
    });
    // m1 and m2 open in one batch, the reply to m1 comes in the next.
    w.sink
        .submit(batch(
            "s",
            vec![mail("s", "m1", received), mail("s", "m2", received)],
            true,
        ))
        .await
        .unwrap();
    w.sink.submit(batch("s", vec![reply], true)).await.unwrap();
    for id in ["<m1>", "<m2>"] {
        let id = InquiryId::derive(Channel::Email, id);
        let held = w.shared.tracker.read().unwrap().get(&id).cloned().unwrap();
        let stored = store.projected(&id).await.unwrap().expect("projected");
        assert_eq!(stored.ledger_seqs, held.ledger_seqs, "{id}");
        assert_eq!(
            serde_json::to_string(&stored).unwrap(),
            serde_json::to_string(&held).unwrap(),
            "{id}: the row is the inquiry as the tracker holds it"
        );
    }
    let m1 = store
        .projected(&InquiryId::derive(Channel::Email, "<m1>"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m1.sla, SlaStatus::Met);
    w.shutdown.cancel();
    w.task.await.unwrap();

    // The live projection is the one the ledger rebuilds.
    let rules = w.shared.tracker.read().unwrap().rules().clone();
    let report = slawatch::store::projection::check(&store, Arc::new(rules), &memory_store().await)
        .await
        .unwrap();
    assert_eq!(
        (report.rows_compared, report.differences),
        (2, 0),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_batch_after_one_that_could_not_be_written_is_not_written_either() {
    let dir = tempfile::tempdir().unwrap();
    // The ledger refuses m1's batch only; m2's alone would be written.
    let store = refusing_store(dir.path(), "NEW.payload LIKE '%m1@customer.test%'").await;
    let w = world(store.clone(), &["s"]).await;
    let submit = |id: &'static str| {
        let sink = w.sink.clone();
        tokio::spawn(async move {
            sink.submit(batch("s", vec![mail("s", id, t0())], false))
                .await
        })
    };
    let first = submit("m1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Decided while the first is still being retried (its cursor would be further on).
    let second = submit("m2");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!first.is_finished() && !second.is_finished());
    w.shutdown.cancel();
    w.task.await.unwrap();
    assert!(first.await.unwrap().is_err(), "m1 was never written");
    assert!(
        second.await.unwrap().is_err(),
        "m2 must be refused, not written"
    );
    let events = store.events().await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.event.kind()).collect();
    assert!(!kinds.contains(&"inquiry_opened"), "{kinds:?}");
}

/// Records each alert with how late it was handed over: the engine's clock at the handover
/// minus the instant the alert is about.
struct Lateness {
    clock: slawatch::scheduler::Clock,
    seen: Mutex<Vec<(AlertKind, String, chrono::Duration)>>,
}

impl Lateness {
    fn new(clock: slawatch::scheduler::Clock) -> Arc<Lateness> {
        Arc::new(Lateness {
            clock,
            seen: Mutex::new(Vec::new()),
        })
    }

    fn of(&self, kind: AlertKind, id: &str) -> Vec<chrono::Duration> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, i, _)| *k == kind && i == id)
            .map(|(_, _, l)| *l)
            .collect()
    }

    fn breaches(&self) -> Vec<chrono::Duration> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, i, _)| *k == AlertKind::Breach && !i.starts_with("monitor-"))
            .map(|(_, _, l)| *l)
            .collect()
    }
}

impl Notifier for Lateness {
    fn name(&self) -> &str {
        "lateness"
    }
    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        let now = self.clock.now();
        self.seen.lock().unwrap().extend(
            alerts
                .iter()
                .map(|a| (a.kind, a.inquiry_id.to_string(), now - a.due_at)),
        );
        Box::pin(async move { alerts.iter().map(|_| Ok(())).collect() })
    }
}

fn rules() -> Arc<TrackerRules> {
    Arc::new(TrackerRules {
        desk: DeskSettings::with_address("support@example.com"),
        policies: PolicySet::single(Policy::default()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_alerts_go_out_on_time_while_source_batches_keep_coming() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/ledger.db", dir.path().display()))
        .await
        .unwrap();
    let clock = slawatch::scheduler::Clock::anchored(t0());
    let alerts = Lateness::new(clock);
    let r = support::engine::start(store, rules(), alerts.clone(), Setup::at(t0())).await;
    // Twenty inquiries whose deadlines fall 2 to 4 s from now, 100 ms apart.
    let due: Vec<Observation> = (0..20)
        .map(|i| {
            mail(
                "s",
                &format!("due{i}"),
                t0() - chrono::Duration::minutes(15)
                    + chrono::Duration::milliseconds(2000 + 100 * i),
            )
        })
        .collect();
    r.sink.submit(batch("s", due, true)).await.unwrap();
    // Meanwhile a backfill: batch after batch of 200 messages, without a pause, for 6 s.
    let flood = {
        let sink = r.sink.clone();
        tokio::spawn(async move {
            let until = tokio::time::Instant::now() + Duration::from_secs(6);
            let mut n = 0;
            while tokio::time::Instant::now() < until {
                let observations = (0..200)
                    .map(|i| mail("s", &format!("flood{n}-{i}"), t0()))
                    .collect();
                sink.submit(batch("s", observations, true)).await.unwrap();
                n += 1;
            }
            n
        })
    };
    let batches = flood.await.unwrap();
    until("twenty breaches", || alerts.breaches().len() == 20).await;
    let late = alerts.breaches();
    let worst = late.iter().max().unwrap();
    eprintln!(
        "{batches} batches of 200 during the deadlines; worst breach lateness {} ms",
        worst.num_milliseconds()
    );
    assert!(batches >= 10, "the flood ran: {batches} batches");
    assert!(
        *worst < chrono::Duration::milliseconds(1000),
        "an alert waited {} ms behind the backfill",
        worst.num_milliseconds()
    );
    support::engine::stop(r).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_ledger_delays_no_alert_pages_and_is_caught_up_in_order_once_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let store = refusing_store(dir.path(), "1").await;
    let Store::Sqlite(pool) = &store else {
        unreachable!("an SQLite store")
    };
    let clock = slawatch::scheduler::Clock::anchored(t0());
    let alerts = Lateness::new(clock);
    let r = support::engine::start(store.clone(), rules(), alerts.clone(), Setup::at(t0())).await;
    // The ledger refuses everything from the start: the inquiry itself waits in memory, its
    // breach (2 s away) goes out all the same.
    let received = t0() - chrono::Duration::minutes(15) + chrono::Duration::seconds(2);
    let submitted = {
        let sink = r.sink.clone();
        tokio::spawn(async move {
            sink.submit(batch("s", vec![mail("s", "m1", received)], true))
                .await
        })
    };
    let id = InquiryId::derive(Channel::Email, "<m1>");
    until("the breach, with the ledger refusing", || {
        !alerts.of(AlertKind::Breach, id.as_str()).is_empty()
    })
    .await;
    let late = alerts.of(AlertKind::Breach, id.as_str())[0];
    assert!(late < chrono::Duration::milliseconds(1000), "{late}");
    assert!(!submitted.is_finished(), "the source waits for the ledger");
    // After 5 s of refusals the on-call person is told, through the notifiers.
    until("the ledger alert", || {
        !alerts.of(AlertKind::Breach, "monitor-ledger").is_empty()
    })
    .await;
    let status = r.shared.ledger.snapshot();
    assert!(status.failures >= 3, "{status:?}");
    assert!(status.backlog_events >= 3, "{status:?}");
    let metrics = {
        let tracker = r.shared.tracker.read().unwrap();
        r.shared.metrics.render(&tracker, Utc::now()).unwrap()
    };
    assert!(metrics.contains("slawatch_ledger_writable 0"), "{metrics}");
    assert!(
        !metrics.contains("slawatch_ledger_write_failures_total 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("slawatch_monitor_alerts_active{kind=\"ledger_not_writable\"} 1"),
        "{metrics}"
    );
    assert!(store.events().await.unwrap().is_empty());

    // The disk has room again: everything waiting is written in order, the alert resolved.
    sqlx::query("DROP TRIGGER refuse")
        .execute(pool)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), submitted)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    until("the ledger alert resolved", || {
        !alerts.of(AlertKind::Resolved, "monitor-ledger").is_empty()
    })
    .await;
    support::engine::stop(r).await;
    let kinds: Vec<String> = store
        .events()
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.kind().to_string())
        .collect();
    let at = |k: &str| {
        kinds
            .iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("{k} missing: {kinds:?}"))
    };
    // Its warning (already due when it was read) and its breach, each followed by its
    // delivery record, in the order they happened.
    let delivered: Vec<usize> = (0..kinds.len())
        .filter(|&i| kinds[i] == "alert_delivered")
        .collect();
    assert_eq!(delivered.len(), 2, "{kinds:?}");
    assert!(at("inquiry_opened") < at("inquiry_warned"), "{kinds:?}");
    assert!(at("inquiry_warned") < delivered[0], "{kinds:?}");
    assert!(at("inquiry_breached") < delivered[1], "{kinds:?}");
    assert!(
        at("monitor_alert_raised") < at("monitor_alert_delivered"),
        "{kinds:?}"
    );
    assert!(
        at("monitor_alert_raised") < at("monitor_alert_resolved"),
        "{kinds:?}"
    );
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("inquiry_breached"), 1, "{kinds:?}");
    assert_eq!(count("monitor_alert_raised"), 1, "{kinds:?}");
    assert_eq!(count("monitor_alert_resolved"), 1, "{kinds:?}");
    // Each alert went out once.
    assert_eq!(alerts.of(AlertKind::Breach, id.as_str()).len(), 1);
    assert_eq!(alerts.of(AlertKind::Breach, "monitor-ledger").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_signal_pages_once_per_episode_and_resolves_once_also_across_a_restart() {
    use slawatch::monitor::Signal;
    use slawatch::notify::MonitorProblem;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/ledger.db", dir.path().display());
    let store = Store::open(&url).await.unwrap();
    let clock = slawatch::scheduler::Clock::anchored(t0());
    let alerts = Lateness::new(clock);
    let r = support::engine::start(store.clone(), rules(), alerts.clone(), Setup::at(t0())).await;
    let signal = |failing: bool| Signal {
        problem: MonitorProblem::SourceSilent,
        subject: "imap".into(),
        failing,
        detail: "no successful check for 5 min; down, last error: auth".into(),
    };
    // Said twice, paged once.
    r.signals.send(signal(true)).unwrap();
    r.signals.send(signal(true)).unwrap();
    until("the page", || {
        !alerts
            .of(AlertKind::Breach, "monitor-source-imap")
            .is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(alerts.of(AlertKind::Breach, "monitor-source-imap").len(), 1);
    support::engine::stop(r).await;

    // After a restart it is still active (from the ledger): no second page, and the
    // recovery resolves it once.
    let r = support::engine::start(store.clone(), rules(), alerts.clone(), Setup::at(t0())).await;
    assert!(
        r.shared
            .tracker
            .read()
            .unwrap()
            .monitor_alert("monitor-source-imap")
            .is_some()
    );
    r.signals.send(signal(true)).unwrap();
    r.signals.send(signal(false)).unwrap();
    r.signals.send(signal(false)).unwrap();
    until("the resolution", || {
        !alerts
            .of(AlertKind::Resolved, "monitor-source-imap")
            .is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(alerts.of(AlertKind::Breach, "monitor-source-imap").len(), 1);
    assert_eq!(
        alerts.of(AlertKind::Resolved, "monitor-source-imap").len(),
        1
    );
    support::engine::stop(r).await;
    let kinds: Vec<String> = store
        .events()
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.kind().to_string())
        .filter(|k| k.starts_with("monitor_alert"))
        .collect();
    assert_eq!(
        kinds,
        [
            "monitor_alert_raised",
            "monitor_alert_delivered",
            "monitor_alert_resolved",
            "monitor_alert_delivered"
        ]
    );
}
