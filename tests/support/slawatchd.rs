//! The real `slawatch` binary and the monitoring tools around it, for end-to-end tests.
//!
//! [`Slawatch`] runs the daemon built by Cargo with a temp configuration (SQLite ledger in its
//! temp dir, HTTP on a free loopback port) and a Maildir source (`inbox`) the test fills, or
//! sources given as TOML. [`require`] turns a missing external tool (promtool, prometheus,
//! alertmanager, chromium) into a loud failure with the package to install. [`http_get`] is a
//! tiny HTTP/1.1 client (std only) for the daemon, Prometheus and Alertmanager APIs.
//!
//! Everything here is synchronous std code; processes are killed and temp dirs deleted on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Panics with a clear message when `tool` cannot be run (`--version`).
pub fn require(tool: &str, package: &str) -> PathBuf {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is required by this test but cannot be run; install it \
         (Debian: apt-get install -y --no-install-recommends {package}, or run scripts/test.sh)"
    );
    PathBuf::from(tool)
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// `GET http://127.0.0.1:{port}{path}` → (status, body). `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    Some((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    ))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Percent-encodes a query parameter value.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Polls `f` every 250 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A child process killed on drop.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `program args…` with output to `log`.
pub fn spawn(program: &Path, args: &[String], log: &Path, env: &[(&str, &str)]) -> Running {
    let out = std::fs::File::create(log).expect("create log file");
    let err = out.try_clone().expect("clone log file");
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(out).stderr(err).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Running(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display())),
    )
}

/// A running slawatch daemon.
pub struct Slawatch {
    process: Option<Running>,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

/// Options for [`Slawatch::start`].
pub struct Options<'a> {
    /// The `[policy]` table's body.
    pub policy: &'a str,
    /// Extra `[sources.*]` tables; a Maildir source `inbox` at [`Slawatch::maildir`] is always
    /// there.
    pub sources: &'a str,
    pub env: &'a [(&'a str, &'a str)],
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            policy: "target = \"15m\"\nwarn = [\"10m\"]\nrenotify_every = \"15m\"",
            sources: "",
            env: &[],
        }
    }
}

impl Slawatch {
    /// Writes the configuration and starts the daemon; returns once `/healthz` answers.
    pub fn start(options: Options<'_>) -> Slawatch {
        let dir = tempfile::Builder::new()
            .prefix("slawatch-e2e-")
            .tempdir()
            .expect("temp dir");
        let maildir = dir.path().join("Maildir");
        for sub in ["cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).expect("create Maildir");
        }
        let port = free_port();
        let config = format!(
            r#"[store]
url = "sqlite://{db}"

[http]
bind = "127.0.0.1:{port}"

[desk]
support_addresses = ["support@desk.example"]
internal_domains = ["desk.example"]
default_language = "en"
time_zone = "UTC"

[policy]
{policy}

[sources.inbox]
type = "maildir"
path = "{maildir}"
inbox_folders = ["INBOX"]
sent_folders = ["Sent"]
scan_interval = "1s"

{sources}
"#,
            db = dir.path().join("ledger.db").display(),
            maildir = maildir.display(),
            policy = options.policy,
            sources = options.sources,
        );
        let config_path = dir.path().join("slawatch.toml");
        std::fs::write(&config_path, config).expect("write config");
        let process = spawn(
            Path::new(env!("CARGO_BIN_EXE_slawatch")),
            &[
                "--config".into(),
                config_path.display().to_string(),
                "run".into(),
            ],
            &dir.path().join("slawatch.log"),
            options.env,
        );
        let mut s = Slawatch {
            process: Some(process),
            dir,
            port,
        };
        let started = Instant::now();
        while http_get(port, "/healthz").is_none_or(|(code, _)| code != 200) {
            if let Some(p) = s.process.as_mut()
                && let Ok(Some(status)) = p.0.try_wait()
            {
                panic!("slawatch exited with {status}:\n{}", s.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "slawatch did not answer /healthz within 30 s:\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    /// The daemon's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.0.id())
    }

    /// The Maildir of the `inbox` source.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("Maildir")
    }

    /// Delivers a message to the `inbox` Maildir as if received at `received` (Unix seconds).
    pub fn deliver(&self, received: i64, n: u32, raw: &str) {
        let name = format!("{received}.M{n}P{n}.e2e");
        let tmp = self.maildir().join("tmp").join(&name);
        std::fs::write(&tmp, raw).expect("write message");
        std::fs::rename(&tmp, self.maildir().join("new").join(&name)).expect("deliver message");
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.port, path).unwrap_or_else(|| panic!("GET {path}: no answer\n{}", self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slawatch.log")).unwrap_or_default()
    }

    /// Stops the daemon (SIGKILL: the tests only need it gone).
    pub fn stop(&mut self) {
        self.process = None;
    }
}

impl Drop for Slawatch {
    /// A failed test shows the daemon's log (its temp dir goes away).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("slawatch log:\n{}", self.log());
        }
    }
}

/// A customer message.
pub fn message(id: &str, from: &str, subject: &str, language: &str, body: &str) -> String {
    format!(
        "From: {from}\r\nTo: support@desk.example\r\nSubject: {subject}\r\n\
         Message-ID: <{id}@customer.example>\r\nContent-Language: {language}\r\n\
         Content-Type: text/plain; charset=utf-8\r\nMIME-Version: 1.0\r\n\r\n{body}\r\n"
    )
}
