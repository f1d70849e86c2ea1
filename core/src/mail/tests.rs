//! Parser tests on fixture bytes (`tests/fixtures/mail/`).

use chrono::TimeZone;

use super::*;

pub(crate) fn envelope() -> Envelope {
    Envelope {
        source: "mail".into(),
        folder: "INBOX".into(),
        delivered_at: Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap(),
        seen_at: Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 5).unwrap(),
    }
}

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/mail/",
            $name
        ))
    };
}
#[allow(unused_imports)]
pub(crate) use fixture;

pub(crate) fn parse_fixture(raw: &[u8]) -> Mail {
    parse_complete_message(raw, &envelope())
}

fn has(mail: &Mail, p: ParseProblem) -> bool {
    mail.problems.contains(&p)
}

#[test]
fn plain_english() {
    let m = parse_fixture(fixture!("plain_en.eml"));
    assert_eq!(m.message_id, "<CAF1234.abc@mail.customer.example>");
    assert!(!m.message_id_synthetic);
    let from = m.from.as_ref().unwrap();
    assert_eq!(from.email, "jane.doe@customer.example");
    assert_eq!(from.name.as_deref(), Some("Jane Doe"));
    assert_eq!(m.to[0].email, "support@example.com");
    assert_eq!(m.subject, "Cannot log in to my account");
    assert_eq!(m.source, "mail");
    assert_eq!(m.folder, "INBOX");
    assert_eq!(m.delivered_at, envelope().delivered_at);
    assert_eq!(m.seen_at, envelope().seen_at);
    assert_eq!(
        m.date_header,
        Some(Utc.with_ymd_and_hms(2026, 11, 23, 9, 58, 12).unwrap())
    );
    assert_eq!(
        m.signals.return_path.as_deref(),
        Some("jane.doe@customer.example")
    );
    assert!(
        m.text_sample
            .starts_with("Cannot log in to my account Hello, Since this morning")
    );
    assert!(
        !m.text_sample.contains("Customer Corp"),
        "signature dropped"
    );
    assert!(m.problems.is_empty(), "{:?}", m.problems);
    assert_eq!(m.digest.len(), 64);
}

#[test]
fn spanish_iso_8859_1() {
    let m = parse_fixture(fixture!("spanish_latin1.eml"));
    assert_eq!(m.from.as_ref().unwrap().name.as_deref(), Some("María Peña"));
    assert_eq!(m.subject, "No puedo descargar mi factura de noviembre");
    assert!(m.text_sample.contains("¿Podrían enviármela por correo?"));
    assert!(m.problems.is_empty(), "{:?}", m.problems);
}

#[test]
fn arabic_windows_1256() {
    let m = parse_fixture(fixture!("arabic_1256.eml"));
    assert_eq!(
        m.from.as_ref().unwrap().name.as_deref(),
        Some("أحمد الخطيب")
    );
    assert_eq!(m.subject, "مشكلة في الدفع");
    assert!(m.text_sample.contains("لقد دفعت الفاتورة"));
    assert!(m.problems.is_empty(), "{:?}", m.problems);
}

#[test]
fn outlook_customer_signals() {
    let m = parse_fixture(fixture!("outlook_suppress.eml"));
    assert!(m.signals.auto_response_suppress);
    assert_eq!(m.signals.auto_submitted, None);
    assert_eq!(m.signals.vendor_autoreply, None);
    assert_eq!(m.content_language.as_deref(), Some("en-US"));
    assert_eq!(
        m.from.as_ref().unwrap().name.as_deref(),
        Some("Smith, Robert")
    );
    assert!(m.text_sample.contains("Please reissue it"));
    assert!(m.problems.is_empty(), "{:?}", m.problems);
}

#[test]
fn automation_signals() {
    let m = parse_fixture(fixture!("auto_replied.eml"));
    assert_eq!(m.signals.auto_submitted.as_deref(), Some("auto-replied"));
    let m = parse_fixture(fixture!("vacation.eml"));
    assert_eq!(m.signals.auto_submitted.as_deref(), Some("vacation"));
    assert_eq!(m.signals.vendor_autoreply.as_deref(), Some("X-Autoreply"));
    let m = parse_fixture(fixture!("precedence_bulk.eml"));
    assert_eq!(m.signals.precedence.as_deref(), Some("bulk"));
    assert_eq!(
        m.text_sample,
        "Black Friday: 50% off Black Friday & more! Save 50% today."
    );
    let m = parse_fixture(fixture!("mailing_list.eml"));
    assert!(m.signals.list_header);
    let m = parse_fixture(fixture!("x_loop.eml"));
    assert!(m.signals.x_loop);
    let m = parse_fixture(fixture!("spam.eml"));
    assert!(m.signals.spam_flag);
    let m = parse_fixture(fixture!("plain_en.eml"));
    assert_eq!(
        m.signals,
        AutomationSignals {
            return_path: Some("jane.doe@customer.example".into()),
            ..AutomationSignals::default()
        }
    );
}

#[test]
fn dsn_and_bounce() {
    let m = parse_fixture(fixture!("dsn.eml"));
    assert!(m.signals.delivery_status_report);
    assert_eq!(m.signals.return_path.as_deref(), Some(""));
    assert_eq!(
        m.from.as_ref().unwrap().email,
        "mailer-daemon@mx.example.com"
    );
    assert!(m.problems.is_empty(), "{:?}", m.problems);
    let m = parse_fixture(fixture!("mailer_daemon.eml"));
    assert!(m.signals.failed_recipients);
    assert!(!m.signals.delivery_status_report);
    assert_eq!(m.signals.return_path.as_deref(), Some(""));
}

#[test]
fn missing_message_id_is_synthetic_and_stable() {
    let raw = fixture!("missing_message_id.eml");
    let m = parse_fixture(raw);
    assert!(m.message_id_synthetic);
    assert!(has(&m, ParseProblem::MissingMessageId));
    assert_eq!(
        m.message_id,
        format!("<{}@synthetic.slawatch.invalid>", m.digest)
    );
    assert_eq!(parse_fixture(raw).message_id, m.message_id);
}

#[test]
fn duplicate_message_id_differs_by_digest() {
    let a = parse_fixture(fixture!("duplicate_id_a.eml"));
    let b = parse_fixture(fixture!("duplicate_id_b.eml"));
    assert_eq!(a.message_id, b.message_id);
    assert_ne!(a.digest, b.digest);
}

#[test]
fn garbage_header_bytes_are_decoded_lossily() {
    let m = parse_fixture(fixture!("garbage_header.eml"));
    assert!(has(&m, ParseProblem::InvalidHeaderBytes));
    assert_eq!(m.from.as_ref().unwrap().email, "joerg@muller.example");
    assert_eq!(
        m.from.as_ref().unwrap().name.as_deref(),
        Some("Jörg Müller")
    );
    assert_eq!(m.subject, "Grüße, Rechnung falsch");
}

#[test]
fn unterminated_boundary_is_malformed_only_when_complete() {
    let raw = fixture!("malformed_mime.eml");
    let m = parse_complete_message(raw, &envelope());
    assert!(has(&m, ParseProblem::MalformedMime));
    assert!(m.text_sample.contains("The app crashes"));
    let m = parse_message(raw, &envelope());
    assert!(!has(&m, ParseProblem::MalformedMime));
}

#[test]
fn date_years_off_is_skew() {
    let m = parse_fixture(fixture!("date_skew.eml"));
    assert!(has(&m, ParseProblem::DateSkew));
    assert_eq!(
        m.date_header,
        Some(Utc.with_ymd_and_hms(2019, 1, 1, 8, 0, 0).unwrap())
    );
    let m = parse_message(b"From: a@b.c\r\nDate: yesterday-ish\r\n\r\n", &envelope());
    assert!(has(&m, ParseProblem::DateSkew));
    assert_eq!(m.date_header, None);
}

#[test]
fn unknown_charset() {
    let m = parse_fixture(fixture!("unknown_charset.eml"));
    assert!(has(&m, ParseProblem::UnknownCharset));
    assert_eq!(m.from.as_ref().unwrap().email, "worf@ship.example");
    assert!(m.text_sample.contains("I need help"));
}

#[test]
fn reply_threading_headers() {
    let m = parse_fixture(fixture!("reply_threaded.eml"));
    assert_eq!(m.in_reply_to, vec!["<reply-1@example.com>"]);
    assert_eq!(
        m.references,
        vec![
            "<CAF1234.abc@mail.customer.example>",
            "<reply-1@example.com>",
            "<bare-id@example.com>"
        ]
    );
    assert_eq!(
        m.text_sample,
        "Cannot log in to my account It works again, thank you!"
    );
}

#[test]
fn truncated_body_keeps_digest_and_text() {
    let full = fixture!("truncated_full.eml");
    let prefix = fixture!("truncated_prefix.eml");
    let a = parse_complete_message(full, &envelope());
    let b = parse_message(prefix, &envelope());
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.message_id, b.message_id);
    assert!(a.problems.is_empty(), "{:?}", a.problems);
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    assert!(b.text_sample.contains("Line 0 of a long explanation"));
    // Header only (an IMAP header fetch) gives the same digest too.
    let header = headers::header_block(prefix);
    assert_eq!(parse_message(header, &envelope()).digest, a.digest);
}

#[test]
fn large_attachment_is_bounded() {
    let mut raw = b"From: a@b.example\r\nMessage-ID: <big@b.example>\r\nContent-Type: multipart/mixed; boundary=\"Z\"\r\n\r\n--Z\r\nContent-Type: text/plain\r\n\r\nHello there\r\n--Z\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    for _ in 0..(5 * 1024 * 1024 / 77) {
        raw.extend_from_slice(&[b'Q'; 76]);
        raw.extend_from_slice(b"\n");
    }
    raw.extend_from_slice(b"--Z--\r\n");
    let m = parse_complete_message(&raw, &envelope());
    assert_eq!(m.message_id, "<big@b.example>");
    assert!(m.text_sample.contains("Hello there"));
    assert!(!has(&m, ParseProblem::MalformedMime));
}

#[test]
fn never_panics_on_odd_input() {
    let inputs: [&[u8]; 9] = [
        b"",
        b"\r\n\r\n",
        b"garbage without colon",
        b"\xff\xfe\x00\x01",
        b"From:\r\n\r\n",
        b"Content-Type: multipart/mixed\r\n\r\n--x",
        b"Message-ID: <>\r\nIn-Reply-To: <<<>>> ( (\r\nReferences: <a@b\r\n\r\n",
        b"Subject: =?utf-8?B?\xff?=\r\nFrom: =?x?q??= <a@b.c>\r\n\r\n<html><style",
        b"From: \"unterminated <a@b.c>\r\nTo: ,,,@,<>\r\n\r\n",
    ];
    for raw in inputs {
        let m = parse_message(raw, &envelope());
        assert!(!m.message_id.is_empty());
        let m = parse_complete_message(raw, &envelope());
        assert!(!m.digest.is_empty());
    }
    let m = parse_message(b"", &envelope());
    assert!(has(&m, ParseProblem::MissingFrom));
    assert!(has(&m, ParseProblem::MissingMessageId));
    assert!(has(&m, ParseProblem::MalformedMime));
}
