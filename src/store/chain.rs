//! The hash chain, as pure functions: the canonical text of a row, its hash, the timestamp
//! format, and the [`ChainChecker`] that `verify` feeds rows to.
//!
//! Nothing here touches a database, so the exact format auditors rely on is pinned by unit
//! tests independent of SQLite or PostgreSQL. The format itself is documented in the parent
//! module.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::Verification;

/// `prev_hash` of the first row (seq 1): 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Version of the row and hash format, stored in `meta.ledger_format`.
pub const LEDGER_FORMAT: &str = "1";

/// `recorded_at` as stored and hashed: RFC 3339, UTC, always six fractional digits and `Z`
/// (`%Y-%m-%dT%H:%M:%S%.6fZ`), so the same instant always has the same text.
pub fn format_instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses a stored instant; `None` if it is not RFC 3339.
pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `hex(sha256(prev_hash ‖ "{seq}\n{recorded_at}\n{kind}\n{payload}"))`, lower-case hex.
///
/// `prev_hash` enters as its 64-character hex text (not the 32 raw bytes), so the whole input is
/// printable text that `printf '%s' … | sha256sum` reproduces.
pub fn link_hash(
    prev_hash: &str,
    seq: i64,
    recorded_at: &str,
    kind: &str,
    payload: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(recorded_at.as_bytes());
    h.update(b"\n");
    h.update(kind.as_bytes());
    h.update(b"\n");
    h.update(payload.as_bytes());
    lower_hex(&h.finalize())
}

/// Lower-case hex of a digest, the same text as `hex::encode`, written in one pass into a string
/// of the right size (this runs once per appended and per verified row).
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// [`link_hash`] as its 64 hex bytes, without allocating: `verify` and appends compute one per
/// row.
pub(super) fn link_hash_hex(
    prev_hash: &str,
    seq: i64,
    recorded_at: &str,
    kind: &str,
    payload: &str,
) -> [u8; 64] {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    let mut digits = [0u8; 20];
    h.update(decimal(seq, &mut digits));
    h.update(b"\n");
    h.update(recorded_at.as_bytes());
    h.update(b"\n");
    h.update(kind.as_bytes());
    h.update(b"\n");
    h.update(payload.as_bytes());
    let mut hex = [0u8; 64];
    hex::encode_to_slice(h.finalize(), &mut hex).expect("32 bytes are 64 hex digits");
    hex
}

/// `n` in decimal (as `to_string` writes it) in `buf`, without allocating.
fn decimal(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

/// One stored row, as the chain sees it (borrowed from whatever the database returned).
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub seq: i64,
    pub recorded_at: &'a str,
    pub kind: &'a str,
    pub inquiry_id: Option<&'a str>,
    pub payload: &'a str,
    pub prev_hash: &'a str,
    pub hash: &'a str,
}

/// The two payload fields mirrored in index columns. Deserializing only these (instead of a
/// full `Event`) keeps `verify` fast and independent of how event variants evolve.
#[derive(Deserialize)]
struct PayloadProbe<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    inquiry_id: Option<std::borrow::Cow<'a, str>>,
}

/// Walks rows in seq order and stops at the first one that does not belong to an intact chain.
#[derive(Debug)]
pub struct ChainChecker {
    next_seq: i64,
    prev_hash: String,
    count: u64,
}

impl Default for ChainChecker {
    fn default() -> Self {
        ChainChecker {
            next_seq: 1,
            prev_hash: GENESIS.to_string(),
            count: 0,
        }
    }
}

impl ChainChecker {
    /// Checks the next row. `Err` carries the [`Verification::Broken`] that names it.
    pub fn check(&mut self, row: RowRef<'_>) -> Result<(), Verification> {
        let broken = |expected: &str, found: &str, problem: String| Verification::Broken {
            seq: row.seq,
            expected: expected.to_string(),
            found: found.to_string(),
            problem,
        };
        if row.seq != self.next_seq {
            let problem = if row.seq > self.next_seq {
                let missing = row.seq - self.next_seq;
                format!(
                    "seq {} follows seq {}: {missing} row(s) missing before it",
                    row.seq,
                    self.next_seq - 1
                )
            } else {
                format!(
                    "seq {} is out of order (expected seq {})",
                    row.seq, self.next_seq
                )
            };
            return Err(broken(&self.prev_hash, row.prev_hash, problem));
        }
        if row.prev_hash != self.prev_hash {
            let problem = if self.next_seq == 1 {
                "the first row's prev_hash is not the genesis value (64 zeros)".to_string()
            } else {
                format!(
                    "prev_hash does not match the hash of seq {} (a row was removed, replaced or inserted)",
                    self.next_seq - 1
                )
            };
            return Err(broken(&self.prev_hash, row.prev_hash, problem));
        }
        let computed_hex = link_hash_hex(
            row.prev_hash,
            row.seq,
            row.recorded_at,
            row.kind,
            row.payload,
        );
        if computed_hex != row.hash.as_bytes() {
            return Err(broken(
                &String::from_utf8_lossy(&computed_hex),
                row.hash,
                "stored hash does not match the row's content (recorded_at, kind or payload was changed, or the hash was forged)".to_string(),
            ));
        }
        // The hash covers the payload and kind; the index columns must agree with it, or
        // per-inquiry look-ups could be made to hide events.
        match serde_json::from_str::<PayloadProbe<'_>>(row.payload) {
            Err(e) => {
                return Err(broken(
                    row.hash,
                    row.hash,
                    format!("payload is not a JSON event object: {e}"),
                ));
            }
            Ok(probe) => {
                if probe.kind.as_deref() != Some(row.kind) {
                    return Err(broken(
                        row.kind,
                        probe.kind.as_deref().unwrap_or(""),
                        "kind column does not match the payload's \"type\" (expected/found are the kind column and the payload type)".to_string(),
                    ));
                }
                if probe.inquiry_id.as_deref() != row.inquiry_id {
                    return Err(broken(
                        probe.inquiry_id.as_deref().unwrap_or(""),
                        row.inquiry_id.unwrap_or(""),
                        "inquiry_id column does not match the payload (expected/found are inquiry ids, not hashes)".to_string(),
                    ));
                }
            }
        }
        // The stored hash is the computed one: keep it in place of the last (no allocation).
        self.prev_hash.clear();
        self.prev_hash.push_str(row.hash);
        self.next_seq += 1;
        self.count += 1;
        Ok(())
    }

    /// The verdict once every row has been checked.
    pub fn finish(self) -> Verification {
        Verification::Intact {
            events: self.count,
            head_hash: self.prev_hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn digest_hex_is_lower_case_like_hex_encode() {
        let digest = Sha256::digest(b"slawatch");
        assert_eq!(lower_hex(&digest), hex::encode(digest));
        assert_eq!(lower_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn instants_have_fixed_precision() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 9, 5, 7).unwrap();
        assert_eq!(format_instant(at), "2026-03-01T09:05:07.000000Z");
        let at = at + chrono::Duration::nanoseconds(123_456_789);
        assert_eq!(format_instant(at), "2026-03-01T09:05:07.123456Z");
        assert_eq!(
            parse_instant("2026-03-01T09:05:07.123456Z").map(format_instant),
            Some("2026-03-01T09:05:07.123456Z".to_string())
        );
    }

    #[test]
    fn hash_is_sha256_of_prev_and_canonical_text() {
        // Pinned: changing the format breaks every existing ledger.
        let canonical = "1\n2026-03-01T09:05:07.000000Z\ninquiry_breached\n{\"type\":\"inquiry_breached\",\"inquiry_id\":\"e1\",\"at\":\"2026-03-01T09:05:07Z\"}";
        let mut whole = GENESIS.to_string();
        whole.push_str(canonical);
        let expected = hex::encode(Sha256::digest(whole.as_bytes()));
        let got = link_hash(
            GENESIS,
            1,
            "2026-03-01T09:05:07.000000Z",
            "inquiry_breached",
            "{\"type\":\"inquiry_breached\",\"inquiry_id\":\"e1\",\"at\":\"2026-03-01T09:05:07Z\"}",
        );
        assert_eq!(got, expected);
        assert_eq!(got.len(), 64);
        let hex = link_hash_hex(
            GENESIS,
            1,
            "2026-03-01T09:05:07.000000Z",
            "inquiry_breached",
            "{\"type\":\"inquiry_breached\",\"inquiry_id\":\"e1\",\"at\":\"2026-03-01T09:05:07Z\"}",
        );
        assert_eq!(hex.as_slice(), expected.as_bytes());
        let mut digits = [0u8; 20];
        assert_eq!(decimal(-1_234_567_890, &mut digits), b"-1234567890");
        assert_eq!(decimal(0, &mut digits), b"0");
        assert_eq!(
            decimal(i64::MIN, &mut digits),
            i64::MIN.to_string().as_bytes()
        );
    }

    fn row<'a>(seq: i64, prev: &'a str, hash: &'a str, payload: &'a str) -> RowRef<'a> {
        RowRef {
            seq,
            recorded_at: "2026-03-01T09:05:07.000000Z",
            kind: "inquiry_breached",
            inquiry_id: Some("e1"),
            payload,
            prev_hash: prev,
            hash,
        }
    }

    #[test]
    fn checker_accepts_a_chain_and_rejects_a_gap() {
        let p = r#"{"type":"inquiry_breached","inquiry_id":"e1","at":"2026-03-01T09:05:07Z"}"#;
        let h1 = link_hash(
            GENESIS,
            1,
            "2026-03-01T09:05:07.000000Z",
            "inquiry_breached",
            p,
        );
        let h2 = link_hash(&h1, 2, "2026-03-01T09:05:07.000000Z", "inquiry_breached", p);
        let mut c = ChainChecker::default();
        c.check(row(1, GENESIS, &h1, p)).unwrap();
        c.check(row(2, &h1, &h2, p)).unwrap();
        assert_eq!(
            c.finish(),
            Verification::Intact {
                events: 2,
                head_hash: h2.clone()
            }
        );

        let mut c = ChainChecker::default();
        c.check(row(1, GENESIS, &h1, p)).unwrap();
        let h3 = link_hash(&h2, 3, "2026-03-01T09:05:07.000000Z", "inquiry_breached", p);
        match c.check(row(3, &h2, &h3, p)) {
            Err(Verification::Broken {
                seq: 3, problem, ..
            }) => {
                assert!(problem.contains("missing"), "{problem}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn checker_rejects_mismatched_index_columns() {
        let p = r#"{"type":"inquiry_breached","inquiry_id":"e1","at":"2026-03-01T09:05:07Z"}"#;
        let h1 = link_hash(
            GENESIS,
            1,
            "2026-03-01T09:05:07.000000Z",
            "inquiry_breached",
            p,
        );
        let mut r = row(1, GENESIS, &h1, p);
        r.inquiry_id = Some("e2");
        match ChainChecker::default().check(r) {
            Err(Verification::Broken {
                seq: 1,
                expected,
                found,
                ..
            }) => assert_eq!((expected.as_str(), found.as_str()), ("e1", "e2")),
            other => panic!("unexpected {other:?}"),
        }
    }
}
