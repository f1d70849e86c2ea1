//! Every SQL statement the store runs, in one place.
//!
//! The statements are portable between SQLite and PostgreSQL: numbered `$n` placeholders (sqlx
//! binds them on both), `ON CONFLICT … DO UPDATE` upserts, TEXT columns, `ORDER BY … LIMIT`.
//! What differs between the two backends is confined to [`Dialect`]: how a writing transaction
//! starts and takes the ledger's write lock, and the placeholders of the multi-row ledger insert
//! ([`insert_events`]), where numbered placeholders are slow on SQLite.

/// Backend-specific statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Starts the transaction of an append. On SQLite `BEGIN IMMEDIATE` takes the write lock at
    /// once, so the chain head read next cannot be changed by another writer before commit (a
    /// plain `BEGIN` would take it only at the first write, after the head was read). PostgreSQL
    /// uses `BEGIN` followed by [`Dialect::lock_ledger`].
    pub fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// A statement run right after [`Dialect::begin_write`] to serialize writers, if the
    /// backend needs one. PostgreSQL: `EXCLUSIVE` mode conflicts with itself and with every
    /// write, not with plain reads, so a second writer waits here until the first commits and
    /// then reads the new head; readers (API, reports, verify) go on meanwhile.
    pub fn lock_ledger(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("LOCK TABLE ledger IN EXCLUSIVE MODE"),
        }
    }

    /// [`PACKED_PAGE`] in this dialect.
    pub fn packed_page(self) -> &'static str {
        match self {
            Dialect::Sqlite => PACKED_PAGE,
            Dialect::Postgres => PG_PACKED_PAGE,
        }
    }

    /// [`INQUIRY_BY_ID`] in this dialect.
    pub fn inquiry_by_id(self) -> &'static str {
        match self {
            Dialect::Sqlite => INQUIRY_BY_ID,
            Dialect::Postgres => PG_INQUIRY_BY_ID,
        }
    }
}

/// The ledger insert on PostgreSQL: every row of a batch in one statement, from arrays (`$2` is
/// the batch's `recorded_at`, the same for every row). One statement text for any batch size,
/// one round trip, and a handful of parameters instead of seven per row.
pub const PG_INSERT_EVENTS: &str = "INSERT INTO ledger (seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash) \
     SELECT r.seq, $2, r.kind, r.inquiry_id, r.payload, r.prev_hash, r.hash \
     FROM UNNEST($1::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) \
          AS r(seq, kind, inquiry_id, payload, prev_hash, hash)";

/// A durable commit on PostgreSQL: its transaction waits for the WAL flush whatever the
/// server's `synchronous_commit` default.
pub const PG_SYNC_COMMIT: &str = "SET LOCAL synchronous_commit TO on";

/// The last row: `(seq, hash)`.
pub const HEAD: &str = "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1";

/// Most ledger rows one `INSERT` carries. A batch of `n` rows is written as `n / 64` inserts of
/// 64 rows plus one insert per set bit of the remainder (32, 16, …, 1), so a 500-event batch is
/// 14 statements instead of 500 round trips, and only seven statement texts exist (all cached
/// as prepared statements). 64 × 7 = 448 parameters stays far below both SQLite's (32766) and
/// PostgreSQL's (65535) limits.
pub const MAX_ROWS_PER_INSERT: usize = 64;

/// Columns bound per ledger row by [`insert_events`].
pub const LEDGER_COLUMNS: usize = 7;

/// `INSERT INTO ledger … VALUES (…), (…)` for `rows` rows, `rows` a power of two up to
/// [`MAX_ROWS_PER_INSERT`]; bind `seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash`
/// per row, in that order.
///
/// On SQLite the placeholders are anonymous (`?`), not numbered (`$n`): sqlx looks up the name of
/// every parameter of a statement when it binds it, and SQLite finds a numbered parameter's name
/// by walking the list of all of them, so binding a 448-parameter statement with `$n` costs
/// ~100,000 steps (it was the largest single cost of an append). Anonymous parameters have no
/// name to look up and are bound by position. PostgreSQL takes arrays instead ([`PG_INSERT_EVENTS`]).
pub fn insert_events(dialect: Dialect, rows: usize) -> &'static str {
    static STATEMENTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    debug_assert_eq!(dialect, Dialect::Sqlite, "PostgreSQL uses PG_INSERT_EVENTS");
    let all = STATEMENTS.get_or_init(|| {
        (0..=MAX_ROWS_PER_INSERT.trailing_zeros())
            .map(|bit| {
                let row = format!("({})", ["?"; LEDGER_COLUMNS].join(", "));
                let values = vec![row; 1usize << bit].join(", ");
                format!(
                    "INSERT INTO ledger (seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash) VALUES {values}"
                )
            })
            .collect()
    });
    debug_assert!(rows.is_power_of_two() && rows <= MAX_ROWS_PER_INSERT);
    &all[rows.trailing_zeros() as usize]
}

/// How a batch of `n` rows is cut into [`insert_events`] statements: full chunks, then the
/// remainder's powers of two, largest first.
pub fn insert_chunks(n: usize) -> impl Iterator<Item = usize> {
    let full = n / MAX_ROWS_PER_INSERT;
    let rest = n % MAX_ROWS_PER_INSERT;
    std::iter::repeat_n(MAX_ROWS_PER_INSERT, full).chain(
        (0..MAX_ROWS_PER_INSERT.trailing_zeros())
            .rev()
            .map(|bit| 1usize << bit)
            .filter(move |size| rest & size != 0),
    )
}

/// Columns bound per projection row by [`upsert_inquiries`].
pub const INQUIRY_COLUMNS: usize = 9;

/// Seqs per bucket of the id index (`id_bucket = open_seq >> ID_BUCKET_BITS`); see the
/// migration `0003`.
pub const ID_BUCKET_BITS: u32 = 16;

/// `INSERT INTO inquiries … ON CONFLICT (open_seq) DO UPDATE` for `rows` rows (a power of two up
/// to [`MAX_ROWS_PER_INSERT`], cut by [`insert_chunks`]); bind `open_seq, last_seq, id,
/// received_at, channel, language, state, sla, json` per row. Anonymous placeholders on SQLite,
/// as in [`insert_events`]. An update sets only what changes in an inquiry's life (its id,
/// received time, channel and language never do): SQLite rewrites the index entries of every
/// column an update sets, whatever the values.
pub fn upsert_inquiries(dialect: Dialect, rows: usize) -> &'static str {
    static STATEMENTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    debug_assert_eq!(
        dialect,
        Dialect::Sqlite,
        "PostgreSQL uses PG_UPSERT_INQUIRIES"
    );
    let all = STATEMENTS.get_or_init(|| {
        (0..=MAX_ROWS_PER_INSERT.trailing_zeros())
            .map(|bit| {
                let row = format!("({})", ["?"; INQUIRY_COLUMNS].join(", "));
                let values = vec![row; 1usize << bit].join(", ");
                format!(
                    "INSERT INTO inquiries (open_seq, last_seq, id, received_at, channel, language, state, sla, json, id_bucket) \
                     SELECT column1, column2, column3, column4, column5, column6, column7, column8, column9, \
                     column1 >> {ID_BUCKET_BITS} FROM (VALUES {values}) WHERE true \
                     ON CONFLICT (open_seq) DO UPDATE SET last_seq = excluded.last_seq, \
                     state = excluded.state, sla = excluded.sla, json = excluded.json"
                )
            })
            .collect()
    });
    debug_assert!(rows.is_power_of_two() && rows <= MAX_ROWS_PER_INSERT);
    &all[rows.trailing_zeros() as usize]
}

/// The projection's upsert on PostgreSQL: every row of a batch in one statement, from arrays
/// (one per column, in [`upsert_inquiries`]'s order), as [`PG_INSERT_EVENTS`] does for the
/// ledger. PostgreSQL refuses to update one row twice in a statement, so the caller keeps only
/// the last row of each `open_seq`. An update sets what changes in an inquiry's life, as on
/// SQLite.
pub const PG_UPSERT_INQUIRIES: &str = "INSERT INTO inquiries (open_seq, last_seq, id, received_at, channel, language, state, sla, json, id_bucket) \
     SELECT r.open_seq, r.last_seq, r.id, r.received_at, r.channel, r.language, r.state, r.sla, r.json, \
            r.open_seq >> 16 \
     FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::text[], $8::text[], $9::text[]) \
          AS r(open_seq, last_seq, id, received_at, channel, language, state, sla, json) \
     ON CONFLICT (open_seq) DO UPDATE SET last_seq = excluded.last_seq, \
     state = excluded.state, sla = excluded.sla, json = excluded.json";

pub const CLEAR_INQUIRIES: &str = "DELETE FROM inquiries";

pub const COUNT_INQUIRIES: &str = "SELECT count(*) FROM inquiries";

/// Whether the projection cannot be used: a rebuild started and did not finish (the `meta` row
/// `projection` = `building`), or the ledger has inquiry events but the projection no rows (a
/// ledger written before the projection existed).
pub const PROJECTION_MISSING: &str = "SELECT EXISTS (SELECT 1 FROM meta WHERE key = 'projection') \
     OR (NOT EXISTS (SELECT 1 FROM inquiries) \
         AND EXISTS (SELECT 1 FROM ledger WHERE inquiry_id IS NOT NULL))";

/// Marks the projection as being rebuilt (see [`PROJECTION_MISSING`]) …
pub const PROJECTION_BUILDING: &str = "INSERT INTO meta (key, value) VALUES ('projection', 'building') \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// … and as complete again.
pub const PROJECTION_BUILT: &str = "DELETE FROM meta WHERE key = 'projection'";

/// The API's list: newest first by `(received_at, id)`, strictly before `($5, $6)`, each filter
/// (`$2` channel, `$3` language, `$4` since) applied when not NULL; merged inquiries are part of
/// another one and not listed. Walks `inquiries_received` backwards. (`$1`, the state, is
/// bound NULL: see [`INQUIRY_PAGE_STATE`].)
pub const INQUIRY_PAGE: &str = "SELECT open_seq, last_seq, json FROM inquiries \
     WHERE (received_at, id) < ($5, $6) AND state <> 'merged' AND $1 IS NULL \
       AND ($2 IS NULL OR channel = $2) \
       AND ($3 IS NULL OR language = $3) AND ($4 IS NULL OR received_at >= $4) \
     ORDER BY received_at DESC, id DESC LIMIT $7";

/// [`INQUIRY_PAGE`] for one state (`$1`): walks `inquiries_state` within that state, so a
/// state few inquiries are in (open) is found without walking all of history.
pub const INQUIRY_PAGE_STATE: &str = "SELECT open_seq, last_seq, json FROM inquiries \
     WHERE state = $1 AND state <> 'merged' AND (received_at, id) < ($5, $6) \
       AND ($2 IS NULL OR channel = $2) \
       AND ($3 IS NULL OR language = $3) AND ($4 IS NULL OR received_at >= $4) \
     ORDER BY received_at DESC, id DESC LIMIT $7";

/// The inquiries received in `[$1, $2)` (a report's period), by the received index: each id
/// with the seqs of its first and last event.
pub const IDS_RECEIVED: &str =
    "SELECT id, open_seq, last_seq FROM inquiries WHERE received_at >= $1 AND received_at < $2";

/// One inquiry by id (the newest row, should an id ever be reused): one seek of
/// `inquiries_id` per bucket, `$2` the last bucket.
pub const INQUIRY_BY_ID: &str = "WITH RECURSIVE bucket(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM bucket WHERE n < $2) \
     SELECT open_seq, last_seq, json FROM bucket JOIN inquiries ON inquiries.id_bucket = bucket.n \
     AND inquiries.id = $1 ORDER BY open_seq DESC LIMIT 1";

/// [`INQUIRY_BY_ID`] on PostgreSQL: the buckets from `generate_series`, each looked up in a
/// lateral subquery, so that every bucket is one seek of `inquiries_id`. `OFFSET 0` keeps the
/// subquery from being flattened into a join: flattened, a planner that misjudges how many rows
/// an id matches (statistics not caught up after a rebuild wrote a million rows) walks the
/// primary key backwards for `ORDER BY open_seq DESC LIMIT 1`, filtering every row by id
/// (0.4 s over a million inquiries instead of 1 ms).
pub const PG_INQUIRY_BY_ID: &str = "SELECT i.open_seq, i.last_seq, i.json \
     FROM generate_series(0::bigint, $2::bigint) AS bucket(n) \
     CROSS JOIN LATERAL (SELECT open_seq, last_seq, json FROM inquiries \
                         WHERE id_bucket = bucket.n AND id = $1 OFFSET 0) AS i \
     ORDER BY i.open_seq DESC LIMIT 1";

/// The projection's last `open_seq` (0 when empty): its bucket is the id index's last.
pub const LAST_OPEN_SEQ: &str = "SELECT coalesce(max(open_seq), 0) FROM inquiries";

/// Projection rows after an `open_seq`, in order (keyset pagination).
pub const INQUIRY_ROWS_AFTER: &str = "SELECT open_seq, last_seq, id, received_at, channel, language, state, sla, json \
     FROM inquiries WHERE open_seq > $1 ORDER BY open_seq LIMIT $2";

pub const UPSERT_CURSOR: &str = "INSERT INTO cursors (source, key, value, updated_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (source, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";

pub const DELETE_CURSOR: &str = "DELETE FROM cursors WHERE source = $1 AND key = $2";

/// One page of rows after a seq (keyset pagination: constant memory, no long read transaction).
pub const PAGE: &str = "SELECT seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash FROM ledger \
     WHERE seq > $1 ORDER BY seq LIMIT $2";

/// One page of rows after a seq, packed by the database into a single text value:
/// `(rows, packed)`. Each row is written as
///
/// ```text
/// {seq} {len(recorded_at)} {len(kind)} {len(inquiry_id) or -1 for NULL} {len(payload)}
/// {len(prev_hash)} {len(hash)} {recorded_at}{kind}{inquiry_id}{payload}{prev_hash}{hash}
/// ```
///
/// (one line here, no separator in the text), lengths in bytes. The rows are the page's
/// (`ORDER BY seq LIMIT`), but their order inside the text is the aggregate's, which SQL leaves
/// open: the reader puts them back in seq order. A driver hands rows over one at a time, each
/// with its own allocations and, for SQLite, a hand-over between threads; walking five million
/// rows that way costs more than hashing them. One value per page costs one hand-over, and the
/// reader slices the rows out of it without copying. `concat` builds each row in one
/// allocation (`||` would copy the growing row once per operand). `octet_length` and `concat`
/// need SQLite 3.44 (the bundled one is newer).
pub const PACKED_PAGE: &str = "SELECT count(*), coalesce(group_concat(concat( \
       seq, ' ', octet_length(recorded_at), ' ', octet_length(kind), ' ', \
       coalesce(octet_length(inquiry_id), -1), ' ', octet_length(payload), ' ', \
       octet_length(prev_hash), ' ', octet_length(hash), ' ', \
       recorded_at, kind, inquiry_id, payload, prev_hash, hash), ''), '') \
     FROM (SELECT seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash FROM ledger \
           WHERE seq > $1 ORDER BY seq LIMIT $2)";

/// [`PACKED_PAGE`] on PostgreSQL: the same packing, with `string_agg` for `group_concat` and
/// the subquery named.
pub const PG_PACKED_PAGE: &str = "SELECT count(*), coalesce(string_agg(concat( \
       seq, ' ', octet_length(recorded_at), ' ', octet_length(kind), ' ', \
       coalesce(octet_length(inquiry_id), -1), ' ', octet_length(payload), ' ', \
       octet_length(prev_hash), ' ', octet_length(hash), ' ', \
       recorded_at, kind, inquiry_id, payload, prev_hash, hash), ''), '') \
     FROM (SELECT seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash FROM ledger \
           WHERE seq > $1 ORDER BY seq LIMIT $2) AS page";

/// The rows about one inquiry within a seq range: a walk of the primary key over the range,
/// filtered (the ledger has no index on `inquiry_id`; see [`crate::store::Store::events_for_inquiry`]).
pub const FOR_INQUIRY: &str = "SELECT seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash FROM ledger \
     WHERE seq BETWEEN $1 AND $2 AND inquiry_id = $3 ORDER BY seq";

/// The stored hash of one row.
pub const HASH_AT: &str = "SELECT hash FROM ledger WHERE seq = $1";

/// Up to `$3` rows of the desk's record (policies, the monitor's starts, stops and alerts,
/// sources down and up, contradictions) with `$1 < seq < $2`, in seq order. The kind list is
/// the partial index `ledger_record`'s predicate word for word, so that both databases use the
/// index (a planner proves a query may use a partial index by matching its predicate).
pub const RECORD_ROWS: &str = "SELECT seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash FROM ledger \
     WHERE kind IN ( \
    'policy_activated', 'monitor_started', 'leader_changed', 'monitor_stopped', \
    'source_down', 'source_up', 'evidence_contradicted', 'monitor_alert_raised', \
    'monitor_alert_resolved', 'monitor_alert_escalated', 'monitor_alert_delivered', \
    'monitor_alert_failed' \
) AND seq > $1 AND seq < $2 ORDER BY seq LIMIT $3";

/// When row `$1` was recorded (the commit's instant, as stored).
pub const RECORDED_AT: &str = "SELECT recorded_at FROM ledger WHERE seq = $1";

pub const CURSOR: &str = "SELECT value FROM cursors WHERE source = $1 AND key = $2";

pub const CURSORS: &str = "SELECT key, value FROM cursors WHERE source = $1 ORDER BY key";

/// A durable commit's connection setting, and the usual one (see `sqlite` and
/// [`crate::store::Sealing::durable`]).
pub const SYNC_FULL: &str = "PRAGMA synchronous = FULL";
pub const SYNC_NORMAL: &str = "PRAGMA synchronous = NORMAL";

pub const LEDGER_FORMAT: &str = "SELECT value FROM meta WHERE key = 'ledger_format'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_into_power_of_two_inserts() {
        assert_eq!(
            insert_chunks(500).collect::<Vec<_>>(),
            vec![64, 64, 64, 64, 64, 64, 64, 32, 16, 4]
        );
        assert_eq!(insert_chunks(0).count(), 0);
        assert_eq!(insert_chunks(1).collect::<Vec<_>>(), vec![1]);
        for n in 0..300 {
            assert_eq!(insert_chunks(n).sum::<usize>(), n);
        }
        assert!(
            insert_events(Dialect::Sqlite, 2)
                .ends_with("VALUES (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?)")
        );
        assert_eq!(
            insert_events(Dialect::Sqlite, MAX_ROWS_PER_INSERT)
                .matches('?')
                .count(),
            MAX_ROWS_PER_INSERT * LEDGER_COLUMNS
        );
    }

    #[test]
    fn the_record_query_repeats_the_record_index_predicate() {
        let list = |text: &str| -> Vec<String> {
            let start = text.find("kind IN (").expect("a kind list") + "kind IN (".len();
            let end = start + text[start..].find(')').expect("the list's end");
            text[start..end]
                .split(',')
                .map(|kind| kind.trim().trim_matches('\'').to_string())
                .collect()
        };
        let query = list(RECORD_ROWS);
        assert_eq!(query.len(), 12);
        for migration in [
            include_str!("../../migrations/sqlite/0008_report_indexes.sql"),
            include_str!("../../migrations/postgres/0005_report_indexes.sql"),
        ] {
            assert_eq!(list(migration), query);
        }
    }

    #[test]
    fn both_backends_bucket_the_id_index_alike() {
        assert!(PG_UPSERT_INQUIRIES.contains(&format!("open_seq >> {ID_BUCKET_BITS}")));
        assert!(upsert_inquiries(Dialect::Sqlite, 1).contains(&format!(">> {ID_BUCKET_BITS}")));
    }
}
