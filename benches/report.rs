//! Report over a large ledger: builds a ledger of `SLAWATCH_BENCH_INQUIRIES` inquiries (default
//! 1,000,000; opened, then answered in time, answered late or breached with the breach alert's
//! delivery, plus heartbeats), then
//! times `report::build` for the whole period and each renderer, and prints the peak RSS
//! (VmHWM). Targets: ≤ 10 s and ≤ 500 MB for 1,000,000 inquiries.
//!
//! Then the inquiry projection: rebuilt from the ledger (rate), the store file's size, a report
//! over a month and over a year (each checking the rows it reads, the default, then the whole
//! chain), and `/api/v1/inquiries` (first page, a filtered page, a
//! page deep in history) served through the router over a tracker that holds none of the
//! inquiries (the history is the store's). Targets on 5,000,000 inquiries: month ≤ 2 s, year
//! ≤ 10 s, API pages ≤ 20 ms.
//!
//! `cargo bench --bench report` (release). Set `SLAWATCH_BENCH_LEDGER=/path/file.db` to keep the
//! ledger between runs (it is reused when it exists). `SLAWATCH_BENCH_PROJECTION_ONLY=1` skips
//! the whole-period report and its renderers.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use slawatch::notify::AlertKind;
use slawatch::report::{self, ChainScope, ReportParams};
use slawatch::store::{Store, StoreError};
use slawatch_core::desk::DeskSettings;
use slawatch_core::domain::{Channel, InquiryId, Language};
use slawatch_core::tracker::TrackerRules;
use slawatch_core::tracker::event::{
    Event, InquiryKind, InquiryOpened, InquiryResponded, LanguageSource, Outcome, ResponseKind,
};
use slawatch_core::tracker::policy::{Policy, PolicySet};

const BATCH: usize = 5_000;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// The events of inquiry `i`: received every ~30 s over the year, mixed channels and
/// languages; 90 % answered in time, 5 % answered late after a breach, 5 % never answered.
fn inquiry(i: usize, policy: &str, out: &mut Vec<Event>) {
    let received = t0() + Duration::seconds(i as i64 * 30);
    let channel = if i.is_multiple_of(3) {
        Channel::Phone
    } else {
        Channel::Email
    };
    let language = Language::ALL[i % 3];
    let external_id = format!("<m{i}@customer.example>");
    let id = InquiryId::derive(channel, &external_id);
    out.push(Event::InquiryOpened(Box::new(InquiryOpened {
        inquiry_id: id.clone(),
        channel,
        source: "mail".into(),
        external_id: external_id.clone(),
        thread_id: external_id,
        digest: Some(format!("{i:064x}")),
        customer: format!("customer{}@example.com", i % 50_000),
        customer_name: None,
        subject: "استفسار عن الفاتورة / Consulta sobre la factura".into(),
        language,
        language_source: LanguageSource::Text,
        reply_to: Vec::new(),
        received_at: received,
        first_seen_at: received + Duration::seconds(2),
        date_header: None,
        deadline_at: received + Duration::minutes(15),
        warn_at: vec![received + Duration::minutes(10)],
        policy: policy.into(),
        kind: InquiryKind::First,
        call: None,
    })));
    let respond = |after: i64, outcome| {
        Event::InquiryResponded(Box::new(InquiryResponded {
            inquiry_id: id.clone(),
            at: received + Duration::seconds(after),
            response_seconds: after,
            kind: ResponseKind::Email,
            responder: "support@desk.example".into(),
            external_id: Some(format!("<r{i}@desk.example>")),
            outcome,
            via: None,
            note: None,
        }))
    };
    match i % 20 {
        0 | 1 => {
            out.push(Event::InquiryBreached {
                inquiry_id: id.clone(),
                at: received + Duration::minutes(15),
            });
            out.push(Event::AlertDelivered {
                inquiry_id: id.clone(),
                kind: AlertKind::Breach,
                due_at: received + Duration::minutes(15),
                notifiers: vec!["smtp".into()],
                recipients: vec!["oncall@desk.example".into()],
                at: received + Duration::minutes(15) + Duration::seconds(2),
            });
            if i.is_multiple_of(20) {
                out.push(respond(1_800 + (i % 600) as i64, Outcome::Missed));
            }
        }
        _ => out.push(respond(30 + (i % 850) as i64, Outcome::Met)),
    }
    if i.is_multiple_of(10) {
        out.push(Event::MonitorHeartbeat { at: received });
    }
}

#[tokio::main]
async fn main() -> Result<(), StoreError> {
    let n: usize = std::env::var("SLAWATCH_BENCH_INQUIRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let keep = std::env::var("SLAWATCH_BENCH_LEDGER").ok();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = keep
        .clone()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("ledger.db"));
    let reuse = keep.is_some() && path.exists();
    let store = Store::open(&format!("sqlite://{}", path.display())).await?;
    let policy = Policy::default();
    let rules = Arc::new(TrackerRules {
        desk: DeskSettings {
            support_addresses: vec!["support@desk.example".into()],
            internal_domains: vec!["desk.example".into()],
            ignore_senders: Vec::new(),
            ignore_subjects: Vec::new(),
            auto_ack_subjects: Vec::new(),
            default_language: Language::En,
            time_zone: chrono_tz::UTC,
        },
        policies: PolicySet::single(policy.clone()),
    });
    if !reuse {
        let started = Instant::now();
        let mut batch = vec![
            Event::MonitorStarted {
                at: t0() - Duration::days(1),
                version: "bench".into(),
            },
            Event::PolicyActivated {
                at: t0(),
                policy: policy.record(),
            },
        ];
        for i in 0..n {
            inquiry(i, &policy.version(), &mut batch);
            if batch.len() >= BATCH {
                commit(&store, &rules, &batch, recorded_at(i)).await?;
                batch.clear();
            }
            if (i + 1).is_multiple_of(50_000) {
                support::ledger::checkpoint(&store).await;
            }
        }
        commit(&store, &rules, &batch, recorded_at(n)).await?;
        support::ledger::checkpoint(&store).await;
        eprintln!(
            "ledger : {n} inquiries written (with their projection rows) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let events = store.head().await?.map(|h| h.0).unwrap_or(0);
    let rss_before = support::process::memory_mb("self", "VmHWM:");

    let params = ReportParams {
        from: t0(),
        to: t0() + Duration::days(366),
        time_zone: "Europe/Madrid".parse().expect("tz"),
        mask: false,
        title: "bench".into(),
        chain: Default::default(),
    };
    projection_figures(&store, &path, rules.clone(), n).await?;
    if std::env::var_os("SLAWATCH_BENCH_PROJECTION_ONLY").is_some() {
        store.close().await;
        return Ok(());
    }
    let started = Instant::now();
    let cpu_before = support::process::cpu_seconds("self");
    let data = report::build(&store, rules, &params, &mut |_| {})
        .await
        .map_err(|e| match e {
            report::ReportError::Store(e) => e,
            other => panic!("report failed: {other}"),
        })?;
    let built = started.elapsed();
    let cpu_built = support::process::cpu_seconds("self")
        .zip(cpu_before)
        .map(|(a, b)| a - b);
    let rss_built = support::process::memory_mb("self", "VmHWM:");
    assert_eq!(data.totals.received, n as u64);
    assert!(data.ledger.intact);

    let mut timings = Vec::new();
    for (name, render) in [
        (
            "json",
            report::json::render as fn(&report::ReportData, &mut dyn std::io::Write) -> _,
        ),
        ("csv", report::csv::render),
        ("html", report::html::render),
    ] {
        let started = Instant::now();
        let cpu_before = support::process::cpu_seconds("self");
        let mut sink = std::io::BufWriter::new(
            std::fs::File::create(dir.path().join(format!("report.{name}"))).expect("file"),
        );
        render(&data, &mut sink).expect("render");
        drop(sink);
        timings.push(format!(
            "{name} {:.2} s (cpu {:.2} s)",
            started.elapsed().as_secs_f64(),
            support::process::cpu_seconds("self")
                .zip(cpu_before)
                .map_or(f64::NAN, |(a, b)| a - b)
        ));
    }
    let total = started.elapsed();
    println!(
        "report : {n} inquiries, {events} events: verify+replay+derive {:.2} s (cpu {:.2} s); {}; total {:.2} s",
        built.as_secs_f64(),
        cpu_built.unwrap_or(f64::NAN),
        timings.join(", "),
        total.as_secs_f64()
    );
    println!(
        "memory : peak RSS {:.0} MB (after writing the ledger: {:.0} MB; after building the report: {:.0} MB)",
        support::process::memory_mb("self", "VmHWM:").unwrap_or(f64::NAN),
        rss_before.unwrap_or(f64::NAN),
        rss_built.unwrap_or(f64::NAN)
    );
    println!(
        "figures: compliance {}, p50 {:?} s, p99 {:?} s, breaches {}",
        report::format_ratio(data.totals.compliance),
        data.response_times.p50,
        data.response_times.p99,
        data.breaches.len()
    );
    store.close().await;
    Ok(())
}

/// Commits `batch` with its inquiries' projection rows, as the engine does: each inquiry's
/// events are all in one batch, so a tracker of the batch alone holds them (and memory stays
/// flat however large the ledger grows).
/// When the batch ending with inquiry `i` is committed: as a daemon would, once its last
/// answer is in (a late answer comes at most 40 minutes after receipt).
fn recorded_at(i: usize) -> DateTime<Utc> {
    t0() + Duration::seconds(i as i64 * 30) + Duration::minutes(45)
}

async fn commit(
    store: &Store,
    rules: &Arc<TrackerRules>,
    batch: &[Event],
    recorded_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut tracker = slawatch_core::tracker::Tracker::new(rules.clone());
    let mut ids = Vec::new();
    for event in batch {
        tracker.apply(event);
        ids.extend(event.inquiry_id().cloned());
    }
    ids.dedup();
    let inquiries: Vec<_> = ids
        .iter()
        .filter_map(|id| tracker.get(id).cloned())
        .collect();
    store
        .commit_projected(
            recorded_at,
            batch,
            &[],
            slawatch::store::Sealing::default(),
            &inquiries,
        )
        .await?;
    Ok(())
}

/// The projection's figures: rebuild rate, file size, month and year reports, API pages.
async fn projection_figures(
    store: &Store,
    path: &std::path::Path,
    rules: Arc<TrackerRules>,
    n: usize,
) -> Result<(), StoreError> {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    // The rebuild replays through a tracker holding every inquiry (until the working set is
    // bounded): `SLAWATCH_BENCH_REBUILD=0` skips it where that does not fit in memory.
    if std::env::var("SLAWATCH_BENCH_REBUILD").as_deref() != Ok("0") {
        let started = Instant::now();
        store.clear_projection().await?;
        let rebuilt = slawatch::store::projection::rebuild(store, rules.clone(), store).await?;
        let secs = started.elapsed().as_secs_f64();
        support::ledger::checkpoint(store).await;
        assert_eq!(rebuilt.inquiries, n as u64);
        println!(
            "rebuild: {} inquiries from {} events in {secs:.1} s ({:.0} events/s, {:.0} inquiries/s), peak RSS {:.0} MB",
            rebuilt.inquiries,
            rebuilt.events,
            rebuilt.events as f64 / secs,
            rebuilt.inquiries as f64 / secs,
            support::process::memory_mb("self", "VmHWM:").unwrap_or(f64::NAN)
        );
    }
    assert_eq!(store.projection_len().await?, n as i64);
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let Store::Sqlite(pool) = store else {
        panic!("an SQLite ledger")
    };
    let projection_pages: i64 =
        sqlx::query_scalar("SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'inquiries%'")
            .fetch_one(pool)
            .await
            .unwrap_or(-1);
    println!(
        "store  : file {:.0} MB (+ WAL {:.0} MB), of which the projection and its indexes {:.0} MB",
        size(path) as f64 / 1e6,
        size(std::path::Path::new(&wal)) as f64 / 1e6,
        projection_pages as f64 / 1e6
    );

    // The whole chain alone: what a report checking it (`--whole-chain`) adds to any period.
    let started = Instant::now();
    let verified = store.verify().await?;
    assert!(matches!(
        verified,
        slawatch::store::Verification::Intact { .. }
    ));
    println!(
        "verify : whole chain {:.2} s",
        started.elapsed().as_secs_f64()
    );

    for (name, from, to, chain) in [
        (
            "month",
            t0() + Duration::days(31),
            t0() + Duration::days(59),
            ChainScope::Period,
        ),
        ("year", t0(), t0() + Duration::days(365), ChainScope::Period),
        (
            "month",
            t0() + Duration::days(31),
            t0() + Duration::days(59),
            ChainScope::Whole,
        ),
        ("year", t0(), t0() + Duration::days(365), ChainScope::Whole),
    ] {
        let params = ReportParams {
            from,
            to,
            time_zone: "Europe/Madrid".parse().expect("tz"),
            mask: false,
            title: "bench".into(),
            chain,
        };
        let started = Instant::now();
        let data = report::build(store, rules.clone(), &params, &mut |_| {})
            .await
            .map_err(|e| match e {
                report::ReportError::Store(e) => e,
                other => panic!("report failed: {other}"),
            })?;
        println!(
            "report : {name}, checking the {} chain ({} inquiries of {n}, {} rows checked): {:.2} s",
            chain.as_str(),
            data.totals.received,
            data.ledger.events,
            started.elapsed().as_secs_f64()
        );
    }

    // The API over a tracker that holds none of them: every page comes from the projection.
    let metrics = Arc::new(slawatch::telemetry::Metrics::new(
        "bench",
        &["mail".to_string()],
    ));
    let shared = Arc::new(slawatch::engine::Shared::new(
        slawatch_core::tracker::Tracker::new(rules),
        metrics,
        store.clone(),
        Default::default(),
    ));
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let state = slawatch::http::AppState::new(
        shared,
        slawatch::engine::EngineHandle::new(tx),
        slawatch::http::Access::with_tokens(slawatch::http::Tokens::default()),
    );
    let deep = slawatch::http::api::encode_cursor(
        t0() + Duration::seconds(n as i64 * 15),
        &InquiryId::default(),
    );
    for (name, uri) in [
        ("first page", "/api/v1/inquiries".to_string()),
        ("state=open", "/api/v1/inquiries?state=open".to_string()),
        ("language=ar", "/api/v1/inquiries?language=ar".to_string()),
        (
            "channel=phone&state=responded",
            "/api/v1/inquiries?channel=phone&state=responded".to_string(),
        ),
        (
            "cursor mid-history",
            format!("/api/v1/inquiries?cursor={deep}"),
        ),
    ] {
        let mut times = Vec::new();
        let mut items = 0;
        for _ in 0..20 {
            let started = Instant::now();
            let response = slawatch::http::router(state.clone())
                .oneshot(Request::get(&uri).body(Body::empty()).expect("request"))
                .await
                .unwrap_or_else(|e| match e {});
            assert!(
                response.status().is_success(),
                "{uri}: {}",
                response.status()
            );
            let body = axum::body::to_bytes(response.into_body(), 1 << 26)
                .await
                .expect("body");
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            let page: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
            items = page["inquiries"].as_array().map_or(0, Vec::len);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "api    : {name}: {items} items, p50 {:.1} ms, max {:.1} ms",
            times[times.len() / 2],
            times[times.len() - 1]
        );
    }
    Ok(())
}
