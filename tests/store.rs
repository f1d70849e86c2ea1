//! Store tests on both backends: round trips, atomic batches, reopen, and tampering done the way
//! an intruder would do it, with the database's own command-line tool (`sqlite3` on a real
//! SQLite file; `psql` as the superuser on a real PostgreSQL 15 started by the harness, one
//! database per test). Each test is written once, taking the [`Backend`], and run on both
//! (`store::<test>::sqlite`, `store::<test>::postgres`).
//!
//! The tamper tests need `sqlite3` (and the hand-recomputation test `xxd` and `sha256sum`) on
//! `PATH`, and the PostgreSQL server binaries (see `support::postgres`); they fail, never skip,
//! when one is missing.

mod support;

use std::path::{Path, PathBuf};

use std::process::Command;
use support::postgres;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use slawatch::sources::CursorUpdate;
use slawatch::store::{GENESIS, LedgerEntry, Store, StoreError, Verification, link_hash};
use slawatch_core::domain::{Channel, InquiryId, Language};
use slawatch_core::tracker::event::{
    Event, InquiryKind, InquiryOpened, LanguageSource, LinkRole, UnmatchedReason,
};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
}

fn opened(id: &str, subject: &str, at: DateTime<Utc>) -> Event {
    Event::InquiryOpened(Box::new(InquiryOpened {
        inquiry_id: InquiryId(id.into()),
        channel: Channel::Email,
        source: "mail".into(),
        external_id: format!("<{id}@customer.example>"),
        thread_id: format!("<{id}@customer.example>"),
        digest: Some(format!("digest-{id}")),
        customer: "x@customer.example".into(),
        customer_name: Some("Customer".into()),
        subject: subject.into(),
        language: Language::Ar,
        language_source: LanguageSource::Text,
        reply_to: Vec::new(),
        received_at: at,
        first_seen_at: at + Duration::seconds(3),
        date_header: None,
        deadline_at: at + Duration::minutes(15),
        warn_at: vec![at + Duration::minutes(10)],
        policy: "default@1".into(),
        kind: InquiryKind::First,
        call: None,
    }))
}

fn breached(id: &str, at: DateTime<Utc>) -> Event {
    Event::InquiryBreached {
        inquiry_id: InquiryId(id.into()),
        at,
    }
}

/// `n` varied events: with and without an inquiry id, with non-ASCII text.
fn sample(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let at = t0() + Duration::seconds(i as i64);
            let id = format!("e{i}");
            match i % 5 {
                0 => opened(&id, "استفسار عن الفاتورة — ¿ayuda?", at),
                1 => Event::InquiryWarned {
                    inquiry_id: InquiryId(id.into()),
                    index: 0,
                    at,
                },
                2 => Event::MessageLinked {
                    external_id: format!("<r{i}@desk.example>"),
                    digest: format!("digest-r{i}"),
                    thread_id: "<t@x>".into(),
                    at,
                    role: LinkRole::Reply,
                },
                3 => Event::ReplyUnmatched {
                    external_id: format!("<u{i}@desk.example>"),
                    digest: format!("digest-u{i}"),
                    source: "mail".into(),
                    at,
                    reason: UnmatchedReason::NotThreaded,
                    responder: "support@desk.example".into(),
                    references: Vec::new(),
                    recipients: Vec::new(),
                },
                _ => breached(&id, at),
            }
        })
        .collect()
}

fn cursor(source: &str, key: &str, value: serde_json::Value) -> (String, CursorUpdate) {
    (
        source.to_string(),
        CursorUpdate {
            key: key.to_string(),
            value,
        },
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Writes each test once for both backends: `both!(name)` runs `name(Backend::Sqlite)` as
/// `name::sqlite` and `name(Backend::Postgres)` as `name::postgres`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

/// A fresh ledger: an SQLite file in a temp dir, or a new database on the shared PostgreSQL.
struct TempDb {
    backend: Backend,
    _dir: tempfile::TempDir,
    path: PathBuf,
    pg_url: String,
}

impl TempDb {
    fn new(backend: Backend) -> TempDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state").join("ledger.db");
        let pg_url = match backend {
            Backend::Sqlite => String::new(),
            Backend::Postgres => postgres::shared().fresh_url(),
        };
        TempDb {
            backend,
            _dir: dir,
            path,
            pg_url,
        }
    }

    fn url(&self) -> String {
        match self.backend {
            Backend::Sqlite => format!("sqlite://{}", self.path.display()),
            Backend::Postgres => self.pg_url.clone(),
        }
    }

    async fn open(&self) -> Store {
        Store::open(&self.url()).await.expect("open store")
    }

    /// Runs `sql` behind the store's back with the database's own tool (`sqlite3`; `psql` as
    /// the superuser): `(success, stdout, stderr)`.
    fn sql_raw(&self, sql: &str) -> (bool, String, String) {
        match self.backend {
            Backend::Sqlite => {
                let out = sqlite3(&self.path, sql);
                (
                    out.status.success(),
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            }
            Backend::Postgres => {
                let db = postgres::Postgres::database_of(&self.pg_url);
                let out = postgres::shared().psql_raw(db, sql);
                (
                    out.status.success(),
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            }
        }
    }

    /// [`TempDb::sql_raw`], which must succeed; its output.
    fn sql(&self, sql: &str) -> String {
        let (ok, out, err) = self.sql_raw(sql);
        assert!(ok, "{sql:?} failed: {err}");
        out
    }

    /// A store holding `n` sample events in batches of 4, closed again.
    async fn with_events(backend: Backend, n: usize) -> TempDb {
        let db = TempDb::new(backend);
        let store = db.open().await;
        for (i, chunk) in sample(n).chunks(4).enumerate() {
            store
                .append(t0() + Duration::minutes(i as i64), chunk, &[])
                .await
                .expect("append");
        }
        store.close().await;
        db
    }
}

/// Runs `sqlite3 db sql`; panics if the tool is missing.
fn sqlite3(db: &Path, sql: &str) -> std::process::Output {
    Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .unwrap_or_else(|e| panic!("the sqlite3 command-line tool is required by this test: {e}"))
}

async fn verify_file(db: &TempDb) -> Verification {
    let store = db.open().await;
    let v = store.verify().await.expect("verify runs");
    store.close().await;
    v
}

fn expect_broken(v: Verification, at: i64) -> (String, String, String) {
    match v {
        Verification::Broken {
            seq,
            expected,
            found,
            problem,
        } => {
            assert_eq!(seq, at, "broken at the wrong seq: {problem}");
            (expected, found, problem)
        }
        Verification::Intact { .. } => panic!("tampering at seq {at} was not detected"),
    }
}

async fn append_and_replay_round_trip(b: Backend) {
    let db = TempDb::new(b);
    let store = db.open().await;
    assert_eq!(store.head().await.unwrap(), None);
    let events = sample(12);
    let mut written: Vec<LedgerEntry> = Vec::new();
    for (i, chunk) in events.chunks(5).enumerate() {
        let at = t0() + Duration::nanoseconds(1_234_567_891) + Duration::minutes(i as i64);
        let entries = store.append(at, chunk, &[]).await.unwrap();
        assert_eq!(entries.len(), chunk.len());
        // The returned instant is what was stored: microsecond precision.
        assert!(
            entries
                .iter()
                .all(|e| e.recorded_at.timestamp_subsec_nanos() == 234_567_000)
        );
        written.extend(entries);
    }
    let read = store.events().await.unwrap();
    assert_eq!(read, written);
    assert_eq!(
        read.iter().map(|e| e.event.clone()).collect::<Vec<_>>(),
        events
    );
    assert_eq!(
        read.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=12).collect::<Vec<_>>()
    );
    assert_eq!(read[0].prev_hash, GENESIS);
    for pair in read.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    assert_eq!(
        store.head().await.unwrap(),
        Some((12, read[11].hash.clone()))
    );

    let mine = store
        .events_for_inquiry(&InquiryId("e5".into()), (1, 12))
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].seq, 6);
    assert!(matches!(mine[0].event, Event::InquiryOpened(_)));
    // Only the given seq range is read.
    let outside = store
        .events_for_inquiry(&InquiryId("e5".into()), (7, 12))
        .await
        .unwrap();
    assert!(outside.is_empty(), "{outside:?}");

    let page = store.events_after(10, 100).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![11, 12]);

    let mut seen = 0;
    let n = store
        .for_each_event(|e| {
            seen += 1;
            assert_eq!(e.seq, seen);
            Ok::<(), StoreError>(())
        })
        .await
        .unwrap();
    assert_eq!(n, 12);
}

async fn replay_pages_through_more_than_one_page(b: Backend) {
    let db = TempDb::new(b);
    let store = db.open().await;
    let events: Vec<Event> = (0..25_003)
        .map(|i| breached(&format!("e{i}"), t0()))
        .collect();
    for chunk in events.chunks(5_000) {
        store.append(t0(), chunk, &[]).await.unwrap();
    }
    let mut last = 0;
    let n = store
        .for_each_event(|e| {
            assert_eq!(e.seq, last + 1);
            last = e.seq;
            Ok::<(), StoreError>(())
        })
        .await
        .unwrap();
    assert_eq!(n, 25_003);
    match store.verify().await.unwrap() {
        Verification::Intact { events, head_hash } => {
            assert_eq!(events, 25_003);
            assert_eq!(Some((25_003, head_hash)), store.head().await.unwrap());
        }
        broken => panic!("{broken:?}"),
    }
}

async fn cursors_are_committed_with_events_and_upserted(b: Backend) {
    let db = TempDb::new(b);
    let store = db.open().await;
    assert_eq!(store.cursor("mail", "INBOX").await.unwrap(), None);
    store
        .append(
            t0(),
            &sample(2),
            &[
                cursor("mail", "INBOX", json!({"uidvalidity": 7, "last_uid": 10})),
                cursor("mail", "Sent", json!({"uidvalidity": 7, "last_uid": 3})),
                cursor("calls", "log", json!({"offset": 100})),
            ],
        )
        .await
        .unwrap();
    // Cursor-only commit: no event, no chain change.
    let head = store.head().await.unwrap();
    let none = store
        .append(
            t0(),
            &[],
            &[cursor(
                "mail",
                "INBOX",
                json!({"uidvalidity": 7, "last_uid": 12}),
            )],
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(store.head().await.unwrap(), head);
    assert_eq!(
        store.cursor("mail", "INBOX").await.unwrap(),
        Some(json!({"uidvalidity": 7, "last_uid": 12}))
    );
    assert_eq!(
        store.cursors("mail").await.unwrap(),
        vec![
            (
                "INBOX".to_string(),
                json!({"uidvalidity": 7, "last_uid": 12})
            ),
            ("Sent".to_string(), json!({"uidvalidity": 7, "last_uid": 3})),
        ]
    );
    assert_eq!(store.cursors("nobody").await.unwrap(), vec![]);
    assert!(store.append(t0(), &[], &[]).await.unwrap().is_empty());
    // A null value removes the key (a Maildir file that left its folder).
    store
        .append(
            t0(),
            &[],
            &[cursor("mail", "Sent", serde_json::Value::Null)],
        )
        .await
        .unwrap();
    assert_eq!(store.cursor("mail", "Sent").await.unwrap(), None);
    assert_eq!(store.cursors("mail").await.unwrap().len(), 1);
}

async fn a_failing_batch_leaves_neither_events_nor_cursors(b: Backend) {
    let db = TempDb::new(b);
    let store = db.open().await;
    store
        .append(t0(), &sample(3), &[cursor("mail", "INBOX", json!(1))])
        .await
        .unwrap();
    let head = store.head().await.unwrap();

    // Make the database refuse part of a batch, after other rows of it were written.
    match b {
        Backend::Sqlite => db.sql(
            "CREATE TRIGGER refuse_cursor BEFORE INSERT ON cursors WHEN NEW.source = 'broken' \
             BEGIN SELECT RAISE(ABORT, 'refused for the test'); END; \
             CREATE TRIGGER refuse_event BEFORE INSERT ON ledger WHEN NEW.inquiry_id = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'refused for the test'); END;",
        ),
        Backend::Postgres => db.sql(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused for the test'; END $$; \
             CREATE TRIGGER refuse_cursor BEFORE INSERT ON cursors FOR EACH ROW \
             WHEN (NEW.source = 'broken') EXECUTE FUNCTION refuse(); \
             CREATE TRIGGER refuse_event BEFORE INSERT ON ledger FOR EACH ROW \
             WHEN (NEW.inquiry_id = 'poison') EXECUTE FUNCTION refuse();",
        ),
    };

    // A cursor fails after every event and another cursor were inserted.
    let err = store
        .append(
            t0(),
            &sample(5),
            &[
                cursor("mail", "INBOX", json!(2)),
                cursor("broken", "x", json!(0)),
            ],
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("upsert cursor"), "{err}");
    // An event fails in the middle of a batch.
    let mut events = sample(2);
    events.push(breached("poison", t0()));
    events.extend(sample(2));
    let err = store
        .append(t0(), &events, &[cursor("mail", "INBOX", json!(3))])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("insert event"), "{err}");

    assert_eq!(store.head().await.unwrap(), head);
    assert_eq!(store.events().await.unwrap().len(), 3);
    assert_eq!(store.cursor("mail", "INBOX").await.unwrap(), Some(json!(1)));
    assert_eq!(store.cursor("broken", "x").await.unwrap(), None);

    // And the store goes on from the same head.
    let next = store.append(t0(), &sample(1), &[]).await.unwrap();
    assert_eq!(next[0].seq, 4);
    assert_eq!(Some(next[0].prev_hash.clone()), head.map(|(_, h)| h));
}

async fn a_cancelled_append_is_all_or_nothing(b: Backend) {
    let db = TempDb::new(b);
    let store = db.open().await;
    let events = sample(500);
    for delay_us in [0u64, 50, 200, 1_000, 5_000] {
        let before = store.events().await.unwrap().len();
        let _ = tokio::time::timeout(
            std::time::Duration::from_micros(delay_us),
            store.append(t0(), &events, &[cursor("mail", "INBOX", json!(before))]),
        )
        .await;
        // The database may still be finishing the cancelled transaction on its connection's
        // worker: a write of its own is ordered after it, so both reads below see its end.
        store
            .append(t0(), &[], &[cursor("barrier", "x", json!(delay_us))])
            .await
            .unwrap();
        let after = store.events().await.unwrap().len();
        assert!(
            after == before || after == before + 500,
            "{before} -> {after}"
        );
        let cursor = store.cursor("mail", "INBOX").await.unwrap();
        assert_eq!(cursor.is_some_and(|c| c == json!(before)), after > before);
    }
    assert!(matches!(
        store.verify().await.unwrap(),
        Verification::Intact { .. }
    ));
    store.close().await;
}

async fn concurrent_appends_do_not_fork_the_chain(b: Backend) {
    let db = TempDb::new(b);
    let store = db.open().await;
    let mut tasks = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                store
                    .append(t0(), &[breached(&format!("w{w}-{i}"), t0())], &[])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    match store.verify().await.unwrap() {
        Verification::Intact { events, .. } => assert_eq!(events, 100),
        broken => panic!("{broken:?}"),
    }
    store.close().await;
}

#[tokio::test]
async fn a_new_ledger_has_16_kib_pages_and_no_random_key_index() {
    let db = TempDb::new(Backend::Sqlite);
    let store = db.open().await;
    let Store::Sqlite(pool) = &store else {
        unreachable!()
    };
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(page_size, 16 * 1024);
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    // The one index besides the keys' is the desk's record: a partial index on seq, which
    // grows at its end as rows are appended.
    assert!(
        indexes
            .iter()
            .all(|name| name.starts_with("sqlite_autoindex") || name == "ledger_record"),
        "{indexes:?}"
    );
    let record: String =
        sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'ledger_record'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(
        record.contains("ON ledger (seq) WHERE kind IN ("),
        "{record}"
    );
    store.close().await;
}

async fn reopen_after_close_keeps_the_chain(b: Backend) {
    let db = TempDb::new(b);
    let file = b == Backend::Sqlite;
    assert!(!db.path.exists());
    let store = db.open().await;
    let first = store
        .append(t0(), &sample(3), &[cursor("mail", "INBOX", json!(3))])
        .await
        .unwrap();
    store.close().await;
    assert_eq!(
        db.path.exists(),
        file,
        "file and parent directory are created"
    );

    let store = db.open().await;
    assert_eq!(
        store.head().await.unwrap(),
        Some((3, first[2].hash.clone()))
    );
    assert_eq!(store.cursor("mail", "INBOX").await.unwrap(), Some(json!(3)));
    let more = store.append(t0(), &sample(2), &[]).await.unwrap();
    assert_eq!(more[0].seq, 4);
    assert_eq!(more[0].prev_hash, first[2].hash);
    store.close().await;

    match verify_file(&db).await {
        Verification::Intact { events, head_hash } => {
            assert_eq!(events, 5);
            assert_eq!(head_hash, more[1].hash);
        }
        broken => panic!("{broken:?}"),
    }
}

async fn an_intact_ledger_verifies_with_its_head_hash(b: Backend) {
    let db = TempDb::with_events(b, 10).await;
    let store = db.open().await;
    let (seq, hash) = store.head().await.unwrap().unwrap();
    assert_eq!(seq, 10);
    assert_eq!(
        store.verify().await.unwrap(),
        Verification::Intact {
            events: 10,
            head_hash: hash
        }
    );
    store.close().await;

    let empty_db = TempDb::new(b);
    let empty = empty_db.open().await;
    assert_eq!(
        empty.verify().await.unwrap(),
        Verification::Intact {
            events: 0,
            head_hash: GENESIS.to_string()
        }
    );
}

async fn a_plain_update_or_delete_is_refused(b: Backend) {
    let db = TempDb::with_events(b, 3).await;
    let (ok, _, err) = db.sql_raw("UPDATE ledger SET kind = 'x' WHERE seq = 2");
    assert!(!ok);
    assert!(err.contains("append-only"), "{err}");
    let (ok, _, err) = db.sql_raw("DELETE FROM ledger WHERE seq = 3");
    assert!(!ok);
    assert!(err.contains("append-only"), "{err}");
    if b == Backend::Postgres {
        let (ok, _, err) = db.sql_raw("TRUNCATE ledger");
        assert!(!ok);
        assert!(err.contains("append-only"), "{err}");
    }
    assert!(matches!(
        verify_file(&db).await,
        Verification::Intact { events: 3, .. }
    ));
}

/// Removes the append-only guards, as an intruder would, then runs `sql`.
fn tamper(db: &TempDb, sql: &str) {
    let guards = match db.backend {
        Backend::Sqlite => {
            "DROP TRIGGER IF EXISTS ledger_no_update; DROP TRIGGER IF EXISTS ledger_no_delete;"
        }
        Backend::Postgres => "ALTER TABLE ledger DISABLE TRIGGER USER;",
    };
    db.sql(&format!("{guards} {sql}"));
}

async fn a_changed_payload_breaks_at_exactly_that_seq(b: Backend) {
    let db = TempDb::with_events(b, 10).await;
    let stored_hash = db.sql("SELECT hash FROM ledger WHERE seq = 6");
    tamper(
        &db,
        "UPDATE ledger SET payload = replace(payload, '\"language\":\"ar\"', '\"language\":\"en\"') WHERE seq = 6",
    );
    let (expected, found, problem) = expect_broken(verify_file(&db).await, 6);
    assert_eq!(found, stored_hash.trim());
    assert_eq!(expected.len(), 64);
    assert!(problem.contains("content"), "{problem}");
}

async fn a_changed_timestamp_or_kind_breaks_at_that_seq(b: Backend) {
    let db = TempDb::with_events(b, 10).await;
    tamper(
        &db,
        "UPDATE ledger SET recorded_at = '2026-03-01T09:01:00.000001Z' WHERE seq = 4",
    );
    expect_broken(verify_file(&db).await, 4);

    let db = TempDb::with_events(b, 10).await;
    tamper(
        &db,
        "UPDATE ledger SET kind = 'inquiry_warned' WHERE seq = 5",
    );
    expect_broken(verify_file(&db).await, 5);
}

async fn a_changed_inquiry_index_is_detected(b: Backend) {
    let db = TempDb::with_events(b, 10).await;
    tamper(&db, "UPDATE ledger SET inquiry_id = 'e999' WHERE seq = 5");
    let (expected, found, _) = expect_broken(verify_file(&db).await, 5);
    assert_eq!((expected.as_str(), found.as_str()), ("e4", "e999"));
}

async fn a_deleted_row_breaks_the_chain_at_the_next_seq(b: Backend) {
    let db = TempDb::with_events(b, 10).await;
    tamper(&db, "DELETE FROM ledger WHERE seq = 5");
    let (_, _, problem) = expect_broken(verify_file(&db).await, 6);
    assert!(problem.contains("missing"), "{problem}");

    // Deleting and renumbering the rest to hide the gap changes every later hash.
    let db = TempDb::with_events(b, 10).await;
    tamper(
        &db,
        "DELETE FROM ledger WHERE seq = 5; UPDATE ledger SET seq = seq - 1 WHERE seq > 5",
    );
    expect_broken(verify_file(&db).await, 5);

    // Deleting the first row.
    let db = TempDb::with_events(b, 10).await;
    tamper(&db, "DELETE FROM ledger WHERE seq = 1");
    expect_broken(verify_file(&db).await, 2);
}

async fn reordered_rows_break_the_chain(b: Backend) {
    let db = TempDb::with_events(b, 10).await;
    // Swap the contents of seq 3 and 4, each keeping its own hash fields.
    tamper(
        &db,
        "UPDATE ledger SET seq = -3 WHERE seq = 3; \
         UPDATE ledger SET seq = 3 WHERE seq = 4; \
         UPDATE ledger SET seq = 4 WHERE seq = -3;",
    );
    expect_broken(verify_file(&db).await, 3);
}

async fn forged_rows_are_detected(b: Backend) {
    let db = TempDb::with_events(b, 10).await;
    let store = db.open().await;
    let (head_seq, head_hash) = store.head().await.unwrap().unwrap();
    store.close().await;
    let seq = head_seq + 1;
    let at = "2026-03-01T10:00:00.000000Z";
    let payload = serde_json::to_string(&breached("e3", t0())).unwrap();
    let insert = |prev: &str, hash: &str| {
        format!(
            "INSERT INTO ledger (seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash) \
             VALUES ({seq}, '{at}', 'inquiry_breached', 'e3', '{payload}', '{prev}', '{hash}')"
        )
    };

    // A well-formed hash over the wrong predecessor (as if chained to an empty ledger).
    let wrong = link_hash(GENESIS, seq, at, "inquiry_breached", &payload);
    db.sql(&insert(GENESIS, &wrong));
    let (expected, found, problem) = expect_broken(verify_file(&db).await, seq);
    assert_eq!(
        (expected.as_str(), found.as_str()),
        (head_hash.as_str(), GENESIS)
    );
    assert!(problem.contains("prev_hash"), "{problem}");

    // The right link, but a hash computed over the wrong predecessor.
    tamper(&db, &format!("DELETE FROM ledger WHERE seq = {seq}"));
    db.sql(&insert(&head_hash, &wrong));
    let (expected, found, _) = expect_broken(verify_file(&db).await, seq);
    assert_eq!(found, wrong);
    assert_eq!(
        expected,
        link_hash(&head_hash, seq, at, "inquiry_breached", &payload)
    );

    // A row slipped in before the chain starts.
    let db = TempDb::with_events(b, 3).await;
    db.sql(&format!(
        "INSERT INTO ledger (seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash) \
             VALUES (0, '{at}', 'inquiry_breached', 'e3', '{payload}', '{GENESIS}', '{wrong}')"
    ));
    let (_, _, problem) = expect_broken(verify_file(&db).await, 0);
    assert!(problem.contains("out of order"), "{problem}");
}

async fn an_unreadable_payload_is_an_error_naming_its_seq(b: Backend) {
    let db = TempDb::with_events(b, 3).await;
    let store = db.open().await;
    let (_, head_hash) = store.head().await.unwrap().unwrap();
    store.close().await;
    // Correctly chained, so verify accepts it; replay must refuse it without panicking.
    let at = "2026-03-01T10:00:00.000000Z";
    let payload = r#"{"type":"from_the_future","x":1}"#;
    let hash = link_hash(&head_hash, 4, at, "from_the_future", payload);
    db.sql(
        &format!(
            "INSERT INTO ledger VALUES (4, '{at}', 'from_the_future', NULL, '{payload}', '{head_hash}', '{hash}')"
        ),
    );
    let store = db.open().await;
    assert!(matches!(
        store.verify().await.unwrap(),
        Verification::Intact { events: 4, .. }
    ));
    match store.events().await {
        Err(StoreError::CorruptRow { seq: 4, problem }) => {
            assert!(problem.contains("payload"), "{problem}")
        }
        other => panic!("unexpected {other:?}"),
    }
    store.close().await;
}

#[tokio::test]
async fn an_auditor_can_recompute_a_hash_with_sqlite3_and_sha256sum() {
    let db = TempDb::with_events(Backend::Sqlite, 6).await;
    // Seq 6 is an InquiryOpened with an Arabic subject.
    let script = format!(
        "sqlite3 '{}' \"SELECT hex(prev_hash || seq || char(10) || recorded_at || char(10) || kind || char(10) || payload) FROM ledger WHERE seq = 6\" | xxd -r -p | sha256sum | cut -d' ' -f1",
        db.path.display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recomputed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        recomputed.trim().len(),
        64,
        "sqlite3, xxd and sha256sum are required: {recomputed:?}"
    );
    let stored = db.sql("SELECT hash FROM ledger WHERE seq = 6");
    assert_eq!(recomputed.trim(), stored.trim());
}

/// On PostgreSQL the database recomputes every hash itself: `sha256` over the same bytes.
#[tokio::test]
async fn an_auditor_can_recompute_every_hash_with_psql_alone() {
    let db = TempDb::with_events(Backend::Postgres, 12).await;
    let recomputed = db.sql(
        "SELECT encode(sha256(convert_to(prev_hash || seq || chr(10) || recorded_at || chr(10) \
         || kind || chr(10) || payload, 'UTF8')), 'hex') FROM ledger WHERE seq = 6",
    );
    let stored = db.sql("SELECT hash FROM ledger WHERE seq = 6");
    assert_eq!(recomputed.trim().len(), 64, "{recomputed:?}");
    assert_eq!(recomputed.trim(), stored.trim());
    // The whole chain: every hash and every link.
    let bad = db.sql(
        "SELECT count(*) FROM ledger l LEFT JOIN ledger p ON p.seq = l.seq - 1 \
         WHERE l.hash <> encode(sha256(convert_to(l.prev_hash || l.seq || chr(10) || l.recorded_at \
               || chr(10) || l.kind || chr(10) || l.payload, 'UTF8')), 'hex') \
            OR l.prev_hash <> coalesce(p.hash, repeat('0', 64))",
    );
    assert_eq!(bad.trim(), "0");
}

#[tokio::test]
async fn unreachable_and_invalid_urls_are_clear_and_redacted() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = Store::open(&format!("postgres://sla:hunter2@127.0.0.1:{port}/sla"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::NoServer { .. }), "{msg}");
    assert!(
        msg.contains(&format!("postgres://sla:***@127.0.0.1:{port}/sla")),
        "{msg}"
    );
    assert!(msg.contains("refused"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    let err = Store::open("postgres://sla:hunter2@h/sla?sslmode=require")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
    assert!(err.to_string().contains("verify-full"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let err = Store::open("mysql://u:p@h/db").await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
    assert!(!err.to_string().contains(":p@"), "{err}");
}

/// The working set's side of the store (`src/store/archive.rs`): a replay files the threads
/// that left memory, a snapshot names its row, and a restart from it holds what a full replay
/// holds; archived threads are found by any of their keys and rebuilt from their rows.
async fn the_working_set_archive_and_snapshot_round_trip(b: Backend) {
    use slawatch_core::desk::DeskSettings;
    use slawatch_core::tracker::TrackerRules;
    use slawatch_core::tracker::policy::{Policy, PolicySet};
    use std::sync::Arc;
    let db = TempDb::new(b);
    let store = db.open().await;
    // 3,000 inquiries over 25 hours; a one-hour window keeps the last hour's 120 or so.
    support::history::write(&store, 3_000, 5, None)
        .await
        .unwrap();
    let rules = Arc::new(TrackerRules {
        desk: DeskSettings::with_address("support@desk.example"),
        policies: PolicySet::single(Policy::default()),
    });
    let window = Duration::hours(1);
    let held = |t: &slawatch_core::tracker::Tracker| {
        let mut ids: Vec<String> = t
            .newest_first()
            .map(|i| format!("{} {}", i.id, i.state.as_str()))
            .collect();
        ids.sort();
        ids
    };
    let full = slawatch::working_set::start(&store, rules.clone(), None, window)
        .await
        .unwrap();
    assert_eq!(full.snapshot_seq, None);
    assert!(matches!(full.verification, Verification::Intact { .. }));
    assert!(full.archived);
    assert!(
        full.tracker.len() < 200,
        "{} inquiries held of 3,000",
        full.tracker.len()
    );
    let (seq, body) = slawatch::working_set::snapshot_of(&full.tracker).unwrap();
    store.save_snapshot(seq, t0(), &body).await.unwrap();
    let resumed = slawatch::working_set::start(&store, rules, None, window)
        .await
        .unwrap();
    assert_eq!(resumed.snapshot_seq, Some(seq));
    assert_eq!(resumed.replayed, 0);
    assert_eq!(held(&resumed.tracker), held(&full.tracker));
    assert_eq!(resumed.deadlines.len(), full.deadlines.len());

    // The first mail inquiry's conversation, by its Message-ID's key: its rows rebuild it.
    let key = slawatch_core::tracker::state::key64("<m1@customer.example>");
    let found = store.archived_threads(&[key]).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].thread, "<m1@customer.example>");
    assert_eq!(found[0].keys, vec![key]);
    let events = store.events_at(&found[0].seqs).await.unwrap();
    assert_eq!(
        events.iter().map(|(_, e)| e.kind()).collect::<Vec<_>>(),
        ["inquiry_opened", "inquiry_responded", "message_linked"]
    );
    // A key nobody filed finds nothing; a missing row is an error, not a silent gap.
    assert!(store.archived_threads(&[7]).await.unwrap().is_empty());
    assert!(store.events_at(&[1, seq + 10]).await.is_err());
}

both!(
    the_working_set_archive_and_snapshot_round_trip,
    append_and_replay_round_trip,
    replay_pages_through_more_than_one_page,
    cursors_are_committed_with_events_and_upserted,
    a_failing_batch_leaves_neither_events_nor_cursors,
    a_cancelled_append_is_all_or_nothing,
    concurrent_appends_do_not_fork_the_chain,
    reopen_after_close_keeps_the_chain,
    an_intact_ledger_verifies_with_its_head_hash,
    a_plain_update_or_delete_is_refused,
    a_changed_payload_breaks_at_exactly_that_seq,
    a_changed_timestamp_or_kind_breaks_at_that_seq,
    a_changed_inquiry_index_is_detected,
    a_deleted_row_breaks_the_chain_at_the_next_seq,
    reordered_rows_break_the_chain,
    forged_rows_are_detected,
    an_unreadable_payload_is_an_error_naming_its_seq,
);

/// The projection rows a commit writes in its transaction are the rows a rebuild from the
/// ledger writes; a commit that fails writes none; an edited row is found by the check.
async fn the_projection_is_written_with_its_events_and_agrees_with_the_ledger(b: Backend) {
    use slawatch::store::Sealing;
    use slawatch::store::projection::{check, rebuild};
    use slawatch_core::tracker::Inquiry;

    let db = TempDb::new(b);
    let store = db.open().await;
    let mut tracker = slawatch_core::testing::tracker();
    let rules = std::sync::Arc::new(tracker.rules().clone());
    // What the engine does: apply, hand the touched inquiries to the commit, note the seqs.
    let mut commit = async |events: Vec<Event>, touched: &[&str]| {
        for e in &events {
            tracker.apply(e);
        }
        let inquiries: Vec<Inquiry> = touched
            .iter()
            .map(|id| tracker.get(&InquiryId((*id).into())).cloned().unwrap())
            .collect();
        let first = store
            .commit_projected(t0(), &events, &[], Sealing::default(), &inquiries)
            .await
            .expect("commit");
        for (seq, e) in (first..).zip(&events) {
            tracker.note_ledger_seq(e, seq);
        }
    };
    // Two inquiries opened in one batch get the seqs of their first events there.
    commit(
        vec![
            opened("a", "Hola", t0()),
            opened("b", "مرحبا", t0() + Duration::minutes(1)),
        ],
        &["a", "b"],
    )
    .await;
    commit(vec![breached("a", t0() + Duration::minutes(15))], &["a"]).await;
    let rows = store.projection_rows_after(i64::MIN, 10).await.unwrap();
    let seqs: Vec<(i64, i64, &str)> = rows
        .iter()
        .map(|r| (r.open_seq, r.last_seq, r.id.as_str()))
        .collect();
    assert_eq!(seqs, vec![(1, 3, "a"), (2, 2, "b")]);
    let a = store
        .projected(&InquiryId("a".into()))
        .await
        .unwrap()
        .unwrap();
    assert!(a.breached_at.is_some(), "the last write wins");
    assert_eq!(a.ledger_seqs, Some((1, 3)));
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(tracker.get(&InquiryId("a".into())).unwrap()).unwrap(),
        "the stored inquiry reads back as the tracker's"
    );

    // A rebuild from the ledger writes exactly the rows the commits wrote.
    let scratch_db = TempDb::new(b);
    let scratch = scratch_db.open().await;
    rebuild(&store, rules.clone(), &scratch).await.unwrap();
    assert_eq!(
        scratch.projection_rows_after(i64::MIN, 10).await.unwrap(),
        rows,
        "the rows written with the events are the rebuilt ones"
    );

    // A commit that fails (its cursor refused after its events and rows were written) leaves
    // no row behind: they were in its transaction.
    match b {
        Backend::Sqlite => db.sql(
            "CREATE TRIGGER refuse_cursor BEFORE INSERT ON cursors WHEN NEW.source = 'broken' \
             BEGIN SELECT RAISE(ABORT, 'refused for the test'); END;",
        ),
        Backend::Postgres => db.sql(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'refused for the test'; END $$; \
             CREATE TRIGGER refuse_cursor BEFORE INSERT ON cursors FOR EACH ROW \
             WHEN (NEW.source = 'broken') EXECUTE FUNCTION refuse();",
        ),
    };
    let mut failing = slawatch_core::testing::tracker();
    let events = [
        opened("c", "Bonjour", t0() + Duration::minutes(2)),
        breached("b", t0() + Duration::minutes(16)),
    ];
    for e in [
        opened("a", "Hola", t0()),
        opened("b", "مرحبا", t0() + Duration::minutes(1)),
    ]
    .iter()
    .chain(&events)
    {
        failing.apply(e);
    }
    let touched: Vec<Inquiry> = ["c", "b"]
        .iter()
        .map(|id| failing.get(&InquiryId((*id).into())).cloned().unwrap())
        .collect();
    let err = store
        .commit_projected(
            t0(),
            &events,
            &[cursor("broken", "x", json!(0))],
            Sealing::default(),
            &touched,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("upsert cursor"), "{err}");
    assert_eq!(
        store.projection_rows_after(i64::MIN, 10).await.unwrap(),
        rows
    );
    assert_eq!(store.head().await.unwrap().map(|h| h.0), Some(3));

    // The check rebuilds from the ledger and finds nothing to say.
    let scratch_db = TempDb::new(b);
    let scratch = scratch_db.open().await;
    let report = check(&store, rules.clone(), &scratch).await.unwrap();
    assert_eq!(
        (report.rows_compared, report.differences),
        (2, 0),
        "{report:?}"
    );

    // A row edited behind the daemon's back is named, column and all.
    db.sql("UPDATE inquiries SET state = 'responded' WHERE id = 'b'");
    let scratch_db = TempDb::new(b);
    let scratch = scratch_db.open().await;
    let report = check(&store, rules.clone(), &scratch).await.unwrap();
    assert_eq!(report.differences, 1, "{report:?}");
    assert_eq!(report.first[0].id, "b");
    assert_eq!(report.first[0].what, "state");
    assert_eq!(report.first[0].live.as_deref(), Some("responded"));

    // A rebuild puts it right.
    store.clear_projection().await.unwrap();
    let rebuilt = rebuild(&store, rules.clone(), &store).await.unwrap();
    assert_eq!(
        (rebuilt.inquiries, rebuilt.events, rebuilt.head_seq),
        (2, 3, 3)
    );
    let scratch_db = TempDb::new(b);
    let scratch = scratch_db.open().await;
    let report = check(&store, rules, &scratch).await.unwrap();
    assert_eq!(
        (report.rows_compared, report.differences),
        (2, 0),
        "{report:?}"
    );
    store.close().await;
}

/// `slawatch --config config args…`, with the PostgreSQL password in the environment (the
/// way the daemon gets it) for a `postgres://` store.
fn slawatch(b: Backend, config: &Path, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_slawatch"));
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn");
    if b == Backend::Postgres {
        command.env("SLAWATCH__STORE__PASSWORD", postgres::PASSWORD);
    }
    command.output().expect("the slawatch binary runs")
}

async fn store_commands_rebuild_and_check_the_projection_and_respect_the_writer_lock(b: Backend) {
    // A ledger written without a projection (as by an older version): its rows are deleted
    // after the commit, which wrote none anyway (`append` hands no inquiries over).
    let db = TempDb::new(b);
    let store = db.open().await;
    let events = [
        opened("a", "Hola", t0()),
        opened("b", "مرحبا", t0() + Duration::minutes(1)),
        breached("a", t0() + Duration::minutes(15)),
    ];
    store.append(t0(), &events, &[]).await.unwrap();
    assert!(store.projection_missing().await.unwrap());
    store.close().await;
    let url = match b {
        Backend::Sqlite => db.url(),
        Backend::Postgres => {
            postgres::shared().url_without_password(postgres::Postgres::database_of(&db.pg_url))
        }
    };
    let config = db.path.parent().unwrap().join("slawatch.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"{url}\"\n[desk]\nsupport_addresses = [\"support@desk.example\"]\n\
             [sources.mail]\ntype = \"maildir\"\npath = \"maildir\"\n"
        ),
    )
    .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    // Never beside the daemon: on SQLite its file lock refuses the rebuild, on PostgreSQL the
    // leader lease a replica holds.
    match b {
        Backend::Sqlite => {
            let lock = slawatch::store::lock::WriterLock::acquire(&db.path).unwrap();
            let out = slawatch(b, &config, &["store", "rebuild-projection"]);
            assert!(!out.status.success());
            assert!(
                text(&out.stderr).contains("in use"),
                "{}",
                text(&out.stderr)
            );
            drop(lock);
        }
        Backend::Postgres => {
            let store = db.open().await;
            let Store::Postgres(pg) = &store else {
                panic!("a PostgreSQL store")
            };
            let lease = slawatch::store::lease::Lease::new(
                "replica-a".into(),
                std::time::Duration::from_secs(30),
            );
            lease.try_acquire(pg).await.unwrap().expect("a free lease");
            let out = slawatch(b, &config, &["store", "rebuild-projection"]);
            assert!(!out.status.success());
            assert!(
                text(&out.stderr).contains("replica replica-a holds the ledger's leader lease"),
                "{}",
                text(&out.stderr)
            );
            lease.release(pg).await;
            store.close().await;
        }
    }

    let out = slawatch(b, &config, &["store", "rebuild-projection"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("rebuilt: 2 inquiries from 3 events"),
        "{}",
        text(&out.stdout)
    );
    let out = slawatch(b, &config, &["store", "check-projection"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("2 rows compared"),
        "{}",
        text(&out.stdout)
    );
    let store = db.open().await;
    assert!(!store.projection_missing().await.unwrap());
    store.close().await;

    // An edited row: named, exit 1.
    db.sql("UPDATE inquiries SET json = replace(json, 'Hola', 'Adiós') WHERE id = 'a'");
    let out = slawatch(b, &config, &["store", "check-projection"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("1 differences"), "{stdout}");
    assert!(stdout.contains("inquiry a: json differs"), "{stdout}");
}

async fn an_inquiry_is_found_by_id_in_any_bucket_of_the_id_index(b: Backend) {
    use slawatch::store::ProjectionRow;
    let db = TempDb::new(b);
    let store = db.open().await;
    let mut tracker = slawatch_core::testing::tracker();
    // Rows far apart in the ledger: in the first, a middle and a late bucket of 65,536 seqs.
    let mut rows = Vec::new();
    for (n, open_seq) in [(1, 5_i64), (2, 70_000), (3, 300_000)] {
        let id = format!("i{n}");
        tracker.apply(&opened(&id, "Hola", t0() + Duration::minutes(n)));
        let inquiry = tracker.get(&InquiryId(id.as_str().into())).unwrap();
        rows.push(ProjectionRow::of(inquiry, (open_seq, open_seq + 3)).unwrap());
    }
    store.write_projection(rows).await.unwrap();
    for (n, open_seq) in [(1, 5_i64), (2, 70_000), (3, 300_000)] {
        let found = store
            .projected(&InquiryId(format!("i{n}").into()))
            .await
            .unwrap()
            .expect("found");
        assert_eq!(found.ledger_seqs, Some((open_seq, open_seq + 3)));
    }
    assert!(
        store
            .projected(&InquiryId("nobody".into()))
            .await
            .unwrap()
            .is_none()
    );
    store.close().await;
}

/// Rows written together in order: a later row of the same inquiry wins (PostgreSQL refuses
/// to update a row twice in one statement, so the store keeps only the last one there).
async fn a_later_row_of_the_same_inquiry_wins_within_one_write(b: Backend) {
    use slawatch::store::ProjectionRow;
    let db = TempDb::new(b);
    let store = db.open().await;
    let mut tracker = slawatch_core::testing::tracker();
    let a = InquiryId("a".into());
    tracker.apply(&opened("a", "Hola", t0()));
    let open = ProjectionRow::of(tracker.get(&a).unwrap(), (1, 1)).unwrap();
    tracker.apply(&breached("a", t0() + Duration::minutes(15)));
    let breached = ProjectionRow::of(tracker.get(&a).unwrap(), (1, 2)).unwrap();
    store
        .write_projection(vec![open.clone(), breached.clone(), open, breached.clone()])
        .await
        .unwrap();
    assert_eq!(
        store.projection_rows_after(i64::MIN, 10).await.unwrap(),
        vec![breached]
    );
    store.close().await;
}

both!(
    a_later_row_of_the_same_inquiry_wins_within_one_write,
    the_projection_is_written_with_its_events_and_agrees_with_the_ledger,
    store_commands_rebuild_and_check_the_projection_and_respect_the_writer_lock,
    an_inquiry_is_found_by_id_in_any_bucket_of_the_id_index,
);
