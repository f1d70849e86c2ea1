//! Opening the SQLite backend: URL handling, pragmas, pool shape and embedded migrations.
//!
//! Pragmas, and why:
//! - `journal_mode=WAL`: readers (API, reports, `verify`) never block the writer and the writer
//!   never blocks them; a commit is one append to the `-wal` file.
//! - `synchronous=NORMAL` (except durable commits, below): in WAL mode SQLite then syncs the WAL only at checkpoints, not at every
//!   commit. SQLite documents that this is always consistent (never corrupts) and that committed
//!   transactions survive an *application* crash (`kill -9`, panic, OOM kill) whatever the
//!   setting, because the data is already in the operating system's page cache; what it gives up
//!   is durability of the last transactions across an *OS crash or power loss*, which may roll
//!   them back. Because a batch's events and its source cursors commit together, such a
//!   rollback rewinds both, and the sources read the same messages again: nothing is lost and
//!   nothing is counted twice. What no source reads again — a call pushed to the API, an
//!   acknowledgement — is committed with `synchronous=FULL` on its connection
//!   ([`super::Sealing::durable`]): the WAL is synced before the commit returns, so the 2xx
//!   answer is only sent once the event survives a power loss. The engine gathers concurrent
//!   pushes into one such commit (group commit), so the sync is paid per batch, not per call.
//! - `busy_timeout=5s`: a second writer (another process, the `ack` CLI) waits for the lock
//!   instead of failing at once.
//! - `foreign_keys=ON`: enforced if a later migration declares any.
//! - `wal_autocheckpoint=0` plus a background `PASSIVE` checkpoint every [`CHECKPOINT_EVERY`] on
//!   another connection: an automatic checkpoint runs inside the committing writer's transaction
//!   and, with its fsync, stalls that commit (seen as ~100 ms outliers in alert timing); a
//!   passive checkpoint runs beside the writer without blocking it.
//! - the page cache stays at SQLite's default (2 MiB a connection): an append touches only the
//!   ledger's last pages (rows go in seq order and nothing else is indexed), and readers walk
//!   the ledger in seq order, so a larger cache would only hold memory.

use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::StoreError;
use super::chain::LEDGER_FORMAT;
use super::sql;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits for another writer's lock before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page size of a new database, in bytes (an existing one keeps its own). A ledger row is about
/// 750 bytes, so SQLite's default 4 KiB page holds five of them; every page is written twice (to
/// the WAL, then by the checkpoint), and on a backfill the per-page write calls cost more than
/// the bytes. 16 KiB pages made a 1,000,000-row backfill 4–10 % faster with 1.5 s less CPU.
const PAGE_SIZE: u32 = 16 * 1024;

/// Connections for a file database: one writer at a time (the write lock), plus readers for the
/// API and reports running beside it.
const FILE_POOL_SIZE: u32 = 4;

fn is_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Opens (creating if needed) and migrates the database at `url`; `shown` is the redacted URL
/// for messages.
pub async fn open(url: &str, shown: &str) -> Result<SqlitePool, StoreError> {
    let in_memory = is_memory(url);
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::InvalidUrl {
            url: shown.to_string(),
            reason: e.to_string(),
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .page_size(PAGE_SIZE)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .pragma("wal_autocheckpoint", if in_memory { "1000" } else { "0" });

    let pool_options = if in_memory {
        // An in-memory database lives as long as its last connection: keep exactly one, forever.
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        let file = options.get_filename();
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                url: shown.to_string(),
                source,
            })?;
        }
        SqlitePoolOptions::new().max_connections(FILE_POOL_SIZE)
    };

    let pool = pool_options
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Open {
            url: shown.to_string(),
            source,
        })?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|source| StoreError::Migrate {
            url: shown.to_string(),
            source,
        })?;

    let format: Option<String> = sqlx::query_scalar(sql::LEDGER_FORMAT)
        .fetch_optional(&pool)
        .await
        .map_err(StoreError::db("read ledger format"))?;
    match format.as_deref() {
        Some(LEDGER_FORMAT) => {
            if !in_memory {
                tokio::spawn(checkpoint_in_background(pool.clone()));
            }
            Ok(pool)
        }
        other => {
            pool.close().await;
            Err(StoreError::Format {
                url: shown.to_string(),
                found: other.unwrap_or("(none)").to_string(),
                supported: LEDGER_FORMAT.to_string(),
            })
        }
    }
}

/// The file of a `sqlite:` URL, `None` for an in-memory database or another scheme.
pub fn file_of(url: &str) -> Option<std::path::PathBuf> {
    if !url.starts_with("sqlite:") || is_memory(url) {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    Some(options.get_filename().to_path_buf())
}

/// Opens an existing database for reading beside a running daemon: not created if missing, not
/// migrated, no checkpointing task, the ledger format checked. (Not `mode=ro`: a read-only
/// connection to a WAL database fails when the `-shm` file is missing.)
pub async fn open_existing(url: &str, shown: &str) -> Result<SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::InvalidUrl {
            url: shown.to_string(),
            reason: e.to_string(),
        })?
        .create_if_missing(false)
        .busy_timeout(BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(FILE_POOL_SIZE)
        .connect_with(options)
        .await
        .map_err(|source| StoreError::Open {
            url: shown.to_string(),
            source,
        })?;
    let format: Option<String> = sqlx::query_scalar(sql::LEDGER_FORMAT)
        .fetch_optional(&pool)
        .await
        .map_err(StoreError::db("read ledger format"))?;
    match format.as_deref() {
        Some(LEDGER_FORMAT) => Ok(pool),
        other => {
            pool.close().await;
            Err(StoreError::Format {
                url: shown.to_string(),
                found: other.unwrap_or("(none)").to_string(),
                supported: LEDGER_FORMAT.to_string(),
            })
        }
    }
}

/// How often the write-ahead log is copied into the database file. Between two checkpoints the
/// WAL grows by what was written meanwhile (at a sustained 30,000 events/s, about 16 MB).
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Checkpoints the WAL without blocking the writer, until the pool is closed.
async fn checkpoint_in_background(pool: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        tick.tick().await;
        if pool.is_closed() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying at the next tick.");
        }
    }
}
