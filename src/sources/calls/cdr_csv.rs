//! Asterisk `cdr_csv` (`Master.csv`): a pure parser of its rows.
//!
//! The file has **no header**; its layout (16, 17, 18 or 21 columns) follows `cdr.conf` and is
//! named in the configuration ([`CdrLayout`]). Strings are quoted with embedded quotes doubled and
//! nothing else escaped, so a quoted field may span lines: records are read with an RFC 4180
//! reader, and only up to the last newline outside quotes ([`complete_prefix`]) — a partial last
//! record is left for the next read. Values are byte-truncated by Asterisk, so they are decoded
//! lossily. Dates are `%Y-%m-%d %H:%M:%S` in UTC (`usegmtime=yes`) or a named local zone; an
//! unanswered call's `answer` is an empty unquoted field.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Which `cdr.conf` `[csv]` switches produced the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CdrLayout {
    /// Empty `[csv]`: 16 columns, no ids.
    Columns16,
    /// `loguniqueid=yes` only.
    Uniqueid17,
    /// `loguserfield=yes` only.
    Userfield17,
    /// The sample config (`loguniqueid` + `loguserfield`): 18 columns.
    Columns18,
    /// Plus `newcdrcolumns=yes`: peeraccount, linkedid, sequence.
    Columns21,
}

impl CdrLayout {
    pub fn parse(s: &str) -> Option<CdrLayout> {
        Some(match s {
            "16" => CdrLayout::Columns16,
            "17-uniqueid" => CdrLayout::Uniqueid17,
            "17-userfield" => CdrLayout::Userfield17,
            "18" => CdrLayout::Columns18,
            "21" => CdrLayout::Columns21,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CdrLayout::Columns16 => "16",
            CdrLayout::Uniqueid17 => "17-uniqueid",
            CdrLayout::Userfield17 => "17-userfield",
            CdrLayout::Columns18 => "18",
            CdrLayout::Columns21 => "21",
        }
    }

    pub fn columns(self) -> usize {
        match self {
            CdrLayout::Columns16 => 16,
            CdrLayout::Uniqueid17 | CdrLayout::Userfield17 => 17,
            CdrLayout::Columns18 => 18,
            CdrLayout::Columns21 => 21,
        }
    }
}

/// In what zone the file's dates are written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FileZone {
    Utc,
    Local(Tz),
}

/// `ast_cdr_disp2str()` values; anything else is kept as unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    NoAnswer,
    Failed,
    Busy,
    Answered,
    Congestion,
    Cancel,
    Unknown(String),
}

impl Disposition {
    pub fn parse(s: &str) -> Disposition {
        match s.trim() {
            "NO ANSWER" => Disposition::NoAnswer,
            "FAILED" => Disposition::Failed,
            "BUSY" => Disposition::Busy,
            "ANSWERED" => Disposition::Answered,
            "CONGESTION" => Disposition::Congestion,
            "CANCEL" => Disposition::Cancel,
            other => Disposition::Unknown(other.to_string()),
        }
    }
}

/// One CDR row, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct CdrRow {
    pub accountcode: String,
    pub src: String,
    pub dst: String,
    pub dcontext: String,
    pub clid: String,
    pub channel: String,
    pub dstchannel: String,
    pub lastapp: String,
    pub lastdata: String,
    pub start: DateTime<Utc>,
    pub answer: Option<DateTime<Utc>>,
    pub end: DateTime<Utc>,
    pub duration: i64,
    pub billsec: i64,
    pub disposition: Disposition,
    pub amaflags: String,
    pub uniqueid: Option<String>,
    pub userfield: Option<String>,
    pub linkedid: Option<String>,
    pub sequence: Option<i64>,
    /// sha256 prefix of the raw record: a stable id for rows without uniqueid/sequence.
    pub digest: String,
}

impl CdrRow {
    /// The caller name from `clid` (`"name" <number>`, name backslash-escaped), if any.
    pub fn caller_name(&self) -> Option<String> {
        let rest = self.clid.trim().strip_prefix('"')?;
        let mut name = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => name.extend(chars.next()),
                '"' => break,
                c => name.push(c),
            }
        }
        let name = name.trim().to_string();
        (!name.is_empty()).then_some(name)
    }
}

/// Why a row was skipped. The source reports it with the file name and counts it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CdrError {
    #[error("line {line}: {found} columns, the configured layout {layout} has {expected}")]
    Columns {
        line: u64,
        found: usize,
        expected: usize,
        layout: &'static str,
    },
    #[error("line {line}: column {column} {value:?} is not {what}")]
    Field {
        line: u64,
        column: &'static str,
        value: String,
        what: &'static str,
    },
    #[error("line {line}: not CSV: {message}")]
    Csv { line: u64, message: String },
}

/// The length of the longest prefix of `buf` made of complete records: up to and including the
/// last newline that is outside quotes. A record still being written is left out.
pub fn complete_prefix(buf: &[u8]) -> usize {
    let mut in_quotes = false;
    let mut cut = 0;
    for (i, b) in buf.iter().enumerate() {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' if !in_quotes => cut = i + 1,
            _ => {}
        }
    }
    cut
}

/// Parses every complete record of `buf` (see [`complete_prefix`]); `first_line` is the file
/// line number of `buf[0]`. Returns the rows or errors in file order, with the line each began on.
pub fn parse(
    buf: &[u8],
    first_line: u64,
    layout: CdrLayout,
    zone: FileZone,
) -> Vec<(u64, Result<CdrRow, CdrError>)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(buf);
    let mut out = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let start = reader.position().clone();
        let line = first_line + start.line().saturating_sub(1);
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let end = reader.position().byte() as usize;
                let raw = buf
                    .get(start.byte() as usize..end.min(buf.len()))
                    .unwrap_or(&[]);
                if record.len() == 1 && record.get(0).is_some_and(|f| f.trim_ascii().is_empty()) {
                    continue; // a blank line
                }
                out.push((line, row(&record, raw, line, layout, zone)));
            }
            Err(e) => {
                out.push((
                    line,
                    Err(CdrError::Csv {
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

fn row(
    r: &csv::ByteRecord,
    raw: &[u8],
    line: u64,
    layout: CdrLayout,
    zone: FileZone,
) -> Result<CdrRow, CdrError> {
    // Asterisk trims a trailing comma; tolerate one extra empty column anyway.
    let mut n = r.len();
    if n == layout.columns() + 1 && r.get(n - 1).is_some_and(<[u8]>::is_empty) {
        n -= 1;
    }
    if n != layout.columns() {
        return Err(CdrError::Columns {
            line,
            found: r.len(),
            expected: layout.columns(),
            layout: layout.as_str(),
        });
    }
    // Fields are read in place; only those kept as text are copied.
    let text = |i: usize| String::from_utf8_lossy(r.get(i).unwrap_or(&[]));
    let s = |i: usize| text(i).into_owned();
    let time = |i: usize, column: &'static str| -> Result<Option<DateTime<Utc>>, CdrError> {
        let v = text(i);
        if v.trim().is_empty() {
            return Ok(None);
        }
        parse_time(v.trim(), zone)
            .map(Some)
            .ok_or_else(|| CdrError::Field {
                line,
                column,
                value: v.to_string(),
                what: "a date like 2026-01-05 09:15:42",
            })
    };
    let int = |i: usize, column: &'static str| -> Result<i64, CdrError> {
        let v = text(i);
        v.trim().parse::<i64>().map_err(|_| CdrError::Field {
            line,
            column,
            value: v.to_string(),
            what: "a whole number",
        })
    };
    let required = |t: Option<DateTime<Utc>>, column: &'static str| {
        t.ok_or(CdrError::Field {
            line,
            column,
            value: String::new(),
            what: "a date (it is empty)",
        })
    };
    let (uniqueid, userfield, linkedid, sequence) = match layout {
        CdrLayout::Columns16 => (None, None, None, None),
        CdrLayout::Uniqueid17 => (Some(s(16)), None, None, None),
        CdrLayout::Userfield17 => (None, Some(s(16)), None, None),
        CdrLayout::Columns18 => (Some(s(16)), Some(s(17)), None, None),
        CdrLayout::Columns21 => (
            Some(s(16)),
            Some(s(17)),
            Some(s(19)),
            Some(int(20, "sequence")?),
        ),
    };
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(raw.trim_ascii_end()));
    Ok(CdrRow {
        accountcode: s(0),
        src: s(1),
        dst: s(2),
        dcontext: s(3),
        clid: s(4),
        channel: s(5),
        dstchannel: s(6),
        lastapp: s(7),
        lastdata: s(8),
        start: required(time(9, "start")?, "start")?,
        answer: time(10, "answer")?,
        end: required(time(11, "end")?, "end")?,
        duration: int(12, "duration")?,
        billsec: int(13, "billsec")?,
        disposition: Disposition::parse(&text(14)),
        amaflags: s(15),
        uniqueid: uniqueid.filter(|u| !u.is_empty()),
        userfield: userfield.filter(|u| !u.is_empty()),
        linkedid: linkedid.filter(|u| !u.is_empty()),
        sequence,
        digest: digest[..16].to_string(),
    })
}

/// `%Y-%m-%d %H:%M:%S` in `zone`. An ambiguous local time (the repeated hour when DST ends) is
/// taken as its earlier instant; the caller may correct it with the uniqueid epoch
/// ([`nearest_instant`]).
pub fn parse_time(s: &str, zone: FileZone) -> Option<DateTime<Utc>> {
    let naive = fixed_width_time(s)
        .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok())?;
    match zone {
        FileZone::Utc => Some(Utc.from_utc_datetime(&naive)),
        FileZone::Local(tz) => local(tz, naive, None),
    }
}

/// `YYYY-MM-DD HH:MM:SS` exactly as Asterisk writes it (zero-padded), read without chrono's
/// format interpreter (three per CDR row); anything else is left to `parse_from_str`.
fn fixed_width_time(s: &str) -> Option<NaiveDateTime> {
    let b: &[u8; 19] = s.as_bytes().try_into().ok()?;
    if [b[4], b[7], b[10], b[13], b[16]] != [b'-', b'-', b' ', b':', b':'] {
        return None;
    }
    let number = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u32, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let date = NaiveDate::from_ymd_opt(number(0, 4)? as i32, number(5, 7)?, number(8, 10)?)?;
    date.and_hms_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?)
}

/// A local time in `tz`; when ambiguous, the candidate nearest `hint` (else the earlier one);
/// when skipped by a DST jump, read with the offset in force just before it.
pub fn local(tz: Tz, naive: NaiveDateTime, hint: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
            Some(match hint {
                Some(h) if (b - h).abs() < (a - h).abs() => b,
                _ => a,
            })
        }
        LocalResult::None => {
            let before = naive.checked_sub_signed(chrono::Duration::hours(3))?;
            let offset = *tz.from_local_datetime(&before).earliest()?.offset();
            use chrono::Offset;
            let secs = offset.fix().local_minus_utc() as i64;
            let utc = naive.checked_sub_signed(chrono::Duration::seconds(secs))?;
            Some(Utc.from_utc_datetime(&utc))
        }
    }
}

/// Re-reads a local `s` choosing, in the repeated hour, the instant nearest `hint`.
pub fn nearest_instant(s: &str, zone: FileZone, hint: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok()?;
    match zone {
        FileZone::Utc => Some(Utc.from_utc_datetime(&naive)),
        FileZone::Local(tz) => local(tz, naive, Some(hint)),
    }
}

/// The arrival instant in an Asterisk uniqueid/linkedid (`[system-]epoch.counter`).
pub fn uniqueid_epoch(id: &str) -> Option<DateTime<Utc>> {
    let tail = id.rsplit('-').next().unwrap_or(id);
    let secs = tail.split('.').next()?;
    if secs.is_empty() || secs.len() > 12 || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    DateTime::from_timestamp(secs.parse().ok()?, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    const ROW18: &str = r#""","34600123456","600","from-trunk","""Ruiz, Ana"" <34600123456>","PJSIP/trunk-es-0000002f","PJSIP/2001-00000030","Queue","soporte-es,t,,,300","2026-01-05 09:15:42","2026-01-05 09:16:30","2026-01-05 09:20:00",258,210,"ANSWERED","DOCUMENTATION","1767604542.1187","""#;

    #[test]
    fn an_18_column_row_with_a_quoted_comma_in_the_name() {
        let buf = format!("{ROW18}\n");
        let rows = parse(buf.as_bytes(), 1, CdrLayout::Columns18, FileZone::Utc);
        let (line, row) = &rows[0];
        let row = row.as_ref().unwrap();
        assert_eq!(*line, 1);
        assert_eq!(row.src, "34600123456");
        assert_eq!(row.caller_name().as_deref(), Some("Ruiz, Ana"));
        assert_eq!(row.lastdata, "soporte-es,t,,,300");
        assert_eq!(row.start, t("2026-01-05T09:15:42Z"));
        assert_eq!(row.answer, Some(t("2026-01-05T09:16:30Z")));
        assert_eq!(row.billsec, 210);
        assert_eq!(row.disposition, Disposition::Answered);
        assert_eq!(row.uniqueid.as_deref(), Some("1767604542.1187"));
        assert_eq!(row.userfield, None);
    }

    #[test]
    fn doubled_and_backslashed_quotes_empty_answer_and_unknown_disposition() {
        let buf = concat!(
            r#""","+34600123456","600","from-trunk","""Ana \""La Jefa\"" Ruiz"" <+34600123456>","PJSIP/trunk-1","","VoiceMail","600@default","2026-01-05 23:59:50",,"2026-01-06 00:01:10",80,0,"NO ANSWER","DOCUMENTATION","1767657590.7","""#,
            "\n",
            r#""","anonymous","600","from-trunk",""""" <anonymous>","PJSIP/trunk-2","","Hangup","","2026-01-06 00:02:00",,"2026-01-06 00:02:05",5,0,"WEIRD","DOCUMENTATION","1767657720.9","""#,
            "\n"
        );
        let rows = parse(buf.as_bytes(), 10, CdrLayout::Columns18, FileZone::Utc);
        let a = rows[0].1.as_ref().unwrap();
        assert_eq!(a.caller_name().as_deref(), Some(r#"Ana "La Jefa" Ruiz"#));
        assert_eq!(a.answer, None);
        // Across midnight: end is the next day.
        assert_eq!(a.end, t("2026-01-06T00:01:10Z"));
        let b = rows[1].1.as_ref().unwrap();
        assert_eq!(rows[1].0, 11);
        assert_eq!(b.caller_name(), None);
        assert_eq!(b.disposition, Disposition::Unknown("WEIRD".into()));
    }

    #[test]
    fn a_partial_last_record_waits_and_a_quoted_newline_is_not_a_row_end() {
        let with_newline = "\"\",\"1\",\"2\",\"c\",\"\"\"Multi\nline\"\" <1>\",";
        assert_eq!(complete_prefix(with_newline.as_bytes()), 0);
        let buf = format!("{ROW18}\n{}", &ROW18[..40]);
        let cut = complete_prefix(buf.as_bytes());
        assert_eq!(cut, ROW18.len() + 1);
        assert_eq!(
            parse(
                &buf.as_bytes()[..cut],
                1,
                CdrLayout::Columns18,
                FileZone::Utc
            )
            .len(),
            1
        );
    }

    #[test]
    fn malformed_rows_name_their_line_and_do_not_stop_the_rest() {
        let buf = format!("\"only\",\"three\",\"cols\"\n{ROW18}\n");
        let rows = parse(buf.as_bytes(), 41, CdrLayout::Columns18, FileZone::Utc);
        assert_eq!(rows.len(), 2);
        let err = rows[0].1.as_ref().unwrap_err();
        assert!(err.to_string().starts_with("line 41: 3 columns"), "{err}");
        assert!(rows[1].1.is_ok());
        let bad_date = ROW18.replace("2026-01-05 09:15:42", "yesterday");
        let rows = parse(
            format!("{bad_date}\n").as_bytes(),
            7,
            CdrLayout::Columns18,
            FileZone::Utc,
        );
        assert!(
            rows[0]
                .1
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("line 7: column start")
        );
    }

    #[test]
    fn utf8_cut_mid_character_is_decoded_lossily() {
        // "محمد" cut after the first byte of its last letter, as Asterisk truncates bytewise.
        let mut name = "محمد".as_bytes().to_vec();
        name.pop();
        let mut buf = b"\"\",\"0551234567\",\"700\",\"ar\",\"\"\"".to_vec();
        buf.extend_from_slice(&name);
        buf.extend_from_slice(
            b"\"\" <0551234567>\",\"PJSIP/t-1\",\"\",\"Queue\",\"q\",\"2026-01-05 09:00:00\",,\"2026-01-05 09:01:00\",60,0,\"NO ANSWER\",\"DOCUMENTATION\"\n",
        );
        let rows = parse(&buf, 1, CdrLayout::Columns16, FileZone::Utc);
        let row = rows[0].1.as_ref().unwrap();
        assert!(row.clid.contains('\u{FFFD}'), "{}", row.clid);
    }

    #[test]
    fn layouts_16_17_and_21() {
        let row16 = ROW18.rsplitn(3, ',').nth(2).unwrap().to_string();
        let rows = parse(
            format!("{row16}\n").as_bytes(),
            1,
            CdrLayout::Columns16,
            FileZone::Utc,
        );
        assert!(rows[0].1.as_ref().unwrap().uniqueid.is_none());
        let row17 = format!("{row16},\"1767604542.1187\"\n");
        let r = parse(row17.as_bytes(), 1, CdrLayout::Uniqueid17, FileZone::Utc);
        assert_eq!(
            r[0].1.as_ref().unwrap().uniqueid.as_deref(),
            Some("1767604542.1187")
        );
        let r = parse(row17.as_bytes(), 1, CdrLayout::Userfield17, FileZone::Utc);
        assert_eq!(
            r[0].1.as_ref().unwrap().userfield.as_deref(),
            Some("1767604542.1187")
        );
        let row21 = format!("{ROW18},\"\",\"1767604540.1180\",3\n");
        let r = parse(row21.as_bytes(), 1, CdrLayout::Columns21, FileZone::Utc);
        let r = r[0].1.as_ref().unwrap();
        assert_eq!(r.linkedid.as_deref(), Some("1767604540.1180"));
        assert_eq!(r.sequence, Some(3));
    }

    #[test]
    fn local_time_files_around_the_dst_change() {
        let madrid = FileZone::Local(chrono_tz::Europe::Madrid);
        // 25 Oct 2026: 03:00 CEST → 02:00 CET; 02:30 happens twice.
        assert_eq!(
            parse_time("2026-10-25 02:30:00", madrid),
            Some(t("2026-10-25T00:30:00Z"))
        );
        let second = t("2026-10-25T01:30:00Z");
        assert_eq!(
            nearest_instant("2026-10-25 02:30:00", madrid, second),
            Some(second)
        );
        // 29 Mar 2026: 02:30 does not exist (02:00 CET → 03:00 CEST).
        assert_eq!(
            parse_time("2026-03-29 02:30:00", madrid),
            Some(t("2026-03-29T01:30:00Z"))
        );
        assert_eq!(
            parse_time("2026-01-05 10:15:42", madrid),
            Some(t("2026-01-05T09:15:42Z"))
        );
        assert_eq!(
            uniqueid_epoch("pbx01-1767604542.1187"),
            Some(t("2026-01-05T09:15:42Z"))
        );
    }

    #[test]
    fn the_fixed_width_reading_agrees_with_chronos() {
        for text in [
            "2026-01-05 09:15:42",
            "1999-12-31 23:59:59",
            "2026-02-29 10:00:00",
            "2028-02-29 10:00:00",
            "2026-13-01 10:00:00",
            "2026-04-31 10:00:00",
            "2026-01-05 24:00:00",
            "2026-01-05 23:60:00",
            "2026-06-30 23:59:60",
            "2026-1-05 09:15:42",
            "2026-01-05T09:15:42",
            "2026-01-05 09:15:4x",
            "+026-01-05 09:15:42",
            "2026-01-05 09:15:42 ",
        ] {
            let chrono = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok();
            let read = fixed_width_time(text)
                .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok());
            assert_eq!(read, chrono, "{text}");
        }
        assert!(
            fixed_width_time("2026-01-05 09:15:42").is_some(),
            "the fast path is taken"
        );
    }
}
