//! Fault injection against the real binary and real servers, each fault injected for real, each
//! test printing its figure (`cargo test --test faults -- --nocapture`):
//!
//! - a TCP fault proxy ([`support::proxy`]) between slawatch and Dovecot, the SMTP server and a
//!   Twilio-compatible API stalls, resets, cuts responses half-way and black-holes connections:
//!   timeouts fire, reconnects back off, `slawatch_source_up` / `slawatch_notifier_up` say so and
//!   recover, nothing is lost or doubled;
//! - `kill -9` at random points of an IMAP backfill (INBOX and Sent, replies included) and of a
//!   CDR backfill: the same inquiries and outcomes as an uninterrupted run, nothing twice in the
//!   ledger, `audit verify` intact;
//! - Dovecot restarted while mail arrives in INBOX and Sent: nothing lost or doubled, the
//!   detection latency after each restart;
//! - one of three IMAP folders unreadable to the server: the source stays down (and its last
//!   success does not move) while the other folders are read;
//! - the SMTP server down while breaches fall due: every alert delivered afterwards, in order,
//!   none twice, the webhook and Alertmanager copies on time throughout;
//! - a day of mail and calls at ten times a busy desk's rate, compressed into a minute: open
//!   descriptors flat; resident memory grows only with the inquiries held (the tracker keeps
//!   every inquiry in memory), by a bounded amount each, and not at all without new ones.
//! - the ledger's disk full (a `tmpfs` of its own, filled to the last byte), or its files
//!   read-only (`EROFS` on every write call on them), while breaches fall due and mail arrives,
//!   then writable again: every alert on time throughout, `/readyz`, the metrics and the
//!   `monitor-ledger` page say so; afterwards every inquiry and delivery in the ledger once, the
//!   page resolved, `audit verify` intact ([`support::ledger_fs`] says how and why so).
//!
//! A ledger locked by another writer and wall-clock steps are injected by
//! `tests/ledger_outage.rs` and `tests/clock_step.rs`.
//!
//! The short variants always run; `SLAWATCH_FAULTS_LONG=1` runs the long ones (20 kill points,
//! 20,000 messages, 1,000,000 CDR rows, 10 Dovecot restarts, a longer soak, a minute of full
//! ledger disk instead of 20 s).

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use support::daemon::{Daemon, maildir_mail, unix_now};
use support::dovecot::{Dovecot, PASSWORD, conversation_mail};
use support::proxy::{Fault, Proxy, within};
use support::smtp::SmtpServer;
use support::twilio::CallsApi;

fn long() -> bool {
    std::env::var("SLAWATCH_FAULTS_LONG").is_ok_and(|v| v == "1")
}

/// How long a backfill (or a wait for progress in it) may take: a million rows take minutes in
/// a debug build.
fn backfill_limit() -> Duration {
    Duration::from_secs(if long() { 3600 } else { 300 })
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("slawatch-faults")
        .tempdir()
        .unwrap()
}

const HEAD: &str = r#"
[store]
url = "sqlite://{dir}/ledger.db"
[http]
bind = "127.0.0.1:{port}"
[desk]
support_addresses = ["support@example.com"]
internal_domains = ["example.com"]
"#;

/// The faults the proxy injects, each held for a while.
const FAULTS: [(&str, Fault); 4] = [
    ("stall", Fault::Stall),
    ("reset", Fault::Reset),
    ("cut half-way", Fault::Truncate { after: 300 }),
    ("black hole", Fault::BlackHole),
];

/// How long each proxy fault is held.
const HOLD: Duration = Duration::from_secs(8);

/// At most this many connections per client connection during one [`HOLD`]: delays doubling
/// from 1 s allow 3 or 4; a client that does not back off makes dozens.
const MAX_ATTEMPTS_PER_HOLD: usize = 5;

/// One fault's figures.
struct Figure {
    fault: &'static str,
    /// From the injection to `*_up` 0.
    detected: Duration,
    /// Connections the client opened while the fault was held.
    attempts: usize,
    /// From the fault's end to the item sent during it being seen, and `*_up` 1.
    recovered: Duration,
}

fn print_figures(what: &str, figures: &[Figure]) {
    for f in figures {
        eprintln!(
            "{what}: {:<13} down after {:>5.1} s, {} connection attempts in {} s, recovered {:>4.1} s after the fault ended",
            f.fault,
            f.detected.as_secs_f64(),
            f.attempts,
            HOLD.as_secs(),
            f.recovered.as_secs_f64()
        );
    }
}

/// Injects each of [`FAULTS`] in turn into the connections of a client that keeps `clients`
/// open (one per IMAP folder): `during(k)` makes item `k` arrive while fault `k` holds,
/// `up()` reads the health gauge, `seen(k)` says whether item `k` got through.
fn inject_each(
    what: &str,
    proxy: &Proxy,
    clients: usize,
    daemon: &Daemon,
    up: impl Fn() -> Option<f64>,
    during: impl Fn(usize),
    seen: impl Fn(usize) -> bool,
) -> Vec<Figure> {
    let mut figures = Vec::new();
    for (k, (name, fault)) in FAULTS.iter().enumerate() {
        let began = Instant::now();
        proxy.set(*fault);
        during(k);
        let detected = within(Duration::from_secs(30), || up() == Some(0.0)).unwrap_or_else(|| {
            panic!(
                "{what}: {name}: still up 30 s into the fault; log:\n{}",
                daemon.log()
            )
        });
        std::thread::sleep(HOLD.saturating_sub(began.elapsed()));
        assert_eq!(up(), Some(0.0), "{what}: {name}: up again during the fault");
        let attempts = proxy.accepted_since(began).len();
        assert!(
            attempts <= MAX_ATTEMPTS_PER_HOLD * clients,
            "{what}: {name}: {attempts} connections in {HOLD:?}: no backoff"
        );
        proxy.set(Fault::Pass);
        let cleared = Instant::now();
        within(Duration::from_secs(40), || seen(k) && up() == Some(1.0)).unwrap_or_else(|| {
            panic!(
                "{what}: {name}: item {k} not through or still down 40 s after the fault; log:\n{}",
                daemon.log()
            )
        });
        figures.push(Figure {
            fault: name,
            detected,
            attempts,
            recovered: cleared.elapsed(),
        });
    }
    print_figures(what, &figures);
    figures
}

/// Every inquiry's subject (or customer, for calls) with how many inquiries carry it.
fn tally(inquiries: &[Value], field: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for i in inquiries {
        *out.entry(i[field].as_str().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    out
}

fn opened_twice(daemon: &Daemon) -> String {
    daemon.sql(
        "SELECT count(*) FROM (SELECT inquiry_id FROM ledger WHERE kind = 'inquiry_opened' \
         GROUP BY inquiry_id HAVING count(*) > 1)",
    )
}

fn audit_verify(daemon: &Daemon) {
    let verify = daemon.cli(&["audit", "verify"]);
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && out.contains("head hash:"),
        "audit verify: {out}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

fn imap_source(port: u16, ca: &std::path::Path, extra: &str) -> String {
    format!(
        r#"[sources.support]
type = "imap"
host = "127.0.0.1"
port = {port}
security = "tls"
ca_file = "{ca}"
username = "alice"
inbox_folders = ["INBOX"]
sent_folders = ["Sent"]
{extra}
"#,
        ca = ca.display()
    )
}

fn imap_env() -> [(&'static str, &'static str); 1] {
    [("SLAWATCH__SOURCES__SUPPORT__PASSWORD", PASSWORD)]
}

fn customer(k: &str) -> Vec<u8> {
    conversation_mail(
        &format!("Customer {k} <{k}@customer.test>"),
        "support@example.com",
        &format!("<{k}@customer.test>"),
        k,
        &[],
    )
}

#[test]
fn imap_through_a_faulty_network_times_out_backs_off_and_loses_nothing() {
    let d = Dovecot::start();
    let proxy = Proxy::start(d.imaps_port);
    let dir = tempdir();
    let config = format!(
        "{HEAD}[policy]\ntarget = \"15m\"\nwarn = []\n{}",
        imap_source(
            proxy.port,
            &d.cert_path(),
            "timeout = \"2s\"\nidle_timeout = \"4s\"\n"
        )
    );
    let mut daemon = Daemon::configure(dir.path(), &config, &imap_env());
    d.append("INBOX", &customer("before"), Utc::now());
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    assert_eq!(daemon.inquiries().len(), 1);
    let up = || daemon.metric(r#"slawatch_source_up{source="support"}"#);
    assert_eq!(up(), Some(1.0));

    let subjects = |k: usize| format!("during-{}", FAULTS[k].0.replace(' ', "-"));
    inject_each(
        "IMAP",
        &proxy,
        2,
        &daemon,
        up,
        |k| d.append("INBOX", &customer(&subjects(k)), Utc::now()),
        |k| {
            daemon
                .inquiries()
                .iter()
                .any(|i| i["subject"] == subjects(k).as_str())
        },
    );

    let timeouts = daemon
        .metric(r#"slawatch_source_errors_total{kind="timeout",source="support"}"#)
        .unwrap_or(0.0);
    assert!(
        timeouts >= 2.0,
        "stalls and black holes end in timeouts: {timeouts}"
    );
    let all = tally(&daemon.inquiries(), "subject");
    assert_eq!(all.len(), 1 + FAULTS.len(), "{all:?}");
    assert!(all.values().all(|&n| n == 1), "{all:?}");
    assert_eq!(opened_twice(&daemon), "0");
    assert!(daemon.stop());
    audit_verify(&daemon);
}

#[test]
fn smtp_through_a_faulty_network_times_out_backs_off_and_delivers_every_alert_once() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start();
    let proxy = Proxy::start(smtp.starttls_port);
    let dir = tempdir();
    let config = format!(
        r#"{HEAD}[policy]
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
username = "{user}"
from = "SLA monitor <slawatch@example.com>"
to = ["oncall@example.com"]
timeout = "2s"
"#,
        port = proxy.port,
        ca = smtp.cert.display(),
        user = support::smtp::USER,
    );
    maildir_mail(dir.path(), unix_now() - 3600, "before");
    let mut daemon = Daemon::configure(
        dir.path(),
        &config,
        &[("SLAWATCH__NOTIFY__SMTP__PASSWORD", support::smtp::PASSWORD)],
    );
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    let breaches = || -> Vec<String> {
        smtp.messages()
            .iter()
            .filter(|m| m.header("X-Slawatch-Alert").as_deref() == Some("breach"))
            .filter_map(|m| m.header("Subject"))
            .collect()
    };
    daemon.wait_for("the first breach mail", Duration::from_secs(20), |_| {
        breaches().len() == 1
    });
    let up = || daemon.metric(r#"slawatch_notifier_up{notifier="smtp"}"#);
    assert_eq!(up(), Some(1.0));

    let key = |k: usize| format!("during-{}", FAULTS[k].0.replace(' ', "-"));
    inject_each(
        "SMTP",
        &proxy,
        1,
        &daemon,
        up,
        // A breach due 2 s into the fault.
        |k| maildir_mail(dir.path(), unix_now() + 2 - 15 * 60, &key(k)),
        |k| breaches().iter().any(|s| s.contains(&key(k))),
    );

    std::thread::sleep(Duration::from_secs(2));
    let mails = breaches();
    assert_eq!(mails.len(), 1 + FAULTS.len(), "{mails:#?}");
    for (k, subject) in mails.iter().skip(1).enumerate() {
        assert!(subject.contains(&key(k)), "out of order: {mails:#?}");
    }
    let ids: std::collections::BTreeSet<String> = smtp
        .messages()
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    assert_eq!(ids.len(), smtp.messages().len(), "a mail sent twice");
    assert_eq!(
        daemon.sql("SELECT count(*) FROM ledger WHERE kind = 'alert_delivered'"),
        (1 + FAULTS.len()).to_string()
    );
    assert!(daemon.stop());
    audit_verify(&daemon);
}

#[test]
fn the_calls_api_through_a_faulty_network_times_out_backs_off_and_loses_no_call() {
    let api = CallsApi::start();
    api.add_missed_call("CA100", "+34600000100");
    let proxy = Proxy::start(api.port);
    let dir = tempdir();
    let config = format!(
        r#"{HEAD}[sources.tw]
type = "twilio"
base_url = "http://127.0.0.1:{port}"
account_sid = "AC1"
poll_interval = "500ms"
timeout = "2s"
default_region = "ES"
[[sources.tw.lines]]
name = "soporte-es"
match = ["{line}"]
language = "es"
"#,
        port = proxy.port,
        line = support::twilio::LINE,
    );
    let mut daemon = Daemon::configure(
        dir.path(),
        &config,
        &[("SLAWATCH__SOURCES__TW__AUTH_TOKEN", support::twilio::TOKEN)],
    );
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    assert_eq!(daemon.inquiries().len(), 1);
    let up = || daemon.metric(r#"slawatch_source_up{source="tw"}"#);
    assert_eq!(up(), Some(1.0));

    let number = |k: usize| format!("+3460000010{}", k + 1);
    inject_each(
        "Calls API",
        &proxy,
        1,
        &daemon,
        up,
        |k| api.add_missed_call(&format!("CA10{}", k + 1), &number(k)),
        |k| {
            daemon
                .inquiries()
                .iter()
                .any(|i| i["customer"] == number(k).as_str())
        },
    );

    let all = tally(&daemon.inquiries(), "customer");
    assert_eq!(all.len(), 1 + FAULTS.len(), "{all:?}");
    assert!(all.values().all(|&n| n == 1), "{all:?}");
    assert_eq!(opened_twice(&daemon), "0");
    assert!(daemon.stop());
    audit_verify(&daemon);
}

/// A small deterministic generator (xorshift), seeded from the clock and printed, so a failing
/// run's kill instants can be drawn again with `SLAWATCH_FAULTS_SEED`.
struct Rng(u64);

impl Rng {
    fn new(what: &str) -> Rng {
        let seed = std::env::var("SLAWATCH_FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("{what}: seed {seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Every inquiry's outcome as the API gives it, sorted (merged ones left out).
fn outcomes(daemon: &Daemon) -> Vec<Value> {
    let mut out: Vec<Value> = daemon
        .inquiries()
        .iter()
        .filter(|i| i["state"] != "merged")
        .map(|i| {
            serde_json::json!({
                "id": i["id"], "channel": i["channel"], "customer": i["customer"],
                "subject": i["subject"], "received_at": i["received_at"], "state": i["state"],
                "sla": i["sla"], "responded_at": i["responded_at"],
                "response_kind": i["response_kind"],
            })
        })
        .collect();
    out.sort_by_key(|o| o.to_string());
    out
}

/// [`outcomes`] once every inquiry is decided: every deadline of the backfilled data is long
/// past, and the breaches of the last batches fire just after the first sync completes.
fn decided_outcomes(daemon: &Daemon) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let out = outcomes(daemon);
        if out.iter().all(|o| o["sla"] != "pending") {
            return out;
        }
        assert!(
            Instant::now() < until,
            "inquiries still pending a minute after the backfill"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Ledger rows about one inquiry that appear more than once (opened, answered or breached twice).
fn recorded_twice(daemon: &Daemon) -> String {
    daemon.sql(
        "SELECT count(*) FROM (SELECT kind, inquiry_id FROM ledger \
         WHERE kind IN ('inquiry_opened', 'inquiry_responded', 'inquiry_breached') \
         GROUP BY kind, inquiry_id HAVING count(*) > 1)",
    )
}

fn progress(daemon: &Daemon) -> u64 {
    daemon
        .sql("SELECT count(*) FROM ledger WHERE kind IN ('inquiry_opened', 'inquiry_responded')")
        .parse()
        .unwrap_or(0)
}

/// Runs a backfill uninterrupted (the reference), then again from scratch killed with `kill -9`
/// `points` times, each time restarted; both must end with the same outcomes and nothing twice
/// in the ledger. Each run is killed once it has committed something of its own, at a random
/// instant of the next `0.3 / points` of the reference's backfill time (reading, parsing,
/// deciding or committing the next chunk); `total` opened plus answered rows mean it is over.
fn kill_during_backfill(
    what: &str,
    limit: Duration,
    points: usize,
    total: u64,
    configure: impl Fn(&std::path::Path) -> Daemon,
) {
    let reference_dir = tempdir();
    let mut reference = configure(reference_dir.path());
    let began = Instant::now();
    reference.start_within(limit);
    reference.wait_ready(limit);
    let uninterrupted = began.elapsed();
    eprintln!(
        "{what}: uninterrupted backfill {:.1} s",
        uninterrupted.as_secs_f64()
    );
    let expected = decided_outcomes(&reference);
    assert!(reference.stop());
    assert_eq!(recorded_twice(&reference), "0");

    let mut rng = Rng::new(what);
    let slice = uninterrupted.mul_f64(0.3 / points as f64).as_millis() as u64;
    let dir = tempdir();
    let mut daemon = configure(dir.path());
    let mut at_kill: Vec<u64> = Vec::new();
    for _ in 0..points {
        let before = at_kill.last().copied().unwrap_or(0);
        daemon.start_within(limit);
        daemon.wait_for("a commit of this run", limit, |d| progress(d) > before);
        std::thread::sleep(Duration::from_millis(rng.below(slice.max(1))));
        daemon.kill9();
        let done = progress(&daemon);
        assert!(
            done < total,
            "{what}: the backfill finished before kill {}: the kill proves nothing",
            at_kill.len() + 1
        );
        at_kill.push(done);
    }
    daemon.start_within(limit);
    daemon.wait_ready(limit);
    let got = decided_outcomes(&daemon);
    let differ = expected
        .iter()
        .zip(&got)
        .filter(|(a, b)| a != b)
        .take(3)
        .collect::<Vec<_>>();
    assert_eq!(
        got.len(),
        expected.len(),
        "{what}: inquiries differ in number"
    );
    assert!(differ.is_empty(), "{what}: outcomes differ: {differ:#?}");
    assert_eq!(recorded_twice(&daemon), "0", "{what}: a row recorded twice");
    assert!(daemon.stop());
    audit_verify(&daemon);
    let slas = tally(&got, "sla");
    eprintln!(
        "{what}: kill -9 at {} random instants (rows committed at each kill: {at_kill:?} of {total}): identical \
         outcomes for {} inquiries ({slas:?}), 0 rows twice, audit verify intact; uninterrupted \
         backfill {:.1} s",
        at_kill.len(),
        got.len(),
        uninterrupted.as_secs_f64()
    );
}

#[test]
fn kill_9_at_random_points_of_an_imap_backfill_changes_no_outcome() {
    // INBOX messages; every other one answered from Sent, in time or late.
    let (inbox, points) = if long() { (13_334, 20) } else { (6_000, 4) };
    let mut d = Dovecot::configure();
    let base = std::time::SystemTime::now() - Duration::from_secs(3 * 86_400);
    let mut replies = 0u64;
    for i in 0..inbox {
        let at = base + Duration::from_secs(i * 7);
        let id = format!("<k{i}@customer.test>");
        let raw = conversation_mail(
            &format!("C{i} <c{i}@customer.test>"),
            "support@example.com",
            &id,
            &format!("question {i}"),
            &[],
        );
        d.maildir_drop(
            "INBOX",
            &format!("{}.M{i}P1.test", 1_700_000_000 + i),
            &raw,
            at,
        );
        if i % 2 == 0 {
            replies += 1;
            let raw = conversation_mail(
                "Support <support@example.com>",
                &format!("c{i}@customer.test"),
                &format!("<r{i}@example.com>"),
                &format!("Re: question {i}"),
                &[id],
            );
            // 1 to 29 minutes later: about half in time.
            let late = Duration::from_secs(60 * (1 + i % 29));
            d.maildir_drop(
                "Sent",
                &format!("{}.M{i}P2.test", 1_700_000_000 + i),
                &raw,
                at + late,
            );
        }
    }
    d.launch();
    let total = inbox + replies;
    kill_during_backfill(
        &format!("IMAP backfill of {total} messages (INBOX and Sent)"),
        backfill_limit(),
        points,
        total,
        |dir| {
            let config = format!(
                "{HEAD}[policy]\ntarget = \"15m\"\nwarn = [\"10m\"]\n{}",
                imap_source(d.imaps_port, &d.cert_path(), "timeout = \"10s\"\n")
            );
            Daemon::configure(dir, &config, &imap_env())
        },
    );
}

/// One Asterisk `cdr_csv` row (layout 18).
#[allow(clippy::too_many_arguments)]
fn cdr_row(
    src: &str,
    dst: &str,
    context: &str,
    dstchannel: &str,
    start: chrono::NaiveDateTime,
    answered_after: Option<i64>,
    duration: i64,
    uniqueid: &str,
) -> String {
    let f = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
    let end = start + chrono::Duration::seconds(duration);
    let (answer, billsec, disposition) = match answered_after {
        Some(s) => (
            format!("\"{}\"", f(start + chrono::Duration::seconds(s))),
            duration - s,
            "ANSWERED",
        ),
        None => (String::new(), 0, "NO ANSWER"),
    };
    format!(
        "\"\",\"{src}\",\"{dst}\",\"{context}\",\"\"\"Caller\"\" <{src}>\",\"PJSIP/trunk-es-{uniqueid}\",\"{dstchannel}\",\"Dial\",\"\",\"{}\",{answer},\"{}\",{duration},{billsec},\"{disposition}\",\"DOCUMENTATION\",\"{uniqueid}\",\"\"\n",
        f(start),
        f(end),
    )
}

#[test]
fn kill_9_at_random_points_of_a_cdr_backfill_changes_no_outcome() {
    let (calls, points) = if long() {
        (1_000_000u64, 20)
    } else {
        (30_000u64, 4)
    };
    let master = tempdir();
    let csv = master.path().join("Master.csv");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&csv).unwrap());
        let base = chrono::NaiveDate::from_ymd_opt(2026, 11, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        for i in 0..calls {
            let start = base + chrono::Duration::seconds(i as i64 * 2);
            let number = format!("+3461{:07}", i);
            // Asterisk's uniqueid: the channel's creation (epoch seconds), a dot, a sequence.
            let id =
                |at: chrono::NaiveDateTime, n: u64| format!("{}.{n}", at.and_utc().timestamp());
            let row = match i % 3 {
                // Picked up by an agent after 20 s.
                0 => cdr_row(
                    &number,
                    "600",
                    "from-trunk",
                    "PJSIP/2001-1",
                    start,
                    Some(20),
                    120,
                    &id(start, 2 * i),
                ),
                // Missed.
                1 => cdr_row(
                    &number,
                    "600",
                    "from-trunk",
                    "",
                    start,
                    None,
                    30,
                    &id(start, 2 * i),
                ),
                // Missed, then called back 1 to 29 minutes later (the callback is logged then).
                _ => {
                    let national = &number[3..];
                    let mut rows = cdr_row(
                        &number,
                        "600",
                        "from-trunk",
                        "",
                        start,
                        None,
                        30,
                        &id(start, 2 * i),
                    );
                    let back = start + chrono::Duration::minutes(1 + (i as i64 % 29));
                    rows.push_str(&cdr_row(
                        "2001",
                        national,
                        "from-internal",
                        "PJSIP/trunk-es-9",
                        back,
                        Some(10),
                        70,
                        &id(back, 2 * i + 1),
                    ));
                    rows
                }
            };
            out.write_all(row.as_bytes()).unwrap();
        }
    }
    let answered = calls / 3 + calls / 3;
    kill_during_backfill(
        &format!("CDR backfill of {calls} calls"),
        backfill_limit(),
        points,
        calls + answered,
        |dir| {
            std::fs::copy(&csv, dir.join("Master.csv")).unwrap();
            let config = format!(
                r#"{HEAD}[policy]
target = "15m"
warn = ["10m"]
[sources.cdr]
type = "asterisk_cdr"
path = "Master.csv"
layout = "18"
time_zone = "UTC"
default_region = "ES"
extension_max_digits = 5
poll_interval = "100ms"
[[sources.cdr.lines]]
name = "soporte-es"
match = ["600"]
language = "es"
region = "ES"
"#
            );
            Daemon::configure(dir, &config, &[])
        },
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn dovecot_restarted_while_mail_arrives_loses_and_doubles_nothing() {
    let restarts = if long() { 10 } else { 3 };
    let mut d = Dovecot::start();
    let dir = tempdir();
    let config = format!(
        "{HEAD}[policy]\ntarget = \"15m\"\nwarn = []\n{}",
        imap_source(d.imaps_port, &d.cert_path(), "timeout = \"5s\"\n")
    );
    let mut daemon = Daemon::configure(dir.path(), &config, &imap_env());
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    let state = |subject: &str| -> Option<String> {
        daemon
            .inquiries()
            .iter()
            .find(|i| i["subject"] == subject)
            .map(|i| i["state"].as_str().unwrap_or_default().to_string())
    };
    let mut latencies = Vec::new();
    for k in 0..restarts {
        // Mail while the server is up; then, while it is down, more mail and the reply to it
        // are delivered to disk (the MTA does not wait for IMAP); then more right after.
        let first = format!("up-{k}");
        d.append("INBOX", &customer(&first), Utc::now());
        daemon.wait_for(&first, Duration::from_secs(20), |_| state(&first).is_some());
        d.stop();
        let now = std::time::SystemTime::now();
        let down = format!("down-{k}");
        d.maildir_drop(
            "INBOX",
            &format!("{}.D{k}.test", unix_now()),
            &customer(&down),
            now,
        );
        let reply = conversation_mail(
            "Support <support@example.com>",
            &format!("{first}@customer.test"),
            &format!("<reply-{k}@example.com>"),
            &format!("Re: {first}"),
            &[format!("<{first}@customer.test>")],
        );
        d.maildir_drop("Sent", &format!("{}.R{k}.test", unix_now()), &reply, now);
        d.launch();
        // From the server accepting logins again.
        let restarted = Instant::now();
        let after = format!("after-{k}");
        d.append("INBOX", &customer(&after), Utc::now());
        daemon.wait_for(
            "the mail of the outage and after it",
            Duration::from_secs(60),
            |_| {
                state(&down).is_some()
                    && state(&after).is_some()
                    && state(&first).as_deref() == Some("responded")
            },
        );
        latencies.push(restarted.elapsed().as_secs_f64());
    }
    assert_eq!(
        daemon.metric(r#"slawatch_source_up{source="support"}"#),
        Some(1.0)
    );
    let all = tally(&daemon.inquiries(), "subject");
    assert_eq!(all.len(), 3 * restarts, "{all:?}");
    assert!(all.values().all(|&n| n == 1), "{all:?}");
    assert_eq!(recorded_twice(&daemon), "0");
    assert!(daemon.stop());
    audit_verify(&daemon);
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    eprintln!(
        "Dovecot restarted {restarts} times while mail arrived in INBOX and Sent: {} inquiries, none \
         lost or doubled; detection after each restart {:.1?} s (p50 {:.1} s, max {:.1} s)",
        3 * restarts,
        latencies,
        percentile(&sorted, 0.5),
        sorted[sorted.len() - 1]
    );
}

#[test]
fn smtp_down_while_breaches_fall_due_delays_no_other_copy_and_loses_no_mail() {
    use support::alertmanager::Alertmanager;
    use support::webhook::Receiver;

    let _ = rustls::crypto::ring::default_provider().install_default();
    // Breaches due one every `gap` from 12 s after the start, all during the outage.
    let (breaches, gap, outage) = if long() {
        (10u64, 55u64, Duration::from_secs(600))
    } else {
        (8, 2, Duration::from_secs(30))
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let webhook = runtime.block_on(Receiver::start());
    let am_sink = runtime.block_on(Receiver::start());
    let am = Alertmanager::start(&am_sink.url);
    let mut smtp = SmtpServer::start();
    let dir = tempdir();
    let config = format!(
        r#"{HEAD}[policy]
target = "15m"
warn = []
[sources.mail]
type = "maildir"
path = "{{dir}}/maildir"
scan_interval = "1s"
silent_after = "1h"
[notify]
primary = ["smtp", "webhook", "alertmanager"]
retry_for = "1h"
[notify.webhook]
format = "json"
[notify.alertmanager]
url = "{am}"
[notify.smtp]
host = "127.0.0.1"
port = {port}
security = "starttls"
ca_file = "{ca}"
username = "{user}"
from = "SLA monitor <slawatch@example.com>"
to = ["oncall@example.com"]
timeout = "2s"
"#,
        am = am.url,
        port = smtp.starttls_port,
        ca = smtp.cert.display(),
        user = support::smtp::USER,
    );
    let first = unix_now() + 12;
    let due: Vec<u64> = (0..breaches).map(|k| first + k * gap).collect();
    for (k, at) in due.iter().enumerate() {
        maildir_mail(dir.path(), at - 15 * 60, &format!("outage-{k:02}"));
    }
    let mut daemon = Daemon::configure(
        dir.path(),
        &config,
        &[
            ("SLAWATCH__NOTIFY__SMTP__PASSWORD", support::smtp::PASSWORD),
            ("SLAWATCH__NOTIFY__WEBHOOK__URL", webhook.url.as_str()),
        ],
    );
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    smtp.stop();
    let stopped = Instant::now();
    assert!(unix_now() < first, "the set-up took too long");

    // Through the outage: each copy by webhook and in Alertmanager, timed against its deadline.
    let subjects: BTreeMap<String, String> = daemon
        .inquiries()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(subjects.len(), breaches as usize);
    let index = |id: &str| -> usize { subjects[id].trim_start_matches("outage-").parse().unwrap() };
    let mut hook_late: BTreeMap<String, f64> = BTreeMap::new();
    let mut am_late: BTreeMap<String, f64> = BTreeMap::new();
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    while stopped.elapsed() < outage {
        for body in webhook.bodies() {
            for a in body["alerts"].as_array().cloned().unwrap_or_default() {
                if a["kind"] != "breach" {
                    continue;
                }
                let id = a["inquiry_id"].as_str().unwrap_or_default().to_string();
                if !hook_late.contains_key(&id) {
                    hook_late.insert(id.clone(), unix() - due[index(&id)] as f64);
                }
            }
        }
        let (_, text) = support::daemon::request(
            am.url.trim_start_matches("http://").parse().unwrap(),
            "GET",
            "/api/v2/alerts?filter=alertname%3D%22SlaBreach%22",
            None,
        );
        for a in serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
        {
            let id = a["labels"]["inquiry"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if subjects.contains_key(&id) && !am_late.contains_key(&id) {
                am_late.insert(id.clone(), unix() - due[index(&id)] as f64);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        hook_late.len(),
        breaches as usize,
        "webhook copies: {hook_late:?}"
    );
    assert_eq!(
        am_late.len(),
        breaches as usize,
        "Alertmanager copies: {am_late:?}"
    );
    assert_eq!(
        daemon.metric(r#"slawatch_notifier_up{notifier="smtp"}"#),
        Some(0.0)
    );
    assert!(smtp.messages().is_empty());

    // Back: every mail, in order of the deadlines, none twice.
    smtp.resume();
    let resumed = Instant::now();
    daemon.wait_for(
        "every breach mailed after the outage",
        Duration::from_secs(60),
        |_| smtp.messages().len() >= breaches as usize,
    );
    let all_in = resumed.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let mails = smtp.messages();
    let mailed: Vec<String> = mails.iter().filter_map(|m| m.header("Subject")).collect();
    assert_eq!(mails.len(), breaches as usize, "{mailed:#?}");
    for (k, s) in mailed.iter().enumerate() {
        assert!(
            s.contains(&format!("outage-{k:02}")),
            "out of order: {mailed:#?}"
        );
    }
    let message_ids: std::collections::BTreeSet<String> = mails
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    assert_eq!(message_ids.len(), mails.len(), "a mail sent twice");
    assert_eq!(
        daemon.metric(r#"slawatch_notifier_up{notifier="smtp"}"#),
        Some(1.0)
    );
    assert!(daemon.stop());
    audit_verify(&daemon);
    let max = |m: &BTreeMap<String, f64>| m.values().copied().fold(f64::MIN, f64::max);
    eprintln!(
        "SMTP down {:.0} s while {breaches} breaches fell due: webhook copies at most {:.2} s after \
         their deadlines, Alertmanager copies at most {:.2} s (first seen through its API); all \
         {breaches} mails delivered {:.1} s after the server came back, in order, none twice",
        outage.as_secs_f64(),
        max(&hook_late),
        max(&am_late),
        all_in.as_secs_f64()
    );
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_day_of_mail_and_calls_at_ten_times_a_busy_desk_leaks_no_memory_or_descriptor_beyond_the_inquiries_held()
 {
    use support::http::Client;
    use support::process::memory_mb;

    // A busy desk: 40 inquiries an hour. Each slice is an hour of ten times that: 200 mails
    // (half answered from Sent) and 200 pushed calls (half answered, half to voicemail), then
    // the reads of an hour's dashboards and scrapes.
    let (hours, per_kind) = if long() { (72, 200) } else { (24, 200) };
    let dir = tempdir();
    let config = format!(
        "{HEAD}[policy]\ntarget = \"15m\"\nwarn = [\"10m\"]\n\
         [sources.mail]\ntype = \"maildir\"\npath = \"{{dir}}/maildir\"\nscan_interval = \"1s\"\n"
    );
    maildir_mail(dir.path(), unix_now() - 60, "warm-up");
    let mut daemon = Daemon::configure(dir.path(), &config, &[]);
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    let pid = daemon.pid().unwrap();
    let mut client = Client::connect(daemon.addr);
    let opened = |d: &Daemon| -> usize {
        d.sql("SELECT count(*) FROM ledger WHERE kind = 'inquiry_opened'")
            .parse()
            .unwrap_or(0)
    };
    let began = Instant::now();
    let mut samples: Vec<(f64, usize)> = Vec::new();
    let mut expected = 1;
    for hour in 0..hours {
        let now = Utc::now();
        for i in 0..per_kind {
            let key = format!("h{hour}m{i}");
            maildir_mail(dir.path(), unix_now() - 30, &key);
            if i % 2 == 0 {
                let reply = format!(
                    "From: Support <support@example.com>\r\nTo: {key}@customer.test\r\n\
                     Subject: Re: {key}\r\nMessage-ID: <re-{key}@example.com>\r\n\
                     In-Reply-To: <{key}@customer.test>\r\n\r\nHere you are.\r\n"
                );
                let name = format!("{}.R{hour}x{i}.test", unix_now());
                let sent = dir.path().join("maildir/.Sent");
                std::fs::write(sent.join("tmp").join(&name), reply).unwrap();
                std::fs::rename(sent.join("tmp").join(&name), sent.join("new").join(&name))
                    .unwrap();
            }
            let started = (now - chrono::Duration::seconds(40)).to_rfc3339();
            let answered = (now - chrono::Duration::seconds(20)).to_rfc3339();
            let body = if i % 2 == 0 {
                format!(
                    r#"{{"call_id": "{key}", "event": "answered", "number": "+3460{hour:03}{i:04}", "started_at": "{started}", "answered_at": "{answered}"}}"#
                )
            } else {
                format!(
                    r#"{{"call_id": "{key}", "event": "ended", "outcome": "voicemail", "number": "+3460{hour:03}{i:04}", "started_at": "{started}"}}"#
                )
            };
            assert_eq!(client.post("/api/v1/calls", &body), 202);
        }
        expected += 2 * per_kind;
        daemon.wait_for("the hour's inquiries", Duration::from_secs(60), |d| {
            opened(d) >= expected
        });
        for _ in 0..20 {
            assert_eq!(daemon.get("/metrics").0, 200);
        }
        for path in ["/", "/api/v1/inquiries?limit=100", "/readyz"] {
            daemon.get(path);
        }
        samples.push((memory_mb(pid, "VmRSS:").unwrap(), open_fds(pid)));
    }
    let fed = began.elapsed();

    // Then a quiet stretch: scans, scrapes and reads only, resident memory sampled throughout.
    let quiet = Instant::now();
    let mut requests = 0;
    let mut quiet_rss = Vec::new();
    while quiet.elapsed() < Duration::from_secs(12) {
        daemon.get("/metrics");
        daemon.get("/api/v1/inquiries?limit=100");
        requests += 2;
        quiet_rss.push(memory_mb(pid, "VmRSS:").unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Resident memory moves by several MB either way as the allocator keeps or returns pages
    // (±10 MB over a minute of reads, ending lower); a leak moves the median.
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (quiet_from, quiet_to) = (
        median(&quiet_rss[..quiet_rss.len() / 2]),
        median(&quiet_rss[quiet_rss.len() / 2..]),
    );
    let fds_quiet = open_fds(pid);

    // Warm-up: the first quarter.
    let warm = &samples[hours / 4..];
    let (rss_from, rss_to) = (warm[0].0, warm[warm.len() - 1].0);
    let fds: Vec<usize> = warm.iter().map(|s| s.1).chain([fds_quiet]).collect();
    let (fd_min, fd_max) = (*fds.iter().min().unwrap(), *fds.iter().max().unwrap());
    let inquiries = opened(&daemon);
    // Inquiries opened between the first and the last sample after warm-up.
    let held = ((warm.len() - 1) * 2 * per_kind) as f64;
    let per_1000 = (rss_to - rss_from) / held * 1000.0;
    eprintln!(
        "soak: {hours} h at 10x a busy desk ({inquiries} inquiries, mail and calls) in {:.0} s: RSS \
         {rss_from:.1} MB after warm-up, {rss_to:.1} MB at the end ({per_1000:.2} MB per 1,000 \
         inquiries held; every inquiry stays in memory); quiet 12 s ({requests} requests): \
         median {quiet_from:.1} MB in the first half, {quiet_to:.1} MB in the second; open \
         descriptors {fd_min}..{fd_max}; RSS per hour {:?}",
        fed.as_secs_f64(),
        samples
            .iter()
            .map(|s| s.0.round() as u64)
            .collect::<Vec<_>>()
    );
    assert!(
        fd_max - fd_min <= 8,
        "descriptors grow: {:?}",
        samples.iter().map(|s| s.1).collect::<Vec<_>>()
    );
    // What grows is the inquiries held (a few KB each), nothing per request, scan or push.
    assert!(
        per_1000 <= 10.0,
        "{per_1000:.1} MB per 1,000 inquiries: {:?}",
        samples.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    assert!(
        quiet_to - quiet_from <= 4.0,
        "memory grows without new inquiries: median {quiet_from} -> {quiet_to} MB in {requests} \
         requests"
    );
    assert!(daemon.stop());
}

#[test]
fn one_unreadable_folder_keeps_the_source_down_while_the_others_work() {
    use std::os::unix::fs::PermissionsExt;

    let d = Dovecot::start();
    d.doveadm(&["mailbox", "create", "-u", "alice", "Support"]);
    let dir = tempdir();
    // The healthy folders come back from IDLE every 2 s, each time with a successful sync.
    let config = format!(
        "{HEAD}[policy]\ntarget = \"15m\"\nwarn = []\n{}",
        imap_source(
            d.imaps_port,
            &d.cert_path(),
            "timeout = \"2s\"\nidle_timeout = \"2s\"\n"
        )
        .replace(
            "inbox_folders = [\"INBOX\"]",
            "inbox_folders = [\"INBOX\", \"Support\"]"
        )
    );
    let mut daemon = Daemon::configure(dir.path(), &config, &imap_env());
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    let up = || daemon.metric(r#"slawatch_source_up{source="support"}"#);
    let last_success = || {
        daemon
            .metric(r#"slawatch_source_last_success_timestamp_seconds{source="support"}"#)
            .unwrap_or(0.0)
    };
    assert_eq!(up(), Some(1.0));

    // A migration leaves the Support folder unreadable to the mail server; the sessions are
    // dropped, and only that folder fails to open again.
    let support = d.maildir("Support");
    std::fs::set_permissions(&support, std::fs::Permissions::from_mode(0o000)).unwrap();
    let broken = Instant::now();
    d.kick();
    let detected = within(Duration::from_secs(20), || up() == Some(0.0))
        .unwrap_or_else(|| panic!("still up:\n{}", daemon.log()));
    d.append("INBOX", &customer("while-support-broken"), Utc::now());
    daemon.wait_for("INBOX still read", Duration::from_secs(20), |x| {
        x.inquiries()
            .iter()
            .any(|i| i["subject"] == "while-support-broken")
    });
    // Up or not, sampled through several IDLE rounds of the healthy folders.
    let stale_from = last_success();
    let mut samples = Vec::new();
    while broken.elapsed() < Duration::from_secs(12) {
        samples.push(up());
        std::thread::sleep(Duration::from_millis(100));
    }
    let up_samples = samples.iter().filter(|s| **s == Some(1.0)).count();
    assert_eq!(
        up_samples,
        0,
        "source_up said 1 in {up_samples} of {} samples while the Support folder could not be read",
        samples.len()
    );
    assert_eq!(
        last_success(),
        stale_from,
        "a sync of the healthy folders counted as the source's success"
    );

    std::fs::set_permissions(&support, std::fs::Permissions::from_mode(0o700)).unwrap();
    let recovered = within(Duration::from_secs(90), || up() == Some(1.0))
        .unwrap_or_else(|| panic!("not up again:\n{}", daemon.log()));
    eprintln!(
        "one unreadable folder of three: source down after {:.1} s and for all {} samples while \
         the others worked; up {:.1} s after it was readable again",
        detected.as_secs_f64(),
        samples.len(),
        recovered.as_secs_f64()
    );
    assert!(daemon.stop());
}

/// Empties the write-ahead log (`wal_checkpoint(TRUNCATE)`, waiting for the daemon's write lock
/// if it holds it) so that the daemon's next commit needs new blocks: SQLite re-uses the
/// `-wal` file's blocks once a checkpoint has copied them, and a commit into blocks the file
/// already has would not meet the full disk.
fn empty_the_wal(fs: &support::ledger_fs::LedgerFs, database: &std::path::Path) {
    let out = fs.inside(&[
        "sqlite3",
        "-cmd",
        ".timeout 10000",
        &database.display().to_string(),
        "PRAGMA wal_checkpoint(TRUNCATE);",
    ]);
    assert!(
        out.status.success(),
        "checkpoint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Seconds since the Unix epoch, with the fraction.
fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The ledger's disk full while breaches fall due and mail arrives, then freed: a `tmpfs` of the
/// ledger's own in a user+mount namespace (see [`support::ledger_fs`] for why this way), filled
/// to the last byte from outside, the daemon's database, WAL, shared memory and lock file on it.
#[test]
fn a_full_ledger_disk_delays_no_alert_and_loses_or_doubles_nothing_once_freed() {
    ledger_unwritable(Unwritable::Full);
}

/// The ledger's files read-only while breaches fall due and mail arrives, then writable again:
/// every write call on them answered `EROFS` ([`support::ledger_fs::ReadOnly`]).
#[test]
fn a_read_only_ledger_delays_no_alert_and_loses_or_doubles_nothing_once_writable() {
    ledger_unwritable(Unwritable::ReadOnly);
}

/// How the ledger is made unwritable.
#[derive(Clone, Copy, PartialEq)]
enum Unwritable {
    Full,
    ReadOnly,
}

impl Unwritable {
    fn name(self) -> &'static str {
        match self {
            Unwritable::Full => "ledger disk full",
            Unwritable::ReadOnly => "ledger read-only",
        }
    }

    /// What SQLite says, as `/readyz` shows it.
    fn error(self) -> &'static str {
        match self {
            Unwritable::Full => "database or disk is full",
            Unwritable::ReadOnly => "disk I/O error",
        }
    }
}

/// The fault in place, and what ends it.
enum Injected<'a> {
    Full(&'a support::ledger_fs::LedgerFs),
    ReadOnly(support::ledger_fs::ReadOnly),
}

/// Breaches fall due and a customer mail arrives while the ledger is unwritable for a while
/// (20 s, a minute in the long variant); then it is writable again. Each breach by webhook on
/// time, `/readyz`, the metrics and the `monitor-ledger` page show the fault; afterwards every
/// inquiry and delivery in the ledger once, the page resolved, nothing re-sent after a restart,
/// `audit verify` intact.
fn ledger_unwritable(fault: Unwritable) {
    use support::ledger_fs::{LedgerFs, ReadOnly};
    use support::webhook::Receiver;

    // Breaches due one every `gap` from a few seconds into the outage, which lasts `outage` and at
    // least until 3 s after the last one (should the set-up have been slow).
    let (breaches, gap, outage) = if long() {
        (10u64, 5u64, Duration::from_secs(60))
    } else {
        (6, 2, Duration::from_secs(20))
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let webhook = runtime.block_on(Receiver::start());
    let dir = tempdir();
    let fs = (fault == Unwritable::Full).then(|| LedgerFs::mount(dir.path(), 16 * 1024));
    let database = match &fs {
        Some(fs) => fs.mount.join("ledger.db"),
        None => dir.path().join("ledger.db"),
    };
    let config = format!(
        r#"
[store]
url = "sqlite://{db}"
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
silent_after = "1h"
[notify]
primary = ["webhook"]
retry_for = "1h"
[notify.webhook]
format = "json"
"#,
        db = database.display()
    );
    let first = unix_now() + 8;
    let due: Vec<u64> = (0..breaches).map(|k| first + k * gap).collect();
    for (k, at) in due.iter().enumerate() {
        maildir_mail(dir.path(), at - 15 * 60, &format!("unwritable-{k:02}"));
    }
    let mut daemon = Daemon::configure(
        dir.path(),
        &config,
        &[("SLAWATCH__NOTIFY__WEBHOOK__URL", webhook.url.as_str())],
    );
    if let Some(fs) = &fs {
        daemon = daemon.wrapped(fs.wrapper(), database.clone());
    }
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    if let Some(fs) = &fs {
        fs.assert_holds(daemon.pid().unwrap(), &database);
    }
    assert_eq!(
        daemon.sql("SELECT count(*) FROM ledger WHERE kind = 'inquiry_opened'"),
        breaches.to_string()
    );

    // The fault. A full disk: no free block left, and none in the WAL to re-use. (Should the
    // daemon commit between the checkpoint and the fill, its WAL has blocks again: then once
    // more.)
    let mut filled = 0;
    let injected = match &fs {
        Some(fs) => {
            for _ in 0..5 {
                empty_the_wal(fs, &database);
                filled = fs.fill();
                let wal = std::fs::metadata(fs.outside(&fs.mount.join("ledger.db-wal")))
                    .map(|m| m.len())
                    .unwrap_or(0);
                if wal == 0 {
                    break;
                }
                fs.free();
                filled = 0;
            }
            assert!(
                filled > 0,
                "could not empty the WAL before filling the disk"
            );
            Injected::Full(fs)
        }
        None => Injected::ReadOnly(ReadOnly::start(
            daemon.pid().unwrap(),
            &database,
            dir.path().join("strace.log"),
        )),
    };
    let began = Instant::now();
    // The first write the full disk refuses: the first breach's.
    let first_refused = Duration::from_secs_f64((first as f64 - unix_seconds()).max(0.0));
    assert!(
        unix_now() + 2 < first,
        "the set-up took too long: the first deadline is before the fault"
    );
    let last_due = *due.last().unwrap() as f64;

    let subjects: BTreeMap<String, String> = daemon
        .inquiries()
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap().to_string(),
                i["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let index = |id: &str| -> usize {
        subjects[id]
            .trim_start_matches("unwritable-")
            .parse()
            .unwrap()
    };
    // Each alert of the webhook, by inquiry and kind, with how many times it came.
    let received = || {
        let mut out: BTreeMap<(String, String), usize> = BTreeMap::new();
        for body in webhook.bodies() {
            for a in body["alerts"].as_array().cloned().unwrap_or_default() {
                let key = (
                    a["inquiry_id"].as_str().unwrap_or_default().to_string(),
                    a["kind"].as_str().unwrap_or_default().to_string(),
                );
                *out.entry(key).or_default() += 1;
            }
        }
        out
    };
    let ledger_alert =
        |kind: &str| received().contains_key(&("monitor-ledger".into(), kind.into()));

    // Through the outage: each breach timed against its deadline; a new customer mail arrives.
    let mut late: BTreeMap<String, f64> = BTreeMap::new();
    let mut paged = None;
    let mut seen_down = None;
    let mut mailed_during = false;
    while began.elapsed() < outage || unix_seconds() < last_due + 3.0 {
        for (id, kind) in received().into_keys() {
            if kind == "breach" && subjects.contains_key(&id) && !late.contains_key(&id) {
                late.insert(id.clone(), unix_seconds() - due[index(&id)] as f64);
            }
        }
        if paged.is_none() && ledger_alert("breach") {
            paged = Some(began.elapsed());
        }
        if paged.is_some() && seen_down.is_none() {
            let readyz = daemon.get("/readyz");
            let healthz = daemon.get("/healthz").0;
            let failures = daemon.metric("slawatch_ledger_write_failures_total");
            let writable = daemon.metric("slawatch_ledger_writable");
            seen_down = Some((readyz, healthz, failures, writable));
        }
        if !mailed_during && unix_seconds() > due[0] as f64 {
            maildir_mail(dir.path(), unix_now(), "unwritable-during");
            mailed_during = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        late.len(),
        breaches as usize,
        "breaches by webhook during the outage: {late:?}\n{}",
        daemon.log()
    );
    let latest = late.values().copied().fold(f64::MIN, f64::max);
    assert!(latest < 5.0, "a breach {latest:.2} s late: {late:?}");
    let paged = paged.unwrap_or_else(|| {
        panic!(
            "no monitor-ledger page by webhook during the outage; log:\n{}",
            daemon.log()
        )
    });
    let ((status, readyz), healthz, failures, writable) = seen_down.unwrap();
    assert_eq!(status, 503, "{readyz}");
    assert!(
        readyz.contains("NOT WRITABLE") && readyz.contains(fault.error()),
        "{readyz}"
    );
    assert!(readyz.contains("monitor alert monitor-ledger"), "{readyz}");
    assert_eq!(healthz, 200);
    let failures = failures.unwrap_or(0.0);
    assert!(
        failures >= 1.0,
        "slawatch_ledger_write_failures_total {failures}"
    );
    assert_eq!(writable, Some(0.0));
    // Nothing of the outage got into the ledger: the fault was real.
    assert_eq!(
        daemon.sql("SELECT count(*) FROM ledger WHERE kind = 'inquiry_breached'"),
        "0"
    );

    // Every retry failed, and was counted.
    let failures = daemon
        .metric("slawatch_ledger_write_failures_total")
        .unwrap_or(0.0);

    // Writable again: everything waiting is written, the page resolves.
    let held = began.elapsed();
    let refused = match injected {
        Injected::Full(fs) => {
            assert_eq!(fs.available(), 0);
            fs.free();
            0
        }
        Injected::ReadOnly(ro) => ro.end(),
    };
    let freed = Instant::now();
    if fault == Unwritable::ReadOnly {
        assert!(refused > 0, "no write call was refused");
    }
    let count = |kind: &str| -> usize {
        daemon
            .sql(&format!(
                "SELECT count(*) FROM ledger WHERE kind = '{kind}'"
            ))
            .parse()
            .unwrap()
    };
    daemon.wait_for(
        "every breach and delivery recorded once the ledger is writable",
        Duration::from_secs(60),
        |_| {
            count("inquiry_breached") >= breaches as usize
                && count("alert_delivered") >= breaches as usize
                && count("inquiry_opened") > breaches as usize
        },
    );
    let recorded = freed.elapsed();
    daemon.wait_for(
        "the monitor-ledger page resolved by webhook",
        Duration::from_secs(60),
        |_| ledger_alert("resolved"),
    );
    let resolved = freed.elapsed();
    daemon.wait_for("/readyz 200 again", Duration::from_secs(30), |d| {
        d.get("/readyz").0 == 200
    });
    assert_eq!(daemon.metric("slawatch_ledger_writable"), Some(1.0));

    // And after a restart nothing is sent again.
    std::thread::sleep(Duration::from_secs(2));
    assert!(daemon.stop());
    let before_restart = received();
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    assert!(daemon.stop());
    let after = received();
    assert_eq!(after, before_restart, "sent again after the restart");
    for (id, _) in subjects.iter() {
        assert_eq!(
            after.get(&(id.clone(), "breach".into())),
            Some(&1),
            "{after:?}"
        );
    }
    assert_eq!(
        after.get(&("monitor-ledger".into(), "breach".into())),
        Some(&1)
    );
    assert_eq!(
        after.get(&("monitor-ledger".into(), "resolved".into())),
        Some(&1)
    );

    // The ledger: every inquiry once, every breach and delivery once, the chain intact.
    assert_eq!(
        daemon.sql(
            "SELECT count(*) || ' ' || count(DISTINCT inquiry_id) FROM ledger WHERE kind = 'inquiry_opened'"
        ),
        format!("{0} {0}", breaches + 1)
    );
    assert_eq!(opened_twice(&daemon), "0");
    assert_eq!(
        daemon.sql(
            "SELECT count(*) || ' ' || count(DISTINCT inquiry_id) FROM ledger WHERE kind = 'inquiry_breached'"
        ),
        format!("{0} {0}", breaches)
    );
    assert_eq!(
        daemon.sql(
            "SELECT count(*) || ' ' || count(DISTINCT inquiry_id || json_extract(payload, '$.kind') \
             || json_extract(payload, '$.due_at')) FROM ledger WHERE kind = 'alert_delivered'"
        ),
        format!("{0} {0}", breaches)
    );
    assert_eq!(
        daemon.sql(
            "SELECT group_concat(kind, ' ') FROM (SELECT kind FROM ledger \
             WHERE kind LIKE 'monitor_alert%' ORDER BY seq)"
        ),
        "monitor_alert_raised monitor_alert_delivered monitor_alert_resolved monitor_alert_delivered"
    );
    assert_eq!(
        daemon.sql(
            "SELECT count(*) FROM ledger WHERE kind = 'inquiry_opened' AND payload LIKE '%unwritable-during%'"
        ),
        "1"
    );
    audit_verify(&daemon);
    let how = match fault {
        Unwritable::Full => format!("{} MiB filled", filled / (1024 * 1024)),
        Unwritable::ReadOnly => format!("{refused} write calls refused with EROFS"),
    };
    eprintln!(
        "{} {:.0} s ({how}) while {breaches} breaches fell due: all sent by webhook, at most \
         {latest:.2} s after their deadlines; monitor-ledger paged {:.1} s after the first refused \
         write; {failures:.0} failed write attempts in all; everything recorded {:.1} s after the ledger \
         was writable again (page resolved after {:.1} s); every inquiry and delivery once, chain \
         intact",
        fault.name(),
        held.as_secs_f64(),
        paged.saturating_sub(first_refused).as_secs_f64(),
        recorded.as_secs_f64(),
        resolved.as_secs_f64()
    );
}
