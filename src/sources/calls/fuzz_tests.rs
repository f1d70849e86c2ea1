//! Arbitrary bytes through every call-log parser and the rules behind them: nothing may panic.
//!
//! Each property runs `SLAWATCH_FUZZ_CASES` cases (default 2 000 in a plain `cargo test`); a long
//! run is `SLAWATCH_FUZZ_CASES=1000000 cargo test --release --lib fuzz_`. Every input that once
//! panicked is kept below as a plain regression test.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::Config;

use super::cdr_csv::{self, CdrLayout, FileZone};
use super::generic_csv::{self, GenericCsv};
use super::lines::{CallLines, Line, QueueCalls, cdr_observation};
use super::queue_log;
use super::twilio;
use slawatch_core::phone_number::region;

pub(crate) fn fuzz_config() -> Config {
    let cases = std::env::var("SLAWATCH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn lines() -> CallLines {
    CallLines {
        lines: vec![Line {
            name: "soporte".into(),
            matches: vec!["+34910000000".into(), "600".into(), "soporte-es".into()],
            language: None,
            region: region("ES"),
        }],
        default_region: region("ES"),
        extension_max_digits: 5,
        exclude_withheld: false,
        min_callback_seconds: 1,
        outbound_prefix: None,
        queue_pickups_from_queue_log: false,
    }
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_600_000, 0).unwrap()
}

const LAYOUTS: [CdrLayout; 5] = [
    CdrLayout::Columns16,
    CdrLayout::Uniqueid17,
    CdrLayout::Userfield17,
    CdrLayout::Columns18,
    CdrLayout::Columns21,
];

fn zones() -> [FileZone; 2] {
    [FileZone::Utc, FileZone::Local(chrono_tz::Europe::Madrid)]
}

fn cdr(bytes: &[u8]) {
    let cut = cdr_csv::complete_prefix(bytes);
    assert!(cut <= bytes.len());
    for layout in LAYOUTS {
        for zone in zones() {
            for (_, row) in cdr_csv::parse(&bytes[..cut], 1, layout, zone) {
                if let Ok(row) = row {
                    let _ = cdr_observation("pbx", &row, &lines(), now());
                }
            }
        }
    }
}

fn queue(text: &str) {
    let mut calls = QueueCalls::default();
    for (i, line) in text.lines().enumerate() {
        if let Ok(e) = queue_log::parse_line(line, i as u64 + 1) {
            let _ = calls.observe("pbx", &e, &lines(), now());
        }
    }
}

fn generic(bytes: &[u8]) {
    let fields: Vec<String> = [
        "id", "from", "to", "start", "answer", "end", "agent", "name",
    ]
    .map(String::from)
    .to_vec();
    for zone in zones() {
        let map = GenericCsv {
            fields: fields.clone(),
            call_id: 0,
            number: 1,
            dialled: 2,
            start: 3,
            answer: Some(4),
            end: Some(5),
            agent: Some(6),
            name: Some(7),
            zone,
        };
        let cut = cdr_csv::complete_prefix(bytes);
        for (_, row) in generic_csv::parse(&bytes[..cut], 1, &map) {
            if let Ok(row) = row {
                let _ = generic_csv::observation("csv", &row, &lines(), now());
            }
        }
    }
}

fn twilio_page(bytes: &[u8]) {
    if let Ok(page) = twilio::parse_page(bytes) {
        let _ = twilio::observations("tw", &page.calls, &lines(), now());
    }
}

/// A CDR-ish line: quoted and bare fields from a small alphabet that reaches the time, number
/// and disposition paths far more often than uniform bytes do.
fn cdr_line() -> impl Strategy<Value = String> {
    let field = prop_oneof![
        "[0-9 :.+-]{0,24}",
        "\"[ -~]{0,24}\"",
        Just("2026-01-05 09:15:42".to_string()),
        "-?[0-9]{1,7}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}",
        Just("ANSWERED".to_string()),
        "[0-9]{1,20}\\.[0-9]{1,6}",
        any::<String>(),
    ];
    proptest::collection::vec(field, 0..24).prop_map(|f| f.join(",") + "\n")
}

fn queue_line() -> impl Strategy<Value = String> {
    let epoch = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        Just(i64::MIN.to_string()),
        Just("-8334632851200".to_string()),
        "[0-9]{1,12}",
    ];
    let event = prop_oneof![
        Just("ENTERQUEUE"),
        Just("CONNECT"),
        Just("ABANDON"),
        Just("EXITWITHTIMEOUT"),
        Just("RINGNOANSWER"),
    ];
    (
        epoch,
        "[0-9.-]{0,20}",
        event,
        proptest::collection::vec(any::<String>(), 0..4),
    )
        .prop_map(|(at, id, ev, data)| format!("{at}|{id}|soporte-es|NONE|{ev}|{}", data.join("|")))
}

fn twilio_json() -> impl Strategy<Value = String> {
    let time = prop_oneof![
        Just("Mon, 05 Jan 2026 09:15:42 +0000".to_string()),
        "[A-Za-z]{3}, [0-9]{1,2} [A-Za-z]{3} -?[0-9]{1,6} [0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}",
        any::<String>(),
    ];
    let call = (
        "CA[0-9]{1,2}",
        proptest::option::of("CA[0-9]{1,2}"),
        prop_oneof![Just("inbound"), Just("outbound-dial"), Just("outbound-api")],
        prop_oneof![Just("completed"), Just("in-progress"), Just("no-answer")],
        time.clone(),
        proptest::option::of(time),
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            "[0-9]{1,20}",
            any::<String>()
        ],
        any::<String>(),
    )
        .prop_map(|(sid, parent, dir, status, start, end, duration, from)| {
            serde_json::json!({
                "sid": sid, "parent_call_sid": parent, "direction": dir, "status": status,
                "start_time": start, "end_time": end, "duration": duration,
                "from": from, "to": "+34910000000", "answered_by": null,
            })
        });
    proptest::collection::vec(call, 0..6)
        .prop_map(|calls| serde_json::json!({ "calls": calls, "next_page_uri": null }).to_string())
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn fuzz_cdr_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        cdr(&bytes);
    }

    #[test]
    fn fuzz_cdr_lines(lines in proptest::collection::vec(cdr_line(), 0..4)) {
        cdr(lines.concat().as_bytes());
    }

    #[test]
    fn fuzz_queue_log_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        queue(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn fuzz_queue_log_lines(lines in proptest::collection::vec(queue_line(), 0..6)) {
        queue(&lines.join("\n"));
    }

    #[test]
    fn fuzz_generic_csv_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        generic(&bytes);
    }

    #[test]
    fn fuzz_generic_csv_lines(lines in proptest::collection::vec(cdr_line(), 0..4)) {
        generic(lines.concat().as_bytes());
    }

    #[test]
    fn fuzz_twilio_page_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        twilio_page(&bytes);
    }

    #[test]
    fn fuzz_twilio_page_json(page in twilio_json()) {
        twilio_page(page.as_bytes());
    }
}

/// Regression: a `duration` beyond what a `TimeDelta` holds panicked the poller.
#[test]
fn a_twilio_duration_out_of_range_falls_back_to_the_start_time() {
    for duration in [
        "9223372036854775807",
        "-9223372036854775808",
        "99999999999999",
        "-5",
    ] {
        let page = format!(
            r#"{{"calls":[
            {{"sid":"CA1","direction":"inbound","status":"completed","from":"+34600123456",
              "to":"+34910000000","start_time":"Mon, 05 Jan 2026 09:15:42 +0000",
              "end_time":"Mon, 05 Jan 2026 09:20:00 +0000","duration":"258"}},
            {{"sid":"CA2","parent_call_sid":"CA1","direction":"outbound-dial","status":"completed",
              "from":"+34910000000","to":"sip:2001@pbx","start_time":"Mon, 05 Jan 2026 09:16:00 +0000",
              "end_time":"Mon, 05 Jan 2026 09:20:00 +0000","duration":"{duration}"}}]}}"#
        );
        let page = twilio::parse_page(page.as_bytes()).unwrap();
        let obs = twilio::observations("tw", &page.calls, &lines(), now());
        let slawatch_core::tracker::observation::Observation::CallAnswered(a) = &obs[0] else {
            panic!("{obs:?}")
        };
        assert_eq!(
            a.answered_at,
            DateTime::parse_from_rfc3339("2026-01-05T09:16:00Z")
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            "{duration}"
        );
    }
}

/// Regression: a queue_log epoch near the minimum date panicked on `- 24h`.
#[test]
fn a_queue_log_epoch_near_the_minimum_is_read_without_panic() {
    let min = DateTime::<Utc>::MIN_UTC.timestamp();
    for at in [min, min + 1, min + 3_600] {
        queue(&format!(
            "{at}|1767604542.1|soporte-es|NONE|ENTERQUEUE||600123456|1\n{at}|1767604542.1|soporte-es|Agent/1|CONNECT|5|1767604542.2|1"
        ));
    }
}

/// Regression: a local-time CDR row dated at the first representable day (`-262143-01-01`)
/// reached `- 3h` in the DST-gap fallback.
#[test]
fn a_local_cdr_time_at_the_minimum_date_is_rejected_not_a_panic() {
    let naive = chrono::NaiveDateTime::MIN;
    let _ = cdr_csv::local(chrono_tz::Europe::Madrid, naive, None);
    let _ = cdr_csv::parse_time(
        "-262143-01-01 00:00:00",
        FileZone::Local(chrono_tz::Europe::Madrid),
    );
}
