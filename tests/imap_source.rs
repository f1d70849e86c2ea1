//! The IMAP source against a real, private Dovecot: backfill, STARTTLS + IDLE, certificate
//! checks, restarts, cursors, UIDVALIDITY resets, hung servers, bad passwords, large messages.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use slawatch::config::{ImapSecurity, ImapSettings, Secret};
use slawatch::sources::{EngineSink, SourceBatch, imap};
use slawatch::telemetry::SourceHealth;
use slawatch_core::tracker::Observation;
use slawatch_core::tracker::observation::Mail;
use support::dovecot::{Dovecot, PASSWORD, USER, conversation_mail};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Generous: Dovecot delays IDLE notifications by 0.5 s, and the machine may be busy.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq)]
enum HealthEvent {
    Up(bool),
    Succeeded,
    Error(String),
}

#[derive(Default)]
struct RecordingHealth(Mutex<Vec<HealthEvent>>);

impl SourceHealth for RecordingHealth {
    fn set_up(&self, _: &str, up: bool) {
        self.0.lock().unwrap().push(HealthEvent::Up(up));
    }
    fn succeeded(&self, _: &str, _: DateTime<Utc>) {
        self.0.lock().unwrap().push(HealthEvent::Succeeded);
    }
    fn error(&self, _: &str, kind: &str) {
        self.0
            .lock()
            .unwrap()
            .push(HealthEvent::Error(kind.to_string()));
    }
}

/// A running source with a test engine that commits every batch at once.
struct Running {
    batches: Arc<Mutex<Vec<SourceBatch>>>,
    health: Arc<RecordingHealth>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn start(settings: ImapSettings, cursors: Vec<(String, serde_json::Value)>) -> Running {
    init();
    let (tx, mut rx) = mpsc::channel::<slawatch::sources::Submission>(4);
    let batches = Arc::new(Mutex::new(Vec::new()));
    let recorded = batches.clone();
    tokio::spawn(async move {
        while let Some(sub) = rx.recv().await {
            recorded.lock().unwrap().push(sub.batch);
            let _ = sub.committed.send(Ok(()));
        }
    });
    let health = Arc::new(RecordingHealth::default());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(imap::run(
        "desk".into(),
        settings,
        cursors,
        EngineSink::new(tx),
        health.clone(),
        shutdown.clone(),
    ));
    Running {
        batches,
        health,
        shutdown,
        task,
    }
}

impl Running {
    async fn wait_until(&self, what: &str, cond: impl Fn(&Running) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !cond(self) {
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; health {:?}; message ids {:?}",
                    self.health.0.lock().unwrap(),
                    self.message_ids()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn observations(&self) -> Vec<Observation> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b.observations.iter().cloned())
            .collect()
    }

    fn received(&self) -> Vec<Mail> {
        self.observations()
            .into_iter()
            .filter_map(|o| match o {
                Observation::MessageReceived(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn sent(&self) -> Vec<Mail> {
        self.observations()
            .into_iter()
            .filter_map(|o| match o {
                Observation::MessageSent(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn message_ids(&self) -> Vec<String> {
        self.observations()
            .into_iter()
            .filter_map(|o| match o {
                Observation::MessageReceived(m) | Observation::MessageSent(m) => Some(m.message_id),
                _ => None,
            })
            .collect()
    }

    fn initial_syncs(&self) -> usize {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .filter(|b| b.initial_sync_done)
            .count()
    }

    /// The last committed cursor per folder.
    fn cursors(&self) -> BTreeMap<String, serde_json::Value> {
        let mut out = BTreeMap::new();
        for b in self.batches.lock().unwrap().iter() {
            for c in &b.cursors {
                out.insert(c.key.clone(), c.value.clone());
            }
        }
        out
    }

    fn errors(&self, kind: &str) -> usize {
        self.health
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| **e == HealthEvent::Error(kind.into()))
            .count()
    }

    fn has(&self, e: HealthEvent) -> bool {
        self.health.0.lock().unwrap().contains(&e)
    }

    /// Cancels and checks the source stops promptly.
    async fn stop(self) -> Self {
        self.shutdown.cancel();
        let Running {
            batches,
            health,
            shutdown,
            task,
        } = self;
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("source did not stop within 5 s of shutdown")
            .expect("source task panicked");
        Running {
            batches,
            health,
            shutdown,
            task: tokio::spawn(async {}),
        }
    }
}

fn settings(port: u16, security: ImapSecurity, ca: Option<PathBuf>) -> ImapSettings {
    ImapSettings {
        host: "localhost".into(),
        port,
        security,
        tls: slawatch::tls::TlsTrust {
            ca_file: ca,
            ..Default::default()
        },
        username: USER.into(),
        auth: slawatch::config::ImapAuth::Password(Secret::new(PASSWORD)),
        inbox_folders: vec!["INBOX".into()],
        sent_folders: Vec::new(),
        since: None,
        idle_timeout: Duration::from_secs(300),
        poll_interval: Duration::from_secs(60),
        body_prefix_bytes: 4096,
        timeout: Duration::from_secs(10),
        allow_insecure: false,
    }
}

fn imaps(d: &Dovecot) -> ImapSettings {
    settings(d.imaps_port, ImapSecurity::Tls, Some(d.cert_path()))
}

fn message(id: &str, subject: &str) -> Vec<u8> {
    format!(
        "From: Customer <customer@example.org>\r\nTo: support@desk.example\r\n\
         Subject: {subject}\r\nMessage-ID: <{id}@example.org>\r\n\
         Date: Tue, 2 Jan 2024 03:00:00 +0000\r\n\r\nHello, I need help with {subject}.\r\n"
    )
    .into_bytes()
}

fn mid(id: &str) -> String {
    format!("<{id}@example.org>")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()
}

fn cursor_uid(r: &Running, folder: &str) -> u64 {
    r.cursors()[folder]["last_uid"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imaps_backfill_reads_everything_without_touching_flags() {
    let d = Dovecot::start();
    for i in 0..20 {
        d.append(
            "INBOX",
            &message(&format!("in{i}"), &format!("question {i}")),
            t0() + chrono::Duration::minutes(i),
        );
    }
    for i in 0..3 {
        d.append(
            "Sent",
            &message(&format!("out{i}"), "reply"),
            t0() + chrono::Duration::hours(1 + i),
        );
    }
    let r = start(imaps(&d), Vec::new());
    r.wait_until("initial sync", |r| r.initial_syncs() == 1)
        .await;
    // No second announcement, even after IDLE starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(r.initial_syncs(), 1);

    let received = r.received();
    assert_eq!(received.len(), 20);
    for i in 0..20 {
        let m = received
            .iter()
            .find(|m| m.message_id == mid(&format!("in{i}")))
            .unwrap_or_else(|| panic!("in{i} missing"));
        assert_eq!(m.delivered_at, t0() + chrono::Duration::minutes(i));
        assert_eq!(m.folder, "INBOX");
        assert_eq!(m.source, "desk");
    }
    let sent = r.sent();
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|m| m.folder == "Sent"));
    assert_eq!(cursor_uid(&r, "INBOX"), 20);
    assert_eq!(cursor_uid(&r, "Sent"), 3);
    assert!(r.cursors()["INBOX"]["uidvalidity"].as_u64().unwrap() > 0);
    assert!(r.has(HealthEvent::Up(true)) && r.has(HealthEvent::Succeeded));
    assert!(!r.has(HealthEvent::Up(false)));
    let r = r.stop().await;
    drop(r);

    for folder in ["INBOX", "Sent"] {
        let flags = d.flags(folder);
        assert!(!flags.is_empty());
        assert!(
            flags.iter().all(|f| !f.contains("\\Seen")),
            "{folder} flags changed: {flags:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_idle_sees_new_mail_within_seconds() {
    let d = Dovecot::start();
    d.append("INBOX", &message("first", "first"), t0());
    let r = start(
        settings(d.imap_port, ImapSecurity::Starttls, Some(d.cert_path())),
        Vec::new(),
    );
    r.wait_until("initial sync", |r| r.initial_syncs() == 1)
        .await;
    assert_eq!(r.received().len(), 1);
    // Let the folder tasks enter IDLE.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let appended = std::time::Instant::now();
    d.append("INBOX", &message("second", "second"), t0());
    r.wait_until("IDLE delivery", |r| r.received().len() == 2)
        .await;
    assert!(appended.elapsed() < Duration::from_secs(10));
    d.lmtp_deliver(&message("third", "third"));
    r.wait_until("LMTP delivery", |r| r.received().len() == 3)
        .await;
    let received = r.received();
    let third = received
        .iter()
        .find(|m| m.message_id == mid("third"))
        .unwrap();
    // Delivered now, by the server's clock.
    assert!((Utc::now() - third.delivered_at).num_seconds().abs() < 60);
    assert_eq!(cursor_uid(&r, "INBOX"), 3);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_is_a_tls_error() {
    let d = Dovecot::start();
    d.append("INBOX", &message("m", "m"), t0());
    let r = start(settings(d.imaps_port, ImapSecurity::Tls, None), Vec::new());
    r.wait_until("a tls error", |r| r.errors("tls") >= 1).await;
    assert!(r.has(HealthEvent::Up(false)));
    assert!(r.observations().is_empty());
    r.stop().await;

    // The same server by IP address, trusting its certificate: works.
    let mut s = imaps(&d);
    s.host = "127.0.0.1".into();
    let r = start(s, Vec::new());
    r.wait_until("initial sync", |r| r.initial_syncs() == 1)
        .await;
    assert_eq!(r.received().len(), 1);
    assert_eq!(r.errors("tls"), 0);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_during_idle_reconnects_and_catches_up() {
    let mut d = Dovecot::start();
    d.append("INBOX", &message("a", "a"), t0());
    d.append("INBOX", &message("b", "b"), t0());
    let r = start(imaps(&d), Vec::new());
    r.wait_until("initial sync", |r| r.initial_syncs() == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    d.stop();
    // Delivered while the server is down.
    d.maildir_drop(
        "INBOX",
        "1700000000.down.localhost",
        &message("c", "c"),
        std::time::SystemTime::now(),
    );
    r.wait_until("the outage to be noticed", |r| {
        r.has(HealthEvent::Up(false))
    })
    .await;
    d.launch();
    d.append("INBOX", &message("d", "d"), t0());
    r.wait_until("catch-up", |r| r.received().len() >= 4).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let ids = r.message_ids();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len(), "observed twice: {ids:?}");
    for id in ["a", "b", "c", "d"] {
        assert!(ids.contains(&mid(id)), "{id} missing from {ids:?}");
    }
    assert_eq!(r.initial_syncs(), 1);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_from_committed_cursors() {
    let d = Dovecot::start();
    for i in 0..5 {
        d.append("INBOX", &message(&format!("old{i}"), "old"), t0());
    }
    d.append("Sent", &message("oldsent", "old"), t0());
    let r = start(imaps(&d), Vec::new());
    r.wait_until("initial sync", |r| r.initial_syncs() == 1)
        .await;
    let r = r.stop().await;
    let cursors: Vec<(String, serde_json::Value)> = r.cursors().into_iter().collect();
    assert_eq!(cursors.len(), 2);

    d.append("INBOX", &message("new0", "new"), t0());
    d.append("INBOX", &message("new1", "new"), t0());
    d.append("Sent", &message("newsent", "new"), t0());
    let r = start(imaps(&d), cursors);
    r.wait_until("initial sync", |r| r.initial_syncs() == 1)
        .await;
    let mut ids = r.message_ids();
    ids.sort();
    assert_eq!(ids, vec![mid("new0"), mid("new1"), mid("newsent")]);
    assert_eq!(cursor_uid(&r, "INBOX"), 7);
    r.stop().await;
}

/// After a UIDVALIDITY reset the folder is read again: the old messages are observed a second
/// time (the tracker drops them as duplicates by Message-ID and digest) and new ones once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uidvalidity_change_resyncs_the_folder() {
    let d = Dovecot::start();
    for i in 0..3 {
        d.append("INBOX", &message(&format!("v{i}"), "v"), t0());
    }
    let r = start(imaps(&d), Vec::new());
    r.wait_until("initial sync", |r| r.initial_syncs() == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    d.set_uidvalidity("INBOX", 4242);
    d.append("INBOX", &message("after", "after"), t0());
    r.wait_until("the new message", |r| {
        r.message_ids().contains(&mid("after"))
    })
    .await;
    r.wait_until("the new UIDVALIDITY in the cursor", |r| {
        r.cursors()["INBOX"]["uidvalidity"] == 4242
    })
    .await;
    let ids = r.message_ids();
    assert_eq!(ids.iter().filter(|i| **i == mid("after")).count(), 1);
    // Re-emitted once by the resync, by design.
    for i in 0..3 {
        assert_eq!(
            ids.iter().filter(|m| **m == mid(&format!("v{i}"))).count(),
            2
        );
    }
    assert_eq!(cursor_uid(&r, "INBOX"), 4);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_times_out_and_is_retried() {
    init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold every connection, never saying a word.
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            conns.push(s);
        }
    });
    let mut runs = Vec::new();
    for security in [ImapSecurity::Plain, ImapSecurity::Tls] {
        let mut s = settings(port, security, None);
        s.host = "127.0.0.1".into();
        s.timeout = Duration::from_secs(1);
        runs.push(start(s, Vec::new()));
    }
    for r in &runs {
        r.wait_until("two timeouts", |r| r.errors("timeout") >= 2)
            .await;
        assert!(r.has(HealthEvent::Up(false)));
        assert!(!r.has(HealthEvent::Up(true)));
    }
    for r in runs {
        r.stop().await;
    }
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_auth_error_retried_with_backoff() {
    let d = Dovecot::start();
    let mut s = imaps(&d);
    s.auth = slawatch::config::ImapAuth::Password(Secret::new("wrong"));
    let r = start(s, Vec::new());
    let began = std::time::Instant::now();
    r.wait_until("two auth errors", |r| r.errors("auth") >= 2)
        .await;
    // 1 s then 2 s of backoff (±20 %): retried, not hammered.
    assert!(began.elapsed() >= Duration::from_millis(700));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(r.errors("auth") <= 3, "{:?}", r.health.0.lock().unwrap());
    assert!(r.has(HealthEvent::Up(false)));
    assert!(!r.has(HealthEvent::Up(true)));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_message_fetches_only_a_prefix() {
    let d = Dovecot::start();
    let mut raw = String::from(
        "From: customer@example.org\r\nTo: support@desk.example\r\nSubject: big\r\n\
         Message-ID: <big@example.org>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain\r\n\r\nPlease see the attached file.\r\n--b\r\n\
         Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    );
    let line = format!("{}\r\n", "QUJD".repeat(19));
    while raw.len() < 5_300_000 {
        raw.push_str(&line);
    }
    raw.push_str("--b--\r\n");
    d.append("INBOX", raw.as_bytes(), t0());
    let size: u64 = d
        .doveadm(&["fetch", "-u", USER, "size.physical", "mailbox", "INBOX"])
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap();
    assert!(size > 5_000_000);

    let mut s = imaps(&d);
    s.body_prefix_bytes = 2048;
    let sent_before = d.imap_bytes_sent();
    let r = start(s, Vec::new());
    r.wait_until("initial sync", |r| r.initial_syncs() == 1)
        .await;
    let received = r.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].message_id, mid("big"));
    assert!(received[0].text_sample.len() <= 2048);
    r.stop().await;

    // Dovecot logs the bytes it sent when each session ends.
    let mut sent = 0;
    for _ in 0..40 {
        sent = d.imap_bytes_sent() - sent_before;
        if d.log().matches("Disconnected").count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sent > 0, "no byte counts in the log:\n{}", d.log());
    assert!(
        sent < 100_000,
        "{sent} bytes sent for a {size}-byte message"
    );
}

/// The outcome of every inquiry when `batches` are read in `order`, the scheduler firing every
/// breach due when each batch is read (so breaches fire before the evidence that answers them).
fn outcomes_read_in(batches: &[Vec<Observation>], order: &[usize]) -> Vec<String> {
    use slawatch_core::desk::DeskSettings;
    use slawatch_core::tracker::observation::Stage;
    use slawatch_core::tracker::policy::{Policy, PolicySet};
    use slawatch_core::tracker::{InquiryState, Tracker, TrackerRules};
    let mut tracker = Tracker::new(Arc::new(TrackerRules {
        desk: DeskSettings::with_address("support@desk.example"),
        policies: PolicySet::single(Policy::default()),
    }));
    // Read one batch every 20 minutes of server time, from the first message on.
    let mut now = t0();
    for &i in order {
        now += chrono::Duration::minutes(20);
        let due: Vec<_> = tracker
            .open()
            .filter(|i| i.breached_at.is_none() && i.deadline_at.is_some_and(|d| d <= now))
            .map(|i| i.id.clone())
            .collect();
        for inquiry_id in due {
            let breach = Observation::DeadlineReached {
                inquiry_id,
                stage: Stage::Breach,
            };
            tracker.observe(&breach, now).expect("deadline");
        }
        for observation in &batches[i] {
            tracker
                .observe(observation, now)
                .expect("mail is never refused");
        }
    }
    let mut out: Vec<String> = tracker
        .newest_first()
        .filter(|i| i.state != InquiryState::Merged)
        .map(|i| {
            let mut messages: Vec<String> = std::iter::once(i.external_id.to_string())
                .chain(i.follow_up_messages.iter().map(|f| f.external_id.clone()))
                .collect();
            messages.sort();
            format!(
                "{messages:?} {} {} received {} responded {:?}",
                i.state.as_str(),
                i.sla.as_str(),
                i.received_at,
                i.responded_at
            )
        })
        .collect();
    out.sort();
    out
}

/// DESIGN.md "Evidence order", against a real Dovecot: the messages it hands over from INBOX
/// and Sent, read Sent first, INBOX first, or in seeded interleavings of the two folders'
/// batches, give the same inquiries and outcomes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_mailbox_gives_the_same_outcomes_whatever_the_folder_order() {
    let d = Dovecot::start();
    let customer = "Customer <customer@example.org>";
    let desk = "support@desk.example";
    for k in 0..6i64 {
        let start = t0() + chrono::Duration::minutes(30 * k);
        let first = format!("<first{k}@example.org>");
        let subject = format!("order {k}");
        d.append(
            "INBOX",
            &conversation_mail(customer, desk, &first, &subject, &[]),
            start,
        );
        if k % 2 == 0 {
            // A second message before any reply; one of them without a Message-ID.
            let id = if k == 2 {
                String::new()
            } else {
                format!("<follow{k}@example.org>")
            };
            let raw =
                conversation_mail(customer, desk, &id, &subject, std::slice::from_ref(&first));
            d.append("INBOX", &raw, start + chrono::Duration::minutes(3));
        }
        // The desk answers in time, after the warning, or after the deadline.
        let reply_at = start + chrono::Duration::minutes([5, 12, 25][(k % 3) as usize]);
        let reply = format!("<reply{k}@desk.example>");
        let raw = conversation_mail(
            desk,
            "customer@example.org",
            &reply,
            &subject,
            std::slice::from_ref(&first),
        );
        d.append("Sent", &raw, reply_at);
        if k % 2 == 1 {
            // The customer writes again after the reply: the next clock.
            let chain = [first.clone(), reply.clone()];
            let raw = conversation_mail(
                customer,
                desk,
                &format!("<next{k}@example.org>"),
                &subject,
                &chain,
            );
            d.append("INBOX", &raw, reply_at + chrono::Duration::minutes(2));
        }
    }
    let mut s = imaps(&d);
    s.sent_folders = vec!["Sent".into()];
    let r = start(s, Vec::new());
    r.wait_until("initial sync", |r| r.initial_syncs() == 1)
        .await;
    let r = r.stop().await;

    // The folders' batches as the source handed them over, one message a batch so that the
    // interleavings below split the folders finely.
    let batches: Vec<Vec<Observation>> = r.observations().into_iter().map(|o| vec![o]).collect();
    let folder_of = |b: &Vec<Observation>| match &b[0] {
        Observation::MessageReceived(m) | Observation::MessageSent(m) => m.folder.clone(),
        _ => String::new(),
    };
    let inbox: Vec<usize> = (0..batches.len())
        .filter(|&i| folder_of(&batches[i]) == "INBOX")
        .collect();
    let sent: Vec<usize> = (0..batches.len())
        .filter(|&i| folder_of(&batches[i]) == "Sent")
        .collect();
    assert_eq!(
        (inbox.len(), sent.len()),
        (12, 6),
        "the mailbox as appended"
    );

    let sent_first: Vec<usize> = sent.iter().chain(&inbox).copied().collect();
    let inbox_first: Vec<usize> = inbox.iter().chain(&sent).copied().collect();
    let expected = outcomes_read_in(&batches, &inbox_first);
    assert_eq!(
        outcomes_read_in(&batches, &sent_first),
        expected,
        "Sent first"
    );
    // Seeded interleavings: each folder keeps its own order (one connection each).
    for seed in 1..=20u64 {
        let mut state = seed;
        let (mut a, mut b) = (inbox.iter().peekable(), sent.iter().peekable());
        let mut order = Vec::new();
        while a.peek().is_some() || b.peek().is_some() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let take_inbox = b.peek().is_none() || (a.peek().is_some() && state >> 63 == 0);
            order.push(*if take_inbox { a.next() } else { b.next() }.unwrap());
        }
        assert_eq!(
            outcomes_read_in(&batches, &order),
            expected,
            "interleaving {seed}"
        );
    }
    // The reference itself is right: 6 first inquiries and 3 next ones, follow-ups attached.
    assert_eq!(expected.len(), 9, "{expected:#?}");
}
