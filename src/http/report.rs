//! `GET /api/v1/report?from=&to=[&tz=][&format=html|csv|json][&mask=true][&chain=whole]`: the
//! auditors' report over HTTP, the same bytes `slawatch report` writes. `chain=whole` checks the
//! whole hash chain (the report then reads the whole ledger); by default the report checks the
//! rows it reads (see [`ChainScope`]).
//!
//! It has its own role: the bearer token is `http.report_token` (read-only), and the write token
//! is not accepted here (nor is the report token accepted for writes). Without a configured
//! report token the endpoint answers 403, so reports are never served unauthenticated by
//! accident. The report replays the ledger from the store, not the engine's in-memory state,
//! and never holds the tracker lock across that work; the fold, the figures and the rendering
//! run on blocking threads, so the daemon keeps serving (and alerting) while a year's report
//! is made.

use std::sync::Arc;

use std::io::Write as _;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::report::{self, ChainScope, ReportParams};

/// `GET /api/v1/report`.
pub async fn report(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());

    let rules = Arc::new(state.tracker().rules().clone());
    let tz = match get("tz") {
        Some(name) => name
            .parse()
            .map_err(|_| ApiError::bad("tz", format!("`{name}` is not a known time zone")))?,
        None => rules.desk.time_zone,
    };
    let when = |key: &'static str| -> Result<_, ApiError> {
        let text = get(key).ok_or_else(|| ApiError::bad(key, format!("{key} is required")))?;
        report::parse_when(text, tz).ok_or_else(|| {
            ApiError::bad(
                key,
                format!("`{text}` is not a date (YYYY-MM-DD) or an RFC 3339 instant"),
            )
        })
    };
    let (from, to) = (when("from")?, when("to")?);
    if from >= to {
        return Err(ApiError::bad("to", "to must be after from"));
    }
    let format = get("format").unwrap_or("html");
    let content_type = match format {
        "html" => "text/html; charset=utf-8",
        "csv" => "text/csv; charset=utf-8; header=present",
        "json" => "application/json",
        other => {
            return Err(ApiError::bad(
                "format",
                format!("`{other}`: expected html, csv or json"),
            ));
        }
    };
    let mask = match get("mask") {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "mask",
                format!("`{other}`: expected true or false"),
            ));
        }
    };
    let chain = match get("chain") {
        None | Some("period") => ChainScope::Period,
        Some("whole") => ChainScope::Whole,
        Some(other) => {
            return Err(ApiError::bad(
                "chain",
                format!("`{other}`: expected period or whole"),
            ));
        }
    };
    let params = ReportParams {
        from,
        to,
        time_zone: tz,
        mask,
        chain,
        title: format!(
            "Service report {} to {}",
            get("from").unwrap_or_default(),
            get("to").unwrap_or_default()
        ),
    };
    let data = report::build(&state.shared.store, rules, &params, &mut |_| {})
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    // Rendering a large report takes seconds: off the async workers, like the build.
    let render = match format {
        "csv" => report::csv::render,
        "json" => report::json::render,
        _ => report::html::render,
    };
    let verification = data.ledger.verification.clone();
    // The body streams as it is rendered: a year's CSV is hundreds of megabytes, never held
    // whole. A client that goes away stops the rendering (its chunks have nowhere to go).
    let (chunks, received) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut writer = std::io::BufWriter::with_capacity(
            CHUNK_BYTES,
            ChunkWriter {
                chunks: chunks.clone(),
            },
        );
        let rendered = render(&data, &mut writer).and_then(|()| writer.flush());
        if let Err(e) = rendered {
            tracing::warn!(error = %e, "Report rendering stopped.");
            let _ = chunks.blocking_send(Err(e));
        }
    });
    let stream = futures_util::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|chunk| (chunk, received))
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&verification) {
        headers.insert("x-slawatch-ledger", v);
    }
    Ok(response)
}

/// Bytes of rendered report per chunk of the response body.
const CHUNK_BYTES: usize = 256 * 1024;

/// Chunks rendered ahead of what the client has read.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Hands what a renderer writes to the response body, chunk by chunk.
struct ChunkWriter {
    chunks: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.chunks
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the client stopped reading the report",
                )
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
