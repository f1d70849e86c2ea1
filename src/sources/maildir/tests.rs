//! Maildir source tests on a temporary Maildir with a recording engine sink.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::sources::Submission;

#[derive(Default)]
struct Health {
    log: Mutex<Vec<String>>,
}

impl SourceHealth for Health {
    fn set_up(&self, _source: &str, up: bool) {
        self.log.lock().unwrap().push(format!("up={up}"));
    }
    fn succeeded(&self, _source: &str, _at: DateTime<Utc>) {}
    fn error(&self, _source: &str, kind: &str) {
        self.log.lock().unwrap().push(format!("error={kind}"));
    }
}

fn message(id: &str, from: &str, subject: &str) -> String {
    format!(
        "From: {from}\r\nTo: support@example.com\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nHello, I need help.\r\n"
    )
}

fn maildir(root: &Path) {
    for d in ["new", "cur", "tmp", ".Sent/new", ".Sent/cur", ".Sent/tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
}

fn settings(root: &Path) -> MaildirSettings {
    MaildirSettings {
        path: root.to_path_buf(),
        inbox_folders: vec!["INBOX".into()],
        sent_folders: vec!["Sent".into()],
        scan_interval: Duration::from_millis(50),
    }
}

struct Harness {
    rx: mpsc::Receiver<Submission>,
    shutdown: CancellationToken,
    health: Arc<Health>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    fn start(settings: MaildirSettings, stored: HashMap<String, serde_json::Value>) -> Harness {
        let (tx, rx) = mpsc::channel(4);
        let shutdown = CancellationToken::new();
        let health = Arc::new(Health::default());
        let task = tokio::spawn(run(
            "maildir".into(),
            settings,
            stored,
            EngineSink::new(tx),
            health.clone(),
            shutdown.clone(),
        ));
        Harness {
            rx,
            shutdown,
            health,
            task,
        }
    }

    async fn next(&mut self) -> SourceBatch {
        let sub = tokio::time::timeout(Duration::from_secs(5), self.rx.recv())
            .await
            .expect("a batch in time")
            .expect("source alive");
        let _ = sub.committed.send(Ok(()));
        sub.batch
    }

    async fn next_non_empty(&mut self) -> SourceBatch {
        loop {
            let b = self.next().await;
            if !b.observations.is_empty() {
                return b;
            }
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        drop(self.rx);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

fn ids(batch: &SourceBatch) -> Vec<(String, &'static str)> {
    batch
        .observations
        .iter()
        .map(|o| match o {
            Observation::MessageReceived(m) => (m.message_id.clone(), "in"),
            Observation::MessageSent(m) => (m.message_id.clone(), "sent"),
            _ => (String::new(), "other"),
        })
        .collect()
}

#[test]
fn file_names() {
    assert_eq!(
        unique_name("1732456789.M1P2.host:2,S"),
        "1732456789.M1P2.host"
    );
    assert_eq!(
        delivery_time("1732456789.M1P2.host:2,S").map(|d| d.timestamp()),
        Some(1732456789)
    );
    assert_eq!(delivery_time("msg-without-epoch"), None);
    assert_eq!(folder_path(Path::new("/m"), "INBOX"), PathBuf::from("/m"));
    assert_eq!(
        folder_path(Path::new("/m"), "Sent"),
        PathBuf::from("/m/.Sent")
    );
}

#[test]
fn an_older_versions_folder_cursor_covers_what_it_handled() {
    let c = FolderCursor {
        high: 1_010_000,
        recent: vec![("n999".into(), 1_009_990)],
    };
    assert!(c.covers("n999", 1_009_990));
    assert!(c.covers("old", 1_000_000));
    assert!(!c.covers("late", c.high - 10));
}

#[tokio::test]
async fn initial_scan_sorted_then_only_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    maildir(root);
    std::fs::write(
        root.join("new/1795000100.M1P1.host"),
        message("b@x.example", "Bob <bob@x.example>", "Second"),
    )
    .unwrap();
    std::fs::write(
        root.join("cur/1795000000.M1P1.host:2,S"),
        message("a@x.example", "Ann <ann@x.example>", "First"),
    )
    .unwrap();
    std::fs::write(
        root.join(".Sent/cur/1795000200.M9P9.host:2,S"),
        "From: support@example.com\r\nTo: ann@x.example\r\nSubject: Re: First\r\nMessage-ID: <r@example.com>\r\nIn-Reply-To: <a@x.example>\r\n\r\nDone.\r\n",
    )
    .unwrap();

    let mut h = Harness::start(settings(root), HashMap::new());
    let first = h.next().await;
    assert!(first.initial_sync_done);
    assert_eq!(
        ids(&first),
        vec![
            ("<a@x.example>".to_string(), "in"),
            ("<b@x.example>".to_string(), "in"),
            ("<r@example.com>".to_string(), "sent"),
        ]
    );
    if let Observation::MessageReceived(m) = &first.observations[0] {
        assert_eq!(m.delivered_at.timestamp(), 1795000000);
        assert_eq!(m.folder, "INBOX");
        assert_eq!(m.source, "maildir");
    }
    let keys: Vec<&str> = first.cursors.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        vec![
            "INBOX\t1795000000.M1P1.host",
            "INBOX\t1795000100.M1P1.host",
            "Sent\t1795000200.M9P9.host"
        ]
    );

    // A flag change (new → cur) is not a new message; a new delivery is.
    std::fs::rename(
        root.join("new/1795000100.M1P1.host"),
        root.join("cur/1795000100.M1P1.host:2,S"),
    )
    .unwrap();
    std::fs::write(
        root.join("new/1795000300.M2P1.host"),
        message("c@x.example", "Cy <cy@x.example>", "Third"),
    )
    .unwrap();
    let next = h.next_non_empty().await;
    assert!(!next.initial_sync_done);
    assert_eq!(ids(&next), vec![("<c@x.example>".to_string(), "in")]);
    h.stop().await;
}

#[tokio::test]
async fn resumes_from_stored_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    maildir(root);
    std::fs::write(
        root.join("cur/1795000000.M1P1.host:2,S"),
        message("a@x.example", "Ann <ann@x.example>", "First"),
    )
    .unwrap();
    std::fs::write(
        root.join("cur/1795009000.M1P1.host:2,S"),
        message("b@x.example", "Bob <bob@x.example>", "Second"),
    )
    .unwrap();
    let stored = HashMap::from([(
        "INBOX".to_string(),
        serde_json::to_value(FolderCursor {
            high: 1795000000,
            recent: vec![("1795000000.M1P1.host".into(), 1795000000)],
        })
        .unwrap(),
    )]);
    let mut h = Harness::start(settings(root), stored);
    // What the older cursor covered is adopted without being read, and that cursor dropped.
    let adopted = h.next().await;
    assert!(adopted.observations.is_empty());
    let changes: Vec<(String, serde_json::Value)> = adopted
        .cursors
        .iter()
        .map(|c| (c.key.clone(), c.value.clone()))
        .collect();
    assert_eq!(
        changes,
        vec![
            ("INBOX\t1795000000.M1P1.host".to_string(), 1795000000.into()),
            ("INBOX".to_string(), serde_json::Value::Null),
        ]
    );
    let first = h.next_non_empty().await;
    assert!(first.initial_sync_done);
    assert_eq!(ids(&first), vec![("<b@x.example>".to_string(), "in")]);
    // The older cursor said "everything before 1795000000 is done"; a file moved in later under
    // an old name is read all the same.
    std::fs::write(
        root.join("cur/1700000000.M7P7.host:2,S"),
        message("old@x.example", "Old <old@x.example>", "Moved in"),
    )
    .unwrap();
    let moved = h.next_non_empty().await;
    assert_eq!(ids(&moved), vec![("<old@x.example>".to_string(), "in")]);
    h.stop().await;
}

#[tokio::test]
async fn missing_folder_reports_and_retries() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(
        root.join("new/1795000000.M1P1.host"),
        "From: x\r\nSubject: no message id\r\n\r\nbody\r\n",
    )
    .unwrap();
    let mut h = Harness::start(settings(root), HashMap::new());
    // The inbox is delivered even though Sent is missing, without initial_sync_done.
    let first = h.next().await;
    assert!(!first.initial_sync_done);
    assert_eq!(first.observations.len(), 1);
    {
        let log = h.health.log.lock().unwrap();
        assert!(log.contains(&"up=false".to_string()));
        assert!(log.contains(&"error=io".to_string()));
        assert!(log.contains(&"error=missing_message_id".to_string()));
        assert!(log.contains(&"error=missing_from".to_string()));
    }
    // Once the folder appears, the first full scan completes the initial sync.
    for d in [".Sent/new", ".Sent/cur"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    loop {
        let b = h.next().await;
        if b.initial_sync_done {
            assert!(b.observations.is_empty());
            break;
        }
    }
    assert!(
        h.health
            .log
            .lock()
            .unwrap()
            .contains(&"up=true".to_string())
    );
    h.stop().await;
}

#[tokio::test]
async fn large_file_is_read_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    maildir(root);
    let mut raw = message("big@x.example", "Ann <ann@x.example>", "Big").into_bytes();
    raw.extend(std::iter::repeat_n(b'A', 5 * 1024 * 1024));
    std::fs::write(root.join("new/1795000000.M1P1.host"), &raw).unwrap();
    let (bytes, complete) = read_message(&root.join("new/1795000000.M1P1.host")).unwrap();
    assert!(!complete);
    assert!(bytes.len() as u64 <= BODY_PREFIX_BYTES + 1024);
    let mut h = Harness::start(settings(root), HashMap::new());
    let first = h.next().await;
    assert_eq!(ids(&first), vec![("<big@x.example>".to_string(), "in")]);
    h.stop().await;
}

/// The bundled sample mailbox parses and classifies as its README says.
#[test]
fn sample_mailbox_matches_its_readme() {
    use slawatch_core::domain::Language;
    use slawatch_core::tracker::classify::{OutboundKind, classify_inbound, classify_outbound};
    use slawatch_core::tracker::event::ExclusionReason as R;
    use slawatch_core::tracker::language::detect_language;

    let desk = slawatch_core::desk::DeskSettings {
        support_addresses: vec![
            "support@example.com".into(),
            "soporte@example.com".into(),
            "daam@example.com".into(),
        ],
        internal_domains: vec!["example.com".into()],
        ignore_senders: vec![],
        ignore_subjects: vec![],
        auto_ack_subjects: vec!["Auto:".into()],
        default_language: Language::En,
        time_zone: chrono_tz::UTC,
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sample-maildir");
    // Listed "at the end of time": the fixture's delivery times are kept as they are.
    let Scan { found, errors, .. } = scan(
        &settings(&root),
        &mut Known::default(),
        DateTime::<Utc>::MAX_UTC,
    );
    assert_eq!(errors, 0);
    let mut inbound = Vec::new();
    let mut outbound = Vec::new();
    for f in &found {
        let (bytes, complete) = read_message(&f.path).unwrap();
        assert!(complete);
        let env = Envelope {
            source: "sample".into(),
            folder: f.folder.clone(),
            delivered_at: f.delivered_at,
            seen_at: f.delivered_at,
        };
        let m = mail::parse_complete_message(&bytes, &env);
        let expected_problems: &[_] = if m.message_id_synthetic {
            &[slawatch_core::tracker::observation::ParseProblem::MissingMessageId]
        } else {
            &[]
        };
        assert_eq!(m.problems, expected_problems, "{}", m.subject);
        match f.role {
            Role::Inbox => {
                let excl = classify_inbound(&m, &desk).map(|e| e.reason);
                let lang =
                    detect_language(m.content_language.as_deref(), &m.text_sample, Language::En).0;
                inbound.push((m.delivered_at.format("%d %H:%M").to_string(), excl, lang));
            }
            Role::Sent => outbound.push((
                m.delivered_at.format("%d %H:%M").to_string(),
                classify_outbound(&m, &desk),
                m.in_reply_to.is_empty(),
            )),
        }
    }
    let s = |x: &str| x.to_string();
    use Language::{Ar, En, Es};
    assert_eq!(
        inbound,
        vec![
            (s("21 09:12"), None, En),
            (s("21 11:40"), None, Es),
            (s("21 14:05"), None, Ar),
            (s("22 08:30"), None, En),
            (s("22 10:02"), None, Es),
            (s("22 10:07"), None, Es),
            (s("22 15:20"), None, En),
            (s("22 15:50"), None, En),
            (s("22 16:02"), Some(R::AutoSubmitted), En),
            (s("22 17:45"), Some(R::Bounce), En),
            (s("23 06:00"), Some(R::MailingList), En),
            (s("23 08:15"), Some(R::InternalSender), En),
            (s("23 09:03"), None, En),
            (s("23 11:20"), None, En),
            (s("23 13:45"), None, Ar),
            (s("23 19:10"), None, Es),
            (s("23 22:40"), None, En),
        ]
    );
    use OutboundKind::{AutoAcknowledgement, InternalForward, Reply};
    assert_eq!(
        outbound,
        vec![
            (s("21 09:20"), Reply, false),
            (s("21 11:52"), Reply, false),
            (s("21 14:25"), InternalForward, true),
            (s("21 14:45"), Reply, false),
            (s("22 08:31"), AutoAcknowledgement, false),
            (s("22 10:15"), Reply, false),
            (s("22 15:30"), Reply, false),
            (s("22 15:58"), Reply, false),
            (s("23 09:09"), Reply, false),
            (s("23 11:29"), Reply, true),
            (s("23 13:52"), Reply, false),
        ]
    );
}

#[test]
fn a_message_renamed_after_the_scan_is_found_under_its_new_name() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let unique = "1795252805.M2P1002.mail.example.com";
    // Listed in new/ by the scan, then moved to cur/ with flags by a mail client.
    let listed = dir.path().join("new").join(unique);
    let moved = dir.path().join("cur").join(format!("{unique}:2,S"));
    std::fs::write(&moved, b"Subject: x\r\n\r\nbody\r\n").unwrap();
    assert_eq!(super::relocate(&listed, unique), Some(moved));
    assert_eq!(super::relocate(&listed, "1795252805.M9P9.other"), None);
}

/// The cursor updates of a batch, as `(key, value)`.
fn changes(batch: &SourceBatch) -> Vec<(String, serde_json::Value)> {
    batch
        .cursors
        .iter()
        .map(|c| (c.key.clone(), c.value.clone()))
        .collect()
}

fn received_at(batch: &SourceBatch, id: &str) -> DateTime<Utc> {
    batch
        .observations
        .iter()
        .find_map(|o| match o {
            Observation::MessageReceived(m) if m.message_id == format!("<{id}>") => {
                Some(m.delivered_at)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{id} not in the batch"))
}

#[tokio::test]
async fn a_file_named_in_the_future_is_clocked_when_first_seen_and_blinds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    maildir(root);
    let now = Utc::now().timestamp();
    let a_year_ahead = now + 365 * 24 * 3600;
    // A mail host with a clock a year ahead delivered this one.
    std::fs::write(
        root.join(format!("new/{a_year_ahead}.M1P1.wrongclock")),
        message("future@x.example", "F <f@x.example>", "From the future"),
    )
    .unwrap();
    let mut h = Harness::start(settings(root), HashMap::new());
    let first = h.next_non_empty().await;
    let at = received_at(&first, "future@x.example");
    assert!(
        (at - Utc::now()).num_seconds().abs() < 5,
        "clocked at {at}, not when it was first seen"
    );
    // The cursor holds the clamped instant, and the skew is counted.
    assert_eq!(
        changes(&first),
        vec![(
            format!("INBOX\t{a_year_ahead}.M1P1.wrongclock"),
            at.timestamp().into()
        )]
    );
    assert!(
        h.health
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l == "error=delivery_time_clamped")
    );
    // Mail delivered after it, by a host with the right clock, is still read.
    std::fs::write(
        root.join(format!("new/{now}.M2P1.goodclock")),
        message("now@x.example", "N <n@x.example>", "Today"),
    )
    .unwrap();
    let next = h.next_non_empty().await;
    assert_eq!(ids(&next), vec![("<now@x.example>".to_string(), "in")]);
    assert_eq!(received_at(&next, "now@x.example").timestamp(), now);
    h.stop().await;
}

#[tokio::test]
async fn late_named_and_moved_in_files_are_read_and_a_removed_file_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    maildir(root);
    std::fs::create_dir_all(root.join(".Archive/cur")).unwrap();
    let now = Utc::now().timestamp();
    std::fs::write(
        root.join(format!("new/{now}.M1P1.host")),
        message("first@x.example", "A <a@x.example>", "First"),
    )
    .unwrap();
    let mut h = Harness::start(settings(root), HashMap::new());
    let first = h.next_non_empty().await;
    assert_eq!(ids(&first), vec![("<first@x.example>".to_string(), "in")]);
    // A delivery that took long finishes now, named with when it started, an hour ago.
    let an_hour_ago = now - 3600;
    std::fs::write(
        root.join(format!("new/{an_hour_ago}.M2P1.slowfilter")),
        message("late@x.example", "L <l@x.example>", "Late"),
    )
    .unwrap();
    let late = h.next_non_empty().await;
    assert_eq!(ids(&late), vec![("<late@x.example>".to_string(), "in")]);
    assert_eq!(
        received_at(&late, "late@x.example").timestamp(),
        an_hour_ago
    );
    // A message filed elsewhere last week is moved into the inbox under its old name.
    let last_week = now - 7 * 24 * 3600;
    let archived = root.join(format!(".Archive/cur/{last_week}.M3P1.host:2,S"));
    std::fs::write(
        &archived,
        message("moved@x.example", "M <m@x.example>", "Moved"),
    )
    .unwrap();
    std::fs::rename(
        &archived,
        root.join(format!("cur/{last_week}.M3P1.host:2,S")),
    )
    .unwrap();
    let moved = h.next_non_empty().await;
    assert_eq!(ids(&moved), vec![("<moved@x.example>".to_string(), "in")]);
    // Deleted from the folder: its cursor row goes, so the cursor never outgrows the folder.
    std::fs::remove_file(root.join(format!("new/{now}.M1P1.host"))).unwrap();
    let forgotten = loop {
        let b = h.next().await;
        if !b.cursors.is_empty() {
            break b;
        }
    };
    assert!(forgotten.observations.is_empty());
    assert_eq!(
        changes(&forgotten),
        vec![(format!("INBOX\t{now}.M1P1.host"), serde_json::Value::Null)]
    );
    h.stop().await;
}

#[tokio::test]
async fn a_restart_reads_nothing_it_handled_and_everything_it_did_not() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    maildir(root);
    let now = Utc::now().timestamp();
    for (i, id) in ["a", "b"].iter().enumerate() {
        std::fs::write(
            root.join(format!("cur/{}.M{i}P1.host:2,S", now - 100 + i as i64)),
            message(&format!("{id}@x.example"), "A <a@x.example>", id),
        )
        .unwrap();
    }
    // Only `a` was handled before the restart (by name; `b` is the newer file, but that is
    // not why it is read).
    let stored = HashMap::from([(
        format!("INBOX\t{}.M0P1.host", now - 100),
        serde_json::Value::from(now - 100),
    )]);
    let mut h = Harness::start(settings(root), stored);
    let first = h.next_non_empty().await;
    assert!(first.initial_sync_done);
    assert_eq!(ids(&first), vec![("<b@x.example>".to_string(), "in")]);
    h.stop().await;
}
