//! Reading messages: `UID SEARCH`, chunked `UID FETCH` of headers plus a body prefix, and the
//! small pure helpers around them (UID sets, INTERNALDATE, search dates).
//!
//! The FETCH loop reads raw responses instead of async-imap's `Fetch`, because `Fetch` parses
//! INTERNALDATE strictly and hides the raw value; the received time of every inquiry comes from
//! it, so it is parsed here, leniently (RFC 3501 allows a space-padded day).

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};

use async_imap::imap_proto::{
    AttributeValue, MailboxDatum, MessageSection, Response, SectionPath, Status,
};

use super::connection::ImapSession;
use super::error::Error;

/// UIDs fetched per `UID FETCH` and committed per batch. 500 headers plus prefixes is a few MB
/// at most, keeps one batch's ledger transaction short, and bounds what a crash re-reads.
pub const FETCH_CHUNK: usize = 500;

/// One message as fetched: never the whole message, only headers and a text prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub uid: u32,
    /// INTERNALDATE as sent by the server, parsed later.
    pub internal_date: Option<String>,
    /// RFC822.SIZE: the full size, for the record (we never download it).
    pub size: Option<u32>,
    /// Header block followed by the body prefix.
    pub raw: Vec<u8>,
}

/// What a FETCH round also told us about the mailbox.
#[derive(Debug, Default)]
pub struct Unsolicited {
    /// `* n EXISTS` / `* n RECENT` arrived: new mail may be waiting.
    pub new_mail: bool,
}

/// The FETCH items: UID, delivery time, size, headers and the first `prefix` bytes of the text;
/// `PEEK` so that monitoring never sets `\Seen`.
pub fn fetch_items(prefix: u32) -> String {
    format!("(UID INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.{prefix}>)")
}

/// `UID FETCH set items`, collecting every message whose UID is in `wanted` (the server may
/// answer extra ones, e.g. the highest UID for `n:*`).
pub async fn uid_fetch(
    session: &mut ImapSession,
    set: &str,
    items: &str,
    timeout: std::time::Duration,
    wanted: impl Fn(u32) -> bool,
    unsolicited: &mut Unsolicited,
) -> Result<Vec<Fetched>, Error> {
    const WHAT: &str = "fetching messages";
    let tag = session
        .run_command(format!("UID FETCH {set} {items}"))
        .await
        .map_err(|e| Error::from_imap(WHAT, timeout, e))?;
    let mut out = Vec::new();
    loop {
        let resp = session
            .read_response()
            .await
            .map_err(|e| Error::from_io(WHAT, timeout, e))?
            .ok_or_else(|| Error::Io("connection closed during FETCH".into()))?;
        match resp.parsed() {
            Response::Fetch(_, attrs) => {
                if let Some(f) = fetched(attrs)
                    && wanted(f.uid)
                {
                    out.push(f);
                }
            }
            Response::Done {
                tag: t,
                status,
                outcome,
            } if *t == tag => {
                return match status {
                    Status::Ok => Ok(out),
                    _ => Err(Error::Protocol(format!(
                        "UID FETCH refused: {}",
                        outcome.information.as_deref().unwrap_or("")
                    ))),
                };
            }
            other => note_unsolicited(other, unsolicited)?,
        }
    }
}

/// Records what an untagged response says; `* BYE` ends the session.
pub fn note_unsolicited(resp: &Response<'_>, u: &mut Unsolicited) -> Result<(), Error> {
    match resp {
        Response::Data {
            status: Status::Bye,
            outcome,
        } => Err(Error::Io(format!(
            "server said BYE: {}",
            outcome.information.as_deref().unwrap_or("")
        ))),
        Response::MailboxData(MailboxDatum::Exists(_) | MailboxDatum::Recent(_)) => {
            u.new_mail = true;
            Ok(())
        }
        _ => Ok(()),
    }
}

fn fetched(attrs: &[AttributeValue<'_>]) -> Option<Fetched> {
    let mut uid = None;
    let mut internal_date = None;
    let mut size = None;
    let mut header: Option<&[u8]> = None;
    let mut text: &[u8] = &[];
    for a in attrs {
        match a {
            AttributeValue::Uid(u) => uid = Some(*u),
            AttributeValue::InternalDate(d) => internal_date = Some(d.to_string()),
            AttributeValue::Rfc822Size(s) => size = Some(*s),
            AttributeValue::BodySection {
                section: Some(SectionPath::Full(MessageSection::Header)),
                data: Some(d),
                ..
            }
            | AttributeValue::Rfc822Header(Some(d)) => header = Some(d.as_ref()),
            AttributeValue::BodySection {
                section: Some(SectionPath::Full(MessageSection::Text)),
                data: Some(d),
                ..
            }
            | AttributeValue::Rfc822Text(Some(d)) => text = d.as_ref(),
            _ => {}
        }
    }
    // A FETCH response without the header section is not our message data: e.g. an unsolicited
    // `* n FETCH (UID x FLAGS (…))` when another client changes flags during our fetch.
    let header = header?;
    let mut raw = Vec::with_capacity(header.len() + text.len());
    raw.extend_from_slice(header);
    raw.extend_from_slice(text);
    Some(Fetched {
        uid: uid?,
        internal_date,
        size,
        raw,
    })
}

/// `UID SEARCH query`, sorted ascending.
pub async fn uid_search(
    session: &mut ImapSession,
    query: &str,
    timeout: std::time::Duration,
) -> Result<Vec<u32>, Error> {
    let found = session
        .uid_search(query)
        .await
        .map_err(|e| Error::from_imap("searching", timeout, e))?;
    let mut uids: Vec<u32> = found.into_iter().collect();
    uids.sort_unstable();
    Ok(uids)
}

/// Compresses sorted UIDs into an IMAP sequence set: `1:3,7,9:10`.
pub fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && uids[i + 1] == end.saturating_add(1) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// The `SINCE` search key for an instant: its UTC date (`SINCE` ignores time and zone, so it
/// selects a little more, never less).
pub fn search_since(since: Option<DateTime<Utc>>) -> String {
    match since {
        Some(t) => format!("SINCE {}", t.format("%-d-%b-%Y")),
        None => "ALL".to_string(),
    }
}

/// Parses an INTERNALDATE (`"02-Jan-2024 03:04:05 +0000"`, day possibly space-padded or one
/// digit) to UTC.
pub fn parse_internal_date(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    let (date, rest) = s.split_once(' ')?;
    let mut parts = date.split('-');
    let day: u32 = parts.next()?.trim().parse().ok()?;
    let month = match parts.next()?.to_ascii_lowercase().as_str() {
        "jan" => 1,
        "feb" => 2,
        "mar" => 3,
        "apr" => 4,
        "may" => 5,
        "jun" => 6,
        "jul" => 7,
        "aug" => 8,
        "sep" => 9,
        "oct" => 10,
        "nov" => 11,
        "dec" => 12,
        _ => return None,
    };
    let year: i32 = parts.next()?.trim().parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    let (time, zone) = rest.trim().split_once(' ')?;
    let naive = NaiveDate::from_ymd_opt(year, month, day)?
        .and_time(chrono::NaiveTime::parse_from_str(time, "%H:%M:%S").ok()?);
    let zone = zone.trim();
    if zone.len() != 5 || !zone.is_ascii() {
        return None;
    }
    let sign = match &zone[..1] {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let hh: i32 = zone[1..3].parse().ok()?;
    let mm: i32 = zone[3..5].parse().ok()?;
    let offset = FixedOffset::east_opt(sign * (hh * 3600 + mm * 60))?;
    Some(
        naive
            .and_local_timezone(offset)
            .single()?
            .with_timezone(&Utc),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn internal_date_zero_and_space_padded() {
        let want = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(
            parse_internal_date("02-Jan-2024 03:04:05 +0000"),
            Some(want)
        );
        assert_eq!(
            parse_internal_date(" 2-Jan-2024 03:04:05 +0000"),
            Some(want)
        );
        assert_eq!(parse_internal_date("2-jan-2024 04:04:05 +0100"), Some(want));
        assert_eq!(
            parse_internal_date("01-Jan-2024 21:34:05 -0530"),
            Some(want)
        );
    }

    #[test]
    fn internal_date_garbage_is_none() {
        for s in [
            "",
            "x",
            "32-Jan-2024 00:00:00 +0000",
            "02-Foo-2024 00:00:00 +0000",
            "02-Jan-2024 25:00:00 +0000",
            "02-Jan-2024 00:00:00 0000",
            "02-Jan-2024 00:00:00 +00é0",
            "02-Jan-2024 00:00:00 +0é0",
        ] {
            assert_eq!(parse_internal_date(s), None, "{s:?}");
        }
    }

    #[test]
    fn a_flags_only_fetch_response_is_not_a_message() {
        let flags_only = [AttributeValue::Uid(7), AttributeValue::Flags(vec![])];
        assert!(fetched(&flags_only).is_none());
        let header = std::borrow::Cow::Borrowed(&b"Subject: x\r\n\r\n"[..]);
        let message = [
            AttributeValue::Uid(7),
            AttributeValue::BodySection {
                section: Some(SectionPath::Full(MessageSection::Header)),
                index: None,
                data: Some(header),
            },
        ];
        let got = fetched(&message).expect("a message");
        assert_eq!(
            (got.uid, got.raw.as_slice()),
            (7, &b"Subject: x\r\n\r\n"[..])
        );
    }

    #[test]
    fn uid_sets_compress_runs() {
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[5]), "5");
        assert_eq!(uid_set(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(
            uid_set(&[u32::MAX - 1, u32::MAX]),
            format!("{}:{}", u32::MAX - 1, u32::MAX)
        );
    }

    #[test]
    fn since_key() {
        let t = Utc.with_ymd_and_hms(2024, 3, 7, 23, 0, 0).unwrap();
        assert_eq!(search_since(Some(t)), "SINCE 7-Mar-2024");
        assert_eq!(search_since(None), "ALL");
    }
}
