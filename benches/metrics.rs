//! How long `/metrics` takes to render on a very bad day: 100,000 open inquiries.
//!
//! The target is ≤ 20 ms per render (a scrape every 15 s must not hold the tracker's read lock
//! long). Run with `cargo bench --bench metrics`; it prints the median and worst of a few renders
//! and exits non-zero when the median misses the target.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use slawatch::telemetry::Metrics;
use slawatch_core::domain::{Channel, Language};
use slawatch_core::testing;
use slawatch_core::tracker::{Event, Tracker};

const OPEN_INQUIRIES: u64 = 100_000;
const RENDERS: usize = 21;
const TARGET: Duration = Duration::from_millis(20);

fn main() {
    let now = Utc::now();
    let tracker = tracker_with_open_inquiries(now);
    let metrics = Metrics::new("bench", &["inbox".to_string(), "calls".to_string()]);

    let mut times = Vec::with_capacity(RENDERS);
    let mut bytes = 0;
    for _ in 0..RENDERS {
        let start = Instant::now();
        let text = metrics.render(&tracker, now).unwrap_or_default();
        times.push(start.elapsed());
        bytes = text.len();
    }
    times.sort();
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    println!(
        "render with {OPEN_INQUIRIES} open inquiries: median {median:?}, worst {worst:?}, \
         {bytes} bytes (target {TARGET:?})"
    );
    if median > TARGET {
        eprintln!("median render time {median:?} exceeds the {TARGET:?} target");
        std::process::exit(1);
    }
}

fn tracker_with_open_inquiries(now: DateTime<Utc>) -> Tracker {
    let mut tracker = testing::tracker();
    for n in 0..OPEN_INQUIRIES {
        let channel = Channel::ALL[n as usize % Channel::ALL.len()];
        let language = Language::ALL[n as usize % Language::ALL.len()];
        // Spread over the last ~28 hours: a mix of ok, warning and breached.
        let received_at = now - TimeDelta::seconds(n as i64);
        tracker.apply(&Event::InquiryOpened(testing::opened(
            n,
            channel,
            language,
            received_at,
        )));
    }
    tracker
}
