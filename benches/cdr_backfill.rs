//! Phone figures with the real daemon binary and its SQLite ledger:
//!
//! - backfill of an N-row `Master.csv` (default 1,000,000; 18 columns, UTC), end to end: spawn →
//!   `/readyz` (every row read, its events in the ledger), in rows/s. Rows are a realistic mix:
//!   per inbound call one or two queue-member attempts (`NO ANSWER`) and the pickup
//!   (`ANSWERED`), every fifth call a voicemail instead, every tenth a callback from an
//!   extension;
//! - detection latency: a row appended to the tailed file → the inquiry visible in
//!   `/api/v1/inquiries`, p50/p99 over 200 appends.
//!
//! `cargo bench --bench cdr_backfill [-- N]`; `SLAWATCH_BENCH_BACKFILL_ONLY=1` skips the latency
//! part (for comparing changes by repeated backfills); `SLAWATCH_BENCH_STORE=postgres` (or
//! `both`) runs the daemon on PostgreSQL (see `support::bench_store`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use support::bench_store;
use support::daemon::Daemon;

const BASE_EPOCH: i64 = 1_767_600_000; // 2026-01-05 08:00:00 UTC

fn ts(epoch: i64) -> String {
    chrono::DateTime::from_timestamp(epoch, 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Writes rows for call `i`; returns how many.
fn call_rows(w: &mut impl Write, i: i64) -> std::io::Result<usize> {
    let start = BASE_EPOCH + i; // one call a second
    let uid = format!("{start}.{i}");
    let number = format!("346{:08}", i % 100_000_000);
    let clid = format!("\"\"\"Cliente {i}, S.L.\"\" <{number}>\"");
    let head = format!("\"\",\"{number}\",\"600\",\"from-trunk\",{clid},\"PJSIP/trunk-{i:08x}\"");
    let mut n = 0;
    if i % 10 == 9 {
        writeln!(
            w,
            "\"\",\"2001\",\"00{number}\",\"from-internal\",\"\"\"Agent\"\" <2001>\",\"PJSIP/2001-{i:08x}\",\"PJSIP/trunk-{i:08x}\",\"Dial\",\"PJSIP/00{number}@trunk,60\",\"{}\",\"{}\",\"{}\",70,60,\"ANSWERED\",\"DOCUMENTATION\",\"{uid}\",\"\"",
            ts(start),
            ts(start + 10),
            ts(start + 70)
        )?;
        return Ok(1);
    }
    for m in 0..(1 + i % 2) {
        writeln!(
            w,
            "{head},\"PJSIP/20{m:02}-{i:08x}\",\"Queue\",\"soporte-es,t,,,300\",\"{}\",,\"{}\",20,0,\"NO ANSWER\",\"DOCUMENTATION\",\"{uid}\",\"\"",
            ts(start),
            ts(start + 20)
        )?;
        n += 1;
    }
    if i % 5 == 4 {
        writeln!(
            w,
            "{head},\"\",\"VoiceMail\",\"600@default,u\",\"{}\",\"{}\",\"{}\",60,59,\"ANSWERED\",\"DOCUMENTATION\",\"{uid}\",\"\"",
            ts(start + 20),
            ts(start + 21),
            ts(start + 80)
        )?;
    } else {
        writeln!(
            w,
            "{head},\"PJSIP/2010-{i:08x}\",\"Queue\",\"soporte-es,t,,,300\",\"{}\",\"{}\",\"{}\",200,170,\"ANSWERED\",\"DOCUMENTATION\",\"{uid}\",\"\"",
            ts(start),
            ts(start + 30),
            ts(start + 200)
        )?;
    }
    Ok(n + 1)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::Builder::new()
        .prefix("slawatch-cdr-bench")
        .tempdir()
        .unwrap();
    let csv = dir.path().join("Master.csv");
    let mut rows = 0;
    let mut calls = 0i64;
    {
        let mut w = BufWriter::new(std::fs::File::create(&csv).unwrap());
        while rows < n {
            rows += call_rows(&mut w, calls).unwrap();
            calls += 1;
        }
        w.flush().unwrap();
    }
    let bytes = std::fs::metadata(&csv).unwrap().len();
    println!(
        "Master.csv: {rows} rows of {calls} calls, {:.1} MiB",
        bytes as f64 / (1 << 20) as f64
    );
    // The source's own work (read, cut, parse, classify, normalise), without the ledger.
    {
        let bytes = std::fs::read(&csv).unwrap();
        let settings = slawatch::sources::calls::lines::CallLogSettings {
            format: slawatch::sources::calls::lines::CallLogFormat::Cdr {
                layout: slawatch::sources::calls::cdr_csv::CdrLayout::Columns18,
                zone: slawatch::sources::calls::cdr_csv::FileZone::Utc,
            },
            path: csv.clone(),
            poll_interval: Duration::from_millis(50),
            lines: slawatch::sources::calls::lines::CallLines {
                default_region: slawatch_core::phone_number::region("ES"),
                extension_max_digits: 5,
                ..Default::default()
            },
        };
        let t0 = Instant::now();
        let mut observations = 0;
        let mut queue = Default::default();
        let mut offset = 0;
        while offset < bytes.len() {
            let end = (offset + (1 << 20)).min(bytes.len());
            let (obs, used, _, _) = slawatch::sources::calls::tail::parse_chunk(
                "bench",
                &settings,
                &bytes[offset..end],
                1,
                &mut queue,
            );
            observations += obs.len();
            if used == 0 {
                break;
            }
            offset += used;
        }
        let took = t0.elapsed();
        println!(
            "source alone (parse + classify + normalise): {observations} rows in {:.2} s = {:.0} rows/s",
            took.as_secs_f64(),
            observations as f64 / took.as_secs_f64()
        );
    }
    let config = r#"
[http]
bind = "127.0.0.1:{port}"
[desk]
support_addresses = ["support@example.com"]
[sources.cdr]
type = "asterisk_cdr"
path = "Master.csv"
layout = "18"
time_zone = "UTC"
default_region = "ES"
extension_max_digits = 5
poll_interval = "50ms"
[[sources.cdr.lines]]
name = "soporte-es"
match = ["600", "soporte-es"]
language = "es"
"#;
    let mut rates = Vec::new();
    let stores = bench_store::from_env();
    let mut last: Option<Daemon> = None;
    for store in &stores {
        if let Some(mut previous) = last.take() {
            let _ = previous.stop();
        }
        let ledger = store.ledger();
        // Each run starts from the file alone: no ledger, nothing left of the last run.
        let _ = std::fs::remove_file(dir.path().join("ledger.db"));
        let _ = std::fs::remove_file(dir.path().join("ledger.db-wal"));
        let _ = std::fs::remove_file(dir.path().join("ledger.db-shm"));
        let config = format!("{}{config}", ledger.toml);
        let mut d = Daemon::configure(dir.path(), &config, &ledger.env);
        let name = ledger.name;
        let started = Instant::now();
        d.start();
        d.wait_ready(Duration::from_secs(3600));
        let took = started.elapsed();
        println!(
            "[{name}] backfill end to end (spawn → /readyz): {rows} rows in {:.2} s = {:.0} rows/s",
            took.as_secs_f64(),
            rows as f64 / took.as_secs_f64()
        );
        rates.push((name, rows as f64 / took.as_secs_f64()));
        // CPU time is steadier than wall time on a shared machine: it shows whether a change did
        // less work even when the wall clock is noisy.
        if let Some(cpu) = d.pid().and_then(support::process::cpu_seconds) {
            println!(
                "[{name}] daemon CPU (user + system) for the backfill: {cpu:.2} s on {} cores",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            );
        }
        let events = ledger.sql(store, &d, "SELECT COUNT(*) FROM ledger");
        println!("[{name}] ledger events: {events}");
        last = Some(d);
    }
    if let [(a, ra), (b, rb)] = rates.as_slice() {
        println!("backfill rate {b}/{a}: {:.2}", rb / ra);
    }
    let mut d = last.expect("at least one store");

    if std::env::var_os("SLAWATCH_BENCH_BACKFILL_ONLY").is_some() {
        return;
    }
    let mut latencies = Vec::new();
    for k in 0..200i64 {
        let i = calls + k;
        let mut line = Vec::new();
        // A voicemail call (opens an inquiry and stays open).
        let start = chrono::Utc::now().timestamp();
        let number = format!("346{:08}", i % 100_000_000);
        writeln!(
            line,
            "\"\",\"{number}\",\"600\",\"from-trunk\",\"\"\"\"\" <{number}>\",\"PJSIP/t-{i}\",\"\",\"VoiceMail\",\"600@default\",\"{}\",\"{}\",\"{}\",5,4,\"ANSWERED\",\"DOCUMENTATION\",\"{start}.{i}\",\"\"",
            ts(start), ts(start + 1), ts(start + 5)
        ).unwrap();
        let t0 = Instant::now();
        let mut f = std::fs::OpenOptions::new().append(true).open(&csv).unwrap();
        f.write_all(&line).unwrap();
        drop(f);
        let key = format!("+34{}", &number[2..]);
        loop {
            let body = d
                .get("/api/v1/inquiries?channel=phone&state=open&limit=300")
                .1;
            if body.contains(&key) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "call {key} never appeared"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        latencies.push(t0.elapsed());
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "append → API: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (poll_interval 50 ms)",
        p(0.5).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
    assert!(d.stop());
}
