//! A tiny HTTP receiver on 127.0.0.1:0, in-process: records every request body (JSON) and its
//! `Authorization` header, answers with a status the test can change (to simulate failures).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

/// Each request's `Authorization` header and body.
type Requests = Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>;

#[derive(Clone, Default)]
struct Inner {
    bodies: Requests,
    status: Arc<AtomicU16>,
}

pub struct Receiver {
    pub url: String,
    inner: Inner,
    task: tokio::task::JoinHandle<()>,
}

async fn record(State(s): State<Inner>, headers: HeaderMap, body: String) -> StatusCode {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    s.bodies.lock().unwrap().push((auth, json));
    StatusCode::from_u16(s.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Inner::default();
        inner.status.store(200, Ordering::SeqCst);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(record)
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, inner, task }
    }

    /// Answer every later request with this status.
    pub fn answer(&self, status: u16) {
        self.inner.status.store(status, Ordering::SeqCst);
    }

    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.inner
            .bodies
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }

    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.inner
            .bodies
            .lock()
            .unwrap()
            .iter()
            .map(|(a, _)| a.clone())
            .collect()
    }

    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<serde_json::Value> {
        let limit = Instant::now() + within;
        loop {
            let b = self.bodies();
            if b.len() >= n {
                return b;
            }
            assert!(
                Instant::now() < limit,
                "expected {n} requests within {within:?}, got {}: {b:?}",
                b.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
