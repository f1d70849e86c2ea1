//! Years of history, in megabytes and seconds: the real daemon binary over a ledger of N
//! inquiries (default 1,000,000: a year of a busy desk; `-- 5000000` for five), written flat out
//! (`tests/support/history.rs`). Three starts:
//!
//! 1. with no snapshot: the whole ledger verified and replayed, threads leaving memory as it
//!    goes (the archive is built by this start);
//! 2. after a clean stop: from the snapshot written at shutdown;
//! 3. after kill -9 following more mail: from that snapshot and the rows after it.
//!
//! For each: "state restored and every open deadline scheduled" (the daemon's own measure, in
//! its start-up log line), spawn → `/readyz` (it also waits for the sources' first sync: one
//! empty Maildir here), RSS once ready and the peak (VmHWM), and the latency of `/metrics` and
//! `/api/v1/inquiries` (first page, one filtered to phone, and from the projection: the oldest
//! inquiry by id and pages of history from before the middle of the ledger), median and max of
//! 20.
//!
//! `cargo bench --bench working_set [-- N]`. Each call comes from a number of its own (as in
//! the CDR bench's Master.csv); `SLAWATCH_BENCH_CALLERS=50000` makes them 50,000 numbers that
//! call again every few weeks. `SLAWATCH_BENCH_LEDGER=/path/file.db` keeps the ledger between
//! runs (reused when it exists; its snapshots and archive are cleared first).
//! `SLAWATCH_BENCH_STORE=postgres` (or `both`) runs it on a private PostgreSQL 15 with the
//! server's default durability, a fresh database each run (see `tests/support/bench_store.rs`).
//! Figures to reach: RSS ≤ 150 MB and start ≤ 5 s at 1,000,000 and 5,000,000 inquiries; the API
//! and `/metrics` ≤ 20 ms.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use slawatch::store::Store;
use support::daemon::Daemon;

/// Inquiries still waiting at the end of the history.
const OPEN: usize = 40;

fn latency(d: &Daemon, path: &str) -> (f64, f64) {
    let mut took: Vec<f64> = (0..20)
        .map(|_| {
            let started = Instant::now();
            let (status, _) = d.get(path);
            assert_eq!(status, 200, "{path}");
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    took.sort_by(f64::total_cmp);
    (took[10], took[19])
}

/// The daemon's own start-up measure from its log line of run `run`, in ms.
fn restored_ms(d: &Daemon, run: u32) -> Option<u64> {
    let log = std::fs::read_to_string(d.log_path(run)).ok()?;
    let line = log
        .lines()
        .find(|l| l.contains("elapsed_ms=") && l.contains("replayed"))?;
    let (_, rest) = line.split_once("elapsed_ms=")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `/api/v1/inquiries` paths answered from the store's projection rather than memory: the
/// oldest inquiry by id, and a page of history from before the middle of the ledger.
fn history_paths(oldest: &str, middle: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let until = middle
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        .replace(':', "%3A");
    vec![
        format!("/api/v1/inquiries/{oldest}"),
        format!("/api/v1/inquiries?until={until}&limit=50"),
        format!("/api/v1/inquiries?state=responded&until={until}&limit=50"),
    ]
}

fn measure(d: &mut Daemon, run: u32, what: &str, history: &[String]) {
    let started = Instant::now();
    d.start_within(Duration::from_secs(3600));
    d.wait_ready(Duration::from_secs(3600));
    let ready = started.elapsed();
    let pid = d.pid().unwrap();
    let rss = support::process::memory_mb(pid, "VmRSS:").unwrap_or(f64::NAN);
    let peak = support::process::memory_mb(pid, "VmHWM:").unwrap_or(f64::NAN);
    let restored =
        restored_ms(d, run).map_or("?".to_string(), |ms| format!("{:.2} s", ms as f64 / 1000.0));
    println!("{what}:");
    println!(
        "  state restored (daemon's measure): {restored}; spawn → /readyz {:.2} s",
        ready.as_secs_f64()
    );
    println!("  RSS once ready {rss:.0} MB, peak {peak:.0} MB");
    for path in [
        "/metrics",
        "/api/v1/inquiries",
        "/api/v1/inquiries?channel=phone&limit=50",
    ]
    .into_iter()
    .chain(history.iter().map(String::as_str))
    {
        let (p50, max) = latency(d, path);
        println!("  {path}: p50 {p50:.1} ms, max {max:.1} ms");
    }
    let log = std::fs::read_to_string(d.log_path(run)).unwrap_or_default();
    if let Some(line) = log.lines().find(|l| l.contains("replayed")) {
        println!("  {}", line.trim());
    }
}

/// The tracker alone: memory per inquiry of a month's working set (86,400 inquiries), applied
/// in this process.
fn tracker_alone() {
    use slawatch_core::tracker::{Tracker, TrackerRules};
    let rules = std::sync::Arc::new(TrackerRules {
        desk: slawatch_core::desk::DeskSettings::with_address("support@example.com"),
        policies: slawatch_core::tracker::policy::PolicySet::single(Default::default()),
    });
    let n = 86_400;
    let before = support::process::memory_mb("self", "VmRSS:").unwrap_or_default();
    let mut tracker = Tracker::new(rules);
    let version = slawatch_core::tracker::policy::Policy::default().version();
    let start = chrono::Utc::now() - chrono::Duration::days(30);
    let mut events = Vec::new();
    for i in 0..n {
        events.clear();
        support::history::inquiry(i, start, &version, false, None, &mut events);
        for (k, e) in events.iter().enumerate() {
            tracker.apply(e);
            tracker.note_ledger_seq(e, (i * 8 + k) as i64 + 1);
        }
    }
    let after = support::process::memory_mb("self", "VmRSS:").unwrap_or_default();
    println!(
        "tracker alone: {n} inquiries ({} threads) in {:.0} MB, {:.0} bytes an inquiry",
        tracker.threads_held(),
        after - before,
        (after - before) * 1e6 / n as f64
    );
}

fn main() {
    tracker_alone();
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    for store in support::bench_store::from_env() {
        run(&store, n);
    }
}

/// Deletes what a previous run left of the working set (a reused ledger).
async fn clear_working_set(store: &Store) {
    for table in ["snapshots", "archived_threads", "archive_keys"] {
        let statement = sqlx::AssertSqlSafe(format!("DELETE FROM {table}"));
        match store {
            Store::Sqlite(pool) => sqlx::query(statement).execute(pool).await.map(|_| ()),
            Store::Postgres(pg) => sqlx::query(statement).execute(&pg.pool).await.map(|_| ()),
        }
        .unwrap();
    }
}

fn run(bench_store: &support::bench_store::BenchStore, n: usize) {
    let dir = tempfile::Builder::new()
        .prefix("slawatch-working-set-bench")
        .tempdir()
        .unwrap();
    let ledger = bench_store.ledger();
    println!("--- store: {} ---", ledger.name);
    let file = std::env::var("SLAWATCH_BENCH_LEDGER")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("ledger.db"));
    let url = ledger.url(bench_store, &file);
    let callers: Option<usize> = std::env::var("SLAWATCH_BENCH_CALLERS")
        .ok()
        .and_then(|v| v.parse().ok());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (rows, size, history) = runtime.block_on(async {
        let reuse = url.starts_with("sqlite:") && file.exists();
        let store = Store::open(&url).await.unwrap();
        if !reuse {
            let started = Instant::now();
            support::history::write(&store, n, OPEN, callers)
                .await
                .unwrap();
            println!(
                "ledger: {n} inquiries written in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            // Written flat out, the ledger has no projection yet: built here, untimed, so that
            // the first start measures the working set and not a one-off migration.
            let started = Instant::now();
            let rules = std::sync::Arc::new(slawatch_core::tracker::TrackerRules {
                desk: slawatch_core::desk::DeskSettings::with_address("support@example.com"),
                policies: slawatch_core::tracker::policy::PolicySet::single(Default::default()),
            });
            let rebuilt = slawatch::store::projection::rebuild(&store, rules, &store)
                .await
                .unwrap();
            println!(
                "projection: {} inquiries built in {:.1} s",
                rebuilt.inquiries,
                started.elapsed().as_secs_f64()
            );
            support::ledger::checkpoint(&store).await;
        }
        clear_working_set(&store).await;
        let oldest = store.projection_rows_after(i64::MIN, 1).await.unwrap();
        let oldest = oldest.first().expect("a projection row");
        let middle: chrono::DateTime<chrono::Utc> = oldest.received_at.parse().unwrap();
        let history = history_paths(&oldest.id, middle + (chrono::Utc::now() - middle) / 2);
        let rows = store.head().await.unwrap().map_or(0, |(seq, _)| seq);
        let size = match &store {
            Store::Sqlite(_) => std::fs::metadata(&file).map_or(0, |m| m.len() as i64),
            Store::Postgres(pg) => {
                sqlx::query_scalar("SELECT pg_database_size(current_database())")
                    .fetch_one(&pg.pool)
                    .await
                    .unwrap()
            }
        };
        store.close().await;
        (rows, size, history)
    });
    println!("ledger: {rows} rows, {:.0} MB", size as f64 / 1e6);
    for sub in ["new", "cur", "tmp", ".Sent/new", ".Sent/cur", ".Sent/tmp"] {
        std::fs::create_dir_all(dir.path().join("maildir").join(sub)).unwrap();
    }
    let store_toml = if url.starts_with("sqlite:") {
        format!("[store]\nurl = \"{url}\"\n")
    } else {
        ledger.toml.clone()
    };
    let config = format!(
        r#"
{store_toml}
[http]
bind = "127.0.0.1:{{port}}"
[desk]
support_addresses = ["support@example.com"]
[sources.mail]
type = "maildir"
path = "{{dir}}/maildir"
"#
    );
    let mut d = Daemon::configure(dir.path(), &config, &ledger.env);
    measure(
        &mut d,
        1,
        "1. no snapshot: whole ledger verified and replayed",
        &history,
    );
    assert!(d.stop(), "clean stop");
    measure(
        &mut d,
        2,
        "2. after a clean stop: from the snapshot",
        &history,
    );
    // More mail, then kill -9: the next start reads the snapshot and the rows after it.
    let head = d.metric("slawatch_ledger_head_seq").unwrap_or_default();
    // Message-IDs of this run: a reused ledger already holds those of the runs before.
    let run = support::daemon::unix_now();
    for k in 0..200 {
        support::daemon::maildir_mail(dir.path(), run, &format!("k{k}-{run}"));
    }
    d.wait_for("the new mail in the ledger", Duration::from_secs(60), |d| {
        d.metric("slawatch_ledger_head_seq")
            .is_some_and(|seq| seq >= head + 200.0)
    });
    d.kill9();
    measure(
        &mut d,
        3,
        "3. after kill -9: from the snapshot and the rows after it",
        &history,
    );
    assert!(d.stop(), "clean stop");
}
