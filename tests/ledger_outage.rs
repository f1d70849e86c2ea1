//! A ledger that cannot be written, against the real binary, a real SMTP server (aiosmtpd,
//! STARTTLS + AUTH) and a real SQLite fault: another process holds the database's write lock
//! (`BEGIN EXCLUSIVE` in the `sqlite3` shell), so every write of the daemon fails with
//! "database is locked" after its busy timeout — what a stuck backup job or a second writer
//! does. (A fault the test cannot inject fails the test: a missing `sqlite3` is an error.)
//!
//! What must hold (issue 17): due alerts still go out during the outage, on time; the on-call
//! person is told the ledger is down; `/readyz` and the metrics say so while `/healthz` stays
//! 200; and after `kill -9` during the outage and a restart, each alert is sent again at most
//! once, with the same `Message-ID`, then recorded, and never sent again.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::daemon::Daemon;
use support::smtp::{PASSWORD, SmtpServer, USER};

/// The `sqlite3` shell holding the ledger's write lock until [`Locker::release`].
struct Locker {
    child: Child,
}

impl Locker {
    fn lock(db: &Path) -> Locker {
        let mut child = Command::new("sqlite3")
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the sqlite3 command-line tool is required (Debian: apt-get install sqlite3)");
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, ".timeout 20000\nBEGIN EXCLUSIVE;\nSELECT 'locked';").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked", "could not take the ledger's lock");
        Locker { child }
    }

    fn release(mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "COMMIT;\n.quit").unwrap();
        stdin.flush().unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success());
    }
}

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
warn = []
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

/// `n` customer mails whose deadlines fall `first_in` from now, one per second.
fn mailbox(dir: &Path, n: usize, first_in: u64) {
    let root = dir.join("maildir");
    for sub in ["tmp", "new", "cur", ".Sent/tmp", ".Sent/new", ".Sent/cur"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for i in 0..n {
        let received = now + first_in + i as u64 - 15 * 60;
        let raw = format!(
            "From: C{i} <c{i}@customer.test>\r\nTo: support@example.com\r\nSubject: outage {i}\r\n\
             Message-ID: <o{i}@customer.test>\r\n\r\nHello {i}.\r\n"
        );
        std::fs::write(
            root.join("new").join(format!("{received}.M{i}P3.test")),
            raw,
        )
        .unwrap();
    }
}

/// Breach mails by Message-ID: how many times each was received.
fn breach_mails(smtp: &SmtpServer) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for m in smtp.messages() {
        if m.header("X-Slawatch-Alert").as_deref() == Some("breach")
            && !m
                .header("X-Slawatch-Inquiry")
                .unwrap_or_default()
                .starts_with("monitor-")
        {
            *out.entry(m.header("Message-ID").unwrap_or_default())
                .or_default() += 1;
        }
    }
    out
}

#[test]
fn a_stuck_ledger_silences_nothing_and_a_kill_during_it_resends_each_alert_once_with_its_id() {
    const N: usize = 4;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    mailbox(dir.path(), N, 12);
    let env = [("SLAWATCH__NOTIFY__SMTP__PASSWORD", PASSWORD)];
    let mut daemon = Daemon::configure(dir.path(), &config(&smtp), &env);
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    assert_eq!(
        daemon.sql("SELECT count(*) FROM ledger WHERE kind = 'inquiry_opened'"),
        N.to_string()
    );

    // The outage begins before the first deadline.
    let locker = Locker::lock(&dir.path().join("ledger.db"));
    let locked_at = Instant::now();
    daemon.wait_for(
        "every breach mailed while the ledger is locked",
        Duration::from_secs(40),
        |_| breach_mails(&smtp).len() >= N,
    );
    let sent = breach_mails(&smtp);
    assert!(sent.values().all(|&n| n == 1), "{sent:?}");
    // Not one of them is in the ledger.
    assert_eq!(
        daemon.sql("SELECT count(*) FROM ledger WHERE kind = 'inquiry_breached'"),
        "0"
    );
    // The on-call person is told; readiness and metrics say why; liveness does not change.
    daemon.wait_for("the ledger alert by mail", Duration::from_secs(30), |_| {
        smtp.messages().iter().any(|m| {
            m.header("X-Slawatch-Inquiry").as_deref() == Some("monitor-ledger")
                && m.header("Subject")
                    .is_some_and(|s| s.contains("ledger not writable"))
        })
    });
    eprintln!(
        "ledger alert mailed {:?} after the lock",
        locked_at.elapsed()
    );
    // The page goes out once the first write has waited STALL (5 s) for the lock, which is
    // also SQLite's busy timeout: the write's "database is locked" may come a moment later.
    daemon.wait_for("/readyz naming the lock", Duration::from_secs(10), |d| {
        d.get("/readyz").1.contains("locked")
    });
    let (status, body) = daemon.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("NOT WRITABLE") && body.contains("locked"),
        "{body}"
    );
    assert!(body.contains("monitor alert monitor-ledger"), "{body}");
    assert_eq!(daemon.get("/healthz").0, 200);
    assert!(
        daemon
            .metric("slawatch_ledger_write_failures_total")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert_eq!(daemon.metric("slawatch_ledger_writable"), Some(0.0));
    let (_, wallboard) = daemon.get("/");
    assert!(
        wallboard.contains("MONITOR BLIND") && wallboard.contains("ledger NOT WRITABLE"),
        "{wallboard}"
    );

    // Killed in the middle of it: nothing of the breaches reached the ledger.
    daemon.kill9();
    locker.release();
    daemon.start();
    daemon.wait_for(
        "the breaches recorded as delivered after the restart",
        Duration::from_secs(60),
        |d| {
            d.sql("SELECT count(*) FROM ledger WHERE kind = 'alert_delivered'")
                .parse::<usize>()
                .unwrap_or(0)
                >= N
        },
    );
    let after = breach_mails(&smtp);
    assert_eq!(after.len(), N, "the same Message-IDs: {after:?}");
    assert!(
        after.values().all(|&n| n == 2),
        "each sent again exactly once, with the same Message-ID: {after:?}"
    );
    // Recorded now: never again.
    assert!(daemon.stop());
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(breach_mails(&smtp), after, "{}", daemon.log());
    assert_eq!(daemon.get("/readyz").0, 200);
    assert!(daemon.stop());
}
