//! The Twilio-compatible Calls API poller against a real local HTTP server started by this test.
//!
//! No Twilio can run here (it is a cloud service), so the test serves Twilio-shaped `Calls.json`
//! pages itself — two pages linked by `next_page_uri`, parent and `<Dial>` child resources in the
//! API's field formats — checks basic auth and the `StartTime>=` day filter, and changes a call
//! between polls (in progress → completed) to show re-polling of calls that are not final.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::{Value, json};
use support::daemon::Daemon;
use support::twilio::serve;

#[derive(Default)]
struct Api {
    /// The child of CA10 has been answered.
    answered: bool,
    requests: Vec<(String, Option<String>)>,
}

fn rfc2822(minutes_ago: i64) -> String {
    (chrono::Utc::now() - chrono::Duration::minutes(minutes_ago)).to_rfc2822()
}

async fn calls(
    State(api): State<Arc<Mutex<Api>>>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, StatusCode> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut api = api.lock().unwrap();
    let start = q
        .iter()
        .find(|(k, _)| k == "StartTime>")
        .map(|(_, v)| v.clone());
    api.requests.push((format!("{q:?}"), auth.clone()));
    // "AC1:secret-token" in base64.
    if auth.as_deref() != Some("Basic QUMxOnNlY3JldC10b2tlbg==") {
        return Err(StatusCode::UNAUTHORIZED);
    }
    if start.is_none() && !q.iter().any(|(k, _)| k == "PageToken") {
        return Err(StatusCode::BAD_REQUEST);
    }
    let page2 = q.iter().any(|(k, _)| k == "PageToken");
    Ok(axum::Json(if !page2 {
        json!({
            "page": 0, "page_size": 2, "start": 0, "end": 1,
            "next_page_uri": "/2010-04-01/Accounts/AC1/Calls.json?StartTime%3E=2026-01-01&PageSize=2&Page=1&PageToken=PACA02",
            "calls": [
                {"sid": "CA01", "parent_call_sid": null, "direction": "inbound", "status": "completed",
                 "from": "+34600123456", "to": "+34910000000", "start_time": rfc2822(30),
                 "end_time": rfc2822(25), "duration": "300", "answered_by": null, "caller_name": "Ana Ruiz",
                 "queue_time": "0", "date_created": rfc2822(30), "subresource_uris": {}},
                {"sid": "CA02", "parent_call_sid": "CA01", "direction": "outbound-dial", "status": "no-answer",
                 "from": "+34910000000", "to": "sip:2001@pbx", "start_time": rfc2822(30),
                 "end_time": null, "duration": "", "answered_by": null}
            ]
        })
    } else {
        let child = if api.answered {
            json!({"sid": "CA11", "parent_call_sid": "CA10", "direction": "outbound-dial", "status": "completed",
                   "from": "+34910000000", "to": "sip:2002@pbx", "start_time": rfc2822(2),
                   "end_time": rfc2822(0), "duration": "60", "answered_by": null})
        } else {
            json!({"sid": "CA11", "parent_call_sid": "CA10", "direction": "outbound-dial", "status": "ringing",
                   "from": "+34910000000", "to": "sip:2002@pbx", "start_time": rfc2822(2),
                   "end_time": null, "duration": null, "answered_by": null})
        };
        json!({
            "page": 1, "page_size": 2, "start": 2, "end": 3, "next_page_uri": null,
            "calls": [
                {"sid": "CA10", "parent_call_sid": null, "direction": "inbound", "status": "in-progress",
                 "from": "0034611222333", "to": "+34910000000", "start_time": rfc2822(3),
                 "end_time": null, "duration": null, "answered_by": null},
                child
            ]
        })
    }))
}

/// The daemon polling the Calls API on `port` (backfilling from `since` when given), ready.
fn start_daemon(port: u16, since: Option<&str>) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::Builder::new()
        .prefix("slawatch-twilio")
        .tempdir()
        .unwrap();
    let since = since
        .map(|s| format!("since = \"{s}\"\n"))
        .unwrap_or_default();
    let config = format!(
        r#"
[store]
url = "sqlite://{{dir}}/ledger.db"
[http]
bind = "127.0.0.1:{{port}}"
[desk]
support_addresses = ["support@example.com"]
[sources.tw]
type = "twilio"
base_url = "http://127.0.0.1:{port}"
account_sid = "AC1"
poll_interval = "200ms"
timeout = "5s"
{since}default_region = "ES"
[[sources.tw.lines]]
name = "soporte-es"
match = ["+34910000000"]
language = "es"
"#
    );
    let mut d = Daemon::configure(
        dir.path(),
        &config,
        &[("SLAWATCH__SOURCES__TW__AUTH_TOKEN", "secret-token")],
    );
    d.start();
    d.wait_ready(Duration::from_secs(30));
    (dir, d)
}

fn phone(d: &Daemon) -> Vec<Value> {
    d.get_json("/api/v1/inquiries?channel=phone")["inquiries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn calls_are_polled_page_by_page_and_re_polled_until_final() {
    let api = Arc::new(Mutex::new(Api::default()));
    let port = serve(
        Router::new()
            .route("/2010-04-01/Accounts/AC1/Calls.json", get(calls))
            .with_state(api.clone()),
    );

    let (_dir, mut d) = start_daemon(port, None);
    let inquiries = phone(&d);
    assert_eq!(inquiries.len(), 2, "{inquiries:#?}");
    let ana = inquiries
        .iter()
        .find(|i| i["customer"] == "+34600123456")
        .unwrap();
    // The parent is "completed" but its only child rang out: nobody answered.
    assert_eq!(ana["state"], "open");
    assert_eq!(ana["language"], "es");
    let live = inquiries
        .iter()
        .find(|i| i["customer"] == "+34611222333")
        .unwrap();
    assert_eq!(live["state"], "open");

    api.lock().unwrap().answered = true;
    d.wait_for(
        "the re-polled call to be answered",
        Duration::from_secs(5),
        |d| {
            phone(d)
                .iter()
                .any(|i| i["customer"] == "+34611222333" && i["state"] == "responded")
        },
    );
    assert_eq!(phone(&d).len(), 2);
    let requests = api.lock().unwrap().requests.clone();
    assert!(requests.iter().all(|(_, auth)| auth.is_some()));
    assert!(
        requests.iter().any(|(q, _)| q.contains("StartTime>")),
        "{requests:?}"
    );
    assert!(d.stop());
}

/// A backfill server: three calls (one the day before `since`), served one per page through
/// `next_page_uri`, filtered by the day-granular `StartTime>=` as the API documents it.
async fn dated_calls(
    State(seen): State<Arc<Mutex<Vec<String>>>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Result<axum::Json<Value>, StatusCode> {
    let get = |key: &str| q.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let since = get("StartTime>").ok_or(StatusCode::BAD_REQUEST)?;
    seen.lock().unwrap().push(since.clone());
    let since = chrono::NaiveDate::parse_from_str(&since, "%Y-%m-%d")
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let recent = chrono::Utc::now() - chrono::Duration::minutes(20);
    let all = [
        (
            "CA20",
            "+34600000020",
            chrono::DateTime::parse_from_rfc3339("2025-02-28T23:30:00Z")
                .unwrap()
                .to_utc(),
        ),
        (
            "CA21",
            "+34600000021",
            chrono::DateTime::parse_from_rfc3339("2025-03-01T00:10:00Z")
                .unwrap()
                .to_utc(),
        ),
        ("CA22", "+34600000022", recent),
    ];
    let listed: Vec<_> = all.iter().filter(|c| c.2.date_naive() >= since).collect();
    let page: usize = get("Page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let Some((sid, from, at)) = listed.get(page) else {
        return Ok(axum::Json(json!({"calls": [], "next_page_uri": null})));
    };
    let next = (page + 1 < listed.len()).then(|| {
        format!(
            "/2010-04-01/Accounts/AC1/Calls.json?StartTime%3E={}&PageSize=1&Page={}&PageToken=PA{sid}",
            since.format("%Y-%m-%d"),
            page + 1
        )
    });
    Ok(axum::Json(json!({
        "page": page, "page_size": 1, "next_page_uri": next,
        "calls": [{"sid": sid, "parent_call_sid": null, "direction": "inbound", "status": "no-answer",
                   "from": from, "to": "+34910000000", "start_time": at.to_rfc2822(),
                   "end_time": (*at + chrono::Duration::seconds(30)).to_rfc2822(), "duration": "30",
                   "answered_by": null}]
    })))
}

#[test]
fn a_backfill_from_a_date_reads_every_page_from_that_day_on() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let port = serve(
        Router::new()
            .route("/2010-04-01/Accounts/AC1/Calls.json", get(dated_calls))
            .with_state(seen.clone()),
    );
    let (_dir, mut d) = start_daemon(port, Some("2025-03-01"));
    let mut customers: Vec<String> =
        d.get_json("/api/v1/inquiries?channel=phone&limit=100")["inquiries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["customer"].as_str().unwrap().to_string())
            .collect();
    customers.sort();
    // The call of 28 February is before `since`; the other two came on pages 1 and 2.
    assert_eq!(customers, ["+34600000021", "+34600000022"]);
    assert_eq!(
        seen.lock().unwrap().first().map(String::as_str),
        Some("2025-03-01")
    );
    // Later polls keep the rolling window (yesterday on), not the backfill date.
    d.wait_for("a second poll", Duration::from_secs(5), |_| {
        seen.lock().unwrap().iter().any(|s| s != "2025-03-01")
    });
    assert!(d.stop());
}

/// One Calls API resource: `(sid, parent, direction, status, from, to, start minute,
/// duration s)`.
type Resource<'a> = (
    &'a str,
    Option<&'a str>,
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    i64,
    i64,
);

/// A desk's afternoon as Calls API resources, times in minutes after `base`: missed calls,
/// callbacks that connect (or not) after them, a repeat call, and calls a `<Dial>` child
/// answered.
fn afternoon(base: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
    let line = "+34910000000";
    let calls: [Resource; 13] = [
        (
            "CA31",
            None,
            "inbound",
            "completed",
            "+34600000031",
            line,
            0,
            40,
        ),
        (
            "CA32",
            None,
            "outbound-api",
            "completed",
            line,
            "+34600000031",
            10,
            60,
        ),
        (
            "CA33",
            None,
            "inbound",
            "completed",
            "+34600000031",
            line,
            30,
            200,
        ),
        (
            "CA34",
            Some("CA33"),
            "outbound-dial",
            "completed",
            line,
            "sip:2001@pbx",
            30,
            120,
        ),
        (
            "CA41",
            None,
            "inbound",
            "completed",
            "+34600000041",
            line,
            5,
            30,
        ),
        (
            "CA42",
            None,
            "inbound",
            "completed",
            "+34600000041",
            line,
            12,
            30,
        ),
        (
            "CA43",
            None,
            "outbound-api",
            "completed",
            line,
            "+34600000041",
            25,
            90,
        ),
        (
            "CA51",
            None,
            "inbound",
            "completed",
            "+34600000051",
            line,
            40,
            300,
        ),
        (
            "CA52",
            Some("CA51"),
            "outbound-dial",
            "completed",
            line,
            "sip:2002@pbx",
            40,
            240,
        ),
        (
            "CA53",
            Some("CA51"),
            "outbound-dial",
            "no-answer",
            line,
            "sip:2003@pbx",
            40,
            0,
        ),
        (
            "CA61",
            None,
            "inbound",
            "completed",
            "+34600000061",
            line,
            50,
            20,
        ),
        (
            "CA62",
            None,
            "outbound-api",
            "no-answer",
            line,
            "+34600000061",
            55,
            0,
        ),
        (
            "CA63",
            Some("CA61"),
            "outbound-dial",
            "no-answer",
            line,
            "sip:2001@pbx",
            50,
            0,
        ),
    ];
    calls
        .iter()
        .map(
            |&(sid, parent, direction, status, from, to, minute, duration)| {
                let start = base + chrono::Duration::minutes(minute);
                let end = start + chrono::Duration::seconds(duration.max(10));
                json!({"sid": sid, "parent_call_sid": parent, "direction": direction,
                   "status": status, "from": from, "to": to,
                   "start_time": start.to_rfc2822(), "end_time": end.to_rfc2822(),
                   "duration": duration.to_string(), "answered_by": null})
            },
        )
        .collect()
}

/// Serves `calls` two per page in the order given.
async fn ordered_calls(
    State(calls): State<Arc<Vec<Value>>>,
    Query(q): Query<Vec<(String, String)>>,
) -> axum::Json<Value> {
    let get = |key: &str| q.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let since = get("StartTime>").unwrap_or_default();
    let page: usize = get("Page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let chunk: Vec<Value> = calls.iter().skip(page * 2).take(2).cloned().collect();
    let next = (calls.len() > (page + 1) * 2).then(|| {
        format!("/2010-04-01/Accounts/AC1/Calls.json?StartTime%3E={since}&PageSize=2&Page={}&PageToken=PA{page}", page + 1)
    });
    axum::Json(json!({"page": page, "page_size": 2, "next_page_uri": next, "calls": chunk}))
}

/// The outcome of every phone inquiry after reading `calls` in their order, sorted.
fn outcomes_when_served(calls: Vec<Value>) -> Vec<Value> {
    let port = serve(
        Router::new()
            .route("/2010-04-01/Accounts/AC1/Calls.json", get(ordered_calls))
            .with_state(Arc::new(calls)),
    );
    let since = (chrono::Utc::now() - chrono::Duration::days(1)).format("%Y-%m-%d");
    let (_dir, mut d) = start_daemon(port, Some(&since.to_string()));
    let mut outcomes: Vec<Value> =
        d.get_json("/api/v1/inquiries?channel=phone&limit=100")["inquiries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                json!({"customer": i["customer"], "received_at": i["received_at"],
                   "state": i["state"], "sla": i["sla"], "responded_at": i["responded_at"]})
            })
            .collect();
    outcomes.sort_by_key(|o| o.to_string());
    assert!(d.stop());
    outcomes
}

#[test]
fn calls_served_newest_first_or_oldest_first_give_the_same_outcomes() {
    let base = chrono::Utc::now() - chrono::Duration::minutes(120);
    let start = |c: &Value| chrono::DateTime::parse_from_rfc2822(c["start_time"].as_str().unwrap());
    let mut calls = afternoon(base);
    // The Calls API lists newest first (children after their parent).
    calls.sort_by_key(|c| std::cmp::Reverse(start(c).unwrap()));
    let newest_first = outcomes_when_served(calls.clone());
    calls.reverse();
    let oldest_first = outcomes_when_served(calls);
    assert_eq!(newest_first, oldest_first);
    let at = |minute: i64| {
        (base + chrono::Duration::minutes(minute))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let of = |customer: &str| -> Vec<&Value> {
        newest_first
            .iter()
            .filter(|o| o["customer"] == customer)
            .collect()
    };
    // A missed call answered by a callback 10 minutes later, then a call picked up at once.
    let a = of("+34600000031");
    assert_eq!(a.len(), 2, "{newest_first:#?}");
    assert!(a.iter().all(|o| o["sla"] == "met"), "{a:#?}");
    assert!(a.iter().any(|o| o["responded_at"] == at(10)), "{a:#?}");
    // Two missed calls, one clock from the first, called back 20 minutes after it: missed.
    let b = of("+34600000041");
    assert_eq!(b.len(), 1, "{b:#?}");
    assert_eq!(b[0]["received_at"], at(5));
    assert_eq!(b[0]["responded_at"], at(25));
    assert_eq!(b[0]["sla"], "missed");
    // Answered by its second `<Dial>` child.
    assert_eq!(of("+34600000051")[0]["sla"], "met");
    // A callback that did not connect answers nothing.
    let d = of("+34600000061");
    assert_eq!(d[0]["state"], "open", "{d:#?}");
}
