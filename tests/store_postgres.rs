//! What only the PostgreSQL store has, against real PostgreSQL 15 servers started by the
//! harness: TLS with certificate verification, the password given apart from the URL, several
//! hosts with `target_session_attrs=read-write` (a standby skipped, a failover followed), a
//! ledger copied to SQLite and back with the same bytes, and a ledger that went backwards (rows
//! lost behind the daemon's back) refused instead of forked.

mod support;

use chrono::{DateTime, TimeZone, Utc};
use slawatch::store::{CopyError, Store, StoreError, Verification};
use slawatch_core::domain::InquiryId;
use slawatch_core::tracker::event::Event;
use support::postgres::{self, PASSWORD, Postgres};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
}

fn breached(i: usize) -> Event {
    Event::InquiryBreached {
        inquiry_id: InquiryId(format!("e{i}").into()),
        at: t0(),
    }
}

fn events(from: usize, n: usize) -> Vec<Event> {
    (from..from + n).map(breached).collect()
}

fn intact(v: Verification) -> (u64, String) {
    match v {
        Verification::Intact { events, head_hash } => (events, head_hash),
        broken => panic!("{broken:?}"),
    }
}

#[tokio::test]
async fn tls_is_verified_against_the_given_ca() {
    let pg = postgres::shared();
    let db = pg.create_database();
    let ca = pg.ca_file();
    for host in ["127.0.0.1", "localhost"] {
        let url = format!(
            "postgres://slawatch@{host}:{}/{db}?sslmode=verify-full&sslrootcert={}",
            pg.port,
            ca.display()
        );
        let store = Store::open_with(&url, Some(PASSWORD))
            .await
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        store.append(t0(), &events(0, 2), &[]).await.unwrap();
        store.close().await;
    }
    // The connection really is TLS.
    let tls = pg.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_ssl WHERE ssl AND pid <> pg_backend_pid()",
    );
    assert!(tls.parse::<i64>().is_ok(), "{tls}");

    // A server whose certificate does not chain to a trusted CA is refused: here the compiled-in
    // web roots, which do not know the test CA.
    let url = format!(
        "postgres://slawatch@127.0.0.1:{}/{db}?sslmode=verify-full",
        pg.port
    );
    let err = Store::open_with(&url, Some(PASSWORD)).await.unwrap_err();
    let msg = err.to_string().to_lowercase();
    assert!(matches!(err, StoreError::NoServer { .. }), "{msg}");
    assert!(msg.contains("certificate") || msg.contains("tls"), "{msg}");

    // A CA file that is not there is named before any connection.
    let url = format!(
        "postgres://slawatch@127.0.0.1:{}/{db}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        pg.port
    );
    let err = Store::open_with(&url, Some(PASSWORD)).await.unwrap_err();
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[tokio::test]
async fn the_password_comes_apart_from_the_url_and_is_never_shown() {
    let pg = postgres::shared();
    let db = pg.create_database();
    let url = pg.url_without_password(&db);
    let store = Store::open_with(&url, Some(PASSWORD)).await.unwrap();
    store.append(t0(), &events(0, 1), &[]).await.unwrap();
    store.close().await;

    let err = Store::open_with(&url, Some("wrong-password"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("password authentication failed"), "{msg}");
    assert!(!msg.contains("wrong-password"), "{msg}");
    let err = Store::open(&url).await.unwrap_err();
    assert!(matches!(err, StoreError::NoServer { .. }), "{err}");
}

/// Makes database `db` on `pg` read-only for new sessions (what a client sees on a hot standby:
/// `transaction_read_only` is on) and cuts the sessions it has.
fn demote(pg: &Postgres, db: &str) {
    pg.psql(
        "postgres",
        &format!("ALTER DATABASE {db} SET default_transaction_read_only = on"),
    );
    pg.psql(
        "postgres",
        &format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        ),
    );
}

#[tokio::test]
async fn read_write_targets_skip_a_standby_and_follow_a_failover() {
    let a = postgres::shared();
    let b = Postgres::start();
    let db = a.create_database();
    b.psql(
        "postgres",
        &format!("CREATE DATABASE {db} OWNER slawatch TEMPLATE template0 ENCODING 'UTF8'"),
    );
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };

    // A dead host and a standby come first: the primary is found.
    demote(a, &db);
    let url = format!(
        "postgres://slawatch@127.0.0.1:{closed},127.0.0.1:{},127.0.0.1:{}/{db}?target_session_attrs=read-write&connect_timeout=3",
        a.port, b.port
    );
    let store = Store::open_with(&url, Some(PASSWORD)).await.unwrap();
    let Store::Postgres(pg) = &store else {
        unreachable!()
    };
    assert_eq!(pg.current_host(), format!("127.0.0.1:{}", b.port));
    store.append(t0(), &events(0, 5), &[]).await.unwrap();
    let (_, head) = intact(store.verify().await.unwrap());
    // Without read-write, the first that answers is taken, standby or not.
    let any = format!(
        "postgres://slawatch@127.0.0.1:{closed},127.0.0.1:{}/{db}?connect_timeout=3",
        a.port
    );
    assert_eq!(
        slawatch::store::postgres::probe(&any, Some(PASSWORD))
            .await
            .unwrap(),
        format!("127.0.0.1:{}", a.port)
    );

    // Failover: the standby has the ledger (copied here, as replication would), becomes the
    // primary, and the old primary is demoted with its sessions cut. The next write fails,
    // the primary is looked for again, and the write after goes there, on the same chain.
    a.psql(
        "postgres",
        &format!("ALTER DATABASE {db} RESET default_transaction_read_only"),
    );
    {
        let direct = format!("postgres://slawatch:{PASSWORD}@127.0.0.1:{}/{db}", a.port);
        let replica = Store::open(&direct).await.unwrap();
        store.copy_into(&replica, &mut |_| {}).await.unwrap();
        replica.close().await;
    }
    demote(&b, &db);
    let mut attempts = 0;
    let written = loop {
        attempts += 1;
        match store.append(t0(), &events(5, 1), &[]).await {
            Ok(written) => break written,
            Err(e) if attempts < 5 => eprintln!("attempt {attempts}: {e}"),
            Err(e) => panic!("no write after {attempts} attempts: {e}"),
        }
    };
    assert_eq!(pg.current_host(), format!("127.0.0.1:{}", a.port));
    assert_eq!(written[0].seq, 6);
    assert_eq!(written[0].prev_hash, head);
    let on_a = format!("postgres://slawatch:{PASSWORD}@127.0.0.1:{}/{db}", a.port);
    let check = Store::open_existing(&on_a).await.unwrap();
    assert_eq!(intact(check.verify().await.unwrap()).0, 6);
    check.close().await;
    store.close().await;
}

#[tokio::test]
async fn a_ledger_copied_to_sqlite_and_back_keeps_every_byte() {
    let pg = postgres::shared();
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(&pg.fresh_url()).await.unwrap();
    // Varied rows: non-ASCII text, rows without an inquiry, a cursor.
    for i in 0..7 {
        let mut batch = events(i * 300, 300);
        batch.push(Event::MonitorStarted {
            at: t0(),
            version: "ünï — تجربة".into(),
        });
        let cursor = slawatch::sources::CursorUpdate {
            key: "INBOX".into(),
            value: serde_json::json!({"uid": i}),
        };
        source
            .append(t0(), &batch, &[("mail".to_string(), cursor)])
            .await
            .unwrap();
    }
    let original = source.events().await.unwrap();
    let (n, head) = intact(source.verify().await.unwrap());
    assert_eq!(n, 7 * 301);

    let sqlite = Store::open(&format!("sqlite://{}/copy.db", dir.path().display()))
        .await
        .unwrap();
    let report = source.copy_into(&sqlite, &mut |_| {}).await.unwrap();
    assert_eq!(report.rows, n);
    assert_eq!(report.cursors, 1);
    assert_eq!(report.head, Some((n as i64, head.clone())));
    assert_eq!(intact(sqlite.verify().await.unwrap()), (n, head.clone()));
    assert_eq!(sqlite.events().await.unwrap(), original);
    assert_eq!(
        sqlite.cursor("mail", "INBOX").await.unwrap(),
        Some(serde_json::json!({"uid": 6}))
    );

    // A second copy into a store that holds rows is refused, and changes nothing.
    match source.copy_into(&sqlite, &mut |_| {}).await {
        Err(CopyError::TargetNotEmpty { rows, .. }) => assert_eq!(rows as u64, n),
        other => panic!("{other:?}"),
    }
    assert_eq!(intact(sqlite.verify().await.unwrap()), (n, head.clone()));

    // And back into a new PostgreSQL database.
    let back = Store::open(&pg.fresh_url()).await.unwrap();
    sqlite.copy_into(&back, &mut |_| {}).await.unwrap();
    assert_eq!(intact(back.verify().await.unwrap()), (n, head.clone()));
    assert_eq!(back.events().await.unwrap(), original);
    // Both backends go on with the same next row.
    let a = back.append(t0(), &events(9000, 1), &[]).await.unwrap();
    let b = sqlite.append(t0(), &events(9000, 1), &[]).await.unwrap();
    assert_eq!(a, b);
    for s in [source, sqlite, back] {
        s.close().await;
    }
}

/// The inquiry projection goes with the ledger, to SQLite and back, in more than one page: a
/// copy answers the API and reports at once. A source without one gives a copy without one
/// (the daemon builds it at its first start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_projection_is_copied_with_the_ledger() {
    use slawatch::store::projection::rebuild;
    let pg = postgres::shared();
    let dir = tempfile::tempdir().unwrap();
    let rules = std::sync::Arc::new(slawatch_core::testing::tracker().rules().clone());
    let source = Store::open(&pg.fresh_url()).await.unwrap();
    support::history::write(&source, 12_000, 5, None)
        .await
        .unwrap();
    // Without a projection yet: none is copied.
    let bare = Store::open(&format!("sqlite://{}/bare.db", dir.path().display()))
        .await
        .unwrap();
    let report = source.copy_into(&bare, &mut |_| {}).await.unwrap();
    assert_eq!(report.inquiries, None);
    assert!(bare.projection_missing().await.unwrap());
    bare.close().await;

    rebuild(&source, rules, &source).await.unwrap();
    let rows = source
        .projection_rows_after(i64::MIN, 20_000)
        .await
        .unwrap();
    assert_eq!(rows.len(), 12_000);
    let sqlite = Store::open(&format!("sqlite://{}/copy.db", dir.path().display()))
        .await
        .unwrap();
    let report = source.copy_into(&sqlite, &mut |_| {}).await.unwrap();
    assert_eq!(report.inquiries, Some(12_000));
    assert!(!sqlite.projection_missing().await.unwrap());
    assert_eq!(
        sqlite
            .projection_rows_after(i64::MIN, 20_000)
            .await
            .unwrap(),
        rows
    );
    let back = Store::open(&pg.fresh_url()).await.unwrap();
    let report = sqlite.copy_into(&back, &mut |_| {}).await.unwrap();
    assert_eq!(report.inquiries, Some(12_000));
    assert_eq!(
        back.projection_rows_after(i64::MIN, 20_000).await.unwrap(),
        rows
    );
    // And the copy answers by id from its own index.
    let last = rows.last().unwrap();
    let found = back
        .projected(&InquiryId(last.id.as_str().into()))
        .await
        .unwrap()
        .expect("found in the copy");
    assert_eq!(found.ledger_seqs, Some((last.open_seq, last.last_seq)));
    for s in [source, sqlite, back] {
        s.close().await;
    }
}

#[tokio::test]
async fn a_broken_source_is_not_copied() {
    let pg = postgres::shared();
    let db = pg.create_database();
    let source = Store::open(&pg.url(&db)).await.unwrap();
    source.append(t0(), &events(0, 10), &[]).await.unwrap();
    pg.psql(
        &db,
        "ALTER TABLE ledger DISABLE TRIGGER USER; UPDATE ledger SET payload = replace(payload, 'e4', 'e5') WHERE seq = 5",
    );
    let target = Store::open(&pg.fresh_url()).await.unwrap();
    match source.copy_into(&target, &mut |_| {}).await {
        Err(CopyError::SourceBroken { seq: 5, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(target.head().await.unwrap(), None);
}

/// Deletes the last `n` rows behind the store's back, as a promoted asynchronous standby that
/// lacked them would show the ledger: the superuser drops the guard for it.
fn lose_last_rows(pg: &Postgres, db: &str, n: i64) {
    pg.psql(
        db,
        &format!(
            "ALTER TABLE ledger DISABLE TRIGGER USER; \
             DELETE FROM ledger WHERE seq > (SELECT max(seq) - {n} FROM ledger); \
             ALTER TABLE ledger ENABLE TRIGGER USER"
        ),
    );
}

#[tokio::test]
async fn a_ledger_that_went_backwards_is_never_forked() {
    let pg = postgres::shared();
    let db = pg.create_database();
    let dir = tempfile::tempdir().unwrap();
    let head_file = dir.path().join("ledger.head");
    let store = Store::open(&pg.url(&db)).await.unwrap();
    store.keep_published_head(&head_file).await.unwrap();
    store.append(t0(), &events(0, 10), &[]).await.unwrap();
    let (_, published) = intact(store.verify().await.unwrap());
    assert_eq!(
        std::fs::read_to_string(&head_file).unwrap().trim(),
        format!("10:{published}")
    );

    lose_last_rows(pg, &db, 3);
    let err = store.append(t0(), &events(10, 2), &[]).await.unwrap_err();
    match &err {
        StoreError::WentBackwards {
            published_seq,
            published_hash,
            head_seq,
            ..
        } => {
            assert_eq!(*published_seq, 10);
            assert_eq!(published_hash, &published);
            assert_eq!(*head_seq, 7);
        }
        other => panic!("{other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("audit verify --expect 10:"), "{msg}");
    // Nothing was written: seq 8 is not taken by a second history.
    assert_eq!(store.head().await.unwrap().map(|h| h.0), Some(7));
    store.close().await;

    // A restart reads the head it published from the file and refuses too.
    let store = Store::open(&pg.url(&db)).await.unwrap();
    let err = store.keep_published_head(&head_file).await.unwrap_err();
    assert!(matches!(err, StoreError::WentBackwards { .. }), "{err}");
    let err = store.append(t0(), &events(10, 1), &[]).await.unwrap_err();
    assert!(matches!(err, StoreError::WentBackwards { .. }), "{err}");
    assert_eq!(store.head().await.unwrap().map(|h| h.0), Some(7));
    store.close().await;

    // Rows rewritten under the same seqs (a different history) are caught as well.
    let db = pg.create_database();
    let store = Store::open(&pg.url(&db)).await.unwrap();
    store.append(t0(), &events(0, 5), &[]).await.unwrap();
    lose_last_rows(pg, &db, 1);
    let other = Store::open(&pg.url(&db)).await.unwrap();
    other.append(t0(), &events(100, 1), &[]).await.unwrap();
    other.close().await;
    let err = store.append(t0(), &events(5, 1), &[]).await.unwrap_err();
    match err {
        StoreError::WentBackwards {
            published_seq: 5,
            head_seq: 5,
            ..
        } => {}
        other => panic!("{other}"),
    }
    store.close().await;

    // While the ledger only grows (another writer appended), writing goes on.
    let db = pg.create_database();
    let a = Store::open(&pg.url(&db)).await.unwrap();
    let b = Store::open(&pg.url(&db)).await.unwrap();
    a.append(t0(), &events(0, 2), &[]).await.unwrap();
    b.append(t0(), &events(2, 2), &[]).await.unwrap();
    let more = a.append(t0(), &events(4, 1), &[]).await.unwrap();
    assert_eq!(more[0].seq, 5);
    assert_eq!(intact(a.verify().await.unwrap()).0, 5);
}

#[tokio::test]
async fn the_same_commits_give_the_same_bytes_on_both_backends_signed_or_not() {
    let pg = postgres::shared();
    let dir = tempfile::tempdir().unwrap();
    let (private, _, _) = slawatch::store::signing::generate(&dir.path().join("keys")).unwrap();
    let signer = slawatch::store::Signer::from_file(&private).unwrap();
    let sqlite = Store::open(&format!("sqlite://{}/a.db", dir.path().display()))
        .await
        .unwrap();
    let postgres = Store::open(&pg.fresh_url()).await.unwrap();
    for store in [&sqlite, &postgres] {
        for c in 0..6usize {
            let sealing = slawatch::store::Sealing {
                signer: (c % 2 == 1).then_some(&signer),
                durable: c == 5,
            };
            let at = t0() + chrono::Duration::microseconds(1_234_567 * c as i64);
            store
                .commit_sealed(at, &events(c * 10, 1 + c), &[], sealing)
                .await
                .unwrap();
        }
    }
    let a = sqlite.events().await.unwrap();
    let b = postgres.events().await.unwrap();
    assert_eq!(a.len(), 21 + 3, "events and three checkpoints");
    assert_eq!(a, b);
    let key = signer.public_key();
    let (va, sa) = sqlite.audit(Some(key.clone()), None, true).await.unwrap();
    let (vb, sb) = postgres.audit(Some(key.clone()), None, true).await.unwrap();
    assert_eq!(va, vb);
    assert_eq!(sa.checkpoints, 3);
    assert_eq!(sb.checkpoints, 3);
    assert_eq!(sa.signatures_checked, sb.signatures_checked);

    // A cut tail at a commit boundary is caught with the head recorded before.
    let (head_seq, head_hash) = postgres.head().await.unwrap().unwrap();
    let Store::Postgres(p) = &postgres else {
        unreachable!()
    };
    sqlx::query("ALTER TABLE ledger DISABLE TRIGGER USER")
        .execute(&p.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM ledger WHERE seq > $1")
        .bind(head_seq - 8)
        .execute(&p.pool)
        .await
        .unwrap();
    let expect = format!("{head_seq}:{head_hash}").parse().unwrap();
    let (verdict, _) = postgres
        .audit(Some(key), Some(expect), false)
        .await
        .unwrap();
    assert!(
        matches!(verdict, Verification::Broken { .. }),
        "{verdict:?}"
    );
}

/// Makes the lease expire now, as if its TTL had passed with no renewal (the server's clock
/// decides expiry; the test moves the row instead of waiting).
fn expire_lease(pg: &Postgres, db: &str) {
    pg.psql(
        db,
        "UPDATE leader_lease SET expires_at = clock_timestamp() - interval '1 second'",
    );
}

/// One replica of a pair on `db`: its own pool, writing under its own lease (30 s: tests
/// expire it by hand).
async fn replica(
    pg: &Postgres,
    db: &str,
    name: &str,
) -> (Store, std::sync::Arc<slawatch::store::lease::Lease>) {
    let store = Store::open(&pg.url(db)).await.unwrap();
    let lease = std::sync::Arc::new(slawatch::store::lease::Lease::new(
        name.into(),
        std::time::Duration::from_secs(30),
    ));
    store.write_under(lease.clone());
    (store, lease)
}

#[tokio::test]
async fn a_replica_that_lost_the_lease_never_commits_again() {
    use slawatch::store::lease::{Renewal, Takeover};

    let pg = postgres::shared();
    let db = pg.create_database();
    let (first, lease_a) = replica(pg, &db, "a").await;
    let (second, lease_b) = replica(pg, &db, "b").await;
    let (Store::Postgres(pg_a), Store::Postgres(pg_b)) = (&first, &second) else {
        panic!("both stores are PostgreSQL");
    };

    // Before anyone holds the lease, a replica's writes are refused.
    let refused = first.append(t0(), &events(0, 1), &[]).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::Fenced { epoch: None, .. }),
        "{refused}"
    );

    assert_eq!(
        lease_a.try_acquire(pg_a).await.unwrap(),
        Some(Takeover {
            epoch: 1,
            previous: None
        })
    );
    assert_eq!(lease_b.try_acquire(pg_b).await.unwrap(), None);
    assert_eq!(lease_a.leader.get(), 1);
    assert_eq!(lease_b.leader.get(), 0);
    first.append(t0(), &events(0, 5), &[]).await.unwrap();
    let refused = second.append(t0(), &events(5, 1), &[]).await.unwrap_err();
    assert!(matches!(refused, StoreError::Fenced { .. }), "{refused}");
    assert!(matches!(lease_a.renew(pg_a).await, Renewal::Renewed));

    // A's lease expires on the server (A paused past its TTL): B takes over at epoch 2.
    expire_lease(pg, &db);
    assert_eq!(
        lease_b.try_acquire(pg_b).await.unwrap(),
        Some(Takeover {
            epoch: 2,
            previous: Some("a".into())
        })
    );
    second.append(t0(), &events(5, 3), &[]).await.unwrap();
    // A still believes in its lease by its own clock, but the fence inside the transaction
    // finds another holder: nothing is written, and it counts.
    assert!(lease_a.is_valid());
    let fenced_before = lease_a.fenced_writes.get();
    let refused = first.append(t0(), &events(8, 2), &[]).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::Fenced { epoch: Some(1), .. }),
        "{refused}"
    );
    assert_eq!(lease_a.fenced_writes.get(), fenced_before + 1);
    // The archive and snapshots are fenced too: an old active must not refile a thread.
    let snapshot = first.save_snapshot(8, t0(), "{}").await.unwrap_err();
    assert!(matches!(snapshot, StoreError::Fenced { .. }), "{snapshot}");
    // Its next renewal finds another holder: it steps down.
    assert!(matches!(lease_a.renew(pg_a).await, Renewal::Lost));
    assert!(!lease_a.is_valid());
    assert_eq!(lease_a.leader.get(), 0);

    // Eight rows, in order, none of them A's after the takeover; the chain is intact.
    let (n, _) = intact(second.verify().await.unwrap());
    assert_eq!(n, 8);
    let rows = pg.psql(
        &db,
        "SELECT string_agg(payload::json->>'inquiry_id', ',' ORDER BY seq) FROM ledger",
    );
    assert_eq!(rows.trim(), "e0,e1,e2,e3,e4,e5,e6,e7");

    // A clean stop lets the lease go at once: A takes it back without waiting for the TTL.
    lease_b.release(pg_b).await;
    assert_eq!(
        lease_a.try_acquire(pg_a).await.unwrap(),
        Some(Takeover {
            epoch: 3,
            previous: Some("b".into())
        })
    );
    first.append(t0(), &events(8, 1), &[]).await.unwrap();
    let refused = second.append(t0(), &events(9, 1), &[]).await.unwrap_err();
    assert!(matches!(refused, StoreError::Fenced { .. }), "{refused}");
    assert_eq!(intact(first.verify().await.unwrap()).0, 9);
}

#[tokio::test]
async fn a_takeover_waits_while_a_commit_holds_the_lease_row() {
    let pg = postgres::shared();
    let db = pg.create_database();
    let (first, lease_a) = replica(pg, &db, "a").await;
    let (second, lease_b) = replica(pg, &db, "b").await;
    let (Store::Postgres(pg_a), Store::Postgres(pg_b)) = (&first, &second) else {
        panic!("both stores are PostgreSQL");
    };
    lease_a.try_acquire(pg_a).await.unwrap().expect("free");
    // The lease expires; then a session holds its row as a commit's fence does.
    expire_lease(pg, &db);
    let url = pg.url(&db);
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn(async move {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("SELECT 1 FROM leader_lease WHERE id = 1 FOR SHARE")
            .execute(&mut *tx)
            .await
            .unwrap();
        locked_tx.send(()).unwrap();
        release_rx.await.unwrap();
        tx.commit().await.unwrap();
    });
    locked_rx.await.unwrap();
    // Held past the take's lock wait: the take gives up (and tries again later), it does not
    // slip in under the commit.
    let blocked = lease_b.try_acquire(pg_b).await;
    assert!(blocked.is_err(), "{blocked:?}");
    assert_eq!(lease_b.epoch(), None);
    release_tx.send(()).unwrap();
    holder.await.unwrap();
    assert_eq!(lease_b.try_acquire(pg_b).await.unwrap().unwrap().epoch, 2);
}
