//! An active/standby pair: two real `slawatch` daemons with the same configuration on one
//! PostgreSQL ledger, for the failover tests and bench.
//!
//! Each replica has its own directory (configuration, `store.head_file`, log) and HTTP port;
//! both read the same sources, kept in a directory of the pair's (`{shared}` in the
//! configuration body). Alerts go to one webhook receiver ([`Hooks`]) that notes which replica
//! sent each request (each replica posts to its own path, `/hook/a` or `/hook/b`: the only
//! setting that differs) and when it came, so a test can tell who alerted after a takeover.
//! The ledger is read behind the daemons' backs with `psql` as the superuser.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::daemon::Daemon;
use super::postgres::{PASSWORD, Postgres};

/// The replicas' names, as in their webhook paths.
pub const NAMES: [&str; 2] = ["a", "b"];

/// Seconds since the Unix epoch, with fractions.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The failover tests start two daemons each and time their takeovers: one test at a time, so
/// they do not compete for the CPU with each other.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A store URL for `db` on `port` (the server's, or a proxy's in front of it), TLS verified.
pub fn store_url(pg: &Postgres, port: u16, db: &str) -> String {
    format!(
        "postgres://slawatch@127.0.0.1:{port}/{db}?sslmode=verify-full&sslrootcert={}",
        pg.ca_file().display()
    )
}

/// One request the webhook received.
#[derive(Debug, Clone)]
pub struct Hit {
    /// The replica that sent it (the last segment of its path).
    pub replica: String,
    /// The receiver's clock when the body was read (Unix seconds).
    pub at: f64,
    pub alerts: Vec<Value>,
}

/// A webhook receiver on 127.0.0.1 (std threads): answers 200 to every POST and keeps each
/// request's path, arrival time and alerts.
#[derive(Clone)]
pub struct Hooks {
    pub port: u16,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Hooks {
    pub fn start() -> Hooks {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let record = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = record.clone();
                std::thread::spawn(move || serve(stream, record));
            }
        });
        Hooks { port, hits }
    }

    /// The URL replica `name` posts to.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/hook/{name}", self.port)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Every inquiry alert received (monitor alerts left out) as `(replica, at, alert)`.
    pub fn alerts(&self) -> Vec<(String, f64, Value)> {
        self.hits()
            .into_iter()
            .flat_map(|h| {
                h.alerts
                    .into_iter()
                    .filter(|a| a["monitor"].is_null())
                    .map(move |a| (h.replica.clone(), h.at, a))
            })
            .collect()
    }

    /// Breach alerts per inquiry: the replicas and times of each copy received.
    pub fn breaches(&self) -> BTreeMap<String, Vec<(String, f64)>> {
        let mut out: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
        for (replica, at, a) in self.alerts() {
            if a["kind"] == "breach" {
                out.entry(a["inquiry_id"].as_str().unwrap_or_default().to_string())
                    .or_default()
                    .push((replica, at));
            }
        }
        out
    }
}

fn serve(stream: TcpStream, hits: Arc<Mutex<Vec<Hit>>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or_default().to_string();
        let mut length = 0;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((name, value)) = h.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let at = unix_now();
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        hits.lock().unwrap().push(Hit {
            replica: path.rsplit('/').next().unwrap_or_default().to_string(),
            at,
            alerts: json["alerts"].as_array().cloned().unwrap_or_default(),
        });
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .is_err()
        {
            return;
        }
    }
}

/// A `leader_changed` row of the ledger.
#[derive(Debug, Clone)]
pub struct LeaderChange {
    pub seq: i64,
    pub recorded_at: DateTime<Utc>,
    pub epoch: i64,
    pub replica: String,
    pub previous: Option<String>,
}

impl LeaderChange {
    /// `recorded_at` in Unix seconds.
    pub fn unix(&self) -> f64 {
        self.recorded_at.timestamp_micros() as f64 / 1e6
    }
}

/// How a pair is set up.
pub struct Setup<'a> {
    /// The configuration after `[store]` and `[http]` (`[desk]`, `[policy]`, sources,
    /// `[notify]`…); `{shared}` is the pair's directory, `{dir}` the replica's.
    pub body: &'a str,
    /// `store.lease_ttl`; `None` leaves the default.
    pub lease_ttl: Option<&'a str>,
    /// The port each replica reaches PostgreSQL on (the server's unless a proxy is in between).
    pub store_ports: [Option<u16>; 2],
    /// Alerts go to this receiver (the webhook URL comes from the environment, as a secret).
    pub hooks: Option<&'a Hooks>,
}

pub struct Pair {
    pub pg: &'static Postgres,
    pub db: String,
    pub shared: tempfile::TempDir,
    pub replicas: [Daemon; 2],
}

impl Pair {
    /// Configures both replicas on a fresh database of the shared server; starts neither.
    pub fn configure(setup: Setup<'_>) -> Pair {
        let pg = super::postgres::shared();
        let db = pg.create_database();
        let shared = tempfile::Builder::new()
            .prefix("slawatch-pair-")
            .tempdir()
            .unwrap();
        // An empty Maildir for the tests that read mail (`{shared}/maildir`).
        for sub in ["tmp", "new", "cur", ".Sent/tmp", ".Sent/new", ".Sent/cur"] {
            std::fs::create_dir_all(shared.path().join("maildir").join(sub)).unwrap();
        }
        let replicas = [0, 1].map(|i| {
            let dir = shared.path().join(format!("replica-{}", NAMES[i]));
            std::fs::create_dir_all(&dir).unwrap();
            let port = setup.store_ports[i].unwrap_or(pg.port);
            let ttl = setup
                .lease_ttl
                .map(|t| format!("lease_ttl = \"{t}\"\n"))
                .unwrap_or_default();
            let config = format!(
                "[store]\nurl = \"{url}\"\nhead_file = \"{{dir}}/ledger.head\"\n{ttl}\
                 [http]\nbind = \"127.0.0.1:{{port}}\"\n{body}",
                url = store_url(pg, port, &db),
                body = setup
                    .body
                    .replace("{shared}", &shared.path().display().to_string()),
            );
            let hook = setup.hooks.map(|h| h.url(NAMES[i]));
            let mut env = vec![("SLAWATCH__STORE__PASSWORD", PASSWORD)];
            if let Some(h) = &hook {
                env.push(("SLAWATCH__NOTIFY__WEBHOOK__URL", h.as_str()));
            }
            Daemon::configure(&dir, &config, &env)
        });
        Pair {
            pg,
            db,
            shared,
            replicas,
        }
    }

    pub fn shared_dir(&self) -> PathBuf {
        self.shared.path().to_path_buf()
    }

    /// Starts replica `i` and waits until it says it is active (the first one on an empty
    /// ledger) or a standby that follows the ledger (`/readyz` 200).
    pub fn start(&mut self, i: usize, role: &str, within: Duration) {
        self.replicas[i].start_within(within);
        let r = &self.replicas[i];
        r.wait_for(
            &format!("replica {} to be {role} and ready", NAMES[i]),
            within,
            |d| role_of(d).as_deref() == Some(role) && d.get("/readyz").0 == 200,
        );
    }

    /// Starts replica 0 as the active, then replica 1 as its standby.
    pub fn start_both(&mut self, within: Duration) {
        self.start(0, "active", within);
        self.start(1, "standby", within);
    }

    /// Runs `sql` as the superuser on the pair's database.
    pub fn sql(&self, sql: &str) -> String {
        self.pg.psql(&self.db, sql)
    }

    /// Ledger rows of `kind`.
    pub fn count(&self, kind: &str) -> u64 {
        self.sql(&format!(
            "SELECT count(*) FROM ledger WHERE kind = '{kind}'"
        ))
        .parse()
        .unwrap()
    }

    pub fn max_seq(&self) -> i64 {
        self.sql("SELECT coalesce(max(seq), 0) FROM ledger")
            .parse()
            .unwrap()
    }

    /// Every `leader_changed` row, in ledger order.
    pub fn leader_changes(&self) -> Vec<LeaderChange> {
        let rows = self.sql(
            "SELECT seq || E'\\t' || recorded_at || E'\\t' || payload FROM ledger \
             WHERE kind = 'leader_changed' ORDER BY seq",
        );
        rows.lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let mut f = l.splitn(3, '\t');
                let seq = f.next().unwrap().parse().unwrap();
                let recorded_at = f.next().unwrap().parse().unwrap();
                let payload: Value = serde_json::from_str(f.next().unwrap()).unwrap();
                LeaderChange {
                    seq,
                    recorded_at,
                    epoch: payload["epoch"]
                        .as_i64()
                        .unwrap_or_else(|| panic!("leader_changed without an integer epoch: {l}")),
                    replica: payload["replica"]
                        .as_str()
                        .unwrap_or_else(|| panic!("leader_changed without a replica: {l}"))
                        .to_string(),
                    previous: payload["previous"].as_str().map(str::to_string),
                }
            })
            .collect()
    }

    /// Waits for a `leader_changed` row after `seq`; returns it and when it was seen.
    pub fn wait_leader_change_after(&self, seq: i64, within: Duration) -> (LeaderChange, f64) {
        let until = Instant::now() + within;
        loop {
            if let Some(c) = self.leader_changes().into_iter().find(|c| c.seq > seq) {
                return (c, unix_now());
            }
            assert!(
                Instant::now() < until,
                "no leader_changed after seq {seq} within {within:?}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The `leader_changed` rows' epochs grow by one at each change, each naming the replica
    /// before it as `previous`; returns the rows.
    pub fn assert_epochs(&self) -> Vec<LeaderChange> {
        let changes = self.leader_changes();
        assert!(!changes.is_empty(), "no leader_changed event in the ledger");
        for w in changes.windows(2) {
            assert_eq!(
                w[1].epoch,
                w[0].epoch + 1,
                "epochs must grow by one at each takeover: {changes:#?}"
            );
            assert_eq!(
                w[1].previous.as_deref(),
                Some(w[0].replica.as_str()),
                "`previous` names the active before: {changes:#?}"
            );
        }
        changes
    }

    /// Ledger rows that appear twice: an inquiry opened twice for one message or call, an
    /// outcome decided twice, a delivery, escalation or take recorded twice. Empty when none.
    pub fn recorded_twice(&self) -> Vec<String> {
        let checks = [
            (
                "inquiry opened twice for one message or call",
                "SELECT payload::json->>'external_id' FROM ledger WHERE kind = 'inquiry_opened' \
                 GROUP BY 1 HAVING count(*) > 1",
            ),
            (
                "inquiry opened twice",
                "SELECT inquiry_id FROM ledger WHERE kind = 'inquiry_opened' \
                 GROUP BY 1 HAVING count(*) > 1",
            ),
            (
                "outcome decided twice",
                "SELECT kind || ' ' || inquiry_id FROM ledger \
                 WHERE kind IN ('inquiry_responded', 'inquiry_breached', 'inquiry_escalated') \
                 GROUP BY kind, inquiry_id HAVING count(*) > 1",
            ),
            (
                "delivery recorded twice",
                "SELECT inquiry_id || ' ' || (payload::json->>'kind') || ' ' || \
                 (payload::json->>'due_at') || ' ' || coalesce(payload::json->>'recipients', '') \
                 FROM ledger WHERE kind = 'alert_delivered' \
                 GROUP BY inquiry_id, payload::json->>'kind', payload::json->>'due_at', \
                 payload::json->>'recipients' HAVING count(*) > 1",
            ),
            (
                "take recorded twice",
                "SELECT inquiry_id || ' ' || (payload::json->>'by') || ' ' || \
                 (payload::json->>'at') FROM ledger WHERE kind = 'inquiry_taken' \
                 GROUP BY inquiry_id, payload::json->>'by', payload::json->>'at' \
                 HAVING count(*) > 1",
            ),
        ];
        let mut problems = Vec::new();
        for (what, sql) in checks {
            for row in self.sql(sql).lines().filter(|l| !l.is_empty()) {
                problems.push(format!("{what}: {row}"));
            }
        }
        problems
    }

    /// Nothing twice in the ledger, and `audit verify` intact.
    pub fn assert_ledger_clean(&self) {
        let twice = self.recorded_twice();
        assert!(twice.is_empty(), "recorded twice: {twice:#?}");
        let verify = self.replicas[0].cli(&["audit", "verify"]);
        let out = String::from_utf8_lossy(&verify.stdout);
        assert!(
            verify.status.success() && out.contains("head hash:"),
            "audit verify: {out}{}",
            String::from_utf8_lossy(&verify.stderr)
        );
    }

    /// Waits until exactly one replica is active; returns its index.
    pub fn wait_active(&self, within: Duration) -> usize {
        let until = Instant::now() + within;
        loop {
            let roles: Vec<Option<String>> = self.replicas.iter().map(role_of).collect();
            let active: Vec<usize> = (0..2)
                .filter(|&i| roles[i].as_deref() == Some("active"))
                .collect();
            if active.len() == 1 {
                return active[0];
            }
            assert!(
                Instant::now() < until,
                "no single active replica within {within:?} (roles {roles:?}); logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Both replicas' logs, for a failure message.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, r) in self.replicas.iter().enumerate() {
            let log = r.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            out.push_str(&format!("--- replica {} (last 60 lines) ---\n", NAMES[i]));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

/// The role named on the `role:` line of `/readyz` (`active` or `standby`, the first word after
/// it), if the daemon answers.
pub fn role_of(d: &Daemon) -> Option<String> {
    let (status, body) = d.get("/readyz");
    if status == 0 {
        return None;
    }
    body.lines()
        .find_map(|l| l.trim().strip_prefix("role:"))
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_string)
}

/// `slawatch_leader`, if the daemon answers.
pub fn leader_of(d: &Daemon) -> Option<f64> {
    d.metric("slawatch_leader")
}

/// Sends `signal` (`STOP`, `CONT`…) to the daemon's process.
pub fn signal(d: &Daemon, signal: &str) {
    let pid = d.pid().expect("the daemon is running");
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// `POST path` with a form body (`application/x-www-form-urlencoded`); `(0, "")` when nothing
/// answers.
pub fn post_form(addr: SocketAddr, path: &str, form: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
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
    (status, text)
}

/// Writes a customer mail into the Maildir at `root` as delivered at `received` (Unix
/// seconds); `key` is its subject and the local part of its `Message-ID`.
pub fn deliver(root: &Path, received: u64, key: &str) {
    for sub in ["tmp", "new", "cur", ".Sent/tmp", ".Sent/new", ".Sent/cur"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let raw = format!(
        "From: Customer <{key}@customer.test>\r\nTo: support@example.com\r\nSubject: {key}\r\n\
         Message-ID: <{key}@customer.test>\r\n\r\nHello, about {key}.\r\n"
    );
    let name = format!("{received}.M{}P9.pair", key.replace(['/', ':', '.'], "_"));
    let tmp = root.join("tmp").join(&name);
    std::fs::write(&tmp, raw).unwrap();
    std::fs::rename(&tmp, root.join("new").join(name)).unwrap();
}

/// Median and maximum of `values` (sorted in place).
pub fn median_max(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[n - 1])
}
