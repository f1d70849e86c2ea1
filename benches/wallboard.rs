//! How long the wallboard at `/` takes to build with 10,000 open inquiries.
//!
//! The target is ≤ 100 ms per page (summary under the tracker's read lock, then HTML). Run with
//! `cargo bench --bench wallboard`; it prints the median and worst of a few builds and exits
//! non-zero when the median misses the target.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use slawatch::http::status::{Summary, render};
use slawatch_core::domain::{Channel, Language};
use slawatch_core::testing;
use slawatch_core::tracker::{Event, Tracker};

const OPEN_INQUIRIES: u64 = 10_000;
const PAGES: usize = 21;
const TARGET: Duration = Duration::from_millis(100);

fn main() {
    let now = Utc::now();
    let tracker = tracker_with_open_inquiries(now);
    let mut times = Vec::with_capacity(PAGES);
    let mut bytes = 0;
    for _ in 0..PAGES {
        let start = Instant::now();
        let summary = Summary::compute(&tracker, now, chrono_tz::UTC);
        let html = render(&summary, now, chrono_tz::UTC);
        times.push(start.elapsed());
        bytes = html.len();
    }
    times.sort();
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    println!(
        "wallboard with {OPEN_INQUIRIES} open inquiries: median {median:?}, worst {worst:?}, \
         {bytes} bytes (target {TARGET:?})"
    );
    if median > TARGET {
        eprintln!("median wallboard time {median:?} exceeds the {TARGET:?} target");
        std::process::exit(1);
    }
}

fn tracker_with_open_inquiries(now: DateTime<Utc>) -> Tracker {
    let mut tracker = testing::tracker();
    for n in 0..OPEN_INQUIRIES {
        let channel = Channel::ALL[n as usize % Channel::ALL.len()];
        let language = Language::ALL[n as usize % Language::ALL.len()];
        // One every 9 s over the last day: a mix of ok, warning and breached.
        let received_at = now - TimeDelta::seconds(n as i64 * 9);
        let mut opened = testing::opened(n, channel, language, received_at);
        opened.customer_name = Some(format!("Customer {n}"));
        opened.subject = if language == Language::Ar {
            format!("استفسار عن الطلب {n}")
        } else {
            format!("Question about order {n}")
        };
        tracker.apply(&Event::InquiryOpened(opened));
    }
    tracker
}
