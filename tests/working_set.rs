//! "Years of history in megabytes and seconds": the engine over a real SQLite ledger with a
//! one-hour working window. Conversations leave memory as newer evidence comes, come back when
//! a reply or a next message refers to them, and the outcomes are those of an engine that keeps
//! everything. A restart resumes from the snapshot written at shutdown, and a damaged or
//! mismatched snapshot falls back to a full replay with the same state. History that left memory
//! is served by the API from the inquiry projection the engine's commits wrote, on SQLite and
//! on PostgreSQL (a real server started by the harness).

mod support;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use slawatch::notify::{Alert, Delivery, Notifier};
use slawatch::sources::SourceBatch;
use slawatch::store::Store;
use slawatch_core::desk::DeskSettings;
use slawatch_core::tracker::observation::{Address, Mail, Observation};
use slawatch_core::tracker::policy::{Policy, PolicySet};
use slawatch_core::tracker::{Tracker, TrackerRules};
use support::engine::Setup;

const DESK: &str = "support@example.com";
/// Conversations, one every two hours: 60 hours of mail with a one-hour window.
const CONVERSATIONS: i64 = 30;

/// Accepts every alert (what is sent is not this test's subject).
struct Accepting;

impl Notifier for Accepting {
    fn name(&self) -> &str {
        "test"
    }
    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        Box::pin(async move { alerts.iter().map(|_| Ok(())).collect() })
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap()
}

fn rules() -> Arc<TrackerRules> {
    Arc::new(TrackerRules {
        desk: DeskSettings::with_address(DESK),
        policies: PolicySet::single(Policy::default()),
    })
}

fn address(email: &str) -> Address {
    Address {
        name: None,
        email: email.into(),
    }
}

fn customer_mail(k: i64, id: &str, at: DateTime<Utc>, parents: &[String]) -> Observation {
    Observation::MessageReceived(Mail {
        source: "mail".into(),
        folder: "INBOX".into(),
        message_id: format!("<{id}@customer.test>"),
        digest: format!("digest-{id}"),
        delivered_at: at,
        seen_at: at,
        from: Some(address(&format!("customer{k}@customer.test"))),
        to: vec![address(DESK)],
        subject: format!("question {k}"),
        in_reply_to: parents.last().cloned().into_iter().collect(),
        references: parents.to_vec(),
        ..Mail::default()
    })
}

fn desk_reply(k: i64, id: &str, at: DateTime<Utc>, parent: &str) -> Observation {
    Observation::MessageSent(Mail {
        source: "mail".into(),
        folder: "Sent".into(),
        message_id: format!("<{id}@example.com>"),
        digest: format!("digest-{id}"),
        delivered_at: at,
        seen_at: at,
        from: Some(address(DESK)),
        to: vec![address(&format!("customer{k}@customer.test"))],
        subject: format!("Re: question {k}"),
        in_reply_to: vec![parent.to_string()],
        references: vec![parent.to_string()],
        ..Mail::default()
    })
}

/// The mailbox in the order it is read: every conversation's first message, the desk's reply
/// to the even ones within ten minutes, then — two days later — the late evidence that refers
/// to conversations long out of the window: replies to the odd ones (after their deadline),
/// the same first message fetched again, and a customer's next message in an answered one.
fn batches() -> Vec<Vec<Observation>> {
    let first = |k: i64| format!("<first{k}@customer.test>");
    let mut out = Vec::new();
    for k in 0..CONVERSATIONS {
        let at = t0() + Duration::hours(2 * k);
        let mut batch = vec![customer_mail(k, &format!("first{k}"), at, &[])];
        if k % 2 == 0 {
            batch.push(desk_reply(
                k,
                &format!("reply{k}"),
                at + Duration::minutes(10),
                &first(k),
            ));
        }
        out.push(batch);
    }
    let late = t0() + Duration::hours(2 * CONVERSATIONS + 48);
    let mut batch = Vec::new();
    for k in (1..CONVERSATIONS).step_by(2).take(5) {
        // Written in time, read only now (a Sent folder synced late).
        let at = t0() + Duration::hours(2 * k) + Duration::minutes(12);
        batch.push(desk_reply(k, &format!("late{k}"), at, &first(k)));
    }
    // A second reply in a conversation answered long ago: it belongs to that conversation.
    batch.push(desk_reply(
        4,
        "again4",
        late - Duration::minutes(5),
        "<reply4@example.com>",
    ));
    // A re-fetch of bytes already read (same digest): never a second inquiry.
    batch.push(customer_mail(2, "first2", t0() + Duration::hours(4), &[]));
    // A next message in an answered conversation, two days after its reply.
    batch.push(customer_mail(
        0,
        "next0",
        late,
        &[first(0), "<reply0@example.com>".into()],
    ));
    out.push(batch);
    out
}

/// Every inquiry's outcome in the ledger (whatever memory holds): the whole ledger applied.
async fn outcomes(store: &Store) -> Vec<String> {
    let mut all = Tracker::new(rules());
    for entry in store.events().await.unwrap() {
        all.apply(&entry.event);
    }
    described(&all)
}

/// Each inquiry `tracker` holds with its outcome, thread, kind and follow-ups.
fn described(tracker: &Tracker) -> Vec<String> {
    let mut out: Vec<String> = tracker
        .newest_first()
        .map(|i| {
            format!(
                "{} {} {} {:?} thread {} kind {:?} follow-ups {}",
                i.external_id,
                i.state.as_str(),
                i.sla.as_str(),
                i.responded_at,
                i.thread_id,
                i.kind,
                i.follow_ups
            )
        })
        .collect();
    out.sort();
    out
}

/// How many events of each kind the ledger holds.
async fn kinds(store: &Store) -> std::collections::BTreeMap<&'static str, usize> {
    let mut out = std::collections::BTreeMap::new();
    for entry in store.events().await.unwrap() {
        *out.entry(entry.event.kind()).or_default() += 1;
    }
    out
}

/// What memory holds after a start: each inquiry with its outcome.
fn held(tracker: &Tracker) -> Vec<String> {
    let mut out: Vec<String> = tracker
        .newest_first()
        .map(|i| format!("{} {} {}", i.id, i.state.as_str(), i.sla.as_str()))
        .collect();
    out.sort();
    out
}

async fn store_in(dir: &std::path::Path) -> Store {
    Store::open(&format!("sqlite://{}/ledger.db", dir.display()))
        .await
        .unwrap()
}

/// Hands the engine one batch of the mailbox, as its source does.
async fn submit(r: &support::engine::Running, observations: Vec<Observation>) {
    r.sink
        .submit(SourceBatch {
            source: "mail".into(),
            observations,
            cursors: vec![],
            initial_sync_done: true,
        })
        .await
        .unwrap();
}

/// Runs the engine over `store`, reads every batch in order, stops (a snapshot is written at
/// shutdown when a window is set); returns how many threads memory held before the stop.
async fn read_all(store: Store, window: Option<Duration>) -> usize {
    read(store, window, batches()).await
}

/// [`read_all`] for some of the batches.
async fn read(store: Store, window: Option<Duration>, batches: Vec<Vec<Observation>>) -> usize {
    let setup = Setup {
        working_window: window,
        ..Setup::at(t0() + Duration::hours(2 * CONVERSATIONS + 49))
    };
    let r = support::engine::start(store, rules(), Arc::new(Accepting), setup).await;
    for observations in batches {
        submit(&r, observations).await;
    }
    let held = r.shared.tracker.read().unwrap().threads_held();
    support::engine::stop(r).await;
    held
}

async fn count(store: &Store, table: &str) -> i64 {
    let Store::Sqlite(pool) = store else {
        panic!("an SQLite ledger")
    };
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_out_of_the_window_come_back_with_the_same_outcomes() {
    let everything = tempfile::tempdir().unwrap();
    let windowed = tempfile::tempdir().unwrap();
    read_all(store_in(everything.path()).await, None).await;
    let held = read_all(store_in(windowed.path()).await, Some(Duration::hours(1))).await;

    let expected = outcomes(&store_in(everything.path()).await).await;
    let store = store_in(windowed.path()).await;
    assert_eq!(outcomes(&store).await, expected);

    // The same events, kind for kind (a reply matched in memory is not one left unmatched).
    assert_eq!(
        kinds(&store).await,
        kinds(&store_in(everything.path()).await).await
    );
    // The window did its work: the conversations answered in time left memory. What stays:
    // the ten still open, the one with a new message, the five the late replies answered and
    // the one the second reply brought back (they leave at the next look).
    assert!(
        held <= 17,
        "{held} of {CONVERSATIONS} threads still in memory"
    );
    assert!(count(&store, "archived_threads").await >= 14);
    // The late replies, written before the deadline, answered their old inquiries in time (the
    // breach revised); the re-fetch opened nothing.
    let responded_late = expected
        .iter()
        .filter(|o| o.starts_with("<first1@") || o.starts_with("<first3@"))
        .filter(|o| o.contains(" responded met "))
        .count();
    assert_eq!(responded_late, 2, "{expected:#?}");
    assert_eq!(
        expected.len(),
        CONVERSATIONS as usize + 1,
        "one inquiry per conversation and the next message: {expected:#?}"
    );
    assert!(
        expected
            .iter()
            .any(|o| o.starts_with("<next0@") && o.contains("thread <first0@")),
        "the next message joined its old conversation: {expected:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_snapshot_and_a_bad_one_falls_back_to_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let window = Duration::hours(1);
    read_all(store_in(dir.path()).await, Some(window)).await;
    let store = store_in(dir.path()).await;
    assert_eq!(count(&store, "snapshots").await, 1, "written at shutdown");

    let from_snapshot = slawatch::working_set::start(&store, rules(), None, window)
        .await
        .unwrap();
    let head = store.head().await.unwrap().unwrap().0;
    assert!(from_snapshot.snapshot_seq.is_some());
    assert!(
        from_snapshot.replayed < 5,
        "{} rows replayed after the snapshot at {:?} (head {head})",
        from_snapshot.replayed,
        from_snapshot.snapshot_seq
    );

    let Store::Sqlite(pool) = &store else {
        panic!("an SQLite ledger")
    };
    sqlx::query("UPDATE snapshots SET body = '{\"key_check\": 1'")
        .execute(pool)
        .await
        .unwrap();
    let damaged = slawatch::working_set::start(&store, rules(), None, window)
        .await
        .unwrap();
    assert_eq!(damaged.snapshot_seq, None, "a damaged snapshot is not used");
    assert_eq!(damaged.replayed, head as u64);
    assert_eq!(held(&damaged.tracker), held(&from_snapshot.tracker));
    assert_eq!(damaged.deadlines.len(), from_snapshot.deadlines.len());

    // A snapshot of another ledger (its row's hash differs): not used either.
    let good = slawatch::working_set::snapshot_of(&from_snapshot.tracker).unwrap();
    store
        .save_snapshot(good.0, Utc::now(), &good.1)
        .await
        .unwrap();
    sqlx::query("UPDATE snapshots SET head_hash = 'f00d' WHERE seq = ?")
        .bind(good.0)
        .execute(pool)
        .await
        .unwrap();
    let mismatched = slawatch::working_set::start(&store, rules(), None, window)
        .await
        .unwrap();
    assert_eq!(mismatched.snapshot_seq, None);
    assert_eq!(held(&mismatched.tracker), held(&from_snapshot.tracker));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_following_the_ledger_holds_what_the_ledger_says() {
    let dir = tempfile::tempdir().unwrap();
    let window = Duration::hours(1);
    let mut all = batches();
    let rest = all.split_off(20);
    // The active read the first twenty conversations and stopped: a snapshot, and threads in
    // the archive.
    read(store_in(dir.path()).await, Some(window), all).await;
    let store = store_in(dir.path()).await;
    assert!(count(&store, "archived_threads").await > 0);

    // A standby starts from that snapshot, as a replica does, and follows the active's next
    // run (the last conversations, then the late evidence that brings archived ones back)
    // from wherever it stands when each batch is in.
    let started = slawatch::working_set::start_following(&store, rules(), None)
        .await
        .unwrap();
    let mut at = started
        .position()
        .unwrap_or_else(|| panic!("{:?}", started.verification));
    assert!(
        started.snapshot_seq.is_some(),
        "the standby starts from the snapshot"
    );
    let follower = slawatch::engine::Shared::new(
        started.tracker,
        Arc::new(slawatch::telemetry::Metrics::new("test", &[])),
        store.clone(),
        Default::default(),
    );
    let setup = Setup {
        working_window: Some(window),
        ..Setup::at(t0() + Duration::hours(2 * CONVERSATIONS + 49))
    };
    let r = support::engine::start(store.clone(), rules(), Arc::new(Accepting), setup).await;
    let mut applied = 0;
    for observations in rest {
        submit(&r, observations).await;
        applied += slawatch::replica::catch_up(&store, &follower, None, &mut at, started.archived)
            .await
            .unwrap();
    }
    support::engine::stop(r).await;
    applied += slawatch::replica::catch_up(&store, &follower, None, &mut at, true)
        .await
        .unwrap();
    let head = store.head().await.unwrap().unwrap();
    assert_eq!((at.seq, at.hash.clone()), head, "caught up to the head");
    assert!(applied > 0);

    // Every inquiry the standby holds is as the whole ledger says, the conversations the late
    // evidence brought back from the archive included.
    let expected = outcomes(&store).await;
    let holds = described(&follower.tracker.read().unwrap());
    for inquiry in &holds {
        assert!(expected.contains(inquiry), "{inquiry} not in {expected:#?}");
    }
    // first0 and first4 were answered and archived before the standby started; the next
    // message in one and the second reply in the other bring them back.
    for brought_back in ["<first0@", "<first4@", "<next0@", "<first1@", "<first3@"] {
        assert!(
            holds.iter().any(|o| o.starts_with(brought_back)),
            "{brought_back} held by the standby: {holds:#?}"
        );
    }
}

/// The API over `tracker` and `store`, as the daemon serves it (nothing behind it answers acks:
/// these tests only read). The receiver keeps the engine's channel open.
fn api_over(
    tracker: Tracker,
    store: Store,
) -> (
    slawatch::http::AppState,
    tokio::sync::mpsc::Receiver<slawatch::engine::Command>,
) {
    use slawatch::http::{Access, AppState, Tokens};
    let metrics = Arc::new(slawatch::telemetry::Metrics::new(
        "test",
        &["mail".to_string()],
    ));
    let shared = Arc::new(slawatch::engine::Shared::new(
        tracker,
        metrics,
        store,
        std::collections::BTreeSet::new(),
    ));
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let state = AppState::new(
        shared,
        slawatch::engine::EngineHandle::new(tx),
        Access::with_tokens(Tokens::default()),
    );
    (state, rx)
}

async fn get(state: &slawatch::http::AppState, uri: &str) -> (u16, String) {
    use tower::ServiceExt;
    let response = slawatch::http::router(state.clone())
        .oneshot(
            axum::http::Request::get(uri)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap_or_else(|e| match e {});
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// After the engine read everything with a one-hour window, a restart holds the working set
/// only; the API over it (history from the projection the commits wrote) answers every list
/// and every old closed inquiry exactly as the API over a tracker holding everything.
async fn history_that_left_memory_is_served_from_the_projection(store: Store) {
    use slawatch_core::tracker::InquiryState;
    let window = Duration::hours(1);
    read_all(store.clone(), Some(window)).await;

    // The projection the commits wrote is the one the ledger rebuilds.
    let scratch = Store::open("sqlite::memory:").await.unwrap();
    let report = slawatch::store::projection::check(&store, rules(), &scratch)
        .await
        .unwrap();
    assert_eq!(
        (report.differences, report.skipped_newer),
        (0, 0),
        "{report:?}"
    );
    assert!(report.rows_compared > CONVERSATIONS as u64, "{report:?}");

    let working = slawatch::working_set::start(&store, rules(), None, window)
        .await
        .unwrap()
        .tracker;
    let (everything, _) = slawatch::engine::replay(&store, rules()).await.unwrap();
    let gone: Vec<(String, InquiryState)> = everything
        .newest_first()
        .filter(|i| working.get(&i.id).is_none())
        .map(|i| (i.id.to_string(), i.state))
        .collect();
    assert!(
        gone.iter()
            .filter(|(_, s)| *s == InquiryState::Responded)
            .count()
            >= 10,
        "old closed inquiries left memory: {gone:?}"
    );
    let (today, _today_rx) = api_over(everything, store.clone());
    let (now, _now_rx) = api_over(working, store.clone());

    for query in [
        "limit=7",
        "state=responded&limit=4",
        "state=open&limit=3",
        "channel=email&limit=5",
    ] {
        let mut uri = format!("/api/v1/inquiries?{query}");
        let mut pages = 0;
        loop {
            let (status, expected) = get(&today, &uri).await;
            assert_eq!(status, 200, "{uri}: {expected}");
            let (status, got) = get(&now, &uri).await;
            assert_eq!(status, 200, "{uri}: {got}");
            assert_eq!(got, expected, "{uri}");
            pages += 1;
            let page: serde_json::Value = serde_json::from_str(&got).unwrap();
            match page["next_cursor"].as_str() {
                Some(c) => uri = format!("/api/v1/inquiries?{query}&cursor={c}"),
                None => break,
            }
        }
        assert!(pages >= 1, "{query}");
    }
    let (_, all) = get(&now, "/api/v1/inquiries?limit=1000").await;
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    assert_eq!(
        all["inquiries"].as_array().map(Vec::len),
        Some(CONVERSATIONS as usize + 1),
        "every inquiry listed once"
    );
    for (id, state) in &gone {
        let uri = format!("/api/v1/inquiries/{id}");
        let (status, expected) = get(&today, &uri).await;
        assert_eq!(status, 200, "{uri}");
        let (status, got) = get(&now, &uri).await;
        assert_eq!(status, 200, "{uri}: not found though it left memory only");
        assert_eq!(got, expected, "{uri}");
        let body: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(body["state"], state.as_str());
        assert!(
            body["events"].as_array().is_some_and(|e| !e.is_empty()),
            "{uri}: its history is read from the ledger"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_that_left_memory_is_served_from_the_projection_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    history_that_left_memory_is_served_from_the_projection(store_in(dir.path()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_that_left_memory_is_served_from_the_projection_on_postgresql() {
    let url = support::postgres::shared().fresh_url();
    history_that_left_memory_is_served_from_the_projection(Store::open(&url).await.unwrap()).await;
}

/// The daemon turns transparent huge pages off for itself: with them a 2 MiB page is resident as
/// soon as one byte of it is used, about 20 MiB more for a month's working set. An operator's
/// `MIMALLOC_ALLOW_THP` decides instead. Read from the kernel's view of the running process.
#[test]
fn the_daemon_runs_without_transparent_huge_pages_unless_the_operator_allows_them() {
    use support::slawatchd::{Options, Slawatch};
    for (env, expected) in [(&[][..], "0"), (&[("MIMALLOC_ALLOW_THP", "1")][..], "1")] {
        let daemon = Slawatch::start(Options {
            env,
            ..Options::default()
        });
        let enabled = support::process::status_field(daemon.pid().unwrap(), "THP_enabled:")
            .expect("the kernel reports THP_enabled for the process");
        assert_eq!(enabled, expected, "THP_enabled with {env:?}");
    }
}
