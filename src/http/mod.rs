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
//! - [`page`]: the page of one inquiry at `/inquiries/{id}`, where alerts link;
//! - [`actions`]: that page and its actions (take, answered elsewhere) with a signed link
//!   ([`links`]) or a token;
//! - [`access`]: the token each route needs and the `Host` check;
//! - [`server`]: connections within limits (header time, connection count), graceful shutdown;
//! - here: the router (with each route's token, time and body limits), health and readiness,
//!   `/metrics`.

pub mod access;
pub mod actions;
pub mod api;
pub mod calls;
pub mod links;
pub mod markup;
pub mod page;
pub mod report;
pub mod server;
pub mod status;

use std::sync::{Arc, PoisonError, RwLockReadGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use access::{Access, Need, Tokens, authorize};
pub use server::Limits;

use crate::config::HttpSettings;
use crate::engine::{EngineHandle, Shared};
use crate::telemetry::Metrics;
use slawatch_core::tracker::Tracker;

/// Largest acknowledgement body: `by` and `note` at their character limits, every character
/// escaped as `\uXXXX`, fit in it.
pub const ACK_BODY_BYTES: usize = 32 * 1024;

/// Largest pushed-calls body: 1,000 call events of about 2 KiB each.
pub const CALLS_BODY_BYTES: usize = 2 * 1024 * 1024;

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    pub shared: Arc<Shared>,
    pub engine: EngineHandle,
    /// Tokens of each route and the accepted `Host` names.
    pub access: Arc<Access>,
    /// Bound on a request up to its response's head (every route but the report).
    pub request_timeout: Duration,
    /// The same bound for `GET /api/v1/report`.
    pub report_timeout: Duration,
    /// How long a take holds (`notify.take_for`), as the confirmation page says.
    pub take_for: Duration,
}

impl AppState {
    /// State with `access` and the default time limits.
    pub fn new(shared: Arc<Shared>, engine: EngineHandle, access: Access) -> AppState {
        AppState {
            shared,
            engine,
            access: Arc::new(access),
            request_timeout: crate::config::DEFAULT_REQUEST_TIMEOUT,
            report_timeout: crate::config::DEFAULT_REPORT_TIMEOUT,
            take_for: crate::config::DEFAULT_TAKE_FOR,
        }
    }

    /// State as `[http]` configures it.
    pub fn from_settings(shared: Arc<Shared>, engine: EngineHandle, s: &HttpSettings) -> AppState {
        AppState {
            request_timeout: s.request_timeout,
            report_timeout: s.report_timeout,
            ..AppState::new(shared, engine, Access::from_settings(s))
        }
    }

    /// The tracker under its read lock. A writer that panicked leaves the state as it was after
    /// its last whole event (apply is infallible), so a poisoned lock is still readable.
    pub(crate) fn tracker(&self) -> RwLockReadGuard<'_, Tracker> {
        self.shared
            .tracker
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The inquiry `id` as the tracker holds it (it wins: it may hold events not committed
    /// yet), else as the store's inquiry projection holds it (history the tracker no longer
    /// keeps in memory).
    pub(crate) async fn inquiry(
        &self,
        id: &slawatch_core::domain::InquiryId,
    ) -> Result<Option<slawatch_core::tracker::Inquiry>, crate::store::StoreError> {
        if let Some(i) = self.tracker().get(id) {
            return Ok(Some(i.clone()));
        }
        self.shared.store.projected(id).await
    }
}

/// Every route, with the token it needs ([`access`]), its time limit and its body limit (routes
/// without a body never read one). The `Host` check wraps them all.
pub fn router(state: AppState) -> Router {
    let access = state.access.clone();
    let need = |n: Need| middleware::from_fn_with_state((access.clone(), n), access::require);
    let within = |d: Duration| middleware::from_fn_with_state(d, time_limit);
    let open = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/readyz/active", get(readyz_active))
        .route_layer(within(state.request_timeout));
    let metrics = Router::new()
        .route("/metrics", get(metrics))
        .route_layer(within(state.request_timeout))
        .route_layer(need(Need::Metrics));
    let reads = Router::new()
        .route("/", get(status::page))
        .route("/api/v1/inquiries", get(api::list))
        .route("/api/v1/inquiries/{id}", get(api::one))
        .route_layer(within(state.request_timeout))
        .route_layer(need(Need::Read));
    // The inquiry's page and actions check a signed link or a token themselves (`actions`).
    let inquiry_pages = Router::new()
        .route("/inquiries/{id}", get(actions::page))
        .route(
            "/inquiries/{id}/take",
            get(actions::take_form)
                .post(actions::take)
                .layer(DefaultBodyLimit::max(ACK_BODY_BYTES)),
        )
        .route(
            "/inquiries/{id}/answered",
            get(actions::answered_form)
                .post(actions::answered)
                .layer(DefaultBodyLimit::max(ACK_BODY_BYTES)),
        )
        .route_layer(within(state.request_timeout));
    let report = Router::new()
        .route("/api/v1/report", get(report::report))
        .route_layer(within(state.report_timeout))
        .route_layer(need(Need::Report));
    let writes = Router::new()
        .route(
            "/api/v1/inquiries/{id}/ack",
            post(api::ack).layer(DefaultBodyLimit::max(ACK_BODY_BYTES)),
        )
        .route(
            "/api/v1/calls",
            post(calls::push).layer(DefaultBodyLimit::max(CALLS_BODY_BYTES)),
        )
        .route_layer(within(state.request_timeout))
        .route_layer(need(Need::Write));
    Router::new()
        .merge(open)
        .merge(metrics)
        .merge(reads)
        .merge(inquiry_pages)
        .merge(report)
        .merge(writes)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(access, access::check_host))
        .with_state(state)
}

/// Serves `router(state)` on `listener` within the default [`Limits`] until `shutdown` is
/// cancelled, then lets in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_within(listener, state, Limits::default(), shutdown).await
}

/// [`serve`] within `limits`.
pub async fn serve_within(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    server::serve(listener, router(state), limits, shutdown).await
}

/// Answers 408 when a request takes longer than `limit` up to its response's head (a slow
/// body included).
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(humantime::format_duration(limit).to_string()).into_response(),
    }
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
    #[error("{0}")]
    TooLarge(String),
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
    #[error("the request took longer than {0}")]
    Timeout(String),
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
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
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

async fn healthz() -> &'static str {
    "ok"
}

/// `/readyz`: 200 once the store is open, every source finished its first sync and the ledger
/// takes writes; 503 otherwise. The body says why, line by line: readiness, the ledger's write
/// state, the wall clock's offset, and the monitor's own active alerts. (`/healthz` stays
/// "alive": a stuck ledger must not make a supervisor restart the daemon and lose what it holds
/// in memory.)
async fn readyz(State(state): State<AppState>) -> Response {
    let now = state.shared.now();
    let ledger = state.shared.ledger.snapshot();
    let stuck = ledger.is_stuck(now);
    let pending: Vec<String> = state
        .shared
        .pending_sources
        .lock()
        .map(|p| p.iter().cloned().collect())
        .unwrap_or_default();
    let mut body = if state.shared.is_ready() && !stuck {
        "ready".to_string()
    } else if !pending.is_empty() {
        format!(
            "not ready: waiting for the first sync of {}",
            pending.join(", ")
        )
    } else if stuck {
        "not ready: the ledger does not take writes".to_string()
    } else {
        "not ready".to_string()
    };
    body.push_str(&format!("\n{}", state.shared.role().describe(now)));
    body.push_str(&format!("\n{}", ledger.describe(now)));
    let offset = state.shared.metrics.clock_offset();
    if offset.abs() > crate::scheduler::clock::STEP.as_secs_f64() {
        body.push_str(&format!(
            "\nwall clock stepped: {offset:+.1} s from slawatch's monotonic clock (deadlines unaffected)"
        ));
    }
    {
        let tracker = state.tracker();
        for m in tracker.monitor_alerts() {
            body.push_str(&format!(
                "\nmonitor alert {} since {}: {}",
                m.id,
                m.raised_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                m.detail
            ));
        }
    }
    let status = if state.shared.is_ready() && !stuck {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

/// `/readyz/active`: 200 only on the replica that writes and alerts (the only daemon on a
/// SQLite ledger, the lease holder of a pair), once ready; 503 on a standby. For a load balancer
/// in front of a pair: acks, takes and pushed calls go where this answers 200 (as a database
/// proxy asks which node is the primary).
async fn readyz_active(State(state): State<AppState>) -> Response {
    let role = state.shared.role();
    if role.is_standby() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            role.describe(state.shared.now()),
        )
            .into_response();
    }
    readyz(State(state)).await
}

/// `/metrics`. Rendering scans the open inquiries, so it runs on a blocking thread.
async fn metrics(State(state): State<AppState>) -> Response {
    if let Some(registry) = state.shared.standby_metrics.get() {
        let mut body = String::new();
        return match prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut body) {
            Ok(()) => ([(header::CONTENT_TYPE, Metrics::CONTENT_TYPE)], body).into_response(),
            Err(e) => ApiError::Internal(e.to_string()).into_response(),
        };
    }
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
