//! Twilio-compatible Calls API: a pure decoder of `Calls.json` pages and the rules that turn
//! parent/child call resources into call observations (`phone-feeds.md` §3.1).
//!
//! Traps handled here: the inbound parent is `completed` even when nobody answered (Twilio ran the
//! TwiML), so a pickup is a `completed` (or `in-progress`) `<Dial>` child, never the parent;
//! `answered_by` other than `human` is a machine; `duration` is a string and empty until the call
//! is final; times are RFC 2822 UTC; there is no answered-at field, so the pickup is approximated
//! as `end_time − duration` (the child's start time while it is still in progress). Calls are not
//! in any order and are re-polled until final; observations are idempotent in the tracker.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use slawatch_core::phone_number::normalize;
use slawatch_core::tracker::observation::{
    Call, CallDirection, CallIgnore, CallOutcome, Observation,
};

use super::lines::CallLines;

/// One page of `GET …/Calls.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct CallsPage {
    #[serde(default)]
    pub calls: Vec<CallResource>,
    /// Relative to the API base; `null` on the last page.
    #[serde(default)]
    pub next_page_uri: Option<String>,
}

/// The fields of a call resource slawatch uses (others are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct CallResource {
    pub sid: String,
    #[serde(default)]
    pub parent_call_sid: Option<String>,
    #[serde(default)]
    pub start_time: Option<String>,
    #[serde(default)]
    pub end_time: Option<String>,
    #[serde(default)]
    pub date_created: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub direction: String,
    #[serde(default)]
    pub answered_by: Option<String>,
    #[serde(default)]
    pub caller_name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("not a Calls page: {0}")]
pub struct PageError(String);

pub fn parse_page(bytes: &[u8]) -> Result<CallsPage, PageError> {
    serde_json::from_slice(bytes).map_err(|e| PageError(e.to_string()))
}

impl CallResource {
    /// No more changes to expect.
    pub fn is_final(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "busy" | "failed" | "no-answer" | "canceled"
        )
    }

    fn started(&self) -> Option<DateTime<Utc>> {
        self.start_time
            .as_deref()
            .or(self.date_created.as_deref())
            .and_then(rfc2822)
    }

    fn ended(&self) -> Option<DateTime<Utc>> {
        self.end_time.as_deref().and_then(rfc2822)
    }

    /// A person (or nobody said otherwise) answered: `answered_by` null or `human`.
    fn human(&self) -> bool {
        self.answered_by.as_deref().is_none_or(|a| a == "human")
    }

    /// Connected to a person: completed or in progress, not a machine.
    fn connected(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "in-progress") && self.human()
    }

    /// `end_time − duration`, else the start time (in progress).
    fn pickup(&self) -> Option<DateTime<Utc>> {
        let secs = self
            .duration
            .as_deref()
            .and_then(|d| d.trim().parse::<i64>().ok());
        // A duration out of range (negative, or beyond what a date can hold) is not evidence of
        // a pickup time: fall back to the start time.
        let picked = match (self.ended(), secs) {
            (Some(end), Some(s)) if s >= 0 => {
                chrono::TimeDelta::try_seconds(s).and_then(|d| end.checked_sub_signed(d))
            }
            _ => None,
        };
        picked.or_else(|| self.started())
    }
}

fn rfc2822(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Turns the calls of a poll into observations. `calls` are all resources seen in this poll
/// (children are matched to parents among them).
pub fn observations(
    source: &str,
    calls: &[CallResource],
    lines: &CallLines,
    seen_at: DateTime<Utc>,
) -> Vec<Observation> {
    let by_sid: HashMap<&str, &CallResource> = calls.iter().map(|c| (c.sid.as_str(), c)).collect();
    let mut children: HashMap<&str, Vec<&CallResource>> = HashMap::new();
    for c in calls {
        if let Some(p) = c.parent_call_sid.as_deref() {
            children.entry(p).or_default().push(c);
        }
    }
    let mut out = Vec::new();
    for c in calls {
        let Some(started_at) = c.started() else {
            continue; // queued, not dialled yet
        };
        let from = c.from.as_deref().unwrap_or("");
        let to = c.to.as_deref().unwrap_or("");
        let call =
            |direction, number: &str, call_id: &str, line: Option<&super::lines::Line>| Call {
                source: source.to_string(),
                call_id: call_id.to_string(),
                record_id: format!("{}|{}", c.sid, c.status),
                direction,
                number: normalize(number, line.and_then(|l| l.region).or(lines.default_region)),
                name: c.caller_name.clone().filter(|n| !n.is_empty()),
                line: line.map(|l| l.name.clone()),
                language: line.and_then(|l| l.language),
                started_at,
                queue_entered_at: None,
                answered_at: None,
                ended_at: c.ended(),
                agent: None,
                outcome: CallOutcome::InProgress,
                seen_at,
                ignore: None,
            };
        match c.direction.as_str() {
            "inbound" if from.starts_with("client:") => {} // an agent's browser: see its child
            "inbound" => {
                let line = lines
                    .lines
                    .iter()
                    .find(|l| l.matches.iter().any(|m| m == to));
                let mut obs = call(CallDirection::Inbound, from, &c.sid, line);
                if line.is_none() && !lines.lines.is_empty() {
                    obs.ignore = Some(CallIgnore::NotSupportLine);
                } else if obs.number.is_withheld() && lines.exclude_withheld {
                    obs.ignore = Some(CallIgnore::Withheld);
                }
                let kids = children
                    .get(c.sid.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                if let Some(kid) = kids
                    .iter()
                    .filter(|k| k.connected())
                    .min_by_key(|k| k.pickup())
                {
                    obs.answered_at = kid.pickup().map(|p| p.max(started_at));
                    obs.agent = kid.to.clone();
                    obs.outcome = CallOutcome::Answered;
                    out.push(Observation::CallAnswered(obs));
                } else if c.is_final() && kids.iter().all(|k| k.is_final()) {
                    obs.outcome = CallOutcome::NoAnswer;
                    out.push(Observation::CallEnded(obs));
                } else {
                    out.push(Observation::CallStarted(obs));
                }
            }
            "outbound-dial" => {
                // A child of a browser call (`client:agent`) is the desk calling the customer.
                let parent = c.parent_call_sid.as_deref().and_then(|p| by_sid.get(p));
                if let Some(p) = parent
                    && p.from.as_deref().is_some_and(|f| f.starts_with("client:"))
                {
                    out.push(outbound(
                        call(CallDirection::Outbound, to, &c.sid, None),
                        c,
                        p.from.clone(),
                    ));
                }
            }
            d if d.starts_with("outbound") => {
                out.push(outbound(
                    call(CallDirection::Outbound, to, &c.sid, None),
                    c,
                    Some(from.to_string()),
                ));
            }
            _ => {}
        }
    }
    out
}

fn outbound(mut obs: Call, c: &CallResource, agent: Option<String>) -> Observation {
    obs.agent = agent.filter(|a| !a.is_empty());
    if c.connected() {
        obs.answered_at = c.pickup();
        obs.outcome = CallOutcome::Answered;
        Observation::CallAnswered(obs)
    } else {
        obs.outcome = if c.human() {
            CallOutcome::NoAnswer
        } else {
            CallOutcome::AnsweredByMachine
        };
        Observation::CallEnded(obs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::calls::lines::Line;
    use slawatch_core::domain::Language;
    use slawatch_core::phone_number::region;

    fn lines() -> CallLines {
        CallLines {
            lines: vec![Line {
                name: "soporte-es".into(),
                matches: vec!["+34910000000".into()],
                language: Some(Language::Es),
                region: region("ES"),
            }],
            default_region: region("ES"),
            extension_max_digits: 5,
            exclude_withheld: false,
            min_callback_seconds: 1,
            outbound_prefix: None,
            queue_pickups_from_queue_log: false,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const PAGE: &str = r#"{
      "calls": [
        {"sid": "CA01", "parent_call_sid": null, "direction": "inbound", "status": "completed",
         "from": "+34600123456", "to": "+34910000000", "start_time": "Mon, 05 Jan 2026 09:15:42 +0000",
         "end_time": "Mon, 05 Jan 2026 09:20:00 +0000", "duration": "258", "answered_by": null, "caller_name": "Ana"},
        {"sid": "CA02", "parent_call_sid": "CA01", "direction": "outbound-dial", "status": "completed",
         "from": "+34910000000", "to": "sip:2001@pbx", "start_time": "Mon, 05 Jan 2026 09:16:00 +0000",
         "end_time": "Mon, 05 Jan 2026 09:20:00 +0000", "duration": "210", "answered_by": null},
        {"sid": "CA03", "parent_call_sid": null, "direction": "inbound", "status": "completed",
         "from": "+266696687", "to": "+34910000000", "start_time": "Mon, 05 Jan 2026 23:59:00 +0000",
         "end_time": "Tue, 06 Jan 2026 00:00:30 +0000", "duration": "90", "answered_by": null},
        {"sid": "CA04", "parent_call_sid": "CA03", "direction": "outbound-dial", "status": "no-answer",
         "from": "+34910000000", "to": "sip:2001@pbx", "start_time": "Mon, 05 Jan 2026 23:59:10 +0000",
         "end_time": null, "duration": "", "answered_by": null},
        {"sid": "CA05", "parent_call_sid": null, "direction": "outbound-api", "status": "completed",
         "from": "+34910000000", "to": "+34600999888", "start_time": "Mon, 05 Jan 2026 10:00:00 +0000",
         "end_time": "Mon, 05 Jan 2026 10:00:40 +0000", "duration": "30", "answered_by": "machine_end_beep"},
        {"sid": "CA06", "parent_call_sid": null, "direction": "inbound", "status": "in-progress",
         "from": "0034600777666", "to": "+34910000000", "start_time": "Mon, 05 Jan 2026 10:05:00 +0000",
         "end_time": null, "duration": null, "answered_by": null}
      ],
      "next_page_uri": "/2010-04-01/Accounts/AC1/Calls.json?Page=1&PageToken=PACA06"
    }"#;

    #[test]
    fn parents_children_machines_and_withheld() {
        let page = parse_page(PAGE.as_bytes()).unwrap();
        assert!(page.next_page_uri.is_some());
        let obs = observations("tw", &page.calls, &lines(), t("2026-01-06T12:00:00Z"));
        assert_eq!(obs.len(), 4, "{obs:#?}");
        let Observation::CallAnswered(a) = &obs[0] else {
            panic!("{:?}", obs[0])
        };
        assert_eq!(a.call_id, "CA01");
        assert_eq!(a.started_at, t("2026-01-05T09:15:42Z"));
        // end 09:20:00 − 210 s.
        assert_eq!(a.answered_at, Some(t("2026-01-05T09:16:30Z")));
        assert_eq!(a.language, Some(Language::Es));
        let Observation::CallEnded(w) = &obs[1] else {
            panic!("{:?}", obs[1])
        };
        assert!(w.number.is_withheld());
        let Observation::CallEnded(m) = &obs[2] else {
            panic!("{:?}", obs[2])
        };
        assert_eq!(m.direction, CallDirection::Outbound);
        assert_eq!(m.outcome, CallOutcome::AnsweredByMachine);
        let Observation::CallStarted(p) = &obs[3] else {
            panic!("{:?}", obs[3])
        };
        assert_eq!(p.number.key(), "+34600777666");
        assert!(parse_page(b"<html>").is_err());
    }
}
