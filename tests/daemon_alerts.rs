//! The real binary alerting through a real SMTP server (aiosmtpd, STARTTLS + AUTH): inquiries
//! already overdue at start-up go out as a few digests listing every one; killed with SIGKILL
//! while the mail server is down, the restarted daemon delivers them all, and never again after.

mod support;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
[policy]
target = "15m"
warn = ["10m"]
[sources.mail]
type = "maildir"
path = "{{dir}}/maildir"
scan_interval = "1s"
[notify]
primary = ["smtp"]
retry_for = "1h"
[notify.smtp]
host = "127.0.0.1"
port = {port}
security = "starttls"
ca_file = "{ca}"
username = "{USER}"
from = "SLA monitor <slawatch@example.com>"
to = ["oncall@example.com"]
timeout = "5s"
"#,
        port = smtp.starttls_port,
        ca = smtp.cert.display(),
    )
}

fn env() -> [(&'static str, &'static str); 1] {
    [("SLAWATCH__NOTIFY__SMTP__PASSWORD", PASSWORD)]
}

fn delivered(d: &Daemon) -> usize {
    d.sql("SELECT count(*) FROM ledger WHERE kind = 'alert_delivered'")
        .parse()
        .unwrap_or(0)
}

/// Every inquiry id named in the mails received so far.
fn listed(smtp: &SmtpServer) -> std::collections::BTreeSet<String> {
    smtp.messages()
        .iter()
        .flat_map(|m| {
            m.body()
                .lines()
                .filter_map(|l| {
                    l.split("slawatch ack ")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                        .map(str::to_string)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn overdue_at_start_up_goes_out_as_a_few_digests_listing_every_inquiry() {
    // 300 keeps the suite quick; the figure (10,000) is measured with SLAWATCH_TEST_OVERDUE=10000.
    let n: usize = std::env::var("SLAWATCH_TEST_OVERDUE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    overdue_mailbox(dir.path(), n);
    let mut daemon = Daemon::configure(dir.path(), &config(&smtp), &env());
    let started = std::time::Instant::now();
    daemon.start();
    daemon.wait_for("every breach delivered", Duration::from_secs(300), |d| {
        delivered(d) >= n
    });
    let mails = smtp.messages();
    eprintln!(
        "{n} overdue inquiries: {} mails, all delivered {:?} after the start",
        mails.len(),
        started.elapsed()
    );
    assert!(
        mails.len() <= 10,
        "{} mails for {n} overdue inquiries",
        mails.len()
    );
    assert_eq!(listed(&smtp).len(), n, "every inquiry listed");
    for m in &mails {
        assert_eq!(
            m.header("Auto-Submitted").as_deref(),
            Some("auto-generated")
        );
        assert_eq!(m.meta["auth_user"], USER);
    }
    assert_eq!(
        daemon.metric("slawatch_notifier_up{notifier=\"smtp\"}"),
        Some(1.0)
    );
    // A restart sends nothing again.
    assert!(daemon.stop());
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(smtp.messages().len(), mails.len(), "alerts sent twice");
    assert!(daemon.stop());
}

#[test]
fn killed_while_the_mail_server_is_down_delivers_everything_after_the_restart_once() {
    const N: usize = 40;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut smtp = SmtpServer::start();
    smtp.stop();
    let dir = tempfile::tempdir().unwrap();
    overdue_mailbox(dir.path(), N);
    let mut daemon = Daemon::configure(dir.path(), &config(&smtp), &env());
    daemon.start();
    // The breaches are in the ledger; their delivery is being retried against a dead server.
    daemon.wait_for("the breaches", Duration::from_secs(60), |d| {
        d.sql("SELECT count(*) FROM ledger WHERE kind = 'inquiry_breached'")
            .parse::<usize>()
            .unwrap_or(0)
            >= N
    });
    daemon.wait_for("notifier_up 0", Duration::from_secs(30), |d| {
        d.metric("slawatch_notifier_up{notifier=\"smtp\"}") == Some(0.0)
    });
    daemon.kill9();
    assert_eq!(delivered(&daemon), 0);

    smtp.resume();
    daemon.start();
    daemon.wait_for("every breach delivered", Duration::from_secs(60), |d| {
        delivered(d) >= N
    });
    assert_eq!(listed(&smtp).len(), N, "every inquiry listed");
    let sent = smtp.messages().len();
    assert!(sent <= 10, "{sent} mails");
    assert!(daemon.stop());
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let all = smtp.messages();
    assert_eq!(
        all.len(),
        sent,
        "alerts sent twice: {:?}\n{}",
        all.last()
            .map(|m| (m.header("Subject"), m.header("X-Slawatch-Alert"))),
        daemon.log()
    );
    assert!(daemon.stop());
}

/// `n` mails delivered from `first_received` (Unix seconds) on, `per_second` per second.
fn staggered_mailbox(dir: &Path, n: usize, first_received: u64, per_second: usize) {
    let root = dir.join("maildir");
    for sub in ["tmp", "new", "cur", ".Sent/tmp", ".Sent/new", ".Sent/cur"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for i in 0..n {
        let ts = first_received + (i / per_second) as u64;
        let raw = format!(
            "From: S{i} <s{i}@customer.test>\r\nTo: support@example.com\r\nSubject: staggered {i}\r\n\
             Message-ID: <s{i}@customer.test>\r\n\r\nHello {i}.\r\n"
        );
        std::fs::write(root.join("new").join(format!("{ts}.M{i}P2.test")), raw).unwrap();
    }
}

#[test]
fn breaches_at_staggered_instants_are_accepted_by_the_mail_server_within_a_second() {
    // 100 over 10 s keeps the suite quick; the figure (1,000) is measured with
    // SLAWATCH_TEST_STAGGERED=1000.
    let n: usize = std::env::var("SLAWATCH_TEST_STAGGERED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let per_second = 10;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Deadlines (15 min after receipt) start 8 s from now, 10 per second, well after the first
    // sync; no warnings (they would already be past).
    staggered_mailbox(dir.path(), n, now + 8 - 15 * 60, per_second);
    let text = config(&smtp).replace("warn = [\"10m\"]", "warn = []");
    let mut daemon = Daemon::configure(dir.path(), &text, &env());
    daemon.start();
    let span = Duration::from_secs((n / per_second) as u64 + 40);
    daemon.wait_for("every breach delivered", span, |d| delivered(d) >= n);
    let count = daemon
        .metric("slawatch_alert_delivery_latency_seconds_count{notifier=\"smtp\"}")
        .unwrap_or(0.0);
    let within_1s = daemon
        .metric("slawatch_alert_delivery_latency_seconds_bucket{notifier=\"smtp\",le=\"1\"}")
        .unwrap_or(0.0);
    eprintln!(
        "{n} staggered breaches: {within_1s} of {count} accepted within 1 s of their deadline, {} mails",
        smtp.messages().len()
    );
    assert_eq!(count as usize, n);
    assert!(
        within_1s >= (n as f64 * 0.99).floor(),
        "{within_1s} of {count} within 1 s"
    );
    assert_eq!(listed(&smtp).len(), n);
    assert!(daemon.stop());
}

#[test]
fn test_alert_goes_through_every_notifier_and_fails_loudly_on_a_bad_one() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    overdue_mailbox(dir.path(), 0);
    let daemon = Daemon::configure(dir.path(), &config(&smtp), &env());
    let out = daemon.cli(&["test-alert"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("smtp: sent"), "{stdout}");
    let got = smtp.messages();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].body().contains("Test alert: no action needed"),
        "{}",
        got[0].raw
    );

    // Wrong password: a clear failure and exit 1, the password never printed.
    let bad = Daemon::configure(
        dir.path(),
        &config(&smtp),
        &[("SLAWATCH__NOTIFY__SMTP__PASSWORD", "not-the-password")],
    );
    let out = bad.cli(&["test-alert"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("smtp: FAILED") && stdout.contains("535"),
        "{stdout}"
    );
    assert!(!stdout.contains("not-the-password"));
}
