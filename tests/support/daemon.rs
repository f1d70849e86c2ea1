//! The real `slawatch` binary as a child process, for end-to-end tests: a temp config, a ledger
//! in a temp dir, HTTP on a free loopback port, plain HTTP/1.1 requests over std sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub dir: PathBuf,
    pub addr: SocketAddr,
    config: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
    runs: u32,
    /// A command prefix the daemon and its CLI run under (e.g. `nsenter …`); empty by default.
    wrapper: Vec<String>,
    /// The ledger file [`Daemon::sql`] reads: `dir/ledger.db` unless set.
    ledger: PathBuf,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    /// Writes `config` (TOML; `{dir}` and `{port}` are substituted) into `dir` without starting.
    pub fn configure(dir: &Path, config: &str, env: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        let text = config
            .replace("{dir}", &dir.display().to_string())
            .replace("{port}", &port.to_string());
        let path = dir.join("slawatch.toml");
        std::fs::write(&path, text).unwrap();
        Daemon {
            dir: dir.to_path_buf(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            config: path,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            runs: 0,
            wrapper: Vec::new(),
            ledger: dir.join("ledger.db"),
        }
    }

    /// Runs the daemon, its CLI and [`Daemon::sql`]'s `sqlite3` under `prefix` (a program and
    /// its arguments, the command line appended), `sqlite3` on the ledger at `ledger`.
    pub fn wrapped(mut self, prefix: Vec<String>, ledger: PathBuf) -> Daemon {
        self.wrapper = prefix;
        self.ledger = ledger;
        self
    }

    /// `program` run under the wrapper, if any.
    fn command_for(&self, program: &str) -> Command {
        match self.wrapper.split_first() {
            None => Command::new(program),
            Some((wrapper, args)) => {
                let mut c = Command::new(wrapper);
                c.args(args).arg(program);
                c
            }
        }
    }

    /// The daemon's command.
    fn command(&self) -> Command {
        self.command_for(env!("CARGO_BIN_EXE_slawatch"))
    }

    pub fn log_path(&self, run: u32) -> PathBuf {
        self.dir.join(format!("daemon-{run}.log"))
    }

    /// The log of the latest run.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.runs)).unwrap_or_default()
    }

    pub fn start(&mut self) {
        self.start_with(&[]);
    }

    /// [`Daemon::start`] with extra `run` arguments.
    pub fn start_with(&mut self, args: &[&str]) {
        self.launch(args, Duration::from_secs(30));
    }

    /// [`Daemon::start`] waiting up to `within` for HTTP: the start-up verification and replay
    /// of a ledger of millions of rows take minutes in a debug build.
    pub fn start_within(&mut self, within: Duration) {
        self.launch(&[], within);
    }

    fn launch(&mut self, args: &[&str], within: Duration) {
        assert!(self.child.is_none(), "already running");
        self.runs += 1;
        let log = std::fs::File::create(self.log_path(self.runs)).unwrap();
        let child = self
            .command()
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .args(args)
            .envs(self.env.iter().cloned())
            .env("RUST_LOG", "info,sqlx=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start slawatch");
        self.child = Some(child);
        self.wait_for("HTTP to answer", within, |d| d.get("/healthz").0 == 200);
    }

    /// Waits until `/readyz` says every source finished its first sync.
    pub fn wait_ready(&self, within: Duration) {
        self.wait_for("every source's first sync (/readyz 200)", within, |d| {
            d.get("/readyz").0 == 200
        });
    }

    pub fn wait_for(&self, what: &str, within: Duration, cond: impl Fn(&Daemon) -> bool) {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out after {within:?} waiting for {what}; daemon log:\n{}",
            self.log()
        );
    }

    /// SIGTERM and wait; returns the exit status success.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Runs another subcommand with the same config and environment.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command()
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .envs(self.env.iter().cloned())
            .env("NO_COLOR", "1")
            .output()
            .expect("run slawatch")
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        request(self.addr, "GET", path, None)
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Every inquiry through the paged API.
    pub fn inquiries(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut path = "/api/v1/inquiries?limit=1000".to_string();
        loop {
            let page = self.get_json(&path);
            out.extend(page["inquiries"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => path = format!("/api/v1/inquiries?limit=1000&cursor={c}"),
                None => return out,
            }
        }
    }

    /// The value of one metric series in `/metrics`, e.g.
    /// `slawatch_source_up{source="support"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l[series.len()..].trim().parse().ok())
    }

    /// Runs an SQL query on the ledger file with the `sqlite3` tool (read-only).
    pub fn sql(&self, query: &str) -> String {
        let out = self
            .command_for("sqlite3")
            .arg("-readonly")
            .arg(&self.ledger)
            .arg(query)
            .output()
            .expect("the sqlite3 command-line tool is required (Debian: apt-get install sqlite3)");
        assert!(
            out.status.success(),
            "sqlite3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A minimal HTTP/1.1 client: enough for a loopback test, no TLS, `Connection: close`.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = match text.split_once("\r\n\r\n") {
        Some((head, rest))
            if head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked") =>
        {
            dechunk(rest)
        }
        Some((_, rest)) => rest.to_string(),
        None => String::new(),
    };
    (status, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// `n` customer mails delivered an hour ago: overdue the moment the daemon reads them.
/// (A Maildir with an empty `.Sent` folder, under `dir/maildir`.)
pub fn overdue_mailbox(dir: &Path, n: usize) {
    let root = dir.join("maildir");
    for sub in ["tmp", "new", "cur", ".Sent/tmp", ".Sent/new", ".Sent/cur"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let an_hour_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    for i in 0..n {
        let raw = format!(
            "From: C{i} <c{i}@customer.test>\r\nTo: support@example.com\r\nSubject: question {i}\r\n\
             Message-ID: <q{i}@customer.test>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\n\r\nHello, I need help with order {i}.\r\n"
        );
        std::fs::write(
            root.join("new").join(format!("{an_hour_ago}.M{i}P1.test")),
            raw,
        )
        .unwrap();
    }
}

/// Writes a customer mail into the Maildir at `dir/maildir` (created with an empty `.Sent`),
/// named as delivered at `received` (Unix seconds): its deadline falls 15 minutes later.
/// `key` is its subject and the local part of its `Message-ID`.
pub fn maildir_mail(dir: &Path, received: u64, key: &str) {
    let root = dir.join("maildir");
    for sub in ["tmp", "new", "cur", ".Sent/tmp", ".Sent/new", ".Sent/cur"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let raw = format!(
        "From: Customer <{key}@customer.test>\r\nTo: support@example.com\r\nSubject: {key}\r\n\
         Message-ID: <{key}@customer.test>\r\n\r\nHello, about {key}.\r\n"
    );
    let name = format!("{received}.M{}P7.test", hash(key));
    let tmp = root.join("tmp").join(&name);
    std::fs::write(&tmp, raw).unwrap();
    std::fs::rename(&tmp, root.join("new").join(name)).unwrap();
}

/// A number for a unique Maildir file name per key (FNV-1a).
fn hash(key: &str) -> u64 {
    key.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ b as u64).wrapping_mul(1099511628211)
    }) % 1_000_000_007
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
