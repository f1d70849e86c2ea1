//! Start to READY: how long systemd waits for `Type=notify` readiness. The release binary is
//! started with `NOTIFY_SOCKET` pointing at a datagram socket this bench binds; the time runs
//! from the spawn to the arrival of `READY=1` (ledger opened, verified and replayed, engine
//! running, HTTP listening). Two configurations: the package's /etc/slawatch/slawatch.toml
//! (its placeholder Maildir does not exist: readiness never waits for a source) and the
//! repository's default one (the bundled sample Maildir), each with its ledger in a temp dir;
//! each first on an empty ledger, then restarted on the ledger the first run left.
//!
//! `cargo bench --bench service_ready`. Figure to reach: well under systemd's default 90 s start
//! timeout (the unit allows 5 min for a long ledger). Measured: a median of ~13 ms on an empty
//! ledger and ~9 ms on a restart, for both configurations.

#[path = "../tests/support/mod.rs"]
mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 10;

/// Starts the daemon on `config` and returns it with the time until READY=1 arrives on `socket`
/// (the process is spawned here: the test harness's start waits for HTTP, which would be timed
/// instead).
fn start_to_ready(config: &Path, socket: &UnixDatagram, notify: &str) -> (Child, Duration) {
    let mut buf = [0u8; 4096];
    // Leftovers of the previous run (STATUS, STOPPING).
    socket.set_nonblocking(true).unwrap();
    while socket.recv(&mut buf).is_ok() {}
    socket.set_nonblocking(false).unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_slawatch"))
        .arg("--config")
        .arg(config)
        .arg("run")
        .env("NOTIFY_SOCKET", notify)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start slawatch");
    loop {
        match socket.recv(&mut buf) {
            Ok(n)
                if String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .any(|l| l == "READY=1") =>
            {
                return (child, started.elapsed());
            }
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no READY=1 within 60 s: {e}");
            }
        }
    }
}

/// SIGTERM, then waits for a clean exit.
fn stop(mut child: Child) {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success(), "clean stop");
}

fn summary(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<42} median {:>6.1} ms  min {:>6.1} ms  max {:>6.1} ms  ({} runs)",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
        times.len()
    );
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sample = root.join("config/sample-maildir");
    let configs = [
        (
            "packaged /etc/slawatch/slawatch.toml",
            std::fs::read_to_string(root.join("packaging/slawatch.toml"))
                .unwrap()
                .replace("/var/lib/slawatch/", "{dir}/"),
        ),
        (
            "config/slawatch.toml (sample Maildir)",
            std::fs::read_to_string(root.join("config/slawatch.toml"))
                .unwrap()
                .replace("sqlite://data/slawatch.db", "sqlite://{dir}/slawatch.db")
                .replace(
                    "path = \"sample-maildir\"",
                    &format!("path = \"{}\"", sample.display()),
                ),
        ),
    ];
    for (label, config) in configs {
        let config = config.replace("127.0.0.1:9750", "127.0.0.1:{port}");
        let (mut first, mut restart) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let dir = tempfile::tempdir().unwrap();
            let notify = dir.path().join("notify");
            let socket = UnixDatagram::bind(&notify).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            let notify = notify.display().to_string();
            let path = dir.path().join("slawatch.toml");
            let text = config
                .replace("{dir}", &dir.path().display().to_string())
                .replace("{port}", &support::daemon::free_port().to_string());
            std::fs::write(&path, text).unwrap();
            for times in [&mut first, &mut restart] {
                let (child, elapsed) = start_to_ready(&path, &socket, &notify);
                times.push(elapsed);
                stop(child);
            }
        }
        summary(&format!("{label}, empty ledger"), first);
        summary(&format!("{label}, restart"), restart);
    }
}
