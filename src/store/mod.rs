//! The store: the append-only, hash-chained ledger of tracker [`Event`]s and the sources' durable
//! cursors, in one database.
//!
//! It owns every byte slawatch persists about inquiries. Inquiry state is derived by replaying
//! the ledger ([`Store::for_each_event`]); a source resumes from its cursor ([`Store::cursors`]).
//! Both are written by [`Store::append`] in **one transaction**, so after a crash at any point
//! either a whole batch (its events and its cursors) is there or none of it is: nothing is
//! lost, nothing is counted twice. Two backends run the same statements (the `sql` submodule keeps
//! them and isolates the few dialect differences): SQLite, one file (the `sqlite` submodule), and
//! PostgreSQL (the [`postgres`] submodule). A ledger has the same bytes and hashes on both
//! (`slawatch store copy` moves one across).
//!
//! # Tables
//!
//! - `ledger(seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash)`: one row per event.
//!   `seq` is 1, 2, 3, … without gaps. `recorded_at` is the commit's instant as RFC 3339 UTC with
//!   exactly six fractional digits (`2026-03-01T09:05:07.123456Z`). `kind` is the event's
//!   `"type"` ([`Event::kind`]). `payload` is the event's JSON exactly as hashed. `inquiry_id`
//!   (not hashed) mirrors the payload's `inquiry_id` for per-inquiry reads over a seq range
//!   ([`Store::events_for_inquiry`]); [`Store::verify`] checks that it agrees with the payload. Triggers refuse `UPDATE` and
//!   `DELETE` on the table (a guard against accidents, not against an attacker).
//! - `cursors(source, key, value, updated_at)`: JSON cursor per source and key.
//! - `inquiries(open_seq, last_seq, id, received_at, channel, language, state, sla, json)`: the
//!   inquiry projection, one row per inquiry with its current outcome, derived from the ledger
//!   and written in the same transaction as its events; never hashed, rebuilt from the ledger
//!   at will (the `projection` submodule).
//! - `meta(key, value)`: `ledger_format` (`1`), a description of the hash and the genesis value.
//!
//! # Hash chain (ledger format 1)
//!
//! For the row with sequence number `seq`:
//!
//! ```text
//! canonical = "{seq}\n{recorded_at}\n{kind}\n{payload}"        (\n is one LF byte, 0x0a)
//! hash      = lower-case hex( sha256( prev_hash ‖ canonical ) )
//! ```
//!
//! where `seq` is written in decimal without padding, the other three are the exact stored
//! strings (UTF-8), `prev_hash` is the *hex text* (64 characters) of the previous row's `hash`,
//! and ‖ is plain concatenation, without separator. The first row (seq 1) has `prev_hash` =
//! 64 zeros. Everything hashed is stored, so the chain can be recomputed from the database
//! alone, without slawatch.
//!
//! ## Recomputing a hash by hand
//!
//! With the `sqlite3` shell and coreutils (the `hex()` round trip keeps the bytes exact, whatever
//! the shell does with newlines):
//!
//! ```sh
//! sqlite3 ledger.db "SELECT hex(prev_hash || seq || char(10) || recorded_at || char(10)
//!                    || kind || char(10) || payload) FROM ledger WHERE seq = 42" \
//!   | xxd -r -p | sha256sum
//! sqlite3 ledger.db "SELECT hash FROM ledger WHERE seq = 42"     # must be the same
//! ```
//!
//! The whole chain, and its links:
//!
//! ```sh
//! sqlite3 ledger.db "SELECT seq, hash, hex(prev_hash || seq || char(10) || recorded_at
//!                    || char(10) || kind || char(10) || payload) FROM ledger ORDER BY seq" |
//! while IFS='|' read -r seq hash canon; do
//!   got=$(printf '%s' "$canon" | xxd -r -p | sha256sum | cut -d' ' -f1)
//!   [ "$got" = "$hash" ] || echo "seq $seq: content does not match its hash"
//! done
//! sqlite3 ledger.db "SELECT b.seq FROM ledger a JOIN ledger b ON b.seq = a.seq + 1
//!                    WHERE b.prev_hash <> a.hash"                # must print nothing
//! sqlite3 ledger.db "SELECT count(*) = max(seq) AND min(seq) = 1 FROM ledger"  # must print 1
//! ```
//!
//! ## What the chain shows, and what it cannot
//!
//! Editing any hashed field of a row, deleting or reordering rows, or inserting a row with a
//! wrong link breaks the chain at the first affected seq, which [`Store::verify`] names.
//! A chain only proves itself consistent: whoever can write the file could drop the last rows,
//! or rewrite the chain from some row onwards with fresh hashes. Two things catch that:
//!
//! - **Signed checkpoints.** With a [`Signer`] ([`Sealing::signer`]), every commit ends with an
//!   `Event::LedgerCheckpoint` row signing the seq and hash of the row before it (Ed25519 over
//!   `slawatch-ledger-checkpoint-v1\n{head_seq}\n{head_hash}`; see the `signing` submodule).
//!   The checkpoint row is chained like any other, so the hash recipe above is unchanged for
//!   every kind. [`Store::audit`] checks every signature with the public key alone.
//! - **A head kept elsewhere** (the `head` submodule publishes it): [`Store::audit`] with an
//!   [`ExpectedHead`] fails when that hash is no longer at its seq.
//!
//! `docs/ledger.md` is the auditor's version of all this, with the openssl commands.
//!
//! # Concurrency and durability
//!
//! One daemon writes a ledger: it holds the `lock` submodule's file lock beside an SQLite
//! database. Inside it the engine is the one writer, but concurrent appends cannot fork the chain: the head is
//! read inside the writing transaction, which on SQLite starts with `BEGIN IMMEDIATE` and so
//! holds the write lock from its first statement, and on PostgreSQL with `LOCK TABLE ledger IN
//! EXCLUSIVE MODE` (see [`postgres`], which also refuses to write on a ledger that lost the
//! head this process published). Reads page through the ledger by seq
//! (keyset pagination), in constant memory and without holding one long read transaction.
//! See the `sqlite` submodule for the pragmas and the durability they give.

/// Upserts a commit's source cursors (`(source, key, JSON value)`) in the transaction `$tx`,
/// stamped `$stamp`; a `null` value removes the key (a Maildir file that left its folder).
/// A macro, not a function: both backends' transactions use it, each with its own types.
macro_rules! write_cursors {
    ($tx:expr, $rows:expr, $stamp:expr) => {
        for (source, key, value) in $rows {
            let query = if value == "null" {
                sqlx::query(sql::DELETE_CURSOR).bind(source).bind(key)
            } else {
                sqlx::query(sql::UPSERT_CURSOR)
                    .bind(source)
                    .bind(key)
                    .bind(value)
                    .bind($stamp)
            };
            query
                .execute(&mut *$tx)
                .await
                .map_err(StoreError::db("append: upsert cursor"))?;
        }
    };
}

mod chain;
mod error;
pub mod head;
pub mod health;
pub mod lease;
pub mod lock;
mod packed;
pub mod postgres;
pub mod signing;
mod sql;
mod sqlite;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

pub use chain::{ExpectedHead, GENESIS, LEDGER_FORMAT, Seals, format_instant, link_hash};
pub use error::{StoreError, redact_url};
pub use health::{WriteState, WriteStatus};
pub use projection::{ProjectionQuery, ProjectionRow, ReceivedInPeriod};
pub use signing::{PublicKey, Signer};

use crate::sources::CursorUpdate;
use chain::{ChainChecker, RowRef};
use slawatch_core::domain::InquiryId;
use slawatch_core::tracker::event::Event;
use sql::Dialect;

/// Rows fetched per page when walking the ledger: large enough to amortize the query, small
/// enough that a page of `InquiryOpened` events stays a few megabytes.
const PAGE_ROWS: i64 = 10_000;

/// Rows per packed page (verify, report): a packed page is one text, which the database builds
/// and the driver copies, so a few of them are alive at once; 2,000 rows (about 2 MB) keep
/// that small while one query still serves thousands of rows.
const PACKED_PAGE_ROWS: i64 = 2_000;

/// One store for the whole daemon. Cloning is cheap (a pool handle).
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(postgres::Pg),
}

/// Runs `$body` with `$pool` bound to the store's pool, whichever the backend: the statements
/// are the same, only their types differ.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool) => $body,
            Store::Postgres(pg) => {
                let $pool = &pg.pool;
                $body
            }
        }
    };
}

/// The lease check that ends a write transaction (see [`lease::Lease::fence`]), for code
/// written once for both backends' connections: PostgreSQL checks, SQLite has nothing to check.
pub(crate) trait Fencing {
    fn fence<'a>(
        &'a mut self,
        store: &'a Store,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'a;
}

impl Fencing for sqlx::SqliteConnection {
    async fn fence(&mut self, _: &Store) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Fencing for sqlx::PgConnection {
    async fn fence(&mut self, store: &Store) -> Result<(), StoreError> {
        match store {
            Store::Postgres(pg) => pg.fence(self).await,
            Store::Sqlite(_) => Ok(()),
        }
    }
}

// After the macro, which they use.
pub mod archive;
mod copy;
pub mod projection;
pub use copy::{CopyError, CopyReport};

/// One ledger row, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    pub seq: i64,
    /// The commit's instant, at the stored (microsecond) precision.
    pub recorded_at: DateTime<Utc>,
    pub event: Event,
    pub prev_hash: String,
    pub hash: String,
}

/// The outcome of [`Store::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every row links to the one before and matches its hash.
    Intact { events: u64, head_hash: String },
    /// The first row that does not. `expected`/`found` are hashes (the recomputed hash or link
    /// vs the stored one), except where `problem` says they are index column values.
    Broken {
        seq: i64,
        expected: String,
        found: String,
        problem: String,
    },
}

/// How a commit is written beyond its rows (see [`Store::commit_sealed`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sealing<'a> {
    /// Appends a signed [`Event::LedgerCheckpoint`] after the commit's events, in the same
    /// transaction: the ledger's head is then always signed.
    pub signer: Option<&'a Signer>,
    /// On disk before the call returns, even across a power loss: on SQLite the commit runs with
    /// `synchronous=FULL` (the WAL is synced at the commit) instead of the ledger's usual
    /// `NORMAL`. For what nobody sends again: pushed calls and acknowledgements.
    pub durable: bool,
}

/// What one [`Store::write`] added: rows `first_seq, first_seq + 1, …` with these hashes, the
/// first linked to `prev_hash`.
struct Written {
    recorded_at: DateTime<Utc>,
    first_seq: i64,
    prev_hash: String,
    hashes: Vec<Arc<str>>,
}

/// What a commit writes beside its events, in the same transaction: the sources' cursors
/// `(source, key, JSON value)` and the inquiry projection's rows.
struct Beside<'a> {
    cursors: Vec<(&'a str, &'a str, String)>,
    projection: Vec<projection::PendingRow>,
}

/// A stored row as read: `(seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash)`.
type RawRow = (i64, String, String, Option<String>, String, String, String);

impl Store {
    /// Opens `sqlite://path/file.db` (parent directories and file created if missing; an
    /// absolute path is `sqlite:///var/lib/…`), `sqlite::memory:` or `postgres://user@host/db`
    /// (see the [`postgres`] submodule for its options) and applies the embedded migrations.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, None).await
    }

    /// [`Store::open`] with the database password (`store.password_file` or the environment),
    /// for a URL that does not carry one.
    pub async fn open_with(url: &str, password: Option<&str>) -> Result<Store, StoreError> {
        let shown = redact_url(url);
        if is_postgres(url) {
            return Ok(Store::Postgres(
                postgres::open(url, &shown, password, true).await?,
            ));
        }
        if !url.starts_with("sqlite:") {
            return Err(StoreError::InvalidUrl {
                url: shown,
                reason: "expected sqlite://path/to/file.db, sqlite::memory: or postgres://user@host:port/database".to_string(),
            });
        }
        Ok(Store::Sqlite(sqlite::open(url, &shown).await?))
    }

    /// Opens an existing ledger for reading (`report`, `audit verify`, `inquiries`): never
    /// creates a database, never migrates one, takes no lock, so it works beside the running
    /// daemon. A missing SQLite file is [`StoreError::Missing`].
    pub async fn open_existing(url: &str) -> Result<Store, StoreError> {
        Store::open_existing_with(url, None).await
    }

    /// [`Store::open_existing`] with the database password.
    pub async fn open_existing_with(
        url: &str,
        password: Option<&str>,
    ) -> Result<Store, StoreError> {
        let shown = redact_url(url);
        if let Some(path) = Store::sqlite_file(url)
            && !path.exists()
        {
            return Err(StoreError::Missing { path });
        }
        if url.starts_with("sqlite:") {
            return Ok(Store::Sqlite(sqlite::open_existing(url, &shown).await?));
        }
        if is_postgres(url) {
            return Ok(Store::Postgres(
                postgres::open(url, &shown, password, false).await?,
            ));
        }
        Store::open_with(url, password).await
    }

    /// From now on, every write transaction checks that this replica holds `lease` (PostgreSQL;
    /// see [`lease`]). Set once; SQLite has one writer by its file lock and ignores it.
    pub fn write_under(&self, lease: Arc<lease::Lease>) {
        if let Store::Postgres(pg) = self {
            let _ = pg.lease.set(lease);
        }
    }

    /// Which backend this is: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// The head this process published before (read from where it was kept across a restart):
    /// on PostgreSQL every later append first checks that it is still in the ledger at its seq,
    /// and refuses with [`StoreError::WentBackwards`] otherwise (see the [`postgres`] submodule).
    /// Each append then moves it to the new head. SQLite keeps one file under the writer's lock,
    /// where a ledger cannot go back behind its writer's back, so this does nothing there.
    pub fn expect_head(&self, head: Option<(i64, String)>) {
        if let Store::Postgres(pg) = self {
            pg.set_published(head);
        }
    }

    /// Keeps the head this daemon publishes in `file` across restarts (PostgreSQL; nothing on
    /// SQLite): the head kept there before is checked now — [`StoreError::WentBackwards`] if the
    /// ledger lost it — and enforced on every append, and each commit rewrites the file.
    pub async fn keep_published_head(&self, file: &std::path::Path) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(_) => Ok(()),
            Store::Postgres(pg) => pg.keep_head_in(file).await,
        }
    }

    /// The database file of a `sqlite://` URL; `None` for an in-memory database or another
    /// backend.
    pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
        sqlite::file_of(url)
    }

    fn dialect(&self) -> Dialect {
        match self {
            Store::Sqlite(_) => Dialect::Sqlite,
            Store::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Appends `events` in order, extending the chain, and upserts `cursors` (per source and
    /// key), all in one transaction stamped `recorded_at`. Returns the new entries. Empty
    /// `events` with some cursors is a cursor-only commit; both empty is a no-op.
    pub async fn append(
        &self,
        recorded_at: DateTime<Utc>,
        events: &[Event],
        cursors: &[(String, CursorUpdate)],
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let written = self
            .write(recorded_at, events, cursors, Sealing::default())
            .await?;
        let mut prev_hash = written.prev_hash;
        Ok(events
            .iter()
            .zip(written.hashes)
            .enumerate()
            .map(|(i, (event, hash))| LedgerEntry {
                seq: written.first_seq + i as i64,
                recorded_at: written.recorded_at,
                event: event.clone(),
                prev_hash: std::mem::replace(&mut prev_hash, hash.to_string()),
                hash: hash.to_string(),
            })
            .collect())
    }

    /// [`Store::append`] without handing the entries back: the same transaction and the same
    /// rows, minus a copy of every event. The engine's path, where a backfill appends events by
    /// the hundred thousand and needs only their seqs: returns the first one (`events[i]` is
    /// `first + i`).
    pub async fn commit(
        &self,
        recorded_at: DateTime<Utc>,
        events: &[Event],
        cursors: &[(String, CursorUpdate)],
    ) -> Result<i64, StoreError> {
        self.write(recorded_at, events, cursors, Sealing::default())
            .await
            .map(|written| written.first_seq)
    }

    /// [`Store::commit`], sealed as `sealing` says: with a signed checkpoint after the events
    /// and/or synced to disk before it returns. A cursor-only commit gets no checkpoint.
    pub async fn commit_sealed(
        &self,
        recorded_at: DateTime<Utc>,
        events: &[Event],
        cursors: &[(String, CursorUpdate)],
        sealing: Sealing<'_>,
    ) -> Result<i64, StoreError> {
        self.write(recorded_at, events, cursors, sealing)
            .await
            .map(|written| written.first_seq)
    }

    /// The one write path of [`Store::append`] and [`Store::commit`].
    async fn write(
        &self,
        recorded_at: DateTime<Utc>,
        events: &[Event],
        cursors: &[(String, CursorUpdate)],
        sealing: Sealing<'_>,
    ) -> Result<Written, StoreError> {
        self.write_with(recorded_at, events, cursors, sealing, Vec::new())
            .await
    }

    /// [`Store::write`], with the inquiry projection's rows of the batch
    /// ([`Store::commit_projected`]).
    async fn write_with(
        &self,
        recorded_at: DateTime<Utc>,
        events: &[Event],
        cursors: &[(String, CursorUpdate)],
        sealing: Sealing<'_>,
        projection: Vec<projection::PendingRow>,
    ) -> Result<Written, StoreError> {
        let stamp = format_instant(recorded_at);
        // Re-read so the returned instant is exactly what replay will see (microseconds).
        let recorded_at = chain::parse_instant(&stamp).unwrap_or(recorded_at);
        if events.is_empty() && cursors.is_empty() {
            return Ok(Written {
                recorded_at,
                first_seq: 1,
                prev_hash: GENESIS.to_string(),
                hashes: Vec::new(),
            });
        }

        // Everything that can fail without the database fails before the transaction.
        let mut buffer = Vec::with_capacity(1024);
        let payloads = events
            .iter()
            .map(|e| {
                // Through one buffer, so each payload is allocated once at its size.
                buffer.clear();
                serde_json::to_writer(&mut buffer, e)
                    .map(|()| String::from_utf8_lossy(&buffer).into_owned())
                    .map_err(|source| StoreError::Serialize {
                        what: format!("{} event", e.kind()),
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cursor_rows = cursors
            .iter()
            .map(|(source, c)| {
                serde_json::to_string(&c.value)
                    .map(|v| (source.as_str(), c.key.as_str(), v))
                    .map_err(|e| StoreError::Serialize {
                        what: format!("cursor {source}/{}", c.key),
                        source: e,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let dialect = self.dialect();
        let pool = match self {
            Store::Sqlite(pool) => pool,
            Store::Postgres(pg) => {
                let beside = Beside {
                    cursors: cursor_rows,
                    projection,
                };
                let written =
                    postgres::write_rows(pg, &stamp, events, payloads, beside, sealing).await;
                if let Err(e) = &written {
                    pg.after_failure(e).await;
                }
                let (first_seq, prev_hash, hashes) = written?;
                return Ok(Written {
                    recorded_at,
                    first_seq,
                    prev_hash,
                    hashes,
                });
            }
        };
        let mut conn = pool
            .acquire()
            .await
            .map_err(StoreError::db("append: connect"))?;
        if sealing.durable {
            sqlx::query(sql::SYNC_FULL)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::db("append: synchronous=FULL"))?;
        }
        let written = Self::write_rows(
            &mut conn,
            dialect,
            &stamp,
            events,
            payloads,
            Beside {
                cursors: cursor_rows,
                projection,
            },
            sealing,
        )
        .await;
        if written.is_err() {
            // A connection whose write failed is closed, not handed back to the pool. When the
            // COMMIT itself fails (a full disk, an I/O error) SQLite has already rolled the
            // transaction back, so sqlx's rollback on drop fails too and sqlx goes on counting
            // the connection as inside a transaction: every later BEGIN on it would fail
            // ("non-zero transaction depth") long after the disk has room again. The next write
            // opens a fresh connection.
            conn.close_on_drop();
        } else if sealing.durable {
            // Back to the ledger's usual setting for whatever uses the connection next; if even
            // that fails, the connection is dropped rather than left slower than it should be.
            if sqlx::query(sql::SYNC_NORMAL)
                .execute(&mut *conn)
                .await
                .is_err()
            {
                conn.detach();
            }
        }
        let (first_seq, prev_hash, hashes) = written?;
        Ok(Written {
            recorded_at,
            first_seq,
            prev_hash,
            hashes,
        })
    }

    /// The transaction of [`Store::write`]: reads the head, chains and inserts the rows (and the
    /// checkpoint when signing), upserts the cursors, commits. Returns the first seq, the hash
    /// it links to and every new row's hash.
    async fn write_rows(
        conn: &mut sqlx::SqliteConnection,
        dialect: Dialect,
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
        let mut tx = sqlx::Connection::begin_with(&mut *conn, dialect.begin_write())
            .await
            .map_err(StoreError::db("append: begin"))?;
        if let Some(lock) = dialect.lock_ledger() {
            sqlx::query(lock)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("append: lock ledger"))?;
        }
        let head: Option<(i64, String)> = sqlx::query_as(sql::HEAD)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db("append: read head"))?;
        let (head_seq, head_hash) = head.unwrap_or_else(|| (0, GENESIS.to_string()));

        // Chain first (pure), then write the rows in a few multi-row inserts. Text is bound as
        // shared `Arc<str>` (or moved, for payloads): sqlx copies a bound `&str` into two new
        // allocations, which for seven columns was most of an append's allocations.
        let Chained {
            events,
            checkpoint,
            payloads,
            hashes,
            head_hash,
        } = chain_batch(head_seq, head_hash.into(), stamp, events, payloads, sealing)?;
        let events: Vec<&Event> = events.iter().chain(checkpoint.as_ref()).collect();
        let stamp_text: Arc<str> = stamp.into();
        let mut kinds: Vec<(&'static str, Arc<str>)> = Vec::new();
        let mut payloads = payloads.into_iter();
        let mut next = 0;
        for size in sql::insert_chunks(events.len()) {
            let mut insert = sqlx::query(sql::insert_events(dialect, size));
            for i in next..next + size {
                let prev = if i == 0 { &head_hash } else { &hashes[i - 1] };
                let kind = events[i].kind();
                let kind = match kinds.iter().find(|(k, _)| *k == kind) {
                    Some((_, shared)) => shared.clone(),
                    None => {
                        let shared: Arc<str> = kind.into();
                        kinds.push((kind, shared.clone()));
                        shared
                    }
                };
                insert = insert
                    .bind(head_seq + 1 + i as i64)
                    .bind(stamp_text.clone())
                    .bind(kind)
                    .bind(
                        events[i]
                            .inquiry_id()
                            .map(|id| Arc::<str>::from(id.as_str())),
                    )
                    .bind(payloads.next().expect("one payload per event"))
                    .bind(prev.clone())
                    .bind(hashes[i].clone());
            }
            insert
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("append: insert events"))?;
            next += size;
        }
        projection::upsert(
            &mut tx,
            dialect,
            projection::place(projection, head_seq + 1),
        )
        .await?;
        write_cursors!(tx, cursor_rows, stamp);
        tx.commit()
            .await
            .map_err(StoreError::db("append: commit"))?;
        Ok((head_seq + 1, head_hash.to_string(), hashes))
    }

    async fn page(&self, after_seq: i64, limit: i64) -> Result<Vec<RawRow>, StoreError> {
        with_pool!(self, pool => sqlx::query_as(sql::PAGE)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("read ledger page")))
    }

    /// Up to `limit` entries with `seq > after_seq`, in seq order (for incremental readers).
    pub async fn events_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        self.page(after_seq, i64::from(limit))
            .await?
            .into_iter()
            .map(decode)
            .collect()
    }

    /// Calls `f` with every entry in seq order, one page at a time, in constant memory; returns
    /// how many entries were seen. This is the replay path at start-up. `f` may stop the walk by
    /// returning an error, which is passed through.
    pub async fn for_each_event<E, F>(&self, mut f: F) -> Result<u64, E>
    where
        F: FnMut(LedgerEntry) -> Result<(), E>,
        E: From<StoreError>,
    {
        let mut after = i64::MIN;
        let mut count = 0u64;
        loop {
            let rows = self.page(after, PAGE_ROWS).await?;
            let full = rows.len() as i64 == PAGE_ROWS;
            for row in rows {
                after = row.0;
                f(decode(row)?)?;
                count += 1;
            }
            if !full {
                return Ok(count);
            }
        }
    }

    /// Every entry in seq order, collected. Convenient for tests and small ledgers; the daemon's
    /// replay uses [`Store::for_each_event`], which does not hold the whole ledger in memory.
    pub async fn events(&self) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut all = Vec::new();
        self.for_each_event(|e| {
            all.push(e);
            Ok::<(), StoreError>(())
        })
        .await?;
        Ok(all)
    }

    /// The entries about one inquiry among seqs `first..=last`, in seq order. The caller knows
    /// the range (the tracker notes, per inquiry, the seqs of its first and last event), so the
    /// read walks the primary key over it. The ledger deliberately has no index on
    /// `inquiry_id`: ids are hashes, so such an index takes every new row at a random place, and
    /// each append rewrote index pages all over the file (it cost two thirds of a backfill).
    pub async fn events_for_inquiry(
        &self,
        id: &InquiryId,
        (first, last): (i64, i64),
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows: Vec<RawRow> = with_pool!(self, pool => sqlx::query_as(sql::FOR_INQUIRY)
            .bind(first)
            .bind(last)
            .bind(id.as_str())
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("read inquiry events")))?;
        rows.into_iter().map(decode).collect()
    }

    /// The cursor `key` of `source`, if one was committed.
    pub async fn cursor(
        &self,
        source: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let value: Option<String> = with_pool!(self, pool => sqlx::query_scalar(sql::CURSOR)
            .bind(source)
            .bind(key)
            .fetch_optional(pool)
            .await
            .map_err(StoreError::db("read cursor")))?;
        value.map(|v| decode_cursor(source, key, &v)).transpose()
    }

    /// Every cursor of `source`, by key.
    pub async fn cursors(
        &self,
        source: &str,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let rows: Vec<(String, String)> = with_pool!(self, pool => sqlx::query_as(sql::CURSORS)
            .bind(source)
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("read cursors")))?;
        rows.into_iter()
            .map(|(key, v)| {
                let value = decode_cursor(source, &key, &v)?;
                Ok((key, value))
            })
            .collect()
    }

    /// Recomputes the whole chain in seq order, in constant memory, and reports the first row
    /// that is missing, out of place, not linked to its predecessor, not matching its hash, or
    /// whose index columns disagree with its payload. Payloads are not decoded into events, so
    /// this works on ledgers written by any version using the same format.
    pub async fn verify(&self) -> Result<Verification, StoreError> {
        let mut checker = ChainChecker::default();
        let mut pages = PageReader::start(self);
        while let Some(page) = pages.next().await? {
            for row in page.rows() {
                if let Err(broken) = checker.check(row) {
                    return Ok(broken);
                }
            }
        }
        Ok(checker.finish())
    }

    /// [`Store::verify`], also checking every checkpoint's signature with `key` and that
    /// `expect` (a head recorded earlier) is still in the chain at its seq. With `signed_head`,
    /// the last row must be a signed checkpoint (an auditor's check: see
    /// [`chain::ChainChecker::finish_sealed`]).
    pub async fn audit(
        &self,
        key: Option<PublicKey>,
        expect: Option<ExpectedHead>,
        signed_head: bool,
    ) -> Result<(Verification, Seals), StoreError> {
        let mut checker = chain::ChainChecker::new(key, expect);
        let mut pages = PageReader::start(self);
        while let Some(page) = pages.next().await? {
            for row in page.rows() {
                if let Err(broken) = checker.check(row) {
                    let seals = checker.finish_sealed(false).1;
                    return Ok((broken, seals));
                }
            }
        }
        Ok(checker.finish_sealed(signed_head))
    }

    /// Up to `limit` rows with `seq > after_seq`, packed into one value by the database
    /// (see `sql::PACKED_PAGE`): the fast path for walking the whole ledger.
    async fn packed_page(&self, after_seq: i64, limit: i64) -> Result<LedgerPage, StoreError> {
        let statement = self.dialect().packed_page();
        let (count, text): (i64, String) = with_pool!(self, pool => sqlx::query_as(statement)
            .bind(after_seq)
            .bind(limit)
            .fetch_one(pool)
            .await
            .map_err(StoreError::db("read ledger page")))?;
        let spans = packed::unpack(&text, after_seq).map_err(|e| StoreError::CorruptRow {
            seq: e.after_seq.saturating_add(1).max(1),
            problem: format!("the database returned a malformed page: {}", e.problem),
        })?;
        if spans.len() as i64 != count {
            return Err(StoreError::CorruptRow {
                seq: after_seq.saturating_add(1).max(1),
                problem: format!(
                    "the database returned a page of {count} rows packed as {}",
                    spans.len()
                ),
            });
        }
        Ok(LedgerPage { text, spans })
    }

    /// Walks the ledger once, in seq order and constant memory, checking every row exactly as
    /// [`Store::verify`] does and handing each page of rows, undecoded, to `f` (which decodes
    /// them where it likes: [`LedgerPage::decode`]). One read of the ledger serves both the
    /// verification and a replay. The walk goes on past a broken link, so the caller still sees
    /// every row; the verdict names the first one. `f` may stop the walk with an error, which is
    /// passed through.
    pub async fn walk_verified<E, F>(&self, f: F) -> Result<Verification, E>
    where
        F: FnMut(LedgerPage) -> Result<(), E>,
        E: From<StoreError>,
    {
        self.walk_checked(None, f).await.map(|(v, _)| v)
    }

    /// [`Store::walk_verified`], checking checkpoint signatures with `key` as well (the
    /// daemon's start-up replay).
    pub async fn walk_checked<E, F>(
        &self,
        key: Option<PublicKey>,
        mut f: F,
    ) -> Result<(Verification, Seals), E>
    where
        F: FnMut(LedgerPage) -> Result<(), E>,
        E: From<StoreError>,
    {
        let mut checker = ChainChecker::new(key, None);
        let mut broken = None;
        let mut pages = PageReader::start(self);
        while let Some(page) = pages.next().await? {
            if broken.is_none() {
                for row in page.rows() {
                    if let Err(verdict) = checker.check(row) {
                        broken = Some(verdict);
                        break;
                    }
                }
            }
            f(page)?;
        }
        let (verification, seals) = checker.finish_sealed(false);
        Ok((broken.unwrap_or(verification), seals))
    }

    /// The rows after `after` (`(seq, hash)` of a row already trusted; `None`: from the first),
    /// a page at a time, each checked against the chain as it is read (start-up from a
    /// snapshot: only the rows after it are read and checked).
    pub fn checked_pages(
        &self,
        key: Option<PublicKey>,
        after: Option<(i64, String)>,
    ) -> CheckedPages {
        self.checked_until(key, after, i64::MAX)
    }

    /// [`Store::checked_pages`] up to seq `until` (included).
    fn checked_until(
        &self,
        key: Option<PublicKey>,
        after: Option<(i64, String)>,
        until: i64,
    ) -> CheckedPages {
        let (reader, checker) = match after {
            Some((seq, hash)) => (
                PageReader::between(self, seq, until),
                ChainChecker::resume(key, seq, hash),
            ),
            None => (
                PageReader::between(self, 0, until),
                ChainChecker::new(key, None),
            ),
        };
        CheckedPages {
            reader,
            checker,
            broken: None,
        }
    }

    /// The rows `first..=last`, a page at a time, each checked against the chain as it is read,
    /// its predecessor's stored hash taken as it is: they are checked link by link and against
    /// their hashes, the rows before and after them not at all (a report over one period
    /// checks the rows it reads).
    pub async fn checked_range(&self, first: i64, last: i64) -> Result<CheckedPages, StoreError> {
        let before: Option<String> = if first <= 1 {
            None
        } else {
            with_pool!(self, pool => sqlx::query_scalar(sql::HASH_AT)
                .bind(first - 1)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::db("read a row's hash")))?
        };
        // No such row: the check from the first row names what is missing.
        Ok(self.checked_until(None, before.map(|hash| (first - 1, hash)), last))
    }

    /// Up to `limit` rows of the desk's record with `after < seq < before`, in seq order,
    /// decoded: the policies, the monitor's own events (starts, heartbeats, stops, leader
    /// changes, sources down and up, its alerts), contradictions and verifications, found by the
    /// partial index `ledger_record` without walking the ledger. Each row is checked against its
    /// own hash (its link to its neighbours is not: they are not read); the first that fails
    /// ends the list, with its verdict.
    pub async fn record_rows(
        &self,
        after: i64,
        before: i64,
        limit: i64,
    ) -> Result<(Vec<(i64, String, Event)>, Option<Verification>), StoreError> {
        let rows: Vec<RawRow> = with_pool!(self, pool => sqlx::query_as(sql::RECORD_ROWS)
            .bind(after)
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("read the desk's record")))?;
        let mut out = Vec::with_capacity(rows.len());
        for (seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash) in rows {
            let row = RowRef {
                seq,
                recorded_at: &recorded_at,
                kind: &kind,
                inquiry_id: inquiry_id.as_deref(),
                payload: &payload,
                prev_hash: &prev_hash,
                hash: &hash,
            };
            if let Err(broken) = ChainChecker::resume(None, seq - 1, prev_hash.clone()).check(row) {
                return Ok((out, Some(broken)));
            }
            let event = decode_event(&kind, &payload).map_err(|e| StoreError::CorruptRow {
                seq,
                problem: format!("payload is not a known event: {e}"),
            })?;
            out.push((seq, hash, event));
        }
        Ok((out, None))
    }

    /// The stored `kind` and `inquiry_id` columns of row `seq`, without decoding its payload
    /// (so it works on a tampered row); `None` if there is no such row. Used to name the event
    /// at a broken link.
    pub async fn row_label(
        &self,
        seq: i64,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        let rows = self.page(seq.saturating_sub(1), 1).await?;
        Ok(rows
            .into_iter()
            .find(|r| r.0 == seq)
            .map(|(_, _, kind, inquiry_id, ..)| (kind, inquiry_id)))
    }

    /// The seqs of the rows recorded in `[from, to)`, first and last; `None` when there are
    /// none. Found by bisection on `recorded_at` (a few point reads), which commits stamp in
    /// seq order; should the clock have stepped back between two commits, the answer is still
    /// a range whose edges were recorded on either side of `from` and `to`.
    pub async fn recorded_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let Some((head, _)) = self.head().await? else {
            return Ok(None);
        };
        let first = self.first_recorded_at_or_after(from, head).await?;
        let last = self.first_recorded_at_or_after(to, head).await? - 1;
        Ok((first <= last).then_some((first, last)))
    }

    /// The first seq in `1..=head` recorded at or after `at` (`head + 1` if none).
    async fn first_recorded_at_or_after(
        &self,
        at: DateTime<Utc>,
        head: i64,
    ) -> Result<i64, StoreError> {
        let at = format_instant(at);
        let (mut low, mut high) = (1, head + 1);
        while low < high {
            let middle = low + (high - low) / 2;
            let stamp: Option<String> = with_pool!(self, pool => sqlx::query_scalar(sql::RECORDED_AT)
                    .bind(middle)
                    .fetch_optional(pool)
                    .await
                    .map_err(StoreError::db("read when a row was recorded")))?;
            // A missing row (a broken ledger) counts as recorded late: the range only widens.
            if stamp.is_none_or(|stamp| stamp >= at) {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        Ok(low)
    }

    /// The last row's `(seq, hash)`, or `None` for an empty ledger.
    pub async fn head(&self) -> Result<Option<(i64, String)>, StoreError> {
        with_pool!(self, pool => sqlx::query_as(sql::HEAD)
            .fetch_optional(pool)
            .await
            .map_err(StoreError::db("read head")))
    }

    /// Closes every connection (on SQLite this also checkpoints the WAL into the main file).
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await);
    }
}

/// Ledger pages checked against the chain as they are read ([`Store::checked_pages`]).
pub struct CheckedPages {
    reader: PageReader,
    checker: ChainChecker,
    broken: Option<Verification>,
}

impl CheckedPages {
    /// The next page, or `None` after the last. Past a broken link pages still come (the
    /// verdict names the first break).
    pub async fn next(&mut self) -> Result<Option<LedgerPage>, StoreError> {
        let Some(page) = self.reader.next().await? else {
            return Ok(None);
        };
        if self.broken.is_none() {
            for row in page.rows() {
                if let Err(verdict) = self.checker.check(row) {
                    self.broken = Some(verdict);
                    break;
                }
            }
        }
        Ok(Some(page))
    }

    /// The chain's verdict over the rows read, with what was found about signatures.
    pub fn finish(self) -> (Verification, Seals) {
        let (verification, seals) = self.checker.finish_sealed(false);
        (self.broken.unwrap_or(verification), seals)
    }
}

/// Whether `url` names a PostgreSQL database.
fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A batch chained onto the ledger's head, ready to insert: the events (and the checkpoint
/// sealing them, if signing), their payloads and hashes, and the hash the first one links to.
pub(crate) struct Chained<'a> {
    events: &'a [Event],
    checkpoint: Option<Event>,
    payloads: Vec<String>,
    hashes: Vec<Arc<str>>,
    head_hash: Arc<str>,
}

impl Chained<'_> {
    /// Every row's event, the checkpoint last.
    fn all(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().chain(self.checkpoint.as_ref())
    }
}

/// Chains `events` (serialized as `payloads`) onto the head `(head_seq, head_hash)`, stamped
/// `stamp`; with a signer, appends the checkpoint signing the last of them. Pure: both backends
/// insert what this returns.
fn chain_batch<'a>(
    head_seq: i64,
    head_hash: Arc<str>,
    stamp: &str,
    events: &'a [Event],
    mut payloads: Vec<String>,
    sealing: Sealing<'_>,
) -> Result<Chained<'a>, StoreError> {
    let mut hashes: Vec<Arc<str>> = Vec::with_capacity(events.len() + 1);
    for (i, (event, payload)) in events.iter().zip(&payloads).enumerate() {
        let prev = hashes.last().unwrap_or(&head_hash);
        let seq = head_seq + 1 + i as i64;
        let hex = chain::link_hash_hex(prev, seq, stamp, event.kind(), payload);
        hashes.push(std::str::from_utf8(&hex).expect("hex digits").into());
    }
    // The seal: a checkpoint signing the last event's seq and hash, chained after it.
    let checkpoint = match (sealing.signer, hashes.last().cloned()) {
        (Some(signer), Some(last)) => {
            let head_seq = head_seq + events.len() as i64;
            let at = chain::parse_instant(stamp).unwrap_or_else(Utc::now);
            let event = signer.checkpoint(head_seq, &last, at);
            let payload =
                serde_json::to_string(&event).map_err(|source| StoreError::Serialize {
                    what: "ledger_checkpoint event".to_string(),
                    source,
                })?;
            let hex = chain::link_hash_hex(&last, head_seq + 1, stamp, event.kind(), &payload);
            hashes.push(std::str::from_utf8(&hex).expect("hex digits").into());
            payloads.push(payload);
            Some(event)
        }
        _ => None,
    };
    Ok(Chained {
        events,
        checkpoint,
        payloads,
        hashes,
        head_hash,
    })
}

/// Reads the whole ledger a packed page at a time, in seq order, fetching the next page while
/// the caller works on the current one (the database and the hashing then use two cores).
struct PageReader {
    store: Store,
    /// The last seq to read.
    until: i64,
    /// The page being read, and how many rows it asked for.
    next: Option<(tokio::task::JoinHandle<Result<LedgerPage, StoreError>>, i64)>,
}

impl PageReader {
    fn start(store: &Store) -> PageReader {
        PageReader::between(store, i64::MIN, i64::MAX)
    }

    /// Reads the rows after `seq` up to `until` (included).
    fn between(store: &Store, seq: i64, until: i64) -> PageReader {
        let mut reader = PageReader {
            store: store.clone(),
            until,
            next: None,
        };
        reader.fetch(seq);
        reader
    }

    fn fetch(&mut self, after: i64) {
        // Seqs have no gaps: the rows up to `until` are at most `until - after`.
        let limit = PACKED_PAGE_ROWS.min(self.until.saturating_sub(after));
        if limit <= 0 {
            return;
        }
        let store = self.store.clone();
        self.next = Some((
            tokio::spawn(async move { store.packed_page(after, limit).await }),
            limit,
        ));
    }

    /// The next page, or `None` after the last.
    async fn next(&mut self) -> Result<Option<LedgerPage>, StoreError> {
        let Some((pending, limit)) = self.next.take() else {
            return Ok(None);
        };
        let page = match pending.await {
            Ok(page) => page?,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Only a runtime shutting down cancels the read.
                Err(_) => {
                    return Err(StoreError::Database {
                        op: "read ledger page",
                        source: sqlx::Error::WorkerCrashed,
                    });
                }
            },
        };
        if page.len() as i64 == limit
            && let Some(last) = page.last_seq()
        {
            self.fetch(last);
        }
        Ok(Some(page))
    }
}

impl Drop for PageReader {
    fn drop(&mut self) {
        if let Some((pending, _)) = self.next.take() {
            pending.abort();
        }
    }
}

/// Rows as read from the ledger, in seq order, not decoded yet (see [`Store::walk_verified`]):
/// one text holding the page, and where each row is in it.
#[derive(Debug)]
pub struct LedgerPage {
    text: String,
    spans: Vec<packed::RowSpan>,
}

impl LedgerPage {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The seq of the page's last row.
    pub fn last_seq(&self) -> Option<i64> {
        self.spans.last().map(|r| r.seq)
    }

    fn rows(&self) -> impl Iterator<Item = RowRef<'_>> {
        self.spans.iter().map(|s| s.row(&self.text))
    }

    /// [`LedgerPage::events`] of the rows `keep(seq, inquiry_id column)` accepts; the others
    /// are not decoded at all (a report folds only the rows of its period's inquiries).
    pub fn events_where<'p>(
        &'p self,
        keep: impl Fn(i64, Option<&str>) -> bool + 'p,
    ) -> impl Iterator<Item = Result<(i64, Event), StoreError>> + 'p {
        self.rows()
            .filter(move |row| keep(row.seq, row.inquiry_id))
            .map(|row| read_event(row.seq, row.kind, row.payload))
    }

    /// Each row's seq and event, in seq order; a payload that is not a known event is a
    /// [`StoreError::CorruptRow`].
    pub fn events(&self) -> impl Iterator<Item = Result<(i64, Event), StoreError>> + '_ {
        self.rows()
            .map(|row| read_event(row.seq, row.kind, row.payload))
    }
}

/// Row `seq`'s event ([`decode_event`]); a payload that is not a known event is a
/// [`StoreError::CorruptRow`].
fn read_event(seq: i64, kind: &str, payload: &str) -> Result<(i64, Event), StoreError> {
    decode_event(kind, payload)
        .map(|event| (seq, event))
        .map_err(|e| StoreError::CorruptRow {
            seq,
            problem: format!("payload is not a known event: {e}"),
        })
}

/// The event in `payload`. The two commonest kinds (an inquiry opened, an inquiry answered)
/// are read straight into their records, which costs half of reading an `Event` (its `"type"`
/// tag makes serde buffer the whole object first); `kind` is the row's kind column, which the
/// chain check holds equal to the payload's `"type"`, so on an intact chain the result is the
/// `Event` reading's. Any other kind, or a payload that does not read as its column says, is
/// read as an `Event`.
fn decode_event(kind: &str, payload: &str) -> serde_json::Result<Event> {
    use slawatch_core::tracker::event::{InquiryOpened, InquiryResponded};
    match kind {
        "inquiry_opened" => {
            if let Ok(e) = serde_json::from_str::<InquiryOpened>(payload) {
                return Ok(Event::InquiryOpened(Box::new(e)));
            }
        }
        "inquiry_responded" => {
            if let Ok(e) = serde_json::from_str::<InquiryResponded>(payload) {
                return Ok(Event::InquiryResponded(Box::new(e)));
            }
        }
        _ => {}
    }
    serde_json::from_str(payload)
}

fn decode(row: RawRow) -> Result<LedgerEntry, StoreError> {
    let (seq, recorded_at, _kind, _inquiry_id, payload, prev_hash, hash) = row;
    let recorded_at = chain::parse_instant(&recorded_at).ok_or_else(|| StoreError::CorruptRow {
        seq,
        problem: format!("recorded_at {recorded_at:?} is not an RFC 3339 instant"),
    })?;
    let event = serde_json::from_str(&payload).map_err(|e| StoreError::CorruptRow {
        seq,
        problem: format!("payload is not a known event: {e}"),
    })?;
    Ok(LedgerEntry {
        seq,
        recorded_at,
        event,
        prev_hash,
        hash,
    })
}

fn decode_cursor(source: &str, key: &str, value: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(value).map_err(|e| StoreError::CorruptCursor {
        source_name: source.to_string(),
        key: key.to_string(),
        problem: format!("value is not JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use slawatch_core::domain::{Channel, Language};
    use slawatch_core::tracker::event::{
        InquiryKind, InquiryOpened, InquiryResponded, LanguageSource, Outcome, ResponseKind,
    };

    /// The desk's record is found through its partial index, not by walking the ledger: the
    /// planner matched the query's kind list to the index's predicate.
    #[tokio::test]
    async fn the_record_is_read_through_its_index() {
        let store = Store::open("sqlite::memory:").await.expect("store");
        let Store::Sqlite(pool) = &store else {
            panic!("SQLite");
        };
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {}",
            sql::RECORD_ROWS
        )))
        .bind(0i64)
        .bind(i64::MAX)
        .bind(10i64)
        .fetch_all(pool)
        .await
        .expect("plan");
        let plan: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INDEX ledger_record")
                    || step.contains("USING COVERING INDEX ledger_record")),
            "{plan:?}"
        );
    }

    #[test]
    fn the_quick_reading_of_common_events_is_the_event_reading() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
        let events = [
            Event::InquiryOpened(Box::new(InquiryOpened {
                inquiry_id: InquiryId::from_display("e1"),
                channel: Channel::Email,
                source: "mail".into(),
                external_id: "<m1@customer.example>".into(),
                thread_id: "<m1@customer.example>".into(),
                digest: Some("d1".into()),
                customer: "ana@customer.example".into(),
                customer_name: Some("Ana".into()),
                subject: "استفسار".into(),
                language: Language::Ar,
                language_source: LanguageSource::Text,
                reply_to: vec!["ana@home.example".into()],
                received_at: at,
                first_seen_at: at,
                date_header: Some(at),
                deadline_at: at,
                warn_at: vec![at],
                policy: "default@1".into(),
                kind: InquiryKind::NextReply,
                call: None,
            })),
            Event::InquiryResponded(Box::new(InquiryResponded {
                inquiry_id: InquiryId::from_display("e1"),
                at,
                response_seconds: 60,
                kind: ResponseKind::Manual,
                responder: "maria".into(),
                external_id: None,
                outcome: Outcome::Met,
                via: Some(slawatch_core::tracker::observation::AckVia::Phone),
                note: Some("called back".into()),
            })),
            Event::InquiryBreached {
                inquiry_id: InquiryId::from_display("e1"),
                at,
            },
        ];
        for event in events {
            let payload = serde_json::to_string(&event).unwrap();
            assert_eq!(decode_event(event.kind(), &payload).unwrap(), event);
        }
        // A payload that is not what its column says is read for what it is.
        let breach = r#"{"type":"inquiry_breached","inquiry_id":"e1","at":"2026-03-01T09:00:00Z"}"#;
        assert!(matches!(
            decode_event("inquiry_opened", breach),
            Ok(Event::InquiryBreached { .. })
        ));
    }
}
