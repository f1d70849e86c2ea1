//! The real binary routing alerts by its on-call rotation through a real SMTP server (aiosmtpd,
//! STARTTLS + AUTH): each overdue inquiry's breach reaches the person on call and the escalation
//! list, one mail each, never the fixed `to` list; the ledger records who received each, and a
//! restart sends nothing again.

mod support;

use std::time::Duration;

use support::daemon::{Daemon, overdue_mailbox};
use support::smtp::{PASSWORD, SmtpServer, USER};

fn config(smtp: &SmtpServer) -> String {
    format!(
        r#"
[store]
url = "sqlite://{{dir}}/ledger.db"
[http]
bind = "127.0.0.1:{{port}}"
[desk]
support_addresses = ["support@example.com"]
internal_domains = ["example.com"]
[sources.mail]
type = "maildir"
path = "{{dir}}/maildir"
scan_interval = "1s"
[notify]
primary = ["smtp"]
[notify.smtp]
host = "127.0.0.1"
port = {port}
security = "starttls"
ca_file = "{ca}"
username = "{USER}"
from = "SLA monitor <slawatch@example.com>"
to = ["nobody-on-call@example.com"]
timeout = "5s"

[notify.oncall.people.ana]
email = "ana@example.com"
[notify.oncall.people.lead]
email = "lead@example.com"
[notify.oncall.rotations.desk]
time_zone = "Europe/Madrid"
escalation = ["lead"]
[[notify.oncall.rotations.desk.layers]]
slots = [{{ when = "Mon 00:00-Mon 00:00", person = "ana" }}]
"#,
        port = smtp.starttls_port,
        ca = smtp.cert.display(),
    )
}

#[test]
fn the_daemon_sends_each_breach_to_the_person_on_call_and_the_escalation_list_once() {
    const N: usize = 3;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    overdue_mailbox(dir.path(), N);
    let mut daemon = Daemon::configure(
        dir.path(),
        &config(&smtp),
        &[("SLAWATCH__NOTIFY__SMTP__PASSWORD", PASSWORD)],
    );
    daemon.start();
    let per_person = |d: &Daemon, person: &str| -> usize {
        d.sql(&format!(
            "SELECT count(*) FROM ledger WHERE kind = 'alert_delivered' \
             AND payload LIKE '%\"recipients\":[\"{person}\"]%'"
        ))
        .parse()
        .unwrap_or(0)
    };
    daemon.wait_for(
        "every breach delivered to both",
        Duration::from_secs(60),
        |d| per_person(d, "ana") >= N && per_person(d, "lead") >= N,
    );
    let mails = smtp.messages();
    assert_eq!(mails.len(), 2 * N, "one mail per person and breach");
    let mut to: Vec<String> = mails
        .iter()
        .map(|m| m.meta["rcpt_tos"].to_string())
        .collect();
    to.sort();
    to.dedup();
    assert_eq!(to, ["[\"ana@example.com\"]", "[\"lead@example.com\"]"]);
    for m in &mails {
        assert_eq!(m.header("X-Slawatch-Alert").as_deref(), Some("breach"));
    }
    // Restarted: everything is recorded per person, nothing goes out again.
    assert!(daemon.stop());
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(smtp.messages().len(), 2 * N, "alerts sent twice");
    assert!(daemon.stop());
}

#[test]
fn test_alert_goes_to_whoever_is_on_call_now() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    overdue_mailbox(dir.path(), 0);
    let daemon = Daemon::configure(
        dir.path(),
        &config(&smtp),
        &[("SLAWATCH__NOTIFY__SMTP__PASSWORD", PASSWORD)],
    );
    let out = daemon.cli(&["test-alert"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("smtp to ana: sent"), "{stdout}");
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0].meta["rcpt_tos"],
        serde_json::json!(["ana@example.com"])
    );
}
