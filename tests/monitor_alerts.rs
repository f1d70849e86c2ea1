//! The monitor watching itself, against the real binary and real servers:
//!
//! - the IMAP server (Dovecot) stopped: the source goes silent past its `silent_after`, the
//!   on-call person is paged by mail (aiosmtpd), within the limit plus 5 s, and the server's
//!   return sends the `resolved` mail; both are in the ledger and the report's coverage;
//! - the dead-man's switch: `notify.heartbeat_url` is requested every interval by a running
//!   daemon, and the requests stop when the daemon is killed;
//! - a mail server that stays down past `retry_for`: the breach goes out by webhook at once, and
//!   the webhook then carries the page about the failing SMTP notifier;
//! - `check-config` refuses a `[notify]` that names no notifier.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::daemon::Daemon;
use support::dovecot::{Dovecot, PASSWORD as IMAP_PASSWORD};
use support::smtp::{PASSWORD, SmtpServer, USER};

const SILENT_AFTER: u64 = 10;

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn config(d: &Dovecot, smtp: &SmtpServer) -> String {
    format!(
        r#"
[store]
url = "sqlite://{{dir}}/ledger.db"
[http]
bind = "127.0.0.1:{{port}}"
[desk]
support_addresses = ["support@example.com"]
internal_domains = ["example.com"]
[sources.support]
type = "imap"
host = "127.0.0.1"
port = {imap}
security = "tls"
ca_file = "{imap_ca}"
username = "alice"
inbox_folders = ["INBOX"]
timeout = "3s"
idle_timeout = "3s"
poll_interval = "2s"
silent_after = "{SILENT_AFTER}s"
[notify]
primary = ["smtp"]
retry_for = "1m"
[notify.smtp]
host = "127.0.0.1"
port = {smtp}
security = "starttls"
ca_file = "{smtp_ca}"
username = "{USER}"
from = "SLA monitor <slawatch@example.com>"
to = ["oncall@example.com"]
timeout = "5s"
"#,
        imap = d.imaps_port,
        imap_ca = d.cert_path().display(),
        smtp = smtp.starttls_port,
        smtp_ca = smtp.cert.display(),
    )
}

/// The monitor mails about `alert` so far: `(X-Slawatch-Alert, Subject)`.
fn monitor_mails(smtp: &SmtpServer, alert: &str) -> Vec<(String, String)> {
    smtp.messages()
        .iter()
        .filter(|m| m.header("X-Slawatch-Inquiry").as_deref() == Some(alert))
        .map(|m| {
            (
                m.header("X-Slawatch-Alert").unwrap_or_default(),
                m.header("Subject").unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn a_stopped_imap_server_pages_by_mail_within_its_limit_and_its_return_resolves_it() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut dovecot = Dovecot::start();
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::configure(
        dir.path(),
        &config(&dovecot, &smtp),
        &[
            ("SLAWATCH__SOURCES__SUPPORT__PASSWORD", IMAP_PASSWORD),
            ("SLAWATCH__NOTIFY__SMTP__PASSWORD", PASSWORD),
        ],
    );
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    // Working: no page, however long (several IDLE rounds).
    std::thread::sleep(Duration::from_secs(SILENT_AFTER + 2));
    assert!(
        monitor_mails(&smtp, "monitor-source-support").is_empty(),
        "paged while the source worked: {}",
        daemon.log()
    );

    // Stopped: the source loses its server (once Dovecot's last session process is gone)
    // and goes silent from its last successful check.
    dovecot.stop();
    daemon.wait_for(
        "the page about the silent source",
        Duration::from_secs(SILENT_AFTER + 60),
        |_| !monitor_mails(&smtp, "monitor-source-support").is_empty(),
    );
    let paged = unix_now();
    let last_success = daemon
        .metric("slawatch_source_last_success_timestamp_seconds{source=\"support\"}")
        .expect("the source's last success");
    let took = paged - last_success;
    let mails = monitor_mails(&smtp, "monitor-source-support");
    eprintln!(
        "IMAP stopped: paged {took:.1} s after the source's last successful check (limit {SILENT_AFTER} s): {mails:?}"
    );
    assert!(
        took <= (SILENT_AFTER + 5) as f64,
        "paged {took:.1} s after the last successful check, limit {SILENT_AFTER} s + 5 s\n{}",
        daemon.log()
    );
    assert_eq!(mails[0].0, "breach");
    assert!(
        mails[0].1.contains("[MONITOR BLIND] source support silent"),
        "{mails:?}"
    );
    let (status, body) = daemon.get("/readyz");
    assert!(
        body.contains("monitor alert monitor-source-support"),
        "{status} {body}"
    );
    let (_, wallboard) = daemon.get("/");
    assert!(wallboard.contains("source support silent"), "{wallboard}");
    assert_eq!(
        daemon.metric("slawatch_monitor_alerts_active{kind=\"source_silent\"}"),
        Some(1.0)
    );
    // Still silent: no second page.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(monitor_mails(&smtp, "monitor-source-support").len(), 1);

    // Back: resolved, once.
    dovecot.launch();
    daemon.wait_for("the resolution", Duration::from_secs(60), |_| {
        monitor_mails(&smtp, "monitor-source-support").len() >= 2
    });
    let mails = monitor_mails(&smtp, "monitor-source-support");
    assert_eq!(mails[1].0, "resolved", "{mails:?}");
    assert!(mails[1].1.contains("[MONITOR OK]"), "{mails:?}");
    assert!(daemon.stop());

    let kinds = daemon.sql(
        "SELECT group_concat(kind, ' ') FROM ledger WHERE kind LIKE 'monitor_alert%' ORDER BY seq",
    );
    assert_eq!(
        kinds,
        "monitor_alert_raised monitor_alert_delivered monitor_alert_resolved monitor_alert_delivered"
    );
    // The report's monitor coverage lists it.
    let out = daemon.cli(&[
        "report",
        "--format",
        "json",
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let alerts = report["coverage"]["monitor_alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{report:#}");
    assert_eq!(alerts[0]["alert"], "monitor-source-support");
    assert_eq!(alerts[0]["problem"], "source_silent");
    assert!(alerts[0]["resolved_at"].is_string(), "{:#}", alerts[0]);
    assert_eq!(alerts[0]["delivered"], true);
}

/// A tiny HTTP server recording when each request came, its request line and its body.
struct HeartbeatReceiver {
    url: String,
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl HeartbeatReceiver {
    fn start() -> HeartbeatReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ping/4b1c0bdf", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = seen.clone();
        let keep = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut length = 0;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = h.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = std::io::Read::read_exact(&mut reader, &mut body);
                keep.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
                record
                    .lock()
                    .unwrap()
                    .push((Instant::now(), line.trim().to_string()));
                let mut stream = stream;
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK",
                );
            }
        });
        HeartbeatReceiver { url, seen, bodies }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

#[test]
fn the_heartbeat_is_requested_every_interval_and_stops_when_the_daemon_is_killed() {
    let receiver = HeartbeatReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    support::daemon::overdue_mailbox(dir.path(), 0);
    let config = r#"
[store]
url = "sqlite://{dir}/ledger.db"
[http]
bind = "127.0.0.1:{port}"
[desk]
support_addresses = ["support@example.com"]
[sources.mail]
type = "maildir"
path = "{dir}/maildir"
[notify]
heartbeat_every = "1s"
heartbeat_method = "post"
"#;
    let mut daemon = Daemon::configure(
        dir.path(),
        config,
        &[("SLAWATCH__NOTIFY__HEARTBEAT_URL", receiver.url.as_str())],
    );
    let out = daemon.cli(&["check-config"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains("4b1c0bdf"),
        "the heartbeat URL is a secret: {stdout}"
    );
    daemon.start();
    daemon.wait_for("five heartbeats", Duration::from_secs(15), |_| {
        receiver.count() >= 5
    });
    {
        let seen = receiver.seen.lock().unwrap();
        assert!(
            seen.iter()
                .all(|(_, l)| l == "POST /ping/4b1c0bdf HTTP/1.1"),
            "{seen:?}"
        );
        let gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(
            gaps.iter()
                .all(|g| *g > Duration::from_millis(500) && *g < Duration::from_millis(1600)),
            "{gaps:?}"
        );
    }
    daemon.kill9();
    let at_kill = receiver.count();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        receiver.count() <= at_kill + 1,
        "heartbeats after the daemon died: {} → {}",
        at_kill,
        receiver.count()
    );
}

#[test]
fn check_config_refuses_a_notifier_configured_but_not_named_and_warns_when_none_is() {
    let dir = tempfile::tempdir().unwrap();
    support::daemon::overdue_mailbox(dir.path(), 0);
    let base = r#"
[store]
url = "sqlite://{dir}/ledger.db"
[desk]
support_addresses = ["support@example.com"]
[sources.mail]
type = "maildir"
path = "{dir}/maildir"
"#;
    let forgot = Daemon::configure(
        dir.path(),
        &format!(
            "{base}[notify.smtp]\nhost = \"smtp.example.com\"\nfrom = \"SLA <sla@example.com>\"\nto = [\"oncall@example.com\"]\n"
        ),
        &[],
    );
    let out = forgot.cli(&["check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("notify.primary: names no notifier"),
        "{stderr}"
    );
    let none = Daemon::configure(dir.path(), base, &[]);
    let out = none.cli(&["check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: NO NOTIFIER") && stderr.contains("pages NOBODY"),
        "{stderr}"
    );
}

#[test]
fn a_mail_server_down_past_retry_for_is_paged_through_the_webhook_which_never_waited_for_it() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut smtp = SmtpServer::start();
    smtp.stop();
    let hook = HeartbeatReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    support::daemon::overdue_mailbox(dir.path(), 1);
    let config = format!(
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
[notify]
primary = ["smtp", "webhook"]
retry_for = "3s"
[notify.webhook]
format = "json"
[notify.smtp]
host = "127.0.0.1"
port = {port}
security = "starttls"
ca_file = "{ca}"
username = "{USER}"
from = "SLA monitor <slawatch@example.com>"
to = ["oncall@example.com"]
timeout = "2s"
"#,
        port = smtp.starttls_port,
        ca = smtp.cert.display(),
    );
    let mut daemon = Daemon::configure(
        dir.path(),
        &config,
        &[
            ("SLAWATCH__NOTIFY__SMTP__PASSWORD", PASSWORD),
            ("SLAWATCH__NOTIFY__WEBHOOK__URL", hook.url.as_str()),
        ],
    );
    let started = Instant::now();
    daemon.start();
    let bodies = || hook.bodies.lock().unwrap().clone();
    daemon.wait_for("the breach by webhook", Duration::from_secs(20), |_| {
        bodies().iter().any(|b| b.contains("\"kind\":\"breach\""))
    });
    let breach_after = started.elapsed();
    daemon.wait_for(
        "the page about the SMTP notifier by webhook",
        Duration::from_secs(30),
        |_| bodies().iter().any(|b| b.contains("monitor-notifier-smtp")),
    );
    eprintln!(
        "breach by webhook {breach_after:?} after the start (SMTP down); notifier page {:?} after",
        started.elapsed()
    );
    let page = bodies()
        .into_iter()
        .find(|b| b.contains("monitor-notifier-smtp"))
        .unwrap();
    assert!(page.contains("notifier smtp failing"), "{page}");
    assert!(page.contains("\"problem\":\"notifier_failing\""), "{page}");
    assert!(smtp.messages().is_empty());
    assert!(daemon.stop());
    assert_eq!(
        daemon.sql(
            "SELECT count(*) FROM ledger WHERE kind = 'monitor_alert_raised' AND payload LIKE '%monitor-notifier-smtp%'"
        ),
        "1"
    );
}
