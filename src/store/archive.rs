//! The working set's side of the store: the archive of threads that left memory, and
//! snapshots of what is in memory (`core/src/tracker/working_set.rs` says why and how).
//!
//! Both are derived data, never hashed: a replay of the ledger rebuilds them. The archive maps a
//! key (64-bit hash of a Message-ID, digest, call id, inquiry id or thread id) to a thread and
//! the thread to the ledger seqs that rebuild it; the events themselves stay in the ledger,
//! read back by seq. A snapshot names the seq and hash of the ledger row it was taken at, so a
//! ledger that is not the one it was taken from is never resumed from it.

use chrono::{DateTime, Utc};
use slawatch_core::tracker::event::Event;
use slawatch_core::tracker::working_set::EvictedThread;
use sqlx::Connection;

use super::{Fencing, Store, StoreError, chain, read_event};

/// Rows per archive `INSERT`.
const ARCHIVE_ROWS: usize = 128;

/// `($1, $2, …), (…), …`: `rows` rows of `columns` numbered placeholders (one text for both
/// backends; the statements are small enough that SQLite's cost of numbered ones does not show).
fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=columns)
                .map(|c| format!("${}", r * columns + c))
                .collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The multi-row upsert of `rows` threads (`which` 0) or keys (1), built once per size.
fn archive_statement(which: usize, rows: usize) -> &'static str {
    static STATEMENTS: std::sync::OnceLock<[Vec<String>; 2]> = std::sync::OnceLock::new();
    let all = STATEMENTS.get_or_init(|| {
        let build = |head: &str, columns: usize, tail: &str| {
            (0..=ARCHIVE_ROWS)
                .map(|n| format!("{head} {} {tail}", placeholders(n.max(1), columns)))
                .collect::<Vec<_>>()
        };
        [
            build(
                "INSERT INTO archived_threads (thread_key, thread, seqs) VALUES",
                3,
                "ON CONFLICT (thread_key) DO UPDATE SET thread = excluded.thread, seqs = excluded.seqs",
            ),
            build(
                "INSERT INTO archive_keys (key, thread_key) VALUES",
                2,
                "ON CONFLICT (key) DO UPDATE SET thread_key = excluded.thread_key",
            ),
        ]
    });
    &all[which][rows]
}

/// How many values one `IN (…)` lookup binds; shorter lists repeat their last value.
const LOOKUP_CHUNK: usize = 256;

/// An archived thread found by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedThread {
    pub thread: String,
    /// The ledger seqs that rebuild it, ascending.
    pub seqs: Vec<i64>,
    /// The keys looked up that lead to it.
    pub keys: Vec<u64>,
}

/// A snapshot as stored.
#[derive(Debug, Clone)]
pub struct StoredSnapshot {
    pub seq: i64,
    pub head_hash: String,
    pub taken_at: DateTime<Utc>,
    pub body: String,
}

/// `SELECT … WHERE <column> IN (?, ?, …)` with [`LOOKUP_CHUNK`] placeholders.
fn lookup_statement(which: usize) -> &'static str {
    static STATEMENTS: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    let placeholders = || {
        (1..=LOOKUP_CHUNK)
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    &STATEMENTS.get_or_init(|| {
        [
            format!(
                "SELECT k.key, t.thread, t.seqs FROM archive_keys k \
                 JOIN archived_threads t ON t.thread_key = k.thread_key WHERE k.key IN ({})",
                placeholders()
            ),
            format!(
                "SELECT seq, kind, payload FROM ledger WHERE seq IN ({}) ORDER BY seq",
                placeholders()
            ),
        ]
    })[which]
}

/// The values of one lookup, padded to [`LOOKUP_CHUNK`] with the last one.
fn padded(chunk: &[i64]) -> impl Iterator<Item = i64> + '_ {
    let last = chunk.last().copied().unwrap_or_default();
    chunk
        .iter()
        .copied()
        .chain(std::iter::repeat_n(last, LOOKUP_CHUNK - chunk.len()))
}

fn encode_seqs(seqs: &[i64]) -> String {
    let mut out = String::with_capacity(seqs.len() * 8);
    for (i, seq) in seqs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&seq.to_string());
    }
    out
}

fn decode_seqs(thread: &str, text: &str) -> Result<Vec<i64>, StoreError> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<i64>().map_err(|_| StoreError::CorruptArchive {
                thread: thread.to_string(),
                problem: format!("`{s}` is not a ledger seq"),
            })
        })
        .collect()
}

impl Store {
    /// Files threads that left memory: each thread's seqs (replacing what was filed for it
    /// before: a thread's seqs only grow) and the keys that lead to it, in one transaction. A
    /// connection whose write failed is closed, not handed back to the pool (see
    /// [`Store::append`]'s note on a failed COMMIT).
    pub async fn archive_threads(&self, threads: &[EvictedThread]) -> Result<(), StoreError> {
        if threads.is_empty() {
            return Ok(());
        }
        let mut rows: Vec<(i64, &str, String)> = threads
            .iter()
            .map(|t| {
                (
                    slawatch_core::tracker::state::key64(&t.thread) as i64,
                    t.thread.as_str(),
                    encode_seqs(&t.seqs),
                )
            })
            .collect();
        // A thread evicted twice before a write: its latest filing (the longer seqs) wins.
        rows.sort_by(|a, b| a.0.cmp(&b.0).then(b.2.len().cmp(&a.2.len())));
        rows.dedup_by_key(|r| r.0);
        // In key order: each index page is touched once per batch.
        let mut keys: Vec<(i64, i64)> = Vec::new();
        for thread in threads {
            let thread_key = slawatch_core::tracker::state::key64(&thread.thread) as i64;
            keys.extend(thread.keys.iter().map(|k| (*k as i64, thread_key)));
        }
        keys.sort_unstable();
        keys.dedup_by_key(|k| k.0);
        with_pool!(self, pool => {
        let mut conn = pool
            .acquire()
            .await
            .map_err(StoreError::db("archive: connect"))?;
        let written = async {
            let mut tx = conn
                .begin()
                .await
                .map_err(StoreError::db("archive: begin"))?;
            for chunk in rows.chunks(ARCHIVE_ROWS) {
                let mut query = sqlx::query(archive_statement(0, chunk.len()));
                for (thread_key, thread, seqs) in chunk {
                    query = query.bind(*thread_key).bind(*thread).bind(seqs.as_str());
                }
                query
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db("archive threads"))?;
            }
            for chunk in keys.chunks(ARCHIVE_ROWS) {
                let mut query = sqlx::query(archive_statement(1, chunk.len()));
                for (key, thread_key) in chunk {
                    query = query.bind(*key).bind(*thread_key);
                }
                query
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::db("archive keys"))?;
            }
            Fencing::fence(&mut *tx, self).await?;
            tx.commit().await.map_err(StoreError::db("archive: commit"))
        }
        .await;
        if written.is_err() {
            conn.close_on_drop();
        }
        written
        })
    }

    /// The archived threads `keys` lead to, each once, with the keys that led to it.
    pub async fn archived_threads(&self, keys: &[u64]) -> Result<Vec<ArchivedThread>, StoreError> {
        let keys: Vec<i64> = keys.iter().map(|k| *k as i64).collect();
        let mut found: Vec<ArchivedThread> = Vec::new();
        for chunk in keys.chunks(LOOKUP_CHUNK) {
            let rows: Vec<(i64, String, String)> = with_pool!(self, pool => {
                let mut query = sqlx::query_as(lookup_statement(0));
                for key in padded(chunk) {
                    query = query.bind(key);
                }
                query
                    .fetch_all(pool)
                    .await
                    .map_err(StoreError::db("look up archived threads"))?
            });
            for (key, thread, seqs) in rows {
                let key = key as u64;
                match found.iter_mut().find(|t| t.thread == thread) {
                    Some(t) => {
                        if !t.keys.contains(&key) {
                            t.keys.push(key);
                        }
                    }
                    None => {
                        let seqs = decode_seqs(&thread, &seqs)?;
                        found.push(ArchivedThread {
                            thread,
                            seqs,
                            keys: vec![key],
                        });
                    }
                }
            }
        }
        Ok(found)
    }

    /// Whether any thread was ever archived.
    pub async fn has_archive(&self) -> Result<bool, StoreError> {
        with_pool!(self, pool => sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM (SELECT 1 FROM archived_threads LIMIT 1) AS one",
        )
        .fetch_one(pool)
        .await
        .map(|n| n > 0)
        .map_err(StoreError::db("read the archive")))
    }

    /// The events at `seqs` (ascending), decoded, in seq order.
    pub async fn events_at(&self, seqs: &[i64]) -> Result<Vec<(i64, Event)>, StoreError> {
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(LOOKUP_CHUNK) {
            // The seq, kind and event alone: every column more is a copy per row, and a restore
            // reads a month of rows.
            let rows: Vec<(i64, String, String)> = with_pool!(self, pool => {
                let mut query = sqlx::query_as(lookup_statement(1));
                for seq in padded(chunk) {
                    query = query.bind(seq);
                }
                query
                    .fetch_all(pool)
                    .await
                    .map_err(StoreError::db("read ledger rows by seq"))?
            });
            for (seq, kind, payload) in rows {
                out.push(read_event(seq, &kind, &payload)?);
            }
        }
        if out.len() != seqs.len() {
            let missing = seqs
                .iter()
                .find(|s| out.binary_search_by_key(*s, |(seq, _)| *seq).is_err())
                .copied()
                .unwrap_or_default();
            return Err(StoreError::CorruptArchive {
                thread: String::new(),
                problem: format!("ledger row {missing} is missing"),
            });
        }
        Ok(out)
    }

    /// Stores a snapshot taken at ledger row `seq`; keeps it and the one before.
    pub async fn save_snapshot(
        &self,
        seq: i64,
        taken_at: DateTime<Utc>,
        body: &str,
    ) -> Result<(), StoreError> {
        let head_hash = self
            .hash_at(seq)
            .await?
            .ok_or_else(|| StoreError::CorruptRow {
                seq,
                problem: "a snapshot names a ledger row that is not there".to_string(),
            })?;
        with_pool!(self, pool => {
        let mut conn = pool
            .acquire()
            .await
            .map_err(StoreError::db("snapshot: connect"))?;
        let written = async {
            let mut tx = conn
                .begin()
                .await
                .map_err(StoreError::db("snapshot: begin"))?;
            sqlx::query(
                "INSERT INTO snapshots (seq, head_hash, taken_at, body) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (seq) DO UPDATE SET head_hash = excluded.head_hash, \
                 taken_at = excluded.taken_at, body = excluded.body",
            )
            .bind(seq)
            .bind(&head_hash)
            .bind(chain::format_instant(taken_at))
            .bind(body)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("write a snapshot"))?;
            sqlx::query(
                "DELETE FROM snapshots WHERE seq < (SELECT min(seq) FROM \
                 (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT 2) AS kept)",
            )
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("prune snapshots"))?;
            Fencing::fence(&mut *tx, self).await?;
            tx.commit()
                .await
                .map_err(StoreError::db("snapshot: commit"))
        }
        .await;
        if written.is_err() {
            conn.close_on_drop();
        }
        written
        })
    }

    /// The snapshots, newest first.
    pub async fn snapshots(&self) -> Result<Vec<StoredSnapshot>, StoreError> {
        let rows: Vec<(i64, String, String, String)> = with_pool!(self, pool => sqlx::query_as(
            "SELECT seq, head_hash, taken_at, body FROM snapshots ORDER BY seq DESC",
        )
        .fetch_all(pool)
        .await
        .map_err(StoreError::db("read snapshots"))?);
        Ok(rows
            .into_iter()
            .map(|(seq, head_hash, taken_at, body)| StoredSnapshot {
                seq,
                head_hash,
                taken_at: chain::parse_instant(&taken_at).unwrap_or(DateTime::<Utc>::MIN_UTC),
                body,
            })
            .collect())
    }

    /// Empties SQLite's write-ahead log into the database file (after the archive writes of a
    /// start-up replay, which the background checkpoints cannot wrap while the replay reads);
    /// nothing on PostgreSQL.
    pub async fn truncate_wal(&self) {
        if let Store::Sqlite(pool) = self
            && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await
        {
            tracing::warn!(error = %e, "WAL checkpoint after start-up failed; the background checkpoints go on.");
        }
    }

    /// The hash of ledger row `seq`, if there is one.
    pub async fn hash_at(&self, seq: i64) -> Result<Option<String>, StoreError> {
        with_pool!(self, pool => sqlx::query_scalar("SELECT hash FROM ledger WHERE seq = $1")
            .bind(seq)
            .fetch_optional(pool)
            .await
            .map_err(StoreError::db("read a row's hash")))
    }
}
