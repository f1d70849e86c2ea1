//! The daemon under a service manager (`Type=notify`): the real binary started with
//! `NOTIFY_SOCKET` and `WATCHDOG_USEC`, the manager's end played by a real Unix datagram socket
//! that the test binds (systemd itself cannot be this test's service manager).

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use support::daemon::Daemon;
use support::slawatchd::{Options, Slawatch};

/// Notifications read until `done` holds for them; panics (with the daemon's log) after 30 s.
fn notifications_until(
    socket: &UnixDatagram,
    log: &dyn Fn() -> String,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout");
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !done(&seen) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "notifications so far: {seen:?}\nslawatch log:\n{}",
            log()
        );
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    seen
}

fn has(messages: &[String], line: &str) -> bool {
    messages
        .iter()
        .any(|m| m.lines().any(|l| l.starts_with(line)))
}

#[test]
fn tells_the_service_manager_ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify");
    let manager = UnixDatagram::bind(&path).expect("bind the notify socket");
    let path = path.display().to_string();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sample-maildir");
    let config = format!(
        "[store]\nurl = \"sqlite://{{dir}}/ledger.db\"\n[http]\nbind = \"127.0.0.1:{{port}}\"\n\
         [desk]\nsupport_addresses = [\"support@example.com\"]\n\
         [sources.sample]\ntype = \"maildir\"\npath = \"{}\"\nscan_interval = \"1s\"\n",
        sample.display()
    );
    // 400 ms: the daemon feeds every 200 ms, so a few feeds arrive within a second.
    let mut daemon = Daemon::configure(
        dir.path(),
        &config,
        &[("NOTIFY_SOCKET", &path), ("WATCHDOG_USEC", "400000")],
    );
    daemon.start();
    let log = || daemon.log();
    let seen = notifications_until(&manager, &log, |seen| {
        seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3
            && has(seen, "STATUS=first sync 1/1 sources")
    });
    let ready = seen
        .iter()
        .position(|m| m.lines().any(|l| l == "READY=1"))
        .unwrap_or_else(|| panic!("no READY=1 in {seen:?}"));
    assert!(
        seen[ready]
            .lines()
            .any(|l| l.starts_with("STATUS=first sync")),
        "READY=1 comes with a status line: {:?}",
        seen[ready]
    );
    let first_watchdog = seen.iter().position(|m| m.contains("WATCHDOG=1")).unwrap();
    assert!(
        first_watchdog >= ready,
        "the watchdog is fed after READY: {seen:?}"
    );
    let synced = seen
        .iter()
        .find(|m| m.contains("STATUS=first sync 1/1 sources"))
        .unwrap();
    assert!(
        synced.contains("sources up 1/1"),
        "the status line shows the source's health: {synced:?}"
    );
    assert!(daemon.stop(), "clean stop; log:\n{}", daemon.log());
    let log = || daemon.log();
    notifications_until(&manager, &log, |seen| has(seen, "STOPPING=1"));
}

#[test]
fn notifies_an_abstract_socket_without_a_watchdog() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("slawatch-test-notify-{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(&name).expect("name");
    let manager = UnixDatagram::bind_addr(&address).expect("bind the abstract notify socket");
    let target = format!("@{name}");
    let slawatch = Slawatch::start(Options {
        env: &[("NOTIFY_SOCKET", &target)],
        ..Options::default()
    });
    let log = || slawatch.log();
    let seen = notifications_until(&manager, &log, |seen| {
        has(seen, "READY=1") && seen.len() >= 2
    });
    assert!(
        !seen.iter().any(|m| m.contains("WATCHDOG=1")),
        "no WATCHDOG_USEC, no watchdog feeding: {seen:?}"
    );
}
