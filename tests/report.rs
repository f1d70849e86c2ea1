//! Auditor tests, through the `slawatch` binary: tampering with the ledger file is caught by
//! `audit verify` at exactly the changed event; report figures are checked against a fixture
//! ledger whose numbers are computed by hand below; the CSV is parsed back and compared with
//! the JSON; the HTML is printed by headless Chromium to PDF and PNG and checked.
//!
//! Needs `sqlite3`, `chromium`, `pdftotext` and `pdftoppm` on `PATH`, and the PostgreSQL server
//! binaries (see `support::postgres`); the tests fail, never skip, when one is missing.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::Value;
use slawatch::notify::AlertKind;
use slawatch::report::csv as report_csv;
use slawatch::store::Store;
use slawatch_core::domain::{Channel, InquiryId, Language};
use slawatch_core::tracker::event::{
    Contradiction, Event, ExclusionReason, InquiryExcluded, InquiryKind, InquiryOpened,
    InquiryResponded, LanguageSource, Outcome, ResponseKind, RevisedResponse, RevisionReason,
};
use slawatch_core::tracker::observation::AckVia;
use slawatch_core::tracker::policy::Policy;

/// A temporary world: a config file, an empty Maildir and a ledger file.
struct World {
    dir: tempfile::TempDir,
    config: PathBuf,
    db: PathBuf,
}

impl World {
    async fn new(events: &[Event]) -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(dir.path().join("mail").join(sub)).expect("maildir");
        }
        let db = dir.path().join("ledger.db");
        let config = dir.path().join("slawatch.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[store]
url = "sqlite://{db}"
[desk]
support_addresses = ["support@desk.example"]
internal_domains = ["desk.example"]
time_zone = "UTC"
[policy]
target = "15m"
warn = ["10m"]
[sources.mail]
type = "maildir"
path = "{mail}"
inbox_folders = ["INBOX"]
sent_folders = ["Sent"]
"#,
                db = db.display(),
                mail = dir.path().join("mail").display()
            ),
        )
        .expect("write config");
        let store = Store::open(&format!("sqlite://{}", db.display()))
            .await
            .expect("open ledger");
        store.append(Utc::now(), events, &[]).await.expect("append");
        store.close().await;
        World { dir, config, db }
    }

    fn slawatch(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_slawatch"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("SLAWATCH_CONFIG")
            .output()
            .expect("run slawatch")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn sqlite3(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .unwrap_or_else(|e| panic!("the sqlite3 command-line tool is required by this test: {e}"));
    assert!(out.status.success(), "sqlite3 {sql:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What an intruder does first: drop the guard triggers.
fn tamper(db: &Path, sql: &str) {
    sqlite3(
        db,
        &format!(
            "DROP TRIGGER IF EXISTS ledger_no_update; DROP TRIGGER IF EXISTS ledger_no_delete; {sql}"
        ),
    );
}

fn day() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
}

struct Spec<'a> {
    id: &'a str,
    channel: Channel,
    language: Language,
    received_at: DateTime<Utc>,
    /// Seconds between receipt and the monitor first seeing it.
    detected_after: i64,
    subject: &'a str,
}

fn opened(s: &Spec<'_>) -> Event {
    Event::InquiryOpened(Box::new(InquiryOpened {
        inquiry_id: InquiryId(s.id.into()),
        channel: s.channel,
        source: "mail".into(),
        external_id: format!("<{}@customer.example>", s.id),
        thread_id: format!("<{}@customer.example>", s.id),
        digest: Some(format!("digest-{}", s.id)),
        customer: format!("{}@customer.example", s.id),
        customer_name: None,
        subject: s.subject.into(),
        language: s.language,
        language_source: LanguageSource::Text,
        reply_to: Vec::new(),
        received_at: s.received_at,
        first_seen_at: s.received_at + Duration::seconds(s.detected_after),
        date_header: None,
        deadline_at: s.received_at + Duration::minutes(15),
        warn_at: vec![s.received_at + Duration::minutes(10)],
        policy: Policy::default().version(),
        kind: InquiryKind::First,
        call: None,
    }))
}

fn responded(id: &str, received: DateTime<Utc>, after: i64, outcome: Outcome) -> Event {
    Event::InquiryResponded(Box::new(InquiryResponded {
        inquiry_id: InquiryId(id.into()),
        at: received + Duration::seconds(after),
        response_seconds: after,
        kind: ResponseKind::Email,
        responder: "support@desk.example".into(),
        external_id: Some(format!("<reply-{id}@desk.example>")),
        outcome,
        via: None,
        note: None,
    }))
}

fn warned(id: &str, received: DateTime<Utc>) -> Event {
    Event::InquiryWarned {
        inquiry_id: InquiryId(id.into()),
        index: 0,
        at: received + Duration::minutes(10),
    }
}

fn breached(id: &str, received: DateTime<Utc>) -> Event {
    Event::InquiryBreached {
        inquiry_id: InquiryId(id.into()),
        at: received + Duration::minutes(15),
    }
}

/// The fixture. In the period [2026-03-01, 2026-03-03) UTC:
///
/// | id | channel | lang | received       | outcome                                   |
/// |----|---------|------|----------------|-------------------------------------------|
/// | a  | email   | en   | 03-01 09:00    | answered after 300 s: met                 |
/// | b  | email   | es   | 03-01 10:00    | breached, answered after 1200 s: missed   |
/// | c  | phone   | ar   | 03-01 11:00    | breached, never answered: missed; seen 8 min late |
/// | d  | email   | ar   | 03-02 08:00    | open: pending                             |
/// | e  | email   | en   | 03-02 09:00    | excluded (auto_submitted)                 |
/// | f  | phone   | en   | 03-02 12:00    | manual ack after 60 s: met                |
///
/// Outside it: `h` (02-28 23:59, met) and `g` (03-03 00:00, the exclusive end, met).
fn fixture() -> Vec<Event> {
    let at = |d: i64, h: i64| day() + Duration::days(d) + Duration::hours(h);
    let spec = |id, channel, language, received_at, subject| Spec {
        id,
        channel,
        language,
        received_at,
        detected_after: 2,
        subject,
    };
    let policy = Policy::default();
    let mut ev = vec![Event::PolicyActivated {
        at: Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap(),
        policy: policy.record(),
    }];
    let h = day() - Duration::minutes(1);
    ev.push(opened(&spec(
        "h",
        Channel::Email,
        Language::En,
        h,
        "before",
    )));
    ev.push(responded("h", h, 100, Outcome::Met));

    let a = at(0, 9);
    ev.push(opened(&spec(
        "a",
        Channel::Email,
        Language::En,
        a,
        "Invoice question",
    )));
    ev.push(responded("a", a, 300, Outcome::Met));

    let b = at(0, 10);
    ev.push(opened(&spec(
        "b",
        Channel::Email,
        Language::Es,
        b,
        "¿Dónde está mi pedido?",
    )));
    ev.push(warned("b", b));
    ev.push(breached("b", b));
    ev.push(responded("b", b, 1200, Outcome::Missed));

    let c = at(0, 11);
    let mut sc = spec("c", Channel::Phone, Language::Ar, c, "مكالمة فائتة");
    sc.detected_after = 480;
    ev.push(opened(&sc));
    ev.push(warned("c", c));
    ev.push(breached("c", c));

    let d = at(1, 8);
    ev.push(opened(&spec(
        "d",
        Channel::Email,
        Language::Ar,
        d,
        "استفسار عن الفاتورة",
    )));

    let e = at(1, 9);
    ev.push(Event::InquiryExcluded(Box::new(InquiryExcluded {
        inquiry_id: InquiryId("e".into()),
        channel: Channel::Email,
        source: "mail".into(),
        external_id: "<e@customer.example>".into(),
        thread_id: "<e@customer.example>".into(),
        digest: Some("digest-e".into()),
        customer: "robot@customer.example".into(),
        customer_name: None,
        subject: "Out of office".into(),
        language: Language::En,
        received_at: e,
        first_seen_at: e,
        reason: ExclusionReason::AutoSubmitted,
        detail: "Auto-Submitted: auto-replied".into(),
    })));

    let f = at(1, 12);
    ev.push(opened(&spec("f", Channel::Phone, Language::En, f, "call")));
    ev.push(Event::InquiryResponded(Box::new(InquiryResponded {
        inquiry_id: InquiryId("f".into()),
        at: f + Duration::seconds(60),
        response_seconds: 60,
        kind: ResponseKind::Manual,
        responder: "maria".into(),
        external_id: None,
        outcome: Outcome::Met,
        via: Some(AckVia::Phone),
        note: Some("called back from mobile".into()),
    })));

    let g = at(2, 0);
    ev.push(opened(&spec("g", Channel::Email, Language::En, g, "after")));
    ev.push(responded("g", g, 30, Outcome::Met));
    ev.extend(monitor_record());
    ev
}

/// The monitor's own record, appended after the inquiries (the report orders by instant):
/// started 02-27 00:00, heartbeats every 5 min until 03-01 10:50, then a crash (no stop);
/// restarted 03-01 11:06 (c, received 11:00, is seen at 11:08: detected late, in that gap);
/// source `mail` down 03-02 07:55–08:20 (d, received 08:00, falls in it); heartbeats until
/// 03-03 00:25 and a clean stop at 00:30, after the period.
fn monitor_record() -> Vec<Event> {
    let t = |s: &str| s.parse::<DateTime<Utc>>().expect("instant");
    let beats = |from: &str, to: &str| {
        let (from, to) = (t(from), t(to));
        let mut out = Vec::new();
        let mut at = from;
        while at <= to {
            out.push(Event::MonitorHeartbeat { at });
            at += Duration::minutes(5);
        }
        out
    };
    let started = |at: &str| Event::MonitorStarted {
        at: t(at),
        version: "0.1.0".into(),
    };
    let mut ev = vec![started("2026-02-27T00:00:00Z")];
    ev.extend(beats("2026-02-27T00:05:00Z", "2026-03-01T10:50:00Z"));
    ev.push(started("2026-03-01T11:06:00Z"));
    ev.extend(beats("2026-03-01T11:10:00Z", "2026-03-02T07:50:00Z"));
    ev.push(Event::SourceDown {
        source: "mail".into(),
        at: t("2026-03-02T07:55:00Z"),
        error_kind: "connect".into(),
    });
    ev.extend(beats("2026-03-02T07:55:00Z", "2026-03-02T08:15:00Z"));
    ev.push(Event::SourceUp {
        source: "mail".into(),
        at: t("2026-03-02T08:20:00Z"),
    });
    ev.extend(beats("2026-03-02T08:20:00Z", "2026-03-03T00:25:00Z"));
    ev.push(Event::MonitorStopped {
        at: t("2026-03-03T00:30:00Z"),
    });
    ev
}

const PERIOD: [&str; 4] = ["--from", "2026-03-01", "--to", "2026-03-03"];

fn report(world: &World, format: &str, extra: &[&str]) -> String {
    let mut args = vec!["report"];
    args.extend(PERIOD);
    args.extend(["--format", format]);
    args.extend(extra);
    let out = world.slawatch(&args);
    assert!(out.status.success(), "{}", text(&out));
    // No progress bar into a pipe.
    assert!(out.stderr.is_empty(), "{}", text(&out));
    String::from_utf8(out.stdout).expect("utf-8 report")
}

#[tokio::test]
async fn audit_verify_prints_the_head_hash_of_an_intact_ledger() {
    let world = World::new(&fixture()).await;
    let out = world.slawatch(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    let head = sqlite3(
        &world.db,
        "SELECT hash FROM ledger ORDER BY seq DESC LIMIT 1",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("head hash: {}", head.trim())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} events", fixture().len())),
        "{stdout}"
    );
}

#[tokio::test]
async fn audit_verify_fails_at_exactly_the_edited_event() {
    let world = World::new(&fixture()).await;
    // Event 8 is b's breach: make it look answered in time by moving the breach.
    let seq = 8;
    let kind = sqlite3(
        &world.db,
        &format!("SELECT kind FROM ledger WHERE seq = {seq}"),
    );
    assert_eq!(kind.trim(), "inquiry_breached");
    tamper(
        &world.db,
        &format!(
            "UPDATE ledger SET payload = replace(payload, '10:15:00', '10:45:00') WHERE seq = {seq}"
        ),
    );
    let out = world.slawatch(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "event seq {seq} (kind inquiry_breached, inquiry b)"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("expected hash:") && stdout.contains("found hash:"),
        "{stdout}"
    );
    // The report says so too, and exits 1.
    let mut args = vec!["report"];
    args.extend(PERIOD);
    args.extend(["--format", "json"]);
    let out = world.slawatch(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let json: Value = serde_json::from_slice(&out.stdout).expect("json even when broken");
    assert_eq!(json["ledger"]["intact"], false);
}

#[tokio::test]
async fn audit_verify_fails_on_a_deleted_row() {
    let world = World::new(&fixture()).await;
    tamper(&world.db, "DELETE FROM ledger WHERE seq = 5");
    let out = world.slawatch(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("event seq 6"), "{stdout}");
    assert!(stdout.contains("missing"), "{stdout}");
}

#[tokio::test]
async fn audit_verify_fails_on_an_appended_forged_row() {
    let events = fixture();
    let world = World::new(&events).await;
    let next = events.len() + 1;
    // A forged breach, linked to the real head but with a made-up hash.
    tamper(
        &world.db,
        &format!(
            "INSERT INTO ledger (seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash) \
             SELECT {next}, recorded_at, 'inquiry_breached', 'a', \
             '{{\"type\":\"inquiry_breached\",\"inquiry_id\":\"a\",\"at\":\"2026-03-01T09:15:00Z\"}}', \
             hash, '{}' FROM ledger WHERE seq = {}",
            "ab".repeat(32),
            events.len()
        ),
    );
    let out = world.slawatch(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "event seq {next} (kind inquiry_breached, inquiry a)"
        )),
        "{stdout}"
    );
}

#[tokio::test]
async fn report_figures_match_the_hand_computed_fixture() {
    let world = World::new(&fixture()).await;
    let json: Value = serde_json::from_str(&report(&world, "json", &[])).expect("json");
    // The same figures, checking the whole chain.
    let whole: Value =
        serde_json::from_str(&report(&world, "json", &["--whole-chain"])).expect("json");
    assert_eq!(whole["ledger"]["scope"], "whole");
    assert_eq!(whole["totals"], json["totals"]);
    let t = &json["totals"];
    assert_eq!(t["received"], 6, "{t}");
    assert_eq!(t["excluded"], 1);
    assert_eq!(t["met"], 2);
    assert_eq!(t["missed"], 2);
    assert_eq!(t["missed_answered_late"], 1);
    assert_eq!(t["missed_unanswered"], 1);
    assert_eq!(t["pending"], 1);
    assert_eq!(t["compliance"], 0.5);
    assert_eq!(json["excluded_by_reason"]["auto_submitted"], 1);
    // email: a met, b missed, d pending, e excluded; phone: c missed, f met.
    assert_eq!(json["by_channel"]["email"]["received"], 4);
    assert_eq!(json["by_channel"]["email"]["compliance"], 0.5);
    assert_eq!(json["by_channel"]["phone"]["received"], 2);
    assert_eq!(json["by_channel"]["phone"]["compliance"], 0.5);
    // en: a, f met (e excluded); es: b missed; ar: c missed, d pending.
    assert_eq!(json["by_language"]["en"]["compliance"], 1.0);
    assert_eq!(json["by_language"]["es"]["compliance"], 0.0);
    assert_eq!(json["by_language"]["ar"]["missed"], 1);
    assert_eq!(json["by_language"]["ar"]["pending"], 1);
    assert_eq!(json["by_month"]["2026-03"]["received"], 6);
    assert_eq!(json["by_day"]["2026-03-01"]["compliance"], 1.0 / 3.0);
    assert_eq!(json["by_day"]["2026-03-02"]["compliance"], 1.0);
    // Answered: f 60 s, a 300 s, b 1200 s → nearest-rank p50 300, p90..max 1200.
    let rt = &json["response_times"];
    assert_eq!(
        (
            &rt["answered"],
            &rt["p50"],
            &rt["p90"],
            &rt["p99"],
            &rt["max"]
        ),
        (
            &3.into(),
            &300.into(),
            &1200.into(),
            &1200.into(),
            &1200.into()
        )
    );
    assert_eq!(json["response_times_by_channel"]["phone"]["max"], 60);
    // Breaches with evidence, oldest first.
    let breaches = json["breaches"].as_array().expect("breaches");
    assert_eq!(breaches.len(), 2);
    assert_eq!(breaches[0]["id"], "b");
    assert_eq!(breaches[0]["responded"], true);
    assert_eq!(breaches[0]["response_id"], "<reply-b@desk.example>");
    assert_eq!(breaches[0]["external_id"], "<b@customer.example>");
    assert_eq!(breaches[0]["alerts"].as_array().map(Vec::len), Some(2));
    assert_eq!(breaches[1]["id"], "c");
    assert_eq!(breaches[1]["responded"], false);
    // Exclusions with their reason and evidence.
    assert_eq!(json["exclusions"][0]["reason"], "auto_submitted");
    assert_eq!(
        json["exclusions"][0]["detail"],
        "Auto-Submitted: auto-replied"
    );
    // The policy in force, with its parameters.
    assert_eq!(json["policies"][0]["record"]["target_seconds"], 900);
    assert_eq!(json["policies"][0]["inquiries_in_period"], 5);
    // c was seen 8 minutes after it was received.
    let late = json["coverage"]["late_detections"]
        .as_array()
        .expect("late");
    assert_eq!(late.len(), 1);
    assert_eq!(late[0]["id"], "c");
    assert_eq!(late[0]["detection_seconds"], 480);
    assert_eq!(late[0]["gap"], 0);
    // Coverage: the crash gap (10:50–11:06, 16 min, c received in it and seen late) and the
    // source outage (07:55–08:20, d received in it, seen in time).
    let coverage = &json["coverage"];
    assert_eq!(coverage["recorded"], true);
    assert_eq!(coverage["daemon_down_seconds"], 16 * 60);
    let gaps = coverage["gaps"].as_array().expect("gaps");
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    assert_eq!(gaps[0]["start"], "2026-03-01T10:50:00Z");
    assert_eq!(gaps[0]["end"], "2026-03-01T11:06:00Z");
    assert_eq!(gaps[0]["scope"], "daemon");
    assert_eq!(gaps[0]["cause"], "not_running");
    assert_eq!(gaps[0]["inquiries_received"], 1);
    assert_eq!(gaps[0]["detected_late"], 1);
    assert_eq!(gaps[1]["scope"], "source");
    assert_eq!(gaps[1]["source"], "mail");
    assert_eq!(gaps[1]["cause"], "connect");
    assert_eq!(gaps[1]["seconds"], 25 * 60);
    assert_eq!(gaps[1]["inquiries_received"], 1);
    assert_eq!(gaps[1]["detected_late"], 0);
    // The ledger head, verified.
    let head = sqlite3(
        &world.db,
        "SELECT hash FROM ledger ORDER BY seq DESC LIMIT 1",
    );
    assert_eq!(json["ledger"]["intact"], true);
    assert_eq!(json["ledger"]["head_hash"], head.trim());
    // Masking.
    let masked: Value = serde_json::from_str(&report(&world, "json", &["--mask"])).expect("json");
    assert_eq!(masked["inquiries"][0]["customer"], "a***@c***.example");
}

#[tokio::test]
async fn csv_parses_back_to_the_json() {
    let world = World::new(&fixture()).await;
    let json: Value = serde_json::from_str(&report(&world, "json", &[])).expect("json");
    let csv = report(&world, "csv", &[]);
    let rows = report_csv::parse(&csv);
    assert_eq!(rows[0], report_csv::COLUMNS.to_vec());
    let inquiries = json["inquiries"].as_array().expect("inquiries");
    assert_eq!(rows.len() - 1, inquiries.len());
    for (row, inquiry) in rows[1..].iter().zip(inquiries) {
        for (column, field) in report_csv::COLUMNS.iter().zip(row) {
            let value = &inquiry[*column];
            let expected = match value {
                Value::Null => String::new(),
                Value::String(s) if column.ends_with("_at") => s
                    .parse::<DateTime<Utc>>()
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_else(|_| s.clone()),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            assert_eq!(field, &expected, "column {column} of {}", inquiry["id"]);
        }
    }
}

#[tokio::test]
async fn csv_cells_a_spreadsheet_would_evaluate_are_defused() {
    let mut events = fixture();
    let raw = [
        ("tab", "\t=HYPERLINK(\"https://evil.example\",\"invoice\")"),
        ("cr", "\r=1+1"),
        ("eq", "=SUM(A1)"),
    ];
    // The customer column carries what the sender wrote (a phone CSV's caller name, a From:).
    for (n, (id, customer)) in raw.iter().enumerate() {
        let mut event = opened(&Spec {
            id,
            channel: Channel::Email,
            language: Language::En,
            received_at: day()
                + Duration::days(1)
                + Duration::hours(13)
                + Duration::minutes(n as i64),
            detected_after: 2,
            subject: "hello",
        });
        if let Event::InquiryOpened(o) = &mut event {
            o.customer = customer.to_string();
        }
        events.push(event);
    }
    let world = World::new(&events).await;
    let rows = report_csv::parse(&report(&world, "csv", &[]));
    let column = |name: &str| report_csv::COLUMNS.iter().position(|c| *c == name).unwrap();
    for (id, customer) in raw {
        let row = rows
            .iter()
            .find(|r| r[column("id")] == id)
            .unwrap_or_else(|| panic!("{id} not in the report"));
        assert_eq!(row[column("customer")], format!("'{customer}"), "{id}");
    }
}

/// The fixture with the alerts' fate: b's warning delivered by mail to the on-call person, its
/// breach delivered by mail and webhook to two people; c's breach failed on every notifier.
fn fixture_with_deliveries() -> Vec<Event> {
    let at = |s: &str| s.parse::<DateTime<Utc>>().expect("instant");
    let mut ev = fixture();
    ev.extend([
        Event::AlertDelivered {
            inquiry_id: InquiryId("b".into()),
            kind: AlertKind::Warning,
            due_at: at("2026-03-01T10:10:00Z"),
            notifiers: vec!["smtp".into()],
            recipients: vec!["oncall@desk.example".into()],
            at: at("2026-03-01T10:10:02Z"),
        },
        Event::AlertDelivered {
            inquiry_id: InquiryId("b".into()),
            kind: AlertKind::Breach,
            due_at: at("2026-03-01T10:15:00Z"),
            notifiers: vec!["smtp".into(), "webhook".into()],
            recipients: vec!["oncall@desk.example".into(), "lead@desk.example".into()],
            at: at("2026-03-01T10:15:03Z"),
        },
        Event::AlertFailed {
            inquiry_id: InquiryId("c".into()),
            kind: AlertKind::Breach,
            due_at: at("2026-03-01T11:15:00Z"),
            recipients: vec!["+34600111222".into()],
            error: "connection refused".into(),
            at: at("2026-03-01T11:15:04Z"),
        },
    ]);
    ev
}

#[tokio::test]
async fn breach_evidence_shows_alerts_delivered_and_failed_and_to_whom() {
    let world = World::new(&fixture_with_deliveries()).await;
    let json: Value = serde_json::from_str(&report(&world, "json", &[])).expect("json");
    let breaches = json["breaches"].as_array().expect("breaches");
    // b: warning then breach, each with its delivery.
    let b = &breaches[0]["alerts"];
    assert_eq!(b[0]["stage"], "warning");
    assert_eq!(
        b[0]["delivered"][0]["notifiers"],
        serde_json::json!(["smtp"])
    );
    assert_eq!(
        b[0]["delivered"][0]["recipients"],
        serde_json::json!(["oncall@desk.example"])
    );
    assert_eq!(b[1]["stage"], "breach");
    assert_eq!(b[1]["delivered"][0]["at"], "2026-03-01T10:15:03Z");
    assert_eq!(
        b[1]["delivered"][0]["notifiers"],
        serde_json::json!(["smtp", "webhook"])
    );
    assert_eq!(
        b[1]["delivered"][0]["recipients"],
        serde_json::json!(["oncall@desk.example", "lead@desk.example"])
    );
    assert_eq!(b[1]["failed"].as_array().map(Vec::len), Some(0));
    // c: the breach alert failed; nothing was delivered.
    let c = &breaches[1]["alerts"][1];
    assert_eq!(c["stage"], "breach");
    assert_eq!(c["delivered"].as_array().map(Vec::len), Some(0));
    assert_eq!(c["failed"][0]["error"], "connection refused");
    assert_eq!(
        c["failed"][0]["recipients"],
        serde_json::json!(["+34600111222"])
    );

    // The CSV's last column says the same, and agrees with the JSON rows.
    let csv = report(&world, "csv", &[]);
    let rows = report_csv::parse(&csv);
    let column = rows[0]
        .iter()
        .position(|c| c == "alert_deliveries")
        .expect("alert_deliveries column");
    assert_eq!(
        column, 25,
        "column 26, as documented: columns are only appended"
    );
    let row_of = |id: &str| rows.iter().find(|r| r[0] == id).expect(id);
    assert_eq!(
        row_of("b")[column],
        "warning delivered 2026-03-01T10:10:02Z via smtp to oncall@desk.example; \
         breach delivered 2026-03-01T10:15:03Z via smtp+webhook to oncall@desk.example, lead@desk.example"
    );
    assert_eq!(
        row_of("c")[column],
        "breach failed 2026-03-01T11:15:04Z to +34600111222: connection refused"
    );
    assert_eq!(row_of("a")[column], "", "no alert, nothing delivered");
    for inquiry in json["inquiries"].as_array().expect("inquiries") {
        let id = inquiry["id"].as_str().expect("id");
        assert_eq!(
            row_of(id)[column],
            inquiry["alert_deliveries"].as_str().unwrap_or_default(),
            "{id}"
        );
    }

    // The HTML evidence names the notifiers, the recipients and the failure.
    let html = report(&world, "html", &[]);
    let table = &html[html.find("id=\"breaches\"").expect("breaches table")..];
    let table = &table[..table.find("</table>").expect("table end")];
    for shown in [
        "delivered 2026-03-01 10:15:03 via smtp, webhook",
        "<bdi dir=\"auto\">lead@desk.example</bdi>",
        "<span class=\"bad\">failed</span> 2026-03-01 11:15:04",
        "<bdi dir=\"auto\">+34600111222</bdi>",
        "connection refused",
    ] {
        assert!(
            table.contains(shown),
            "breach table lacks {shown:?}:\n{table}"
        );
    }
}

#[tokio::test]
async fn the_report_shows_who_took_each_breach_and_how_long_after_the_alert() {
    let at = |s: &str| s.parse::<DateTime<Utc>>().expect("instant");
    let mut events = fixture_with_deliveries();
    events.extend([
        // b: taken by the person the warning reached, 361 s after it was delivered.
        Event::InquiryTaken {
            inquiry_id: InquiryId("b".into()),
            by: "oncall@desk.example".into(),
            at: at("2026-03-01T10:16:03Z"),
            until: at("2026-03-01T10:46:03Z"),
            how: "link".into(),
        },
        // c: nothing was delivered; 600 s after its first alert was raised (the warning).
        Event::InquiryTaken {
            inquiry_id: InquiryId("c".into()),
            by: "lead".into(),
            at: at("2026-03-01T11:20:00Z"),
            until: at("2026-03-01T11:50:00Z"),
            how: "shared_link".into(),
        },
    ]);
    let world = World::new(&events).await;
    let json: Value = serde_json::from_str(&report(&world, "json", &[])).expect("json");
    let breaches = json["breaches"].as_array().expect("breaches");
    let b = &breaches[0]["takes"][0];
    assert_eq!(b["by"], "oncall@desk.example");
    assert_eq!(b["at"], "2026-03-01T10:16:03Z");
    assert_eq!(b["alerted_at"], "2026-03-01T10:10:02Z");
    assert_eq!(b["alert_to_take_seconds"], 361);
    let c = &breaches[1]["takes"][0];
    assert_eq!(
        (c["by"].as_str(), c["how"].as_str()),
        (Some("lead"), Some("shared_link"))
    );
    assert_eq!(c["alert_to_take_seconds"], 600);
    assert_eq!(json["takes"]["takes"], 2);
    assert_eq!(json["takes"]["overall"]["max"], 600);
    assert_eq!(json["takes"]["by_person"]["lead"]["p50"], 600);
    assert_eq!(
        json["takes"]["by_person"]["oncall@desk.example"]["p50"],
        361
    );

    let html = report(&world, "html", &[]);
    assert!(html.contains("id=\"take-times\""), "take figures");
    let table = &html[html.find("id=\"breaches\"").expect("breaches table")..];
    assert!(
        table.contains(
            "taken by <bdi dir=\"auto\">oncall@desk.example</bdi> at 2026-03-01 10:16:03, \
             6m01s after the alert"
        ),
        "{table}"
    );
}

/// The fixture plus evidence read late: `b`'s reply turns out to have been delivered at minute
/// 12 (its breach revised: met), and `m` (received 03-01 09:05) turns out to be a follow-up of
/// `a` (merged: not counted on its own).
fn fixture_with_revisions() -> Vec<Event> {
    let b_received = day() + Duration::hours(10);
    let mut ev = fixture();
    ev.extend([
        opened(&Spec {
            id: "m",
            channel: Channel::Email,
            language: Language::En,
            received_at: day() + Duration::hours(9) + Duration::minutes(5),
            detected_after: 1,
            subject: "Again",
        }),
        Event::InquiryMerged {
            inquiry_id: InquiryId("m".into()),
            into: InquiryId("a".into()),
            at: day() + Duration::hours(9) + Duration::minutes(6),
            evidence: "<a@customer.example>".into(),
        },
        Event::InquiryRevised {
            inquiry_id: InquiryId("b".into()),
            at: b_received + Duration::minutes(40),
            reason: RevisionReason::EarlierResponse,
            from: Outcome::Missed,
            to: Outcome::Met,
            evidence: Some("<early-reply-b@desk.example>".into()),
            response: Some(Box::new(RevisedResponse {
                at: b_received + Duration::minutes(12),
                response_seconds: 720,
                kind: ResponseKind::Email,
                responder: "support@desk.example".into(),
            })),
        },
        Event::EvidenceContradicted {
            source: "mail".into(),
            external_id: "<early-reply-b@desk.example>".into(),
            kind: Contradiction::ReplyBeforeMessage,
            detail: "reply delivered 2026-03-01T09:59:00Z replies to <b@customer.example> \
                     delivered 2026-03-01T10:00:00Z"
                .into(),
            at: b_received + Duration::minutes(40),
        },
    ]);
    ev
}

#[tokio::test]
async fn revisions_are_the_last_word_and_a_merged_inquiry_is_not_counted_on_its_own() {
    let world = World::new(&fixture_with_revisions()).await;
    let json: Value = serde_json::from_str(&report(&world, "json", &[])).expect("json");
    let t = &json["totals"];
    // As the fixture (`m` left out), with b met instead of missed.
    assert_eq!(t["received"], 6, "{t}");
    assert_eq!(t["met"], 3);
    assert_eq!(t["missed"], 1);
    assert_eq!(t["missed_answered_late"], 0);
    assert_eq!(json["breaches"].as_array().map(Vec::len), Some(1), "c only");
    let csv = report(&world, "csv", &[]);
    let rows = report_csv::parse(&csv);
    let column = rows[0]
        .iter()
        .position(|c| c == "revisions")
        .expect("revisions column");
    assert_eq!(
        column, 26,
        "column 27, as documented: columns are only appended"
    );
    let row_of = |id: &str| rows.iter().find(|r| r[0] == id).expect(id);
    assert_eq!(
        row_of("b")[column],
        "2026-03-01T10:40:00Z earlier_response: missed -> met by <early-reply-b@desk.example>"
    );
    assert_eq!(
        row_of("b")[rows[0].iter().position(|c| c == "sla").unwrap()],
        "met"
    );
    assert_eq!(
        row_of("b")[rows[0].iter().position(|c| c == "responded_at").unwrap()],
        "2026-03-01T10:12:00Z"
    );
    assert!(
        rows.iter().all(|r| r[0] != "m"),
        "a merged inquiry has no row"
    );
    // Contradictory evidence is listed, kept as read.
    let contradictions = json["contradictions"].as_array().expect("contradictions");
    assert_eq!(contradictions.len(), 1, "{contradictions:?}");
    assert_eq!(contradictions[0]["kind"], "reply_before_message");
    assert_eq!(
        contradictions[0]["evidence"],
        "<early-reply-b@desk.example>"
    );
    assert!(report(&world, "html", &[]).contains("Contradictory evidence (1)"));
}

#[tokio::test]
async fn yearly_review_has_twelve_months() {
    let world = World::new(&fixture()).await;
    let out = world.slawatch(&["report", "--year", "2026", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    let months = json["by_month"].as_object().expect("months");
    assert_eq!(months.len(), 12);
    // h (2026-02-28 23:59) and g (2026-03-03) are in the year too.
    assert_eq!(json["totals"]["received"], 8);
    assert_eq!(months["2026-02"]["met"], 1);
}

fn chromium(args: &[&str], profile: &Path) -> Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("chromium is required by this test (apt-get install chromium): {e}")
        })
}

#[tokio::test]
async fn html_report_prints_to_pdf_and_png_with_its_figures_and_charts() {
    let world = World::new(&fixture()).await;
    let html = world.path("report.html");
    let mut args = vec!["report"];
    args.extend(PERIOD);
    let html_arg = html.display().to_string();
    args.extend(["--format", "html", "--out", &html_arg]);
    let out = world.slawatch(&args);
    assert!(out.status.success(), "{}", text(&out));
    let source = std::fs::read_to_string(&html).expect("html");
    assert!(!source.contains("<script"), "self-contained, no scripts");
    assert!(!source.contains("src=\"http"), "no external resources");
    for chart in ["chart-daily", "chart-heatmap", "chart-distribution"] {
        let start = source.find(&format!("id=\"{chart}\"")).expect(chart);
        let svg = &source[start..start + source[start..].find("</svg>").expect("svg end")];
        assert!(svg.matches("<rect").count() > 2, "{chart} has marks");
    }
    assert!(source.contains("<bdi dir=\"auto\">مكالمة فائتة</bdi>"));

    let profile = world.path("chromium-profile");
    let pdf = world.path("report.pdf");
    let url = format!("file://{}", html.display());
    let out = chromium(
        &[
            &format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer",
            &url,
        ],
        &profile,
    );
    assert!(out.status.success() && pdf.exists(), "{}", text(&out));
    let pdf_text = Command::new("pdftotext")
        .arg("-layout")
        .arg(&pdf)
        .arg("-")
        .output()
        .unwrap_or_else(|e| panic!("pdftotext (poppler-utils) is required by this test: {e}"));
    assert!(pdf_text.status.success(), "{}", text(&pdf_text));
    let pdf_text = String::from_utf8_lossy(&pdf_text.stdout);
    for figure in [
        "Compliance",
        "50.0%",
        "Breaches (2)",
        "Exclusions (1)",
        "auto_submitted",
        "Monitoring coverage",
        "16m00s",
        "intact",
    ] {
        assert!(
            pdf_text.contains(figure),
            "PDF lacks {figure:?}:\n{pdf_text}"
        );
    }
    let pages = world.path("page");
    let out = Command::new("pdftoppm")
        .args(["-png", "-r", "50", "-f", "1", "-l", "1"])
        .arg(&pdf)
        .arg(&pages)
        .output()
        .unwrap_or_else(|e| panic!("pdftoppm (poppler-utils) is required by this test: {e}"));
    assert!(out.status.success(), "{}", text(&out));
    let page_png = std::fs::read_dir(world.dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().starts_with("page"))
        .expect("a PNG of page 1");
    assert!(
        page_png.metadata().expect("png").len() > 5_000,
        "page 1 is not blank"
    );

    let png = world.path("report.png");
    let out = chromium(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=900,2400",
            &url,
        ],
        &profile,
    );
    assert!(out.status.success() && png.exists(), "{}", text(&out));
    let bytes = std::fs::read(&png).expect("png");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "screenshot has content"
    );
}

mod http {
    //! `GET /api/v1/report`: the same report, behind its own read-only token.

    use std::collections::BTreeSet;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use serde_json::Value;
    use tower::ServiceExt;

    use slawatch::config::Secret;
    use slawatch::engine::{EngineHandle, Shared};
    use slawatch::http::{Access, AppState, Tokens, router};
    use slawatch::store::Store;
    use slawatch::telemetry::Metrics;
    use slawatch_core::desk::DeskSettings;
    use slawatch_core::domain::Language;
    use slawatch_core::tracker::policy::{Policy, PolicySet};
    use slawatch_core::tracker::{Tracker, TrackerRules};

    const WRITE: &str = "write-token";
    const READ: &str = "auditor-token";

    async fn state(report_token: Option<&str>) -> AppState {
        let store = Store::open("sqlite::memory:").await.expect("ledger");
        store
            .append(chrono::Utc::now(), &super::fixture(), &[])
            .await
            .expect("append");
        let rules = Arc::new(TrackerRules {
            desk: DeskSettings::with_address("support@desk.example"),
            policies: PolicySet::single(Policy::default()),
        });
        slawatch::store::projection::rebuild(&store, rules, &store)
            .await
            .expect("projection");
        let desk = DeskSettings {
            support_addresses: vec!["support@desk.example".into()],
            internal_domains: vec!["desk.example".into()],
            ignore_senders: Vec::new(),
            ignore_subjects: Vec::new(),
            auto_ack_subjects: Vec::new(),
            default_language: Language::En,
            time_zone: chrono_tz::UTC,
        };
        let tracker = Tracker::new(Arc::new(TrackerRules {
            desk,
            policies: PolicySet::single(Policy::default()),
        }));
        let (tx, _rx) = tokio::sync::mpsc::channel(1);
        AppState::new(
            Arc::new(Shared::new(
                tracker,
                Arc::new(Metrics::new("test", &["mail".to_string()])),
                store,
                BTreeSet::new(),
            )),
            EngineHandle::new(tx),
            Access::with_tokens(Tokens {
                write: Some(Secret::new(WRITE)),
                report: report_token.map(Secret::new),
                ..Tokens::default()
            }),
        )
    }

    async fn get(state: &AppState, uri: &str, token: Option<&str>) -> (StatusCode, String, String) {
        let mut request = Request::get(uri);
        if let Some(t) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let response = router(state.clone())
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .unwrap_or_else(|e| match e {});
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        (status, content_type, body)
    }

    const URI: &str = "/api/v1/report?from=2026-03-01&to=2026-03-03";

    #[tokio::test]
    async fn disabled_without_a_report_token() {
        let state = state(None).await;
        let (status, _, body) = get(&state, URI, Some(WRITE)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            body.contains("reports disabled: set http.report_token"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn needs_the_read_only_token_not_the_write_token() {
        let state = state(Some(READ)).await;
        assert_eq!(get(&state, URI, None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            get(&state, URI, Some(WRITE)).await.0,
            StatusCode::UNAUTHORIZED
        );
        let (status, content_type, body) = get(&state, URI, Some(READ)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(body.contains("id=\"chart-heatmap\""));
        // The report token is read-only: it cannot acknowledge.
        let ack = Request::post("/api/v1/inquiries/d/ack")
            .header(header::AUTHORIZATION, format!("Bearer {READ}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"by":"x","via":"phone"}"#))
            .expect("request");
        let response = router(state.clone())
            .oneshot(ack)
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn serves_json_and_csv_with_the_cli_figures() {
        let state = state(Some(READ)).await;
        let (status, content_type, body) =
            get(&state, &format!("{URI}&format=json"), Some(READ)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(content_type, "application/json");
        let json: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(json["totals"]["received"], 6);
        assert_eq!(json["totals"]["compliance"], 0.5);
        // It checked the rows it read; `chain=whole` checks every row.
        assert_eq!(json["ledger"]["scope"], "period");
        assert!(json["ledger"]["linked"].is_array(), "{}", json["ledger"]);
        let (status, _, body) = get(
            &state,
            &format!("{URI}&format=json&chain=whole"),
            Some(READ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let whole: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(whole["ledger"]["scope"], "whole");
        assert_eq!(whole["ledger"]["intact"], true);
        assert_eq!(whole["totals"], json["totals"]);
        assert!(whole["ledger"]["events"].as_u64() > json["ledger"]["events"].as_u64());
        let (status, content_type, body) =
            get(&state, &format!("{URI}&format=csv&mask=true"), Some(READ)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/csv"));
        assert_eq!(body.lines().count(), 7, "header + 6 inquiries");
        assert!(body.contains("a***@c***.example"));
    }

    #[tokio::test]
    async fn bad_parameters_are_400_naming_the_parameter() {
        let state = state(Some(READ)).await;
        for (uri, parameter) in [
            ("/api/v1/report?to=2026-03-03", "from"),
            ("/api/v1/report?from=yesterday&to=2026-03-03", "from"),
            ("/api/v1/report?from=2026-03-03&to=2026-03-01", "to"),
            (&format!("{URI}&format=pdf"), "format"),
            (&format!("{URI}&tz=Mars/Base"), "tz"),
            (&format!("{URI}&chain=all"), "chain"),
        ] {
            let (status, _, body) = get(&state, uri, Some(READ)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
            let json: Value = serde_json::from_str(&body).expect("json error");
            assert_eq!(json["parameter"], parameter, "{uri}");
        }
    }
}

/// The DOM Chromium builds from `file`, whitespace between tags dropped.
fn dom_of(file: &Path, profile: &Path) -> String {
    let url = format!("file://{}", file.display());
    let out = chromium(&["--dump-dom", &url], profile);
    assert!(out.status.success(), "{}", text(&out));
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut kept = String::with_capacity(dom.len());
    let mut rest = dom.as_str();
    while let Some(open) = rest.find('<') {
        if !rest[..open].trim().is_empty() {
            kept.push_str(&rest[..open]);
        }
        let close = rest[open..].find('>').map_or(rest.len(), |c| open + c + 1);
        kept.push_str(&rest[open..close]);
        rest = &rest[close..];
    }
    kept.push_str(rest.trim());
    kept
}

/// The HTML report reads as recorded (`tests/fixtures/pages/report.html`, the instant it was
/// generated left out) for the fixture with deliveries and a breach whose every text is
/// hostile; markup from the ledger stays text. Record again with `SLAWATCH_RECORD_PAGES=1`.
#[tokio::test]
async fn html_report_looks_as_recorded() {
    const HOSTILE: &str = "<script>alert('x')</script> & \"quoted\"";
    let received = day() + Duration::hours(13);
    let mut events = fixture_with_deliveries();
    events.extend([
        opened(&Spec {
            id: "x",
            channel: Channel::Email,
            language: Language::Ar,
            received_at: received,
            detected_after: 1,
            subject: HOSTILE,
        }),
        breached("x", received),
        Event::AlertFailed {
            inquiry_id: InquiryId("x".into()),
            kind: AlertKind::Breach,
            due_at: received + Duration::minutes(15),
            recipients: vec![HOSTILE.into()],
            error: HOSTILE.into(),
            at: received + Duration::minutes(16),
        },
    ]);
    let world = World::new(&events).await;
    let html = report(&world, "html", &[]);
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("&lt;script&gt;alert("), "{html}");
    // The one line that changes with every run.
    let generated = html.find("Generated ").expect("generated line");
    let end = generated + html[generated..].find(" UTC.").expect("end of line");
    let html = format!(
        "{}Generated (instant) UTC.{}",
        &html[..generated],
        &html[end + 5..]
    );
    // The head hash covers when each row was recorded, which is now.
    let head = html.find("id=\"head-hash\">").expect("head hash") + "id=\"head-hash\">".len();
    let end = head + html[head..].find('<').expect("end of head hash");
    let html = format!("{}(head){}", &html[..head], &html[end..]);
    let recorded =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pages/report.html");
    if std::env::var_os("SLAWATCH_RECORD_PAGES").is_some() {
        std::fs::write(&recorded, &html).expect("record report");
    }
    let now = world.path("report-now.html");
    std::fs::write(&now, &html).expect("write report");
    let profile = world.path("chromium-profile");
    let (before, after) = (dom_of(&recorded, &profile), dom_of(&now, &profile));
    if before != after {
        let lines = |dom: &str| dom.replace("><", ">\n<");
        let (before, after) = (lines(&before), lines(&after));
        let first = before
            .lines()
            .zip(after.lines())
            .position(|(b, a)| b != a)
            .unwrap_or(0);
        panic!(
            "the report's DOM differs from the recorded one from line {first}:\n{}\n---\n{}",
            before
                .lines()
                .skip(first)
                .take(5)
                .collect::<Vec<_>>()
                .join("\n"),
            after
                .lines()
                .skip(first)
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// Renders `data` in the three formats, `generated_at` pinned so two builds compare.
fn rendered(mut data: slawatch::report::ReportData) -> [Vec<u8>; 3] {
    use slawatch::report;
    data.generated_at = day();
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    report::json::render(&data, &mut out[0]).expect("json");
    report::csv::render(&data, &mut out[1]).expect("csv");
    report::html::render(&data, &mut out[2]).expect("html");
    out
}

#[tokio::test]
async fn a_report_read_through_the_projection_is_the_report_of_the_whole_ledger() {
    report_through_the_projection(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        (url, Some(dir))
    })
    .await;
}

/// The same on PostgreSQL (a real server started by the harness, one database per ledger).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_read_through_the_projection_is_the_report_of_the_whole_ledger_on_postgresql() {
    report_through_the_projection(|| (support::postgres::shared().fresh_url(), None)).await;
}

/// Reports over three fixtures and three periods, folded from the whole ledger (no projection
/// yet) and then read through the projection: the same JSON, CSV and HTML. `ledger` makes a
/// fresh store: its URL, and what keeps it alive.
async fn report_through_the_projection(ledger: impl Fn() -> (String, Option<tempfile::TempDir>)) {
    use slawatch::report::{self, PeriodFilter, ReportParams};
    use slawatch_core::desk::DeskSettings;
    use slawatch_core::tracker::TrackerRules;
    use slawatch_core::tracker::policy::PolicySet;

    let rules = std::sync::Arc::new(TrackerRules {
        desk: DeskSettings::with_address("support@desk.example"),
        policies: PolicySet::single(Policy::default()),
    });
    let t = |s: &str| s.parse::<DateTime<Utc>>().expect("instant");
    // The whole period, a period that cuts inquiries off on both sides, one with none.
    let periods = [
        (t("2026-03-01T00:00:00Z"), t("2026-03-03T00:00:00Z"), 6),
        (t("2026-03-01T10:00:00Z"), t("2026-03-02T08:30:00Z"), 3),
        (t("2026-02-01T00:00:00Z"), t("2026-02-02T00:00:00Z"), 0),
    ];
    for (name, events) in [
        ("fixture", fixture()),
        ("deliveries", fixture_with_deliveries()),
        ("revisions", fixture_with_revisions()),
    ] {
        let (url, _dir) = ledger();
        let store = Store::open(&url).await.expect("open ledger");
        // Recorded as a daemon records them: each when it happened (the monitor's heartbeats
        // live), in order.
        let mut stamp = DateTime::<Utc>::MIN_UTC;
        for event in &events {
            stamp = stamp.max(happened(event).unwrap_or(stamp));
            store
                .append(stamp, std::slice::from_ref(event), &[])
                .await
                .expect("append");
        }
        let params = |(from, to): (DateTime<Utc>, DateTime<Utc>)| ReportParams {
            from,
            to,
            time_zone: "Asia/Riyadh".parse().expect("tz"),
            mask: false,
            title: "review".into(),
            chain: Default::default(),
        };
        // Written without a projection (as by an older version): the whole ledger is folded.
        let mut whole = Vec::new();
        for (from, to, _) in periods {
            assert!(PeriodFilter::of(&store, from, to).await.unwrap().is_none());
            let data = report::build(&store, rules.clone(), &params((from, to)), &mut |_| {})
                .await
                .expect("report");
            whole.push(rendered(data));
        }
        slawatch::store::projection::rebuild(&store, rules.clone(), &store)
            .await
            .expect("projection");
        for ((from, to, inquiries), expected) in periods.into_iter().zip(whole) {
            let filter = PeriodFilter::of(&store, from, to).await.unwrap();
            let counted = filter.as_ref().map(PeriodFilter::inquiries);
            let merged = usize::from(name == "revisions" && inquiries == 6);
            assert_eq!(counted, Some(inquiries + merged), "{name} {from}");
            // Checking the whole chain: the same bytes. Checking the rows it reads: the same
            // report, with its own account of what it checked.
            let whole = ReportParams {
                chain: report::ChainScope::Whole,
                ..params((from, to))
            };
            let data = report::build(&store, rules.clone(), &whole, &mut |_| {})
                .await
                .expect("report");
            let mut scoped = report::build(&store, rules.clone(), &params((from, to)), &mut |_| {})
                .await
                .expect("report");
            assert!(scoped.ledger.intact, "{name} {from}");
            assert_eq!(scoped.ledger.scope, report::ChainScope::Period);
            assert!(
                scoped.ledger.linked.is_some() || inquiries == 0,
                "{name} {from}"
            );
            assert!(scoped.ledger.events <= data.ledger.events);
            scoped.ledger = data.ledger.clone();
            assert!(
                rendered(scoped.clone()) == rendered(data.clone()),
                "{name} {from}..{to}: checking its rows\n{}\n--- checking the whole chain ---\n{}",
                String::from_utf8_lossy(&rendered(scoped)[0]),
                String::from_utf8_lossy(&rendered(data)[0])
            );
            let got = rendered(data);
            for (format, (got, expected)) in ["json", "csv", "html"]
                .iter()
                .zip(got.iter().zip(&expected))
            {
                assert!(
                    got == expected,
                    "{name} {from}..{to} {format}:\n{}\n--- whole ledger ---\n{}",
                    String::from_utf8_lossy(got),
                    String::from_utf8_lossy(expected)
                );
            }
        }
        store.close().await;
    }
}

/// When `event` happened, as its JSON says (`at`, or when the monitor first saw an inquiry).
fn happened(event: &Event) -> Option<DateTime<Utc>> {
    let json = serde_json::to_value(event).expect("JSON");
    ["at", "first_seen_at"]
        .iter()
        .find_map(|key| json.get(*key)?.as_str()?.parse().ok())
}

#[tokio::test]
async fn a_failover_between_replicas_shows_as_its_own_gap_and_leader_change() {
    // The fixture's crash at 10:50 becomes a failover: the standby replica took the lease and
    // started at 11:06.
    let t = |s: &str| s.parse::<DateTime<Utc>>().expect("instant");
    let mut events = fixture();
    let first = events
        .iter()
        .position(|e| matches!(e, Event::MonitorStarted { .. }))
        .expect("a start");
    events.insert(
        first,
        Event::LeaderChanged {
            at: t("2026-02-27T00:00:00Z"),
            epoch: 1,
            replica: "replica-a".into(),
            previous: None,
        },
    );
    let restart = events
        .iter()
        .position(
            |e| matches!(e, Event::MonitorStarted { at, .. } if *at == t("2026-03-01T11:06:00Z")),
        )
        .expect("the restart");
    events.insert(
        restart,
        Event::LeaderChanged {
            at: t("2026-03-01T11:06:00Z"),
            epoch: 2,
            replica: "replica-b".into(),
            previous: Some("replica-a".into()),
        },
    );
    let world = World::new(&events).await;
    let json: Value = serde_json::from_str(&report(&world, "json", &[])).expect("json");
    let coverage = &json["coverage"];
    let gaps = coverage["gaps"].as_array().expect("gaps");
    assert_eq!(gaps[0]["start"], "2026-03-01T10:50:00Z");
    assert_eq!(gaps[0]["end"], "2026-03-01T11:06:00Z");
    assert_eq!(gaps[0]["cause"], "failover");
    assert_eq!(coverage["daemon_down_seconds"], 16 * 60);
    // Only the change inside the period; the pair's first start was before it.
    let changes = coverage["leader_changes"]
        .as_array()
        .expect("leader changes");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["epoch"], 2);
    assert_eq!(changes[0]["replica"], "replica-b");
    assert_eq!(changes[0]["previous"], "replica-a");
    let html = report(&world, "html", &[]);
    assert!(
        html.contains(r#"<b id="leader-changes">1</b>"#),
        "the HTML report counts the failover"
    );
    assert!(html.contains("replica-b"), "and names the new active");
}
