//! From parsed records to call observations, with the desk's line configuration.
//!
//! Pure: which records are inbound to a support line (matched on the dialled number, the
//! dialplan context or the queue), which are a desk extension calling out (a possible callback),
//! which are internal; the line's language and default region; what counts as a human pickup
//! (`phone-feeds.md` §1.2: `ANSWERED` with an agent `dstchannel` and `lastapp` `Dial`/`Queue`,
//! never an IVR, announcement or voicemail answer).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use phonenumber::country::Id as Region;
use serde::{Deserialize, Serialize};
use slawatch_core::domain::Language;
use slawatch_core::phone_number::{CallerNumber, normalize};
use slawatch_core::tracker::observation::{
    Call, CallDirection, CallIgnore, CallOutcome, Observation,
};

use super::cdr_csv::{CdrLayout, CdrRow, Disposition, FileZone, uniqueid_epoch};
use super::queue_log::{QueueEvent, QueueLogEntry};

/// A `[sources.NAME]` of type `asterisk_cdr` or `asterisk_queue_log`.
#[derive(Debug, Clone)]
pub struct CallLogSettings {
    pub format: CallLogFormat,
    pub path: PathBuf,
    /// How often the file is checked for new bytes (a stat and a read: cheap).
    pub poll_interval: Duration,
    pub lines: CallLines,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CallLogFormat {
    Cdr {
        layout: CdrLayout,
        zone: FileZone,
    },
    QueueLog,
    /// A CSV with a column mapping (FreeSWITCH, 3CX…).
    Generic(super::generic_csv::GenericCsv),
}

/// What the desk's phone lines are.
#[derive(Debug, Clone, Default)]
pub struct CallLines {
    /// Support lines; empty = every inbound call is to support.
    pub lines: Vec<Line>,
    /// Region for national numbers on lines without their own.
    pub default_region: Option<Region>,
    /// Numbers with at most this many digits are the desk's extensions.
    pub extension_max_digits: usize,
    /// Exclude withheld callers (`withheld = "exclude"`) instead of tracking them apart.
    pub exclude_withheld: bool,
    /// A callback counts when it was answered and lasted at least this long (seconds).
    pub min_callback_seconds: i64,
    /// A technical prefix the desk dials before external numbers (e.g. `9`), stripped.
    pub outbound_prefix: Option<String>,
    /// A queue_log source is configured: a CDR `Queue()` row's `answer` is not a pickup (with
    /// an IVR in front it is the IVR's `Answer()`); the queue_log `CONNECT` is.
    pub queue_pickups_from_queue_log: bool,
}

#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    /// Dialled numbers (DIDs), dialplan contexts or queue names that mean this line.
    pub matches: Vec<String>,
    pub language: Option<Language>,
    pub region: Option<Region>,
}

impl CallLines {
    fn line(&self, keys: &[&str]) -> Option<&Line> {
        self.lines.iter().find(|l| {
            l.matches
                .iter()
                .any(|m| keys.iter().any(|k| !k.is_empty() && k == m))
        })
    }

    fn is_extension(&self, s: &str) -> bool {
        let s = s.trim();
        !s.is_empty()
            && s.len() <= self.extension_max_digits
            && s.bytes().all(|b| b.is_ascii_digit())
    }

    /// Classifies an inbound caller on the line matched by `keys`.
    fn inbound(
        &self,
        caller: &str,
        keys: &[&str],
    ) -> (Option<&Line>, CallerNumber, Option<CallIgnore>) {
        let line = self.line(keys);
        let region = line.and_then(|l| l.region).or(self.default_region);
        let number = normalize(caller, region);
        let ignore = if self.is_extension(caller) {
            Some(CallIgnore::Internal)
        } else if line.is_none() && !self.lines.is_empty() {
            Some(CallIgnore::NotSupportLine)
        } else if number.is_withheld() && self.exclude_withheld {
            Some(CallIgnore::Withheld)
        } else {
            None
        };
        (line, number, ignore)
    }
}

/// Apps whose `ANSWERED` is a machine, not a person.
const MACHINE_APPS: [&str; 8] = [
    "voicemail",
    "voicemailmain",
    "playback",
    "background",
    "read",
    "record",
    "saydigits",
    "answer",
];

/// The observation for one CDR row.
pub fn cdr_observation(
    source: &str,
    row: &CdrRow,
    lines: &CallLines,
    seen_at: DateTime<Utc>,
) -> Observation {
    let call_id = row
        .linkedid
        .clone()
        .or_else(|| row.uniqueid.clone())
        .unwrap_or_else(|| {
            format!(
                "{}{}@{}",
                super::join::NO_UNIQUEID_PREFIX,
                row.src,
                row.start.timestamp()
            )
        });
    let record_id = match (&row.uniqueid, row.sequence) {
        (Some(u), Some(s)) => format!("{u}#{s}"),
        _ => row.digest.clone(),
    };
    let arrival = [row.linkedid.as_deref(), row.uniqueid.as_deref()]
        .into_iter()
        .flatten()
        .filter_map(uniqueid_epoch)
        .chain([row.start])
        .min()
        .unwrap_or(row.start);
    let app = row.lastapp.trim().to_ascii_lowercase();
    let answered = row.disposition == Disposition::Answered && row.answer.is_some();
    let outbound =
        lines.is_extension(&row.src) && !lines.is_extension(&row.dst) && !row.dst.trim().is_empty();
    let queue = if app == "queue" {
        row.lastdata.split(',').next().unwrap_or("").trim()
    } else {
        ""
    };
    let (direction, number, line, ignore) = if outbound {
        let dialled = match &lines.outbound_prefix {
            Some(p) => row
                .dst
                .trim()
                .strip_prefix(p.as_str())
                .unwrap_or(row.dst.trim()),
            None => row.dst.trim(),
        };
        (
            CallDirection::Outbound,
            normalize(dialled, lines.default_region),
            None,
            None,
        )
    } else {
        let (line, number, ignore) =
            lines.inbound(&row.src, &[row.dst.trim(), row.dcontext.trim(), queue]);
        let ignore = ignore.or_else(|| {
            lines
                .is_extension(&row.dst)
                .then_some(CallIgnore::Internal)
                .filter(|_| lines.is_extension(&row.src))
        });
        (CallDirection::Inbound, number, line, ignore)
    };
    let human = answered
        && !row.dstchannel.trim().is_empty()
        && matches!(app.as_str(), "dial" | "queue")
        && (direction == CallDirection::Inbound || row.billsec >= lines.min_callback_seconds);
    // A queue call answered by a member is a pickup here unless queue_log's CONNECT gives it.
    let pickup = human && !(app == "queue" && lines.queue_pickups_from_queue_log);
    let outcome = match &row.disposition {
        Disposition::Answered if human => CallOutcome::Answered,
        Disposition::Answered if app.starts_with("voicemail") => CallOutcome::Voicemail,
        Disposition::Answered
            if MACHINE_APPS.contains(&app.as_str()) || row.dstchannel.is_empty() =>
        {
            CallOutcome::AnsweredByMachine
        }
        Disposition::Answered => CallOutcome::AnsweredByMachine,
        Disposition::NoAnswer => CallOutcome::NoAnswer,
        Disposition::Busy => CallOutcome::Busy,
        Disposition::Failed | Disposition::Congestion => CallOutcome::Failed,
        Disposition::Cancel => CallOutcome::Abandoned,
        Disposition::Unknown(_) => CallOutcome::Unknown,
    };
    let call = Call {
        source: source.to_string(),
        call_id,
        record_id,
        direction,
        number,
        name: row
            .caller_name()
            .filter(|_| direction == CallDirection::Inbound),
        line: line.map(|l| l.name.clone()),
        language: line.and_then(|l| l.language),
        started_at: arrival,
        queue_entered_at: None,
        // The member's pickup: `answer` is set once, so with an IVR in front it is the IVR's
        // answer; never earlier than the row's own start.
        answered_at: pickup
            .then(|| row.answer.map(|a| a.max(row.start)))
            .flatten(),
        ended_at: Some(row.end),
        agent: Some(if direction == CallDirection::Outbound {
            row.channel.clone()
        } else {
            row.dstchannel.clone()
        })
        .filter(|a| !a.is_empty()),
        outcome,
        seen_at,
        ignore,
    };
    if pickup {
        Observation::CallAnswered(call)
    } else {
        Observation::CallEnded(call)
    }
}

/// Queue entries still waiting for their outcome: a CONNECT or ABANDON line does not repeat the
/// caller's number, so it is remembered from ENTERQUEUE (and kept in the source's cursor).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueCalls {
    pub waiting: BTreeMap<String, Waiting>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Waiting {
    pub callerid: String,
    pub queue: String,
    pub entered_at: DateTime<Utc>,
}

/// How long a queue entry without an outcome is remembered (a lost EXIT line must not keep it
/// forever).
const WAITING_TTL_HOURS: i64 = 24;

impl QueueCalls {
    /// The observation for one queue_log line, if it concerns an inquiry.
    pub fn observe(
        &mut self,
        source: &str,
        e: &QueueLogEntry,
        lines: &CallLines,
        seen_at: DateTime<Utc>,
    ) -> Option<Observation> {
        let floor =
            e.at.checked_sub_signed(chrono::Duration::hours(WAITING_TTL_HOURS))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
        self.waiting.retain(|_, w| w.entered_at >= floor);
        if let QueueEvent::EnterQueue { callerid } = &e.event {
            self.waiting.insert(
                e.callid.clone(),
                Waiting {
                    callerid: callerid.clone(),
                    queue: e.queue.clone(),
                    entered_at: e.at,
                },
            );
        }
        let waiting = self.waiting.get(&e.callid).cloned();
        let (outcome, answered_at) = match &e.event {
            QueueEvent::EnterQueue { .. } => (CallOutcome::InProgress, None),
            QueueEvent::Connect { .. } => (CallOutcome::Answered, Some(e.at)),
            QueueEvent::Abandon => (CallOutcome::Abandoned, None),
            QueueEvent::Exit { .. } => (CallOutcome::NoAnswer, None),
            QueueEvent::Other(_) => return None,
        };
        if !matches!(e.event, QueueEvent::EnterQueue { .. }) {
            self.waiting.remove(&e.callid);
        }
        let callerid = waiting.as_ref().map(|w| w.callerid.as_str()).unwrap_or("");
        let entered_at = waiting.as_ref().map(|w| w.entered_at);
        let (line, number, ignore) = lines.inbound(callerid, &[e.queue.as_str()]);
        let started_at = uniqueid_epoch(&e.callid)
            .into_iter()
            .chain(entered_at)
            .chain([e.at])
            .min()
            .unwrap_or(e.at);
        let call = Call {
            source: source.to_string(),
            call_id: e.callid.clone(),
            record_id: format!("{}|{}|{:?}", e.at.timestamp(), e.callid, e.event),
            direction: CallDirection::Inbound,
            number,
            name: None,
            line: line.map(|l| l.name.clone()),
            language: line.and_then(|l| l.language),
            started_at,
            queue_entered_at: entered_at,
            answered_at,
            ended_at: (outcome != CallOutcome::InProgress).then_some(e.at),
            agent: Some(e.agent.clone()).filter(|a| !a.is_empty() && a != "NONE"),
            outcome,
            seen_at,
            ignore,
        };
        Some(match outcome {
            CallOutcome::InProgress => Observation::CallStarted(call),
            CallOutcome::Answered => Observation::CallAnswered(call),
            _ => Observation::CallEnded(call),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::calls::cdr_csv::parse;
    use crate::sources::calls::queue_log::parse_line;
    use slawatch_core::phone_number::region;

    fn lines() -> CallLines {
        CallLines {
            lines: vec![
                Line {
                    name: "soporte-es".into(),
                    matches: vec!["600".into(), "soporte-es".into()],
                    language: Some(Language::Es),
                    region: region("ES"),
                },
                Line {
                    name: "support-ar".into(),
                    matches: vec!["700".into(), "support-ar".into()],
                    language: Some(Language::Ar),
                    region: region("SA"),
                },
            ],
            default_region: region("ES"),
            extension_max_digits: 5,
            exclude_withheld: false,
            min_callback_seconds: 1,
            outbound_prefix: Some("9".into()),
            queue_pickups_from_queue_log: false,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn rows(text: &str) -> Vec<Observation> {
        parse(text.as_bytes(), 1, CdrLayout::Columns21, FileZone::Utc)
            .into_iter()
            .map(|(_, r)| cdr_observation("pbx", &r.unwrap(), &lines(), t("2026-01-05T10:00:00Z")))
            .collect()
    }

    fn call(o: &Observation) -> &Call {
        match o {
            Observation::CallStarted(c)
            | Observation::CallAnswered(c)
            | Observation::CallEnded(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_queue_call_in_hangup_order_member_attempts_then_pickup() {
        let obs = rows(concat!(
            r#""","0034600123456","600","from-trunk","""Ruiz, Ana"" <0034600123456>","PJSIP/trunk-1","PJSIP/2002-1","Queue","soporte-es,t","2026-01-05 09:15:50",,"2026-01-05 09:16:10",20,0,"NO ANSWER","DOCUMENTATION","1767604542.1187","","","1767604542.1187",1"#,
            "\n",
            r#""","0034600123456","600","from-trunk","""Ruiz, Ana"" <0034600123456>","PJSIP/trunk-1","PJSIP/2001-1","Queue","soporte-es,t","2026-01-05 09:15:50","2026-01-05 09:16:30","2026-01-05 09:20:00",250,210,"ANSWERED","DOCUMENTATION","1767604542.1187","","","1767604542.1187",2"#,
            "\n",
        ));
        assert!(matches!(obs[0], Observation::CallEnded(_)));
        let Observation::CallAnswered(c) = &obs[1] else {
            panic!()
        };
        assert_eq!(c.call_id, call(&obs[0]).call_id);
        assert_eq!(c.started_at, t("2026-01-05T09:15:42Z")); // the uniqueid epoch, before `start`
        assert_eq!(c.answered_at, Some(t("2026-01-05T09:16:30Z")));
        assert_eq!(c.number.key(), "+34600123456");
        assert_eq!(c.language, Some(Language::Es));
        assert_eq!(c.agent.as_deref(), Some("PJSIP/2001-1"));
        assert_eq!(c.name.as_deref(), Some("Ruiz, Ana"));
    }

    #[test]
    fn with_queue_log_a_queue_rows_answer_is_not_the_pickup() {
        // The dialplan answered at 09:00:01 (IVR), the member picked up much later: the CDR's
        // `answer` is the IVR's. Alone it is the best evidence there is; with queue_log its
        // CONNECT is the pickup, so the row only records the call.
        let row = concat!(
            r#""","0034600123456","600","from-trunk","""Ana"" <0034600123456>","PJSIP/trunk-1","PJSIP/2001-1","Queue","soporte-es,t","2026-01-05 09:00:00","2026-01-05 09:00:01","2026-01-05 09:20:00",1200,1199,"ANSWERED","DOCUMENTATION","1767603600.7","","","1767603600.7",1"#,
            "\n"
        );
        let parsed = parse(row.as_bytes(), 1, CdrLayout::Columns21, FileZone::Utc);
        let row = parsed[0].1.as_ref().unwrap();
        let seen = t("2026-01-05T10:00:00Z");
        let alone = cdr_observation("pbx", row, &lines(), seen);
        let Observation::CallAnswered(c) = &alone else {
            panic!("{alone:?}")
        };
        assert_eq!(c.answered_at, Some(t("2026-01-05T09:00:01Z")));
        let with_queue_log = CallLines {
            queue_pickups_from_queue_log: true,
            ..lines()
        };
        let joined = cdr_observation("pbx", row, &with_queue_log, seen);
        let Observation::CallEnded(c) = &joined else {
            panic!("{joined:?}")
        };
        assert_eq!(c.answered_at, None);
        assert_eq!(c.outcome, CallOutcome::Answered);
        assert_eq!(c.agent.as_deref(), Some("PJSIP/2001-1"));
    }

    #[test]
    fn ivr_and_voicemail_answers_are_not_pickups() {
        let obs = rows(concat!(
            r#""","0551234567","700","ivr-ar","""محمد"" <0551234567>","PJSIP/trunk-2","","BackGround","welcome","2026-01-05 09:00:00","2026-01-05 09:00:01","2026-01-05 09:00:30",30,29,"ANSWERED","DOCUMENTATION","1767603600.5","","","1767603600.5",1"#,
            "\n",
            r#""","0551234567","700","vm","""محمد"" <0551234567>","PJSIP/trunk-2","","VoiceMail","700@default","2026-01-05 09:00:30","2026-01-05 09:00:31","2026-01-05 09:01:30",60,59,"ANSWERED","DOCUMENTATION","1767603600.5","","","1767603600.5",2"#,
            "\n",
        ));
        assert_eq!(call(&obs[0]).outcome, CallOutcome::AnsweredByMachine);
        assert_eq!(call(&obs[1]).outcome, CallOutcome::Voicemail);
        assert!(obs.iter().all(|o| matches!(o, Observation::CallEnded(_))));
        // The Saudi line's region reads the national number.
        assert_eq!(call(&obs[0]).number.key(), "+966551234567");
        assert_eq!(call(&obs[0]).language, Some(Language::Ar));
    }

    #[test]
    fn callbacks_internal_calls_and_other_lines() {
        let obs = rows(concat!(
            r#""","2001","9600123456","from-internal","""Luis"" <2001>","PJSIP/2001-9","PJSIP/trunk-9","Dial","PJSIP/600123456@trunk","2026-01-05 09:30:00","2026-01-05 09:30:10","2026-01-05 09:32:00",120,110,"ANSWERED","DOCUMENTATION","1767605400.9","","","1767605400.9",1"#,
            "\n",
            r#""","2001","2002","from-internal","""Luis"" <2001>","PJSIP/2001-9","PJSIP/2002-9","Dial","PJSIP/2002","2026-01-05 09:30:00","2026-01-05 09:30:10","2026-01-05 09:32:00",120,110,"ANSWERED","DOCUMENTATION","1767605400.10","","","1767605400.10",1"#,
            "\n",
            r#""","+34911000000","999","sales","""X"" <+34911000000>","PJSIP/trunk-3","PJSIP/3001-1","Dial","PJSIP/3001","2026-01-05 09:30:00","2026-01-05 09:30:10","2026-01-05 09:32:00",120,110,"ANSWERED","DOCUMENTATION","1767605400.11","","","1767605400.11",1"#,
            "\n",
        ));
        let Observation::CallAnswered(cb) = &obs[0] else {
            panic!("{:?}", obs[0])
        };
        assert_eq!(cb.direction, CallDirection::Outbound);
        assert_eq!(cb.number.key(), "+34600123456");
        assert_eq!(call(&obs[1]).ignore, Some(CallIgnore::Internal));
        assert_eq!(call(&obs[2]).ignore, Some(CallIgnore::NotSupportLine));
    }

    #[test]
    fn queue_log_remembers_the_caller_until_the_outcome() {
        let mut q = QueueCalls::default();
        let l = lines();
        let seen = t("2026-01-05T10:00:00Z");
        let enter = parse_line(
            "1767604560|1767604542.1187|soporte-es|NONE|ENTERQUEUE||600123456|1",
            1,
        )
        .unwrap();
        let connect = parse_line(
            "1767604590|1767604542.1187|soporte-es|PJSIP/2001|CONNECT|30|1767604560.1190|4",
            2,
        )
        .unwrap();
        let member = parse_line(
            "1767604580|1767604542.1187|soporte-es|PJSIP/2002|RINGNOANSWER|15000",
            3,
        )
        .unwrap();
        let Some(Observation::CallStarted(c)) = q.observe("ql", &enter, &l, seen) else {
            panic!()
        };
        assert_eq!(c.started_at, t("2026-01-05T09:15:42Z"));
        assert_eq!(c.queue_entered_at, Some(t("2026-01-05T09:16:00Z")));
        assert!(q.observe("ql", &member, &l, seen).is_none());
        let Some(Observation::CallAnswered(c)) = q.observe("ql", &connect, &l, seen) else {
            panic!()
        };
        assert_eq!(c.answered_at, Some(t("2026-01-05T09:16:30Z")));
        assert_eq!(c.number.key(), "+34600123456");
        assert!(q.waiting.is_empty());
    }
}
