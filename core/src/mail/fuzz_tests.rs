//! Arbitrary bytes through the MIME/header parser and the classification behind it: nothing may
//! panic, whatever the input. `SLAWATCH_FUZZ_CASES` sets the cases per property (default 2 000);
//! a long run is `SLAWATCH_FUZZ_CASES=1000000 cargo test --release -p slawatch-core --lib fuzz_`.

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::tests::envelope;
use super::*;
use crate::tracker::classify::{classify_inbound, classify_outbound};

fn fuzz_config() -> Config {
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

fn desk() -> crate::desk::DeskSettings {
    crate::desk::DeskSettings::with_address(crate::testing::SUPPORT)
}

fn check(raw: &[u8]) {
    for mail in [
        parse_message(raw, &envelope()),
        parse_complete_message(raw, &envelope()),
    ] {
        let _ = classify_inbound(&mail, &desk());
        let _ = classify_outbound(&mail, &desk());
    }
}

/// Header lines built from names the rules read and values with folding, encoded words,
/// boundaries and stray bytes: reaches the header and MIME paths far more often than uniform
/// bytes.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        Just("From"),
        Just("To"),
        Just("Cc"),
        Just("Subject"),
        Just("Date"),
        Just("Message-ID"),
        Just("In-Reply-To"),
        Just("References"),
        Just("Content-Type"),
        Just("Content-Transfer-Encoding"),
        Just("Auto-Submitted"),
        Just("Precedence"),
        Just("Return-Path"),
        Just("X-Autoreply"),
        Just("X-Auto-Response-Suppress"),
        Just("Thread-Topic"),
        Just("X-MS-Exchange-Inbox-Rules-Loop"),
        Just("X-MS-Exchange-Generated-Message-Source"),
    ]
    .prop_map(String::from);
    let name = prop_oneof![name, "[A-Za-z-]{1,20}"];
    let value = prop_oneof![
        "[ -~]{0,60}",
        Just("multipart/mixed; boundary=\"b\"".to_string()),
        Just("multipart/report; report-type=delivery-status; boundary=b".to_string()),
        Just("=?utf-8?B?w6HDqQ==?= =?iso-8859-1?Q?=E1?=".to_string()),
        Just("<a@b> <c@d>".to_string()),
        any::<String>(),
    ];
    let header = (
        name,
        value,
        prop_oneof![Just("\r\n"), Just("\n"), Just("\r\n\t")],
    )
        .prop_map(|(n, v, eol)| format!("{n}: {v}{eol}").into_bytes());
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "(--b\r\n|--b--\r\n|Content-Type: text/plain; charset=[a-z0-9-]{1,12}\r\n\r\n|[ -~]{0,40}\r\n){0,12}"
            .prop_map(String::into_bytes),
    ];
    (proptest::collection::vec(header, 0..12), body).prop_map(|(headers, body)| {
        let mut raw = headers.concat();
        raw.extend_from_slice(b"\r\n");
        raw.extend(body);
        raw
    })
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn fuzz_mail_bytes(raw in proptest::collection::vec(any::<u8>(), 0..1_000)) {
        check(&raw);
    }

    #[test]
    fn fuzz_mail_headers(raw in message()) {
        check(&raw);
    }
}
