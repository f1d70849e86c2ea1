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
//! `/api/v1/inquiries` (first page, and one filtered to phone), median and max of 20.
//!
//! `cargo bench --bench working_set [-- N]`. Each call comes from a number of its own (as in
//! the CDR bench's Master.csv); `SLAWATCH_BENCH_CALLERS=50000` makes them 50,000 numbers that
//! call again every few weeks. `SLAWATCH_BENCH_LEDGER=/path/file.db` keeps the ledger between
//! runs (reused when it exists; its snapshots and archive are cleared first).
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

fn measure(d: &mut Daemon, run: u32, what: &str) {
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
    ] {
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
    let dir = tempfile::Builder::new()
        .prefix("slawatch-working-set-bench")
        .tempdir()
        .unwrap();
    let ledger = std::env::var("SLAWATCH_BENCH_LEDGER")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("ledger.db"));
    let callers: Option<usize> = std::env::var("SLAWATCH_BENCH_CALLERS")
        .ok()
        .and_then(|v| v.parse().ok());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rows = runtime.block_on(async {
        let reuse = ledger.exists();
        let store = Store::open(&format!("sqlite://{}", ledger.display()))
            .await
            .unwrap();
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
        let Store::Sqlite(pool) = &store else {
            panic!("the bench's ledger is SQLite")
        };
        for table in ["snapshots", "archived_threads", "archive_keys"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                .execute(pool)
                .await
                .unwrap();
        }
        let rows = store.head().await.unwrap().map_or(0, |(seq, _)| seq);
        store.close().await;
        rows
    });
    let size = std::fs::metadata(&ledger).map_or(0, |m| m.len());
    println!("ledger: {rows} rows, {:.0} MB", size as f64 / 1e6);
    for sub in ["new", "cur", "tmp", ".Sent/new", ".Sent/cur", ".Sent/tmp"] {
        std::fs::create_dir_all(dir.path().join("maildir").join(sub)).unwrap();
    }
    let config = format!(
        r#"
[store]
url = "sqlite://{}"
[http]
bind = "127.0.0.1:{{port}}"
[desk]
support_addresses = ["support@example.com"]
[sources.mail]
type = "maildir"
path = "{{dir}}/maildir"
"#,
        ledger.display()
    );
    let mut d = Daemon::configure(dir.path(), &config, &[]);
    measure(
        &mut d,
        1,
        "1. no snapshot: whole ledger verified and replayed",
    );
    assert!(d.stop(), "clean stop");
    measure(&mut d, 2, "2. after a clean stop: from the snapshot");
    // More mail, then kill -9: the next start reads the snapshot and the rows after it.
    let head = d.metric("slawatch_ledger_head_seq").unwrap_or_default();
    for k in 0..200 {
        support::daemon::maildir_mail(dir.path(), support::daemon::unix_now(), &format!("k{k}"));
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
    );
    assert!(d.stop(), "clean stop");
}
