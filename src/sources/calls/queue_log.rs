//! Asterisk `queue_log`: a pure parser of its lines.
//!
//! `epoch|callid|queuename|agent|event|data1|data2|…`, epoch in UTC seconds, `callid` the caller
//! channel's uniqueid (the CDR join key), written live as the call moves through the queue: the
//! best source of queue entry and pickup time. Custom events (`QueueLog()`, AMI) exist, so an
//! unknown event name is kept as [`QueueEvent::Other`], never an error.

use chrono::{DateTime, Utc};

/// The events the phone rules use; the rest are kept by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueEvent {
    /// Caller joined; `callerid` may be empty or `anonymous`.
    EnterQueue { callerid: String },
    /// An agent answered after `holdtime` seconds.
    Connect { holdtime: Option<i64> },
    /// The caller hung up while waiting.
    Abandon,
    /// Timed out, queue empty, key pressed, withdrawn: left the queue unanswered.
    Exit { how: String },
    /// Member/system events and custom ones: no bearing on an inquiry.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueLogEntry {
    pub at: DateTime<Utc>,
    pub callid: String,
    pub queue: String,
    pub agent: String,
    pub event: QueueEvent,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueLogError {
    #[error("line {line}: fewer than 5 `|`-separated fields")]
    Fields { line: u64 },
    #[error("line {line}: {value:?} is not an epoch time")]
    Time { line: u64, value: String },
}

/// Names that are known and deliberately ignored (member and system state, ring attempts).
const KNOWN_OTHER: [&str; 22] = [
    "RINGNOANSWER",
    "RINGCANCELED",
    "COMPLETECALLER",
    "COMPLETEAGENT",
    "BLINDTRANSFER",
    "ATTENDEDTRANSFER",
    "AGENTDUMP",
    "SYSCOMPAT",
    "ADDMEMBER",
    "REMOVEMEMBER",
    "PAUSE",
    "UNPAUSE",
    "PAUSEALL",
    "UNPAUSEALL",
    "PENALTY",
    "RINGINUSE",
    "AGENTLOGIN",
    "AGENTLOGOFF",
    "QUEUESTART",
    "CONFIGRELOAD",
    "OUTCALL",
    "INFO",
];

impl QueueEvent {
    /// Whether the event name is one Asterisk writes (custom ones are not).
    pub fn is_known(&self) -> bool {
        match self {
            QueueEvent::Other(name) => KNOWN_OTHER.contains(&name.as_str()),
            _ => true,
        }
    }
}

/// Parses one line (without its newline); `line` is its number in the file, for errors.
pub fn parse_line(text: &str, line: u64) -> Result<QueueLogEntry, QueueLogError> {
    let fields: Vec<&str> = text.trim_end_matches('\r').split('|').collect();
    if fields.len() < 5 {
        return Err(QueueLogError::Fields { line });
    }
    // Realtime exports write `%F %T.%6q`; the file backend writes the epoch.
    let at = fields[0]
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .ok_or_else(|| QueueLogError::Time {
            line,
            value: fields[0].to_string(),
        })?;
    let data = |i: usize| fields.get(5 + i).map(|s| s.trim()).unwrap_or("");
    let name = fields[4].trim();
    let event = match name {
        "ENTERQUEUE" => QueueEvent::EnterQueue {
            callerid: data(1).to_string(),
        },
        "CONNECT" => QueueEvent::Connect {
            holdtime: data(0).parse().ok(),
        },
        "ABANDON" => QueueEvent::Abandon,
        "EXITWITHTIMEOUT" | "EXITEMPTY" | "EXITWITHKEY" | "WITHDRAW" => QueueEvent::Exit {
            how: name.to_string(),
        },
        other => QueueEvent::Other(other.to_string()),
    };
    Ok(QueueLogEntry {
        at,
        callid: fields[1].trim().to_string(),
        queue: fields[2].trim().to_string(),
        agent: fields[3].trim().to_string(),
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_of_a_queued_call() {
        let e = parse_line(
            "1767604560|1767604542.1187|soporte-es|NONE|ENTERQUEUE||34600123456|1",
            1,
        )
        .unwrap();
        assert_eq!(e.callid, "1767604542.1187");
        assert_eq!(
            e.event,
            QueueEvent::EnterQueue {
                callerid: "34600123456".into()
            }
        );
        let e = parse_line(
            "1767604590|1767604542.1187|soporte-es|PJSIP/2001|CONNECT|30|1767604560.1190|4",
            2,
        )
        .unwrap();
        assert_eq!(e.event, QueueEvent::Connect { holdtime: Some(30) });
        assert_eq!(e.agent, "PJSIP/2001");
        let e = parse_line(
            "1767604600|1767604542.1188|soporte-es|NONE|ABANDON|1|1|40",
            3,
        )
        .unwrap();
        assert_eq!(e.event, QueueEvent::Abandon);
        let e = parse_line("1767604600|NONE|NONE|NONE|QUEUESTART|", 4).unwrap();
        assert!(e.event.is_known());
        let e = parse_line("1767604600|1.2|q|NONE|MYCUSTOM|x", 5).unwrap();
        assert_eq!(e.event, QueueEvent::Other("MYCUSTOM".into()));
        assert!(!e.event.is_known());
    }

    #[test]
    fn bad_lines_name_their_line() {
        assert_eq!(
            parse_line("garbage", 9),
            Err(QueueLogError::Fields { line: 9 })
        );
        assert!(
            parse_line("soon|1.2|q|NONE|ABANDON", 3)
                .unwrap_err()
                .to_string()
                .starts_with("line 3:")
        );
    }
}
