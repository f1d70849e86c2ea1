//! The Twilio-compatible Calls API poller: a thin I/O shell around [`super::twilio`].
//!
//! Every `poll_interval` it lists the calls started on or after a day (`StartTime>=YYYY-MM-DD`,
//! the API's granularity is a UTC day): the day of the oldest call that was not final at the
//! last poll, else the day before the last poll (a call just before midnight UTC needs the
//! previous day). It follows `next_page_uri` verbatim (relative to the base URL) and submits the
//! observations with the new cursor. Calls are re-read every poll until they are final; the
//! tracker's rules are idempotent, so nothing is counted twice. Every request has a timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::lines::CallLines;
use super::twilio::{self, CallResource};
use crate::config::Secret;
use crate::sources::backoff::Backoff;
use crate::sources::{CursorUpdate, EngineSink, SinkError, SourceBatch};
use crate::telemetry::SourceHealth;

/// Pages followed at most in one poll (1000 calls each): a bound, not a limit in practice.
const MAX_PAGES: usize = 200;

const CURSOR_KEY: &str = "calls";

#[derive(Debug, Clone)]
pub struct TwilioSettings {
    /// `https://api.twilio.com` or a compatible server.
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: Secret,
    pub poll_interval: Duration,
    /// Bound on each HTTP request.
    pub timeout: Duration,
    /// Days read back on the first poll.
    pub backfill_days: i64,
    /// The first day read on the first poll (`since = "2025-03-01"`), instead of
    /// `backfill_days`.
    pub since: Option<NaiveDate>,
    pub lines: CallLines,
    /// `ca_file` / `tls_fingerprint` for an https:// `base_url`.
    pub tls: crate::tls::TlsTrust,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PollCursor {
    /// Start day of the oldest call not final at the last poll.
    pub oldest_open: Option<NaiveDate>,
    pub last_poll: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// `detail` is the error with its causes, TLS failures explained ([`crate::tls::describe`]).
    #[error("request to {url} failed: {detail}")]
    Request {
        url: String,
        source: reqwest::Error,
        detail: String,
    },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: {source}")]
    Page {
        url: String,
        source: twilio::PageError,
    },
}

impl PollError {
    pub fn kind(&self) -> &'static str {
        match self {
            PollError::Request { source, .. } if source.is_timeout() => "timeout",
            PollError::Request { .. } => "connect",
            PollError::Status {
                status: 401 | 403, ..
            } => "auth",
            PollError::Status { .. } | PollError::Page { .. } => "protocol",
        }
    }
}

/// The first day to list: on the first poll `since` (else `backfill_days` back from now), then
/// the day before the last poll or of the oldest open call.
pub fn since_day(
    cursor: &PollCursor,
    now: DateTime<Utc>,
    backfill_days: i64,
    since: Option<NaiveDate>,
) -> NaiveDate {
    let from_last = match (cursor.last_poll, since) {
        (Some(t), _) => t
            .checked_sub_signed(chrono::Duration::days(1))
            .unwrap_or(t)
            .date_naive(),
        (None, Some(day)) => day,
        (None, None) => (now - chrono::Duration::days(backfill_days.clamp(1, 36_500))).date_naive(),
    };
    cursor.oldest_open.map_or(from_last, |d| d.min(from_last))
}

/// Every call started on or after `since`, all pages.
pub async fn fetch(
    client: &reqwest::Client,
    s: &TwilioSettings,
    since: NaiveDate,
) -> Result<Vec<CallResource>, PollError> {
    let base = s.base_url.trim_end_matches('/');
    let mut url = format!(
        "{base}/2010-04-01/Accounts/{}/Calls.json?StartTime%3E={}&PageSize=1000",
        s.account_sid,
        since.format("%Y-%m-%d")
    );
    let mut calls: Vec<CallResource> = Vec::new();
    for _ in 0..MAX_PAGES {
        let response = client
            .get(&url)
            .basic_auth(&s.account_sid, Some(s.auth_token.expose()))
            .send()
            .await
            .map_err(|source| PollError::Request {
                url: url.clone(),
                detail: crate::tls::describe(&source, &s.tls.setting),
                source,
            })?;
        if !response.status().is_success() {
            return Err(PollError::Status {
                url,
                status: response.status().as_u16(),
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|source| PollError::Request {
                url: url.clone(),
                detail: crate::tls::describe(&source, &s.tls.setting),
                source,
            })?;
        let page = twilio::parse_page(&bytes).map_err(|source| PollError::Page {
            url: url.clone(),
            source,
        })?;
        calls.extend(page.calls);
        match page.next_page_uri {
            Some(next) if !next.is_empty() => url = format!("{base}{next}"),
            _ => break,
        }
    }
    // The same call may appear on two pages while the list changes: keep the last copy.
    let mut by_sid: HashMap<String, usize> = HashMap::new();
    let mut unique: Vec<CallResource> = Vec::new();
    for c in calls {
        match by_sid.get(&c.sid) {
            Some(&i) => unique[i] = c,
            None => {
                by_sid.insert(c.sid.clone(), unique.len());
                unique.push(c);
            }
        }
    }
    Ok(unique)
}

pub async fn run(
    name: String,
    settings: TwilioSettings,
    stored: HashMap<String, serde_json::Value>,
    sink: EngineSink,
    health: Arc<dyn SourceHealth>,
    shutdown: CancellationToken,
) {
    let mut cursor: PollCursor = stored
        .get(CURSOR_KEY)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let client = match crate::tls::http_client(settings.timeout, &settings.tls) {
        Ok(c) => c,
        Err(e) => {
            health.set_up(&name, false);
            tracing::error!(source = %name, error = %e, "HTTP client could not be built; source stopped.");
            return;
        }
    };
    let mut initial_sync_done = false;
    // After a failed poll the next waits at least the backoff's delay: an API that resets or
    // times out every request is not asked again every `poll_interval`.
    let mut backoff = Backoff::default();
    loop {
        let mut wait = settings.poll_interval;
        let now = Utc::now();
        let since = since_day(&cursor, now, settings.backfill_days, settings.since);
        match fetch(&client, &settings, since).await {
            Ok(calls) => {
                health.set_up(&name, true);
                let observations = twilio::observations(&name, &calls, &settings.lines, now);
                let next = PollCursor {
                    oldest_open: calls
                        .iter()
                        .filter(|c| !c.is_final())
                        .filter_map(|c| {
                            c.start_time
                                .as_deref()
                                .and_then(|s| DateTime::parse_from_rfc2822(s).ok())
                        })
                        .map(|t| t.with_timezone(&Utc).date_naive())
                        .min(),
                    last_poll: Some(now),
                };
                let batch = SourceBatch {
                    source: name.clone(),
                    observations,
                    cursors: serde_json::to_value(&next)
                        .ok()
                        .map(|value| CursorUpdate {
                            key: CURSOR_KEY.to_string(),
                            value,
                        })
                        .into_iter()
                        .collect(),
                    initial_sync_done: !initial_sync_done,
                };
                match sink.submit(batch).await {
                    Ok(()) => {
                        cursor = next;
                        initial_sync_done = true;
                        health.succeeded(&name, Utc::now());
                        backoff.reset();
                    }
                    Err(SinkError::EngineStopped) => return,
                    Err(e) => {
                        health.error(&name, "commit");
                        tracing::warn!(source = %name, error = %e, "Batch not committed; retrying.");
                    }
                }
            }
            Err(e) => {
                health.set_up(&name, false);
                health.error(&name, e.kind());
                wait = wait.max(backoff.next_delay());
                tracing::warn!(source = %name, error = %e, retry_in_ms = wait.as_millis() as u64, "Calls API poll failed; retrying with backoff.");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_window_overlaps_midnight_and_keeps_open_calls() {
        let now = DateTime::parse_from_rfc3339("2026-01-06T00:00:30Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut c = PollCursor::default();
        assert_eq!(
            since_day(&c, now, 1, None),
            NaiveDate::from_ymd_opt(2026, 1, 5).unwrap()
        );
        // A backfill from a date reads from that day on the first poll only.
        let march = NaiveDate::from_ymd_opt(2025, 3, 1);
        assert_eq!(since_day(&c, now, 1, march), march.unwrap());
        c.last_poll = Some(now);
        assert_eq!(
            since_day(
                &PollCursor {
                    oldest_open: None,
                    ..c.clone()
                },
                now,
                1,
                march
            ),
            NaiveDate::from_ymd_opt(2026, 1, 5).unwrap()
        );
        c.oldest_open = NaiveDate::from_ymd_opt(2026, 1, 2);
        assert_eq!(
            since_day(&c, now, 1, None),
            NaiveDate::from_ymd_opt(2026, 1, 2).unwrap()
        );
    }
}
