//! The inquiry projection: one row per inquiry with its current outcome, so that history is
//! read from the store rather than held in memory.
//!
//! The ledger is the truth; this table is derived from it and never hashed. Each row holds the
//! inquiry as the API shows it (`Inquiry`'s JSON), the columns the API filters and the reports'
//! periods select on, and the seqs of the inquiry's first and last ledger event, by which its
//! history is read back ([`Store::events_for_inquiry`]).
//!
//! It is written in the same transaction as the events that changed it ([`Store::commit_projected`]):
//! the engine hands over, with each batch, every inquiry the batch touched as its tracker holds
//! it; batches commit in order, so the last write wins. An inquiry opened in the batch gets the
//! seq of its first event there, assigned inside the transaction.
//!
//! [`rebuild`] derives the whole table again from the ledger (the `store rebuild-projection`
//! command, and the first start on a ledger written before the table existed); [`check`]
//! rebuilds into a scratch database and compares it with the live table row by row.
//!
//! # Both backends
//!
//! SQLite and PostgreSQL keep the same table (migrations `0003_inquiry_projection.sql` of
//! each), the same rows with the same bytes in every column, and answer every read with the
//! same statements; only the writes differ as the ledger's do: SQLite upserts in multi-row
//! `VALUES` statements ([`upsert`]), PostgreSQL in one statement of arrays ([`upsert_pg`]),
//! inside the commit's transaction on both. `slawatch store copy` copies the rows with the
//! ledger, so a copy answers at once.
//!
//! `store check-projection` rebuilds into a scratch SQLite file in the temporary directory,
//! whatever the live backend: the check then writes nothing into the production database (no
//! schema or table to create there, no WAL shipped to its standbys, nothing left behind by a
//! check that is killed), and the rows compare as they are, the columns being the same text on
//! both backends.
//!
//! `store rebuild-projection` clears and rewrites the live table, so it must not run beside a
//! daemon writing the same store. On SQLite it takes the daemon's writer lock (the file lock
//! beside the database) and is refused while a daemon runs. On PostgreSQL it is refused while a
//! replica holds the leader lease (`store::lease`), and its writes are fenced by the lease like
//! every other write of a replica.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use slawatch_core::domain::{Channel, InquiryId, Language};
use slawatch_core::tracker::{Event, Inquiry, InquiryState, Tracker, TrackerRules};

use super::sql::{self, Dialect};
use super::{PageReader, Store, StoreError};

/// The ids of the inquiries `event` changes: the one it is about and, for a merge, the one it
/// was merged into.
pub fn touched(event: &Event) -> impl Iterator<Item = &InquiryId> {
    let into = match event {
        Event::InquiryMerged { into, .. } => Some(into),
        _ => None,
    };
    event.inquiry_id().into_iter().chain(into)
}

/// An instant as the projection stores it: nine fractional digits always, so that text order
/// is time order (and agrees with the tracker's order of instants).
pub fn instant_key(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// One row of the projection.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProjectionRow {
    pub open_seq: i64,
    pub last_seq: i64,
    pub id: String,
    pub received_at: String,
    pub channel: String,
    pub language: String,
    pub state: String,
    pub sla: String,
    pub json: String,
}

impl ProjectionRow {
    /// The row of `inquiry`, whose events are at seqs `open_seq..=last_seq`.
    pub fn of(inquiry: &Inquiry, (open_seq, last_seq): (i64, i64)) -> Result<Self, StoreError> {
        let json = serde_json::to_string(inquiry).map_err(|source| StoreError::Serialize {
            what: format!("inquiry {}", inquiry.id),
            source,
        })?;
        Ok(ProjectionRow {
            open_seq,
            last_seq,
            id: inquiry.id.as_str().to_string(),
            received_at: instant_key(inquiry.received_at),
            channel: inquiry.channel.as_str().to_string(),
            language: inquiry.language.as_str().to_string(),
            state: inquiry.state.as_str().to_string(),
            sla: inquiry.sla.as_str().to_string(),
            json,
        })
    }

    /// The inquiry it holds, its ledger seqs noted.
    pub fn inquiry(&self) -> Result<Inquiry, StoreError> {
        decode(self.open_seq, self.last_seq, &self.json)
    }

    /// The first column that differs from `other`'s, if any (for [`check`]).
    fn difference(&self, other: &ProjectionRow) -> Option<&'static str> {
        [
            ("id", self.id == other.id),
            ("last_seq", self.last_seq == other.last_seq),
            ("received_at", self.received_at == other.received_at),
            ("channel", self.channel == other.channel),
            ("language", self.language == other.language),
            ("state", self.state == other.state),
            ("sla", self.sla == other.sla),
            ("json", self.json == other.json),
        ]
        .into_iter()
        .find(|(_, same)| !same)
        .map(|(column, _)| column)
    }
}

fn decode(open_seq: i64, last_seq: i64, json: &str) -> Result<Inquiry, StoreError> {
    let mut inquiry: Inquiry =
        serde_json::from_str(json).map_err(|e| StoreError::CorruptProjection {
            open_seq,
            problem: format!("the stored inquiry does not read back: {e}"),
        })?;
    inquiry.ledger_seqs = Some((open_seq, last_seq));
    Ok(inquiry)
}

/// A row of a batch whose seqs are not all known before the transaction: an inquiry first
/// committed in the batch gets the seq of its first event there.
pub(super) struct PendingRow {
    row: ProjectionRow,
    /// Its seqs in the ledger so far, if it was committed before.
    known: Option<(i64, i64)>,
    /// The indexes of its first and last event in the batch.
    in_batch: Option<(usize, usize)>,
}

/// Prepares the rows of `inquiries` (as they stand after `events`), outside the transaction.
pub(super) fn prepare(
    inquiries: &[Inquiry],
    events: &[Event],
) -> Result<Vec<PendingRow>, StoreError> {
    if inquiries.is_empty() {
        return Ok(Vec::new());
    }
    let mut span: HashMap<&InquiryId, (usize, usize)> = HashMap::with_capacity(inquiries.len());
    for (i, event) in events.iter().enumerate() {
        for id in touched(event) {
            span.entry(id).and_modify(|s| s.1 = i).or_insert((i, i));
        }
    }
    inquiries
        .iter()
        .map(|inquiry| {
            Ok(PendingRow {
                row: ProjectionRow::of(inquiry, (0, 0))?,
                known: inquiry.ledger_seqs,
                in_batch: span.get(&inquiry.id).copied(),
            })
        })
        .collect()
}

/// The rows with their seqs, the batch's first event being `first_seq`. A row with no seq at
/// all (neither committed before nor touched by the batch) is left out.
pub(super) fn place(pending: Vec<PendingRow>, first_seq: i64) -> Vec<ProjectionRow> {
    pending
        .into_iter()
        .filter_map(|p| {
            let in_batch = p
                .in_batch
                .map(|(a, b)| (first_seq + a as i64, first_seq + b as i64));
            let (open_seq, last_seq) = match (p.known, in_batch) {
                (Some((open, last)), Some((_, batch_last))) => (open, last.max(batch_last)),
                (Some(known), None) => known,
                (None, Some(seqs)) => seqs,
                (None, None) => return None,
            };
            Some(ProjectionRow {
                open_seq,
                last_seq,
                ..p.row
            })
        })
        .collect()
}

/// Upserts `rows` (in order: a later row for the same inquiry wins) in a few multi-row
/// statements, inside the caller's transaction.
pub(super) async fn upsert(
    conn: &mut sqlx::SqliteConnection,
    dialect: Dialect,
    rows: Vec<ProjectionRow>,
) -> Result<(), StoreError> {
    let mut rows = rows.into_iter();
    for size in sql::insert_chunks(rows.len()) {
        let mut insert = sqlx::query(sql::upsert_inquiries(dialect, size));
        for row in rows.by_ref().take(size) {
            insert = insert
                .bind(row.open_seq)
                .bind(row.last_seq)
                .bind(row.id)
                .bind(row.received_at)
                .bind(row.channel)
                .bind(row.language)
                .bind(row.state)
                .bind(row.sla)
                .bind(row.json);
        }
        insert
            .execute(&mut *conn)
            .await
            .map_err(StoreError::db("projection: upsert inquiries"))?;
    }
    Ok(())
}

/// What the API's list asks of the projection.
#[derive(Debug, Clone, Default)]
pub struct ProjectionQuery {
    pub state: Option<InquiryState>,
    pub channel: Option<Channel>,
    pub language: Option<Language>,
    /// Inclusive lower bound on `received_at`.
    pub since: Option<DateTime<Utc>>,
    /// Only inquiries strictly before this `(received_at, id)`.
    pub before: Option<(DateTime<Utc>, InquiryId)>,
}

/// Rows per PostgreSQL upsert: each column is one array, so a statement's size grows with its
/// rows; 5,000 inquiries (a few megabytes of JSON) keep it small while a rebuild's writes stay
/// a handful of round trips per stretch.
const PG_UPSERT_ROWS: usize = 5_000;

/// [`upsert`] on PostgreSQL: one statement of arrays per [`PG_UPSERT_ROWS`] rows. A statement
/// may not update a row twice there, so only the last row of each inquiry is kept (the one
/// that wins on SQLite too).
pub(super) async fn upsert_pg(
    conn: &mut sqlx::PgConnection,
    mut rows: Vec<ProjectionRow>,
) -> Result<(), StoreError> {
    let mut last: HashMap<i64, usize> = HashMap::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        last.insert(row.open_seq, i);
    }
    if last.len() < rows.len() {
        let mut i = 0;
        rows.retain(|row| {
            let keep = last.get(&row.open_seq) == Some(&i);
            i += 1;
            keep
        });
    }
    for chunk in rows.chunks(PG_UPSERT_ROWS) {
        let column = |f: fn(&ProjectionRow) -> &str| chunk.iter().map(f).collect::<Vec<&str>>();
        let open: Vec<i64> = chunk.iter().map(|r| r.open_seq).collect();
        let last: Vec<i64> = chunk.iter().map(|r| r.last_seq).collect();
        sqlx::query(sql::PG_UPSERT_INQUIRIES)
            .bind(&open)
            .bind(&last)
            .bind(column(|r| &r.id))
            .bind(column(|r| &r.received_at))
            .bind(column(|r| &r.channel))
            .bind(column(|r| &r.language))
            .bind(column(|r| &r.state))
            .bind(column(|r| &r.sla))
            .bind(column(|r| &r.json))
            .execute(&mut *conn)
            .await
            .map_err(StoreError::db("projection: upsert inquiries"))?;
    }
    Ok(())
}

impl Store {
    /// Whether this store keeps the inquiry projection: both backends do (an older ledger gets
    /// it from the embedded migrations, then from a rebuild at the daemon's first start).
    pub fn keeps_projection(&self) -> bool {
        true
    }

    /// [`Store::commit_sealed`], also writing the projection rows of `inquiries` (each as it
    /// stands after `events`) in the same transaction.
    pub async fn commit_projected(
        &self,
        recorded_at: DateTime<Utc>,
        events: &[Event],
        cursors: &[(String, crate::sources::CursorUpdate)],
        sealing: super::Sealing<'_>,
        inquiries: &[Inquiry],
    ) -> Result<i64, StoreError> {
        let projection = prepare(inquiries, events)?;
        self.write_with(recorded_at, events, cursors, sealing, projection)
            .await
            .map(|written| written.first_seq)
    }

    /// Upserts `rows` in one transaction of their own (rebuilds).
    pub async fn write_projection(&self, rows: Vec<ProjectionRow>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        match self {
            Store::Sqlite(pool) => {
                let dialect = Dialect::Sqlite;
                let mut tx = pool
                    .begin_with(dialect.begin_write())
                    .await
                    .map_err(StoreError::db("projection: begin"))?;
                upsert(&mut tx, dialect, rows).await?;
                tx.commit()
                    .await
                    .map_err(StoreError::db("projection: commit"))
            }
            Store::Postgres(pg) => {
                let mut tx = pg
                    .pool
                    .begin()
                    .await
                    .map_err(StoreError::db("projection: begin"))?;
                upsert_pg(&mut tx, rows).await?;
                pg.fence(&mut tx).await?;
                tx.commit()
                    .await
                    .map_err(StoreError::db("projection: commit"))
            }
        }
    }

    async fn mark_projection(&self, statement: &'static str) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::query(statement)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(StoreError::db("projection: mark")))?;
        Ok(())
    }

    /// Brings PostgreSQL's statistics of the projection up to date after many rows were written
    /// at once (a rebuild, a copy), rather than when autovacuum gets to it: a planner that still
    /// believes the table small or an id common picks scans for the API's reads (see
    /// `sql::PG_INQUIRY_BY_ID`). SQLite plans without statistics here: nothing to do.
    pub async fn analyze_projection(&self) -> Result<(), StoreError> {
        if let Store::Postgres(pg) = self {
            sqlx::query("ANALYZE inquiries")
                .execute(&pg.pool)
                .await
                .map_err(StoreError::db("projection: analyze"))?;
        }
        Ok(())
    }

    /// Removes every projection row (before a rebuild).
    pub async fn clear_projection(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::query(sql::CLEAR_INQUIRIES)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(StoreError::db("projection: clear")))?;
        Ok(())
    }

    /// How many rows the projection has.
    pub async fn projection_len(&self) -> Result<i64, StoreError> {
        with_pool!(self, pool => sqlx::query_scalar(sql::COUNT_INQUIRIES)
            .fetch_one(pool)
            .await
            .map_err(StoreError::db("projection: count")))
    }

    /// Whether the projection cannot be trusted: a rebuild that did not finish, or a ledger
    /// written before the projection existed (inquiry events, no rows).
    pub async fn projection_missing(&self) -> Result<bool, StoreError> {
        with_pool!(self, pool => sqlx::query_scalar(sql::PROJECTION_MISSING)
            .fetch_one(pool)
            .await
            .map_err(StoreError::db("projection: compare with the ledger")))
    }

    /// Up to `limit` inquiries matching `q`, newest first by `(received_at, id)`; merged ones
    /// (part of another inquiry) are not listed.
    pub async fn projected_page(
        &self,
        q: &ProjectionQuery,
        limit: usize,
    ) -> Result<Vec<Inquiry>, StoreError> {
        let (before_at, before_id) = match &q.before {
            Some((at, id)) => (instant_key(*at), id.as_str().to_string()),
            // After every instant the table can hold (byte order: `~` sorts after digits).
            None => ("~".to_string(), String::new()),
        };
        let statement = match q.state {
            Some(_) => sql::INQUIRY_PAGE_STATE,
            None => sql::INQUIRY_PAGE,
        };
        let rows: Vec<(i64, i64, String)> = with_pool!(self, pool => sqlx::query_as(statement)
            .bind(q.state.map(|s| s.as_str()))
            .bind(q.channel.map(|c| c.as_str()))
            .bind(q.language.map(|l| l.as_str()))
            .bind(q.since.map(instant_key))
            .bind(&before_at)
            .bind(&before_id)
            .bind(limit as i64)
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("projection: list inquiries")))?;
        rows.iter()
            .map(|(open, last, json)| decode(*open, *last, json))
            .collect()
    }

    /// The inquiry `id` as the projection holds it.
    pub async fn projected(&self, id: &InquiryId) -> Result<Option<Inquiry>, StoreError> {
        let by_id = self.dialect().inquiry_by_id();
        let row: Option<(i64, i64, String)> = with_pool!(self, pool => {
            let last: i64 = sqlx::query_scalar(sql::LAST_OPEN_SEQ)
                .fetch_one(pool)
                .await
                .map_err(StoreError::db("projection: last row"))?;
            sqlx::query_as(by_id)
                .bind(id.as_str())
                .bind(last >> sql::ID_BUCKET_BITS)
                .fetch_optional(pool)
                .await
                .map_err(StoreError::db("projection: read inquiry"))?
        });
        row.map(|(open, last, json)| decode(open, last, &json))
            .transpose()
    }

    /// The inquiries received in `[from, to)`, if the projection can say: `None` when it cannot
    /// (no projection table in a ledger an older version wrote and nothing has migrated yet,
    /// or a ledger whose projection is not built yet). Every inquiry whose first event is at or
    /// before `head_seq` (read before this) is in the answer when received in the period: its
    /// row was committed with that event.
    pub async fn inquiries_received(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Option<ReceivedInPeriod>, StoreError> {
        match self.projection_missing().await {
            Ok(false) => {}
            Ok(true) | Err(_) => return Ok(None),
        }
        let rows: Vec<(String, i64, i64)> = with_pool!(self, pool => sqlx::query_as(sql::IDS_RECEIVED)
            .bind(instant_key(from))
            .bind(instant_key(to))
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("projection: inquiries of a period")))?;
        let seqs = rows
            .iter()
            .map(|&(_, open, last)| (open, last))
            .reduce(|(a, b), (open, last)| (a.min(open), b.max(last)));
        Ok(Some(ReceivedInPeriod {
            ids: rows
                .into_iter()
                .map(|(id, ..)| id.into_boxed_str())
                .collect(),
            seqs,
        }))
    }

    /// Up to `limit` rows with `open_seq > after`, by `open_seq`.
    pub async fn projection_rows_after(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<ProjectionRow>, StoreError> {
        with_pool!(self, pool => sqlx::query_as(sql::INQUIRY_ROWS_AFTER)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await
            .map_err(StoreError::db("projection: read rows")))
    }
}

/// Events replayed between two writes of a rebuild: the rows of the inquiries they touched are
/// written then (a busy inquiry is written once per stretch, not once per event).
const REBUILD_STRETCH: usize = 200_000;

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rebuilt {
    /// Ledger rows replayed.
    pub events: u64,
    /// Inquiries written.
    pub inquiries: u64,
    /// The last ledger seq replayed (the projection is as of this seq).
    pub head_seq: i64,
}

/// Replays the ledger of `ledger` through a fresh tracker and writes the projection rows into
/// `target` (the same store for a rebuild, a scratch one for [`check`]), a stretch of events at
/// a time. `target`'s rows are upserted, not cleared first.
pub async fn rebuild(
    ledger: &Store,
    rules: Arc<TrackerRules>,
    target: &Store,
) -> Result<Rebuilt, StoreError> {
    // Until the last row is written, readers do not trust the projection (reports fold the
    // whole ledger, a start rebuilds it again).
    target.mark_projection(sql::PROJECTION_BUILDING).await?;
    let mut tracker = Tracker::new(rules);
    let mut dirty: HashSet<InquiryId> = HashSet::new();
    let mut done = Rebuilt::default();
    let mut stretch = 0usize;
    let mut pages = PageReader::start(ledger);
    while let Some(page) = pages.next().await? {
        for entry in page.events() {
            let (seq, event) = entry?;
            tracker.apply(&event);
            tracker.note_ledger_seq(&event, seq);
            dirty.extend(touched(&event).cloned());
            done.events += 1;
            done.head_seq = seq;
            stretch += 1;
        }
        if stretch >= REBUILD_STRETCH {
            done.inquiries += flush(&tracker, &mut dirty, target).await?;
            stretch = 0;
        }
    }
    flush(&tracker, &mut dirty, target).await?;
    done.inquiries = target.projection_len().await? as u64;
    target.mark_projection(sql::PROJECTION_BUILT).await?;
    target.analyze_projection().await?;
    Ok(done)
}

/// The inquiries a period received, as the projection says ([`Store::inquiries_received`]).
#[derive(Debug, Clone, Default)]
pub struct ReceivedInPeriod {
    pub ids: HashSet<Box<str>>,
    /// The seqs of the first and the last event about any of them; `None` when there are none.
    /// Every ledger row about them is in this range.
    pub seqs: Option<(i64, i64)>,
}

/// Writes the rows of the `dirty` inquiries as `tracker` holds them, in `open_seq` order.
async fn flush(
    tracker: &Tracker,
    dirty: &mut HashSet<InquiryId>,
    target: &Store,
) -> Result<u64, StoreError> {
    let mut rows = dirty
        .drain()
        .filter_map(|id| {
            let inquiry = tracker.get(&id)?;
            Some(ProjectionRow::of(inquiry, inquiry.ledger_seqs?))
        })
        .collect::<Result<Vec<_>, _>>()?;
    rows.sort_unstable_by_key(|r| r.open_seq);
    let n = rows.len() as u64;
    for chunk in chunks(rows, 50_000) {
        target.write_projection(chunk).await?;
    }
    Ok(n)
}

fn chunks(rows: Vec<ProjectionRow>, size: usize) -> Vec<Vec<ProjectionRow>> {
    let mut out = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        out.push(rows.by_ref().take(size).collect());
    }
    out
}

/// A row where the live projection and the one rebuilt from the ledger disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub open_seq: i64,
    pub id: String,
    /// What differs: a column name, or `missing` (no live row) / `extra` (no rebuilt row).
    pub what: String,
    pub live: Option<String>,
    pub rebuilt: Option<String>,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckReport {
    pub rows_compared: u64,
    /// Live rows changed by events after the rebuild's head (the daemon kept writing): skipped.
    pub skipped_newer: u64,
    pub differences: u64,
    /// The first differences, in `open_seq` order.
    pub first: Vec<Difference>,
    pub head_seq: i64,
}

/// How many differences [`check`] describes.
const SHOWN_DIFFERENCES: usize = 20;

/// Rebuilds the projection of `live`'s ledger into `scratch` (an empty store) and compares it
/// with `live`'s projection row by row. Rows the daemon changed after the rebuild's head (it
/// may run beside the check) are skipped.
pub async fn check(
    live: &Store,
    rules: Arc<TrackerRules>,
    scratch: &Store,
) -> Result<CheckReport, StoreError> {
    let rebuilt = rebuild(live, rules, scratch).await?;
    let head = rebuilt.head_seq;
    let mut report = CheckReport {
        head_seq: head,
        ..CheckReport::default()
    };
    const PAGE: i64 = 10_000;
    let (mut live_after, mut scratch_after) = (i64::MIN, i64::MIN);
    let mut live_rows = std::collections::VecDeque::new();
    let mut scratch_rows = std::collections::VecDeque::new();
    let (mut live_done, mut scratch_done) = (false, false);
    let note = |report: &mut CheckReport, d: Difference| {
        report.differences += 1;
        if report.first.len() < SHOWN_DIFFERENCES {
            report.first.push(d);
        }
    };
    loop {
        if live_rows.is_empty() && !live_done {
            let page = live.projection_rows_after(live_after, PAGE).await?;
            live_done = (page.len() as i64) < PAGE;
            if let Some(last) = page.last() {
                live_after = last.open_seq;
            }
            live_rows.extend(page);
        }
        if scratch_rows.is_empty() && !scratch_done {
            let page = scratch.projection_rows_after(scratch_after, PAGE).await?;
            scratch_done = (page.len() as i64) < PAGE;
            if let Some(last) = page.last() {
                scratch_after = last.open_seq;
            }
            scratch_rows.extend(page);
        }
        let (l, s) = (live_rows.front(), scratch_rows.front());
        let order = match (l, s) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(l), Some(s)) => l.open_seq.cmp(&s.open_seq),
        };
        match order {
            std::cmp::Ordering::Less => {
                let l = live_rows.pop_front().expect("front");
                if l.open_seq > head || l.last_seq > head {
                    report.skipped_newer += 1;
                } else {
                    note(
                        &mut report,
                        Difference {
                            open_seq: l.open_seq,
                            id: l.id.clone(),
                            what: "extra".into(),
                            live: Some(l.json),
                            rebuilt: None,
                        },
                    );
                }
            }
            std::cmp::Ordering::Greater => {
                let s = scratch_rows.pop_front().expect("front");
                note(
                    &mut report,
                    Difference {
                        open_seq: s.open_seq,
                        id: s.id.clone(),
                        what: "missing".into(),
                        live: None,
                        rebuilt: Some(s.json),
                    },
                );
            }
            std::cmp::Ordering::Equal => {
                let l = live_rows.pop_front().expect("front");
                let s = scratch_rows.pop_front().expect("front");
                if l.last_seq > head {
                    report.skipped_newer += 1;
                    continue;
                }
                report.rows_compared += 1;
                if let Some(column) = l.difference(&s) {
                    let shown = |r: &ProjectionRow| match column {
                        "id" => r.id.clone(),
                        "last_seq" => r.last_seq.to_string(),
                        "received_at" => r.received_at.clone(),
                        "channel" => r.channel.clone(),
                        "language" => r.language.clone(),
                        "state" => r.state.clone(),
                        "sla" => r.sla.clone(),
                        _ => r.json.clone(),
                    };
                    note(
                        &mut report,
                        Difference {
                            open_seq: l.open_seq,
                            id: l.id.clone(),
                            what: column.into(),
                            live: Some(shown(&l)),
                            rebuilt: Some(shown(&s)),
                        },
                    );
                }
            }
        }
    }
    Ok(report)
}
