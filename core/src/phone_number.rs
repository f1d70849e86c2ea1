//! Phone number normalisation: the raw caller or dialled string → the E.164 customer key.
//!
//! Rules (`phone-feeds.md` §6): separators are stripped; `+`, `00` and `011` mean international,
//! and such a number keeps its country even when the numbering metadata finds it invalid or
//! reserved (`+447700900456` stays British). A string without a prefix is read nationally, in
//! the default region of the line the call came in on, when that reading is a valid number;
//! otherwise a string of at least 11 digits that starts with an assigned country code is read as
//! international without its `+` (`34600123456`, `447700900456`), valid or not. The national
//! reading of an invalid number is kept only for strings that cannot be international (too
//! short, a trunk `0`, no such country code). So one customer gets one key in every spelling
//! (`+44…`, `0044…`, `44…`, national). Withheld numbers
//! (`anonymous`, empty, Twilio's sentinels) cannot be called back. A number that parses but is
//! not valid (metadata lags, fictitious test ranges) is kept, keyed by its best normalised form
//! and marked unverified; one that does not parse at all is kept raw and flagged.

use std::cell::RefCell;
use std::collections::HashMap;

use phonenumber::PhoneNumber;
use phonenumber::country::Id as Region;
use serde::{Deserialize, Serialize};

/// What slawatch could make of a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NumberStatus {
    /// A valid number for its region.
    Valid,
    /// Parsed to an E.164 form, but the metadata says it is not a valid number: kept anyway.
    Unverified,
    /// Not a phone number at all: kept raw, flagged.
    Unparseable,
    /// No number (withheld, anonymous, restricted): nobody can call back.
    Withheld,
}

/// A normalised number with its raw form kept for audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerNumber {
    /// The string as the phone system wrote it.
    pub raw: String,
    /// `+<digits>` when the number could be normalised.
    pub e164: Option<String>,
    pub status: NumberStatus,
}

impl CallerNumber {
    /// The customer key: the E.164 form, else the raw digits (`raw:` prefixed so it can never
    /// collide with a real E.164 key), else `withheld`.
    pub fn key(&self) -> String {
        match (&self.e164, self.status) {
            (_, NumberStatus::Withheld) => "withheld".to_string(),
            (Some(e), _) => e.clone(),
            (None, _) => format!("raw:{}", self.raw.trim()),
        }
    }

    pub fn is_withheld(&self) -> bool {
        self.status == NumberStatus::Withheld
    }
}

/// Strings phone systems write for a hidden caller id (lower-cased comparison).
const WITHHELD_WORDS: [&str; 9] = [
    "anonymous",
    "restricted",
    "private",
    "unknown",
    "unavailable",
    "blocked",
    "withheld",
    "none",
    "0",
];

/// Twilio's undocumented withheld-number sentinels (the letters of the word on a keypad).
const WITHHELD_SENTINELS: [&str; 5] = [
    "+266696687",   // ANONYMOUS
    "+7378742833",  // RESTRICTED
    "+2562533",     // BLOCKED
    "+8656696",     // UNKNOWN
    "+86282452253", // UNAVAILABLE
];

/// Parses an ISO 3166 region code such as `ES` (case-insensitive).
pub fn region(code: &str) -> Option<Region> {
    code.trim().to_ascii_uppercase().parse().ok()
}

/// Entries of the per-thread normalisation cache: the metadata parse is the costliest step of a
/// CDR row, and one call's rows (and a customer's calls) repeat the same number.
const CACHE_ENTRIES: usize = 65_536;

/// Per default region, raw string → its normalised form (looked up by `&str`, without building
/// a key).
type Cache = HashMap<Option<Region>, HashMap<String, CallerNumber>>;

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(HashMap::new());
}

/// Normalises `raw` with `default_region` (the line's region) for national numbers.
pub fn normalize(raw: &str, default_region: Option<Region>) -> CallerNumber {
    let hit = CACHE.with(|c| {
        c.borrow()
            .get(&default_region)
            .and_then(|numbers| numbers.get(raw).cloned())
    });
    if let Some(hit) = hit {
        return hit;
    }
    let n = normalize_uncached(raw, default_region);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let numbers = c.entry(default_region).or_default();
        if numbers.len() >= CACHE_ENTRIES {
            numbers.clear();
        }
        numbers.insert(raw.to_string(), n.clone());
    });
    n
}

fn normalize_uncached(raw: &str, default_region: Option<Region>) -> CallerNumber {
    let kept = raw.to_string();
    let trimmed = raw.trim();
    // `sip:+34600…@host`, `tel:+34…`: the user part is the number.
    let unwrapped = trimmed
        .strip_prefix("tel:")
        .or_else(|| trimmed.strip_prefix("sip:"))
        .or_else(|| trimmed.strip_prefix("sips:"))
        .map(|s| s.split(['@', ';']).next().unwrap_or(s))
        .unwrap_or(trimmed);
    let lowered = unwrapped.to_ascii_lowercase();
    if lowered.is_empty()
        || WITHHELD_WORDS.contains(&lowered.as_str())
        || WITHHELD_SENTINELS.contains(&unwrapped)
        || lowered.starts_with("client:")
    {
        // `client:` is a browser/SDK endpoint, not a number either; treat it as unreachable.
        return CallerNumber {
            raw: kept,
            e164: None,
            status: NumberStatus::Withheld,
        };
    }
    let plus = unwrapped.starts_with('+');
    let digits: String = unwrapped.chars().filter(char::is_ascii_digit).collect();
    let other = unwrapped
        .chars()
        .any(|c| !(c.is_ascii_digit() || " +-.()/".contains(c)));
    if digits.is_empty() || other || digits.len() > 17 {
        return CallerNumber {
            raw: kept,
            e164: None,
            status: NumberStatus::Unparseable,
        };
    }
    // The digits after an international prefix (`+`, `00`). The region's own international
    // prefix (`011` on a North American line) is recognised by the national parse.
    let international = if plus {
        Some(digits.as_str())
    } else {
        digits.strip_prefix("00")
    };
    let parsed = if let Some(rest) = international {
        parse(None, &format!("+{rest}"))
    } else {
        let national = default_region.and_then(|r| national_reading(r, &digits));
        match national {
            Some(n) if n.1 => Some(n),
            national => {
                // A country code written without `+`: only plausible for long strings, and then
                // it keeps that country even when its range is invalid or reserved.
                let international = (digits.len() >= 11 && !digits.starts_with('0'))
                    .then(|| parse(None, &format!("+{digits}")))
                    .flatten();
                international.or(national)
            }
        }
    };
    match parsed {
        Some((e164, valid)) => CallerNumber {
            raw: kept,
            e164: Some(e164),
            status: if valid {
                NumberStatus::Valid
            } else {
                NumberStatus::Unverified
            },
        },
        None => CallerNumber {
            raw: kept,
            e164: international
                .filter(|rest| !rest.is_empty() && rest.len() <= 15)
                .map(|rest| format!("+{rest}")),
            status: NumberStatus::Unparseable,
        },
    }
}

/// The national reading of `digits` (no international prefix) on a line of `region`.
///
/// The metadata parser strips a leading copy of the region's own country code (Italian `39…`),
/// even when the digits are a valid national number as written: the digits with the region's
/// code in front (the prefixed reading) win when that is valid; else the plain reading when it
/// is valid; else whichever parses, plain first. Most numbers need one parse, not two: when the
/// plain reading is valid, [`prefixed_reading_is_moot`] tells from the metadata alone whether
/// the prefixed one could change the answer.
fn national_reading(region: Region, digits: &str) -> Option<(String, bool)> {
    let plain = parse(Some(region), digits);
    if let Some((e164, true)) = &plain
        && prefixed_reading_is_moot(region, digits, e164)
    {
        return plain;
    }
    let prefixed = phonenumber::metadata::DATABASE
        .by_id(region.as_ref())
        .and_then(|m| parse(None, &format!("+{}{digits}", m.country_code())));
    if prefixed.as_ref().is_some_and(|n| n.1) {
        return prefixed;
    }
    match plain {
        Some(n) if n.1 => Some(n),
        plain => plain.or(prefixed),
    }
}

/// Whether the prefixed reading `+<region's code><digits>` is either the valid plain reading
/// `plain_e164` itself or not a valid number, so the plain one stands. Decided only when the
/// metadata cannot change the digits after the country code (no national prefix for parsing,
/// no national prefix in front of them, in any region sharing the code): the prefixed reading
/// is then the country code and `digits` as they are, and the library calls that valid only if
/// the code's general pattern matches `digits` (country codes are prefix-free, so an equal E.164
/// string means the same code and the same national number). Otherwise `false`: parse it.
fn prefixed_reading_is_moot(region: Region, digits: &str, plain_e164: &str) -> bool {
    let database = &phonenumber::metadata::DATABASE;
    let Some(code) = database.by_id(region.as_ref()).map(|m| m.country_code()) else {
        // No prefixed reading at all.
        return true;
    };
    let Some(regions) = database.by_code(&code) else {
        return false;
    };
    let untouched = regions.iter().all(|m| {
        m.national_prefix_for_parsing().is_none()
            && m.national_prefix().is_none_or(|p| !digits.starts_with(p))
    });
    if !untouched {
        return false;
    }
    let same = plain_e164
        .strip_prefix('+')
        .and_then(|rest| rest.strip_prefix(code.to_string().as_str()))
        == Some(digits);
    same || !regions
        .iter()
        .any(|m| m.descriptors().general().is_match(digits))
}

/// The E.164 form of a parsed number: `+`, the country code, the national number with its
/// leading zeros. What the library's E.164 formatter writes, without its search of the
/// country's display formats (regular expressions over every format, unused by E.164).
fn e164_of(n: &PhoneNumber) -> String {
    format!("+{}{}", n.country().code(), n.national())
}

/// The E.164 form and validity, or `None` when the library cannot parse it.
fn parse(region: Option<Region>, s: &str) -> Option<(String, bool)> {
    let n: PhoneNumber = phonenumber::parse(region, s).ok()?;
    let e164 = e164_of(&n);
    // E.164 allows at most 15 digits.
    if e164.len() > 16 {
        return None;
    }
    Some((e164, phonenumber::is_valid(&n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use phonenumber::Mode;

    fn e164(raw: &str, r: &str) -> (Option<String>, NumberStatus) {
        let n = normalize(raw, region(r));
        (n.e164, n.status)
    }

    fn valid(s: &str) -> (Option<String>, NumberStatus) {
        (Some(s.to_string()), NumberStatus::Valid)
    }

    #[test]
    fn spanish_forms_agree() {
        for raw in [
            "+34600123456",
            "0034600123456",
            "34600123456",
            "600123456",
            "+34 600-12.34(56)",
        ] {
            assert_eq!(e164(raw, "ES"), valid("+34600123456"), "{raw}");
        }
    }

    #[test]
    fn the_lines_region_decides_national_numbers() {
        assert_eq!(e164("0551234567", "SA"), valid("+966551234567"));
        assert_eq!(e164("0551234567", "AE"), valid("+971551234567"));
        assert_eq!(e164("00966551234567", "ES"), valid("+966551234567"));
        assert_eq!(e164("971551234567", "AE"), valid("+971551234567"));
        assert_eq!(e164("01101234567", "EG"), valid("+201101234567"));
        assert_eq!(e164("011966551234567", "US"), valid("+966551234567"));
    }

    #[test]
    fn a_foreign_code_without_plus_is_recognised_when_the_national_parse_is_invalid() {
        assert_eq!(e164("971551234567", "ES"), valid("+971551234567"));
    }

    #[test]
    fn withheld_and_unparseable_numbers_are_flagged_not_dropped() {
        for raw in ["anonymous", "", "Restricted", "+266696687", "client:agent7"] {
            let n = normalize(raw, region("ES"));
            assert!(n.is_withheld(), "{raw}");
            assert_eq!(n.key(), "withheld");
        }
        let n = normalize("abc-def", region("ES"));
        assert_eq!(n.status, NumberStatus::Unparseable);
        assert_eq!(n.key(), "raw:abc-def");
        // Invalid ranges are kept under their normalised form.
        let n = normalize("+447700900456", None);
        assert_eq!(n.status, NumberStatus::Unverified);
        assert_eq!(n.key(), "+447700900456");
        let n = normalize("2003", region("ES"));
        assert_ne!(n.status, NumberStatus::Valid);
    }

    #[test]
    fn a_country_code_keeps_its_country_when_the_range_is_invalid() {
        // UK drama range (reserved, invalid in the metadata), written every way, on a Spanish
        // line and on a British one.
        for r in ["ES", "GB", "US"] {
            for raw in [
                "+447700900456",
                "00447700900456",
                "447700900456",
                "+44 7700 900456",
            ] {
                let n = normalize(raw, region(r));
                assert_eq!(n.key(), "+447700900456", "{raw} on a {r} line");
                assert_eq!(n.status, NumberStatus::Unverified, "{raw} on a {r} line");
            }
        }
        assert_eq!(
            normalize("07700900456", region("GB")).key(),
            "+447700900456"
        );
        // An unassigned country code after `00` is still international, never national.
        let n = normalize("00999123456789", region("ES"));
        assert_eq!(n.key(), "+999123456789");
        assert_eq!(n.status, NumberStatus::Unparseable);
        // Short strings cannot be international: the line's region decides.
        assert_eq!(normalize("600123456", region("ES")).key(), "+34600123456");
    }

    /// Found by the property below: an Italian mobile whose national number starts with `39`
    /// (the country code) was read as `+39 00000001`, or not at all.
    #[test]
    fn a_national_number_starting_with_its_own_country_code_keeps_its_digits() {
        for raw in ["3900000001", "+393900000001", "00393900000001"] {
            assert_eq!(normalize(raw, region("IT")).key(), "+393900000001", "{raw}");
        }
        // Even when the stripped reading is a valid number too.
        assert_eq!(normalize("3901500000", region("IT")).key(), "+393901500000");
    }

    /// The national reading as it was before it learnt to parse once: both readings, always.
    fn national_reading_parsing_both(r: Region, digits: &str) -> Option<(String, bool)> {
        let prefixed = phonenumber::metadata::DATABASE
            .by_id(r.as_ref())
            .and_then(|m| parse(None, &format!("+{}{digits}", m.country_code())));
        if prefixed.as_ref().is_some_and(|n| n.1) {
            return prefixed;
        }
        let plain = parse(Some(r), digits);
        match plain {
            Some(n) if n.1 => Some(n),
            plain => plain.or(prefixed),
        }
    }

    /// The E.164 form is the library formatter's, for every region's example numbers of every
    /// type read nationally and internationally, and for numbers with leading zeros.
    #[test]
    fn the_e164_form_is_the_library_formatters() {
        use phonenumber::metadata::DATABASE;
        let mut compared = 0;
        for meta in DATABASE.iter() {
            let Ok(r) = meta.id().parse::<Region>() else {
                continue;
            };
            let d = meta.descriptors();
            let examples = [d.general(), d.fixed_line().unwrap_or(d.general())]
                .into_iter()
                .chain(d.mobile())
                .chain(d.toll_free())
                .filter_map(|desc| desc.example());
            let cc = meta.country_code();
            for example in examples {
                for (region, text) in [
                    (Some(r), example.to_string()),
                    (None, format!("+{cc}{example}")),
                    (None, format!("+{cc}0{example}")),
                ] {
                    if let Ok(n) = phonenumber::parse(region, &text) {
                        assert_eq!(
                            e164_of(&n),
                            n.format().mode(Mode::E164).to_string(),
                            "{text} on a {} line",
                            meta.id()
                        );
                        compared += 1;
                    }
                }
            }
        }
        assert!(compared > 1_000, "{compared}");
    }

    /// Every region's example numbers of every type, spelt the ways a line sees them (as they
    /// are, after a national prefix, after the region's code, after the code twice, after a
    /// `0`), read on a line of that region: parsing once gives what parsing both gave.
    #[test]
    fn parsing_once_reads_every_example_number_as_parsing_both_did() {
        use phonenumber::metadata::DATABASE;
        let mut compared = 0;
        let mut once = 0;
        for meta in DATABASE.iter() {
            let Ok(r) = meta.id().parse::<Region>() else {
                continue;
            };
            let d = meta.descriptors();
            let examples = [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.premium_rate(),
                d.voip(),
                d.uan(),
            ]
            .into_iter()
            .flatten()
            .filter_map(|desc| desc.example());
            let cc = meta.country_code();
            for example in examples {
                let mut spellings = vec![
                    example.to_string(),
                    format!("{cc}{example}"),
                    format!("{cc}{cc}{example}"),
                    format!("0{example}"),
                ];
                if let Some(p) = meta.national_prefix() {
                    spellings.push(format!("{p}{example}"));
                }
                for digits in spellings {
                    let new = national_reading(r, &digits);
                    let old = national_reading_parsing_both(r, &digits);
                    assert_eq!(new, old, "{digits} on a {} line", meta.id());
                    compared += 1;
                    if let Some((e164, true)) = &parse(Some(r), &digits)
                        && prefixed_reading_is_moot(r, &digits, e164)
                    {
                        once += 1;
                    }
                }
            }
        }
        assert!(compared > 3_000, "{compared}");
        // The shortcut is taken for a fair share of them (about a fifth: many spellings here
        // are invalid or carry a national prefix), or it saves nothing.
        assert!(once * 10 > compared, "{once} of {compared}");
    }

    /// Countries with a leading part of a valid mobile or geographic range.
    const COUNTRIES: [(&str, &str, &str, usize); 9] = [
        ("GB", "44", "7", 9),
        ("ES", "34", "6", 8),
        ("DE", "49", "151", 8),
        ("FR", "33", "6", 8),
        ("US", "1", "212", 7),
        ("AE", "971", "55", 7),
        ("IT", "39", "3", 9),
        ("NL", "31", "6", 8),
        ("IE", "353", "85", 7),
    ];

    /// Line regions for the comparison of the two national readings: the countries above and
    /// regions whose metadata rewrites national digits (national prefixes for parsing, carrier
    /// codes, shared country codes).
    const LINES: [&str; 18] = [
        "GB", "ES", "DE", "FR", "US", "AE", "IT", "NL", "IE", "SA", "EG", "AR", "MX", "BR", "RU",
        "KZ", "JE", "CA",
    ];

    fn number() -> impl proptest::strategy::Strategy<Value = (usize, String)> {
        use proptest::prelude::*;
        (0..COUNTRIES.len()).prop_flat_map(|i| {
            let (_, _, lead, tail) = COUNTRIES[i];
            proptest::collection::vec(0u8..10, tail).prop_map(move |d| {
                let tail: String = d.iter().map(|d| char::from(b'0' + d)).collect();
                (i, format!("{lead}{tail}"))
            })
        })
    }

    proptest::proptest! {
        // 256 cases in a plain run; `SLAWATCH_FUZZ_CASES` raises it (20,000 pass).
        #![proptest_config(proptest::test_runner::Config {
            cases: std::env::var("SLAWATCH_FUZZ_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
            ..proptest::test_runner::Config::default()
        })]

        /// One customer, one key: `+CC…`, `00CC…` and `CC…` agree on any line, valid or not;
        /// the national spelling agrees on a line of its own country when the number is valid.
        #[test]
        fn every_spelling_gives_one_key((i, nsn) in number(), line in 0..COUNTRIES.len()) {
            let (country, cc, _, _) = COUNTRIES[i];
            let line_region = region(COUNTRIES[line].0);
            let plus = normalize(&format!("+{cc}{nsn}"), line_region);
            let key = plus.key();
            proptest::prop_assert!(key.starts_with(&format!("+{cc}")), "{key}");
            let spaced = format!("+{cc} {} {}", &nsn[..3], &nsn[3..]);
            proptest::prop_assert_eq!(normalize(&spaced, line_region).key(), key.clone());
            proptest::prop_assert_eq!(normalize(&format!("00{cc}{nsn}"), line_region).key(), key.clone());
            let bare = format!("{cc}{nsn}");
            // A bare string that is itself a valid number of the line's country is read as that
            // (the national reading wins when it is valid).
            let national_reading = line_region
                .and_then(|r| parse(Some(r), &bare))
                .is_some_and(|n| n.1);
            if bare.len() >= 11 && !national_reading {
                proptest::prop_assert_eq!(normalize(&bare, line_region).key(), key.clone(), "{}", bare);
            }
            if plus.status == NumberStatus::Valid {
                let parsed = phonenumber::parse(None, &key).unwrap();
                let national: String = parsed
                    .format()
                    .mode(Mode::National)
                    .to_string()
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect();
                proptest::prop_assert_eq!(
                    normalize(&national, region(country)).key(),
                    key.clone(),
                    "{}",
                    national
                );
            }
        }

        /// Parsing once reads any digits as parsing both did, on any of the lines above and on
        /// lines whose metadata rewrites the digits (national prefixes, carrier codes).
        #[test]
        fn parsing_once_reads_generated_digits_as_parsing_both_did(
            line in 0..LINES.len(),
            lead in 0..5usize,
            tail in proptest::collection::vec(0u8..10, 1..15),
        ) {
            let r = region(LINES[line]).unwrap();
            let cc = phonenumber::metadata::DATABASE.by_id(r.as_ref()).unwrap().country_code();
            let (_, other_cc, mobile, _) = COUNTRIES[line % COUNTRIES.len()];
            let lead = match lead {
                0 => String::new(),
                1 => cc.to_string(),
                2 => "0".to_string(),
                3 => other_cc.to_string(),
                _ => format!("{cc}{mobile}"),
            };
            let tail: String = tail.iter().map(|d| char::from(b'0' + d)).collect();
            let digits = format!("{lead}{tail}");
            proptest::prop_assert_eq!(
                national_reading(r, &digits),
                national_reading_parsing_both(r, &digits),
                "{} on a {} line",
                digits,
                LINES[line]
            );
        }
    }
}
