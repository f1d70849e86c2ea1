//! Every SQL statement the store runs, in one place.
//!
//! The statements are portable between SQLite and PostgreSQL: numbered `$n` placeholders (sqlx
//! binds them on both), `ON CONFLICT … DO UPDATE` upserts, TEXT columns, `ORDER BY … LIMIT`.
//! What differs between the two backends is confined to [`Dialect`]: how a writing transaction
//! starts and takes the ledger's write lock.

/// Backend-specific statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
}

impl Dialect {
    /// Starts the transaction of an append. On SQLite `BEGIN IMMEDIATE` takes the write lock at
    /// once, so the chain head read next cannot be changed by another writer before commit (a
    /// plain `BEGIN` would take it only at the first write, after the head was read). PostgreSQL
    /// will use `BEGIN` followed by [`Dialect::lock_ledger`].
    pub fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
        }
    }

    /// A statement run right after [`Dialect::begin_write`] to serialize writers, if the
    /// backend needs one (PostgreSQL: `LOCK TABLE ledger IN SHARE ROW EXCLUSIVE MODE`).
    pub fn lock_ledger(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
        }
    }
}

/// The last row: `(seq, hash)`.
pub const HEAD: &str = "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1";

pub const INSERT_EVENT: &str = "INSERT INTO ledger (seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub const UPSERT_CURSOR: &str = "INSERT INTO cursors (source, key, value, updated_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (source, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";

/// One page of rows after a seq (keyset pagination: constant memory, no long read transaction).
pub const PAGE: &str = "SELECT seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash FROM ledger \
     WHERE seq > $1 ORDER BY seq LIMIT $2";

pub const FOR_INQUIRY: &str = "SELECT seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash FROM ledger \
     WHERE inquiry_id = $1 ORDER BY seq";

pub const CURSOR: &str = "SELECT value FROM cursors WHERE source = $1 AND key = $2";

pub const CURSORS: &str = "SELECT key, value FROM cursors WHERE source = $1 ORDER BY key";

pub const LEDGER_FORMAT: &str = "SELECT value FROM meta WHERE key = 'ledger_format'";
