//! Scheduler benchmark: 100,000 open inquiries whose warn and breach instants fall over the next
//! minutes; measures how late each state change reaches the notifier after its instant, and the
//! process's peak RSS.
//!
//! `cargo bench --bench scheduler` (N and the spread can be changed with SLAWATCH_BENCH_N and
//! SLAWATCH_BENCH_SPREAD_SECS). Figures to reach: every change within 50 ms, RSS ≤ 150 MB.

// The daemon's allocator (see `src/main.rs`), so the memory figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use slawatch::engine::{Engine, Shared, replay};
use slawatch::notify::{Alert, Delivery, Notifier};
use slawatch::scheduler::Clock;
use slawatch::sources::{EngineSink, SourceBatch};
use slawatch::store::Store;
use slawatch::telemetry::Metrics;
use slawatch_core::desk::DeskSettings;
use slawatch_core::tracker::TrackerRules;
use slawatch_core::tracker::observation::{Address, Mail, Observation};
use slawatch_core::tracker::policy::{Policy, PolicySet};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Records how late each alert arrived after its instant.
struct Lateness(Mutex<Vec<f64>>);

impl Notifier for Lateness {
    fn name(&self) -> &str {
        "bench"
    }
    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        let now = Utc::now();
        let mut l = self.0.lock().unwrap();
        for a in alerts {
            l.push((now - a.due_at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
        }
        Box::pin(async move { alerts.iter().map(|_| Ok(())).collect() })
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("SLAWATCH_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let spread: i64 = std::env::var("SLAWATCH_BENCH_SPREAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&format!("sqlite://{}/bench.db", dir.path().display()))
        .await
        .unwrap();
    let desk = DeskSettings::with_address("support@example.com");
    // A 2-minute target warned at 1 minute keeps the run short; the density of state changes
    // (2 × N over `spread` seconds each) is what loads the scheduler, not the target itself.
    let policy = Policy {
        target: Duration::from_secs(120),
        warn_offsets: vec![Duration::from_secs(60)],
        ..Policy::default()
    };
    let rules = Arc::new(TrackerRules {
        desk,
        policies: PolicySet::single(policy),
    });
    let (tracker, deadlines) = replay(&store, rules).await.unwrap();
    let shared = Arc::new(Shared::new(
        tracker,
        Arc::new(Metrics::new("bench", &["bench".to_string()])),
        store.clone(),
        BTreeSet::from(["bench".to_string()]),
    ));
    let lateness = Arc::new(Lateness(Mutex::new(Vec::with_capacity(2 * n))));
    let (input_tx, input_rx) = mpsc::channel(4);
    let (_command_tx, command_rx) = mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let engine = Engine {
        shared: shared.clone(),
        clock: Clock::System,
        notifier: lateness.clone(),
        public_url: "http://127.0.0.1:9750".into(),
        oncall: None,
        input: input_rx,
        commands: command_rx,
        signals: tokio::sync::mpsc::unbounded_channel().1,
        shutdown: shutdown.clone(),
        sync_grace: slawatch::engine::SYNC_GRACE,
        ledger: Default::default(),
        actions: Default::default(),
    };
    let task = tokio::spawn(engine.run(deadlines));
    let sink = EngineSink::new(input_tx);

    // Inquiries received so that their warn instants (1 min) start 20 s from now and their
    // breach instants (2 min) follow, spread over `spread` seconds.
    let load_started = Instant::now();
    let base = Utc::now() - chrono::Duration::minutes(1) + chrono::Duration::seconds(20);
    // As the IMAP source submits (500 messages per UID FETCH chunk).
    let chunk = 500;
    for start in (0..n).step_by(chunk) {
        let observations = (start..(start + chunk).min(n))
            .map(|i| {
                let delivered_at =
                    base + chrono::Duration::milliseconds(i as i64 * spread * 1000 / n as i64);
                Observation::MessageReceived(Mail {
                    source: "bench".into(),
                    folder: "INBOX".into(),
                    message_id: format!("<bench-{i}@customer.test>"),
                    digest: format!("{i:064x}"),
                    delivered_at,
                    seen_at: Utc::now(),
                    from: Some(Address {
                        name: None,
                        email: format!("customer{i}@customer.test"),
                    }),
                    to: vec![Address {
                        name: None,
                        email: "support@example.com".into(),
                    }],
                    subject: format!("Question {i}"),
                    ..Mail::default()
                })
            })
            .collect();
        let last = start + chunk >= n;
        sink.submit(SourceBatch {
            source: "bench".into(),
            observations,
            cursors: vec![],
            initial_sync_done: last,
        })
        .await
        .unwrap();
    }
    let load = load_started.elapsed();
    println!(
        "opened {n} inquiries through the engine in {:.2} s ({:.0}/s); RSS {:.1} MB",
        load.as_secs_f64(),
        n as f64 / load.as_secs_f64(),
        support::process::memory_mb("self", "VmRSS:").unwrap_or(f64::NAN)
    );

    // Wait for every warn and breach: 2 per inquiry.
    let deadline = Instant::now() + Duration::from_secs(20 + 60 + spread as u64 + 60);
    while lateness.0.lock().unwrap().len() < 2 * n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    shutdown.cancel();
    let _ = task.await;

    let mut l = lateness.0.lock().unwrap().clone();
    l.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "state changes fired: {} of {} expected; lateness after the instant: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        l.len(),
        2 * n,
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "peak RSS (VmHWM): {:.1} MB",
        support::process::memory_mb("self", "VmHWM:").unwrap_or(f64::NAN)
    );
}
