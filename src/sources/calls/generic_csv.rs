//! A generic call-log CSV with a column mapping from the configuration: FreeSWITCH
//! `mod_cdr_csv` templates, 3CX CDR exports and similar.
//!
//! The file's columns are named in order (`fields`, the template's order; a header row equal to
//! them is skipped), and the mapping says which of them hold the call id, the caller, the dialled
//! number, start, answer and end. Times are epochs (FreeSWITCH `*_epoch`, `0` = unset, fractions
//! allowed) or `%Y-%m-%d %H:%M:%S` in the configured zone; empty = unset. A call is answered when
//! it has an answer time; direction and lines follow the same rules as Asterisk CDRs.

use chrono::{DateTime, Utc};
use slawatch_core::phone_number::normalize;
use slawatch_core::tracker::observation::{
    Call, CallDirection, CallIgnore, CallOutcome, Observation,
};

use super::cdr_csv::{FileZone, parse_time};
use super::lines::CallLines;

/// The column mapping, resolved to indices.
#[derive(Debug, Clone, PartialEq)]
pub struct GenericCsv {
    pub fields: Vec<String>,
    pub call_id: usize,
    pub number: usize,
    pub dialled: usize,
    pub start: usize,
    pub answer: Option<usize>,
    pub end: Option<usize>,
    pub agent: Option<usize>,
    pub name: Option<usize>,
    pub zone: FileZone,
}

/// The mapping keys, in the order they are documented.
pub const MAPPED: [&str; 8] = [
    "call_id", "number", "dialled", "start", "answer", "end", "agent", "name",
];

#[derive(Debug, Clone, PartialEq)]
pub struct GenericRow {
    pub call_id: String,
    pub number: String,
    pub dialled: String,
    pub start: DateTime<Utc>,
    pub answer: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub agent: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenericError {
    #[error("line {line}: {found} columns, the configured fields are {expected}")]
    Columns {
        line: u64,
        found: usize,
        expected: usize,
    },
    #[error("line {line}: {column} {value:?} is not a time")]
    Time {
        line: u64,
        column: &'static str,
        value: String,
    },
    #[error("line {line}: {column} is empty")]
    Empty { line: u64, column: &'static str },
    #[error("line {line}: not CSV: {message}")]
    Csv { line: u64, message: String },
}

fn time(v: &str, zone: FileZone) -> Result<Option<DateTime<Utc>>, ()> {
    let v = v.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = v.parse().map_err(|_| ())?;
        if secs <= 0.0 {
            return Ok(None); // FreeSWITCH writes 0 for "never answered"
        }
        // Microsecond epochs (`*_uepoch`) are 16 digits.
        let secs = if secs > 1e14 { secs / 1e6 } else { secs };
        return DateTime::from_timestamp(secs.trunc() as i64, 0)
            .map(Some)
            .ok_or(());
    }
    parse_time(v, zone).map(Some).ok_or(())
}

/// Parses the complete records of `buf` (cut with [`super::cdr_csv::complete_prefix`]).
pub fn parse(
    buf: &[u8],
    first_line: u64,
    map: &GenericCsv,
) -> Vec<(u64, Result<GenericRow, GenericError>)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(buf);
    let mut out = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let line = first_line + reader.position().line().saturating_sub(1);
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let fields: Vec<String> = record
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect();
                if fields.len() == 1 && fields[0].trim().is_empty() {
                    continue;
                }
                if fields == map.fields {
                    continue; // the header row
                }
                out.push((line, row(&fields, line, map)));
            }
            Err(e) => {
                out.push((
                    line,
                    Err(GenericError::Csv {
                        line,
                        message: e.to_string(),
                    }),
                ));
                break;
            }
        }
    }
    out
}

fn row(f: &[String], line: u64, m: &GenericCsv) -> Result<GenericRow, GenericError> {
    if f.len() != m.fields.len() {
        return Err(GenericError::Columns {
            line,
            found: f.len(),
            expected: m.fields.len(),
        });
    }
    let get = |i: usize| f.get(i).map(|s| s.trim().to_string()).unwrap_or_default();
    let opt = |i: Option<usize>| i.map(get).filter(|s| !s.is_empty());
    let at = |i: Option<usize>, column: &'static str| match i {
        None => Ok(None),
        Some(i) => time(&get(i), m.zone).map_err(|_| GenericError::Time {
            line,
            column,
            value: get(i),
        }),
    };
    let call_id = get(m.call_id);
    if call_id.is_empty() {
        return Err(GenericError::Empty {
            line,
            column: "call_id",
        });
    }
    Ok(GenericRow {
        call_id,
        number: get(m.number),
        dialled: get(m.dialled),
        start: at(Some(m.start), "start")?.ok_or(GenericError::Empty {
            line,
            column: "start",
        })?,
        answer: at(m.answer, "answer")?,
        end: at(m.end, "end")?,
        agent: opt(m.agent),
        name: opt(m.name),
    })
}

/// The observation for one row.
pub fn observation(
    source: &str,
    r: &GenericRow,
    lines: &CallLines,
    seen_at: DateTime<Utc>,
) -> Observation {
    let is_ext = |s: &str| {
        !s.is_empty()
            && s.len() <= lines.extension_max_digits
            && s.bytes().all(|b| b.is_ascii_digit())
    };
    let outbound = is_ext(&r.number) && !is_ext(&r.dialled) && !r.dialled.is_empty();
    let line = lines.lines.iter().find(|l| l.matches.contains(&r.dialled));
    let (direction, number, ignore) = if outbound {
        (
            CallDirection::Outbound,
            normalize(&r.dialled, lines.default_region),
            None,
        )
    } else {
        let number = normalize(
            &r.number,
            line.and_then(|l| l.region).or(lines.default_region),
        );
        let ignore = if is_ext(&r.number) {
            Some(CallIgnore::Internal)
        } else if line.is_none() && !lines.lines.is_empty() {
            Some(CallIgnore::NotSupportLine)
        } else if number.is_withheld() && lines.exclude_withheld {
            Some(CallIgnore::Withheld)
        } else {
            None
        };
        (CallDirection::Inbound, number, ignore)
    };
    let answered = r.answer.map(|a| a.max(r.start));
    let call = Call {
        source: source.to_string(),
        call_id: r.call_id.clone(),
        record_id: format!("{}|{}", r.call_id, r.start.timestamp()),
        direction,
        number,
        name: r.name.clone().filter(|_| !outbound),
        line: line.map(|l| l.name.clone()),
        language: line.and_then(|l| l.language),
        started_at: r.start,
        queue_entered_at: None,
        answered_at: answered,
        ended_at: r.end,
        agent: r.agent.clone(),
        outcome: if answered.is_some() {
            CallOutcome::Answered
        } else {
            CallOutcome::NoAnswer
        },
        seen_at,
        ignore,
    };
    if answered.is_some() {
        Observation::CallAnswered(call)
    } else {
        Observation::CallEnded(call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::calls::lines::Line;
    use slawatch_core::domain::Language;
    use slawatch_core::phone_number::region;

    /// FreeSWITCH's compiled-in `default` template.
    fn freeswitch() -> GenericCsv {
        let fields: Vec<String> = "caller_id_name,caller_id_number,destination_number,context,start_epoch,answer_epoch,end_epoch,duration,billsec,hangup_cause,uuid,bleg_uuid,accountcode"
            .split(',')
            .map(String::from)
            .collect();
        let at = |n: &str| fields.iter().position(|f| f == n).unwrap();
        GenericCsv {
            call_id: at("uuid"),
            number: at("caller_id_number"),
            dialled: at("destination_number"),
            start: at("start_epoch"),
            answer: Some(at("answer_epoch")),
            end: Some(at("end_epoch")),
            agent: Some(at("bleg_uuid")),
            name: Some(at("caller_id_name")),
            zone: FileZone::Utc,
            fields,
        }
    }

    #[test]
    fn freeswitch_rows_answered_and_missed() {
        let buf = concat!(
            "\"Ruiz, Ana\",\"+34600123456\",\"600\",\"default\",\"1767604542\",\"1767604590\",\"1767604800\",\"258\",\"210\",\"NORMAL_CLEARING\",\"a1b2\",\"c3d4\",\"\"\n",
            "\"\",\"0551234567\",\"700\",\"default\",\"1767605000\",\"0\",\"1767605070\",\"70\",\"0\",\"ORIGINATOR_CANCEL\",\"e5f6\",\"\",\"\"\n",
            "\"x\",\"y\"\n",
        );
        let map = freeswitch();
        let rows = parse(buf.as_bytes(), 1, &map);
        assert_eq!(rows.len(), 3);
        let lines = CallLines {
            lines: vec![
                Line {
                    name: "es".into(),
                    matches: vec!["600".into()],
                    language: Some(Language::Es),
                    region: region("ES"),
                },
                Line {
                    name: "ar".into(),
                    matches: vec!["700".into()],
                    language: Some(Language::Ar),
                    region: region("AE"),
                },
            ],
            default_region: region("ES"),
            extension_max_digits: 5,
            ..CallLines::default()
        };
        let now = Utc::now();
        let a = observation("fs", rows[0].1.as_ref().unwrap(), &lines, now);
        let Observation::CallAnswered(a) = a else {
            panic!("{a:?}")
        };
        assert_eq!(a.name.as_deref(), Some("Ruiz, Ana"));
        assert_eq!(a.answered_at.unwrap().timestamp(), 1767604590);
        let b = observation("fs", rows[1].1.as_ref().unwrap(), &lines, now);
        let Observation::CallEnded(b) = b else {
            panic!("{b:?}")
        };
        assert_eq!(b.number.key(), "+971551234567");
        assert!(
            rows[2]
                .1
                .as_ref()
                .unwrap_err()
                .to_string()
                .starts_with("line 3: 2 columns"),
            "{:?}",
            rows[2]
        );
    }
}
