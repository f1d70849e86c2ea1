//! How long the wallboard at `/` takes to build with 10,000 open inquiries.
//!
//! The target is ≤ 100 ms per page (summary under the tracker's read lock, then HTML). Run with
//! `cargo bench --bench wallboard`; it prints the median and worst of a few builds and exits
//! non-zero when the median misses the target.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

use slawatch::config::DeskSettings;
use slawatch::domain::{Channel, InquiryId, Language};
use slawatch::http::status::{Summary, render};
use slawatch::tracker::event::{InquiryKind, InquiryOpened, LanguageSource};
use slawatch::tracker::policy::{Policy, PolicySet};
use slawatch::tracker::{Event, Tracker, TrackerRules};

const OPEN_INQUIRIES: u32 = 10_000;
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
    let desk = DeskSettings {
        support_addresses: vec!["support@desk.example".into()],
        internal_domains: vec!["desk.example".into()],
        ignore_senders: Vec::new(),
        ignore_subjects: Vec::new(),
        auto_ack_subjects: Vec::new(),
        default_language: Language::En,
        time_zone: chrono_tz::UTC,
    };
    let mut tracker = Tracker::new(Arc::new(TrackerRules {
        desk,
        policies: PolicySet::single(Policy::default()),
    }));
    for n in 0..OPEN_INQUIRIES {
        let channel = Channel::ALL[n as usize % Channel::ALL.len()];
        let language = Language::ALL[n as usize % Language::ALL.len()];
        // One every 9 s over the last day: a mix of ok, warning and breached.
        let received_at = now - TimeDelta::seconds(i64::from(n) * 9);
        let external_id = format!("<wall{n}@customer.example>");
        tracker.apply(&Event::InquiryOpened(Box::new(InquiryOpened {
            inquiry_id: InquiryId::derive(channel, &external_id),
            channel,
            source: "inbox".into(),
            thread_id: external_id.clone(),
            external_id,
            digest: Some(format!("d{n}")),
            customer: format!("c{n}@customer.example"),
            customer_name: Some(format!("Customer {n}")),
            subject: if language == Language::Ar {
                format!("استفسار عن الطلب {n}")
            } else {
                format!("Question about order {n}")
            },
            language,
            language_source: LanguageSource::Header,
            reply_to: Vec::new(),
            received_at,
            first_seen_at: received_at,
            date_header: None,
            deadline_at: received_at + TimeDelta::minutes(15),
            warn_at: vec![received_at + TimeDelta::minutes(10)],
            policy: "default@bench".into(),
            kind: InquiryKind::First,
            call: None,
        })));
    }
    tracker
}
