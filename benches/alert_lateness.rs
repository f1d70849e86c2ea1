//! Alert lateness under load, against the real daemon (release build) and a local webhook
//! receiver that timestamps every alert it is handed:
//!
//! 1. **during a CDR backfill**: a `Master.csv` of `SLAWATCH_BENCH_ROWS` rows (default
//!    1,000,000, one answered queue call each) is backfilled while thirty fresh e-mail
//!    inquiries cross their warning and breach instants (policy: warning at 15 s, deadline at
//!    25 s: sixty instants, 3 to 22 s after the start);
//! 2. **during a flood of pushed calls**: clients push `SLAWATCH_BENCH_PUSH_RATE` (default
//!    10,000) answered calls a second to `POST /api/v1/calls` for `SLAWATCH_BENCH_PUSH_SECONDS`
//!    (default 60) while another thirty inquiries cross their instants.
//!
//! Lateness = the receiver's clock at the request minus the instant the alert is about. Target
//! (issue 17): p99 ≤ 1 s, max ≤ 2 s in both. `cargo bench --bench alert_lateness`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::daemon::Daemon;
use support::http::Client;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Every alert handed to the webhook: `(inquiry, kind) → (due_at, received)` in Unix seconds.
type Seen = Arc<Mutex<BTreeMap<(String, String), (f64, f64)>>>;

/// A webhook receiver on 127.0.0.1: reads each POST's JSON body and notes when each alert in it
/// arrived.
fn receiver() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let record = record.clone();
            std::thread::spawn(move || serve(stream, record));
        }
    });
    (url, seen)
}

fn serve(stream: TcpStream, seen: Seen) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((name, value)) = h.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let at = unix_now();
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) {
            let mut seen = seen.lock().unwrap();
            for a in json["alerts"].as_array().into_iter().flatten() {
                let due = a["due_at"]
                    .as_str()
                    .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
                    .map_or(0.0, |d| d.timestamp_millis() as f64 / 1000.0);
                let key = (
                    a["inquiry_id"].as_str().unwrap_or_default().to_string(),
                    a["kind"].as_str().unwrap_or_default().to_string(),
                );
                seen.entry(key).or_insert((due, at));
            }
        }
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// Thirty customer mails, three a second, received 12 to 3 s before `base`, whose warnings
/// (15 s after receipt) fall 3 to 12 s after `base` and breaches (25 s after receipt) 13 to 22 s
/// after it: sixty instants within the load.
fn mailbox(dir: &Path, base: u64, tag: &str) {
    let root = dir.join("maildir");
    for sub in ["tmp", "new", "cur", ".Sent/tmp", ".Sent/new", ".Sent/cur"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for i in 0..MAILS as u64 {
        let received = base + 3 + i / 3 - 15;
        let raw = format!(
            "From: C{i} <c{i}@customer.test>\r\nTo: support@example.com\r\nSubject: {tag} {i}\r\n\
             Message-ID: <{tag}{i}@customer.test>\r\n\r\nHello {i}.\r\n"
        );
        std::fs::write(
            root.join("new").join(format!("{received}.M{i}P5.bench")),
            raw,
        )
        .unwrap();
    }
}

const MAILS: usize = 30;

/// The daemon: the mail inquiries (warning at 15 s, deadline at 25 s) plus `sources`, alerting
/// through the webhook at `url` (a secret: from the environment).
fn daemon(dir: &Path, url: &str, sources: &str) -> Daemon {
    let config = format!(
        r#"
[store]
url = "sqlite://{{dir}}/ledger.db"
[http]
bind = "127.0.0.1:{{port}}"
[desk]
support_addresses = ["support@example.com"]
[policy]
target = "25s"
warn = ["15s"]
[sources.mail]
type = "maildir"
path = "{{dir}}/maildir"
scan_interval = "1s"
{sources}
[notify]
primary = ["webhook"]
[notify.webhook]
format = "json"
timeout = "5s"
"#
    );
    Daemon::configure(dir, &config, &[("SLAWATCH__NOTIFY__WEBHOOK__URL", url)])
}

/// Lateness of the mail alerts (seconds), those due within `[from, until]` (Unix seconds).
fn report(what: &str, seen: &Seen, from: f64, until: f64) {
    let seen = seen.lock().unwrap();
    let mut late: Vec<f64> = seen
        .iter()
        .filter(|((id, _), (due, _))| id.starts_with('e') && (from..=until).contains(due))
        .map(|(_, (due, at))| at - due)
        .collect();
    late.sort_by(f64::total_cmp);
    let all = seen.keys().filter(|(id, _)| id.starts_with('e')).count();
    if late.is_empty() {
        println!("{what}: no alert fell due during the load ({all} alerts in all)");
        return;
    }
    let pick = |q: f64| late[((late.len() as f64 * q).ceil() as usize).clamp(1, late.len()) - 1];
    println!(
        "{what}: {} of {all} alerts fell due during the load; lateness p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        late.len(),
        pick(0.5),
        pick(0.99),
        late[late.len() - 1]
    );
    let worst: Vec<String> = late
        .iter()
        .rev()
        .take(5)
        .map(|l| format!("{l:.3}"))
        .collect();
    println!("  worst five: {} s", worst.join(", "));
}

fn backfill() {
    let rows = env("SLAWATCH_BENCH_ROWS", 1_000_000);
    let dir = tempfile::Builder::new()
        .prefix("slawatch-lateness")
        .tempdir()
        .unwrap();
    let (url, seen) = receiver();
    {
        let mut w = BufWriter::new(std::fs::File::create(dir.path().join("rows.csv")).unwrap());
        let epoch: i64 = 1_767_600_000; // 2026-01-05 08:00:00 UTC
        let ts = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .unwrap()
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        };
        for i in 0..rows as i64 {
            let start = epoch + i;
            let number = format!("346{:08}", i % 100_000_000);
            writeln!(
                w,
                "\"\",\"{number}\",\"600\",\"from-trunk\",\"\"\"Cliente {i}\"\" <{number}>\",\"PJSIP/trunk-{i:08x}\",\"PJSIP/2010-{i:08x}\",\"Queue\",\"soporte-es,t,,,300\",\"{}\",\"{}\",\"{}\",200,170,\"ANSWERED\",\"DOCUMENTATION\",\"{start}.{i}\",\"\"",
                ts(start),
                ts(start + 30),
                ts(start + 200)
            )
            .unwrap();
        }
        w.flush().unwrap();
    }
    let base = unix_now() as u64;
    mailbox(dir.path(), base, "backfill");
    let mut d = daemon(
        dir.path(),
        &url,
        r#"[sources.cdr]
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
language = "es""#,
    );
    std::fs::write(dir.path().join("Master.csv"), b"").unwrap();
    d.start();
    d.wait_ready(Duration::from_secs(60));
    // Once the mail inquiries are known (their instants are alert lateness from here on, not
    // detection latency), the million rows land in the call log at once.
    d.wait_for("the mail inquiries", Duration::from_secs(30), |d| {
        d.inquiries().len() >= MAILS
    });
    let started = Instant::now();
    {
        let mut from = std::fs::File::open(dir.path().join("rows.csv")).unwrap();
        let mut to = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("Master.csv"))
            .unwrap();
        std::io::copy(&mut from, &mut to).unwrap();
    }
    let phone = "slawatch_inquiries_received_total{channel=\"phone\",language=\"es\"}";
    d.wait_for("the backfill", Duration::from_secs(3600), |d| {
        d.metric(phone).unwrap_or(0.0) >= rows as f64
    });
    let done = unix_now();
    let took = started.elapsed();
    println!(
        "backfill: {rows} rows in {:.1} s ({:.0} rows/s), from {:.1} to {:.1} s after the mails were written; alert instants from 3 to 22 s after",
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64(),
        done - took.as_secs_f64() - base as f64,
        done - base as f64,
    );
    let limit = Instant::now() + Duration::from_secs(120);
    while seen
        .lock()
        .unwrap()
        .keys()
        .filter(|(id, _)| id.starts_with('e'))
        .count()
        < 2 * MAILS
        && Instant::now() < limit
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    report(
        "during the CDR backfill",
        &seen,
        done - took.as_secs_f64(),
        done,
    );
    assert!(d.stop());
}

fn push_flood() {
    let rate = env("SLAWATCH_BENCH_PUSH_RATE", 10_000);
    let seconds = env("SLAWATCH_BENCH_PUSH_SECONDS", 60);
    let clients = env("SLAWATCH_BENCH_CLIENTS", 64);
    let dir = tempfile::Builder::new()
        .prefix("slawatch-lateness")
        .tempdir()
        .unwrap();
    let (url, seen) = receiver();
    let base = unix_now() as u64;
    mailbox(dir.path(), base, "flood");
    let mut d = daemon(dir.path(), &url, "");
    d.start();
    d.wait_ready(Duration::from_secs(30));
    let addr = d.addr;
    let total = rate * seconds;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let flood_start = unix_now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let next = next.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    // On schedule: push i goes at i / rate seconds.
                    let due = Duration::from_secs_f64(i as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    let now = chrono::Utc::now();
                    let started = (now - chrono::Duration::seconds(20)).to_rfc3339();
                    let answered = (now - chrono::Duration::seconds(5)).to_rfc3339();
                    let body = format!(
                        r#"{{"call_id": "flood-{i}", "event": "answered", "number": "+34600{:06}", "started_at": "{started}", "answered_at": "{answered}"}}"#,
                        i % 1_000_000
                    );
                    let status = client.post("/api/v1/calls", &body);
                    assert_eq!(status, 202, "push {i} refused");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let took = start.elapsed();
    let done = flood_start + took.as_secs_f64();
    println!(
        "push flood: {total} calls in {:.1} s ({:.0} calls/s acknowledged durably, target {rate}/s); alert instants from {} to {} s after the flood began",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64(),
        base as f64 + 3.0 - flood_start,
        base as f64 + 22.0 - flood_start
    );
    let limit = Instant::now() + Duration::from_secs(120);
    while seen
        .lock()
        .unwrap()
        .keys()
        .filter(|(id, _)| id.starts_with('e'))
        .count()
        < 2 * MAILS
        && Instant::now() < limit
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    report("during the push flood", &seen, flood_start, done);
    assert!(d.stop());
}

fn main() {
    let only = std::env::var("SLAWATCH_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "backfill" {
        backfill();
    }
    if only.is_empty() || only == "push" {
        push_flood();
    }
}
