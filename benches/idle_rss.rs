//! Resident memory of an idle daemon: the release binary on the bundled configuration (sample
//! Maildir, SQLite ledger in a temp dir), measured after its first sync and a few idle seconds.
//!
//! `cargo bench --bench idle_rss`. Figure to reach: ≤ 40 MB.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::daemon::Daemon;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let bundled = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let config = std::fs::read_to_string(bundled.join("slawatch.toml"))
        .unwrap()
        .replace("sqlite://data/slawatch.db", "sqlite://{dir}/ledger.db")
        .replace("127.0.0.1:9750", "127.0.0.1:{port}")
        .replace(
            "path = \"sample-maildir\"",
            &format!("path = \"{}\"", bundled.join("sample-maildir").display()),
        );
    let mut daemon = Daemon::configure(dir.path(), &config, &[]);
    daemon.start();
    daemon.wait_ready(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(5));
    let pid = daemon.pid().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for field in ["VmRSS:", "VmHWM:", "Threads:"] {
        if let Some(line) = status.lines().find(|l| l.starts_with(field)) {
            println!("idle daemon {line}");
        }
    }
    assert!(daemon.stop());
}
