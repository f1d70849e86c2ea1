//! The CSV report: one row per inquiry received in the period, oldest first.
//!
//! RFC 4180: comma separated, CRLF line ends, fields quoted when they hold a comma, a quote,
//! CR or LF (quotes doubled). Empty field = no value. Instants are RFC 3339 UTC; `received_local`
//! is in the report's time zone. The columns are [`COLUMNS`], documented in
//! `docs/report-csv.md`; new columns are only ever appended. A field starting with `=`, `+`,
//! `-` or `@` (not a number) gets a leading `'` so spreadsheets do not run it as a formula.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{InquiryRow, ReportData};

/// The header row, in order.
pub const COLUMNS: [&str; 27] = [
    "id",
    "channel",
    "source",
    "language",
    "kind",
    "customer",
    "received_at",
    "received_local",
    "first_seen_at",
    "detection_seconds",
    "deadline_at",
    "policy",
    "state",
    "sla",
    "responded_at",
    "response_seconds",
    "response_kind",
    "responder",
    "response_id",
    "external_id",
    "excluded_reason",
    "excluded_detail",
    "breached_at",
    "alerts",
    "follow_ups",
    "alert_deliveries",
    "revisions",
];

/// Writes the header and one row per inquiry, a row at a time.
pub fn render(data: &ReportData, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut line = String::with_capacity(1024);
    write_row(out, &mut line, COLUMNS.iter().copied())?;
    for row in data.inquiries.iter() {
        let fields = fields(&row);
        write_row(out, &mut line, fields.iter().map(String::as_str))?;
    }
    Ok(())
}

fn instant(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// The row's fields in [`COLUMNS`] order.
pub fn fields(r: &InquiryRow) -> Vec<String> {
    vec![
        r.id.clone(),
        r.channel.clone(),
        r.source.clone(),
        r.language.clone(),
        opt(&r.kind),
        r.customer.clone(),
        instant(Some(r.received_at)),
        r.received_local.clone(),
        instant(Some(r.first_seen_at)),
        r.detection_seconds.to_string(),
        instant(r.deadline_at),
        opt(&r.policy),
        r.state.clone(),
        r.sla.clone(),
        instant(r.responded_at),
        opt(&r.response_seconds),
        opt(&r.response_kind),
        opt(&r.responder),
        opt(&r.response_id),
        r.external_id.clone(),
        opt(&r.excluded_reason),
        opt(&r.excluded_detail),
        instant(r.breached_at),
        r.alerts.to_string(),
        r.follow_ups.to_string(),
        opt(&r.alert_deliveries),
        opt(&r.revisions),
    ]
}

/// Writes one line of `fields`, using `line` as the buffer.
fn write_row<'a>(
    out: &mut dyn std::io::Write,
    line: &mut String,
    fields: impl Iterator<Item = &'a str>,
) -> std::io::Result<()> {
    line.clear();
    for (n, f) in fields.enumerate() {
        if n > 0 {
            line.push(',');
        }
        line.push_str(&escape(f));
    }
    line.push_str("\r\n");
    out.write_all(line.as_bytes())
}

/// Quotes a field when needed, and defuses spreadsheet formulas (borrowed when neither is).
pub fn escape(field: &str) -> std::borrow::Cow<'_, str> {
    let defuse = matches!(
        field.chars().next(),
        Some('=' | '+' | '-' | '@' | '\t' | '\r')
    ) && field.parse::<f64>().is_err();
    let quote = field.contains([',', '"', '\r', '\n']);
    if !defuse && !quote {
        return std::borrow::Cow::Borrowed(field);
    }
    let defused = if defuse {
        format!("'{field}")
    } else {
        field.to_string()
    };
    std::borrow::Cow::Owned(if quote {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    })
}

/// Parses CSV written by [`render`] back into rows of fields (for checks and tests).
pub fn parse(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            c => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_defuses() {
        assert_eq!(escape("a,b"), "\"a,b\"");
        assert_eq!(escape("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(escape("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(escape("-5"), "-5");
        // TAB and CR open a cell that spreadsheets trim and then evaluate.
        assert_eq!(
            escape("\t=HYPERLINK(\"x\")"),
            "\"'\t=HYPERLINK(\"\"x\"\")\""
        );
        assert_eq!(escape("\r=1+1"), "\"'\r=1+1\"");
        assert_eq!(escape("\t@SUM(A1)"), "'\t@SUM(A1)");
        let rows = parse("a,\"b,\"\"c\"\"\"\r\n,x\r\n");
        assert_eq!(rows, vec![vec!["a", "b,\"c\""], vec!["", "x"]]);
    }
}
