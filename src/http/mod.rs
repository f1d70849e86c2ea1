//! HTTP: metrics, health, the JSON API and the status page.
//!
//! This module owns every route of DESIGN.md "Interfaces" → HTTP and nothing else: handlers read
//! the engine's [`Shared`] state under its read lock (never across an `.await`), and the only
//! write (a manual acknowledgement) goes through the [`EngineHandle`], so the engine stays the one
//! writer of the ledger. Errors are JSON `{"error": …, "parameter": …}` with a status code that
//! says whose fault it was; request input never panics.
//!
//! - [`api`]: `/api/v1/inquiries…` (list with filters and cursor paging, one with its events, ack);
//! - [`report`]: `/api/v1/report`, the auditors' report, behind its own read-only token;
//! - [`status`]: the server-rendered status page at `/`;
//! - here: the router, health and readiness, `/metrics`, bearer-token checking and serving with
//!   graceful shutdown.

pub mod api;
pub mod calls;
pub mod report;
pub mod status;

use std::sync::{Arc, PoisonError, RwLockReadGuard};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::Secret;
use crate::engine::{EngineHandle, Shared};
use crate::telemetry::Metrics;
use slawatch_core::tracker::Tracker;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    pub engine: EngineHandle,
    /// Bearer token required by write endpoints, when set.
    pub token: Option<Secret>,
    /// Read-only bearer token of `GET /api/v1/report`; the endpoint is disabled without it.
    pub report_token: Option<Secret>,
}

impl AppState {
    /// The tracker under its read lock. A writer that panicked leaves the state as it was after
    /// its last whole event (apply is infallible), so a poisoned lock is still readable.
    pub(crate) fn tracker(&self) -> RwLockReadGuard<'_, Tracker> {
        self.shared
            .tracker
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status::page))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/inquiries", get(api::list))
        .route("/api/v1/inquiries/{id}", get(api::one))
        .route("/api/v1/inquiries/{id}/ack", post(api::ack))
        .route("/api/v1/report", get(report::report))
        .route("/api/v1/calls", post(calls::push))
        .fallback(not_found)
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` is cancelled, then lets in-flight
/// requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// An API error: a status and a JSON body naming what was wrong.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadParameter {
        parameter: &'static str,
        message: String,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad(parameter: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadParameter {
            parameter,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadParameter { .. } | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "API request failed.");
        }
        let parameter = match &self {
            ApiError::BadParameter { parameter, .. } => Some(*parameter),
            _ => None,
        };
        let body = axum::Json(ErrorBody {
            error: self.to_string(),
            parameter,
        });
        let mut response = (status, body).into_response();
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"slawatch\""),
            );
        }
        response
    }
}

/// Checks `Authorization: Bearer <token>` when a token is configured. Both sides are hashed
/// before an equal-time comparison, so neither the content nor the length of the token leaks
/// through timing.
pub fn authorize(token: Option<&Secret>, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = token else { return Ok(()) };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .ok_or(ApiError::Unauthorized)?;
    if constant_time_eq(presented.as_bytes(), token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.shared.is_ready() {
        return (StatusCode::OK, "ready").into_response();
    }
    let pending: Vec<String> = state
        .shared
        .pending_sources
        .lock()
        .map(|p| p.iter().cloned().collect())
        .unwrap_or_default();
    let body = if pending.is_empty() {
        "not ready".to_string()
    } else {
        format!(
            "not ready: waiting for the first sync of {}",
            pending.join(", ")
        )
    };
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

/// `/metrics`. Rendering scans the open inquiries, so it runs on a blocking thread.
async fn metrics(State(state): State<AppState>) -> Response {
    let rendered = tokio::task::spawn_blocking(move || {
        let tracker = state.tracker();
        state.shared.metrics.render(&tracker, Utc::now())
    })
    .await;
    match rendered {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, Metrics::CONTENT_TYPE)], body).into_response(),
        Ok(Err(e)) => ApiError::Internal(e.to_string()).into_response(),
        Err(e) => ApiError::Internal(format!("metrics rendering stopped: {e}")).into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_checked() {
        let token = Secret::new("s3cret");
        let mut headers = HeaderMap::new();
        assert!(authorize(None, &headers).is_ok());
        assert!(authorize(Some(&token), &headers).is_err());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(authorize(Some(&token), &headers).is_ok());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  s3cret "),
        );
        assert!(authorize(Some(&token), &headers).is_ok());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cre"),
        );
        assert!(authorize(Some(&token), &headers).is_err());
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert!(authorize(Some(&token), &headers).is_err());
    }
}
