//! A Twilio-compatible Calls API served by the test itself (Twilio is a cloud service and cannot
//! run here): [`serve`] runs any axum app on a free loopback port, and [`CallsApi`] is a desk's
//! call list the test adds missed calls to, listed as one `Calls.json` page in the API's field
//! formats, behind the API's basic auth (account `AC1`, token [`TOKEN`]).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::{Value, json};

/// The account's auth token.
pub const TOKEN: &str = "secret-token";

/// The desk's number: the parent call's `to`.
pub const LINE: &str = "+34910000000";

/// Serves `app` on a free port of 127.0.0.1 from a thread of its own; returns the port.
pub fn serve(app: Router) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    port
}

/// A call list that grows as the test adds calls.
pub struct CallsApi {
    pub port: u16,
    calls: Arc<Mutex<Vec<Value>>>,
}

async fn list(
    State(calls): State<Arc<Mutex<Vec<Value>>>>,
    headers: HeaderMap,
) -> Result<axum::Json<Value>, StatusCode> {
    // "AC1:secret-token" in base64.
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some("Basic QUMxOnNlY3JldC10b2tlbg==")
    {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let calls = calls.lock().unwrap().clone();
    Ok(axum::Json(json!({
        "page": 0, "page_size": calls.len(), "next_page_uri": null, "calls": calls
    })))
}

impl CallsApi {
    pub fn start() -> CallsApi {
        let calls: Arc<Mutex<Vec<Value>>> = Arc::default();
        let port = serve(
            Router::new()
                .route("/2010-04-01/Accounts/AC1/Calls.json", get(list))
                .with_state(calls.clone()),
        );
        CallsApi { port, calls }
    }

    /// A final inbound call from `from` to [`LINE`] that nobody answered, a minute ago.
    pub fn add_missed_call(&self, sid: &str, from: &str) {
        let at = chrono::Utc::now() - chrono::Duration::minutes(1);
        self.calls.lock().unwrap().push(json!({
            "sid": sid, "parent_call_sid": null, "direction": "inbound", "status": "no-answer",
            "from": from, "to": LINE, "start_time": at.to_rfc2822(),
            "end_time": (at + chrono::Duration::seconds(30)).to_rfc2822(), "duration": "30",
            "answered_by": null
        }));
    }
}
