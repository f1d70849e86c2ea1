//! How the ledger writes instants: the exact text chrono's own `Serialize` gives
//! (`2026-01-05T08:00:00Z`, `…:00.250Z`, `…:00.123456Z`, `…:00.123456789Z`), written straight
//! into a stack buffer.
//!
//! chrono builds that text through `Display`/`Debug` formatting, which serde_json then escapes
//! piece by piece; with five instants in an opened inquiry that was a third of the time spent
//! serialising events for the ledger. Used with `#[serde(serialize_with = …)]` on event fields;
//! reading back stays chrono's. Instants chrono writes differently (years outside 0–9999,
//! leap seconds) are handed to chrono.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};

/// An instant field.
pub fn one<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 32];
    match text(at, &mut buf) {
        Some(text) => s.serialize_str(text),
        None => at.serialize(s),
    }
}

/// An optional instant field.
pub fn maybe<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_some(&Instant(at)),
        None => s.serialize_none(),
    }
}

/// A list of instants.
pub fn many<S: Serializer>(all: &[DateTime<Utc>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(all.iter().map(Instant))
}

struct Instant<'a>(&'a DateTime<Utc>);

impl Serialize for Instant<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        one(self.0, s)
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]Z`: the fraction as chrono writes it (none,
/// milli-, micro- or nanoseconds, whichever is exact). `None` where chrono's text differs.
fn text<'b>(at: &DateTime<Utc>, buf: &'b mut [u8; 32]) -> Option<&'b str> {
    let year = u32::try_from(at.year()).ok().filter(|y| *y <= 9999)?;
    let nanos = at.nanosecond();
    if nanos >= 1_000_000_000 {
        return None; // a leap second
    }
    let mut out = Text { buf, len: 0 };
    out.digits(year, 4, b'-');
    out.digits(at.month(), 2, b'-');
    out.digits(at.day(), 2, b'T');
    out.digits(at.hour(), 2, b':');
    out.digits(at.minute(), 2, b':');
    match nanos {
        0 => out.digits(at.second(), 2, b'Z'),
        n => {
            out.digits(at.second(), 2, b'.');
            match n {
                n if n % 1_000_000 == 0 => out.digits(n / 1_000_000, 3, b'Z'),
                n if n % 1_000 == 0 => out.digits(n / 1_000, 6, b'Z'),
                n => out.digits(n, 9, b'Z'),
            }
        }
    }
    let len = out.len;
    std::str::from_utf8(&buf[..len]).ok()
}

struct Text<'b> {
    buf: &'b mut [u8; 32],
    len: usize,
}

impl Text<'_> {
    /// `value` in `width` decimal digits (zero-padded), then `then`.
    fn digits(&mut self, value: u32, width: u32, then: u8) {
        for k in (0..width).rev() {
            self.buf[self.len] = b'0' + (value / 10u32.pow(k) % 10) as u8;
            self.len += 1;
        }
        self.buf[self.len] = then;
        self.len += 1;
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[derive(Serialize)]
    struct Fields {
        #[serde(serialize_with = "one")]
        at: DateTime<Utc>,
        #[serde(serialize_with = "maybe")]
        maybe: Option<DateTime<Utc>>,
        #[serde(serialize_with = "many")]
        many: Vec<DateTime<Utc>>,
    }

    #[derive(Serialize)]
    struct Chrono {
        at: DateTime<Utc>,
        maybe: Option<DateTime<Utc>>,
        many: Vec<DateTime<Utc>>,
    }

    fn both(at: DateTime<Utc>) -> (String, String) {
        let ours = Fields {
            at,
            maybe: Some(at),
            many: vec![at, at],
        };
        let theirs = Chrono {
            at,
            maybe: Some(at),
            many: vec![at, at],
        };
        (
            serde_json::to_string(&ours).unwrap(),
            serde_json::to_string(&theirs).unwrap(),
        )
    }

    #[test]
    fn the_text_is_chronos_to_the_byte() {
        let base = Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap();
        let mut instants = vec![
            base,
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2016, 12, 31, 23, 59, 59).unwrap()
                + chrono::Duration::nanoseconds(999_999_999),
        ];
        for nanos in [
            1,
            10,
            1_000,
            120_000,
            250_000_000,
            123_456_000,
            123_456_789,
            999_999_999,
        ] {
            instants.push(base + chrono::Duration::nanoseconds(nanos));
        }
        // A spread of ordinary instants, every fraction kind.
        let mut x: i64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let secs = x.rem_euclid(8_000_000_000) - 1_000_000_000;
            let nanos = match x.rem_euclid(4) {
                0 => 0,
                1 => (x >> 8).rem_euclid(1000) * 1_000_000,
                2 => (x >> 8).rem_euclid(1_000_000) * 1_000,
                _ => (x >> 8).rem_euclid(1_000_000_000),
            };
            instants.push(DateTime::from_timestamp(secs, nanos as u32).unwrap());
        }
        for at in instants {
            let (ours, theirs) = both(at);
            assert_eq!(ours, theirs, "{at:?}");
        }
        let none = Fields {
            at: base,
            maybe: None,
            many: vec![],
        };
        assert!(
            serde_json::to_string(&none)
                .unwrap()
                .contains(r#""maybe":null,"many":[]"#)
        );
    }
}
