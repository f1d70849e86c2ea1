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
use super::signing::PublicKey;

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

/// The fields of a `ledger_checkpoint` payload the checker needs.
#[derive(Deserialize)]
struct CheckpointProbe<'a> {
    head_seq: i64,
    #[serde(borrow)]
    head_hash: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    key_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    signature: std::borrow::Cow<'a, str>,
}

/// A head recorded earlier (`audit verify --expect [SEQ:]HASH`): it must still be in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedHead {
    pub seq: Option<i64>,
    pub hash: String,
}

impl std::str::FromStr for ExpectedHead {
    type Err = String;

    /// `HASH` or `SEQ:HASH` (as the head log line and reports print it).
    fn from_str(text: &str) -> Result<ExpectedHead, String> {
        let (seq, hash) = match text.split_once(':') {
            Some((seq, hash)) => (
                Some(
                    seq.trim()
                        .parse::<i64>()
                        .map_err(|_| format!("`{seq}` is not a seq"))?,
                ),
                hash.trim(),
            ),
            None => (None, text.trim()),
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("`{hash}` is not a 64-digit hex hash"));
        }
        Ok(ExpectedHead {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

/// What a walk found about signatures and an expected head, beside the chain's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seals {
    /// Checkpoint rows seen (each checked against the public key when one was given).
    pub checkpoints: u64,
    /// Whether their signatures were checked.
    pub signatures_checked: bool,
    /// The seq of the first checkpoint.
    pub first_checkpoint: Option<i64>,
    /// The first row of the first signed commit (the commit that ends with the first
    /// checkpoint): rows before it were written before signing began ("linked, not signed").
    pub signed_from: Option<i64>,
    /// The seq of the last checkpoint: every row up to it is covered by a signature.
    pub last_checkpoint: Option<i64>,
    /// The last row's seq.
    pub head_seq: i64,
    /// Where the expected head was found.
    pub expected_at: Option<i64>,
}

/// Walks rows in seq order and stops at the first one that does not belong to an intact chain.
/// Every checkpoint row must name the row before it; with a public key its signature is
/// checked too.
#[derive(Debug)]
pub struct ChainChecker {
    next_seq: i64,
    prev_hash: String,
    count: u64,
    key: Option<PublicKey>,
    expect: Option<ExpectedHead>,
    seals: Seals,
    /// Where the current run of rows with one `recorded_at` (one commit) began, and that text.
    commit_start: i64,
    commit_stamp: String,
}

impl Default for ChainChecker {
    fn default() -> Self {
        ChainChecker::new(None, None)
    }
}

impl ChainChecker {
    pub fn new(key: Option<PublicKey>, expect: Option<ExpectedHead>) -> ChainChecker {
        ChainChecker {
            next_seq: 1,
            prev_hash: GENESIS.to_string(),
            count: 0,
            seals: Seals {
                signatures_checked: key.is_some(),
                ..Seals::default()
            },
            key,
            expect,
            commit_start: 1,
            commit_stamp: String::new(),
        }
    }

    /// Goes on after row `seq`, whose hash `hash` is already trusted (a snapshot's head).
    pub fn resume(key: Option<PublicKey>, seq: i64, hash: String) -> ChainChecker {
        ChainChecker {
            next_seq: seq + 1,
            prev_hash: hash,
            commit_start: seq + 1,
            seals: Seals {
                signatures_checked: key.is_some(),
                head_seq: seq,
                ..Seals::default()
            },
            ..ChainChecker::new(key, None)
        }
    }

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
        if row.recorded_at != self.commit_stamp {
            self.commit_start = row.seq;
            self.commit_stamp.clear();
            self.commit_stamp.push_str(row.recorded_at);
        }
        if row.kind == "ledger_checkpoint" {
            self.check_checkpoint(row)?;
        }
        if let Some(expect) = &self.expect
            && row.hash == expect.hash
            && expect.seq.is_none_or(|s| s == row.seq)
        {
            self.seals.expected_at = Some(row.seq);
        }
        self.seals.head_seq = row.seq;
        // The stored hash is the computed one: keep it in place of the last (no allocation).
        self.prev_hash.clear();
        self.prev_hash.push_str(row.hash);
        self.next_seq += 1;
        self.count += 1;
        Ok(())
    }

    /// A checkpoint row signs the row before it: its `head_seq`/`head_hash` must be that row's,
    /// and with a key its signature must verify.
    fn check_checkpoint(&mut self, row: RowRef<'_>) -> Result<(), Verification> {
        let broken = |problem: String| Verification::Broken {
            seq: row.seq,
            expected: row.prev_hash.to_string(),
            found: row.prev_hash.to_string(),
            problem,
        };
        let probe: CheckpointProbe<'_> = serde_json::from_str(row.payload)
            .map_err(|e| broken(format!("checkpoint payload is malformed: {e}")))?;
        if probe.head_seq != row.seq - 1 || probe.head_hash != row.prev_hash {
            return Err(Verification::Broken {
                seq: row.seq,
                expected: row.prev_hash.to_string(),
                found: probe.head_hash.to_string(),
                problem: format!(
                    "checkpoint signs seq {} but follows seq {} with another hash (rows before it were rewritten)",
                    probe.head_seq,
                    row.seq - 1
                ),
            });
        }
        if let Some(key) = &self.key
            && !key.verifies(probe.head_seq, &probe.head_hash, &probe.signature)
        {
            return Err(broken(format!(
                "checkpoint signature does not verify with the public key {} (the row names key {})",
                key.key_id(),
                probe.key_id
            )));
        }
        self.seals.checkpoints += 1;
        self.seals.first_checkpoint.get_or_insert(row.seq);
        self.seals.signed_from.get_or_insert(self.commit_start);
        self.seals.last_checkpoint = Some(row.seq);
        Ok(())
    }

    /// The verdict with what the walk found about signatures and the expected head.
    /// `signed_head` (auditing with a public key): the last row must be a signed checkpoint, so a
    /// tail cut inside a commit, or rows appended without the key, show.
    pub fn finish_sealed(self, signed_head: bool) -> (Verification, Seals) {
        let seals = self.seals.clone();
        let expect = self.expect.clone();
        let verification = self.finish();
        if let Verification::Intact { .. } = &verification {
            if signed_head && seals.head_seq > 0 && seals.last_checkpoint != Some(seals.head_seq) {
                let (seq, problem) = match seals.last_checkpoint {
                    None => (
                        1,
                        format!(
                            "no signed checkpoint in {} rows: the ledger is linked, not signed (written without a key, or rewritten without its checkpoints)",
                            seals.head_seq
                        ),
                    ),
                    Some(last) => (
                        last + 1,
                        format!(
                            "rows {}..={} follow the last signed checkpoint (seq {last}): the tail was cut inside a commit, or rows were written without the key",
                            last + 1,
                            seals.head_seq
                        ),
                    ),
                };
                return (
                    Verification::Broken {
                        seq,
                        expected: "a signed checkpoint".to_string(),
                        found: "unsigned rows".to_string(),
                        problem,
                    },
                    seals,
                );
            }
            if let Some(expect) = expect
                && seals.expected_at.is_none()
            {
                let problem = match expect.seq {
                    Some(seq) if seq > seals.head_seq => format!(
                        "the expected head (seq {seq}) is gone: the ledger ends at seq {} (its tail was cut)",
                        seals.head_seq
                    ),
                    Some(seq) => format!(
                        "seq {seq} no longer has the expected hash: the chain was rewritten at or before it"
                    ),
                    None => "the expected head hash is not in the chain: the ledger was cut or rewritten".to_string(),
                };
                return (
                    Verification::Broken {
                        seq: expect.seq.unwrap_or(seals.head_seq + 1),
                        expected: expect.hash,
                        found: "(not found)".to_string(),
                        problem,
                    },
                    seals,
                );
            }
        }
        (verification, seals)
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

    fn checkpoint_row<'a>(prev: &'a str, payload: &'a str, hash: &'a str) -> RowRef<'a> {
        RowRef {
            seq: 2,
            recorded_at: "2026-03-01T09:05:07.000000Z",
            kind: "ledger_checkpoint",
            inquiry_id: None,
            payload,
            prev_hash: prev,
            hash,
        }
    }

    #[test]
    fn a_checkpoint_must_name_the_row_before_it() {
        let p = r#"{"type":"inquiry_breached","inquiry_id":"e1","at":"2026-03-01T09:05:07Z"}"#;
        let at = "2026-03-01T09:05:07.000000Z";
        let h1 = link_hash(GENESIS, 1, at, "inquiry_breached", p);
        let checkpoint = |head_hash: &str| {
            format!(
                r#"{{"type":"ledger_checkpoint","head_seq":1,"head_hash":"{head_hash}","key_id":"k","signature":"00","at":"{at}"}}"#
            )
        };
        let good = checkpoint(&h1);
        let h2 = link_hash(&h1, 2, at, "ledger_checkpoint", &good);
        let mut c = ChainChecker::default();
        c.check(row(1, GENESIS, &h1, p)).unwrap();
        c.check(checkpoint_row(&h1, &good, &h2)).unwrap();
        let (v, seals) = c.finish_sealed(false);
        assert!(matches!(v, Verification::Intact { events: 2, .. }));
        assert_eq!(
            (seals.checkpoints, seals.signed_from, seals.last_checkpoint),
            (1, Some(1), Some(2))
        );

        // Re-hashed rows before it leave it naming the old hash.
        let stale = checkpoint(&"1".repeat(64));
        let h2 = link_hash(&h1, 2, at, "ledger_checkpoint", &stale);
        let mut c = ChainChecker::default();
        c.check(row(1, GENESIS, &h1, p)).unwrap();
        match c.check(checkpoint_row(&h1, &stale, &h2)) {
            Err(Verification::Broken {
                seq: 2, problem, ..
            }) => {
                assert!(problem.contains("rewritten"), "{problem}")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn an_expected_head_is_seq_and_hash_or_hash() {
        let hash = "AB".repeat(32);
        let e: ExpectedHead = format!("42:{hash}").parse().unwrap();
        assert_eq!((e.seq, e.hash), (Some(42), "ab".repeat(32)));
        let e: ExpectedHead = hash.parse().unwrap();
        assert_eq!(e.seq, None);
        assert!("42:abc".parse::<ExpectedHead>().is_err());
        assert!(format!("x:{hash}").parse::<ExpectedHead>().is_err());
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
