//! End-to-end tests of the phone channel: the real binary tails Asterisk call logs written by
//! the test (fixtures in `tests/fixtures/calls`, in the exact `cdr_csv` 18-column and `queue_log`
//! formats), and the inquiries are read back through the HTTP API.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::daemon::Daemon;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/calls");

fn config(sources: &str) -> String {
    format!(
        r#"
[store]
url = "sqlite://{{dir}}/ledger.db"
[http]
bind = "127.0.0.1:{{port}}"
[desk]
support_addresses = ["support@example.com"]
{sources}
"#
    )
}

fn lines(name: &str) -> String {
    format!(
        r#"
default_region = "ES"
extension_max_digits = 5
poll_interval = "100ms"
[[sources.{name}.lines]]
name = "soporte-es"
match = ["600", "soporte-es"]
language = "es"
region = "ES"
[[sources.{name}.lines]]
name = "support-ar"
match = ["700", "support-ar"]
language = "ar"
region = "SA"
"#
    )
}

fn cdr_source() -> String {
    format!(
        "[sources.cdr]\ntype = \"asterisk_cdr\"\npath = \"Master.csv\"\nlayout = \"18\"\ntime_zone = \"UTC\"\n{}",
        lines("cdr")
    )
}

/// Asterisk's compiled-in `[csv]` layout: 16 columns, no uniqueid (one record per channel, its
/// start the channel's creation).
fn cdr16_source() -> String {
    format!(
        "[sources.cdr]\ntype = \"asterisk_cdr\"\npath = \"Master16.csv\"\nlayout = \"16\"\ntime_zone = \"UTC\"\n{}",
        lines("cdr")
    )
}

fn queue_source() -> String {
    format!(
        "[sources.queue]\ntype = \"asterisk_queue_log\"\npath = \"queue_log\"\n{}",
        lines("queue")
    )
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("slawatch-phone")
        .tempdir()
        .unwrap()
}

fn copy_fixture(dir: &Path, name: &str) {
    std::fs::copy(Path::new(FIXTURES).join(name), dir.join(name)).unwrap();
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn phone(d: &Daemon) -> Vec<Value> {
    d.get_json("/api/v1/inquiries?channel=phone&limit=1000")["inquiries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn by_customer<'a>(inquiries: &'a [Value], customer: &str) -> &'a Value {
    inquiries
        .iter()
        .find(|i| i["customer"] == customer)
        .unwrap_or_else(|| panic!("no inquiry from {customer} in {inquiries:#?}"))
}

/// The calls of the fixtures, as each run must see them.
fn check_fixture_calls(inquiries: &[Value], with_callback: bool) {
    assert_eq!(inquiries.len(), 3, "{inquiries:#?}");
    let ana = by_customer(inquiries, "+34600123456");
    assert_eq!(ana["received_at"], "2026-01-05T09:15:42Z");
    assert_eq!(ana["responded_at"], "2026-01-05T09:16:30Z");
    assert_eq!(ana["response_kind"], "phone");
    assert_eq!(ana["sla"], "met");
    assert_eq!(ana["language"], "es");
    let abu = by_customer(inquiries, "+966551234567");
    assert_eq!(abu["received_at"], "2026-01-05T09:23:20Z");
    assert_eq!(abu["language"], "ar");
    if with_callback {
        // Called back at 09:40:10, 17 minutes after the call: answered, but late.
        assert_eq!(abu["state"], "responded");
        assert_eq!(abu["responded_at"], "2026-01-05T09:40:10Z");
        assert_eq!(abu["sla"], "missed");
    } else {
        assert_eq!(abu["state"], "open");
    }
    let withheld = by_customer(inquiries, "withheld");
    assert_eq!(withheld["received_at"], "2026-01-05T09:33:20Z");
    assert_eq!(withheld["state"], "open");
    assert_eq!(withheld["call"]["withheld"], true, "{withheld:#}");
    assert_eq!(ana["call"]["withheld"], false, "{ana:#}");
    assert_eq!(ana["call"]["line"], "soporte-es");
}

#[test]
fn cdr_and_queue_log_for_the_same_calls_agree() {
    // Each feed alone, then both together: the same calls, the same inquiries, never doubled.
    for (sources, with_callback) in [
        (cdr_source(), true),
        (queue_source(), false),
        (format!("{}\n{}", cdr_source(), queue_source()), true),
        // Without uniqueid the records join by caller and start time.
        (cdr16_source(), true),
        (format!("{}\n{}", cdr16_source(), queue_source()), true),
    ] {
        let dir = tempdir();
        copy_fixture(dir.path(), "Master.csv");
        copy_fixture(dir.path(), "Master16.csv");
        copy_fixture(dir.path(), "queue_log");
        let mut d = Daemon::configure(dir.path(), &config(&sources), &[]);
        d.start();
        d.wait_ready(Duration::from_secs(30));
        let inquiries = phone(&d);
        check_fixture_calls(&inquiries, with_callback);
        // The withheld caller is counted in its own bucket.
        assert_eq!(
            d.metric(r#"slawatch_withheld_calls_total{language="es",state="open"}"#),
            Some(1.0)
        );
        // queue_log knows when Ana entered the queue (18 s of menu after the call arrived);
        // the CDR does not, so it is there when queue_log opened the inquiry.
        let ana = by_customer(&inquiries, "+34600123456");
        if !sources.contains("asterisk_cdr") {
            assert_eq!(ana["call"]["queue_entered_at"], "2026-01-05T09:16:00Z");
        }
        assert!(d.stop());
    }
}

const NEW_CALL: &str = r#""","+34 611 22 33 44","600","from-trunk","""O'Brien, \""Pat\"""" <+34611223344>","PJSIP/trunk-es-00000070","","Hangup","","2026-01-05 10:00:00",,"2026-01-05 10:00:30",30,0,"NO ANSWER","DOCUMENTATION","1767607200.1500","""#;

#[test]
fn a_tailed_master_csv_is_followed_live_through_partial_lines_bad_rows_and_rotation() {
    let dir = tempdir();
    copy_fixture(dir.path(), "Master.csv");
    let csv = dir.path().join("Master.csv");
    let mut d = Daemon::configure(dir.path(), &config(&cdr_source()), &[]);
    d.start();
    d.wait_ready(Duration::from_secs(30));
    assert_eq!(phone(&d).len(), 3);

    // A row written in two pieces: nothing until the newline arrives.
    let (head, tail) = NEW_CALL.split_at(60);
    append(&csv, head);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(phone(&d).len(), 3);
    let written = Instant::now();
    append(&csv, &format!("{tail}\n"));
    d.wait_for("the appended call", Duration::from_secs(5), |d| {
        phone(d).len() == 4
    });
    let latency = written.elapsed();
    assert!(latency < Duration::from_secs(1), "took {latency:?}");
    let pat = phone(&d);
    let pat = by_customer(&pat, "+34611223344");
    assert_eq!(pat["customer_name"], r#"O'Brien, "Pat""#);
    assert_eq!(pat["state"], "open");

    // A malformed row is counted and skipped; the next one is read.
    let before = d
        .metric(r#"slawatch_source_errors_total{kind="parse",source="cdr"}"#)
        .unwrap_or(0.0);
    append(&csv, "\"garbage\",\"row\"\n");
    append(
        &csv,
        &format!(
            "{}\n",
            NEW_CALL
                .replace("1767607200.1500", "1767607300.1600")
                .replace("+34 611 22 33 44", "34622000111")
                .replace("+34611223344", "34622000111")
        ),
    );
    d.wait_for("the row after the bad one", Duration::from_secs(5), |d| {
        phone(d).len() == 5
    });
    let after = d
        .metric(r#"slawatch_source_errors_total{kind="parse",source="cdr"}"#)
        .unwrap_or(0.0);
    assert_eq!(after, before + 1.0);
    assert!(d.log().contains("line 7"), "{}", d.log());

    // Rotation: the file is moved away and a new one started.
    std::fs::rename(&csv, dir.path().join("Master.csv.1")).unwrap();
    append(
        &csv,
        &format!(
            "{}\n",
            NEW_CALL
                .replace("1767607200.1500", "1767607400.1700")
                .replace("+34 611 22 33 44", "600 333 444")
        ),
    );
    d.wait_for("the row in the rotated file", Duration::from_secs(5), |d| {
        phone(d).iter().any(|i| i["customer"] == "+34600333444")
    });

    // A restart resumes after the last committed row: nothing is read twice.
    assert!(d.stop());
    d.start();
    d.wait_ready(Duration::from_secs(30));
    assert_eq!(phone(&d).len(), 6);
    assert!(d.stop());
}

/// A missed call from `number` with its own uniqueid, as one Master.csv row.
fn missed_call(number: &str, uniqueid: &str) -> String {
    format!(
        "{}\n",
        NEW_CALL
            .replace("1767607200.1500", uniqueid)
            .replace("+34 611 22 33 44", number)
            .replace("+34611223344", number)
    )
}

#[test]
fn rows_written_just_before_a_rotation_are_read_from_the_old_file_exactly_once() {
    let dir = tempdir();
    let csv = dir.path().join("Master.csv");
    append(&csv, &missed_call("34611000001", "1767607200.1"));
    let mut d = Daemon::configure(dir.path(), &config(&cdr_source()), &[]);
    d.start();
    d.wait_ready(Duration::from_secs(30));
    assert_eq!(phone(&d).len(), 1);

    // Rows appended after the daemon's last read, then at once a rename and a new file: the
    // daemon sees the new inode before it has read those rows.
    for round in 0..3 {
        let old: Vec<String> = (0..3).map(|k| format!("346110{round}{k}100")).collect();
        let new: Vec<String> = (0..2).map(|k| format!("346120{round}{k}200")).collect();
        for (k, n) in old.iter().enumerate() {
            append(&csv, &missed_call(n, &format!("17676073{round}{k}.1")));
        }
        std::fs::rename(&csv, dir.path().join(format!("Master.csv.{}", round + 1))).unwrap();
        for (k, n) in new.iter().enumerate() {
            append(&csv, &missed_call(n, &format!("17676074{round}{k}.1")));
        }
        let expected = 1 + 5 * (round + 1);
        d.wait_for("every row of both files", Duration::from_secs(5), |d| {
            phone(d).len() >= expected
        });
        let inquiries = phone(&d);
        for n in old.iter().chain(&new) {
            let key = format!("+{n}");
            let found = inquiries.iter().filter(|i| i["customer"] == key).count();
            assert_eq!(found, 1, "{key} in {inquiries:#?}");
        }
    }

    // A restart reads nothing twice, wherever the old files went.
    assert!(d.stop());
    d.start();
    d.wait_ready(Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(phone(&d).len(), 16);
    assert!(d.stop());
}

/// A callback from extension 2001 to `dialled` (digits as typed), connected at `answer`.
fn callback_row(dialled: &str, start: &str, answer: &str, end: &str, uniqueid: &str) -> String {
    format!(
        "\"\",\"2001\",\"{dialled}\",\"from-internal\",\"\"\"Agent\"\" <2001>\",\"PJSIP/2001-00000090\",\"PJSIP/trunk-es-00000091\",\"Dial\",\"PJSIP/{dialled}@trunk,60\",\"{start}\",\"{answer}\",\"{end}\",70,60,\"ANSWERED\",\"DOCUMENTATION\",\"{uniqueid}\",\"\"\n"
    )
}

#[test]
fn with_a_contact_map_a_callback_answers_mail_and_a_reply_mail_answers_a_missed_call() {
    for answer_across_channels in [true, false] {
        let dir = tempdir();
        let maildir = dir.path().join("maildir");
        for sub in ["tmp", "new", "cur", ".Sent/tmp", ".Sent/new", ".Sent/cur"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        // Ana writes at 09:50 (Maildir delivery time: the file name's epoch).
        std::fs::write(
            maildir.join("new/1767606600.M1P1.test"),
            "From: Ana Ruiz <ana@cliente.example>\r\nTo: support@example.com\r\n\
             Subject: Factura de noviembre\r\nMessage-ID: <q1@cliente.example>\r\n\
             Date: Mon, 05 Jan 2026 09:50:00 +0000\r\n\r\nHola, la factura de noviembre tiene un importe equivocado.\r\n",
        )
        .unwrap();
        let csv = dir.path().join("Master.csv");
        std::fs::write(&csv, "").unwrap();
        let sources = format!(
            "[sources.mail]\ntype = \"maildir\"\npath = \"maildir\"\nscan_interval = \"200ms\"\n{}\n\
             [contacts]\nanswer_across_channels = {answer_across_channels}\ndefault_region = \"ES\"\n\
             [[contacts.customers]]\nemail = \"ana@cliente.example\"\n\
             phones = [\"+34 600 12 34 56\", \"911 22 23 33\"]\n",
            cdr_source()
        );
        let mut d = Daemon::configure(dir.path(), &config(&sources), &[]);
        d.start();
        d.wait_ready(Duration::from_secs(30));
        // Then, as it happens live: the desk calls her back at 09:55 (connected at 09:55:10);
        // at 10:00 she calls from her office line and nobody picks up; at 10:05 the desk mails
        // her (a new message, not a reply to any mail). Each is written once the one before
        // has been read: a response read before the inquiry it answers is not matched across
        // channels.
        append(
            &csv,
            &callback_row(
                "0034600123456",
                "2026-01-05 09:55:00",
                "2026-01-05 09:55:10",
                "2026-01-05 09:56:10",
                "1767606900.1",
            ),
        );
        append(&csv, &missed_call("911222333", "1767607200.1500"));
        d.wait_for("the missed call to be read", Duration::from_secs(10), |d| {
            phone(d).len() == 1
        });
        std::fs::write(
            maildir.join(".Sent/cur/1767607500.M2P1.test:2,S"),
            "From: Support <support@example.com>\r\nTo: ana@cliente.example\r\n\
             Subject: Su llamada de esta mañana\r\nMessage-ID: <r1@example.com>\r\n\
             Date: Mon, 05 Jan 2026 10:05:00 +0000\r\n\r\nHola Ana, ya hemos corregido la factura.\r\n",
        )
        .unwrap();
        d.wait_for("the desk's mail to be read", Duration::from_secs(10), |d| {
            d.sql("SELECT count(*) FROM ledger WHERE payload LIKE '%r1@example.com%'") != "0"
        });
        let all = d.get_json("/api/v1/inquiries?limit=100")["inquiries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mail = all
            .iter()
            .find(|i| i["channel"] == "email")
            .unwrap_or_else(|| panic!("no mail inquiry in {all:#?}"));
        let call = by_customer(&all, "+34911222333");
        assert_eq!(all.len(), 2, "{all:#?}");
        if answer_across_channels {
            assert_eq!(mail["state"], "responded", "{mail:#}");
            assert_eq!(mail["response_kind"], "phone");
            assert_eq!(mail["responded_at"], "2026-01-05T09:55:10Z");
            assert_eq!(call["state"], "responded", "{call:#}");
            assert_eq!(call["response_kind"], "email");
            assert_eq!(call["responded_at"], "2026-01-05T10:05:00Z");
        } else {
            assert_eq!(mail["state"], "open", "{mail:#}");
            assert_eq!(call["state"], "open", "{call:#}");
        }
        assert!(d.stop());
    }
}

#[test]
fn a_missing_call_log_shows_the_source_down_and_is_picked_up_when_it_appears() {
    let dir = tempdir();
    let mut d = Daemon::configure(dir.path(), &config(&cdr_source()), &[]);
    d.start();
    d.wait_for("source_up 0", Duration::from_secs(10), |d| {
        d.metric(r#"slawatch_source_up{source="cdr"}"#) == Some(0.0)
    });
    assert!(d.log().contains("Call log not readable"), "{}", d.log());
    copy_fixture(dir.path(), "Master.csv");
    d.wait_ready(Duration::from_secs(10));
    assert_eq!(d.metric(r#"slawatch_source_up{source="cdr"}"#), Some(1.0));
    check_fixture_calls(&phone(&d), true);
    assert!(d.stop());
}

#[test]
fn calls_pushed_over_http_are_tracked_like_logged_ones() {
    let dir = tempdir();
    copy_fixture(dir.path(), "Master.csv");
    let mut d = Daemon::configure(dir.path(), &config(&cdr_source()), &[]);
    d.start();
    d.wait_ready(Duration::from_secs(30));
    let push = |body: &str| support::daemon::request(d.addr, "POST", "/api/v1/calls", Some(body));
    let started = chrono::Utc::now() - chrono::Duration::minutes(3);
    let missed = format!(
        r#"{{"call_id": "push-1", "event": "ended", "outcome": "voicemail", "number": "699 000 111",
            "region": "ES", "language": "es", "line": "soporte-es", "started_at": "{}"}}"#,
        started.to_rfc3339()
    );
    let (status, body) = push(&missed);
    assert_eq!(status, 202, "{body}");
    assert!(body.contains(r#""events":"#), "{body}");
    // The same event again changes nothing.
    let (status, body) = push(&missed);
    assert_eq!(
        (status, body.as_str()),
        (202, r#"{"accepted":1,"events":0}"#)
    );
    let open = phone(&d);
    let call = by_customer(&open, "+34699000111");
    assert_eq!(call["state"], "open");
    assert_eq!(call["language"], "es");

    let (status, body) =
        push(r#"{"call_id": "x", "event": "rang", "started_at": "2026-01-05T09:00:00Z"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("event 0"), "{body}");
    let (status, _) = push(r#"{"call_id": "x", "event": "started"}"#);
    assert_eq!(status, 400);

    let callback = format!(
        r#"[{{"call_id": "push-2", "event": "answered", "direction": "outbound", "number": "+34699000111",
             "agent": "2001", "started_at": "{0}", "answered_at": "{0}"}}]"#,
        chrono::Utc::now().to_rfc3339()
    );
    let (status, body) = push(&callback);
    assert_eq!(status, 202, "{body}");
    let all = phone(&d);
    let call = by_customer(&all, "+34699000111");
    assert_eq!(call["state"], "responded");
    assert_eq!(call["response_kind"], "phone");
    assert_eq!(call["responder"], "2001");
    assert_eq!(call["sla"], "met");
    assert!(d.stop());
}

#[test]
fn a_freeswitch_csv_is_read_through_a_column_mapping() {
    let dir = tempdir();
    copy_fixture(dir.path(), "freeswitch.csv");
    let source = format!(
        r#"[sources.fs]
type = "csv_calls"
path = "freeswitch.csv"
fields = ["caller_id_name", "caller_id_number", "destination_number", "context", "start_epoch",
          "answer_epoch", "end_epoch", "duration", "billsec", "hangup_cause", "uuid", "bleg_uuid", "accountcode"]
{}
[sources.fs.map]
call_id = "uuid"
number = "caller_id_number"
dialled = "destination_number"
start = "start_epoch"
answer = "answer_epoch"
end = "end_epoch"
agent = "bleg_uuid"
name = "caller_id_name"
"#,
        lines("fs")
    );
    let mut d = Daemon::configure(dir.path(), &config(&source), &[]);
    d.start();
    d.wait_ready(Duration::from_secs(30));
    let all = phone(&d);
    assert_eq!(all.len(), 2, "{all:#?}");
    let ana = by_customer(&all, "+34600123456");
    assert_eq!(ana["state"], "responded");
    assert_eq!(ana["customer_name"], "Ruiz, Ana");
    let abu = by_customer(&all, "+966551234567");
    assert_eq!(abu["state"], "open");
    assert_eq!(abu["language"], "ar");
    assert!(d.stop());
}

#[test]
fn check_config_names_every_phone_problem_by_key_path() {
    let dir = tempdir();
    let bad = r#"[sources.cdr]
type = "asterisk_cdr"
path = "Master.csv"
layout = "19"
time_zone = "Mars/Olympus"
default_region = "XX"
withheld = "hide"
[[sources.cdr.lines]]
name = "es"
language = "fr"
[sources.tw]
type = "twilio"
base_url = "http://example.com"
"#;
    let d = Daemon::configure(dir.path(), &config(bad), &[]);
    let out = d.cli(&["check-config"]);
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    for key in [
        "sources.cdr.layout",
        "sources.cdr.time_zone",
        "sources.cdr.default_region",
        "sources.cdr.withheld",
        "sources.cdr.lines[0].match",
        "sources.cdr.lines[0].language",
        "sources.tw.base_url",
        "sources.tw.account_sid",
        "sources.tw.auth_token",
    ] {
        assert!(text.contains(key), "{key} missing in:\n{text}");
    }
}

#[test]
fn a_cdr_row_without_uniqueid_matching_two_queue_calls_is_counted_not_merged_nor_doubled() {
    // Two withheld callers a second apart (each its own inquiry: nothing ties them together);
    // the 16-column CDR row of one of them could be either.
    let dir = tempdir();
    std::fs::write(
        dir.path().join("queue_log"),
        concat!(
            "1767607200|1767607200.1500|soporte-es|NONE|ENTERQUEUE||anonymous|1\n",
            "1767607201|1767607201.1501|soporte-es|NONE|ENTERQUEUE||anonymous|1\n",
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("Master16.csv"), "").unwrap();
    let sources = format!("{}\n{}", cdr16_source(), queue_source());
    let mut d = Daemon::configure(dir.path(), &config(&sources), &[]);
    d.start();
    d.wait_ready(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(20);
    while phone(&d).len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(phone(&d).len(), 2);
    append(
        &dir.path().join("Master16.csv"),
        "\"\",\"anonymous\",\"600\",\"from-trunk\",\"\"\"\"\" <anonymous>\",\"PJSIP/trunk-es-00000070\",\"\",\"Hangup\",\"\",\"2026-01-05 10:00:01\",,\"2026-01-05 10:00:30\",29,0,\"NO ANSWER\",\"DOCUMENTATION\"\n",
    );
    let metric = "slawatch_call_joins_ambiguous_total";
    while d.metric(metric) != Some(1.0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(d.metric(metric), Some(1.0));
    // Neither merged into one of them nor a third inquiry.
    let inquiries = phone(&d);
    assert_eq!(inquiries.len(), 2, "{inquiries:#?}");
    assert!(d.stop());
    assert!(
        d.log().contains("matches several queue_log calls"),
        "the ambiguity is reported"
    );
}

#[test]
fn check_config_says_what_each_cdr_layout_can_join() {
    for (layout, says) in [
        (
            cdr16_source(),
            "layout 16 has no uniqueid: its records join queue_log by caller number and start time",
        ),
        (
            cdr_source(),
            "layout 18 writes uniqueid: its records join queue_log by call id",
        ),
    ] {
        let dir = tempdir();
        let sources = format!("{layout}\n{}", queue_source());
        let d = Daemon::configure(dir.path(), &config(&sources), &[]);
        let out = d.cli(&["check-config"]);
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains(&format!("note: sources.cdr: {says}")),
            "{text}"
        );
        assert!(
            text.contains("a queue call's pickup is queue_log's CONNECT"),
            "{text}"
        );
    }
}

/// An IVR-fronted queue call: the dialplan answered at 11:00:02 (the CDR's `answer`), the
/// caller entered the queue at 11:00:20 and a member picked up at 11:16:20, after the
/// 15-minute deadline.
const IVR_CDR: &str = r#""","0034600123456","600","from-trunk","""Ana"" <0034600123456>","PJSIP/trunk-es-00000090","PJSIP/2001-00000091","Queue","soporte-es,t,,,300","2026-01-05 11:00:00","2026-01-05 11:00:02","2026-01-05 11:20:00",1200,1198,"ANSWERED","DOCUMENTATION","1767610800.2000",""
"#;
const IVR_QUEUE_LOG: &str = "1767610820|1767610800.2000|soporte-es|NONE|ENTERQUEUE||0034600123456|1\n1767611780|1767610800.2000|soporte-es|PJSIP/2001|CONNECT|960|1767611780.2001|4\n";

/// What an inquiry's outcome is, for comparing runs.
fn outcome(i: &Value) -> Value {
    serde_json::json!({
        "state": i["state"], "sla": i["sla"], "received_at": i["received_at"],
        "responded_at": i["responded_at"], "response_kind": i["response_kind"],
    })
}

/// Runs the daemon on CDR + queue_log with `first` written before start and `second` once the
/// first feed's call is tracked; the one phone inquiry's outcome once it is answered.
fn ivr_call_read(first: (&str, &str), second: (&str, &str)) -> Value {
    let dir = tempdir();
    std::fs::write(dir.path().join(first.0), first.1).unwrap();
    std::fs::write(dir.path().join(second.0), "").unwrap();
    let sources = format!("{}\n{}", cdr_source(), queue_source());
    let mut d = Daemon::configure(dir.path(), &config(&sources), &[]);
    d.start();
    d.wait_ready(Duration::from_secs(30));
    d.wait_for("the first feed's call", Duration::from_secs(20), |d| {
        phone(d).len() == 1
    });
    append(&dir.path().join(second.0), second.1);
    // The second feed read to its end (its cursor committed past every line).
    let source = if second.0 == "queue_log" {
        "queue"
    } else {
        "cdr"
    };
    let query =
        format!("SELECT json_extract(value, '$.offset') FROM cursors WHERE source = '{source}'");
    let length = second.1.len().to_string();
    d.wait_for("the second feed read", Duration::from_secs(20), |d| {
        d.sql(&query).lines().any(|offset| offset == length)
    });
    let inquiries = phone(&d);
    assert_eq!(inquiries.len(), 1, "{inquiries:#?}");
    assert!(d.stop());
    outcome(&inquiries[0])
}

#[test]
fn a_queue_calls_pickup_is_queue_logs_connect_whichever_feed_is_read_first() {
    let cdr_first = ivr_call_read(("Master.csv", IVR_CDR), ("queue_log", IVR_QUEUE_LOG));
    let queue_log_first = ivr_call_read(("queue_log", IVR_QUEUE_LOG), ("Master.csv", IVR_CDR));
    assert_eq!(cdr_first, queue_log_first);
    // The member's pickup, never the IVR's answer: 16 minutes after the call, missed.
    assert_eq!(cdr_first["responded_at"], "2026-01-05T11:16:20Z");
    assert_eq!(cdr_first["sla"], "missed");
    assert_eq!(cdr_first["received_at"], "2026-01-05T11:00:00Z");
}
