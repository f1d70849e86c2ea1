//! A private PostgreSQL 15 for integration tests and benches.
//!
//! Each server lives in its own 0755 temp dir: `initdb --no-sync` into `DIR/data`, then
//! `postgres` listening on 127.0.0.1 and a free high port, its unix socket in `DIR/sock`, TLS on
//! with a certificate for `localhost`/`127.0.0.1` signed by a throw-away CA (`DIR/ca.pem`). The
//! application role [`USER`] logs in over TCP with a SCRAM password, like in production; the
//! superuser `postgres` is trusted on the private socket only, for what a test does behind the
//! daemon's back (dropping the append-only guard, deleting rows).
//!
//! The binaries are Debian's (`/usr/lib/postgresql/<version>/bin`, not on `PATH`), the newest
//! version found, or the directory in `SLAWATCH_PG_BIN`. Missing binaries fail the test loudly,
//! never skip it (`scripts/test.sh` installs `postgresql-15`). As root, initdb and postgres refuse
//! to run, so they run as the `postgres` system user (`setpriv`).
//!
//! The server runs under a small `sh` supervisor reading its stdin: when the test process ends
//! — even without dropping the server, as for the per-binary [`shared`] server kept in a static —
//! the pipe closes, and the supervisor stops PostgreSQL (fast shutdown) and deletes the dir.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The application role (owner of every test database).
pub const USER: &str = "slawatch";
/// Its password (SCRAM over TCP).
pub const PASSWORD: &str = "pg-test-secret";

pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    pub port: u16,
}

/// The directory holding `initdb`, `postgres` and `psql`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SLAWATCH_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("postgres").exists(),
            "SLAWATCH_PG_BIN={} has no `postgres` binary",
            dir.display()
        );
        return dir;
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("postgres").exists() && bin.join("initdb").exists()).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is required by this test but no server binaries were found in \
             /usr/lib/postgresql/*/bin; install them (Debian: apt-get install postgresql-15) or \
             point SLAWATCH_PG_BIN at the directory holding initdb and postgres"
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// `(uid, gid)` of the `postgres` user when we are root (initdb refuses root), else `None`.
fn run_as(dir: &Path) -> Option<(u32, u32)> {
    if std::fs::metadata(dir).expect("stat temp dir").uid() != 0 {
        return None;
    }
    let out = Command::new("getent")
        .args(["passwd", "postgres"])
        .output()
        .expect("getent");
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let f: Vec<&str> = line.trim().split(':').collect();
    assert!(
        f.len() >= 4,
        "running the tests as root needs the `postgres` system user (installed with postgresql-15)"
    );
    Some((f[2].parse().unwrap(), f[3].parse().unwrap()))
}

/// `cmd` with its arguments, run as `user` when set.
fn command(user: Option<(u32, u32)>, program: &Path, dir: &Path) -> Command {
    match user {
        None => Command::new(program),
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--init-groups")
                .arg("env")
                .arg(format!("HOME={}", dir.display()))
                .arg(program);
            c
        }
    }
}

fn chown_r(path: &Path, uid: u32, gid: u32) {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success(), "chown -R {}", path.display());
}

impl Postgres {
    /// A new server (see the module documentation).
    pub fn start() -> Postgres {
        Postgres::start_with(false)
    }

    /// A server with PostgreSQL's default durability (`fsync`, `synchronous_commit` and
    /// `full_page_writes` on), for benchmarks: the tests' server turns them off for speed.
    pub fn start_durable() -> Postgres {
        Postgres::start_with(true)
    }

    fn start_with(durable: bool) -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("slawatch-pg-")
            .permissions(std::fs::Permissions::from_mode(0o755))
            .tempdir()
            .expect("create temp dir")
            .keep();
        let user = run_as(&dir);
        std::fs::create_dir_all(dir.join("sock")).unwrap();
        super::dovecot::make_certificates(&dir);
        std::fs::set_permissions(dir.join("key.pem"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::write(dir.join("pwfile"), "postgres-superuser\n").unwrap();
        if let Some((uid, gid)) = user {
            chown_r(&dir, uid, gid);
        }
        let d = dir.display().to_string();
        let out = command(user, &bin.join("initdb"), &dir)
            .args(["-D", &format!("{d}/data"), "-U", "postgres"])
            .arg(format!("--pwfile={d}/pwfile"))
            .args([
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut settings = vec![
            "listen_addresses=127.0.0.1".to_string(),
            format!("port={port}"),
            format!("unix_socket_directories={d}/sock"),
            "max_connections=200".into(),
            "ssl=on".into(),
            format!("ssl_cert_file={d}/cert.pem"),
            format!("ssl_key_file={d}/key.pem"),
            "log_min_messages=warning".into(),
        ];
        if !durable {
            settings.extend([
                "fsync=off".into(),
                "synchronous_commit=off".into(),
                "full_page_writes=off".into(),
            ]);
        }
        // The supervisor: starts the server, then waits for its stdin to close (the test process
        // dropped the server or ended) to stop it and delete the dir.
        let mut postgres = command(user, &bin.join("postgres"), &dir);
        postgres.args(["-D", &format!("{d}/data")]);
        for s in &settings {
            postgres.arg("-c").arg(s);
        }
        let argv: Vec<String> = std::iter::once(postgres.get_program())
            .chain(postgres.get_args())
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect();
        let script = format!(
            "{} >>{q}/pg.log 2>&1 &\npid=$!\nread -r _ || true\nkill -INT $pid 2>/dev/null\n\
             wait $pid\nrm -rf {q}\n",
            argv.join(" "),
            q = shell_quote(&d)
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the PostgreSQL supervisor");
        let stdin = child.stdin.take();
        let mut pg = Postgres {
            dir,
            bin,
            child: Some(child),
            stdin,
            port,
        };
        pg.wait_ready();
        pg.psql(
            "postgres",
            &format!(
                "CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'; \
                 CREATE ROLE {USER}_other LOGIN PASSWORD '{PASSWORD}'"
            ),
        );
        pg
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.psql_raw("postgres", "SELECT 1");
            if out.status.success() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("PostgreSQL exited ({status}) at start-up:\n{}", self.log());
            }
            if Instant::now() > deadline {
                panic!(
                    "PostgreSQL not ready after 30 s: {}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pg.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn psql_raw(&self, db: &str, sql: &str) -> std::process::Output {
        Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(self.dir.join("sock"))
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .env_remove("PGPASSWORD")
            .output()
            .expect("run psql")
    }

    /// Runs `sql` as the superuser in database `db`; panics with psql's error if it fails.
    /// Returns the unaligned, tuples-only output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.psql_raw(db, sql);
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    }

    /// A new empty database owned by [`USER`]; returns its name.
    pub fn create_database(&self) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "ledger_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {name} OWNER {USER} TEMPLATE template0 ENCODING 'UTF8'"),
        );
        name
    }

    /// `postgres://slawatch@127.0.0.1:PORT/DB` (no password: pass it the way the daemon gets it).
    pub fn url_without_password(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// `postgres://slawatch:PASSWORD@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}:{PASSWORD}@127.0.0.1:{}/{db}", self.port)
    }

    /// A fresh database's URL (with the password).
    pub fn fresh_url(&self) -> String {
        let db = self.create_database();
        self.url(&db)
    }

    /// The database named in a URL made by [`Postgres::url`].
    pub fn database_of(url: &str) -> &str {
        url.rsplit('/')
            .next()
            .and_then(|s| s.split('?').next())
            .unwrap_or("")
    }

    /// Stops the server at once (SIGKILL to the whole group is not needed: closing the
    /// supervisor's stdin makes it shut PostgreSQL down) and waits for the supervisor.
    pub fn stop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// One server per test binary, started on first use; each test takes its own database
/// ([`Postgres::fresh_url`]). Stopped and deleted when the test process exits (see the module
/// documentation).
pub fn shared() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(Postgres::start)
}
