//! `POST /api/v1/calls`: call events pushed by any PBX (a webhook, a dialplan `CURL()`, a CTI
//! bridge). Needs the write token (`http.token`) once any token is configured. Times more than
//! [`CALL_MAX_AGE`] back or [`CALL_FUTURE_TOLERANCE`] ahead of the server's clock are refused,
//! naming the field.
//!
//! The body is one JSON call event or a list of them:
//!
//! ```json
//! {
//!   "call_id": "1767604542.1187",       // required; every event of one call shares it
//!   "event": "answered",                // started | answered | ended
//!   "direction": "inbound",             // inbound (default) | outbound (a callback)
//!   "number": "+34600123456",           // caller, or callee of an outbound call; "" = withheld
//!   "region": "ES",                     // default region for a national number
//!   "name": "Ana Ruiz",
//!   "line": "soporte-es",
//!   "language": "es",
//!   "started_at": "2026-01-05T09:15:42Z",   // required: when the call reached the PBX
//!   "queue_entered_at": "2026-01-05T09:16:00Z",
//!   "answered_at": "2026-01-05T09:16:30Z",  // required for "answered": the human pickup
//!   "ended_at": "2026-01-05T09:20:00Z",
//!   "agent": "PJSIP/2001",
//!   "outcome": "voicemail",             // for "ended": no_answer | abandoned | voicemail | busy | failed | machine
//!   "internal": false,
//!   "source": "pbx-push"                // default "api"
//! }
//! ```
//!
//! Only send `answered` for a person picking up (or a callback that connected to a person): an
//! IVR or voicemail answer is `ended` with outcome `machine` or `voicemail`. Events are
//! idempotent: sending the same one twice changes nothing.
//!
//! The `202` answer means the events are in the ledger and synced to disk: nobody sends a
//! push again, so it must survive a power loss (the engine commits pushes with
//! `synchronous=FULL`, gathering the ones that arrive together into one commit).

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use slawatch_core::domain::Language;
use slawatch_core::phone_number::{normalize, region};
use slawatch_core::tracker::Observation;
use slawatch_core::tracker::observation::{Call, CallDirection, CallIgnore, CallOutcome};

use super::{ApiError, AppState};

/// Events accepted in one request.
const MAX_EVENTS: usize = 1000;
/// Bound on free-text fields (they end up in the ledger).
const MAX_TEXT: usize = 200;
/// How far ahead of the server's clock a pushed time may be (PBX clocks drift a little).
pub const CALL_FUTURE_TOLERANCE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// How far in the past a pushed time may be: a PBX pushes calls as they happen, and a catch-up
/// after a long outage belongs to its call log (`asterisk_cdr`, `csv_calls`), which keeps a
/// cursor. A call dated weeks back would open (or answer) inquiries long decided.
pub const CALL_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::days(7);

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PushBody {
    One(Box<CallEventBody>),
    Many(Vec<CallEventBody>),
}

/// One pushed call event, as documented above.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallEventBody {
    pub call_id: String,
    pub event: String,
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub number: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub line: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub queue_entered_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub answered_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PushReply {
    pub accepted: usize,
    /// Ledger events the calls caused (0 for repeats).
    pub events: usize,
}

pub async fn push(
    State(state): State<AppState>,
    body: Result<Json<PushBody>, JsonRejection>,
) -> Result<(StatusCode, Json<PushReply>), ApiError> {
    let Json(body) = body.map_err(|e| match e {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(e.body_text()),
        _ if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge(e.body_text())
        }
        _ => ApiError::BadRequest(e.body_text()),
    })?;
    let bodies = match body {
        PushBody::One(b) => vec![*b],
        PushBody::Many(v) => v,
    };
    if bodies.is_empty() || bodies.len() > MAX_EVENTS {
        return Err(ApiError::BadRequest(format!(
            "send between 1 and {MAX_EVENTS} call events"
        )));
    }
    let now = Utc::now();
    let observations = bodies
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            observation(b, now).map_err(|m| ApiError::BadRequest(format!("event {i}: {m}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let accepted = observations.len();
    let events = state
        .engine
        .observe(observations)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    Ok((StatusCode::ACCEPTED, Json(PushReply { accepted, events })))
}

fn text(field: &str, v: Option<String>) -> Result<Option<String>, String> {
    match v {
        Some(s) if s.chars().count() > MAX_TEXT => {
            Err(format!("{field} is longer than {MAX_TEXT} characters"))
        }
        other => Ok(other
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())),
    }
}

/// Validates one pushed event into an observation.
pub fn observation(b: CallEventBody, now: DateTime<Utc>) -> Result<Observation, String> {
    let call_id = text("call_id", Some(b.call_id))?.ok_or("call_id is empty")?;
    let direction = match b.direction.as_deref() {
        None | Some("inbound") => CallDirection::Inbound,
        Some("outbound") => CallDirection::Outbound,
        Some(other) => return Err(format!("direction {other:?} is not inbound or outbound")),
    };
    let default_region = match b.region.as_deref() {
        None => None,
        Some(r) => Some(region(r).ok_or_else(|| format!("region {r:?} is not a region code"))?),
    };
    let language = match b.language.as_deref() {
        None => None,
        Some(l) => {
            Some(Language::parse(l).ok_or_else(|| format!("language {l:?} is not en, es or ar"))?)
        }
    };
    for (field, at) in [
        ("started_at", Some(b.started_at)),
        ("queue_entered_at", b.queue_entered_at),
        ("answered_at", b.answered_at),
        ("ended_at", b.ended_at),
    ] {
        let Some(at) = at else { continue };
        if at > now + CALL_FUTURE_TOLERANCE {
            return Err(format!(
                "{field} is in the future (more than {} minutes ahead of the server's clock)",
                CALL_FUTURE_TOLERANCE.num_minutes()
            ));
        }
        if at < now - CALL_MAX_AGE {
            return Err(format!(
                "{field} is more than {} days in the past: push calls as they happen, and read older ones from the call log",
                CALL_MAX_AGE.num_days()
            ));
        }
    }
    let (outcome, answered_at) = match b.event.as_str() {
        "started" => (CallOutcome::InProgress, None),
        "answered" => {
            let at = b
                .answered_at
                .ok_or("answered_at is required for an answered event")?;
            if at < b.started_at {
                return Err("answered_at is before started_at".into());
            }
            (CallOutcome::Answered, Some(at))
        }
        "ended" => (
            match b.outcome.as_deref() {
                None | Some("no_answer") => CallOutcome::NoAnswer,
                Some("abandoned") => CallOutcome::Abandoned,
                Some("voicemail") => CallOutcome::Voicemail,
                Some("busy") => CallOutcome::Busy,
                Some("failed") => CallOutcome::Failed,
                Some("machine") => CallOutcome::AnsweredByMachine,
                Some(_) => CallOutcome::Unknown,
            },
            None,
        ),
        other => return Err(format!("event {other:?} is not started, answered or ended")),
    };
    let number = normalize(b.number.as_deref().unwrap_or(""), default_region);
    let agent = text("agent", b.agent)?;
    let call = Call {
        source: text("source", b.source)?.unwrap_or_else(|| "api".to_string()),
        record_id: format!(
            "{call_id}|{}|{}",
            b.event,
            answered_at
                .or(b.ended_at)
                .unwrap_or(b.started_at)
                .timestamp()
        ),
        call_id,
        direction,
        number,
        name: text("name", b.name)?,
        line: text("line", b.line)?,
        language,
        started_at: b.started_at,
        queue_entered_at: b.queue_entered_at,
        answered_at,
        ended_at: b.ended_at,
        agent,
        outcome,
        seen_at: now,
        ignore: b.internal.then_some(CallIgnore::Internal),
    };
    Ok(match outcome {
        CallOutcome::InProgress => Observation::CallStarted(call),
        CallOutcome::Answered => Observation::CallAnswered(call),
        _ => Observation::CallEnded(call),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> CallEventBody {
        serde_json::from_str(json).expect("call event")
    }

    #[test]
    fn pushed_times_far_from_now_are_refused_naming_the_field() {
        // A fixed clock: the bounds are relative to the server's `now`.
        let now = "2026-03-10T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        for (json, says) in [
            (
                r#"{"call_id": "a", "event": "ended", "number": "+34600000001", "started_at": "2016-03-10T12:00:00Z"}"#,
                "started_at is more than 7 days in the past",
            ),
            (
                r#"{"call_id": "b", "event": "started", "number": "+34600000001", "started_at": "2027-03-10T12:00:00Z"}"#,
                "started_at is in the future",
            ),
            (
                r#"{"call_id": "c", "event": "answered", "direction": "outbound", "number": "+34600000001", "started_at": "2026-03-10T11:59:00Z", "answered_at": "2030-01-01T00:00:00Z"}"#,
                "answered_at is in the future",
            ),
            (
                r#"{"call_id": "d", "event": "ended", "number": "+34600000001", "started_at": "2026-03-10T11:00:00Z", "ended_at": "2026-03-10T12:10:00Z"}"#,
                "ended_at is in the future",
            ),
        ] {
            let e = observation(event(json), now).expect_err(json);
            assert!(e.contains(says), "{json}: {e}");
        }
        let fine = r#"{"call_id": "e", "event": "ended", "number": "+34600000001", "started_at": "2026-03-04T12:00:00Z", "ended_at": "2026-03-10T12:04:00Z"}"#;
        assert!(observation(event(fine), now).is_ok());
    }
}

/// Arbitrary bytes and shaped events through the `POST /api/v1/calls` body decoder and
/// validation: a refusal, never a panic (`SLAWATCH_FUZZ_CASES` sets the cases).
#[cfg(test)]
mod fuzz_tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sources::calls::fuzz_config;

    fn check(bytes: &[u8]) {
        if let Ok(body) = serde_json::from_slice::<PushBody>(bytes) {
            let bodies = match body {
                PushBody::One(b) => vec![*b],
                PushBody::Many(v) => v,
            };
            let now = "2026-03-10T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
            for b in bodies {
                let _ = observation(b, now);
            }
        }
    }

    fn time() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(serde_json::json!("2026-03-10T11:59:00Z")),
            Just(serde_json::json!("+262142-12-31T23:59:59Z")),
            Just(serde_json::json!("-262143-01-01T00:00:00Z")),
            "[+-]?[0-9]{4,6}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"
                .prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
        ]
    }

    fn text() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            any::<String>().prop_map(serde_json::Value::from),
            "[+0-9 ()-]{0,20}".prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
        ]
    }

    fn event() -> impl Strategy<Value = serde_json::Value> {
        (
            text(),
            prop_oneof![
                Just("started"),
                Just("answered"),
                Just("ended"),
                Just("other")
            ],
            (text(), text(), text(), text()),
            (time(), time(), time(), time()),
            (text(), text(), any::<bool>()),
        )
            .prop_map(
                |(
                    id,
                    ev,
                    (number, region, line, language),
                    (s, q, a, e),
                    (agent, outcome, internal),
                )| {
                    serde_json::json!({
                        "call_id": id, "event": ev, "number": number, "region": region,
                        "line": line, "language": language, "started_at": s,
                        "queue_entered_at": q, "answered_at": a, "ended_at": e,
                        "agent": agent, "outcome": outcome, "internal": internal,
                    })
                },
            )
    }

    proptest! {
        #![proptest_config(fuzz_config())]

        #[test]
        fn fuzz_push_body_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            check(&bytes);
        }

        #[test]
        fn fuzz_push_body_events(events in proptest::collection::vec(event(), 1..4)) {
            check(serde_json::Value::from(events).to_string().as_bytes());
        }
    }
}
