//! The JSON API under `/api/v1/inquiries`.
//!
//! Inquiries are served in the shape of [`Inquiry`]'s `Serialize` (DESIGN.md lists the fields),
//! times as RFC 3339 UTC. Listing is newest first by `received_at`; a page ends with an opaque
//! `next_cursor` (hex of `received_at|id` of its last item) that continues strictly after that
//! item, so paging never repeats or skips an inquiry, even while new ones arrive. Every bad
//! parameter is a 400 that names it.

use std::collections::HashSet;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use slawatch_core::domain::{Channel, InquiryId, Language};
use slawatch_core::tracker::observation::{AckVia, ManualAck};
use slawatch_core::tracker::state::Rejected;
use slawatch_core::tracker::{Event, Inquiry, InquiryState};

use super::{ApiError, AppState};
use crate::engine::AckError;

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page: bounds the time the read lock is held and the response size.
pub const MAX_LIMIT: usize = 1000;
/// How far in the future an acknowledgement time may be: clocks of people and machines differ a
/// little, but an ack "in an hour" is a mistake.
const ACK_FUTURE_TOLERANCE: TimeDelta = TimeDelta::minutes(1);
/// How far in the past an acknowledgement time may be: an ack records an answer given on another
/// channel, noted the same day; one dated more than a week back is a typo in the date (or an
/// attempt to rewrite the figures) far more often than a real record.
pub const ACK_MAX_AGE: TimeDelta = TimeDelta::days(7);
/// Bounds on free-text fields of an ack (they are stored in the ledger forever).
const MAX_BY_CHARS: usize = 200;
const MAX_NOTE_CHARS: usize = 2000;

/// Filters and paging of the list endpoint, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub state: Option<InquiryState>,
    pub channel: Option<Channel>,
    pub language: Option<Language>,
    /// Inclusive lower bound on `received_at`.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `received_at`.
    pub until: Option<DateTime<Utc>>,
    pub limit: usize,
    pub cursor: Option<(DateTime<Utc>, InquiryId)>,
}

impl Default for ListQuery {
    fn default() -> ListQuery {
        ListQuery {
            state: None,
            channel: None,
            language: None,
            since: None,
            until: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

impl ListQuery {
    /// Validates raw `key=value` pairs. Unknown and repeated parameters are refused: a typo
    /// (`stat=open`) silently ignored would return everything.
    pub fn parse(pairs: &[(String, String)]) -> Result<ListQuery, ApiError> {
        let mut q = ListQuery::default();
        let mut seen = HashSet::new();
        for (key, value) in pairs {
            let parameter = match key.as_str() {
                "state" => "state",
                "channel" => "channel",
                "language" => "language",
                "since" => "since",
                "until" => "until",
                "limit" => "limit",
                "cursor" => "cursor",
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown parameter {other:?} (known: state, channel, language, since, \
                         until, limit, cursor)"
                    )));
                }
            };
            if !seen.insert(parameter) {
                return Err(ApiError::bad(parameter, format!("{parameter} given twice")));
            }
            let value = value.trim();
            match parameter {
                "state" => {
                    q.state = Some(InquiryState::parse(value).ok_or_else(|| {
                        ApiError::bad("state", "state must be open, responded or excluded")
                    })?)
                }
                "channel" => {
                    q.channel = Some(Channel::parse(value).ok_or_else(|| {
                        ApiError::bad("channel", "channel must be email or phone")
                    })?)
                }
                "language" => {
                    q.language = Some(
                        Language::ALL
                            .into_iter()
                            .find(|l| l.as_str() == value)
                            .ok_or_else(|| {
                                ApiError::bad("language", "language must be en, es or ar")
                            })?,
                    )
                }
                "since" => q.since = Some(parse_time("since", value)?),
                "until" => q.until = Some(parse_time("until", value)?),
                "limit" => {
                    q.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::bad(
                                "limit",
                                format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                            )
                        })?
                }
                _ => q.cursor = Some(decode_cursor(value)?),
            }
        }
        if let (Some(since), Some(until)) = (q.since, q.until)
            && until < since
        {
            return Err(ApiError::bad("until", "until is before since"));
        }
        Ok(q)
    }

    fn matches(&self, i: &Inquiry) -> bool {
        self.state.is_none_or(|s| i.state == s)
            && self.channel.is_none_or(|c| i.channel == c)
            && self.language.is_none_or(|l| i.language == l)
    }
}

/// One page of the list.
#[derive(Debug, Serialize)]
pub struct Page {
    pub inquiries: Vec<Inquiry>,
    pub next_cursor: Option<String>,
}

/// Runs a query against the tracker: newest first, at most `limit` items, and a cursor when
/// more match.
pub fn page(tracker: &slawatch_core::tracker::Tracker, q: &ListQuery) -> Page {
    // Start strictly before the cursor, or before `until` (the empty id sorts first, so
    // `(until, "")` excludes everything received at `until` or later).
    let mut start = q.cursor.clone();
    if let Some(until) = q.until {
        let bound = (until, InquiryId::default());
        if start.as_ref().is_none_or(|s| bound < *s) {
            start = Some(bound);
        }
    }
    let iter: Box<dyn Iterator<Item = &Inquiry>> = match &start {
        Some((at, id)) => Box::new(tracker.newest_before(*at, id)),
        None => Box::new(tracker.newest_first()),
    };
    let mut matching = iter
        .take_while(|i| q.since.is_none_or(|s| i.received_at >= s))
        .filter(|i| q.matches(i));
    let inquiries: Vec<Inquiry> = matching.by_ref().take(q.limit).cloned().collect();
    let next_cursor = match (inquiries.last(), matching.next()) {
        (Some(last), Some(_)) => Some(encode_cursor(last.received_at, &last.id)),
        _ => None,
    };
    Page {
        inquiries,
        next_cursor,
    }
}

/// `GET /api/v1/inquiries`.
pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(pairs) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let q = ListQuery::parse(&pairs)?;
    merged_page(&state, &q).await.map(Json)
}

/// Rows read from the projection per query while merging (more when the tracker holds many
/// of them).
const PROJECTION_CHUNK: usize = 200;

/// [`page`] over the tracker and the store's inquiry projection together: the tracker holds
/// what is decided but maybe not committed yet and wins for every id it holds; the projection
/// holds the history the tracker no longer keeps. The same order, cursor and JSON as [`page`].
pub async fn merged_page(state: &AppState, q: &ListQuery) -> Result<Page, ApiError> {
    let mut start = q.cursor.clone();
    if let Some(until) = q.until {
        let bound = (until, InquiryId::default());
        if start.as_ref().is_none_or(|s| bound < *s) {
            start = Some(bound);
        }
    }
    // The tracker's side: one more than a page, so the merge knows whether more follow.
    let held_page = page(
        &state.tracker(),
        &ListQuery {
            limit: q.limit + 1,
            cursor: start.clone(),
            until: None,
            ..q.clone()
        },
    )
    .inquiries;
    // Below the tracker's last item nothing of the store can enter the page.
    let floor = (held_page.len() > q.limit)
        .then(|| held_page.last().map(|i| (i.received_at, i.id.clone())))
        .flatten();
    let listed: HashSet<InquiryId> = held_page.iter().map(|i| i.id.clone()).collect();
    let mut stored: Vec<Inquiry> = Vec::new();
    let mut before = start;
    loop {
        let query = crate::store::ProjectionQuery {
            state: q.state,
            channel: q.channel,
            language: q.language,
            since: q.since,
            before: before.clone(),
        };
        let rows = state
            .shared
            .store
            .projected_page(&query, PROJECTION_CHUNK)
            .await
            .map_err(|e| ApiError::Internal(format!("reading the store failed: {e}")))?;
        let full = rows.len() == PROJECTION_CHUNK;
        before = rows.last().map(|i| (i.received_at, i.id.clone()));
        {
            let tracker = state.tracker();
            stored.extend(
                rows.into_iter()
                    .filter(|i| tracker.get(&i.id).is_none() && !listed.contains(&i.id)),
            );
        }
        let below_floor = match (&before, &floor) {
            (Some(b), Some(f)) => b <= f,
            _ => false,
        };
        if !full || below_floor || stored.len() > q.limit {
            break;
        }
    }
    let mut all: Vec<Inquiry> = held_page.into_iter().chain(stored).collect();
    all.sort_by(|a, b| (b.received_at, &b.id).cmp(&(a.received_at, &a.id)));
    let more = all.len() > q.limit;
    all.truncate(q.limit);
    let next_cursor = match (all.last(), more) {
        (Some(last), true) => Some(encode_cursor(last.received_at, &last.id)),
        _ => None,
    };
    Ok(Page {
        inquiries: all,
        next_cursor,
    })
}

/// One ledger entry as shown with its inquiry.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub seq: i64,
    pub recorded_at: DateTime<Utc>,
    pub hash: String,
    pub event: Event,
}

/// An inquiry with the ledger entries about it.
#[derive(Debug, Serialize)]
pub struct InquiryWithEvents {
    #[serde(flatten)]
    pub inquiry: Inquiry,
    pub events: Vec<EventView>,
}

/// `GET /api/v1/inquiries/{id}`.
pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<InquiryWithEvents>, ApiError> {
    let id = InquiryId(id.into());
    let inquiry = state
        .inquiry(&id)
        .await
        .map_err(|e| ApiError::Internal(format!("reading the store failed: {e}")))?
        .ok_or_else(|| unknown(&id))?;
    // Not yet committed (the engine is retrying its append): no history to show yet.
    let entries = match inquiry.ledger_seqs {
        Some(seqs) => state
            .shared
            .store
            .events_for_inquiry(&id, seqs)
            .await
            .map_err(|e| ApiError::Internal(format!("reading the ledger failed: {e}")))?,
        None => Vec::new(),
    };
    let events = entries
        .into_iter()
        .map(|e| EventView {
            seq: e.seq,
            recorded_at: e.recorded_at,
            hash: e.hash,
            event: e.event,
        })
        .collect();
    Ok(Json(InquiryWithEvents { inquiry, events }))
}

/// Body of `POST /api/v1/inquiries/{id}/ack`. Fields are taken as strings and validated one by
/// one, so an error names the field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckBody {
    pub by: Option<String>,
    pub via: Option<String>,
    pub at: Option<String>,
    pub note: Option<String>,
}

/// `POST /api/v1/inquiries/{id}/ack`. The `200` is sent once the acknowledgement is in the
/// ledger and synced to disk.
pub async fn ack(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<AckBody>, JsonRejection>,
) -> Result<Json<Inquiry>, ApiError> {
    let Json(body) = body.map_err(|e| match e {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(e.body_text()),
        _ if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge(e.body_text())
        }
        _ => ApiError::BadRequest(e.body_text()),
    })?;
    let now = Utc::now();
    let id = InquiryId(id.into());
    let ack = validate_ack(&id, body, now)?;

    // Answer 404/409/400 from the state first; the engine checks again (the state may change
    // before it runs).
    {
        // The store answers for an inquiry the tracker no longer holds (an old, closed one).
        let inquiry = state
            .inquiry(&id)
            .await
            .map_err(|e| ApiError::Internal(format!("reading the store failed: {e}")))?
            .ok_or_else(|| unknown(&id))?;
        if inquiry.state != InquiryState::Open {
            return Err(ApiError::Conflict(format!(
                "inquiry {id} is {}, not open",
                inquiry.state.as_str()
            )));
        }
        if ack.at < inquiry.received_at {
            return Err(before_receipt(inquiry.received_at));
        }
    }

    match state.engine.ack(ack).await {
        Ok(inquiry) => Ok(Json(inquiry)),
        Err(AckError::Rejected(Rejected::UnknownInquiry(id))) => Err(unknown(&id)),
        Err(AckError::Rejected(e @ Rejected::NotOpen(..))) => {
            Err(ApiError::Conflict(e.to_string()))
        }
        Err(AckError::Rejected(Rejected::AckBeforeReceipt { received, .. })) => {
            Err(before_receipt(received))
        }
        Err(e @ AckError::Store(_)) => Err(ApiError::Internal(e.to_string())),
        Err(e @ (AckError::Stopped | AckError::Standby)) => {
            Err(ApiError::Unavailable(e.to_string()))
        }
    }
}

/// Turns an ack body into a [`ManualAck`], checking everything that does not need the state.
pub fn validate_ack(
    id: &InquiryId,
    body: AckBody,
    now: DateTime<Utc>,
) -> Result<ManualAck, ApiError> {
    let by = body.by.as_deref().map(str::trim).unwrap_or_default();
    if by.is_empty() {
        return Err(ApiError::bad(
            "by",
            "by (who answered the customer) is required",
        ));
    }
    if by.chars().count() > MAX_BY_CHARS {
        return Err(ApiError::bad(
            "by",
            format!("by is longer than {MAX_BY_CHARS} characters"),
        ));
    }
    let via = match body.via.as_deref().map(str::trim) {
        None | Some("") => AckVia::Other,
        Some(v) => AckVia::parse(v)
            .ok_or_else(|| ApiError::bad("via", "via must be phone, email or other"))?,
    };
    let at = match body.at.as_deref().map(str::trim) {
        None | Some("") => now,
        Some(v) => parse_time("at", v)?,
    };
    if at > now + ACK_FUTURE_TOLERANCE {
        return Err(ApiError::bad(
            "at",
            format!(
                "at is in the future (more than {} minute ahead of the server's clock)",
                ACK_FUTURE_TOLERANCE.num_minutes()
            ),
        ));
    }
    if at < now - ACK_MAX_AGE {
        return Err(ApiError::bad(
            "at",
            format!(
                "at is more than {} days in the past: an ack records a recent answer",
                ACK_MAX_AGE.num_days()
            ),
        ));
    }
    let note = body
        .note
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    if note
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
    {
        return Err(ApiError::bad(
            "note",
            format!("note is longer than {MAX_NOTE_CHARS} characters"),
        ));
    }
    Ok(ManualAck {
        inquiry_id: id.clone(),
        by: by.to_string(),
        via,
        at,
        note,
    })
}

fn unknown(id: &InquiryId) -> ApiError {
    ApiError::NotFound(format!("no inquiry {id}"))
}

fn before_receipt(received: DateTime<Utc>) -> ApiError {
    ApiError::bad(
        "at",
        format!(
            "at is before the inquiry was received ({})",
            received.to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
    )
}

fn parse_time(parameter: &'static str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            ApiError::bad(
                parameter,
                format!("{parameter} must be an RFC 3339 time such as 2026-03-02T10:00:00Z: {e}"),
            )
        })
}

/// `hex("<received_at RFC 3339 with nanoseconds>|<id>")`.
pub fn encode_cursor(at: DateTime<Utc>, id: &InquiryId) -> String {
    hex::encode(format!(
        "{}|{}",
        at.to_rfc3339_opts(SecondsFormat::Nanos, true),
        id
    ))
}

fn decode_cursor(value: &str) -> Result<(DateTime<Utc>, InquiryId), ApiError> {
    let bad = || ApiError::bad("cursor", "cursor is not one returned by this API");
    let bytes = hex::decode(value).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (at, id) = text.split_once('|').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at).map_err(|_| bad())?;
    Ok((at.with_timezone(&Utc), InquiryId(id.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parameter_of(e: ApiError) -> Option<&'static str> {
        match e {
            ApiError::BadParameter { parameter, .. } => Some(parameter),
            _ => None,
        }
    }

    #[test]
    fn cursors_round_trip() {
        let at = DateTime::parse_from_rfc3339("2026-03-02T10:00:00.123456789Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let id = InquiryId("eabc".into());
        let c = encode_cursor(at, &id);
        assert_eq!(decode_cursor(&c).ok(), Some((at, id)));
        assert!(decode_cursor("zz").is_err());
        assert!(decode_cursor(&hex::encode("no-bar")).is_err());
    }

    #[test]
    fn bad_parameters_are_named() {
        for (q, p) in [
            (vec![("state", "closed")], "state"),
            (vec![("channel", "fax")], "channel"),
            (vec![("language", "fr")], "language"),
            (vec![("since", "yesterday")], "since"),
            (vec![("until", "2026-13-01T00:00:00Z")], "until"),
            (vec![("limit", "0")], "limit"),
            (vec![("limit", "1001")], "limit"),
            (vec![("limit", "-5")], "limit"),
            (vec![("cursor", "xyz")], "cursor"),
            (vec![("state", "open"), ("state", "open")], "state"),
            (
                vec![
                    ("since", "2026-03-02T10:00:00Z"),
                    ("until", "2026-03-01T10:00:00Z"),
                ],
                "until",
            ),
        ] {
            let e = ListQuery::parse(&pairs(&q)).err();
            assert_eq!(e.and_then(parameter_of), Some(p), "{q:?}");
        }
        assert!(ListQuery::parse(&pairs(&[("stat", "open")])).is_err());
        let ok = ListQuery::parse(&pairs(&[("state", "open"), ("limit", "1000")]));
        assert_eq!(
            ok.map(|q| (q.state, q.limit)).ok(),
            Some((Some(InquiryState::Open), 1000))
        );
    }

    #[test]
    fn ack_bodies_are_validated() {
        let now = Utc::now();
        let id = InquiryId("e1".into());
        let body = |by: Option<&str>, via: Option<&str>, at: Option<String>| AckBody {
            by: by.map(str::to_string),
            via: via.map(str::to_string),
            at,
            note: None,
        };
        let e = validate_ack(&id, body(Some("  "), None, None), now).err();
        assert_eq!(e.and_then(parameter_of), Some("by"));
        let e = validate_ack(&id, body(Some("ana"), Some("fax"), None), now).err();
        assert_eq!(e.and_then(parameter_of), Some("via"));
        let later = (now + TimeDelta::minutes(5)).to_rfc3339();
        let e = validate_ack(&id, body(Some("ana"), None, Some(later)), now).err();
        assert_eq!(e.and_then(parameter_of), Some("at"));
        let ack = validate_ack(&id, body(Some("ana"), None, None), now).ok();
        assert_eq!(ack.map(|a| (a.via, a.at)), Some((AckVia::Other, now)));
    }

    #[test]
    fn ack_times_far_from_now_are_refused_with_the_bound() {
        // A fixed clock: the bounds are relative to the server's `now`.
        let now = "2026-03-10T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let id = InquiryId("e1".into());
        let at = |t: &str| AckBody {
            by: Some("ana".into()),
            via: None,
            at: Some(t.into()),
            note: None,
        };
        for (t, says) in [
            ("2016-03-10T12:00:00Z", "more than 7 days in the past"),
            ("2026-03-03T11:59:00Z", "more than 7 days in the past"),
            ("2026-03-10T12:02:00Z", "in the future"),
            ("2036-03-10T12:00:00Z", "in the future"),
        ] {
            let e = validate_ack(&id, at(t), now).expect_err(t);
            assert!(e.to_string().contains(says), "{t}: {e}");
            assert_eq!(parameter_of(e), Some("at"));
        }
        for t in ["2026-03-03T12:01:00Z", "2026-03-10T12:00:30Z"] {
            assert!(validate_ack(&id, at(t), now).is_ok(), "{t}");
        }
    }
}
