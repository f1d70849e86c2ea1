//! The real `slawatch` binary on a real PostgreSQL 15 (started by the harness, TLS verified,
//! SCRAM password from the environment): `run` ingests a Maildir, `ack`, `inquiries`, `report`
//! and `audit verify` work against it; `store copy` moves the ledger to SQLite and back with the
//! same head; and a ledger that lost rows the daemon had published (a promoted asynchronous
//! standby, simulated by the superuser deleting the last rows) is never written on again: the
//! daemon pages through `monitor-ledger` (a real SMTP server receives it), says what to do, and
//! does the same after a restart.

mod support;

use std::path::Path;
use std::time::Duration;

use support::daemon::{Daemon, maildir_mail, unix_now};
use support::postgres::{self, PASSWORD, Postgres};
use support::smtp::{PASSWORD as SMTP_PASSWORD, SmtpServer, USER as SMTP_USER};

fn store_url(pg: &Postgres, db: &str) -> String {
    format!(
        "postgres://slawatch@127.0.0.1:{}/{db}?sslmode=verify-full&sslrootcert={}",
        pg.port,
        pg.ca_file().display()
    )
}

fn config(url: &str, notify: &str) -> String {
    format!(
        r#"
[store]
url = "{url}"
head_file = "{{dir}}/ledger.head"
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
{notify}
"#
    )
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![("SLAWATCH__STORE__PASSWORD", PASSWORD)]
}

fn env_with_smtp() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SLAWATCH__STORE__PASSWORD", PASSWORD),
        ("SLAWATCH__NOTIFY__SMTP__PASSWORD", SMTP_PASSWORD),
    ]
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

/// The `head hash:` line of `audit verify`.
fn head_hash(verify: &str) -> String {
    verify
        .lines()
        .find_map(|l| l.strip_prefix("head hash: "))
        .unwrap_or_else(|| panic!("no head hash in {verify}"))
        .trim()
        .to_string()
}

/// `audit verify` with a configuration whose store is `url`.
fn verify_at(dir: &Path, url: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let d = Daemon::configure(dir, &config(url, ""), &env());
    ok(d.cli(&["audit", "verify"]), "audit verify")
}

#[test]
fn every_command_works_on_postgres_and_a_copy_verifies_with_the_same_head() {
    let pg = postgres::shared();
    let db = pg.create_database();
    let url = store_url(pg, &db);
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    maildir_mail(dir.path(), now - 3600, "late");
    maildir_mail(dir.path(), now - 60, "phoned");
    maildir_mail(dir.path(), now - 30, "waiting");
    let mut daemon = Daemon::configure(dir.path(), &config(&url, ""), &env());
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    daemon.wait_for(
        "three inquiries, one breached",
        Duration::from_secs(15),
        |d| {
            let all = d.inquiries();
            all.len() == 3
                && all
                    .iter()
                    .any(|i| i["subject"] == "late" && i["sla"] == "missed")
        },
    );
    let id = daemon
        .inquiries()
        .into_iter()
        .find(|i| i["subject"] == "phoned")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let acked = ok(
        daemon.cli(&["ack", &id, "--by", "maria", "--via", "phone"]),
        "ack",
    );
    assert!(acked.contains("sla met"), "{acked}");
    assert_eq!(
        pg.psql(
            &db,
            "SELECT count(*) FROM ledger WHERE kind = 'inquiry_responded'"
        ),
        "1"
    );
    assert!(daemon.stop(), "clean shutdown:\n{}", daemon.log());

    // The read-only commands, on the PostgreSQL ledger.
    let verify = ok(daemon.cli(&["audit", "verify"]), "audit verify");
    let head = head_hash(&verify);
    let pin = verify
        .lines()
        .find_map(|l| l.strip_prefix("pin:"))
        .unwrap()
        .trim()
        .to_string();
    // The head the daemon kept for the next start is the one it left.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ledger.head"))
            .unwrap()
            .trim(),
        pin
    );
    // The daemon wrote the inquiry projection with its commits, and it is what the ledger
    // rebuilds (into a scratch SQLite file, beside the PostgreSQL store).
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM inquiries"), "3");
    let checked = ok(
        daemon.cli(&["store", "check-projection"]),
        "store check-projection",
    );
    assert!(
        checked.contains("3 rows compared") && checked.contains(", 0 differences"),
        "{checked}"
    );
    let table = ok(daemon.cli(&["inquiries", "--state", "all"]), "inquiries");
    for subject in ["late", "phoned", "waiting"] {
        assert!(table.contains(subject), "{table}");
    }
    assert!(
        table.contains("missed") && table.contains("responded"),
        "{table}"
    );
    let report_file = dir.path().join("report.json");
    let today = chrono::Utc::now().date_naive();
    ok(
        daemon.cli(&[
            "report",
            "--from",
            &(today - chrono::Days::new(1)).to_string(),
            "--to",
            &(today + chrono::Days::new(2)).to_string(),
            "--format",
            "json",
            "--out",
            report_file.to_str().unwrap(),
        ]),
        "report",
    );
    let report = std::fs::read_to_string(&report_file).unwrap();
    assert!(report.contains(&head), "the report names the head");
    assert!(
        report.contains("phoned") && report.contains("late"),
        "{report}"
    );

    // Copied to SQLite and back: the same head on every store.
    let pw = dir.path().join("pg-password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let copy = format!("sqlite://{}/copy.db", dir.path().display());
    let out = ok(
        daemon.cli(&[
            "store",
            "copy",
            "--from",
            &url,
            "--from-password-file",
            pw.to_str().unwrap(),
            "--to",
            &copy,
        ]),
        "store copy to SQLite",
    );
    assert!(out.contains(&format!("hash {head}")), "{out}");
    assert_eq!(
        head_hash(&verify_at(&dir.path().join("sqlite"), &copy)),
        head
    );

    let back_db = pg.create_database();
    let back = store_url(pg, &back_db);
    ok(
        daemon.cli(&[
            "store",
            "copy",
            "--from",
            &copy,
            "--to",
            &back,
            "--to-password-file",
            pw.to_str().unwrap(),
        ]),
        "store copy back to PostgreSQL",
    );
    assert_eq!(head_hash(&verify_at(&dir.path().join("back"), &back)), head);
    assert_eq!(
        pg.psql(&db, "SELECT md5(string_agg(concat_ws('|', seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash), E'\\n' ORDER BY seq)) FROM ledger"),
        pg.psql(&back_db, "SELECT md5(string_agg(concat_ws('|', seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash), E'\\n' ORDER BY seq)) FROM ledger"),
        "every byte of every row"
    );
    let projection = "SELECT md5(string_agg(concat_ws('|', open_seq, last_seq, id, id_bucket, received_at, channel, language, state, sla, json), E'\\n' ORDER BY open_seq)) FROM inquiries";
    assert_eq!(
        pg.psql(&db, projection),
        pg.psql(&back_db, projection),
        "the projection came along, every byte of every row"
    );

    // A store that holds a ledger is never copied over.
    let again = daemon.cli(&["store", "copy", "--from", &copy, "--to", &copy]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("already holds a ledger"), "{err}");
}

fn smtp_notify(smtp: &SmtpServer) -> String {
    format!(
        r#"
[notify]
primary = ["smtp"]
retry_for = "1h"
[notify.smtp]
host = "127.0.0.1"
port = {port}
security = "starttls"
ca_file = "{ca}"
username = "{SMTP_USER}"
from = "SLA monitor <slawatch@example.com>"
to = ["oncall@example.com"]
timeout = "5s"
"#,
        port = smtp.starttls_port,
        ca = smtp.cert.display(),
    )
}

fn ledger_pages(smtp: &SmtpServer) -> usize {
    smtp.messages()
        .iter()
        .filter(|m| {
            m.header("X-Slawatch-Inquiry").as_deref() == Some("monitor-ledger")
                && m.header("Subject")
                    .is_some_and(|s| s.contains("ledger not writable"))
        })
        .count()
}

#[test]
fn a_ledger_that_lost_published_rows_is_never_written_on_and_pages() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pg = postgres::shared();
    let db = pg.create_database();
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let now = unix_now();
    maildir_mail(dir.path(), now - 60, "first");
    maildir_mail(dir.path(), now - 50, "second");
    let mut daemon = Daemon::configure(
        dir.path(),
        &config(&store_url(pg, &db), &smtp_notify(&smtp)),
        &env_with_smtp(),
    );
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    daemon.wait_for("two inquiries", Duration::from_secs(15), |d| {
        d.inquiries().len() == 2
    });
    let max_seq = || -> i64 { pg.psql(&db, "SELECT max(seq) FROM ledger").parse().unwrap() };
    let published = max_seq();

    // An asynchronous standby promoted without the last three commits, as the daemon sees it.
    pg.psql(
        &db,
        "ALTER TABLE ledger DISABLE TRIGGER USER; \
         DELETE FROM ledger WHERE seq > (SELECT max(seq) - 3 FROM ledger); \
         ALTER TABLE ledger ENABLE TRIGGER USER",
    );
    let kept = published - 3;
    assert_eq!(max_seq(), kept);

    // New mail: its inquiry is decided, but the write is refused and pages the on-call person.
    maildir_mail(dir.path(), unix_now(), "third");
    daemon.wait_for("the ledger page", Duration::from_secs(30), |_| {
        ledger_pages(&smtp) >= 1
    });
    let page = smtp
        .messages()
        .into_iter()
        .find(|m| m.header("X-Slawatch-Inquiry").as_deref() == Some("monitor-ledger"))
        .unwrap();
    assert!(page.body().contains("went backwards"), "{}", page.body());
    let (status, body) = daemon.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("went backwards"), "{body}");
    assert!(
        daemon
            .metric("slawatch_ledger_write_failures_total")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        daemon.log().contains("audit verify --expect"),
        "the log says what to do:\n{}",
        daemon.log()
    );
    // The new inquiry is tracked in memory, but not one row went on top of the lost ones.
    assert!(daemon.inquiries().iter().any(|i| i["subject"] == "third"));
    assert_eq!(max_seq(), kept);

    // After a restart the daemon still knows the head it published: it starts (to keep
    // alerting), refuses to write and pages again.
    daemon.kill9();
    let pages = ledger_pages(&smtp);
    daemon.start();
    daemon.wait_for(
        "the ledger page after the restart",
        Duration::from_secs(30),
        |_| ledger_pages(&smtp) > pages,
    );
    assert!(
        daemon.log().contains("The ledger went backwards"),
        "{}",
        daemon.log()
    );
    assert_eq!(max_seq(), kept);
    assert_eq!(daemon.get("/readyz").0, 503);
    daemon.stop();
}
