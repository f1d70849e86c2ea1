//! Wall-clock steps against the real binary, under libfaketime (Debian `faketime`): the
//! daemon's wall clock (`CLOCK_REALTIME`) jumps an hour forward, then two hours back (an hour
//! behind), while its monotonic clocks run on. Deadlines run on the monotonic clock, so the jump forward
//! breaches nothing early and the jump back delays nothing: each breach fires at its instant.
//! Each step is logged, counted (`slawatch_clock_steps_total`) and shown (`/readyz`,
//! `slawatch_clock_offset_seconds`). A missing libfaketime is an error, never a skip.

mod support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::daemon::Daemon;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn mailbox(dir: &Path, deadlines_in: &[u64]) -> u64 {
    let root = dir.join("maildir");
    for sub in ["tmp", "new", "cur", ".Sent/tmp", ".Sent/new", ".Sent/cur"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (i, d) in deadlines_in.iter().enumerate() {
        let received = now + d - 15 * 60;
        let raw = format!(
            "From: C{i} <c{i}@customer.test>\r\nTo: support@example.com\r\nSubject: step {i}\r\n\
             Message-ID: <step{i}@customer.test>\r\n\r\nHello {i}.\r\n"
        );
        std::fs::write(
            root.join("new").join(format!("{received}.M{i}P4.test")),
            raw,
        )
        .unwrap();
    }
    now
}

fn missed(d: &Daemon) -> usize {
    d.inquiries()
        .iter()
        .filter(|i| i["sla"] == "missed")
        .count()
}

#[test]
fn wall_clock_steps_breach_nothing_early_and_delay_nothing() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is required (apt-get install faketime)"
    );
    let dir = tempfile::tempdir().unwrap();
    let offset_file = dir.path().join("faketime");
    std::fs::write(&offset_file, "+0").unwrap();
    let config = r#"
[store]
url = "sqlite://{dir}/ledger.db"
[http]
bind = "127.0.0.1:{port}"
[desk]
support_addresses = ["support@example.com"]
[policy]
target = "15m"
warn = []
[sources.mail]
type = "maildir"
path = "{dir}/maildir"
scan_interval = "1s"
"#;
    let offset_path = offset_file.display().to_string();
    let mut daemon = Daemon::configure(
        dir.path(),
        config,
        &[
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", offset_path.as_str()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    // Three deadlines 25 to 27 s from now (whole seconds since the epoch).
    let base = mailbox(dir.path(), &[25, 26, 27]) as f64;
    daemon.start();
    daemon.wait_ready(Duration::from_secs(20));
    assert_eq!(daemon.inquiries().len(), 3);

    // An hour forward: on the wall clock every deadline has passed.
    std::fs::write(&offset_file, "+3600").unwrap();
    daemon.wait_for("the step counted", Duration::from_secs(10), |d| {
        d.metric("slawatch_clock_steps_total") == Some(1.0)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(missed(&daemon), 0, "breached early:\n{}", daemon.log());
    let offset = daemon.metric("slawatch_clock_offset_seconds").unwrap();
    assert!((offset - 3600.0).abs() < 2.0, "{offset}");
    let (_, ready) = daemon.get("/readyz");
    assert!(ready.contains("wall clock stepped: +3600"), "{ready}");
    assert!(daemon.log().contains("The wall clock stepped"));

    // Two hours back, an hour behind: on the wall clock no deadline is near.
    std::fs::write(&offset_file, "-3600").unwrap();
    daemon.wait_for("the second step counted", Duration::from_secs(10), |d| {
        d.metric("slawatch_clock_steps_total") == Some(2.0)
    });
    assert_eq!(missed(&daemon), 0);

    // Each breach fires at its deadline all the same.
    let unix_now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let mut fired: Vec<f64> = Vec::new();
    let limit = Instant::now() + Duration::from_secs(40);
    while fired.len() < 3 && Instant::now() < limit {
        let n = missed(&daemon);
        while fired.len() < n {
            // Seconds after its own deadline.
            fired.push(unix_now() - (base + 25.0 + fired.len() as f64));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("breaches seen {fired:.2?} s after their deadlines");
    assert_eq!(fired.len(), 3, "{}", daemon.log());
    assert!(
        fired.iter().all(|late| (0.0..2.0).contains(late)),
        "breaches early or late: {fired:?}"
    );
    assert!(daemon.stop());
}
