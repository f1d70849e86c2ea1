//! The PostgreSQL backend: connection URL, finding the primary, pool, embedded migrations, the
//! append transaction, and the guard against a ledger that went backwards.
//!
//! # URL
//!
//! `postgres://user@host:port/db?option=value&…` (or `postgresql://`), with libpq's meaning
//! where it overlaps:
//!
//! - **Several hosts**: `postgres://user@db1:5432,db2:5432/sla`. With
//!   `target_session_attrs=read-write` each is tried in turn and the first that takes writes
//!   (`SHOW transaction_read_only` is `off`) is used; with `any` (the default) the first that
//!   answers. sqlx's own options know one host only, so the choice is made here, at open and
//!   again whenever a write finds the connection gone or the server read-only (a failover: the
//!   old primary down or demoted), and the pool is pointed at the new one.
//! - **TLS with verification**: `sslmode=verify-full` (the certificate chains to a trusted CA and
//!   names the host) or `verify-ca`, with `sslrootcert=/path/ca.pem` (otherwise the compiled-in
//!   web roots); `sslcert`/`sslkey` for a client certificate. Asking for TLS without a mode
//!   (`sslrootcert` alone) means `verify-full`. `require`, `prefer` and `allow` encrypt without
//!   checking who answers, so they are refused with a message saying what to write instead;
//!   `disable` (the default without `sslrootcert`) is plain TCP, for a server on the same host.
//! - **Password**: never in the configuration file's URL (`check-config` refuses it); from
//!   `store.password_file` or `SLAWATCH__STORE__PASSWORD`, handed to [`open`]. URLs are shown
//!   only through [`super::redact_url`].
//! - `application_name` (default `slawatch`) and `connect_timeout` (seconds, default 10).
//!
//! # Writing
//!
//! An append is one transaction: `LOCK TABLE ledger IN EXCLUSIVE MODE` (writers queue, readers
//! go on), read the head, chain, insert every row in one `INSERT … SELECT FROM UNNEST(arrays)`
//! (one statement and one round trip whatever the batch size), upsert the inquiry projection's
//! rows of the batch (the same way, from arrays) and the cursors, commit. Two writers
//! therefore never chain onto the same head. A durable commit
//! ([`super::Sealing::durable`]) sets `synchronous_commit = on` for its transaction; others
//! follow the server's setting.
//!
//! # A ledger that went backwards
//!
//! An asynchronous standby promoted after a failover may lack the primary's last commits: the
//! ledger's head is then behind what this process wrote and published. Writing on would append
//! a second history after the lost one, under the same seqs. So the store remembers the head it
//! last wrote (and the daemon hands it the head it published before a restart:
//! [`super::Store::expect_head`]); every append checks, inside its locked transaction, that this
//! head is still in the ledger at its seq, and otherwise refuses with
//! [`StoreError::WentBackwards`], writing nothing. The engine keeps the events in memory and
//! retries, so `monitor-ledger` pages after the usual stall, with the error saying what to do.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgConnection};

use slawatch_core::tracker::event::Event;

use super::chain::{GENESIS, LEDGER_FORMAT};
use super::lease::Lease;
use super::sql::{self, Dialect};
use super::{Beside, Sealing, StoreError, chain_batch};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per daemon: the writer, plus readers for the API, reports and page prefetch.
const POOL_SIZE: u32 = 6;

/// A replica's write transaction never waits on its client between two statements for more
/// than a moment; one that does belongs to a process that was paused or lost its network, and
/// the server ends it so its locks (the ledger's, the lease row's) do not outlive its lease.
/// (Not for the commands' long transactions, such as `store copy`.)
const IDLE_IN_TRANSACTION: &str = "SET LOCAL idle_in_transaction_session_timeout = '3s'";

/// How long a new connection may take by default (`connect_timeout` overrides).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which server of a multi-host URL to use (`target_session_attrs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    /// The first that answers.
    Any,
    /// The first that takes writes.
    ReadWrite,
}

/// A `postgres://` URL, understood.
#[derive(Debug, Clone)]
pub struct Target {
    pub hosts: Vec<(String, u16)>,
    pub user: String,
    /// From the URL; a password handed to [`open`] takes its place when the URL has none.
    password: Option<String>,
    pub database: String,
    pub ssl_mode: PgSslMode,
    pub ssl_root_cert: Option<String>,
    pub ssl_cert: Option<String>,
    pub ssl_key: Option<String>,
    pub session_attrs: SessionAttrs,
    pub application_name: String,
    pub connect_timeout: Duration,
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at {:?}", &s[i..]))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent escapes are not UTF-8".to_string())
}

impl Target {
    /// Parses `url`; the error is a reason for [`StoreError::InvalidUrl`] (no secret in it).
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or("expected postgres://user@host:port/database")?;
        let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = main.split_once('/').unwrap_or((main, ""));
        let (userinfo, hostlist) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pw)) => (percent_decode(user)?, Some(percent_decode(pw)?)),
                None => (percent_decode(u)?, None),
            },
            None => (String::new(), None),
        };
        let mut hosts = Vec::new();
        for entry in hostlist.split(',').filter(|h| !h.is_empty()) {
            let (host, port) = if let Some(v6) = entry.strip_prefix('[') {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| format!("host {entry:?}: unclosed ["))?;
                (host.to_string(), after.strip_prefix(':'))
            } else {
                match entry.rsplit_once(':') {
                    Some((h, p)) => (h.to_string(), Some(p)),
                    None => (entry.to_string(), None),
                }
            };
            let port = match port {
                Some(p) => p
                    .parse::<u16>()
                    .map_err(|_| format!("host {entry:?}: port {p:?} is not a number"))?,
                None => 5432,
            };
            hosts.push((percent_decode(&host)?, port));
        }
        if hosts.is_empty() {
            return Err("no host: expected postgres://user@host:port/database".into());
        }
        let database = percent_decode(path)?;
        if database.is_empty() {
            return Err("no database: expected postgres://user@host:port/database".into());
        }
        if user.is_empty() {
            return Err("no user: expected postgres://user@host:port/database".into());
        }
        let mut target = Target {
            hosts,
            user,
            password,
            database,
            ssl_mode: PgSslMode::Disable,
            ssl_root_cert: None,
            ssl_cert: None,
            ssl_key: None,
            session_attrs: SessionAttrs::Any,
            application_name: "slawatch".into(),
            connect_timeout: CONNECT_TIMEOUT,
        };
        let mut mode = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value)?;
            match key {
                "sslmode" => mode = Some(value),
                "sslrootcert" => target.ssl_root_cert = Some(value),
                "sslcert" => target.ssl_cert = Some(value),
                "sslkey" => target.ssl_key = Some(value),
                "target_session_attrs" => {
                    target.session_attrs = match value.as_str() {
                        "any" => SessionAttrs::Any,
                        "read-write" | "primary" => SessionAttrs::ReadWrite,
                        other => {
                            return Err(format!(
                                "target_session_attrs={other} is not supported: use read-write or any"
                            ));
                        }
                    }
                }
                "application_name" => target.application_name = value,
                "connect_timeout" => {
                    let secs: u64 = value.parse().map_err(|_| {
                        format!("connect_timeout={value} is not a whole number of seconds")
                    })?;
                    target.connect_timeout = Duration::from_secs(secs.max(1));
                }
                "password" => target.password = Some(value),
                other => {
                    return Err(format!(
                        "unknown option {other:?} (known: sslmode, sslrootcert, sslcert, sslkey, \
                         target_session_attrs, application_name, connect_timeout)"
                    ));
                }
            }
        }
        target.ssl_mode = match mode.as_deref() {
            None if target.ssl_root_cert.is_some() => PgSslMode::VerifyFull,
            None | Some("disable") => PgSslMode::Disable,
            Some("verify-full") => PgSslMode::VerifyFull,
            Some("verify-ca") => PgSslMode::VerifyCa,
            Some(weak @ ("require" | "prefer" | "allow")) => {
                return Err(format!(
                    "sslmode={weak} encrypts without checking the server's certificate; use \
                     sslmode=verify-full (with sslrootcert=/path/to/ca.pem for a private CA), or \
                     sslmode=disable for a server on this host"
                ));
            }
            Some(other) => {
                return Err(format!(
                    "sslmode={other} is not known: use verify-full, verify-ca or disable"
                ));
            }
        };
        if matches!(target.ssl_mode, PgSslMode::Disable)
            && (target.ssl_cert.is_some() || target.ssl_key.is_some())
        {
            return Err("sslcert/sslkey given with sslmode=disable".into());
        }
        for file in [&target.ssl_root_cert, &target.ssl_cert, &target.ssl_key]
            .into_iter()
            .flatten()
        {
            if !std::path::Path::new(file).is_file() {
                return Err(format!("TLS file {file} does not exist or is not a file"));
            }
        }
        Ok(target)
    }

    /// Whether it connects without TLS to a host that is not a loopback address or `localhost`.
    pub fn sends_in_clear(&self) -> bool {
        matches!(self.ssl_mode, PgSslMode::Disable)
            && self.hosts.iter().any(|(host, _)| {
                host != "localhost"
                    && !host.starts_with('/')
                    && !host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            })
    }

    /// sqlx's options for host `i`.
    fn options(&self, i: usize, password: Option<&str>) -> PgConnectOptions {
        let (host, port) = &self.hosts[i];
        let mut o = PgConnectOptions::new_without_pgpass()
            .host(host)
            .port(*port)
            .username(&self.user)
            .database(&self.database)
            .application_name(&self.application_name)
            .ssl_mode(self.ssl_mode);
        if let Some(pw) = self.password.as_deref().or(password) {
            o = o.password(pw);
        }
        if let Some(ca) = &self.ssl_root_cert {
            o = o.ssl_root_cert(ca);
        }
        if let Some(cert) = &self.ssl_cert {
            o = o.ssl_client_cert(cert);
        }
        if let Some(key) = &self.ssl_key {
            o = o.ssl_client_key(key);
        }
        o
    }
}

/// The PostgreSQL store: the pool, how to find the primary again, and the head this process
/// must still find in the ledger.
#[derive(Debug, Clone)]
pub struct Pg {
    pub pool: PgPool,
    target: Arc<Target>,
    password: Option<Arc<str>>,
    /// The URL as shown (redacted).
    shown: Arc<str>,
    /// The host the pool connects to now (index into `target.hosts`).
    current: Arc<Mutex<usize>>,
    /// The head this process wrote last or was told it had published: `(seq, hash)`.
    published: Arc<Mutex<Option<(i64, String)>>>,
    /// Where the published head is kept across restarts (see [`Pg::keep_head_in`]).
    head_file: Arc<std::sync::OnceLock<PathBuf>>,
    /// The leader lease this replica writes under, once the daemon takes part in a pair: every
    /// write transaction is then fenced by it (see [`super::lease`]).
    pub(super) lease: Arc<std::sync::OnceLock<Arc<Lease>>>,
}

/// Whether `conn` takes writes.
async fn is_read_write(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    let ro: String = sqlx::query_scalar("SHOW transaction_read_only")
        .fetch_one(conn)
        .await?;
    Ok(ro == "off")
}

/// Tries each host in turn; the first that fits `session_attrs` (its index), or why none did.
async fn pick(
    target: &Target,
    password: Option<&str>,
    shown: &str,
) -> Result<(usize, PgConnectOptions), StoreError> {
    let mut reasons = Vec::new();
    for i in 0..target.hosts.len() {
        let options = target.options(i, password);
        let (host, port) = &target.hosts[i];
        let attempt = async {
            let mut conn = options.connect().await?;
            let ok = match target.session_attrs {
                SessionAttrs::Any => true,
                SessionAttrs::ReadWrite => is_read_write(&mut conn).await?,
            };
            let _ = conn.close().await;
            Ok::<bool, sqlx::Error>(ok)
        };
        match tokio::time::timeout(target.connect_timeout, attempt).await {
            Ok(Ok(true)) => return Ok((i, options)),
            Ok(Ok(false)) => reasons.push(format!("{host}:{port} is read-only (a standby)")),
            Ok(Err(e)) => reasons.push(format!("{host}:{port}: {e}")),
            Err(_) => reasons.push(format!(
                "{host}:{port}: no answer within {} s",
                target.connect_timeout.as_secs()
            )),
        }
    }
    Err(StoreError::NoServer {
        url: shown.to_string(),
        reasons: reasons.join("; "),
    })
}

/// Connects (to the first fitting host), checks the database's encoding, applies the embedded
/// migrations when `migrate`, and checks the ledger format.
pub async fn open(
    url: &str,
    shown: &str,
    password: Option<&str>,
    migrate: bool,
) -> Result<Pg, StoreError> {
    let target = Target::parse(url).map_err(|reason| StoreError::InvalidUrl {
        url: shown.to_string(),
        reason,
    })?;
    let (index, options) = pick(&target, password, shown).await?;
    let read_write = target.session_attrs == SessionAttrs::ReadWrite;
    let pool = PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .acquire_timeout(target.connect_timeout)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                // A connection that lands on a demoted primary is refused, so the write fails
                // and the primary is looked for again.
                if read_write && !is_read_write(conn).await? {
                    return Err(sqlx::Error::Configuration(
                        "the server is read-only (a standby); looking for the primary again".into(),
                    ));
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Open {
            url: shown.to_string(),
            source,
        })?;
    let encoding: String = sqlx::query_scalar("SHOW server_encoding")
        .fetch_one(&pool)
        .await
        .map_err(StoreError::db("read server encoding"))?;
    if encoding != "UTF8" {
        pool.close().await;
        return Err(StoreError::InvalidUrl {
            url: shown.to_string(),
            reason: format!(
                "the database's encoding is {encoding}; the ledger needs UTF8 (CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0)"
            ),
        });
    }
    if migrate {
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: shown.to_string(),
                source,
            })?;
    }
    let format: Option<String> = match sqlx::query_scalar(sql::LEDGER_FORMAT)
        .fetch_optional(&pool)
        .await
    {
        Ok(f) => f,
        // `undefined_table`: nothing was ever migrated here.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => None,
        Err(e) => return Err(StoreError::db("read ledger format")(e)),
    };
    if format.as_deref() != Some(LEDGER_FORMAT) {
        pool.close().await;
        return Err(StoreError::Format {
            url: shown.to_string(),
            found: format.unwrap_or_else(|| "(none)".to_string()),
            supported: LEDGER_FORMAT.to_string(),
        });
    }
    Ok(Pg {
        pool,
        target: Arc::new(target),
        password: password.map(Arc::from),
        shown: shown.into(),
        current: Arc::new(Mutex::new(index)),
        published: Arc::new(Mutex::new(None)),
        head_file: Arc::new(std::sync::OnceLock::new()),
        lease: Arc::new(std::sync::OnceLock::new()),
    })
}

impl Pg {
    /// Whether a failed write may mean the primary moved: the connection is gone, refused, or
    /// the server is read-only.
    fn primary_may_have_moved(error: &StoreError) -> bool {
        let StoreError::Database { source, .. } = error else {
            return false;
        };
        match source {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::Configuration(_) => true,
            sqlx::Error::Database(e) => matches!(
                e.code().as_deref(),
                // read_only_sql_transaction, admin/crash shutdown, cannot connect now
                Some("25006" | "57P01" | "57P02" | "57P03")
            ),
            _ => false,
        }
    }

    /// After a failed write: with several hosts, looks for the one to use now and points the
    /// pool at it (connections to the old one are closed as they come back).
    pub(super) async fn after_failure(&self, error: &StoreError) {
        if self.target.hosts.len() < 2 || !Self::primary_may_have_moved(error) {
            return;
        }
        match pick(&self.target, self.password.as_deref(), &self.shown).await {
            Ok((index, options)) => {
                let before = std::mem::replace(
                    &mut *self.current.lock().unwrap_or_else(|e| e.into_inner()),
                    index,
                );
                if before != index {
                    let (host, port) = &self.target.hosts[index];
                    tracing::warn!(host = %host, port, "The PostgreSQL primary moved; the ledger is written there now.");
                }
                self.pool.set_connect_options(options);
            }
            Err(e) => tracing::warn!(error = %e, "No PostgreSQL server takes writes yet."),
        }
    }

    /// Fences a write transaction by the lease, if this replica writes under one (see
    /// [`Lease::fence`]): its last statement before the commit.
    pub(super) async fn fence(&self, conn: &mut PgConnection) -> Result<(), StoreError> {
        match self.lease.get() {
            Some(lease) => lease.fence(conn).await,
            None => Ok(()),
        }
    }

    /// The host in use, `host:port`.
    pub fn current_host(&self) -> String {
        let i = *self.current.lock().unwrap_or_else(|e| e.into_inner());
        let (host, port) = &self.target.hosts[i];
        format!("{host}:{port}")
    }

    pub(super) fn published(&self) -> Option<(i64, String)> {
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn set_published(&self, head: Option<(i64, String)>) {
        if let (Some((seq, hash)), Some(file)) = (&head, self.head_file.get())
            && let Err(e) = write_head_file(file, *seq, hash)
        {
            tracing::warn!(file = %file.display(), error = %e, "Could not keep the published ledger head; a failover that loses rows after it is still caught while the daemon runs.");
        }
        *self.published.lock().unwrap_or_else(|e| e.into_inner()) = head;
    }

    /// Keeps the published head in `file` (one line, `SEQ:HASH`), rewritten after every commit,
    /// so the check survives a restart: reads the head published before, if the file exists,
    /// and checks it now. A ledger that lost it is [`StoreError::WentBackwards`].
    pub(super) async fn keep_head_in(&self, file: &Path) -> Result<(), StoreError> {
        let _ = self.head_file.set(file.to_path_buf());
        let before = match std::fs::read_to_string(file) {
            Ok(text) => {
                let pin: super::ExpectedHead =
                    text.trim()
                        .parse()
                        .map_err(|problem| StoreError::HeadFile {
                            path: file.to_path_buf(),
                            problem,
                        })?;
                Some((pin.seq.unwrap_or(0), pin.hash))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(StoreError::HeadFile {
                    path: file.to_path_buf(),
                    problem: e.to_string(),
                });
            }
        };
        // Enforced from now on, whatever the check below finds: a daemon that goes on after
        // it (to keep alerting) must still never write on top of the lost rows.
        *self.published.lock().unwrap_or_else(|e| e.into_inner()) = before.clone();
        if let Some(published) = &before {
            let mut conn = self
                .pool
                .acquire()
                .await
                .map_err(StoreError::db("read head"))?;
            let head: Option<(i64, String)> = sqlx::query_as(sql::HEAD)
                .fetch_optional(&mut *conn)
                .await
                .map_err(StoreError::db("read head"))?;
            let head = head.unwrap_or_else(|| (0, GENESIS.to_string()));
            check_not_behind(&mut conn, Some(published), &head).await?;
        }
        Ok(())
    }
}

/// Writes `SEQ:HASH` to `file` through a temporary file and a rename, so a crash leaves the old
/// head or the new one, never half a line.
fn write_head_file(file: &Path, seq: i64, hash: &str) -> std::io::Result<()> {
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{seq}:{hash}\n"))?;
    std::fs::rename(&tmp, file)
}

/// Refuses to write when the ledger lost the head this process published (see the module
/// documentation): `head` is the ledger's head read under the write lock.
pub(super) async fn check_not_behind(
    tx: &mut PgConnection,
    published: Option<&(i64, String)>,
    head: &(i64, String),
) -> Result<(), StoreError> {
    let Some((seq, hash)) = published else {
        return Ok(());
    };
    let found: Option<String> = if head.0 == *seq {
        Some(head.1.clone())
    } else if head.0 < *seq {
        None
    } else {
        sqlx::query_scalar("SELECT hash FROM ledger WHERE seq = $1")
            .bind(seq)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db("append: read published head"))?
    };
    if found.as_deref() == Some(hash.as_str()) {
        return Ok(());
    }
    Err(StoreError::WentBackwards {
        published_seq: *seq,
        published_hash: hash.clone(),
        head_seq: head.0,
        head_hash: head.1.clone(),
    })
}

/// The transaction of an append on PostgreSQL (see the module documentation): returns the
/// first seq, the hash it links to and every new row's hash.
pub(super) async fn write_rows(
    pg: &Pg,
    stamp: &str,
    events: &[Event],
    payloads: Vec<String>,
    beside: Beside<'_>,
    sealing: Sealing<'_>,
) -> Result<(i64, String, Vec<Arc<str>>), StoreError> {
    let Beside {
        cursors: cursor_rows,
        projection,
    } = beside;
    let mut tx = pg
        .pool
        .begin()
        .await
        .map_err(StoreError::db("append: begin"))?;
    if sealing.durable {
        sqlx::query(sql::PG_SYNC_COMMIT)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("append: synchronous_commit"))?;
    }
    if pg.lease.get().is_some() {
        sqlx::query(IDLE_IN_TRANSACTION)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("append: idle timeout"))?;
    }
    if let Some(lock) = Dialect::Postgres.lock_ledger() {
        sqlx::query(lock)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("append: lock ledger"))?;
    }
    let head: Option<(i64, String)> = sqlx::query_as(sql::HEAD)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::db("append: read head"))?;
    let head = head.unwrap_or_else(|| (0, GENESIS.to_string()));
    check_not_behind(&mut tx, pg.published().as_ref(), &head).await?;
    let (head_seq, head_hash) = head;
    let rows = chain_batch(head_seq, head_hash.into(), stamp, events, payloads, sealing)?;
    if !rows.hashes.is_empty() {
        let n = rows.hashes.len();
        let seqs: Vec<i64> = (0..n as i64).map(|i| head_seq + 1 + i).collect();
        let kinds: Vec<&str> = rows.all().map(|e| e.kind()).collect();
        let ids: Vec<Option<&str>> = rows
            .all()
            .map(|e| e.inquiry_id().map(|id| id.as_str()))
            .collect();
        let payloads: Vec<&str> = rows.payloads.iter().map(String::as_str).collect();
        let prevs: Vec<&str> = std::iter::once(&*rows.head_hash)
            .chain(rows.hashes.iter().map(|h| &**h))
            .take(n)
            .collect();
        let hashes: Vec<&str> = rows.hashes.iter().map(|h| &**h).collect();
        sqlx::query(sql::PG_INSERT_EVENTS)
            .bind(&seqs)
            .bind(stamp)
            .bind(&kinds)
            .bind(&ids)
            .bind(&payloads)
            .bind(&prevs)
            .bind(&hashes)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("append: insert events"))?;
    }
    super::projection::upsert_pg(&mut tx, super::projection::place(projection, head_seq + 1))
        .await?;
    write_cursors!(tx, cursor_rows, stamp);
    pg.fence(&mut tx).await?;
    tx.commit()
        .await
        .map_err(StoreError::db("append: commit"))?;
    if let Some(last) = rows.hashes.last() {
        pg.set_published(Some((
            head_seq + rows.hashes.len() as i64,
            last.to_string(),
        )));
    }
    Ok((head_seq + 1, rows.head_hash.to_string(), rows.hashes))
}

/// Connects once to check a URL (`check-config`, `store copy`): the error says what is wrong.
pub async fn probe(url: &str, password: Option<&str>) -> Result<String, StoreError> {
    let shown = super::redact_url(url);
    let target = Target::parse(url).map_err(|reason| StoreError::InvalidUrl {
        url: shown.clone(),
        reason,
    })?;
    let (i, _) = pick(&target, password, &shown).await?;
    let (host, port) = &target.hosts[i];
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_host_urls_and_their_options_are_understood() {
        let t = Target::parse(
            "postgres://sla@db1.example:5433,db2.example,[::1]:6000/ledger?target_session_attrs=read-write&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            t.hosts,
            vec![
                ("db1.example".to_string(), 5433),
                ("db2.example".to_string(), 5432),
                ("::1".to_string(), 6000)
            ]
        );
        assert_eq!(t.user, "sla");
        assert_eq!(t.database, "ledger");
        assert_eq!(t.session_attrs, SessionAttrs::ReadWrite);
        assert_eq!(t.connect_timeout, Duration::from_secs(3));
        assert!(matches!(t.ssl_mode, PgSslMode::Disable));
        let t = Target::parse("postgresql://a%40b:p%2Fw@h/d").unwrap();
        assert_eq!(t.user, "a@b");
        assert_eq!(t.password.as_deref(), Some("p/w"));
    }

    #[test]
    fn tls_that_does_not_verify_is_refused_and_a_ca_file_means_verify_full() {
        for weak in ["require", "prefer", "allow"] {
            let err = Target::parse(&format!("postgres://u@h/d?sslmode={weak}")).unwrap_err();
            assert!(err.contains("verify-full"), "{err}");
        }
        let ca = std::env::temp_dir().join(format!("slawatch-pg-ca-{}.pem", std::process::id()));
        std::fs::write(&ca, "x").unwrap();
        let t = Target::parse(&format!("postgres://u@h/d?sslrootcert={}", ca.display())).unwrap();
        assert!(matches!(t.ssl_mode, PgSslMode::VerifyFull));
        let t = Target::parse(&format!(
            "postgres://u@h/d?sslmode=verify-ca&sslrootcert={}",
            ca.display()
        ))
        .unwrap();
        assert!(matches!(t.ssl_mode, PgSslMode::VerifyCa));
        std::fs::remove_file(&ca).unwrap();
        let err =
            Target::parse("postgres://u@h/d?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
                .unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let err = Target::parse("postgres://u@h/d?sslmod=verify-full").unwrap_err();
        assert!(err.contains("unknown option"), "{err}");
        assert!(Target::parse("postgres://h/d").is_err(), "no user");
        assert!(Target::parse("postgres://u@h").is_err(), "no database");
    }
}
