//! Ledger throughput: append (batches of events with a cursor), replay and verify, on a
//! temporary SQLite file; then the same ledger sealed — every append ending with a signed
//! checkpoint, as the daemon writes it with `store.signing_key_file` — its verification with
//! every signature checked, and the daemon's start-up verification (replay + chain +
//! signatures in one read).
//!
//! `cargo bench --bench ledger`; `SLAWATCH_BENCH_STORE=postgres` (or `both`) runs it on a private
//! PostgreSQL 15 (see `support::bench_store`); the number of events is `SLAWATCH_BENCH_EVENTS` (default
//! 200000), the events per append `SLAWATCH_BENCH_BATCH` (default 500). Targets: append ≥ 20,000 events/s, signed append within 10 % of it, replay of 1M events in a few seconds, verify of
//! 5M events with signatures ≤ 30 s, start-up verification of 1M events ≤ 5 s.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use slawatch::sources::CursorUpdate;
use slawatch::store::{Sealing, Signer, Store, StoreError, Verification};
use slawatch_core::domain::{Channel, InquiryId, Language};
use slawatch_core::tracker::event::{Event, InquiryKind, InquiryOpened, LanguageSource, LinkRole};

/// Events per append unless `SLAWATCH_BENCH_BATCH` says otherwise.
const BATCH: usize = 500;

/// A realistic mix: one inquiry opened, warned, answered-by-link and breached per four events.
fn event(i: usize, t0: DateTime<Utc>) -> Event {
    let at = t0 + chrono::Duration::seconds(i as i64);
    let id = InquiryId::derive(Channel::Email, &format!("<m{i}@customer.example>"));
    match i % 4 {
        0 => Event::InquiryOpened(Box::new(InquiryOpened {
            inquiry_id: id,
            channel: Channel::Email,
            source: "mail".into(),
            external_id: format!("<m{i}@customer.example>"),
            thread_id: format!("<m{i}@customer.example>"),
            digest: Some(format!("{i:064x}")),
            customer: format!("customer{i}@example.com"),
            customer_name: Some("Customer Name".into()),
            subject: "استفسار عن الفاتورة رقم 4711 / Consulta sobre la factura".into(),
            language: Language::Ar,
            language_source: LanguageSource::Text,
            reply_to: Vec::new(),
            received_at: at,
            first_seen_at: at + chrono::Duration::seconds(2),
            date_header: Some(at),
            deadline_at: at + chrono::Duration::minutes(15),
            warn_at: vec![at + chrono::Duration::minutes(10)],
            policy: "default@1".into(),
            kind: InquiryKind::First,
            call: None,
        })),
        1 => Event::InquiryWarned {
            inquiry_id: id,
            index: 0,
            at,
        },
        2 => Event::MessageLinked {
            external_id: format!("<r{i}@desk.example>"),
            digest: format!("{:064x}", i + 1_000_000_000),
            thread_id: format!("<m{i}@customer.example>"),
            at,
            role: LinkRole::Reply,
        },
        _ => Event::InquiryBreached { inquiry_id: id, at },
    }
}

/// Events between two untimed `wal_checkpoint(TRUNCATE)`s. Writing flat out, the daemon's
/// background passive checkpoint falls behind and the write-ahead log grows with the ledger
/// (gigabytes for millions of events): without this a 5,000,000-event run fills the disk before
/// `verify` is measured. Outside the timed appends, so the append figure is unchanged.
const CHECKPOINT_EVERY: usize = 100_000;

fn rate(n: u64, d: Duration) -> String {
    format!("{:>10.0} events/s", n as f64 / d.as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), StoreError> {
    let n: usize = std::env::var("SLAWATCH_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let batch: usize = std::env::var("SLAWATCH_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|b| *b > 0)
        .unwrap_or(BATCH);
    for store in support::bench_store::from_env() {
        run(&store, n, batch).await?;
    }
    Ok(())
}

/// The whole bench on one backend.
async fn run(
    backend: &support::bench_store::BenchStore,
    n: usize,
    batch: usize,
) -> Result<(), StoreError> {
    use support::bench_store::BenchStore;
    let dir = tempfile::tempdir().expect("temp dir");
    let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
    let url = |file: &str| match backend {
        BenchStore::Sqlite => format!("sqlite://{}", dir.path().join(file).display()),
        BenchStore::Postgres(pg) => pg.fresh_url(),
    };
    let name = match backend {
        BenchStore::Sqlite => "sqlite",
        BenchStore::Postgres(_) => "postgres",
    };
    println!(
        "ledger bench [{name}]: {n} events, batches of {batch}, in {}",
        dir.path().display()
    );
    let (keys, _, _) =
        slawatch::store::signing::generate(&dir.path().join("keys")).expect("a key pair");
    let signer = Signer::from_file(&keys).expect("the key just written");
    // Both ledgers are written batch by batch in turn, so the two rates see the same machine
    // (the shared cores' load changes over a run).
    let plain_store = Store::open(&url("ledger.db")).await?;
    let store = Store::open(&url("ledger-signed.db")).await?;
    let (plain, signed, appends) = append_both(&plain_store, &store, &signer, n, batch, t0).await?;
    println!(
        "plain  append : {} ({:.2} s)",
        rate(n as u64, plain),
        plain.as_secs_f64()
    );
    println!(
        "signed append : {} ({:.2} s, {appends} signed checkpoints)",
        rate(n as u64, signed),
        signed.as_secs_f64()
    );
    println!(
        "signed append: {:.1} % of the unsigned rate",
        100.0 * plain.as_secs_f64() / signed.as_secs_f64()
    );
    read_back(
        &dir.path().join("ledger.db"),
        &plain_store,
        "plain ",
        n as u64,
    )
    .await?;
    plain_store.close().await;
    read_back(
        &dir.path().join("ledger-signed.db"),
        &store,
        "signed",
        n as u64 + appends,
    )
    .await?;

    // An auditor's check: chain and every signature, with the public key only.
    let key = signer.public_key();
    let start = Instant::now();
    let (verdict, seals) = store.audit(Some(key.clone()), None, true).await?;
    let d = start.elapsed();
    let Verification::Intact { events, .. } = verdict else {
        panic!("a freshly sealed ledger must verify: {verdict:?}");
    };
    println!(
        "verify + signatures : {} ({:.2} s, {} signatures; 5M events would take ~{:.0} s)",
        rate(events, d),
        d.as_secs_f64(),
        seals.checkpoints,
        d.as_secs_f64() * 5_000_000.0 / events.max(1) as f64
    );

    // The daemon's start-up: replay into the tracker, chain and signatures in one read.
    let rules = std::sync::Arc::new(slawatch_core::tracker::TrackerRules {
        desk: slawatch_core::desk::DeskSettings {
            support_addresses: vec!["support@desk.example".into()],
            internal_domains: vec!["desk.example".into()],
            ignore_senders: Vec::new(),
            ignore_subjects: Vec::new(),
            auto_ack_subjects: Vec::new(),
            default_language: Language::En,
            time_zone: chrono_tz::UTC,
        },
        policies: slawatch_core::tracker::policy::PolicySet::single(
            slawatch_core::tracker::policy::Policy::default(),
        ),
    });
    let start = Instant::now();
    let (tracker, _, verdict, _) =
        slawatch::engine::replay_verified(&store, rules, Some(key)).await?;
    let d = start.elapsed();
    assert!(
        matches!(verdict, Verification::Intact { .. }),
        "{verdict:?}"
    );
    println!(
        "start-up verification: {} ({:.2} s, {} inquiries; 1M events would take ~{:.1} s)",
        rate(events, d),
        d.as_secs_f64(),
        tracker.len(),
        d.as_secs_f64() * 1_000_000.0 / events.max(1) as f64
    );
    store.close().await;
    Ok(())
}

/// Appends `n` events in batches of `batch` to `plain` and, sealed by `signer`, to `signed`,
/// alternating; returns both append times and the number of appends.
async fn append_both(
    plain: &Store,
    signed: &Store,
    signer: &Signer,
    n: usize,
    batch: usize,
    t0: DateTime<Utc>,
) -> Result<(Duration, Duration, u64), StoreError> {
    let mut times = [Duration::ZERO; 2];
    let mut appends = 0u64;
    let mut written = 0usize;
    while written < n {
        let len = batch.min(n - written);
        let events: Vec<Event> = (written..written + len).map(|i| event(i, t0)).collect();
        let cursor = vec![(
            "mail".to_string(),
            CursorUpdate {
                key: "INBOX".into(),
                value: serde_json::json!({"uidvalidity": 7, "last_uid": written + len}),
            },
        )];
        for (i, (store, signer)) in [(plain, None), (signed, Some(signer))]
            .into_iter()
            .enumerate()
        {
            let sealing = Sealing {
                signer,
                durable: false,
            };
            let start = Instant::now();
            store
                .commit_sealed(Utc::now(), &events, &cursor, sealing)
                .await?;
            times[i] += start.elapsed();
        }
        appends += 1;
        written += len;
        if written.is_multiple_of(CHECKPOINT_EVERY) {
            support::ledger::checkpoint(plain).await;
            support::ledger::checkpoint(signed).await;
        }
    }
    support::ledger::checkpoint(plain).await;
    support::ledger::checkpoint(signed).await;
    Ok((times[0], times[1], appends))
}

/// Times a replay and a plain verify of `store` (`rows` rows, file at `path`).
async fn read_back(
    path: &std::path::Path,
    store: &Store,
    label: &str,
    rows: u64,
) -> Result<(), StoreError> {
    let start = Instant::now();
    let mut opened = 0u64;
    let replayed = store
        .for_each_event(|e| {
            if matches!(e.event, Event::InquiryOpened(_)) {
                opened += 1;
            }
            Ok::<(), StoreError>(())
        })
        .await?;
    let d = start.elapsed();
    assert_eq!(replayed, rows);
    println!(
        "{label} replay : {} ({:.2} s, {opened} opened)",
        rate(replayed, d),
        d.as_secs_f64()
    );

    let start = Instant::now();
    let verdict = store.verify().await?;
    let d = start.elapsed();
    let Verification::Intact { events, .. } = verdict else {
        panic!("a freshly written ledger must verify: {verdict:?}");
    };
    println!(
        "{label} verify : {} ({:.2} s, no signatures checked; 5M events would take ~{:.0} s)",
        rate(events, d),
        d.as_secs_f64(),
        d.as_secs_f64() * 5_000_000.0 / events.max(1) as f64
    );
    let size = match store {
        Store::Postgres(pg) => {
            sqlx::query_scalar::<_, i64>("SELECT pg_total_relation_size('ledger')")
                .fetch_one(&pg.pool)
                .await
                .unwrap_or(0) as u64
        }
        _ => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
    };
    println!(
        "{label} file   : {:.1} MiB ({} bytes/row)",
        size as f64 / 1048576.0,
        size / rows.max(1)
    );
    Ok(())
}
