//! The HTTP interface end to end: router, handlers, the engine handle and the metrics, over a
//! tracker fed with events and a small engine that answers acks the way the real one does
//! (decide, apply, record).

mod support;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use slawatch::config::Secret;
use slawatch::engine::{AckError, Command, EngineHandle, Shared};
use slawatch::http::{Access, AppState, Tokens, router, serve};
use slawatch::store::Store;
use slawatch::telemetry::Metrics;
use slawatch_core::domain::{Channel, InquiryId, Language};
use slawatch_core::testing::{self, tracker};
use slawatch_core::tracker::event::{InquiryResponded, Outcome, ResponseKind};
use slawatch_core::tracker::{Event, Observation};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const TOKEN: &str = "test-token";

/// A real (in-memory SQLite) ledger holding the world's events, which the handlers read.
async fn test_store(events: &[Event]) -> Store {
    let store = Store::open("sqlite::memory:")
        .await
        .expect("in-memory ledger");
    store
        .append(Utc::now(), events, &[])
        .await
        .expect("append the world's events");
    store
}

struct Spec {
    n: u32,
    channel: Channel,
    language: Language,
    received_at: DateTime<Utc>,
    subject: String,
}

fn spec(n: u32, channel: Channel, language: Language, received_at: DateTime<Utc>) -> Spec {
    Spec {
        n,
        channel,
        language,
        received_at,
        subject: format!("Question {n}"),
    }
}

fn opened(s: &Spec) -> Event {
    let mut opened = testing::opened(u64::from(s.n), s.channel, s.language, s.received_at);
    opened.subject = s.subject.clone();
    opened.first_seen_at = s.received_at + TimeDelta::seconds(1);
    Event::InquiryOpened(opened)
}

fn id(n: u32, channel: Channel) -> InquiryId {
    InquiryId::derive(channel, &testing::external_id(u64::from(n)))
}

struct World {
    state: AppState,
}

impl World {
    /// A world with `specs` opened (in that order) and `answered` responded in time.
    async fn new(specs: &[Spec], answered: &[InquiryId], pending: &[&str], token: bool) -> World {
        let mut tracker = tracker();
        let metrics = Arc::new(Metrics::new("test", &["inbox".to_string()]));
        let mut ledger = Vec::new();
        for s in specs {
            let e = opened(s);
            tracker.apply(&e);
            metrics.record(&e, &tracker);
            ledger.push(e);
        }
        for id in answered {
            let received = tracker.get(id).map(|i| i.received_at).unwrap_or_default();
            let e = Event::InquiryResponded(Box::new(InquiryResponded {
                inquiry_id: id.clone(),
                at: received + TimeDelta::minutes(3),
                response_seconds: 180,
                kind: ResponseKind::Email,
                responder: "support@desk.example".into(),
                external_id: None,
                outcome: Outcome::Met,
                via: None,
                note: None,
            }));
            tracker.apply(&e);
            metrics.record(&e, &tracker);
            ledger.push(e);
        }
        // `test_store` writes the ledger in this order, from seq 1.
        for (seq, e) in (1..).zip(&ledger) {
            tracker.note_ledger_seq(e, seq);
        }
        let shared = Arc::new(Shared::new(
            tracker,
            metrics,
            test_store(&ledger).await,
            pending.iter().map(|s| s.to_string()).collect(),
        ));
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(test_engine(shared.clone(), rx));
        World {
            state: AppState::new(
                shared,
                EngineHandle::new(tx),
                Access::with_tokens(Tokens {
                    write: token.then(|| Secret::new(TOKEN)),
                    ..Tokens::default()
                }),
            ),
        }
    }

    async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = router(self.state.clone())
            .oneshot(request)
            .await
            .unwrap_or_else(|e| match e {});
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        (status, headers, body)
    }

    /// `GET uri` with the write token, which also reads (ignored when no token is set).
    async fn get(&self, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        self.send(
            Request::get(uri)
                .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    async fn get_json(&self, uri: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.get(uri).await;
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    async fn ack(
        &self,
        id: &str,
        body: Value,
        token: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        let mut request = Request::post(format!("/api/v1/inquiries/{id}/ack"))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let (status, headers, body) = self
            .send(request.body(Body::from(body.to_string())).expect("request"))
            .await;
        (
            status,
            headers,
            serde_json::from_str(&body).unwrap_or(Value::Null),
        )
    }
}

/// Answers acks like the engine: decide, apply, record, reply with the inquiry.
async fn test_engine(shared: Arc<Shared>, mut rx: mpsc::Receiver<Command>) {
    while let Some(command) = rx.recv().await {
        // Other commands (if the engine grows any) are not part of these tests.
        #[allow(irrefutable_let_patterns)]
        let Command::Ack { ack, reply } = command else {
            continue;
        };
        let result = {
            let mut tracker = shared.tracker.write().expect("tracker lock");
            let id = ack.inquiry_id.clone();
            match tracker.decide(&Observation::ManualAck(ack), Utc::now()) {
                Ok(events) => {
                    for e in &events {
                        tracker.apply(e);
                        shared.metrics.record(e, &tracker);
                    }
                    tracker.get(&id).cloned().ok_or(AckError::Stopped)
                }
                Err(e) => Err(AckError::Rejected(e)),
            }
        };
        let _ = reply.send(result);
    }
}

fn ids_of(page: &Value) -> Vec<String> {
    page["inquiries"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn base() -> DateTime<Utc> {
    Utc::now() - TimeDelta::hours(2)
}

async fn mixed_world_at(b: DateTime<Utc>) -> World {
    let specs = vec![
        spec(1, Channel::Email, Language::En, b),
        spec(2, Channel::Phone, Language::Ar, b + TimeDelta::minutes(10)),
        spec(3, Channel::Email, Language::Es, b + TimeDelta::minutes(20)),
        spec(4, Channel::Email, Language::Ar, b + TimeDelta::minutes(30)),
    ];
    World::new(&specs, &[id(1, Channel::Email)], &[], true).await
}

async fn mixed_world() -> World {
    mixed_world_at(base()).await
}

#[tokio::test]
async fn list_filters_by_state_channel_language_and_time() {
    let b = base();
    let w = mixed_world_at(b).await;
    let (status, all) = w.get_json("/api/v1/inquiries").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids_of(&all).len(), 4);
    assert_eq!(all["next_cursor"], Value::Null);
    // Newest first.
    assert_eq!(ids_of(&all)[0], id(4, Channel::Email).0);

    let (_, open) = w.get_json("/api/v1/inquiries?state=open").await;
    assert_eq!(ids_of(&open).len(), 3);
    let (_, responded) = w.get_json("/api/v1/inquiries?state=responded").await;
    assert_eq!(ids_of(&responded), vec![id(1, Channel::Email).0]);
    assert_eq!(responded["inquiries"][0]["sla"], "met");
    assert_eq!(responded["inquiries"][0]["response_seconds"], 180);

    let (_, phone) = w.get_json("/api/v1/inquiries?channel=phone").await;
    assert_eq!(ids_of(&phone), vec![id(2, Channel::Phone).0]);
    let (_, arabic) = w
        .get_json("/api/v1/inquiries?language=ar&channel=email")
        .await;
    assert_eq!(ids_of(&arabic), vec![id(4, Channel::Email).0]);

    let since = (b + TimeDelta::minutes(10)).to_rfc3339();
    let until = (b + TimeDelta::minutes(30)).to_rfc3339();
    let uri = format!(
        "/api/v1/inquiries?since={}&until={}",
        urlencode(&since),
        urlencode(&until)
    );
    let (_, window) = w.get_json(&uri).await;
    assert_eq!(
        ids_of(&window),
        vec![id(3, Channel::Email).0, id(2, Channel::Phone).0]
    );
    // Times are RFC 3339 UTC.
    let received = window["inquiries"][0]["received_at"]
        .as_str()
        .unwrap_or_default();
    assert!(received.ends_with('Z'), "{received}");
}

#[tokio::test]
async fn paging_visits_every_inquiry_once() {
    let b = base();
    let mut specs: Vec<Spec> = (0..25)
        .map(|n| {
            spec(
                n,
                Channel::Email,
                Language::En,
                b + TimeDelta::seconds(i64::from(n) * 7),
            )
        })
        .collect();
    // Ties on received_at must not lose or repeat anything.
    specs.push(spec(
        100,
        Channel::Email,
        Language::Es,
        b + TimeDelta::seconds(70),
    ));
    specs.push(spec(
        101,
        Channel::Phone,
        Language::Es,
        b + TimeDelta::seconds(70),
    ));
    let w = World::new(&specs, &[], &[], false).await;

    let mut seen = Vec::new();
    let mut uri = "/api/v1/inquiries?limit=4".to_string();
    let mut pages = 0;
    loop {
        let (status, page) = w.get_json(&uri).await;
        assert_eq!(status, StatusCode::OK);
        let ids = ids_of(&page);
        assert!(ids.len() <= 4);
        seen.extend(ids);
        pages += 1;
        assert!(pages < 20, "paging does not end");
        match page["next_cursor"].as_str() {
            Some(c) => uri = format!("/api/v1/inquiries?limit=4&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 27);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 27);
    assert_eq!(pages, 7);

    // Paging composes with filters.
    let (_, first) = w.get_json("/api/v1/inquiries?language=es&limit=1").await;
    let cursor = first["next_cursor"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (_, second) = w
        .get_json(&format!(
            "/api/v1/inquiries?language=es&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(second["next_cursor"], Value::Null);
    let both: BTreeSet<String> = ids_of(&first).into_iter().chain(ids_of(&second)).collect();
    let expected: BTreeSet<String> = [
        id(100, Channel::Email).0.to_string(),
        id(101, Channel::Phone).0.to_string(),
    ]
    .into();
    assert_eq!(both, expected);
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let w = mixed_world().await;
    for (query, parameter) in [
        ("state=closed", "state"),
        ("channel=fax", "channel"),
        ("language=fr", "language"),
        ("since=yesterday", "since"),
        ("until=2026-02-30T00:00:00Z", "until"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("limit=ten", "limit"),
        ("cursor=not-a-cursor", "cursor"),
    ] {
        let (status, body) = w.get_json(&format!("/api/v1/inquiries?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(body["parameter"], parameter, "{query}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let (status, body) = w.get_json("/api/v1/inquiries?stat=open").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("stat")));
}

#[tokio::test]
async fn one_inquiry_with_its_events_or_404() {
    let w = mixed_world().await;
    let id2 = id(2, Channel::Phone);
    let (status, body) = w.get_json(&format!("/api/v1/inquiries/{id2}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["id"], id2.0.as_str());
    assert_eq!(body["channel"], "phone");
    assert_eq!(body["state"], "open");
    let events = body["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"]["type"], "inquiry_opened");
    assert!(events[0]["hash"].as_str().is_some_and(|h| h.len() == 64));
    let (status, body) = w.get_json("/api/v1/inquiries/e000000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn ack_needs_the_token_and_an_open_inquiry() {
    let w = mixed_world().await;
    let open = id(3, Channel::Email);
    let body = serde_json::json!({"by": "Ana", "via": "phone", "note": "called back"});

    let (status, headers, _) = w.ack(&open.0, body.clone(), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer"))
    );
    let (status, _, _) = w.ack(&open.0, body.clone(), Some("wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, _, _) = w.ack("e000000000000000", body.clone(), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _, err) = w
        .ack(&open.0, serde_json::json!({"by": " "}), Some(TOKEN))
        .await;
    assert_eq!(
        (status, err["parameter"].as_str()),
        (StatusCode::BAD_REQUEST, Some("by"))
    );
    let future = (Utc::now() + TimeDelta::minutes(10)).to_rfc3339();
    let (status, _, err) = w
        .ack(
            &open.0,
            serde_json::json!({"by": "Ana", "at": future}),
            Some(TOKEN),
        )
        .await;
    assert_eq!(
        (status, err["parameter"].as_str()),
        (StatusCode::BAD_REQUEST, Some("at"))
    );
    let before = (base() - TimeDelta::hours(1)).to_rfc3339();
    let (status, _, err) = w
        .ack(
            &open.0,
            serde_json::json!({"by": "Ana", "at": before}),
            Some(TOKEN),
        )
        .await;
    assert_eq!(
        (status, err["parameter"].as_str()),
        (StatusCode::BAD_REQUEST, Some("at"))
    );

    let (status, _, inquiry) = w.ack(&open.0, body.clone(), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{inquiry}");
    assert_eq!(inquiry["state"], "responded");
    assert_eq!(inquiry["responder"], "Ana");
    assert_eq!(inquiry["response_kind"], "manual");
    // Received 100 minutes ago: answered, but late.
    assert_eq!(inquiry["sla"], "missed");

    let (status, _, err) = w.ack(&open.0, body.clone(), Some(TOKEN)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(err["error"].is_string());
    let answered = id(1, Channel::Email);
    let (status, _, _) = w.ack(&answered.0, body, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The ack was counted once, as missed (no breach had been counted before it).
    let (_, _, metrics) = w.get("/metrics").await;
    assert!(metrics.contains(
        "slawatch_deadlines_total{channel=\"email\",language=\"es\",outcome=\"missed\"} 1"
    ));
}

#[tokio::test]
async fn ack_without_a_configured_token_is_open() {
    let b = Utc::now() - TimeDelta::minutes(2);
    let w = World::new(&[spec(7, Channel::Email, Language::En, b)], &[], &[], false).await;
    let (status, _, inquiry) = w
        .ack(
            &id(7, Channel::Email).0,
            serde_json::json!({"by": "Ana"}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(inquiry["sla"], "met");
}

#[tokio::test]
async fn health_and_readiness() {
    let w = World::new(&[], &[], &["imap-main", "maildir"], false).await;
    let (status, _, body) = w.get("/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (status, _, body) = w.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.contains("imap-main") && body.contains("maildir"),
        "{body}"
    );
    if let Ok(mut p) = w.state.shared.pending_sources.lock() {
        p.clear();
    }
    let (status, _, _) = w.get("/readyz").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_are_served_with_the_text_format_content_type() {
    let w = mixed_world().await;
    let (status, headers, body) = w.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("text/plain; version=0.0.4")
    );
    assert!(
        body.contains("slawatch_inquiries_received_total{channel=\"email\",language=\"ar\"} 1")
    );
    assert!(body.contains(
        "slawatch_open_inquiries{channel=\"phone\",language=\"ar\",state=\"breached\"} 1"
    ));
    assert!(body.contains(
        "slawatch_first_response_seconds_bucket{channel=\"email\",language=\"en\",le=\"900\"} 1"
    ));
    assert!(body.contains("slawatch_build_info{version=\"test\"} 1"));
    assert!(!body.contains("customer.example"));
}

#[tokio::test]
async fn status_page_escapes_text_and_orders_by_time_left() {
    let now = Utc::now();
    let mut evil = spec(1, Channel::Email, Language::En, now - TimeDelta::minutes(3));
    evil.subject = "<script>alert('x')</script> & more".into();
    let specs = vec![
        evil,
        spec(
            2,
            Channel::Email,
            Language::Ar,
            now - TimeDelta::minutes(20),
        ),
        spec(
            3,
            Channel::Phone,
            Language::Es,
            now - TimeDelta::minutes(12),
        ),
    ];
    let mut arabic = spec(4, Channel::Email, Language::Ar, now - TimeDelta::minutes(1));
    arabic.subject = "استفسار عن الطلب".into();
    let mut specs = specs;
    specs.push(arabic);
    let w = World::new(&specs, &[], &[], false).await;

    let (status, headers, html) = w.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"))
    );
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"));
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"15\">"));
    assert!(html.contains("<td dir=\"auto\">استفسار عن الطلب</td>"));
    // Least time left first: 2 (overdue), 3 (warning), 1, 4.
    let position = |subject: &str| html.find(subject).unwrap_or(usize::MAX);
    let order = [
        position("Question 2"),
        position("Question 3"),
        position("&lt;script&gt;"),
        position("استفسار"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(html.contains("overdue"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
}

#[tokio::test]
async fn serve_stops_on_shutdown() {
    let w = World::new(&[], &[], &[], false).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, w.state.clone(), shutdown.clone()));

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    shutdown.cancel();
    let result = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    assert!(matches!(result, Ok(Ok(Ok(())))));
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// The API over a tracker and a store of our choosing (the engine answers acks as above).
fn state_over(tracker: slawatch_core::tracker::Tracker, store: Store) -> AppState {
    let metrics = Arc::new(Metrics::new("test", &["inbox".to_string()]));
    let shared = Arc::new(Shared::new(tracker, metrics, store, BTreeSet::new()));
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(test_engine(shared.clone(), rx));
    AppState::new(
        shared,
        EngineHandle::new(tx),
        Access::with_tokens(Tokens::default()),
    )
}

async fn get_text(state: &AppState, uri: &str) -> (StatusCode, String) {
    let response = router(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .unwrap_or_else(|e| match e {});
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn history_the_tracker_no_longer_holds_is_read_from_the_projection() {
    history_from_the_projection(Store::open("sqlite::memory:").await.expect("ledger")).await;
}

/// The same over PostgreSQL (a real server started by the harness, a database of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_the_tracker_no_longer_holds_is_read_from_the_projection_on_postgresql() {
    let url = support::postgres::shared().fresh_url();
    history_from_the_projection(Store::open(&url).await.expect("ledger")).await;
}

async fn history_from_the_projection(store: Store) {
    // 30 inquiries, every third answered, two sharing a received instant; committed to the
    // ledger, the projection built from it.
    let b = base() - TimeDelta::days(40);
    let mut specs: Vec<Spec> = (0..30)
        .map(|n| {
            let channel = if n % 4 == 0 {
                Channel::Phone
            } else {
                Channel::Email
            };
            let language = [Language::En, Language::Es, Language::Ar][n as usize % 3];
            spec(n, channel, language, b + TimeDelta::hours(i64::from(n)))
        })
        .collect();
    specs.push(spec(
        100,
        Channel::Email,
        Language::Es,
        b + TimeDelta::hours(7),
    ));
    let mut ledger: Vec<Event> = specs.iter().map(opened).collect();
    for s in specs.iter().filter(|s| s.n % 3 == 0) {
        ledger.push(Event::InquiryResponded(Box::new(InquiryResponded {
            inquiry_id: id(s.n, s.channel),
            at: s.received_at + TimeDelta::minutes(3),
            response_seconds: 180,
            kind: ResponseKind::Email,
            responder: "support@desk.example".into(),
            external_id: None,
            outcome: Outcome::Met,
            via: None,
            note: None,
        })));
    }
    store
        .append(Utc::now(), &ledger, &[])
        .await
        .expect("append the world's events");
    let rules = Arc::new(tracker().rules().clone());
    let rebuilt = slawatch::store::projection::rebuild(&store, rules, &store)
        .await
        .expect("projection rebuilt");
    assert_eq!(rebuilt.inquiries, 31);
    assert_eq!(rebuilt.events, ledger.len() as u64);

    // One more inquiry decided but not committed yet: only the trackers know it.
    let fresh = opened(&spec(200, Channel::Email, Language::Ar, base()));
    // Today's tracker holds everything; the working set only the newest ten and the fresh one.
    let mut everything = tracker();
    let mut working = tracker();
    let newest: HashSet<InquiryId> = specs
        .iter()
        .filter(|s| s.n >= 20)
        .map(|s| id(s.n, s.channel))
        .collect();
    for (seq, e) in (1..).zip(&ledger) {
        everything.apply(e);
        everything.note_ledger_seq(e, seq);
        if e.inquiry_id().is_some_and(|i| newest.contains(i)) {
            working.apply(e);
            working.note_ledger_seq(e, seq);
        }
    }
    everything.apply(&fresh);
    working.apply(&fresh);
    let old = id(3, Channel::Email);
    assert!(working.get(&old).is_none() && everything.get(&old).is_some());
    let today = state_over(everything, store.clone());
    let now = state_over(working, store.clone());

    // Every list, filtered or not, paged or not, is the same JSON in the same order.
    let since = urlencode(&(b + TimeDelta::hours(5)).to_rfc3339());
    let until = urlencode(&(b + TimeDelta::hours(25)).to_rfc3339());
    for query in [
        String::new(),
        "state=open".into(),
        "state=responded".into(),
        "channel=phone".into(),
        "language=ar".into(),
        format!("since={since}"),
        format!("since={since}&until={until}&language=es"),
        "limit=1".into(),
    ] {
        // Paged by three, or as the query says.
        let query = if query.contains("limit") {
            query
        } else if query.is_empty() {
            "limit=3".to_string()
        } else {
            format!("{query}&limit=3")
        };
        let mut uri = format!("/api/v1/inquiries?{query}");
        let mut pages = 0;
        loop {
            let (status, expected) = get_text(&today, &uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            let (status, got) = get_text(&now, &uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert_eq!(got, expected, "{uri}");
            pages += 1;
            let page: Value = serde_json::from_str(&got).expect("JSON");
            match page["next_cursor"].as_str() {
                Some(c) => uri = format!("/api/v1/inquiries?{query}&cursor={c}"),
                None => break,
            }
        }
        assert!((1..40).contains(&pages), "{query}: {pages} pages");
    }
    let (_, all) = get_text(&now, "/api/v1/inquiries?limit=1000").await;
    let all: Value = serde_json::from_str(&all).expect("JSON");
    assert_eq!(ids_of(&all).len(), 32, "every inquiry listed once");

    // One old inquiry, with its history read by its seq range.
    let (status, expected) = get_text(&today, &format!("/api/v1/inquiries/{old}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, got) = get_text(&now, &format!("/api/v1/inquiries/{old}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, expected);
    let body: Value = serde_json::from_str(&got).expect("JSON");
    assert_eq!(body["state"], "responded");
    assert_eq!(body["events"].as_array().map(Vec::len), Some(2));

    // Acknowledging it says it is closed, not unknown.
    let (status, _) = get_text(
        &now,
        &format!("/api/v1/inquiries/{}", id(200, Channel::Email)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the uncommitted inquiry is served");
    let response = router(now.clone())
        .oneshot(
            Request::post(format!("/api/v1/inquiries/{old}/ack"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"by":"maria"}"#))
                .expect("request"),
        )
        .await
        .unwrap_or_else(|e| match e {});
    assert_eq!(response.status(), StatusCode::CONFLICT);
}
