//! How long the page of one inquiry (`/inquiries/{id}`) takes with 100,000 open inquiries.
//!
//! The target is ≤ 50 ms per page. The whole request is measured, through the router, as the
//! phone's tap makes it: a signed `view` link checked, the inquiry copied out from under the
//! tracker's read lock, its rows read from a real SQLite ledger (a file holding every
//! inquiry's opening, a breach and its alert delivery), and the HTML rendered. Run with
//! `cargo bench --bench inquiry_page`; it prints the median and worst of a few pages and
//! exits non-zero when the median misses the target. It also prints what signing the links
//! of one alert costs (HMAC-SHA256, six links).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use chrono::{TimeDelta, Utc};
use slawatch::engine::{EngineHandle, Shared, replay};
use slawatch::http::links::{LinkAction, LinkKey};
use slawatch::http::{Access, AppState, Tokens, router};
use slawatch::store::Store;
use slawatch::telemetry::Metrics;
use slawatch_core::domain::{Channel, Language};
use slawatch_core::testing;
use slawatch_core::tracker::{AlertKind, Event};
use tower::ServiceExt;

const OPEN_INQUIRIES: u64 = 100_000;
const PAGES: usize = 51;
const TARGET: Duration = Duration::from_millis(50);

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let store = Store::open(&url).await.expect("ledger");
    let now = Utc::now();
    let built = Instant::now();
    let mut events = Vec::with_capacity(OPEN_INQUIRIES as usize * 3);
    let mut ids = Vec::new();
    for n in 0..OPEN_INQUIRIES {
        let channel = Channel::ALL[n as usize % Channel::ALL.len()];
        let language = Language::ALL[n as usize % Language::ALL.len()];
        // One every 0.9 s over the last day: a mix of ok, warning and breached.
        let received_at = now - TimeDelta::milliseconds(n as i64 * 900);
        let mut opened = testing::opened(n, channel, language, received_at);
        opened.customer_name = Some(format!("Customer {n}"));
        opened.subject = format!("Question about order {n}");
        let id = opened.inquiry_id.clone();
        let deadline = opened.deadline_at;
        events.push(Event::InquiryOpened(opened));
        if deadline < now {
            events.push(Event::InquiryBreached {
                inquiry_id: id.clone(),
                at: deadline,
            });
            events.push(Event::AlertDelivered {
                inquiry_id: id.clone(),
                kind: AlertKind::Breach,
                due_at: deadline,
                notifiers: vec!["smtp".into()],
                recipients: vec!["ana".into()],
                at: deadline + TimeDelta::seconds(1),
            });
        }
        if n % 1000 == 7 {
            ids.push(id);
        }
    }
    for chunk in events.chunks(20_000) {
        store.append(now, chunk, &[]).await.expect("append");
    }
    let rules = Arc::new(slawatch_core::tracker::TrackerRules {
        desk: slawatch_core::desk::DeskSettings::with_address(testing::SUPPORT),
        policies: slawatch_core::tracker::policy::PolicySet::single(
            slawatch_core::tracker::policy::Policy::default(),
        ),
    });
    let (tracker, _) = replay(&store, rules).await.expect("replay");
    assert_eq!(tracker.open().count() as u64, OPEN_INQUIRIES);
    println!(
        "ledger of {} events, {OPEN_INQUIRIES} open inquiries, built in {:?}",
        events.len(),
        built.elapsed()
    );

    let key = Arc::new(LinkKey::new(
        b"bench-link-key-0123456789abcdef-0123456789",
        "http://127.0.0.1:9750",
        Duration::from_secs(3600),
    ));
    let shared = Arc::new(Shared::new(
        tracker,
        Arc::new(Metrics::new("bench", &[])),
        store,
        BTreeSet::new(),
    ));
    let (commands, _keep) = tokio::sync::mpsc::channel(1);
    let access = Access {
        links: Some(key.clone()),
        ..Access::with_tokens(Tokens::default())
    };
    let app = router(AppState::new(shared, EngineHandle::new(commands), access));

    let mut times = Vec::with_capacity(PAGES);
    let mut bytes = 0;
    for n in 0..PAGES {
        let id = &ids[n % ids.len()];
        let params = key.sign(id, LinkAction::View, "ana", Utc::now());
        let path = LinkKey::path(id, LinkAction::View, &params);
        let request = Request::get(&path)
            .header("host", "127.0.0.1:9750")
            .body(Body::empty())
            .expect("request");
        let start = Instant::now();
        let response = app.clone().oneshot(request).await.expect("response");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        times.push(start.elapsed());
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert!(
            body.windows(9).any(|w| w == b"id=\"take\""),
            "signed page has actions"
        );
        bytes = body.len();
    }
    times.sort();
    let median = times[times.len() / 2];
    let worst = times[times.len() - 1];
    println!(
        "inquiry page with {OPEN_INQUIRIES} open inquiries: median {median:?}, worst {worst:?}, \
         {bytes} bytes (target {TARGET:?})"
    );
    // What signing adds to an alert: the six links (page, take, answered; for the recipient
    // and for a shared channel) each alert carries.
    const ALERTS: u32 = 10_000;
    let start = Instant::now();
    let mut total = 0;
    for n in 0..ALERTS {
        let id = &ids[n as usize % ids.len()];
        for to in ["ana", ""] {
            for action in [LinkAction::View, LinkAction::Take, LinkAction::Answered] {
                total += key.url(id, action, to, now).len();
            }
        }
    }
    let per_alert = start.elapsed() / ALERTS;
    println!("signing the six links of one alert: {per_alert:?} ({total} bytes of links)");
    if median > TARGET {
        eprintln!("median page time {median:?} exceeds the {TARGET:?} target");
        std::process::exit(1);
    }
}
