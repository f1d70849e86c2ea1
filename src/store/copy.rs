//! Moving a ledger from one store to another (`slawatch store copy --from URL --to URL`), e.g.
//! from SQLite to PostgreSQL and back.
//!
//! Every row is copied as stored — the same strings in every column, so the same bytes under
//! every hash — together with the sources' cursors (a daemon started on the copy resumes where
//! the original stood) and the inquiry projection's rows (derived data, but the same on both
//! backends: the API and reports of the copy answer at once, without a rebuild; a source whose
//! projection is not built gets none, and the daemon builds it at its first start on the copy).
//! The target must be empty; the copy is one transaction on it, so a failed copy leaves it
//! empty again. The rows are checked as they are read (a broken chain is
//! not copied), and the target is verified afterwards: its head must be the source's.

use sqlx::Connection;

use super::chain::{ChainChecker, RowRef};
use super::projection::{self, ProjectionRow};
use super::sql::{self, Dialect};
use super::{PAGE_ROWS, RawRow, Store, StoreError, Verification};

/// Inserts the copied cursors in the target's transaction `$tx` (a macro: each backend's
/// transaction has its own types).
macro_rules! insert_cursors {
    ($tx:expr, $cursors:expr) => {
        for c in &$cursors {
            sqlx::query(INSERT_CURSOR)
                .bind(&c.0)
                .bind(&c.1)
                .bind(&c.2)
                .bind(&c.3)
                .execute(&mut *$tx)
                .await
                .map_err(StoreError::db("copy: insert cursor"))?;
        }
    };
}

/// What [`Store::copy_into`] copied and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub rows: u64,
    pub cursors: u64,
    /// Inquiry projection rows copied; `None` when the source's projection is not built (a
    /// ledger an older version wrote, or a rebuild that did not finish).
    pub inquiries: Option<u64>,
    /// The head both stores verify with (seq, hash); `None` for an empty ledger.
    pub head: Option<(i64, String)>,
}

/// Why a copy did not happen or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the target already holds a ledger ({rows} rows, head seq {head_seq}); a copy only goes into an empty store"
    )]
    TargetNotEmpty { rows: i64, head_seq: i64 },
    #[error(
        "the source's chain is broken at seq {seq} ({problem}); `slawatch audit verify` shows the break; nothing was copied"
    )]
    SourceBroken { seq: i64, problem: String },
    #[error("the copy does not verify like the source: {found}, expected {expected}")]
    Mismatch { expected: String, found: String },
}

/// `(source, key, value, updated_at)`.
type CursorRow = (String, String, String, String);

const CURSOR_ROWS: &str = "SELECT source, key, value, updated_at FROM cursors ORDER BY source, key";
const INSERT_CURSOR: &str =
    "INSERT INTO cursors (source, key, value, updated_at) VALUES ($1, $2, $3, $4)";
const COUNT: &str = "SELECT count(*) FROM ledger";

/// Rows of ledger written per statement on PostgreSQL (arrays; a few MB each).
const PG_COPY_ROWS: &str = "INSERT INTO ledger (seq, recorded_at, kind, inquiry_id, payload, prev_hash, hash) \
     SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])";

fn row_ref(r: &RawRow) -> RowRef<'_> {
    RowRef {
        seq: r.0,
        recorded_at: &r.1,
        kind: &r.2,
        inquiry_id: r.3.as_deref(),
        payload: &r.4,
        prev_hash: &r.5,
        hash: &r.6,
    }
}

impl Store {
    /// Copies this ledger and its cursors into `target`, which must be empty (see the module
    /// documentation). `progress` is called with the rows copied so far.
    pub async fn copy_into(
        &self,
        target: &Store,
        progress: &mut dyn FnMut(u64),
    ) -> Result<CopyReport, CopyError> {
        let rows: i64 = with_pool!(target, pool => sqlx::query_scalar(COUNT)
            .fetch_one(pool)
            .await
            .map_err(StoreError::db("count target rows")))?;
        if rows > 0 {
            let head_seq = target.head().await?.map_or(0, |h| h.0);
            return Err(CopyError::TargetNotEmpty { rows, head_seq });
        }
        let cursors: Vec<CursorRow> = with_pool!(self, pool => sqlx::query_as(CURSOR_ROWS)
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("read cursors")))?;
        // Trusted rows only: a projection that is missing or half rebuilt is not copied.
        let projected = matches!(self.projection_missing().await, Ok(false));
        let mut inquiries = None;
        let report = match target {
            Store::Sqlite(pool) => {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(StoreError::db("copy: connect"))?;
                let mut tx = conn
                    .begin_with(Dialect::Sqlite.begin_write())
                    .await
                    .map_err(StoreError::db("copy: begin"))?;
                let report = self
                    .copy_rows(progress, async |page: &[RawRow]| {
                        insert_sqlite(&mut tx, page).await
                    })
                    .await?;
                insert_cursors!(tx, cursors);
                if projected {
                    inquiries = Some(
                        self.copy_projection(async |rows: Vec<ProjectionRow>| {
                            projection::upsert(&mut tx, Dialect::Sqlite, rows).await
                        })
                        .await?,
                    );
                }
                tx.commit().await.map_err(StoreError::db("copy: commit"))?;
                report
            }
            Store::Postgres(pg) => {
                let mut tx = pg
                    .pool
                    .begin()
                    .await
                    .map_err(StoreError::db("copy: begin"))?;
                if let Some(lock) = Dialect::Postgres.lock_ledger() {
                    sqlx::query(lock)
                        .execute(&mut *tx)
                        .await
                        .map_err(StoreError::db("copy: lock ledger"))?;
                }
                let report = self
                    .copy_rows(progress, async |page: &[RawRow]| {
                        insert_postgres(&mut tx, page).await
                    })
                    .await?;
                insert_cursors!(tx, cursors);
                if projected {
                    inquiries = Some(
                        self.copy_projection(async |rows: Vec<ProjectionRow>| {
                            projection::upsert_pg(&mut tx, rows).await
                        })
                        .await?,
                    );
                }
                tx.commit().await.map_err(StoreError::db("copy: commit"))?;
                report
            }
        };
        let report = CopyReport {
            cursors: cursors.len() as u64,
            inquiries,
            ..report
        };
        let expected = match &report.head {
            Some((seq, hash)) => Verification::Intact {
                events: *seq as u64,
                head_hash: hash.clone(),
            },
            None => Verification::Intact {
                events: 0,
                head_hash: super::GENESIS.to_string(),
            },
        };
        if inquiries.is_some() {
            target.analyze_projection().await?;
        }
        let found = target.verify().await?;
        if found != expected {
            return Err(CopyError::Mismatch {
                expected: format!("{expected:?}"),
                found: format!("{found:?}"),
            });
        }
        Ok(report)
    }

    /// Reads every row in seq order, checks the chain, and hands each page to `insert`.
    async fn copy_rows(
        &self,
        progress: &mut dyn FnMut(u64),
        mut insert: impl AsyncFnMut(&[RawRow]) -> Result<(), StoreError>,
    ) -> Result<CopyReport, CopyError> {
        let mut checker = ChainChecker::default();
        let mut after = i64::MIN;
        let mut copied = 0u64;
        let mut head = None;
        loop {
            let page = self.page(after, PAGE_ROWS).await?;
            for row in &page {
                if let Err(Verification::Broken { seq, problem, .. }) = checker.check(row_ref(row))
                {
                    return Err(CopyError::SourceBroken { seq, problem });
                }
            }
            let Some(last) = page.last() else { break };
            after = last.0;
            head = Some((last.0, last.6.clone()));
            insert(&page).await?;
            copied += page.len() as u64;
            progress(copied);
            if (page.len() as i64) < PAGE_ROWS {
                break;
            }
        }
        Ok(CopyReport {
            rows: copied,
            cursors: 0,
            inquiries: None,
            head,
        })
    }

    /// Reads every projection row in `open_seq` order, a page at a time, and hands each page to
    /// `insert`; returns how many rows there were.
    async fn copy_projection(
        &self,
        mut insert: impl AsyncFnMut(Vec<ProjectionRow>) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let mut after = i64::MIN;
        let mut copied = 0u64;
        loop {
            let page = self.projection_rows_after(after, PAGE_ROWS).await?;
            let full = page.len() as i64 == PAGE_ROWS;
            let Some(last) = page.last() else { break };
            after = last.open_seq;
            copied += page.len() as u64;
            insert(page).await?;
            if !full {
                break;
            }
        }
        Ok(copied)
    }
}

async fn insert_sqlite(tx: &mut sqlx::SqliteConnection, page: &[RawRow]) -> Result<(), StoreError> {
    let mut next = 0;
    for size in sql::insert_chunks(page.len()) {
        let mut insert = sqlx::query(sql::insert_events(Dialect::Sqlite, size));
        for r in &page[next..next + size] {
            insert = insert
                .bind(r.0)
                .bind(r.1.as_str())
                .bind(r.2.as_str())
                .bind(r.3.as_deref())
                .bind(r.4.as_str())
                .bind(r.5.as_str())
                .bind(r.6.as_str());
        }
        insert
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("copy: insert rows"))?;
        next += size;
    }
    Ok(())
}

async fn insert_postgres(tx: &mut sqlx::PgConnection, page: &[RawRow]) -> Result<(), StoreError> {
    let seqs: Vec<i64> = page.iter().map(|r| r.0).collect();
    let at: Vec<&str> = page.iter().map(|r| r.1.as_str()).collect();
    let kinds: Vec<&str> = page.iter().map(|r| r.2.as_str()).collect();
    let ids: Vec<Option<&str>> = page.iter().map(|r| r.3.as_deref()).collect();
    let payloads: Vec<&str> = page.iter().map(|r| r.4.as_str()).collect();
    let prevs: Vec<&str> = page.iter().map(|r| r.5.as_str()).collect();
    let hashes: Vec<&str> = page.iter().map(|r| r.6.as_str()).collect();
    sqlx::query(PG_COPY_ROWS)
        .bind(&seqs)
        .bind(&at)
        .bind(&kinds)
        .bind(&ids)
        .bind(&payloads)
        .bind(&prevs)
        .bind(&hashes)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("copy: insert rows"))?;
    Ok(())
}
