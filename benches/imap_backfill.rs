//! Email figures against a local Dovecot over IMAPS, all in one run:
//!
//! - backfill of N messages (default 20,000, 10 % in Sent) by the IMAP source alone into a
//!   counting sink, and **end to end** by the real daemon binary into its SQLite ledger (spawn →
//!   `/readyz`), both compared with a bare `UID FETCH 1:*` of the same items over the same kind
//!   of connection;
//! - detection latency with IDLE: APPEND → the inquiry visible in `/api/v1/inquiries`, p50/p99;
//! - the daemon's resident memory after all that.
//!
//! `cargo bench --bench imap_backfill [-- N]`; `SLAWATCH_BENCH_STORE=postgres` (or `both`) runs
//! the daemon on PostgreSQL (see `support::bench_store`). The mailbox is written straight into the Maildir
//! before Dovecot starts (mtime = INTERNALDATE), indexed and read once before anything is timed.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures_util::TryStreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use slawatch::config::{ImapSecurity, ImapSettings, Secret};
use slawatch::sources::{EngineSink, imap};
use slawatch::telemetry::SourceHealth;
use support::bench_store::{self, BenchStore};
use support::daemon::Daemon;
use support::dovecot::{Dovecot, PASSWORD, USER};
use tokio_util::sync::CancellationToken;

const PREFIX: u32 = 4096;

/// Messages appended one by one to time detection (they stay in the mailbox).
const PROBES: usize = 100;

struct NoHealth;
impl SourceHealth for NoHealth {
    fn set_up(&self, _: &str, _: bool) {}
    fn succeeded(&self, _: &str, _: chrono::DateTime<chrono::Utc>) {}
    fn error(&self, source: &str, kind: &str) {
        eprintln!("source {source}: error {kind}");
    }
}

fn message(i: usize, folder: &str) -> Vec<u8> {
    format!(
        "From: Customer {i} <c{i}@example.org>\r\nTo: support@desk.example\r\n\
         Subject: Question number {i} about my order\r\nMessage-ID: <{folder}{i}@example.org>\r\n\
         Date: Tue, 2 Jan 2024 03:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         {}\r\n",
        "Hello, I have a question about my order and would like some help. ".repeat(12)
    )
    .into_bytes()
}

async fn through_run(d: &Dovecot, n: usize) -> Duration {
    let settings = ImapSettings {
        host: "localhost".into(),
        port: d.imaps_port,
        security: ImapSecurity::Tls,
        tls: slawatch::tls::TlsTrust::with_ca_file(d.cert_path()),
        username: USER.into(),
        auth: slawatch::config::ImapAuth::Password(Secret::new(PASSWORD)),
        inbox_folders: vec!["INBOX".into()],
        sent_folders: Vec::new(),
        since: None,
        idle_timeout: Duration::from_secs(300),
        poll_interval: Duration::from_secs(60),
        body_prefix_bytes: PREFIX,
        timeout: Duration::from_secs(30),
        allow_insecure: false,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<slawatch::sources::Submission>(4);
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut done_tx = Some(done_tx);
        while let Some(sub) = rx.recv().await {
            counted.fetch_add(sub.batch.observations.len(), Ordering::Relaxed);
            if sub.batch.initial_sync_done
                && let Some(t) = done_tx.take()
            {
                let _ = t.send(());
            }
            let _ = sub.committed.send(Ok(()));
        }
    });
    let shutdown = CancellationToken::new();
    let began = Instant::now();
    let task = tokio::spawn(imap::run(
        "bench".into(),
        settings,
        Vec::new(),
        EngineSink::new(tx),
        Arc::new(NoHealth),
        shutdown.clone(),
    ));
    done_rx.await.expect("initial sync");
    let took = began.elapsed();
    shutdown.cancel();
    let _ = task.await;
    assert_eq!(count.load(Ordering::Relaxed), n, "messages observed");
    took
}

/// The floor: one connection per folder, `UID FETCH 1:*`, responses parsed by async-imap.
async fn bare_fetch(d: &Dovecot) -> (usize, Duration) {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(d.cert_path()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    let began = Instant::now();
    let mut total = 0;
    for folder in ["INBOX", "Sent"] {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", d.imaps_port))
            .await
            .unwrap();
        let stream = tls
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let mut client = async_imap::Client::new(stream);
        client.read_response().await.unwrap();
        let mut session = client
            .login(USER, PASSWORD)
            .await
            .map_err(|(e, _)| e)
            .unwrap();
        session.examine(folder).await.unwrap();
        let fetches: Vec<_> = session
            .uid_fetch(
                "1:*",
                format!("(UID INTERNALDATE BODY.PEEK[HEADER] BODY.PEEK[TEXT]<0.{PREFIX}>)"),
            )
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        total += fetches.len();
        let _ = session.logout().await;
    }
    (total, began.elapsed())
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut d = Dovecot::configure();
    let populate = Instant::now();
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_164_645);
    for i in 0..n {
        let folder = if i % 10 == 9 { "Sent" } else { "INBOX" };
        d.maildir_drop(
            folder,
            &format!("{}.M{i}P1.bench", 1_704_164_645 + i),
            &message(i, folder),
            base + Duration::from_secs(i as u64),
        );
    }
    d.launch();
    d.doveadm(&["mailbox", "status", "-u", USER, "messages", "INBOX", "Sent"]);
    println!(
        "populated {n} messages in {:.2} s",
        populate.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (warm, _) = bare_fetch(&d).await;
        assert_eq!(warm, n, "messages in the mailbox");
        let run = through_run(&d, n).await;
        let (_, bare) = bare_fetch(&d).await;
        let run_rate = n as f64 / run.as_secs_f64();
        let bare_rate = n as f64 / bare.as_secs_f64();
        println!(
            "imap::run backfill: {n} messages in {:.2} s = {run_rate:.0} msgs/s",
            run.as_secs_f64()
        );
        println!(
            "bare UID FETCH 1:*: {n} messages in {:.2} s = {bare_rate:.0} msgs/s",
            bare.as_secs_f64()
        );
        println!("ratio run/bare: {:.2}", run_rate / bare_rate);

        let mut rates = Vec::new();
        // The latency probes stay in the mailbox: the next store's backfill reads them too.
        let mut probed = 0;
        for store in bench_store::from_env() {
            let n = n + probed;
            let dir = tempfile::tempdir().unwrap();
            let (e2e, daemon, name) = through_daemon(&d, dir.path(), n, &store);
            let (_, bare2) = bare_fetch(&d).await;
            let e2e_rate = n as f64 / e2e.as_secs_f64();
            let bare2_rate = n as f64 / bare2.as_secs_f64();
            println!(
                "[{name}] daemon end to end (spawn -> ledger -> /readyz): {n} messages in {:.2} s = {e2e_rate:.0} msgs/s",
                e2e.as_secs_f64()
            );
            println!(
                "[{name}] bare UID FETCH 1:* (again): {:.2} s = {bare2_rate:.0} msgs/s; daemon takes {:.2}x the bare fetch time",
                bare2.as_secs_f64(),
                e2e.as_secs_f64() / bare2.as_secs_f64()
            );
            detection_latency(&d, &daemon, probed..probed + PROBES);
            probed += PROBES;
            println!("[{name}] daemon memory: {}", daemon_memory(&daemon));
            rates.push((name, e2e_rate));
        }
        if let [(a, ra), (b, rb)] = rates.as_slice() {
            println!("backfill rate {b}/{a}: {:.2}", rb / ra);
        }
    });
}

/// The release daemon backfilling the mailbox into its ledger: spawn until `/readyz`.
fn through_daemon(
    d: &Dovecot,
    dir: &std::path::Path,
    n: usize,
    store: &BenchStore,
) -> (Duration, Daemon, &'static str) {
    let ledger = store.ledger();
    let config = format!(
        "{}[http]\nbind = \"127.0.0.1:{{port}}\"\n\
         [desk]\nsupport_addresses = [\"support@desk.example\"]\n\
         [sources.support]\ntype = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{}\"\n\
         username = \"{USER}\"\nsent_folders = [\"Sent\"]\nsince = \"all\"\nbody_prefix_bytes = {PREFIX}\n",
        ledger.toml,
        d.imaps_port,
        d.cert_path().display()
    );
    let mut env = ledger.env.clone();
    env.push(("SLAWATCH__SOURCES__SUPPORT__PASSWORD", PASSWORD));
    let mut daemon = Daemon::configure(dir, &config, &env);
    let began = Instant::now();
    daemon.start();
    daemon.wait_ready(Duration::from_secs(600));
    let took = began.elapsed();
    let rows: usize = ledger
        .sql(
            store,
            &daemon,
            "SELECT count(*) FROM ledger WHERE kind IN ('inquiry_opened', 'reply_unmatched')",
        )
        .parse()
        .unwrap();
    assert_eq!(rows, n, "every message in the ledger");
    (took, daemon, ledger.name)
}

/// APPEND one message at a time and time until the API lists it.
fn detection_latency(d: &Dovecot, daemon: &Daemon, probes: std::ops::Range<usize>) {
    let samples = probes.len();
    let mut took = Vec::with_capacity(samples);
    for i in probes {
        let subject = format!("latency probe {i}");
        let raw = format!(
            "From: Probe <probe{i}@example.org>\r\nTo: support@desk.example\r\nSubject: {subject}\r\n\
             Message-ID: <probe{i}@example.org>\r\n\r\nHello, is anyone there?\r\n"
        );
        let began = Instant::now();
        d.append("INBOX", raw.as_bytes(), chrono::Utc::now());
        loop {
            // INTERNALDATE has one-second resolution: probes of the same second tie on
            // received_at, so look through the newest few.
            let page = daemon.get_json("/api/v1/inquiries?limit=20");
            let listed = page["inquiries"]
                .as_array()
                .is_some_and(|all| all.iter().any(|i| i["subject"] == subject.as_str()));
            if listed {
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "probe {i} never appeared"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        took.push(began.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_millis(100));
    }
    took.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| took[((took.len() - 1) as f64 * q).round() as usize];
    println!(
        "detection latency with IDLE (APPEND -> API), {samples} probes: p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        p(0.5),
        p(0.99),
        took[took.len() - 1]
    );
}

fn daemon_memory(daemon: &Daemon) -> String {
    let pid = daemon.pid().expect("daemon running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| format!("{:.1} MB", kb / 1024.0))
            .unwrap_or_default()
    };
    format!("RSS {} (peak {})", field("VmRSS:"), field("VmHWM:"))
}
