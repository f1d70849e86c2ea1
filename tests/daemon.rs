//! End to end: the real `slawatch` binary watching a real Dovecot over IMAPS, its ledger, API,
//! metrics and CLI; restarts, `kill -9` during backfill, a wrong password.

mod support;

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde_json::Value;
use support::daemon::Daemon;
use support::dovecot::{Dovecot, PASSWORD, conversation_mail};

fn config(d: &Dovecot) -> String {
    format!(
        r#"
[store]
url = "sqlite://{{dir}}/ledger.db"
[http]
bind = "127.0.0.1:{{port}}"
[desk]
support_addresses = ["support@example.com"]
internal_domains = ["example.com"]
[policy]
target = "15m"
warn = ["10m"]
[sources.support]
type = "imap"
host = "127.0.0.1"
port = {port}
security = "tls"
ca_file = "{ca}"
username = "alice"
inbox_folders = ["INBOX"]
timeout = "10s"
"#,
        port = d.imaps_port,
        ca = d.cert_path().display()
    )
}

fn customer_mail(id: &str, from: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: support@example.com\r\nSubject: {subject}\r\nMessage-ID: <{id}@customer.test>\r\n\
         Content-Language: en\r\nDate: Tue, 24 Nov 2026 09:00:00 +0000\r\n\r\n\
         Hello, I need help with {subject}. Could you please look into it today?\r\n"
    )
    .into_bytes()
}

fn reply_mail(id: &str, to: &str, parent: &str) -> Vec<u8> {
    format!(
        "From: Support <support@example.com>\r\nTo: {to}\r\nSubject: Re: your question\r\n\
         Message-ID: <{id}@example.com>\r\nIn-Reply-To: <{parent}@customer.test>\r\n\
         References: <{parent}@customer.test>\r\n\r\nHello, here is the answer.\r\n"
    )
    .into_bytes()
}

/// `minutes` before the test's start, in whole seconds (INTERNALDATE has one-second resolution;
/// one base instant keeps the differences between messages exact).
fn ago(minutes: i64) -> DateTime<Utc> {
    static BASE: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let now = Utc::now();
        now - chrono::Duration::nanoseconds(now.timestamp_subsec_nanos() as i64)
    });
    base - chrono::Duration::minutes(minutes)
}

fn by_subject<'a>(inquiries: &'a [Value], subject: &str) -> &'a Value {
    inquiries
        .iter()
        .find(|i| i["subject"] == subject)
        .unwrap_or_else(|| panic!("no inquiry `{subject}` in {inquiries:#?}"))
}

fn env() -> [(&'static str, &'static str); 1] {
    [("SLAWATCH__SOURCES__SUPPORT__PASSWORD", PASSWORD)]
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("slawatch-e2e")
        .tempdir()
        .unwrap()
}

#[test]
fn a_real_mailbox_is_tracked_end_to_end_and_survives_a_restart() {
    let d = Dovecot::start();
    d.append(
        "INBOX",
        &customer_mail("a", "Ana <ana@customer.test>", "invoice A"),
        ago(30),
    );
    d.append("Sent", &reply_mail("ra", "ana@customer.test", "a"), ago(24)); // 6 minutes: met
    d.append(
        "INBOX",
        &customer_mail("b", "Ben <ben@customer.test>", "login B"),
        ago(2),
    ); // open
    d.append(
        "INBOX",
        &customer_mail("d", "Dana <dana@customer.test>", "refund D"),
        ago(40),
    ); // missed
    let mut ooo = customer_mail("c", "Carl <carl@customer.test>", "Out of office");
    ooo.splice(0..0, b"Auto-Submitted: auto-replied\r\n".iter().copied());
    d.append("INBOX", &ooo, ago(5));

    let dir = tempdir();
    let mut daemon = Daemon::configure(dir.path(), &config(&d), &env());
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));

    // The scheduler fires D's breach as soon as the first sync is done.
    daemon.wait_for("D to be breached", Duration::from_secs(10), |x| {
        by_subject(&x.inquiries(), "refund D")["sla"] == "missed"
    });
    let all = daemon.inquiries();
    assert_eq!(all.len(), 4, "{all:#?}");
    let a = by_subject(&all, "invoice A");
    assert_eq!(
        (a["state"].as_str(), a["sla"].as_str()),
        (Some("responded"), Some("met"))
    );
    assert_eq!(a["response_seconds"], 360);
    assert_eq!(a["responder"], "support@example.com");
    assert_eq!(a["language"], "en");
    let b = by_subject(&all, "login B");
    assert_eq!(
        (b["state"].as_str(), b["sla"].as_str()),
        (Some("open"), Some("pending"))
    );
    let c = by_subject(&all, "Out of office");
    assert_eq!(
        (c["state"].as_str(), c["excluded_reason"].as_str()),
        (Some("excluded"), Some("auto_submitted"))
    );
    let dana = by_subject(&all, "refund D");
    assert_eq!(
        (dana["state"].as_str(), dana["sla"].as_str()),
        (Some("open"), Some("missed"))
    );

    // One inquiry with its ledger events.
    let detail = daemon.get_json(&format!("/api/v1/inquiries/{}", a["id"].as_str().unwrap()));
    let kinds: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["inquiry_opened", "inquiry_responded"]);

    // New mail is seen through IDLE, and a reply in the \Sent folder (found by SPECIAL-USE) answers.
    d.append(
        "INBOX",
        &customer_mail("e", "Eve <eve@customer.test>", "new E"),
        Utc::now(),
    );
    daemon.wait_for("E to appear through IDLE", Duration::from_secs(10), |x| {
        x.inquiries().iter().any(|i| i["subject"] == "new E")
    });
    d.append(
        "Sent",
        &reply_mail("rb", "ben@customer.test", "b"),
        Utc::now(),
    );
    daemon.wait_for("B to be answered", Duration::from_secs(10), |x| {
        by_subject(&x.inquiries(), "login B")["sla"] == "met"
    });

    // Up again within a few seconds if a loaded machine made an IDLE round trip time out.
    daemon.wait_for("the source to be up", Duration::from_secs(10), |x| {
        x.metric(r#"slawatch_source_up{source="support"}"#) == Some(1.0)
    });
    assert_eq!(
        daemon.metric(r#"slawatch_deadlines_total{channel="email",language="en",outcome="met"}"#),
        Some(2.0)
    );
    assert_eq!(
        daemon
            .metric(r#"slawatch_deadlines_total{channel="email",language="en",outcome="missed"}"#),
        Some(1.0)
    );
    assert_eq!(
        daemon.metric(
            r#"slawatch_inquiries_excluded_total{channel="email",reason="auto_submitted"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        daemon.metric(r#"slawatch_open_inquiries{channel="email",language="en",state="breached"}"#),
        Some(1.0)
    );
    let breach_alerts = daemon.log().matches("[SLA breached]").count();
    assert_eq!(breach_alerts, 1, "{}", daemon.log());

    // Mailbox never changed: monitoring sets no flags.
    assert!(
        d.flags("INBOX").iter().all(|f| !f.contains("\\Seen")),
        "{:?}",
        d.flags("INBOX")
    );

    assert!(daemon.stop(), "a clean SIGTERM shutdown");
    let verify = daemon.cli(&["audit", "verify"]);
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && out.contains("head hash:"),
        "{out}"
    );
    let table =
        String::from_utf8_lossy(&daemon.cli(&["inquiries", "--state", "all"]).stdout).to_string();
    assert!(
        table.contains("refund D") && table.contains("missed"),
        "{table}"
    );

    // Restart: the ledger is replayed, nothing is counted or alerted again, the cursor resumes.
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(daemon.inquiries().len(), 5);
    assert_eq!(
        daemon.sql("SELECT count(*) FROM ledger WHERE kind = 'inquiry_opened'"),
        "4"
    );
    assert_eq!(
        daemon.sql("SELECT count(*) FROM ledger WHERE kind = 'inquiry_breached'"),
        "1"
    );
    assert!(
        !daemon.log().contains("[SLA"),
        "alerts repeated after restart:\n{}",
        daemon.log()
    );
    let stopped = daemon.stop();
    assert!(stopped, "no clean shutdown:\n{}", daemon.log());
}

#[test]
fn killed_during_backfill_then_restarted_gives_the_same_ledger() {
    const N: usize = 6_000;
    let mut d = Dovecot::configure();
    let mtime = SystemTime::now() - Duration::from_secs(3600);
    for i in 0..N {
        let raw = customer_mail(
            &format!("k{i}"),
            &format!("C{i} <c{i}@customer.test>"),
            &format!("question {i}"),
        );
        d.maildir_drop(
            "INBOX",
            &format!("{}.M{i}P1.test", 1_700_000_000 + i),
            &raw,
            mtime,
        );
    }
    d.launch();
    let dir = tempdir();
    let mut daemon = Daemon::configure(dir.path(), &config(&d), &env());
    daemon.start();
    let opened = |x: &Daemon| -> usize {
        x.sql("SELECT count(*) FROM ledger WHERE kind = 'inquiry_opened'")
            .parse()
            .unwrap_or(0)
    };
    daemon.wait_for(
        "the backfill to be under way",
        Duration::from_secs(60),
        |x| opened(x) >= 500,
    );
    daemon.kill9();
    let at_kill = opened(&daemon);
    assert!(
        at_kill < N,
        "the backfill finished before the kill ({at_kill}); the test proves nothing"
    );

    daemon.start();
    daemon.wait_ready(Duration::from_secs(120));
    assert_eq!(
        opened(&daemon),
        N,
        "every message exactly once after the restart"
    );
    assert_eq!(
        daemon.sql("SELECT count(DISTINCT inquiry_id) FROM ledger WHERE kind = 'inquiry_opened'"),
        N.to_string()
    );
    assert_eq!(daemon.inquiries().len(), N);
    assert!(daemon.stop());
    let verify = daemon.cli(&["audit", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}

#[test]
fn a_wrong_password_shows_the_source_down_while_the_daemon_keeps_serving() {
    let d = Dovecot::start();
    let dir = tempdir();
    let mut daemon = Daemon::configure(
        dir.path(),
        &config(&d),
        &[("SLAWATCH__SOURCES__SUPPORT__PASSWORD", "wrong")],
    );
    daemon.start();
    daemon.wait_for(
        "an auth error to be counted",
        Duration::from_secs(20),
        |x| {
            x.metric(r#"slawatch_source_errors_total{kind="auth",source="support"}"#)
                .unwrap_or(0.0)
                >= 1.0
        },
    );
    assert_eq!(
        daemon.metric(r#"slawatch_source_up{source="support"}"#),
        Some(0.0)
    );
    assert_eq!(daemon.get("/healthz").0, 200);
    let (status, body) = daemon.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("support"), "{body}");
    assert!(
        !daemon.log().contains("wrong"),
        "the password leaked into the log:\n{}",
        daemon.log()
    );
    let stopped = daemon.stop();
    assert!(stopped, "no clean shutdown:\n{}", daemon.log());
}

#[test]
fn check_config_names_every_problem_and_redacts_secrets() {
    let dir = tempdir();
    let bad = Daemon::configure(
        dir.path(),
        "[desk]\nsupport_addresses = []\ndefault_language = \"fr\"\n[policy]\ntarget = \"soon\"\n[sources.x]\ntype = \"imap\"\nhost = \"mail.example.com\"\nsecurity = \"plain\"\n",
        &[],
    );
    let out = bad.cli(&["check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for key in [
        "desk.support_addresses",
        "desk.default_language",
        "policy.target",
        "sources.x.security",
        "sources.x.username",
        "sources.x.password",
    ] {
        assert!(stderr.contains(key), "`{key}` not named in:\n{stderr}");
    }

    let good = Daemon::configure(
        dir.path(),
        "[desk]\nsupport_addresses = [\"support@example.com\"]\n[sources.m]\ntype = \"maildir\"\npath = \"m\"\n",
        &[("SLAWATCH__HTTP__TOKEN", "very-secret-token")],
    );
    let out = good.cli(&["check-config"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let effective: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(effective["http"]["token"], "<redacted>");
    assert_eq!(effective["policies"][0]["target_seconds"], 900);
    assert!(!stdout.contains("very-secret-token"));
}

/// Six conversations of a morning (folder, message, INTERNALDATE): second messages before the
/// reply (one without a Message-ID), replies in time, late and very late, and customers writing
/// again after the reply.
fn morning() -> Vec<(&'static str, Vec<u8>, DateTime<Utc>)> {
    let customer = "Customer <customer@customer.test>";
    let desk = "support@example.com";
    let mut out = Vec::new();
    for k in 0..6i64 {
        let start = ago(240 - 30 * k);
        let first = format!("<first{k}@customer.test>");
        let subject = format!("parcel {k}");
        out.push((
            "INBOX",
            conversation_mail(customer, desk, &first, &subject, &[]),
            start,
        ));
        if k % 2 == 0 {
            let id = if k == 2 {
                String::new()
            } else {
                format!("<again{k}@customer.test>")
            };
            let raw =
                conversation_mail(customer, desk, &id, &subject, std::slice::from_ref(&first));
            out.push(("INBOX", raw, start + chrono::Duration::minutes(3)));
        }
        let reply_at = start + chrono::Duration::minutes([5, 12, 25][(k % 3) as usize]);
        let reply = format!("<reply{k}@example.com>");
        let to = "customer@customer.test";
        let raw = conversation_mail(desk, to, &reply, &subject, std::slice::from_ref(&first));
        out.push(("Sent", raw, reply_at));
        if k % 2 == 1 {
            let chain = [first.clone(), reply.clone()];
            let id = format!("<next{k}@customer.test>");
            let raw = conversation_mail(customer, desk, &id, &subject, &chain);
            out.push(("INBOX", raw, reply_at + chrono::Duration::minutes(2)));
        }
    }
    out
}

/// Every inquiry's outcome, merged ones left out, sorted.
fn mail_outcomes(d: &Daemon) -> Vec<Value> {
    let mut out: Vec<Value> = d.get_json("/api/v1/inquiries?limit=1000")["inquiries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] != "merged")
        .map(|i| {
            serde_json::json!({
                "id": i["id"], "subject": i["subject"], "kind": i["kind"],
                "received_at": i["received_at"], "state": i["state"], "sla": i["sla"],
                "responded_at": i["responded_at"], "response_kind": i["response_kind"],
                "follow_ups": i["follow_ups"],
            })
        })
        .collect();
    out.sort_by_key(|o| o.to_string());
    out
}

/// DESIGN.md "Evidence order" on the real binary: mail arriving in Sent and INBOX while the
/// daemon runs — every reply before the message it answers, customers' mail newest first —
/// ends in the same inquiries and outcomes as a fresh daemon reading the finished mailbox.
#[test]
fn mail_arriving_in_both_folders_while_running_ends_as_a_fresh_read_of_the_mailbox() {
    let mail = morning();
    let config = |d: &Dovecot| format!("{}sent_folders = [\"Sent\"]\n", config(d));

    // The reference: a fresh daemon on the finished mailbox.
    let finished = Dovecot::start();
    for (folder, raw, at) in &mail {
        finished.append(folder, raw, *at);
    }
    let dir = tempdir();
    let mut d = Daemon::configure(dir.path(), &config(&finished), &env());
    d.start();
    d.wait_ready(Duration::from_secs(30));
    let expected = mail_outcomes(&d);
    assert!(d.stop());
    // Six first inquiries and three next replies.
    assert_eq!(expected.len(), 9, "{expected:#?}");

    // Live: the replies arrive first, then the customers' mail newest first, each on its own.
    let live = Dovecot::start();
    let dir = tempdir();
    let mut d = Daemon::configure(dir.path(), &config(&live), &env());
    d.start();
    d.wait_ready(Duration::from_secs(30));
    let (sent, inbox): (Vec<_>, Vec<_>) = mail.iter().partition(|(f, _, _)| *f == "Sent");
    for (folder, raw, at) in sent.iter().chain(inbox.iter().rev()) {
        live.append(folder, raw, *at);
        std::thread::sleep(Duration::from_millis(300));
    }
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while mail_outcomes(&d) != expected && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(mail_outcomes(&d), expected);
    assert!(d.stop());
}
