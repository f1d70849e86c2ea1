//! Pushed calls per second with durable acknowledgement: the real daemon (signed ledger), and
//! `SLAWATCH_BENCH_CLIENTS` (default 64) clients each sending one call event per
//! `POST /api/v1/calls` over a keep-alive connection, `SLAWATCH_BENCH_CALLS` (default 20000) in
//! all. Every 202 is sent only once the call is in the ledger and the ledger synced to disk
//! (`synchronous=FULL`); concurrent pushes share one commit and one sync (group commit).
//!
//! `cargo bench --bench pushed_calls`. Target: 10,000 pushed calls per second.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::daemon::Daemon;
use support::http::Client;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

fn main() {
    let clients = env("SLAWATCH_BENCH_CLIENTS", 64);
    let calls = env("SLAWATCH_BENCH_CALLS", 20_000);
    let dir = tempfile::tempdir().expect("temp dir");
    slawatch::store::signing::generate(&dir.path().join("keys")).expect("a key pair");
    for folder in ["maildir", "maildir/.Sent"] {
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(dir.path().join(folder).join(sub)).unwrap();
        }
    }
    let config = r#"
[store]
url = "sqlite://{dir}/ledger.db"
signing_key_file = "{dir}/keys/ledger-signing.key"
[http]
bind = "127.0.0.1:{port}"
[desk]
support_addresses = ["support@example.com"]
[sources.mail]
type = "maildir"
path = "{dir}/maildir"
"#;
    let mut d = Daemon::configure(dir.path(), config, &[]);
    d.start();
    d.wait_ready(Duration::from_secs(30));
    let started_at = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let next = Arc::new(AtomicUsize::new(0));
    let addr = d.addr;
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let next = next.clone();
            let started_at = started_at.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= calls {
                        return;
                    }
                    let body = format!(
                        r#"{{"call_id": "bench-{i}", "event": "ended", "outcome": "voicemail", "number": "+34600{i:06}", "started_at": "{started_at}"}}"#
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
    let elapsed = start.elapsed();
    let commits: f64 = d
        .sql("SELECT count(*) FROM ledger WHERE kind = 'ledger_checkpoint'")
        .parse()
        .unwrap_or(0.0);
    let opened: usize = d
        .sql("SELECT count(*) FROM ledger WHERE kind = 'inquiry_opened'")
        .parse()
        .unwrap_or(0);
    assert!(d.stop(), "the daemon stops cleanly");
    assert_eq!(opened, calls, "every acknowledged call is in the ledger");
    println!(
        "pushed calls: {calls} by {clients} clients in {:.2} s: {:.0} calls/s acknowledged durably \
         ({commits:.0} signed commits, {:.1} calls per synced commit)",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
        calls as f64 / commits.max(1.0)
    );
}
