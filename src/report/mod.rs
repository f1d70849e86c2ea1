//! Compliance reports for auditors: every number derived from the ledger, nothing else.
//!
//! This module owns [`ReportData`] and the three renderers ([`html`], [`csv`], [`json`]).
//! [`build`] reads the ledger once, checking each row it reads against the chain, and folds
//! (`fold`) the rows into compact records of the inquiries *received* in the half-open period
//! `[from, to)`. The store's inquiry projection says which inquiries those are and which seq
//! range holds their rows, so only that range and the desk's record (policies, the monitor's
//! events, found through an index) are read, and only their rows decoded and folded
//! ([`PeriodFilter`], [`ChainScope`]); a ledger without a projection is read and folded whole,
//! to the same report. That is the population: every message or call received in the period
//! is counted, answered or not, excluded or not. No SLA rule is re-implemented here: met and
//! missed are what the tracker decided and recorded (`InquiryBreached`, the response's
//! outcome), read field for field as [`Tracker::apply`](slawatch_core::tracker::Tracker::apply) reads
//! them. The per-inquiry lists (CSV rows, breaches, exclusions) are [`view`]s over those
//! records, built one item at a time while rendering, so a year of a busy desk (a million
//! inquiries) is reported in a few hundred megabytes.
//!
//! How the figures are defined:
//!
//! - `received`: every inquiry and every excluded message received in the period;
//! - `excluded`: those the tracker excluded, each with its stored reason code and detail;
//! - `met`: answered by the deadline; `missed`: answered late (`missed_answered_late`) or past
//!   the deadline unanswered (`missed_unanswered`) — a breach counts as missed at its
//!   deadline whether or not it was answered later; `pending`: open, deadline not passed yet;
//! - `compliance` = met / (met + missed), pending left out; `null` when nothing was decided;
//! - response times: nearest-rank p50/p90/p95/p99 and maximum of `response_seconds` over the
//!   answered inquiries;
//! - policy versions: from `PolicyActivated` events, with their parameters and the date each
//!   was first used, plus how many inquiries of the period each governed;
//! - alerts: every breach lists the alerts raised about it (warning, breach, re-notifications,
//!   and the `resolved` notice) with each delivery (`AlertDelivered`: when, which notifiers, to
//!   whom when the ledger records it) and each failure (`AlertFailed`: when, to whom, why);
//! - takes: every breach lists who said "I'm on it" and when, with the time from the alert
//!   (the first delivered to the taker before it, else the first delivered, else the first
//!   raised) to the take; `takes` gives those times' percentiles overall and per person;
//! - monitoring coverage: the periods the daemon was not running (from `monitor_started`,
//!   `monitor_heartbeat` and `monitor_stopped` events: a restart without a stop, or heartbeats
//!   silent for more than [`HEARTBEAT_SILENCE`]) and the periods a source was down
//!   (`source_down` → `source_up`), each with the inquiries received during it and how many of
//!   them were detected late; and every inquiry the monitor saw more than [`LATE_DETECTION`]
//!   after it was received (`first_seen_at - received_at`), attributed to its gap.
//!
//! Instants are kept in UTC; `time_zone` (the desk's by default) decides the calendar used to
//! group by day, month and hour of week, and how times are shown.
//!
//! # CSV columns
//!
//! One row per inquiry received in the period, oldest first, with a header row. The columns
//! are stable (new ones are only ever appended); see `docs/report-csv.md`:
//!
//! `id, channel, source, language, kind, customer, received_at, received_local,
//! first_seen_at, detection_seconds, deadline_at, policy, state, sla, responded_at,
//! response_seconds, response_kind, responder, response_id, external_id, excluded_reason,
//! excluded_detail, breached_at, alerts, follow_ups, alert_deliveries, revisions`

pub mod csv;
mod fold;
pub mod html;
pub mod json;
pub mod view;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::store::{LedgerPage, Store, StoreError, Verification};
use fold::{FoldedPeriod, PeriodFold, Record};
use slawatch_core::domain::{Channel, Language};
use slawatch_core::tracker::event::Event;
use slawatch_core::tracker::policy::PolicyRecord;
use slawatch_core::tracker::{InquiryState, SlaStatus, TrackerRules};
pub use view::Listing;

/// Detection latency above which an inquiry counts as detected late (a monitoring gap):
/// sources poll or IDLE within seconds, so five minutes means nobody was watching.
pub const LATE_DETECTION: chrono::Duration = chrono::Duration::minutes(5);

/// Heartbeat silence longer than this is a gap: two missed beats and a minute of slack.
pub const HEARTBEAT_SILENCE: chrono::Duration =
    chrono::Duration::seconds(2 * crate::monitor::HEARTBEAT_EVERY.as_secs() as i64 + 60);

/// Upper bounds (seconds) of the response-time distribution chart; the 600 and 900 marks are
/// the warning and the promise.
pub const HISTOGRAM_BOUNDS: [i64; 10] =
    [60, 120, 300, 600, 900, 1800, 3600, 14400, 86400, i64::MAX];

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the period is empty: from {from} is not before to {to}")]
    EmptyPeriod {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    #[error("cannot write the report: {0}")]
    Io(#[from] std::io::Error),
}

/// What a report covers and how it shows it.
#[derive(Debug, Clone)]
pub struct ReportParams {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub time_zone: Tz,
    /// Mask customer addresses and numbers.
    pub mask: bool,
    /// A title line, e.g. `Yearly review 2026`.
    pub title: String,
    /// How much of the hash chain the report checks.
    pub chain: ChainScope,
}

/// How much of the hash chain a report checks while it reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainScope {
    /// The rows it reads: its period's inquiries' rows and the rows recorded around the period
    /// ([`RECORDED_AROUND`]), link by link over the seq range that holds them, and the desk's
    /// record (policies, the monitor's starts, stops and alerts) each against its own hash. A
    /// month of five years of history reads about a sixtieth of the ledger. The whole chain is
    /// `slawatch audit verify`'s job, against the head the report names.
    #[default]
    Period,
    /// Every row from the first, link by link, as `slawatch audit verify` does: the report
    /// reads the whole ledger.
    Whole,
}

impl ChainScope {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainScope::Period => "period",
            ChainScope::Whole => "whole",
        }
    }
}

/// Met/missed/pending counts of one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    pub received: u64,
    pub excluded: u64,
    pub met: u64,
    pub missed: u64,
    pub missed_answered_late: u64,
    pub missed_unanswered: u64,
    pub pending: u64,
    /// met / (met + missed), or `None` when nothing was decided.
    pub compliance: Option<f64>,
}

impl Counts {
    fn add(&mut self, i: &Record) {
        self.received += 1;
        match i.sla {
            SlaStatus::Excluded => self.excluded += 1,
            SlaStatus::Met => self.met += 1,
            SlaStatus::Missed => {
                self.missed += 1;
                if i.responded_at.is_some() {
                    self.missed_answered_late += 1;
                } else {
                    self.missed_unanswered += 1;
                }
            }
            SlaStatus::Pending => self.pending += 1,
        }
    }

    fn finish(&mut self) {
        let decided = self.met + self.missed;
        self.compliance = (decided > 0).then(|| self.met as f64 / decided as f64);
    }
}

/// Response-time percentiles (seconds, nearest rank) over answered inquiries.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub answered: u64,
    pub p50: Option<i64>,
    pub p90: Option<i64>,
    pub p95: Option<i64>,
    pub p99: Option<i64>,
    pub max: Option<i64>,
}

impl Percentiles {
    #[cfg(test)]
    fn of(mut values: Vec<i64>) -> Percentiles {
        Percentiles::of_slice(&mut values)
    }

    /// Sorts `values` in place.
    fn of_slice(values: &mut [i64]) -> Percentiles {
        values.sort_unstable();
        let rank = |p: f64| -> Option<i64> {
            if values.is_empty() {
                return None;
            }
            let n = values.len();
            let k = ((p * n as f64).ceil() as usize).clamp(1, n);
            Some(values[k - 1])
        };
        Percentiles {
            answered: values.len() as u64,
            p50: rank(0.50),
            p90: rank(0.90),
            p95: rank(0.95),
            p99: rank(0.99),
            max: values.last().copied(),
        }
    }

    /// Over the values `value` gives for the records `population` numbers, gathered in
    /// `buffer` (one buffer serves every group, so a year's report holds one list at a time).
    fn over(
        records: &[Record],
        population: &[u32],
        buffer: &mut Vec<i64>,
        value: impl Fn(&Record) -> Option<i64>,
    ) -> Percentiles {
        buffer.clear();
        buffer.extend(
            population
                .iter()
                .filter_map(|n| value(&records[*n as usize])),
        );
        Percentiles::of_slice(buffer)
    }
}

/// One bar of the response-time distribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    /// Upper bound in seconds (inclusive); `None` for the open last bucket.
    pub le_seconds: Option<i64>,
    pub count: u64,
}

/// One alert about an inquiry, with what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    /// `warning`, `breach`, `renotify`, or `resolved` (the notice that an alerted inquiry was
    /// answered).
    pub stage: String,
    /// The instant it is about: when it was raised.
    pub at: DateTime<Utc>,
    /// Each time a notifier's server accepted it, with whom it went to.
    pub delivered: Vec<AlertDelivery>,
    /// Each time every notifier failed.
    pub failed: Vec<AlertFailure>,
}

/// An alert accepted by notifiers (`AlertDelivered`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertDelivery {
    pub at: DateTime<Utc>,
    pub notifiers: Vec<String>,
    /// Empty when the ledger did not record them (older ledgers).
    pub recipients: Vec<String>,
}

/// An alert no notifier could deliver (`AlertFailed`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertFailure {
    pub at: DateTime<Utc>,
    pub recipients: Vec<String>,
    pub error: String,
}

/// One row per inquiry (the CSV's rows, the JSON's `inquiries`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InquiryRow {
    pub id: String,
    pub channel: String,
    pub source: String,
    pub language: String,
    pub kind: Option<String>,
    pub customer: String,
    pub received_at: DateTime<Utc>,
    pub received_local: String,
    pub first_seen_at: DateTime<Utc>,
    pub detection_seconds: i64,
    pub deadline_at: Option<DateTime<Utc>>,
    pub policy: Option<String>,
    pub state: String,
    pub sla: String,
    pub responded_at: Option<DateTime<Utc>>,
    pub response_seconds: Option<i64>,
    pub response_kind: Option<String>,
    pub responder: Option<String>,
    /// Message-ID or call id of the response.
    pub response_id: Option<String>,
    /// Message-ID or call id of the message or call that opened it.
    pub external_id: String,
    pub excluded_reason: Option<String>,
    pub excluded_detail: Option<String>,
    pub breached_at: Option<DateTime<Utc>>,
    pub alerts: u32,
    pub follow_ups: u32,
    /// Every delivery and failure of its alerts, in one line (see [`view::alert_summary`]).
    pub alert_deliveries: Option<String>,
    /// Every revision of its outcome by evidence read late, in one line (see
    /// [`view::revision_summary`]).
    pub revisions: Option<String>,
}

/// A missed inquiry with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    pub id: String,
    pub channel: String,
    pub language: String,
    pub customer: String,
    pub subject: String,
    pub received_at: DateTime<Utc>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub breached_at: Option<DateTime<Utc>>,
    pub responded: bool,
    pub responded_at: Option<DateTime<Utc>>,
    pub response_seconds: Option<i64>,
    pub response_kind: Option<String>,
    pub responder: Option<String>,
    /// The Message-ID or call id of the inquiry.
    pub external_id: String,
    /// The Message-ID or call id of the response.
    pub response_id: Option<String>,
    /// `phone|email|other` for a manual acknowledgement.
    pub ack_via: Option<String>,
    pub ack_note: Option<String>,
    /// The alerts raised and sent about it, oldest first.
    pub alerts: Vec<AlertRow>,
    /// Who said "I'm on it", and when, oldest first.
    pub takes: Vec<TakeRow>,
    pub policy: Option<String>,
}

/// One "I'm on it" (`InquiryTaken`) with the time it took after the alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TakeRow {
    pub by: String,
    pub at: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// `link`, `shared_link` or `api`.
    pub how: String,
    /// The alert it answered: the first delivered to the taker before the take, else the first
    /// delivered to anyone, else the first raised.
    pub alerted_at: Option<DateTime<Utc>>,
    /// `at - alerted_at`, whole seconds.
    pub alert_to_take_seconds: Option<i64>,
}

/// Time from alert to take (seconds, nearest rank) over the takes of the period's inquiries:
/// `answered` is the number of takes with a known alert.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TakeFigures {
    pub takes: u64,
    pub overall: Percentiles,
    pub by_person: BTreeMap<String, Percentiles>,
}

/// Evidence flagged as contradicting other evidence (`evidence_contradicted` in the ledger).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContradictionRow {
    pub at: DateTime<Utc>,
    pub source: String,
    /// `reply_before_message` or `answered_before_start`.
    pub kind: String,
    /// The message or call record that contradicts.
    pub evidence: String,
    pub detail: String,
}

/// An excluded message with its reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exclusion {
    pub id: String,
    pub channel: String,
    pub customer: String,
    pub subject: String,
    pub received_at: DateTime<Utc>,
    pub reason: String,
    pub detail: String,
    pub external_id: String,
}

/// A policy version and when it was first used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyInForce {
    pub activated_at: DateTime<Utc>,
    pub record: PolicyRecord,
    /// Inquiries received in the period that were opened under this version.
    pub inquiries_in_period: u64,
}

/// An inquiry the monitor saw late.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LateDetection {
    pub id: String,
    pub source: String,
    pub received_at: DateTime<Utc>,
    pub first_seen_at: DateTime<Utc>,
    pub detection_seconds: i64,
    /// Index in [`Coverage::gaps`] of the gap it was received in, if any.
    pub gap: Option<usize>,
}

/// A period in which the monitor was not (fully) watching, clipped to the report's period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub seconds: i64,
    /// `daemon` (not running) or `source`.
    pub scope: String,
    /// The source, for a source gap.
    pub source: Option<String>,
    /// Why: `stopped`, `not_running` (no stop recorded: crashed or killed), `failover` (until
    /// the standby replica took over; see [`Coverage::leader_changes`]), `no_heartbeat`,
    /// `no_record` (before the first recorded start), or the source's error kind.
    pub cause: String,
    /// Inquiries (and excluded messages) received during the gap.
    pub inquiries_received: u64,
    /// Of those, how many the monitor saw more than the threshold after they were received.
    pub detected_late: u64,
}

/// A replica took the leader lease (see `store::lease`): from then on it wrote the ledger and
/// sent the alerts. `previous` is none for a pair's first start; otherwise it is a failover
/// (the previous active died, was cut off or paused) or a handover (it stopped cleanly).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaderChange {
    pub at: DateTime<Utc>,
    pub epoch: i64,
    pub replica: String,
    pub previous: Option<String>,
}

/// One of the monitor's own alerts (a source silent, the ledger not writable, a notifier
/// failing) overlapping the period: when it was raised and resolved, and whether it reached
/// anyone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorAlertRow {
    /// Its id (`monitor-source-{name}`, `monitor-ledger`, `monitor-notifier-{name}`).
    pub alert: String,
    pub problem: String,
    pub subject: String,
    pub detail: String,
    pub raised_at: DateTime<Utc>,
    /// `None` while still active at the end of the period.
    pub resolved_at: Option<DateTime<Utc>>,
    /// From raised to resolved (or to the end of the period).
    pub seconds: i64,
    /// Whether a notifier's server accepted the page, and which notifiers did.
    pub delivered: bool,
    pub notifiers: Vec<String>,
}

/// The monitor's own gaps, as far as the ledger proves them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    /// Whether the ledger holds monitor events (`monitor_started` …) at all; ledgers written
    /// before they existed cannot prove coverage, and the report says so.
    pub recorded: bool,
    /// Daemon and source gaps overlapping the period, by start.
    pub gaps: Vec<Gap>,
    /// Seconds of the period the daemon was not watching (daemon gaps only).
    pub daemon_down_seconds: i64,
    /// The monitor's own alerts overlapping the period, by when they were raised.
    pub monitor_alerts: Vec<MonitorAlertRow>,
    /// Changes of the replica that wrote and alerted (a pair on PostgreSQL), in the period.
    pub leader_changes: Vec<LeaderChange>,
    pub late_threshold_seconds: i64,
    /// Inquiries detected later than the threshold, oldest first.
    pub late_detections: Vec<LateDetection>,
    /// Detection latency over all inquiries of the period.
    pub detection: Percentiles,
}

/// The hash chain's state when the report was made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerCheck {
    pub intact: bool,
    /// Rows checked.
    pub events: u64,
    pub head_seq: Option<i64>,
    pub head_hash: Option<String>,
    /// `intact`, or the first broken link.
    pub verification: String,
    /// What was checked: `whole` (every row from the first, link by link) or `period` (see
    /// [`ChainScope::Period`]).
    pub scope: ChainScope,
    /// With `period`: the seq range checked link by link (`None`: no row in or around the
    /// period), and how many rows of the desk's record outside it were checked against their
    /// own hashes.
    pub linked: Option<(i64, i64)>,
    pub record_rows: u64,
}

impl LedgerCheck {
    /// One line saying what was checked, for the renderers.
    pub fn checked(&self) -> String {
        match (self.scope, self.linked) {
            (ChainScope::Whole, _) => {
                format!("every row (1 to {}), link by link", self.events)
            }
            (ChainScope::Period, Some((first, last))) => format!(
                "rows {first} to {last} (the period's) link by link, and {} rows of \
                 the desk's record each against its hash; the whole chain: `slawatch audit \
                 verify --expect` the head below",
                self.record_rows
            ),
            (ChainScope::Period, None) => format!(
                "{} rows of the desk's record each against its hash (no row in or around the \
                 period); the whole chain: `slawatch audit verify --expect` the head below",
                self.record_rows
            ),
        }
    }
}

/// Everything a report shows, derived from the ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportData {
    pub title: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub time_zone: String,
    pub generated_at: DateTime<Utc>,
    pub masked: bool,
    pub totals: Counts,
    pub excluded_by_reason: BTreeMap<String, u64>,
    pub by_channel: BTreeMap<String, Counts>,
    pub by_language: BTreeMap<String, Counts>,
    /// Keyed `YYYY-MM` in the report's time zone.
    pub by_month: BTreeMap<String, Counts>,
    /// Keyed `YYYY-MM-DD` in the report's time zone.
    pub by_day: BTreeMap<String, Counts>,
    /// 168 cells, Monday 00:00 first, in the report's time zone.
    pub hour_of_week: Vec<Counts>,
    pub response_times: Percentiles,
    pub response_times_by_channel: BTreeMap<String, Percentiles>,
    pub response_times_by_language: BTreeMap<String, Percentiles>,
    pub response_distribution: Vec<Bucket>,
    /// Oldest first.
    pub breaches: Listing<Breach>,
    /// Oldest first.
    pub exclusions: Listing<Exclusion>,
    pub policies: Vec<PolicyInForce>,
    pub coverage: Coverage,
    pub ledger: LedgerCheck,
    /// Evidence that contradicts other evidence, flagged in the period (kept, never dropped).
    pub contradictions: Vec<ContradictionRow>,
    /// "I'm on it": how long after the alert inquiries were taken, overall and per person.
    pub takes: TakeFigures,
    /// One row per inquiry received in the period, oldest first.
    pub inquiries: Listing<InquiryRow>,
}

/// Pages decoded and folded while the next ones are read and verified.
const PAGES_IN_FLIGHT: usize = 1;

/// Rows of the desk's record read per query.
const RECORD_PAGE: i64 = 10_000;

/// Checks the chain as `params.chain` asks while folding the rows of the period, then derives
/// the report for `params`. `progress` is called with the number of events read so far (after
/// every page).
///
/// The pass is a pipeline: this task reads each page and checks its links and hashes (the
/// same check as `audit verify`), and a blocking thread decodes and folds the pages it is
/// handed; so the work is spread over two cores, and a daemon serving the report over HTTP
/// keeps its async workers free between pages.
///
/// With the store's inquiry projection, only the period's inquiries' rows are decoded; with
/// [`ChainScope::Period`] only they (their seq range) and the desk's record are read at all.
/// Without a projection the whole ledger is read, checked and folded. A break found by a
/// scoped read is reported as the whole chain's first break: the report then reads everything.
pub async fn build(
    store: &Store,
    rules: Arc<TrackerRules>,
    params: &ReportParams,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<ReportData, ReportError> {
    // The fold reads decisions from the ledger; the rules that made them are not needed.
    drop(rules);
    if params.from >= params.to {
        return Err(ReportError::EmptyPeriod {
            from: params.from,
            to: params.to,
        });
    }
    let Some(filter) = PeriodFilter::of(store, params.from, params.to).await? else {
        return build_with(store, params, progress, None).await;
    };
    let data = build_with(store, params, progress, Some(filter)).await?;
    if !data.ledger.intact {
        // A broken chain may hold index columns that disagree with their payloads: the rows
        // are chosen by their payloads alone, as without a projection, and every row is read.
        let whole = ReportParams {
            chain: ChainScope::Whole,
            ..params.clone()
        };
        return build_with(store, &whole, progress, None).await;
    }
    Ok(data)
}

/// Which ledger rows a report folds, when the store's inquiry projection says which inquiries
/// were received in the period: every row about no inquiry (policies, the monitor's record,
/// contradictions), every row about one of those inquiries, and every row after the head seen
/// before the projection was read (written while the report runs). The fold ignores every
/// other row (events about inquiries it does not count), so the report is the same as folding
/// the whole ledger; the rows left out are not even decoded.
pub struct PeriodFilter {
    after: i64,
    /// The rows a scoped read covers link by link: those about the period's inquiries, and
    /// those recorded from [`RECORDED_AROUND`] before the period to as long after it (the
    /// monitor's heartbeats, which say whether it was watching).
    seqs: Option<(i64, i64)>,
    received: crate::store::ReceivedInPeriod,
}

/// How far before and after its period a report reads every row recorded: at least the
/// heartbeats that say whether the monitor was watching at the period's edges (a heartbeat is
/// due every [`crate::monitor::HEARTBEAT_EVERY`]; a silence longer than [`HEARTBEAT_SILENCE`]
/// is a gap). Further out only the desk's record is read: its starts, stops and sources decide
/// any longer gap across an edge.
pub const RECORDED_AROUND: chrono::Duration = chrono::Duration::days(1);

impl PeriodFilter {
    /// The filter for `[from, to)`; `None` when the store has no projection to choose by.
    pub async fn of(
        store: &Store,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Option<PeriodFilter>, StoreError> {
        let after = store.head().await?.map_or(0, |(seq, _)| seq);
        let Some(received) = store.inquiries_received(from, to).await? else {
            return Ok(None);
        };
        let around = store
            .recorded_between(from - RECORDED_AROUND, to + RECORDED_AROUND)
            .await?;
        let seqs = match (received.seqs, around) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (seqs, None) | (None, seqs) => seqs,
        };
        Ok(Some(PeriodFilter {
            after,
            seqs,
            received,
        }))
    }

    /// How many inquiries of the period the projection names.
    pub fn inquiries(&self) -> usize {
        self.received.ids.len()
    }

    fn keeps(&self, seq: i64, inquiry_id: Option<&str>) -> bool {
        inquiry_id.is_none_or(|id| seq > self.after || self.received.ids.contains(id))
    }
}

/// What the reading task hands the folding thread, in seq order.
enum Piece {
    /// A page of rows, not decoded yet.
    Page(LedgerPage),
    /// Rows of the desk's record, decoded.
    Record(Vec<(i64, Event)>),
}

/// What the reading task found about the chain.
struct Checked {
    verification: Verification,
    /// The last row checked: `(seq, hash)`.
    last: Option<(i64, String)>,
    linked: Option<(i64, i64)>,
    record_rows: u64,
}

/// [`build`], folding the rows `filter` keeps (all without one), reading as `params.chain`
/// asks (all without a filter).
async fn build_with(
    store: &Store,
    params: &ReportParams,
    progress: &mut (dyn FnMut(u64) + Send),
    filter: Option<PeriodFilter>,
) -> Result<ReportData, ReportError> {
    let (pieces, received) = std::sync::mpsc::sync_channel::<Piece>(PAGES_IN_FLIGHT);
    let (from, to) = (params.from, params.to);
    let scope = match &filter {
        Some(filter) => params.chain.into_scoped(filter.seqs),
        None => Scoped::Whole,
    };
    let folder = tokio::task::spawn_blocking(move || -> Result<PeriodFold, StoreError> {
        let mut fold = PeriodFold::new(from, to);
        for piece in received {
            match (piece, &filter) {
                (Piece::Page(page), Some(filter)) => {
                    for event in page.events_where(|seq, id| filter.keeps(seq, id)) {
                        fold.apply(&event?.1);
                    }
                }
                (Piece::Page(page), None) => {
                    for event in page.events() {
                        fold.apply(&event?.1);
                    }
                }
                (Piece::Record(events), _) => {
                    for (_, event) in &events {
                        fold.apply(event);
                    }
                }
            }
        }
        Ok(fold)
    });
    let mut read = 0u64;
    let mut send = |piece: Piece, rows: usize| {
        read += rows as u64;
        // A closed channel means the folder stopped at a corrupt row: its error is reported.
        let _ = pieces.send(piece);
        progress(read);
    };
    let checked = match scope {
        Scoped::Whole => read_whole(store, &mut send).await,
        Scoped::Rows(linked) => read_scoped(store, linked, &mut send).await,
    };
    drop(pieces);
    let fold = folder
        .await
        .map_err(|e| ReportError::Io(std::io::Error::other(e)))??;
    let checked = checked?;
    let ledger = match checked.verification {
        Verification::Intact { events, .. } => LedgerCheck {
            intact: true,
            events,
            head_seq: checked.last.as_ref().map(|l| l.0),
            head_hash: checked.last.map(|l| l.1),
            verification: "intact".to_string(),
            scope: scope.chain(),
            linked: checked.linked,
            record_rows: checked.record_rows,
        },
        Verification::Broken {
            seq,
            expected,
            found,
            problem,
        } => {
            let head = store.head().await?;
            LedgerCheck {
                intact: false,
                events: 0,
                head_seq: head.as_ref().map(|h| h.0),
                head_hash: head.map(|h| h.1),
                verification: format!(
                    "BROKEN at event {seq}: {problem} (expected {expected}, found {found})"
                ),
                scope: scope.chain(),
                linked: checked.linked,
                record_rows: checked.record_rows,
            }
        }
    };
    let gaps = gaps(&fold.monitor, params.from, params.to.min(Utc::now()));
    let own_alerts = monitor_alerts(&fold.monitor, params.from, params.to.min(Utc::now()));
    let leader_changes: Vec<LeaderChange> = fold
        .monitor
        .iter()
        .filter_map(|e| match e {
            Event::LeaderChanged {
                at,
                epoch,
                replica,
                previous,
            } if *at >= params.from && *at < params.to => Some(LeaderChange {
                at: *at,
                epoch: *epoch,
                replica: replica.clone(),
                previous: previous.clone(),
            }),
            _ => None,
        })
        .collect();
    let recorded = fold
        .monitor
        .iter()
        .any(|e| matches!(e, Event::MonitorStarted { .. }));
    let contradictions = fold
        .contradictions
        .iter()
        .filter_map(|e| match e {
            Event::EvidenceContradicted {
                source,
                external_id,
                kind,
                detail,
                at,
            } => Some(ContradictionRow {
                at: *at,
                source: source.clone(),
                kind: kind.as_str().into(),
                evidence: external_id.clone(),
                detail: detail.clone(),
            }),
            _ => None,
        })
        .collect();
    let params = params.clone();
    tokio::task::spawn_blocking(move || {
        derive(
            fold,
            (recorded, gaps, own_alerts, leader_changes),
            (ledger, contradictions),
            &params,
        )
    })
    .await
    .map_err(|e| ReportError::Io(std::io::Error::other(e)))
}

/// What a report reads: everything, or one seq range and the desk's record.
#[derive(Clone, Copy)]
enum Scoped {
    Whole,
    /// The seq range of the rows of the period and around it (`None`: there are none), and
    /// the desk's record.
    Rows(Option<(i64, i64)>),
}

impl ChainScope {
    fn into_scoped(self, seqs: Option<(i64, i64)>) -> Scoped {
        match self {
            ChainScope::Whole => Scoped::Whole,
            ChainScope::Period => Scoped::Rows(seqs),
        }
    }
}

impl Scoped {
    fn chain(self) -> ChainScope {
        match self {
            Scoped::Whole => ChainScope::Whole,
            Scoped::Rows(_) => ChainScope::Period,
        }
    }
}

/// Reads the whole ledger, checking every row link by link from the first.
async fn read_whole(
    store: &Store,
    send: &mut impl FnMut(Piece, usize),
) -> Result<Checked, StoreError> {
    let mut last = None;
    let verification = store
        .walk_verified(|page| {
            if let Some(seq) = page.last_seq() {
                last = Some(seq);
            }
            let rows = page.len();
            send(Piece::Page(page), rows);
            Ok::<(), StoreError>(())
        })
        .await?;
    let last = match (&verification, last) {
        (Verification::Intact { head_hash, .. }, Some(seq)) => Some((seq, head_hash.clone())),
        _ => None,
    };
    Ok(Checked {
        verification,
        last,
        linked: None,
        record_rows: 0,
    })
}

/// Reads, in seq order, the desk's record before `linked`, the rows of `linked` checked link by
/// link, and the record after them.
async fn read_scoped(
    store: &Store,
    linked: Option<(i64, i64)>,
    send: &mut impl FnMut(Piece, usize),
) -> Result<Checked, StoreError> {
    let mut checked = Checked {
        verification: Verification::Intact {
            events: 0,
            head_hash: String::new(),
        },
        last: None,
        linked: None,
        record_rows: 0,
    };
    let Some((first, last)) = linked else {
        read_record(store, (0, i64::MAX), send, &mut checked).await?;
        return Ok(checked);
    };
    if !read_record(store, (0, first), send, &mut checked).await? {
        return Ok(checked);
    }
    let mut pages = store.checked_range(first, last).await?;
    let mut end = None;
    while let Some(page) = pages.next().await? {
        end = page.last_seq().or(end);
        let rows = page.len();
        send(Piece::Page(page), rows);
    }
    let (verification, _) = pages.finish();
    checked.linked = Some((first, last));
    match verification {
        Verification::Intact { events, head_hash } if end == Some(last) => {
            checked.last = Some((last, head_hash));
            if let Verification::Intact { events: n, .. } = &mut checked.verification {
                *n += events;
            }
        }
        Verification::Intact { .. } => {
            // The projection names rows the ledger does not hold.
            checked.verification = Verification::Broken {
                seq: end.map_or(first, |end| end + 1),
                expected: String::new(),
                found: String::new(),
                problem: format!("the ledger ends before seq {last}"),
            };
            return Ok(checked);
        }
        broken => {
            checked.verification = broken;
            return Ok(checked);
        }
    }
    read_record(store, (last, i64::MAX), send, &mut checked).await?;
    Ok(checked)
}

/// Reads the desk's record with `after < seq < before` into `checked`; `false` when a row
/// failed its check (the verdict is then in `checked`).
async fn read_record(
    store: &Store,
    (mut after, before): (i64, i64),
    send: &mut impl FnMut(Piece, usize),
    checked: &mut Checked,
) -> Result<bool, StoreError> {
    loop {
        let (rows, broken) = store.record_rows(after, before, RECORD_PAGE).await?;
        let full = rows.len() as i64 == RECORD_PAGE;
        checked.record_rows += rows.len() as u64;
        if let Verification::Intact { events, .. } = &mut checked.verification {
            *events += rows.len() as u64;
        }
        if let Some((seq, hash, _)) = rows.last() {
            after = *seq;
            if checked.last.as_ref().is_none_or(|l| l.0 < *seq) {
                checked.last = Some((*seq, hash.clone()));
            }
        }
        let count = rows.len();
        send(
            Piece::Record(rows.into_iter().map(|(seq, _, e)| (seq, e)).collect()),
            count,
        );
        if let Some(broken) = broken {
            checked.verification = broken;
            return Ok(false);
        }
        if !full {
            return Ok(true);
        }
    }
}

fn derive(
    fold: PeriodFold,
    (recorded, mut gaps, monitor_alerts, leader_changes): (
        bool,
        Vec<Gap>,
        Vec<MonitorAlertRow>,
        Vec<LeaderChange>,
    ),
    (ledger, contradictions): (LedgerCheck, Vec<ContradictionRow>),
    params: &ReportParams,
) -> ReportData {
    let tz = params.time_zone;
    let population = fold.population();
    let FoldedPeriod {
        records,
        strings,
        ids,
        policies,
    } = fold.into_parts();

    let mut totals = Counts::default();
    let mut excluded_by_reason = BTreeMap::new();
    let mut by_channel: BTreeMap<String, Counts> = BTreeMap::new();
    let mut by_language: BTreeMap<String, Counts> = BTreeMap::new();
    let mut by_month: BTreeMap<String, Counts> = BTreeMap::new();
    let mut by_day: BTreeMap<String, Counts> = BTreeMap::new();
    let mut hour_of_week = vec![Counts::default(); 168];
    let mut distribution = vec![0u64; HISTOGRAM_BOUNDS.len()];
    let mut breaches = Vec::new();
    let mut exclusions = Vec::new();
    let mut late_detections = Vec::new();
    let mut policy_use: HashMap<u32, u64> = HashMap::new();

    // Every month of the period appears, even an empty one (a yearly review shows twelve).
    let mut month = tz.from_utc_datetime(&params.from.naive_utc());
    while month.with_timezone(&Utc) < params.to {
        by_month.entry(month_key(&month)).or_default();
        month = match next_month(&month) {
            Some(m) => m,
            None => break,
        };
    }

    // Calendar keys change rarely between consecutive inquiries (oldest first): the day and
    // month keys are formatted once per local day, not once per inquiry.
    let mut day_of: Option<(chrono::NaiveDate, String, String)> = None;
    for &n in &population {
        let i = &records[n as usize];
        let local = i.received_at.with_timezone(&tz);
        let date = local.date_naive();
        if day_of.as_ref().is_none_or(|(d, ..)| *d != date) {
            day_of = Some((
                date,
                local.format("%Y-%m-%d").to_string(),
                month_key(&local),
            ));
        }
        let (_, day_key, month) = day_of.as_ref().expect("set above");
        totals.add(i);
        by_channel
            .entry(i.channel.as_str().into())
            .or_default()
            .add(i);
        by_language
            .entry(i.language.as_str().into())
            .or_default()
            .add(i);
        match by_month.get_mut(month) {
            Some(c) => c.add(i),
            None => by_month.entry(month.clone()).or_default().add(i),
        }
        match by_day.get_mut(day_key) {
            Some(c) => c.add(i),
            None => by_day.entry(day_key.clone()).or_default().add(i),
        }
        let how = local.weekday().num_days_from_monday() as usize * 24 + local.hour() as usize;
        hour_of_week[how].add(i);
        let detection = view::detection_seconds(i);
        if i.state == InquiryState::Excluded {
            *excluded_by_reason
                .entry(
                    i.excluded_reason
                        .map(|r| r.as_str())
                        .unwrap_or("unknown")
                        .to_string(),
                )
                .or_default() += 1;
            exclusions.push(n);
        }
        let late = (i.first_seen_at - i.received_at) > LATE_DETECTION;
        let mut in_gap = None;
        let source = strings.get(i.source);
        for (k, g) in gaps.iter_mut().enumerate() {
            let concerned = g.source.as_deref().is_none_or(|s| s == source);
            if concerned && i.received_at >= g.start && i.received_at <= g.end {
                g.inquiries_received += 1;
                if late {
                    g.detected_late += 1;
                }
                in_gap.get_or_insert(k);
            }
        }
        if i.state != InquiryState::Excluded {
            if late {
                late_detections.push(LateDetection {
                    id: i.id.to_string(),
                    source: source.to_string(),
                    received_at: i.received_at,
                    first_seen_at: i.first_seen_at,
                    detection_seconds: detection,
                    gap: in_gap,
                });
            }
            if let Some(p) = i.policy {
                *policy_use.entry(p).or_default() += 1;
            }
        }
        if let Some(s) = i.response_seconds {
            let slot = HISTOGRAM_BOUNDS
                .iter()
                .position(|b| s <= *b)
                .unwrap_or(HISTOGRAM_BOUNDS.len() - 1);
            distribution[slot] += 1;
        }
        if i.sla == SlaStatus::Missed {
            breaches.push(n);
        }
    }

    totals.finish();
    for c in by_channel
        .values_mut()
        .chain(by_language.values_mut())
        .chain(by_month.values_mut())
        .chain(by_day.values_mut())
        .chain(hour_of_week.iter_mut())
    {
        c.finish();
    }

    let mut buffer = Vec::new();
    let answered = |r: &Record| r.response_seconds;
    let response_times = Percentiles::over(&records, &population, &mut buffer, answered);
    let mut response_times_by_channel = BTreeMap::new();
    for channel in Channel::ALL {
        let p = Percentiles::over(&records, &population, &mut buffer, |r| {
            answered(r).filter(|_| r.channel == channel)
        });
        if p.answered > 0 {
            response_times_by_channel.insert(channel.as_str().to_string(), p);
        }
    }
    let mut response_times_by_language = BTreeMap::new();
    for language in Language::ALL {
        let p = Percentiles::over(&records, &population, &mut buffer, |r| {
            answered(r).filter(|_| r.language == language)
        });
        if p.answered > 0 {
            response_times_by_language.insert(language.as_str().to_string(), p);
        }
    }
    let detection = Percentiles::over(&records, &population, &mut buffer, |r| {
        (r.state != InquiryState::Excluded).then(|| view::detection_seconds(r))
    });
    drop(buffer);

    // Versions in force: every version first used before the end of the period (the last one
    // used before `from` was still in force at its start).
    let policy_use: HashMap<&str, u64> = policy_use
        .into_iter()
        .map(|(p, count)| (strings.get(p), count))
        .collect();
    let policies = policies
        .into_iter()
        .filter(|(at, _)| *at < params.to)
        .map(|(at, record)| PolicyInForce {
            activated_at: at,
            inquiries_in_period: policy_use
                .get(record.version.as_str())
                .copied()
                .unwrap_or(0),
            record,
        })
        .collect();

    let takes = {
        let mut overall = Vec::new();
        let mut by_person: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut count = 0u64;
        for &n in &population {
            let r = &records[n as usize];
            for t in r.takes() {
                count += 1;
                let row = view::take_row(r.alert_log(), t);
                if let Some(s) = row.alert_to_take_seconds {
                    overall.push(s);
                    by_person.entry(row.by).or_default().push(s);
                }
            }
        }
        TakeFigures {
            takes: count,
            overall: Percentiles::of_slice(&mut overall),
            by_person: by_person
                .into_iter()
                .map(|(k, mut v)| (k, Percentiles::of_slice(&mut v)))
                .collect(),
        }
    };
    let table = Arc::new(view::Table {
        records,
        strings,
        ids,
        mask: params.mask,
        time_zone: tz,
    });
    ReportData {
        title: params.title.clone(),
        from: params.from,
        to: params.to,
        time_zone: tz.name().to_string(),
        generated_at: Utc::now(),
        masked: params.mask,
        totals,
        excluded_by_reason,
        by_channel,
        by_language,
        by_month,
        by_day,
        hour_of_week,
        response_times,
        response_times_by_channel,
        response_times_by_language,
        response_distribution: HISTOGRAM_BOUNDS
            .iter()
            .zip(distribution)
            .map(|(b, count)| Bucket {
                le_seconds: (*b != i64::MAX).then_some(*b),
                count,
            })
            .collect(),
        breaches: Listing::new(table.clone(), breaches, view::Table::breach),
        exclusions: Listing::new(table.clone(), exclusions, view::Table::exclusion),
        policies,
        coverage: Coverage {
            recorded,
            daemon_down_seconds: gaps
                .iter()
                .filter(|g| g.scope == "daemon")
                .map(|g| g.seconds)
                .sum(),
            gaps,
            monitor_alerts,
            leader_changes,
            late_threshold_seconds: LATE_DETECTION.num_seconds(),
            late_detections,
            detection,
        },
        ledger,
        contradictions,
        takes,
        inquiries: Listing::new(table, population, view::Table::row),
    }
}

/// The monitor's own alerts from their events (in ledger order) that overlap `[from, until)`.
fn monitor_alerts(
    monitor: &[Event],
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<MonitorAlertRow> {
    let mut rows: Vec<MonitorAlertRow> = Vec::new();
    // Index of each alert's open row.
    let mut active: HashMap<&str, usize> = HashMap::new();
    for e in monitor {
        match e {
            Event::MonitorAlertRaised {
                alert,
                problem,
                subject,
                detail,
                at,
            } => {
                active.insert(alert, rows.len());
                rows.push(MonitorAlertRow {
                    alert: alert.clone(),
                    problem: problem.as_str().to_string(),
                    subject: subject.clone(),
                    detail: detail.clone(),
                    raised_at: *at,
                    resolved_at: None,
                    seconds: 0,
                    delivered: false,
                    notifiers: Vec::new(),
                });
            }
            Event::MonitorAlertResolved { alert, at } => {
                if let Some(i) = active.remove(alert.as_str()) {
                    rows[i].resolved_at = Some(*at);
                }
            }
            Event::MonitorAlertDelivered {
                alert,
                kind: slawatch_core::tracker::AlertKind::Breach,
                notifiers,
                ..
            } => {
                if let Some(&i) = active.get(alert.as_str()) {
                    rows[i].delivered = true;
                    for n in notifiers {
                        if !rows[i].notifiers.contains(n) {
                            rows[i].notifiers.push(n.clone());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    rows.retain(|r| r.raised_at < until && r.resolved_at.is_none_or(|end| end >= from));
    for r in &mut rows {
        let end = r.resolved_at.unwrap_or(until).min(until);
        r.seconds = (end - r.raised_at.max(from)).num_seconds().max(0);
    }
    rows
}

/// Daemon and source gaps from the monitor events (in ledger order), clipped to
/// `[from, until)`; `until` is the end of the period or now, whichever is earlier.
fn gaps(monitor: &[Event], from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<Gap> {
    // (start, end, source, cause)
    type RawGap = (DateTime<Utc>, DateTime<Utc>, Option<String>, String);
    let mut raw: Vec<RawGap> = Vec::new();
    // Last instant the daemon was known alive, and whether it stopped cleanly then.
    let mut alive: Option<(DateTime<Utc>, bool)> = None;
    let mut first_start: Option<DateTime<Utc>> = None;
    let mut down: HashMap<String, (DateTime<Utc>, String)> = HashMap::new();
    // A start that follows a replica taking over from another.
    let mut took_over = false;
    for e in monitor {
        match e {
            Event::LeaderChanged { previous, .. } => took_over = previous.is_some(),
            Event::MonitorStarted { at, .. } => {
                first_start.get_or_insert(*at);
                if let Some((last, stopped)) = alive {
                    let cause = match (std::mem::take(&mut took_over), stopped) {
                        (true, _) => "failover",
                        (false, true) => "stopped",
                        (false, false) => "not_running",
                    };
                    raw.push((last, *at, None, cause.into()));
                }
                // Sources start afresh: a source down before the gap is covered by it.
                for (source, (since, kind)) in down.drain() {
                    let end = alive.map(|a| a.0).unwrap_or(*at).max(since);
                    raw.push((since, end, Some(source), kind));
                }
                alive = Some((*at, false));
            }
            Event::MonitorHeartbeat { at } => {
                if let Some((last, false)) = alive
                    && *at - last > HEARTBEAT_SILENCE
                {
                    raw.push((last, *at, None, "no_heartbeat".into()));
                }
                if alive.is_some() {
                    alive = Some((*at, false));
                }
            }
            Event::MonitorStopped { at } => {
                for (source, (since, kind)) in down.drain() {
                    raw.push((since, *at, Some(source), kind));
                }
                alive = Some((*at, true));
            }
            Event::SourceDown {
                source,
                at,
                error_kind,
            } => {
                down.entry(source.clone())
                    .or_insert((*at, error_kind.clone()));
            }
            Event::SourceUp { source, at } => {
                if let Some((since, kind)) = down.remove(source) {
                    raw.push((since, *at, Some(source.clone()), kind));
                }
            }
            _ => {}
        }
    }
    // Still open at the end.
    for (source, (since, kind)) in down {
        raw.push((since, until, Some(source), kind));
    }
    match alive {
        Some((last, true)) => raw.push((last, until, None, "stopped".into())),
        Some((last, false)) if until - last > HEARTBEAT_SILENCE => {
            raw.push((last, until, None, "no_heartbeat".into()))
        }
        _ => {}
    }
    if let Some(first) = first_start {
        raw.push((from, first, None, "no_record".into()));
    }
    let mut out: Vec<Gap> = raw
        .into_iter()
        .filter_map(|(start, end, source, cause)| {
            let (start, end) = (start.max(from), end.min(until));
            (start < end).then(|| Gap {
                start,
                end,
                seconds: (end - start).num_seconds(),
                scope: if source.is_some() { "source" } else { "daemon" }.into(),
                source,
                cause,
                inquiries_received: 0,
                detected_late: 0,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.start, &a.source).cmp(&(b.start, &b.source)));
    out
}

fn month_key(t: &DateTime<Tz>) -> String {
    t.format("%Y-%m").to_string()
}

/// Local midnight of the first day of the month after `t`'s.
fn next_month(t: &DateTime<Tz>) -> Option<DateTime<Tz>> {
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    local_midnight(t.timezone(), y, m, 1)
}

/// Midnight (or the first instant after it, across a DST gap) of a local date.
pub fn local_midnight(tz: Tz, year: i32, month: u32, day: u32) -> Option<DateTime<Tz>> {
    let date = chrono::NaiveDate::from_ymd_opt(year, month, day)?;
    (0..=2).find_map(|h| {
        tz.from_local_datetime(&date.and_hms_opt(h, 0, 0)?)
            .earliest()
    })
}

/// `2026-03-01` (local midnight in `tz`) or an RFC 3339 instant.
pub fn parse_when(s: &str, tz: Tz) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let date = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    local_midnight(tz, date.year(), date.month(), date.day()).map(|t| t.with_timezone(&Utc))
}

/// `ana@desk.example` → `a***@d***.example`; `+34911222333` → `+*********33`.
pub fn mask_customer(customer: &str) -> String {
    if let Some((local, domain)) = customer.rsplit_once('@') {
        let first = |s: &str| s.chars().next().map(String::from).unwrap_or_default();
        let (host, rest) = match domain.split_once('.') {
            Some((h, r)) => (h, format!(".{}", r.rsplit('.').next().unwrap_or(r))),
            None => (domain, String::new()),
        };
        format!("{}***@{}***{}", first(local), first(host), rest)
    } else {
        let chars: Vec<char> = customer.chars().collect();
        let keep = 2.min(chars.len());
        let mut out = String::new();
        for (n, c) in chars.iter().enumerate() {
            if n + keep >= chars.len() || (n == 0 && *c == '+') {
                out.push(*c);
            } else {
                out.push('*');
            }
        }
        out
    }
}

/// Seconds as `1h02m03s` / `4m05s` / `12s`.
pub fn format_seconds(s: i64) -> String {
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{sec:02}s")
    } else if m > 0 {
        format!("{m}m{sec:02}s")
    } else {
        format!("{sec}s")
    }
}

/// A ratio as a percentage with one decimal, or `n/a`.
pub fn format_ratio(r: Option<f64>) -> String {
    r.map(|v| format!("{:.1}%", v * 100.0))
        .unwrap_or_else(|| "n/a".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_addresses_and_numbers() {
        assert_eq!(mask_customer("ana@desk.example"), "a***@d***.example");
        assert_eq!(mask_customer("x@mail.co.uk"), "x***@m***.uk");
        assert_eq!(mask_customer("+34911222333"), "+*********33");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let p = Percentiles::of((1..=100).collect());
        assert_eq!(
            (p.p50, p.p90, p.p95, p.p99, p.max),
            (Some(50), Some(90), Some(95), Some(99), Some(100))
        );
        assert_eq!(Percentiles::of(Vec::new()).p50, None);
    }

    #[test]
    fn local_midnight_in_madrid() {
        let tz: Tz = "Europe/Madrid".parse().unwrap();
        let m = local_midnight(tz, 2026, 1, 1).unwrap();
        assert_eq!(
            m.with_timezone(&Utc).to_rfc3339(),
            "2025-12-31T23:00:00+00:00"
        );
    }
}
