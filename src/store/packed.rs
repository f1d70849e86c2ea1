//! Reading a packed page of ledger rows (the text [`super::sql::PACKED_PAGE`] returns): where
//! each row and each of its fields starts, found once, so rows are then borrowed slices of the
//! page's one string. Pure, so the format is pinned by unit tests.

use std::ops::Range;

use super::chain::RowRef;

/// One row's place in the packed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowSpan {
    pub seq: i64,
    /// Byte ranges of `recorded_at, kind, inquiry_id, payload, prev_hash, hash`.
    fields: [Range<usize>; 6],
    has_inquiry_id: bool,
}

/// Why a packed page could not be read (a database that did not produce the format, which
/// no change to the ledger's rows can cause).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackError {
    /// The seq after which reading stopped.
    pub after_seq: i64,
    pub problem: String,
}

/// The rows of `text`, in seq order (whatever their order in the text).
pub fn unpack(text: &str, after_seq: i64) -> Result<Vec<RowSpan>, UnpackError> {
    let bytes = text.as_bytes();
    let mut at = 0;
    let mut last = after_seq;
    let mut rows = Vec::new();
    let fail = |last: i64, problem: String| UnpackError {
        after_seq: last,
        problem,
    };
    while at < bytes.len() {
        let mut numbers = [0i64; 7];
        for n in &mut numbers {
            let end = bytes[at..]
                .iter()
                .position(|b| *b == b' ')
                .map(|p| at + p)
                .ok_or_else(|| fail(last, "packed row header is cut short".into()))?;
            *n = text[at..end]
                .parse()
                .map_err(|_| fail(last, format!("packed row header {:?}", &text[at..end])))?;
            at = end + 1;
        }
        let seq = numbers[0];
        let has_inquiry_id = numbers[3] >= 0;
        let mut fields: [Range<usize>; 6] = Default::default();
        for (k, field) in fields.iter_mut().enumerate() {
            let raw = numbers[k + 1];
            let len = if k == 2 && raw == -1 {
                0
            } else {
                usize::try_from(raw)
                    .map_err(|_| fail(last, format!("packed field length {raw}")))?
            };
            let end = at + len;
            if end > bytes.len() || !text.is_char_boundary(end) {
                return Err(fail(
                    last,
                    format!("packed row {seq} is longer than the page"),
                ));
            }
            *field = at..end;
            at = end;
        }
        rows.push(RowSpan {
            seq,
            fields,
            has_inquiry_id,
        });
        last = seq;
    }
    if !rows.is_sorted_by_key(|r| r.seq) {
        rows.sort_unstable_by_key(|r| r.seq);
    }
    Ok(rows)
}

impl RowSpan {
    /// The row, borrowed from the page's `text`.
    pub fn row<'a>(&self, text: &'a str) -> RowRef<'a> {
        let f = |k: usize| &text[self.fields[k].clone()];
        RowRef {
            seq: self.seq,
            recorded_at: f(0),
            kind: f(1),
            inquiry_id: self.has_inquiry_id.then(|| f(2)),
            payload: f(3),
            prev_hash: f(4),
            hash: f(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the query writes for one row.
    fn pack(seq: i64, fields: [Option<&str>; 6]) -> String {
        let lens: Vec<String> = fields
            .iter()
            .map(|f| f.map_or(-1, |f| f.len() as i64).to_string())
            .collect();
        let body: String = fields.iter().map(|f| f.unwrap_or("")).collect();
        format!("{seq} {} {body}", lens.join(" "))
    }

    #[test]
    fn rows_come_back_field_for_field() {
        let a = [
            Some("2026-03-01T09:05:07.000000Z"),
            Some("inquiry_opened"),
            Some("e1"),
            Some(r#"{"type":"inquiry_opened","subject":"استفسار 1 2 3"}"#),
            Some("0000"),
            Some("abcd"),
        ];
        let b = [
            Some("2026-03-01T09:05:08.000000Z"),
            Some("monitor_heartbeat"),
            None,
            Some(r#"{"type":"monitor_heartbeat"}"#),
            Some("abcd"),
            Some("ef01"),
        ];
        let c = [Some(""), Some(""), Some(""), Some(""), Some(""), Some("")];
        // In any order: the database may concatenate a page's rows in another.
        let text = format!("{}{}{}", pack(9, c), pack(7, a), pack(8, b));
        let rows = unpack(&text, 6).expect("unpacks");
        assert_eq!(rows.len(), 3);
        let r = rows[0].row(&text);
        assert_eq!(
            (
                r.seq,
                r.recorded_at,
                r.kind,
                r.inquiry_id,
                r.payload,
                r.prev_hash,
                r.hash
            ),
            (
                7,
                a[0].unwrap(),
                "inquiry_opened",
                Some("e1"),
                a[3].unwrap(),
                "0000",
                "abcd"
            )
        );
        let r = rows[1].row(&text);
        assert_eq!((r.seq, r.inquiry_id, r.hash), (8, None, "ef01"));
        let r = rows[2].row(&text);
        assert_eq!((r.seq, r.inquiry_id, r.payload), (9, Some(""), ""));
        assert_eq!(unpack("", 6), Ok(Vec::new()));
    }

    #[test]
    fn a_malformed_page_is_an_error_not_a_panic() {
        for bad in [
            "7 1 2",
            "7 1 2 3 4 5 6 x",
            "x 1 1 1 1 1 1 abcdef",
            "7 1 1 1 1 1 99 abc",
        ] {
            let e = unpack(bad, 6).expect_err(bad);
            assert_eq!(e.after_seq, 6, "{bad}");
        }
        // A length that would cut a character in two.
        assert!(unpack("7 1 0 0 0 0 0 é", 6).is_err());
    }
}
