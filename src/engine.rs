//! The engine: the one writer of the ledger, and the one place that decides when alerts go out.
//!
//! It owns the order of everything: observations from sources, acks and pushed calls from the
//! CLI/API, the monitor's own signals and instants from the scheduler all go through one task.
//! For each input it has the tracker decide and apply the events (under the state's write lock)
//! and queues them, with the source's cursors, for the ledger. One write task at a time appends
//! the queue in order, each write one transaction; whatever queued up during a write goes into
//! the next one together (group commit: one disk sync serves many pushed calls, and a source
//! batch is written while the next one is decided).
//!
//! **Alerts never wait.** Every turn of the loop first fires whatever deadline or
//! re-notification is due, whatever else is ready, and the alerts an event raises are handed to
//! the notifier the moment the event is decided, not once it is in the ledger. So a backfill, a
//! flood of pushed calls, or a slow or stuck ledger write delays no alert. Metrics, the sources'
//! answers (their cursors commit with their events) and the API's answers follow the commit.
//!
//! **A stuck ledger does not silence the desk.** A failed write is retried with backoff, for
//! as long as it takes; meanwhile decided events wait in memory in order, sources are paused
//! (their batches get no answer, and the engine takes no more than [`SOURCE_BACKLOG`] events
//! from them), alerts keep going out, and once the ledger has refused or stalled writes for
//! [`STALL`] the monitor alert `monitor-ledger` pages through the notifiers, `/readyz` and the
//! wallboard say so and `slawatch_ledger_write_failures_total` counts. When the ledger takes
//! writes again everything waiting is written in its order, delivery records included, and the
//! alert resolves. `/healthz` keeps saying "alive": a restart would lose what waits in memory.
//!
//! **Why this sends no alert twice, and where it may send one again.** An alert's identity
//! (its mail `Message-ID`, its Alertmanager labels, the webhook's `inquiry_id`, `kind` and
//! `due_at`) is derived from the inquiry, the kind and the instant it is about: the warn
//! instant, the deadline, the re-notification instant, the answer time. Those are functions of
//! the evidence, never of when it was sent. After a delivery its `AlertDelivered` is queued
//! behind the event that raised the alert, so the ledger never holds a delivery without its
//! cause, and `Engine::resume_pending` re-sends at start-up only alerts raised without a
//! delivery record. If the daemon dies after an alert went out and before its record was
//! written (killed during a ledger outage, typically): either its raising event is in the
//! ledger without a delivery record, and the start-up re-sends it; or the event is not there
//! either, and the deadline, rebuilt from the inquiry's `InquiryOpened` (or the source
//! re-reading what was not committed), fires again and decides the same event with the same
//! instant. Either way the alert goes out once more, with the same `Message-ID`, and is
//! recorded then: at most one re-send per crash, which a mail system, Alertmanager (same
//! labels) or a webhook receiver (same `inquiry_id`, `kind` and `due_at`) can recognise as the
//! same alert. `tests/ledger_outage.rs` proves it against the binary.
//!
//! Readers (HTTP, CLI) look at the shared state under a read lock.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use slawatch_core::domain::InquiryId;
use slawatch_core::tracker::event::MonitorProblem;
use slawatch_core::tracker::observation::{ManualAck, Stage};
use slawatch_core::tracker::state::Rejected;
use slawatch_core::tracker::{Event, Inquiry, Observation, Tracker};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::monitor::Signal;
use crate::notify::{Alert, AlertKind, Notifier};
use crate::scheduler::{Clock, Deadlines};
use crate::sources::{CursorUpdate, Submission};
use crate::store::health::STALL;
use crate::store::{Sealing, Seals, Signer, Store, StoreError, Verification, WriteState};
use crate::telemetry::Metrics;
use crate::working_set::{Keeper, WorkingSetOptions};

/// What readers share with the engine.
pub struct Shared {
    pub tracker: RwLock<Tracker>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    /// Sources that have not finished their first sync yet (`/readyz` waits for none).
    pub pending_sources: Mutex<BTreeSet<String>>,
    /// Whether the ledger takes writes (`/readyz`, the wallboard).
    pub ledger: WriteState,
    /// When each source last had a batch committed: a source in the middle of a long backfill
    /// completes no check for a while, yet it is not silent.
    pub progress: Mutex<std::collections::HashMap<String, DateTime<Utc>>>,
    /// Whether this replica writes and alerts, or follows (`/readyz`, the wallboard).
    pub role: Mutex<crate::replica::Role>,
    /// A standby's own metrics, which `/metrics` serves instead of the desk's: the desk's
    /// figures come from the active replica alone, so sums over both never count them twice.
    pub standby_metrics: std::sync::OnceLock<prometheus::Registry>,
}

impl Shared {
    /// The shared state over a replayed `tracker`; `pending` sources are in their first sync.
    pub fn new(
        tracker: Tracker,
        metrics: Arc<Metrics>,
        store: Store,
        pending: BTreeSet<String>,
    ) -> Shared {
        Shared {
            tracker: RwLock::new(tracker),
            metrics,
            store,
            pending_sources: Mutex::new(pending),
            ledger: WriteState::default(),
            progress: Mutex::default(),
            role: Mutex::new(crate::replica::Role::Single),
            standby_metrics: std::sync::OnceLock::new(),
        }
    }

    pub fn role(&self) -> crate::replica::Role {
        self.role.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn set_role(&self, role: crate::replica::Role) {
        if let Ok(mut r) = self.role.lock() {
            *r = role;
        }
    }

    /// Now, for readers (`/readyz`): the wall clock less its last measured step, so it agrees
    /// with the engine's monotonic clock.
    pub fn now(&self) -> DateTime<Utc> {
        let offset = self.metrics.clock_offset();
        Utc::now() - chrono::Duration::milliseconds((offset * 1000.0) as i64)
    }

    pub fn is_ready(&self) -> bool {
        self.pending_sources
            .lock()
            .map(|p| p.is_empty())
            .unwrap_or(false)
    }
}

/// Why a manual acknowledgement failed.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error(transparent)]
    Rejected(#[from] Rejected),
    #[error("the ledger could not be written: {0}")]
    Store(String),
    #[error("the engine has stopped")]
    Stopped,
    #[error("this replica is the standby; writes go to the active replica")]
    Standby,
}

/// A request to the engine from the CLI or the API.
#[derive(Debug)]
pub enum Command {
    Ack {
        ack: ManualAck,
        reply: oneshot::Sender<Result<Inquiry, AckError>>,
    },
    /// "I'm on it": `by` takes the open inquiry for `take_for` (`how`: `link`, `shared_link`,
    /// `api`). Answers with the inquiry once the `InquiryTaken` is in the ledger.
    Take {
        inquiry_id: InquiryId,
        by: String,
        how: String,
        reply: oneshot::Sender<Result<Inquiry, AckError>>,
    },
    /// Append one of the monitor's own events (heartbeat, source down/up) to the ledger. They
    /// change no inquiry; they let reports prove when the monitor was watching.
    Record(Event),
    /// Observations pushed through the API (`POST /api/v1/calls`); answers with the number of
    /// ledger events they caused once those are committed.
    Observe {
        observations: Vec<Observation>,
        reply: oneshot::Sender<Result<usize, AckError>>,
    },
}

/// Cheap handle for sending commands to the engine.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    /// `None` on a standby replica, which has no engine.
    commands: Option<mpsc::Sender<Command>>,
}

impl EngineHandle {
    pub fn new(commands: mpsc::Sender<Command>) -> EngineHandle {
        EngineHandle {
            commands: Some(commands),
        }
    }

    /// A standby's handle: there is no engine, and every write is refused as
    /// [`AckError::Standby`].
    pub fn standby() -> EngineHandle {
        EngineHandle { commands: None }
    }

    async fn send(&self, command: Command) -> Result<(), AckError> {
        let commands = self.commands.as_ref().ok_or(AckError::Standby)?;
        commands.send(command).await.map_err(|_| AckError::Stopped)
    }

    /// Records a manual acknowledgement; returns the inquiry as it is afterwards.
    pub async fn ack(&self, ack: ManualAck) -> Result<Inquiry, AckError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Ack { ack, reply }).await?;
        answer.await.map_err(|_| AckError::Stopped)?
    }

    /// Records that `by` took an inquiry ("I'm on it"); returns the inquiry as it is afterwards.
    pub async fn take(
        &self,
        inquiry_id: InquiryId,
        by: String,
        how: &str,
    ) -> Result<Inquiry, AckError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Take {
            inquiry_id,
            by,
            how: how.to_string(),
            reply,
        })
        .await?;
        answer.await.map_err(|_| AckError::Stopped)?
    }

    /// Queues a monitor event for the ledger (see [`Command::Record`]); `false` if the engine
    /// has stopped.
    pub async fn record(&self, event: Event) -> bool {
        self.send(Command::Record(event)).await.is_ok()
    }

    /// Records pushed observations (call events); returns how many ledger events they caused.
    pub async fn observe(&self, observations: Vec<Observation>) -> Result<usize, AckError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Observe {
            observations,
            reply,
        })
        .await?;
        answer.await.map_err(|_| AckError::Stopped)?
    }
}

/// How long deadlines of a source that has not finished its first sync are held back. Holding
/// them lets a backfill read the replies to old inquiries before those are declared missed; the
/// cap makes sure a source that never syncs (server down, folder missing) cannot silence alerts.
pub const SYNC_GRACE: Duration = Duration::from_secs(120);

/// Bound on one alert delivery, so a hanging notifier cannot pile up tasks.
pub const ALERT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// First pause after a failed ledger write, doubled after each further failure.
const FIRST_WRITE_RETRY: Duration = Duration::from_millis(250);

/// Longest pause between two attempts at a failing ledger write: a ledger that recovers is
/// written again (and its alert resolved) within this.
const MAX_WRITE_RETRY: Duration = Duration::from_secs(5);

/// Source events the engine holds at most before the ledger has them: two backfill batches
/// (one being written while the next is decided); beyond it sources wait, so a stalled ledger
/// slows sources down instead of filling memory.
pub const SOURCE_BACKLOG: usize = 20_000;

/// Events the engine holds at most before the ledger has them, whatever their origin: beyond it
/// API commands wait too (a push then times out; the PBX sends it again).
const BACKLOG_MAX: usize = 500_000;

/// Most events, and most waiting requests, in one ledger write: keeps one transaction short.
const WRITE_MAX_EVENTS: usize = 20_000;
const WRITE_MAX_PARTS: usize = 1024;

/// How often the loop looks at the ledger while a write is in flight or waiting to be retried
/// (a stall is noticed, and paged, within this of [`STALL`]).
const LEDGER_WATCH: Duration = Duration::from_secs(1);

/// Everything the engine task needs.
pub struct Engine {
    pub shared: Arc<Shared>,
    pub clock: Clock,
    pub notifier: Arc<dyn Notifier>,
    /// Base URL for links in alerts.
    pub public_url: String,
    /// Who receives each alert; `None` sends every alert to the notifiers' fixed destinations.
    pub oncall: Option<Arc<crate::notify::oncall::OnCall>>,
    pub input: mpsc::Receiver<Submission>,
    pub commands: mpsc::Receiver<Command>,
    /// What the monitor can no longer see or tell (sources, notifiers): raised as alerts.
    pub signals: mpsc::UnboundedReceiver<Signal>,
    pub shutdown: CancellationToken,
    /// How long deadlines of a source still in its first sync are held ([`SYNC_GRACE`]).
    pub sync_grace: Duration,
    /// How commits are sealed and where the head is shown.
    pub ledger: LedgerOptions,
    /// Signed action links in alerts, and how long "I'm on it" holds.
    pub actions: ActionOptions,
}

/// What alerts let their recipients do.
#[derive(Debug, Clone)]
pub struct ActionOptions {
    /// Signs the page and action links each alert carries (`http.link_key`); none: alerts
    /// link to the page only.
    pub links: Option<Arc<crate::http::links::LinkKey>>,
    /// How long a take holds (`notify.take_for`).
    pub take_for: Duration,
}

impl Default for ActionOptions {
    fn default() -> ActionOptions {
        ActionOptions {
            links: None,
            take_for: crate::config::DEFAULT_TAKE_FOR,
        }
    }
}

/// What the engine does with the ledger beyond appending: sign every commit, show the head.
#[derive(Debug, Clone, Default)]
pub struct LedgerOptions {
    /// Seals every commit with a signed checkpoint (`store.signing_key_file`).
    pub signer: Option<Arc<Signer>>,
    /// `slawatch_ledger_head_seq`, set after every commit.
    pub head_seq: Option<prometheus::IntGauge>,
    /// The working set: threads evicted to the store's archive, snapshots (none: everything
    /// stays in memory and no snapshot is written).
    pub working_set: Option<WorkingSetOptions>,
}

/// How long reading archived conversations back may take before the batch waits.
const BRING_BACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers a command that could not be handled because the archive did not answer.
fn refuse(command: Command, error: &StoreError) {
    let failed = || AckError::Store(format!("reading archived conversations failed: {error}"));
    match command {
        Command::Ack { reply, .. } | Command::Take { reply, .. } => {
            let _ = reply.send(Err(failed()));
        }
        Command::Observe { reply, .. } => {
            let _ = reply.send(Err(failed()));
        }
        Command::Record(_) => {}
    }
}

/// Builds the in-memory state from the ledger: the start-up replay.
pub async fn replay(
    store: &Store,
    rules: Arc<slawatch_core::tracker::TrackerRules>,
) -> Result<(Tracker, Deadlines), StoreError> {
    let mut tracker = Tracker::new(rules);
    let mut deadlines = Deadlines::new();
    store
        .for_each_event(|entry| {
            tracker.apply(&entry.event);
            tracker.note_ledger_seq(&entry.event, entry.seq);
            deadlines.follow(&entry.event);
            Ok::<(), StoreError>(())
        })
        .await?;
    Ok((tracker, deadlines))
}

/// [`replay`], checking the chain (and with `key` every checkpoint's signature) in the same
/// single read of the ledger: the daemon's start-up. Returns the chain's verdict and what the
/// walk found about signatures; the state is built from every row even past a break.
pub async fn replay_verified(
    store: &Store,
    rules: Arc<slawatch_core::tracker::TrackerRules>,
    key: Option<crate::store::PublicKey>,
) -> Result<(Tracker, Deadlines, Verification, Seals), StoreError> {
    let mut tracker = Tracker::new(rules);
    let mut deadlines = Deadlines::new();
    let (verification, seals) = store
        .walk_checked(key, |page| {
            for entry in page.events() {
                let (seq, event) = entry?;
                tracker.apply(&event);
                tracker.note_ledger_seq(&event, seq);
                deadlines.follow(&event);
            }
            Ok::<(), StoreError>(())
        })
        .await?;
    Ok((tracker, deadlines, verification, seals))
}

/// Deadlines held back while their source finishes its first sync.
#[derive(Debug)]
struct SyncGate {
    /// After this instant nothing is held any more.
    grace_end: DateTime<Utc>,
    held: Vec<(InquiryId, Stage, String)>,
    warned: bool,
}

/// Alert deliveries in flight, and the way their results come back to be written to the ledger.
struct Deliveries {
    tasks: TaskTracker,
    /// Re-notification instants (kept here, beside the deliveries they cause).
    renotify: Mutex<crate::notify::renotify::Renotifications>,
    /// Timed escalation instants (`escalate_after`).
    escalations: Mutex<crate::notify::escalate::Escalations>,
    /// `AlertDelivered`/`AlertFailed` events, committed by the engine (the single ledger writer).
    results: mpsc::UnboundedSender<Vec<Event>>,
}

impl Deliveries {
    fn renotify(&self) -> std::sync::MutexGuard<'_, crate::notify::renotify::Renotifications> {
        self.renotify.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn escalations(&self) -> std::sync::MutexGuard<'_, crate::notify::escalate::Escalations> {
        self.escalations.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Alerts raised but never delivered (daemon killed between the decision and the send, or
/// every notifier failing) are sent again at start-up, unless older than this: a ledger written
/// before delivery records existed must not re-send weeks of old alerts.
pub const RESUME_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Why the engine loop woke up.
enum Wake {
    Shutdown,
    Command(Command),
    Submission(Submission),
    Signal(Signal),
    Delivered(Vec<Event>),
    /// The ledger write in flight finished.
    Written(Box<Written>),
    /// A due instant, a write to retry, or a look at the ledger.
    Tick,
}

/// Who waits for a part of a ledger write, and what they get once it is written.
enum Done {
    /// Nobody: deadlines, deliveries, monitor events.
    Nothing,
    /// A source batch: its answer, and whether it completes the source's first sync.
    Source {
        source: String,
        initial_sync_done: bool,
        committed: oneshot::Sender<Result<(), String>>,
    },
    /// A manual acknowledgement: the inquiry as it is afterwards.
    Ack {
        id: InquiryId,
        reply: oneshot::Sender<Result<Inquiry, AckError>>,
    },
    /// Pushed calls: each request with the number of events it caused.
    Observe(Vec<(oneshot::Sender<Result<usize, AckError>>, usize)>),
}

/// Events decided and applied, waiting for the ledger.
struct Pending {
    events: Vec<Event>,
    cursors: Vec<(String, CursorUpdate)>,
    /// Synced to disk before anyone is answered (what nobody sends again: acks, pushed calls).
    durable: bool,
    done: Done,
}

impl Pending {
    /// Events the engine decided on its own (alert instants, re-notifications, escalations,
    /// monitor alerts, delivery results): nobody waits for them, and they need no sync.
    fn own(events: Vec<Event>) -> Self {
        Pending {
            events,
            cursors: Vec::new(),
            durable: false,
            done: Done::Nothing,
        }
    }
}

/// Consecutive [`Pending`] parts written in one transaction.
struct Batch {
    events: Vec<Event>,
    cursors: Vec<(String, CursorUpdate)>,
    durable: bool,
    /// Each part's number of events, and who waits for it.
    parts: Vec<(usize, Done)>,
    /// The inquiries its events touched, as the tracker held them when the batch was formed:
    /// their projection rows, written in the same transaction ([`Engine::project`]).
    inquiries: Vec<Inquiry>,
}

/// What a write task hands back: its batch, and the seq of its first event or why it failed.
type Written = (Batch, Result<i64, String>);

/// The write in flight.
struct InFlight {
    task: tokio::task::JoinHandle<Written>,
    /// When it began (a write that takes [`STALL`] counts as a stuck ledger).
    started: DateTime<Utc>,
    events: usize,
}

/// The ledger writes: what waits, the write in flight, and a failed one waiting for its retry.
#[derive(Default)]
struct Writer {
    backlog: VecDeque<Pending>,
    backlog_events: usize,
    /// Source events among them ([`SOURCE_BACKLOG`]).
    source_events: usize,
    in_flight: Option<InFlight>,
    /// A batch whose write failed, written again at `retry_at`.
    failed: Option<(Batch, tokio::time::Instant)>,
    pause: Duration,
    /// Since when writes fail; `None` while they succeed.
    failing_since: Option<DateTime<Utc>>,
    last_error: Option<String>,
    attempts: u64,
}

impl Writer {
    fn push(&mut self, pending: Pending) {
        if pending.events.is_empty()
            && pending.cursors.is_empty()
            && matches!(pending.done, Done::Nothing)
        {
            return;
        }
        self.backlog_events += pending.events.len();
        if matches!(pending.done, Done::Source { .. }) {
            self.source_events += pending.events.len();
        }
        self.backlog.push_back(pending);
    }

    /// Takes the next batch: the failed one if any, else the waiting parts up to the limits.
    fn take(&mut self) -> Option<Batch> {
        if let Some((batch, _)) = self.failed.take() {
            return Some(batch);
        }
        let mut batch = Batch {
            events: Vec::new(),
            cursors: Vec::new(),
            durable: false,
            parts: Vec::new(),
            inquiries: Vec::new(),
        };
        while let Some(next) = self.backlog.front() {
            let fits = batch.parts.is_empty()
                || (batch.events.len() + next.events.len() <= WRITE_MAX_EVENTS
                    && batch.parts.len() < WRITE_MAX_PARTS);
            if !fits {
                break;
            }
            let Some(p) = self.backlog.pop_front() else {
                break;
            };
            self.backlog_events -= p.events.len();
            if matches!(p.done, Done::Source { .. }) {
                self.source_events -= p.events.len();
            }
            batch.parts.push((p.events.len(), p.done));
            batch.events.extend(p.events);
            batch.cursors.extend(p.cursors);
            batch.durable |= p.durable;
        }
        (!batch.parts.is_empty()).then_some(batch)
    }

    /// Events not in the ledger yet, the batch in flight or waiting for its retry included.
    fn waiting(&self) -> usize {
        self.backlog_events
            + self.in_flight.as_ref().map_or(0, |w| w.events)
            + self.failed.as_ref().map_or(0, |(b, _)| b.events.len())
    }

    /// Whether writes fail, or the one in flight stalls, since at least [`STALL`] at `now`.
    fn stuck_since(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let stall = chrono::Duration::from_std(STALL).unwrap_or_default();
        let since = self
            .failing_since
            .or(self.in_flight.as_ref().map(|w| w.started))?;
        (now - since >= stall).then_some(since)
    }
}

/// The outcome of a write task; a task that panicked wrote nothing (its batch is lost, which
/// only a bug can cause: the answers of its parts then say so).
fn joined(outcome: Result<Written, tokio::task::JoinError>) -> Written {
    outcome.unwrap_or_else(|e| {
        (
            Batch {
                events: Vec::new(),
                cursors: Vec::new(),
                durable: false,
                parts: Vec::new(),
                inquiries: Vec::new(),
            },
            Err(format!("ledger write task failed: {e}")),
        )
    })
}

fn earliest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Engine {
    /// Runs until shutdown. `deadlines` comes from [`replay`].
    pub async fn run(mut self, mut deadlines: Deadlines) {
        let (results, mut delivered) = mpsc::unbounded_channel();
        let renotify = crate::notify::renotify::Renotifications::rebuild(
            &self.read_tracker(),
            self.clock.now(),
        );
        let escalations = crate::notify::escalate::Escalations::rebuild(
            &self.read_tracker(),
            self.oncall.as_deref(),
            self.clock.now(),
        );
        let deliveries = Deliveries {
            tasks: TaskTracker::new(),
            renotify: Mutex::new(renotify),
            escalations: Mutex::new(escalations),
            results,
        };
        self.resume_pending(&deliveries);
        self.notifier.still_firing(&self.still_firing());
        let mut writer = Writer {
            pause: FIRST_WRITE_RETRY,
            ..Writer::default()
        };
        let mut gate = SyncGate {
            grace_end: self.clock.now()
                + chrono::Duration::from_std(self.sync_grace).unwrap_or_default(),
            held: Vec::new(),
            warned: false,
        };
        let mut keeper = self
            .ledger
            .working_set
            .map(|options| Keeper::new(options, self.clock.now()));
        // A source batch whose archived threads could not be read back yet, and when to try
        // again: it is decided only with them (never as if they did not exist).
        let mut waiting: Option<(Submission, DateTime<Utc>, u32)> = None;
        loop {
            // Whatever is due fires first, on every turn, whatever else is ready: a stream of
            // source batches or pushed calls never keeps an alert waiting.
            let now = self.clock.now();
            self.fire_due(now, &mut deadlines, &mut gate, &deliveries, &mut writer);
            self.fire_renotify(now, &deliveries, &mut writer);
            self.fire_escalations(now, &deliveries, &mut writer);
            self.watch_ledger(now, &mut writer, &deliveries);
            if let Some((_, at, _)) = &waiting
                && *at <= now
                && let Some((submission, _, attempts)) = waiting.take()
            {
                waiting = self
                    .submit_with_threads(
                        submission,
                        attempts,
                        keeper.as_ref(),
                        &mut deadlines,
                        &deliveries,
                        &mut writer,
                    )
                    .await;
            }
            self.start_write(&mut writer);
            if let Some(keeper) = &mut keeper {
                let idle = writer.in_flight.is_none() && writer.waiting() == 0;
                keeper.turn(now, &self.shared.store, &self.shared.tracker, idle);
            }

            let grace = (!gate.held.is_empty()).then_some(gate.grace_end);
            let next = earliest(
                earliest(
                    earliest(deadlines.next(), grace),
                    earliest(
                        waiting.as_ref().map(|(_, at, _)| *at),
                        keeper.as_ref().map(Keeper::next_instant),
                    ),
                ),
                earliest(
                    deliveries.renotify().next(),
                    deliveries.escalations().next(),
                ),
            );
            let retry_at = writer.failed.as_ref().map(|(_, at)| *at);
            let watching = writer.in_flight.is_some() || writer.failing_since.is_some();
            let room_for_sources = waiting.is_none()
                && writer.source_events < SOURCE_BACKLOG
                && writer.backlog_events < BACKLOG_MAX;
            let room_for_commands = writer.backlog_events < BACKLOG_MAX;
            let clock = self.clock;
            let in_flight = writer.in_flight.as_mut().map(|w| &mut w.task);
            let writing = in_flight.is_some();
            let wake = tokio::select! {
                _ = self.shutdown.cancelled() => Wake::Shutdown,
                written = async { in_flight.expect("guarded").await }, if writing => {
                    Wake::Written(Box::new(joined(written)))
                }
                Some(events) = delivered.recv() => Wake::Delivered(events),
                Some(signal) = self.signals.recv() => Wake::Signal(signal),
                Some(command) = self.commands.recv(), if room_for_commands => Wake::Command(command),
                Some(submission) = self.input.recv(), if room_for_sources => Wake::Submission(submission),
                _ = async move {
                    match next {
                        Some(at) => clock.sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => Wake::Tick,
                _ = async move {
                    match retry_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => Wake::Tick,
                _ = tokio::time::sleep(LEDGER_WATCH), if watching => Wake::Tick,
            };
            // Until this turn ends, the systemd watchdog sees the engine at work.
            let _turn = crate::service::ENGINE.turn();
            match wake {
                Wake::Shutdown => break,
                Wake::Tick => {}
                Wake::Written(written) => {
                    let started = writer.in_flight.take().map(|w| w.started);
                    let (batch, result) = *written;
                    if result.is_err() {
                        // Not writable since this write began (a lock wait counts).
                        writer.failing_since = writer.failing_since.or(started);
                    }
                    self.finish_write(batch, result, &mut writer, &mut deadlines, &mut gate);
                }
                Wake::Delivered(events) => self.record_deliveries(events, &mut writer),
                Wake::Signal(signal) => {
                    let now = self.clock.now();
                    self.monitor_alert(
                        signal.problem,
                        &signal.subject,
                        signal.failing,
                        &signal.detail,
                        now,
                        &mut writer,
                        &deliveries,
                    );
                }
                Wake::Command(command) => {
                    let back = match keeper.as_ref().filter(|k| k.has_archive()) {
                        Some(k) => {
                            let keys = self.wanted_by_command(&command);
                            k.bring_back(
                                &self.shared.store,
                                &self.shared.tracker,
                                &keys,
                                BRING_BACK_TIMEOUT,
                            )
                            .await
                        }
                        None => Ok(0),
                    };
                    match back {
                        Ok(_) => {
                            self.handle_command(command, &mut deadlines, &deliveries, &mut writer)
                        }
                        Err(e) => refuse(command, &e),
                    }
                }
                Wake::Submission(submission) => {
                    waiting = self
                        .submit_with_threads(
                            submission,
                            0,
                            keeper.as_ref(),
                            &mut deadlines,
                            &deliveries,
                            &mut writer,
                        )
                        .await;
                }
            }
        }
        self.shut_down(
            writer,
            &mut delivered,
            &mut deadlines,
            &mut gate,
            &deliveries,
        )
        .await;
        if let Some(keeper) = &mut keeper {
            keeper
                .finish(&self.shared.store, &self.shared.tracker, self.clock.now())
                .await;
        }
        tracing::info!("Engine stopped.");
    }

    /// Starts the next ledger write, unless one is in flight or a failed one waits for its
    /// retry.
    fn start_write(&self, writer: &mut Writer) {
        if writer.in_flight.is_some()
            || writer
                .failed
                .as_ref()
                .is_some_and(|(_, at)| *at > tokio::time::Instant::now())
        {
            return;
        }
        let Some(mut batch) = writer.take() else {
            return;
        };
        self.project(&mut batch);
        let store = self.shared.store.clone();
        let signer = self.ledger.signer.clone();
        // Stamped when it is written: after an outage, the recovery's instant.
        let now = self.clock.now();
        let events = batch.events.len();
        let task = tokio::spawn(async move {
            let sealing = Sealing {
                signer: signer.as_deref(),
                durable: batch.durable,
            };
            let result = store
                .commit_projected(
                    now,
                    &batch.events,
                    &batch.cursors,
                    sealing,
                    &batch.inquiries,
                )
                .await
                .map_err(|e| e.to_string());
            (batch, result)
        });
        writer.in_flight = Some(InFlight {
            task,
            started: now,
            events,
        });
    }

    /// A write ended: everything that follows the commit of each of its parts, or, if it
    /// failed, the batch kept for a retry with backoff.
    fn finish_write(
        &self,
        batch: Batch,
        result: Result<i64, String>,
        writer: &mut Writer,
        deadlines: &mut Deadlines,
        gate: &mut SyncGate,
    ) {
        let now = self.clock.now();
        match result {
            Ok(first_seq) => {
                if writer.failing_since.is_some() {
                    tracing::info!(
                        attempts = writer.attempts,
                        events = batch.events.len(),
                        "The ledger takes writes again; what waited is written in order."
                    );
                }
                writer.failing_since = None;
                writer.last_error = None;
                writer.pause = FIRST_WRITE_RETRY;
                if let Some(gauge) = &self.ledger.head_seq
                    && !batch.events.is_empty()
                {
                    let sealed = i64::from(self.ledger.signer.is_some());
                    gauge.set(first_seq + batch.events.len() as i64 - 1 + sealed);
                }
                let mut events = batch.events.into_iter();
                let mut seq = first_seq;
                for (n, done) in batch.parts {
                    let part: Vec<Event> = events.by_ref().take(n).collect();
                    self.after_commit(&part, seq);
                    seq += n as i64;
                    self.answer(done, Ok(()), now, deadlines, gate);
                }
                self.publish_ledger(writer, now, false);
            }
            Err(e) if batch.parts.is_empty() => {
                tracing::error!(error = %e, "Ledger write lost.");
            }
            Err(e) => {
                writer.attempts += 1;
                let since = *writer.failing_since.get_or_insert(now);
                tracing::error!(
                    error = %e,
                    attempt = writer.attempts,
                    failing_for_s = (now - since).num_seconds(),
                    events = batch.events.len(),
                    retry_in_ms = writer.pause.as_millis() as u64,
                    "Ledger write failed; retrying (alerts still go out, sources wait)."
                );
                writer.last_error = Some(e);
                writer.failed = Some((batch, tokio::time::Instant::now() + writer.pause));
                writer.pause = (writer.pause * 2).min(MAX_WRITE_RETRY);
                self.publish_ledger(writer, now, true);
            }
        }
    }

    /// Shows the ledger's write state (`/readyz`, wallboard, metrics).
    fn publish_ledger(&self, writer: &Writer, now: DateTime<Utc>, failed: bool) {
        let waiting = writer.waiting();
        let stuck = writer.stuck_since(now);
        self.shared.ledger.update(|s| {
            s.failing_since = stuck.or(writer.failing_since);
            s.last_error = writer.last_error.clone();
            s.failures = writer.attempts;
            s.backlog_events = waiting;
            if !failed && writer.failing_since.is_none() {
                s.last_write = Some(now);
            }
        });
        self.shared
            .metrics
            .record_ledger_write(failed, stuck.is_some(), waiting);
    }

    /// Raises the ledger's monitor alert once it has refused or stalled writes for [`STALL`],
    /// and resolves it once a write succeeds again.
    fn watch_ledger(&mut self, now: DateTime<Utc>, writer: &mut Writer, deliveries: &Deliveries) {
        let problem = MonitorProblem::LedgerNotWritable;
        let active = self
            .read_tracker()
            .monitor_alert(&problem.alert_id("ledger"))
            .is_some();
        match writer.stuck_since(now) {
            Some(since) if !active => {
                let detail = format!(
                    "no write taken since {} ({}); {} events wait in memory",
                    since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    writer
                        .last_error
                        .as_deref()
                        .unwrap_or("the write in flight does not finish"),
                    writer.waiting()
                );
                self.publish_ledger(writer, now, false);
                self.monitor_alert(problem, "ledger", true, &detail, now, writer, deliveries);
            }
            None if active && writer.failing_since.is_none() => {
                self.monitor_alert(problem, "ledger", false, "", now, writer, deliveries);
            }
            Some(_) if writer.in_flight.is_some() && writer.failing_since.is_none() => {
                // A stalled write: shown as not writable while it hangs.
                self.publish_ledger(writer, now, false);
            }
            _ => {}
        }
    }

    /// Decides and applies a source batch; its events wait for the ledger with its cursors.
    /// Submits a source batch once the archived threads it refers to are back in memory;
    /// if they cannot be read back now, hands the batch back with when to try again.
    async fn submit_with_threads(
        &mut self,
        submission: Submission,
        attempts: u32,
        keeper: Option<&Keeper>,
        deadlines: &mut Deadlines,
        deliveries: &Deliveries,
        writer: &mut Writer,
    ) -> Option<(Submission, DateTime<Utc>, u32)> {
        // Nothing ever archived (the usual backfill of a new ledger): no keys to work out.
        if let Some(keeper) = keeper.filter(|k| k.has_archive()) {
            let keys = self.wanted_by(&submission.batch.observations);
            if let Err(e) = keeper
                .bring_back(
                    &self.shared.store,
                    &self.shared.tracker,
                    &keys,
                    BRING_BACK_TIMEOUT,
                )
                .await
            {
                let pause = chrono::Duration::milliseconds(250 << attempts.min(7));
                tracing::warn!(error = %e, source = %submission.batch.source, attempts = attempts + 1, "Reading archived conversations back failed; the batch waits and is tried again.");
                return Some((submission, self.clock.now() + pause, attempts + 1));
            }
        }
        self.submit(submission, deadlines, deliveries, writer);
        None
    }

    /// The archive keys observations need that memory does not hold.
    fn wanted_by(&self, observations: &[Observation]) -> Vec<u64> {
        let tracker = self.read_tracker();
        let mut keys: Vec<u64> = observations
            .iter()
            .flat_map(|o| tracker.wanted_for(o))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The archive keys a command needs that memory does not hold.
    fn wanted_by_command(&self, command: &Command) -> Vec<u64> {
        match command {
            Command::Ack { ack, .. } => self.read_tracker().wanted_for_inquiry(&ack.inquiry_id),
            Command::Take { inquiry_id, .. } => self.read_tracker().wanted_for_inquiry(inquiry_id),
            Command::Observe { observations, .. } => self.wanted_by(observations),
            Command::Record(_) => Vec::new(),
        }
    }

    fn submit(
        &mut self,
        submission: Submission,
        deadlines: &mut Deadlines,
        deliveries: &Deliveries,
        writer: &mut Writer,
    ) {
        let Submission { batch, committed } = submission;
        let now = self.clock.now();
        let events = self.decide_and_apply(&batch.observations, now);
        let cursors = batch
            .cursors
            .into_iter()
            .map(|c| (batch.source.clone(), c))
            .collect();
        self.enqueue(
            now,
            Pending {
                events,
                cursors,
                durable: false,
                done: Done::Source {
                    source: batch.source,
                    initial_sync_done: batch.initial_sync_done,
                    committed,
                },
            },
            deadlines,
            deliveries,
            writer,
        );
    }

    /// Schedules what the decided (and applied) events bring, sends the alerts they raise at
    /// once, and queues them for the ledger.
    fn enqueue(
        &self,
        now: DateTime<Utc>,
        pending: Pending,
        deadlines: &mut Deadlines,
        deliveries: &Deliveries,
        writer: &mut Writer,
    ) {
        let mut alerts = Vec::new();
        {
            let tracker = self.read_tracker();
            for event in &pending.events {
                deadlines.follow(event);
                deliveries.renotify().follow(event, &tracker, now);
                deliveries
                    .escalations()
                    .follow(event, &tracker, self.oncall.as_deref(), now);
                alerts.extend(self.alerts_for(event, &tracker, now));
            }
        }
        self.spawn_delivery(alerts, deliveries);
        writer.push(pending);
    }

    /// What follows the commit of `events` (the first at `first_seq`): their seqs noted and
    /// their metrics counted.
    fn after_commit(&self, events: &[Event], first_seq: i64) {
        let mut tracker = self.write_tracker();
        for (seq, event) in (first_seq..).zip(events) {
            tracker.note_ledger_seq(event, seq);
            self.shared.metrics.record(event, &tracker);
        }
    }

    /// Answers whoever waits for a part of a write, once it is written (`Ok`) or given up.
    fn answer(
        &self,
        done: Done,
        result: Result<(), String>,
        now: DateTime<Utc>,
        deadlines: &mut Deadlines,
        gate: &mut SyncGate,
    ) {
        match done {
            Done::Nothing => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "Events not written to the ledger.");
                }
            }
            Done::Source {
                source,
                initial_sync_done,
                committed,
            } => {
                if result.is_ok() {
                    self.shared
                        .progress
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(source.clone(), now);
                    if initial_sync_done {
                        self.source_synced(&source, now, deadlines, gate);
                    }
                }
                let _ = committed.send(result);
            }
            Done::Ack { id, reply } => {
                let answer = match result {
                    Ok(()) => self
                        .read_tracker()
                        .get(&id)
                        .cloned()
                        .ok_or(AckError::Store("inquiry vanished after the ack".into())),
                    Err(e) => Err(AckError::Store(e)),
                };
                let _ = reply.send(answer);
            }
            Done::Observe(replies) => {
                for (reply, count) in replies {
                    let _ = reply.send(result.clone().map(|()| count).map_err(AckError::Store));
                }
            }
        }
    }

    /// A source's first sync is in the ledger: its held deadlines are due now.
    fn source_synced(
        &self,
        source: &str,
        now: DateTime<Utc>,
        deadlines: &mut Deadlines,
        gate: &mut SyncGate,
    ) {
        let ready = {
            let mut pending = self
                .shared
                .pending_sources
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            pending.remove(source);
            pending.is_empty()
        };
        for (id, stage, _) in gate.held.extract_if(.., |(_, _, s)| s == source) {
            deadlines.insert(&id, now, stage);
        }
        tracing::info!(source = %source, "Source finished its first sync.");
        if ready {
            tracing::info!(
                pending_deadlines = deadlines.len(),
                "Every source has synced."
            );
        }
    }

    fn handle_command(
        &mut self,
        command: Command,
        deadlines: &mut Deadlines,
        deliveries: &Deliveries,
        writer: &mut Writer,
    ) {
        let now = self.clock.now();
        match command {
            Command::Ack { ack, reply } => {
                let id = ack.inquiry_id.clone();
                let decided = self
                    .write_tracker()
                    .observe(&Observation::ManualAck(ack), now);
                match decided {
                    Err(rejected) => {
                        let _ = reply.send(Err(AckError::Rejected(rejected)));
                    }
                    Ok(events) => self.enqueue(
                        now,
                        Pending {
                            events,
                            cursors: Vec::new(),
                            durable: true,
                            done: Done::Ack { id, reply },
                        },
                        deadlines,
                        deliveries,
                        writer,
                    ),
                }
            }
            Command::Take {
                inquiry_id,
                by,
                how,
                reply,
            } => {
                let until = now
                    + chrono::Duration::from_std(self.actions.take_for)
                        .unwrap_or(chrono::Duration::minutes(30));
                let decided = {
                    let mut tracker = self.write_tracker();
                    let decided = tracker.take(&inquiry_id, &by, &how, now, until);
                    if let Ok(e) = &decided {
                        tracker.apply(e);
                    }
                    decided
                };
                match decided {
                    Err(rejected) => {
                        let _ = reply.send(Err(AckError::Rejected(rejected)));
                    }
                    Ok(event) => {
                        tracing::info!(inquiry = %inquiry_id, by = %by, how = %how, until = %until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), "Inquiry taken.");
                        self.enqueue(
                            now,
                            Pending {
                                events: vec![event],
                                cursors: Vec::new(),
                                durable: true,
                                done: Done::Ack {
                                    id: inquiry_id,
                                    reply,
                                },
                            },
                            deadlines,
                            deliveries,
                            writer,
                        )
                    }
                }
            }
            Command::Record(event) => {
                self.write_tracker().apply(&event);
                self.enqueue(
                    now,
                    Pending::own(vec![event]),
                    deadlines,
                    deliveries,
                    writer,
                );
            }
            Command::Observe {
                observations,
                reply,
            } => {
                // Pushes queued meanwhile are written in the same commit as this one (group
                // commit): they wait in the backlog while the write before them runs.
                let events = self.decide_and_apply(&observations, now);
                let count = events.len();
                self.enqueue(
                    now,
                    Pending {
                        events,
                        cursors: Vec::new(),
                        durable: true,
                        done: Done::Observe(vec![(reply, count)]),
                    },
                    deadlines,
                    deliveries,
                    writer,
                );
            }
        }
    }

    /// Fires every due instant, except those of inquiries whose source is still in its first
    /// sync (held until it finishes, or until the grace period ends).
    fn fire_due(
        &mut self,
        now: DateTime<Utc>,
        deadlines: &mut Deadlines,
        gate: &mut SyncGate,
        deliveries: &Deliveries,
        writer: &mut Writer,
    ) {
        let mut due = deadlines.pop_due(now);
        if now >= gate.grace_end && !gate.held.is_empty() {
            let pending: Vec<String> = self.pending_sources();
            if !gate.warned {
                tracing::warn!(
                    sources = ?pending,
                    grace_seconds = self.sync_grace.as_secs(),
                    "Sources have not finished their first sync; their deadlines fire anyway."
                );
                gate.warned = true;
            }
            due.extend(gate.held.drain(..).map(|(id, stage, _)| (id, stage)));
        }
        if due.is_empty() {
            return;
        }
        if now < gate.grace_end {
            let pending = self.pending_sources();
            if !pending.is_empty() {
                let tracker = self.read_tracker();
                let mut fire = Vec::with_capacity(due.len());
                for (id, stage) in due {
                    match tracker.get(&id).map(|i| &*i.source) {
                        Some(source) if pending.iter().any(|p| p == source) => {
                            gate.held.push((id, stage, source.to_string()))
                        }
                        _ => fire.push((id, stage)),
                    }
                }
                drop(tracker);
                due = fire;
            }
        }
        let observations: Vec<Observation> = due
            .into_iter()
            .map(|(inquiry_id, stage)| Observation::DeadlineReached { inquiry_id, stage })
            .collect();
        let events = self.decide_and_apply(&observations, now);
        self.enqueue(now, Pending::own(events), deadlines, deliveries, writer);
    }

    fn pending_sources(&self) -> Vec<String> {
        self.shared
            .pending_sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Re-notifies breached inquiries still unanswered whose reminder instant has come.
    fn fire_renotify(&mut self, now: DateTime<Utc>, deliveries: &Deliveries, writer: &mut Writer) {
        let due = deliveries.renotify().pop_due(now);
        if due.is_empty() {
            return;
        }
        let events: Vec<Event> = {
            let mut tracker = self.write_tracker();
            let events: Vec<Event> = due
                .into_iter()
                .filter(|(id, n, _)| {
                    tracker.get(id).is_some_and(|i| {
                        i.state == slawatch_core::tracker::InquiryState::Open
                            && i.breached_at.is_some()
                            && !i.alerts.iter().any(|m| {
                                m.stage == slawatch_core::tracker::alert::AlertStage::Renotify
                                    && m.index.map(u32::from) == Some(*n)
                            })
                    })
                })
                .map(|(inquiry_id, n, at)| Event::InquiryRenotified { inquiry_id, n, at })
                .collect();
            for e in &events {
                tracker.apply(e);
            }
            events
        };
        // Re-notifications schedule no deadline; only the next reminder.
        let mut none = Deadlines::new();
        self.enqueue(now, Pending::own(events), &mut none, deliveries, writer);
    }

    /// Escalates breached inquiries nobody took or answered within `escalate_after`, once each;
    /// one held by a take waits until the take runs out.
    fn fire_escalations(
        &mut self,
        now: DateTime<Utc>,
        deliveries: &Deliveries,
        writer: &mut Writer,
    ) {
        self.fire_monitor_escalations(now, deliveries, writer);
        let due = deliveries.escalations().pop_due(now);
        if due.is_empty() {
            return;
        }
        let events: Vec<Event> = {
            let mut tracker = self.write_tracker();
            let mut events = Vec::new();
            for (id, at) in due {
                let Some(inquiry) = tracker.get(&id) else {
                    continue;
                };
                if !crate::notify::escalate::waiting(inquiry) {
                    continue;
                }
                if let Some(taken) = inquiry.taken_at(now) {
                    deliveries.escalations().put_off(id, taken.until);
                    continue;
                }
                let event = Event::InquiryEscalated {
                    inquiry_id: id,
                    level: 1,
                    at,
                };
                tracker.apply(&event);
                events.push(event);
            }
            events
        };
        let mut none = Deadlines::new();
        self.enqueue(now, Pending::own(events), &mut none, deliveries, writer);
    }

    /// Sends the monitor's own alerts still active `escalate_after` after they went out on to
    /// the escalation list, once each.
    fn fire_monitor_escalations(
        &mut self,
        now: DateTime<Utc>,
        deliveries: &Deliveries,
        writer: &mut Writer,
    ) {
        let due = deliveries.escalations().pop_due_monitor(now);
        if due.is_empty() {
            return;
        }
        let mut alerts = Vec::new();
        {
            let mut tracker = self.write_tracker();
            for (id, at) in due {
                if tracker
                    .monitor_alert(&id)
                    .is_none_or(|m| m.escalated_at.is_some())
                {
                    continue;
                }
                let event = Event::MonitorAlertEscalated {
                    alert: id.clone(),
                    at,
                };
                tracker.apply(&event);
                if let (Some(oncall), Some(m)) = (&self.oncall, tracker.monitor_alert(&id)) {
                    let alert = Alert::about_monitor(m, AlertKind::Breach, at, self.status_link());
                    alerts.extend(
                        oncall
                            .escalation_for(None, &m.reached)
                            .into_iter()
                            .map(|r| Alert {
                                recipient: Some(Arc::new(r)),
                                ..alert.clone()
                            }),
                    );
                }
                tracing::warn!(alert = %id, "The monitor is still blind: escalated.");
                writer.push(Pending::own(vec![event]));
            }
        }
        self.spawn_delivery(alerts, deliveries);
    }

    /// Applies delivery results and queues them for the ledger (behind the events that raised
    /// their alerts, which were queued first).
    fn record_deliveries(&self, events: Vec<Event>, writer: &mut Writer) {
        {
            let mut tracker = self.write_tracker();
            for e in &events {
                tracker.apply(e);
            }
        }
        writer.push(Pending::own(events));
    }

    /// Raises (`failing`) or resolves the monitor alert about `problem` of `subject`, once per
    /// episode, and sends it at once.
    #[allow(clippy::too_many_arguments)]
    fn monitor_alert(
        &mut self,
        problem: MonitorProblem,
        subject: &str,
        failing: bool,
        detail: &str,
        now: DateTime<Utc>,
        writer: &mut Writer,
        deliveries: &Deliveries,
    ) {
        let alerts = {
            let mut tracker = self.write_tracker();
            let event = if failing {
                tracker.raise_monitor_alert(problem, subject, detail, now)
            } else {
                tracker.resolve_monitor_alert(&problem.alert_id(subject), now)
            };
            let Some(event) = event else {
                return;
            };
            // A resolution goes to whoever the alert reached: routed before it is applied.
            let before = self.monitor_alerts_for(&event, &tracker, now);
            tracker.apply(&event);
            let alerts = if failing {
                tracing::warn!(alert = %problem.alert_id(subject), %detail, "The monitor is blind: {}.", problem.as_str());
                self.monitor_alerts_for(&event, &tracker, now)
            } else {
                tracing::info!(alert = %problem.alert_id(subject), "The monitor sees again: {} over.", problem.as_str());
                before
            };
            if let Event::MonitorAlertRaised { alert, at, .. } = &event {
                deliveries
                    .escalations()
                    .follow_monitor(alert, *at, self.oncall.as_deref(), now);
            }
            writer.push(Pending::own(vec![event]));
            alerts
        };
        self.spawn_delivery(alerts, deliveries);
    }

    /// At shutdown: the write in flight finishes, deliveries get [`ALERT_DELIVERY_TIMEOUT`]
    /// to report, then one last write takes everything waiting (the rest is answered with an
    /// error: sources read it again after the restart).
    async fn shut_down(
        &mut self,
        mut writer: Writer,
        delivered: &mut mpsc::UnboundedReceiver<Vec<Event>>,
        deadlines: &mut Deadlines,
        gate: &mut SyncGate,
        deliveries: &Deliveries,
    ) {
        if let Some(w) = writer.in_flight.take() {
            let (batch, result) = joined(w.task.await);
            self.finish_write(batch, result, &mut writer, deadlines, gate);
        }
        deliveries.tasks.close();
        if tokio::time::timeout(ALERT_DELIVERY_TIMEOUT, deliveries.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "Alert deliveries still running at shutdown were abandoned; they are sent again at the next start."
            );
        }
        while let Ok(events) = delivered.try_recv() {
            self.record_deliveries(events, &mut writer);
        }
        // One attempt for everything (a failed batch first: the order holds).
        let mut all = Batch {
            events: Vec::new(),
            cursors: Vec::new(),
            durable: true,
            parts: Vec::new(),
            inquiries: Vec::new(),
        };
        while let Some(batch) = writer.take() {
            all.events.extend(batch.events);
            all.cursors.extend(batch.cursors);
            all.parts.extend(batch.parts);
        }
        if all.parts.is_empty() {
            return;
        }
        self.project(&mut all);
        let sealing = Sealing {
            signer: self.ledger.signer.as_deref(),
            durable: true,
        };
        let now = self.clock.now();
        // The last write may be slow; it is not the engine being stuck (see `service`).
        let _writing = crate::service::ENGINE.ledger_write();
        let result = self
            .shared
            .store
            .commit_projected(now, &all.events, &all.cursors, sealing, &all.inquiries)
            .await;
        match result {
            Ok(first_seq) => {
                writer.failing_since = None;
                self.finish_write(all, Ok(first_seq), &mut writer, deadlines, gate);
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    events = all.events.len(),
                    "Shutting down with events not written to the ledger; sources read theirs again at the next start, alerts already sent are recognised by their ids."
                );
                for (_, done) in all.parts {
                    self.answer(
                        done,
                        Err(format!("shutting down, not written: {e}")),
                        now,
                        deadlines,
                        gate,
                    );
                }
            }
        }
    }

    /// Notes in `batch` the inquiries its events touched, as the tracker holds them now (after
    /// those events): their projection rows go in the batch's transaction. Batches commit in
    /// order, so a later batch's row of the same inquiry wins.
    fn project(&self, batch: &mut Batch) {
        let tracker = self.read_tracker();
        let mut seen = std::collections::HashSet::new();
        batch.inquiries = batch
            .events
            .iter()
            .flat_map(crate::store::projection::touched)
            .filter(|id| seen.insert(*id))
            .filter_map(|id| tracker.get(id).cloned())
            .collect();
    }

    fn read_tracker(&self) -> std::sync::RwLockReadGuard<'_, Tracker> {
        self.shared
            .tracker
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn write_tracker(&self) -> std::sync::RwLockWriteGuard<'_, Tracker> {
        self.shared
            .tracker
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Decides and applies a batch under one write lock.
    fn decide_and_apply(&self, observations: &[Observation], now: DateTime<Utc>) -> Vec<Event> {
        use crate::sources::calls::join::{Join, call_mut, join};
        let mut tracker = self.write_tracker();
        let mut events = Vec::new();
        for observation in observations {
            // A CDR row without uniqueid takes the call id of the one queue_log call it matches.
            let joined = match &observation {
                Observation::CallStarted(c)
                | Observation::CallAnswered(c)
                | Observation::CallEnded(c) => match join(&tracker, c) {
                    Join::Alone => None,
                    Join::Call(id) => {
                        let mut o = observation.clone();
                        if let Some(c) = call_mut(&mut o) {
                            c.call_id = id;
                        }
                        Some(o)
                    }
                    Join::Ambiguous(ids) => {
                        self.shared.metrics.record_ambiguous_call_join();
                        tracing::warn!(
                            source = %c.source,
                            call = %c.call_id,
                            candidates = %ids.join(", "),
                            "CDR row without uniqueid matches several queue_log calls; not merged, not tracked twice."
                        );
                        continue;
                    }
                },
                _ => None,
            };
            // Only manual acks can be rejected, and they do not come in batches.
            if let Ok(decided) = tracker.observe(joined.as_ref().unwrap_or(observation), now) {
                events.extend(decided);
            }
        }
        events
    }

    /// Delivers alerts in a task; their results come back as ledger events.
    fn spawn_delivery(&self, alerts: Vec<Alert>, deliveries: &Deliveries) {
        if alerts.is_empty() {
            return;
        }
        let notifier = self.notifier.clone();
        let metrics = self.shared.metrics.clone();
        let clock = self.clock;
        let results_tx = deliveries.results.clone();
        deliveries.tasks.spawn(async move {
            let budget = notifier.budget();
            let results = match tokio::time::timeout(budget, notifier.deliver(&alerts)).await {
                Ok(results) => results,
                Err(_) => alerts
                    .iter()
                    .map(|_| {
                        Err(crate::notify::DeliveryError {
                            notifier: notifier.name().to_string(),
                            message: format!("no answer within {budget:?}"),
                        })
                    })
                    .collect(),
            };
            let at = clock.now();
            let mut events = Vec::with_capacity(alerts.len());
            for (alert, result) in alerts.iter().zip(results) {
                if !notifier.records_own_metrics() {
                    metrics.record_alert(alert.kind.as_str(), notifier.name(), result.is_ok());
                }
                if let Err(e) = &result {
                    tracing::warn!(error = %e, alert = %alert.inquiry_id, recipient = ?alert.recipient.as_ref().map(|r| &r.person), "Alert delivery failed.");
                }
                events.push(delivery_record(alert, result, notifier.name(), at));
            }
            let _ = results_tx.send(events);
        });
    }

    /// Sends again, at once and as one batch, the alerts of open inquiries (and the monitor's
    /// own active alerts) that were raised but never delivered (see [`RESUME_MAX_AGE`]), each
    /// only to the recipients the ledger does not record as reached. Recipients are decided
    /// now: whoever is on call at the restart (the same people as the first attempt unless a
    /// handoff came in between, in which case the incoming person gets it too, and nobody
    /// already reached gets it again).
    fn resume_pending(&self, deliveries: &Deliveries) {
        if !self.notifier.reaches_anyone() {
            // Logged again would reach nobody again; they stay undelivered in the ledger, and
            // go out once a notifier is configured.
            return;
        }
        let now = self.clock.now();
        let oldest = now - chrono::Duration::from_std(RESUME_MAX_AGE).unwrap_or_default();
        let alerts: Vec<Alert> = {
            let tracker = self.read_tracker();
            // A mark delivered without per-person records went to the fixed destinations (or
            // predates routing): it is complete.
            let complete = |m: &slawatch_core::tracker::alert::AlertMark| {
                m.delivered_at.is_some() && m.reached().is_empty()
            };
            let mut raised: Vec<(Event, Vec<String>)> = tracker
                .open()
                .flat_map(|i| {
                    i.alerts
                        .iter()
                        .filter(|m| !complete(m) && m.at >= oldest)
                        .map(|m| (m.raised_by(&i.id), m.reached().to_vec()))
                })
                .collect();
            raised.extend(
                tracker
                    .monitor_alerts()
                    .filter(|m| {
                        !(m.delivered_at.is_some() && m.reached.is_empty()) && m.raised_at >= oldest
                    })
                    .map(|m| {
                        (
                            Event::MonitorAlertRaised {
                                alert: m.id.clone(),
                                problem: m.problem,
                                subject: m.subject.clone(),
                                detail: m.detail.clone(),
                                at: m.raised_at,
                            },
                            m.reached.clone(),
                        )
                    }),
            );
            raised
                .iter()
                .flat_map(|(e, reached)| {
                    self.alerts_for(e, &tracker, now).into_iter().filter(|a| {
                        match &a.recipient {
                            Some(r) => !reached.contains(&r.person),
                            // Not reached at all yet (a complete mark was filtered above).
                            None => reached.is_empty(),
                        }
                    })
                })
                .collect()
        };
        if !alerts.is_empty() {
            tracing::warn!(
                alerts = alerts.len(),
                "Alerts raised before the restart were never delivered; sending them now."
            );
            self.spawn_delivery(alerts, deliveries);
        }
    }

    /// The alerts delivered before this start whose inquiries are still open: the breach if one
    /// was delivered, else the latest delivered warning.
    fn still_firing(&self) -> Vec<Alert> {
        use slawatch_core::tracker::alert::AlertStage;
        let tracker = self.read_tracker();
        tracker
            .open()
            .filter_map(|i| {
                let delivered = i.alerts.iter().filter(|m| m.delivered_at.is_some());
                let latest = delivered.max_by_key(|m| (m.stage != AlertStage::Warning, m.at))?;
                // A breach fires from its deadline, whichever reminder was delivered last.
                let event = match latest.stage {
                    AlertStage::Warning => latest.raised_by(&i.id),
                    AlertStage::Breach | AlertStage::Renotify | AlertStage::Escalation => {
                        Event::InquiryBreached {
                            inquiry_id: i.id.clone(),
                            at: i.deadline_at.unwrap_or(latest.at),
                        }
                    }
                };
                self.alert_for(&event, &tracker)
            })
            .chain(
                tracker
                    .monitor_alerts()
                    .filter(|m| m.delivered_at.is_some())
                    .map(|m| {
                        Alert::about_monitor(m, AlertKind::Breach, m.raised_at, self.status_link())
                    }),
            )
            .collect()
    }

    /// The alerts an event raises at `now`: one per recipient when a rotation routes it, else
    /// one for the notifiers' fixed destinations. Routed at `now`, when it is sent, not at the
    /// instant it is about: a breach raised late (the daemon was down at the deadline) goes to
    /// whoever is on call when it goes out, not to the person whose shift ended meanwhile.
    fn alerts_for(&self, event: &Event, tracker: &Tracker, now: DateTime<Utc>) -> Vec<Alert> {
        if matches!(
            event,
            Event::MonitorAlertRaised { .. } | Event::MonitorAlertResolved { .. }
        ) {
            return self.monitor_alerts_for(event, tracker, now);
        }
        let Some(alert) = self.alert_for(event, tracker) else {
            return Vec::new();
        };
        let Some(inquiry) = tracker.get(&alert.inquiry_id) else {
            return vec![self.linked(alert, now)];
        };
        // A timed escalation goes to the escalation list, less those already reached.
        if matches!(event, Event::InquiryEscalated { .. }) {
            let alerted: Vec<String> = inquiry
                .alerts
                .iter()
                .flat_map(|m| m.reached().iter().cloned())
                .collect();
            let Some(oncall) = &self.oncall else {
                return Vec::new();
            };
            return oncall
                .escalation_for(inquiry.policy.as_deref(), &alerted)
                .into_iter()
                .map(|r| {
                    self.linked(
                        Alert {
                            recipient: Some(Arc::new(r)),
                            ..alert.clone()
                        },
                        now,
                    )
                })
                .collect();
        }
        // Taken ("I'm on it"): the breach and re-notifications go to the taker only, and
        // nothing escalates while the take holds.
        if let Some(taken) = inquiry.taken_at(now)
            && matches!(alert.kind, AlertKind::Breach | AlertKind::Renotify)
        {
            let person = self.oncall.as_ref().and_then(|o| o.people.get(&taken.by));
            return match (person, alert.kind) {
                (Some(p), _) => vec![self.linked(
                    Alert {
                        recipient: Some(Arc::new(crate::notify::oncall::Recipient::from(p))),
                        ..alert
                    },
                    now,
                )],
                // Taken by a name typed on a shared channel's form: nobody to remind but them,
                // and they cannot be addressed alone, so reminders wait for the take to run out.
                (None, AlertKind::Renotify) => Vec::new(),
                (None, _) => {
                    let on_call = self
                        .oncall
                        .as_ref()
                        .and_then(|o| o.on_call(inquiry.policy.as_deref(), now));
                    vec![self.linked(
                        Alert {
                            recipient: on_call.map(Arc::new),
                            ..alert
                        },
                        now,
                    )]
                }
            };
        }
        let Some(oncall) = &self.oncall else {
            return vec![self.linked(alert, now)];
        };
        let alerted: Vec<String> = inquiry
            .alerts
            .iter()
            .flat_map(|m| m.reached().iter().cloned())
            .collect();
        let recipients = oncall.recipients(alert.kind, inquiry.policy.as_deref(), now, &alerted);
        if recipients.is_empty() {
            return vec![self.linked(alert, now)];
        }
        recipients
            .into_iter()
            .map(|r| {
                self.linked(
                    Alert {
                        recipient: Some(Arc::new(r)),
                        ..alert.clone()
                    },
                    now,
                )
            })
            .collect()
    }

    /// The alert with its signed page and action links (for its recipient, and for a shared
    /// channel), when a link key is configured.
    fn linked(&self, mut alert: Alert, now: DateTime<Utc>) -> Alert {
        use crate::http::links::LinkAction;
        use crate::notify::{ActionUrls, AlertLinks};
        let Some(key) = &self.actions.links else {
            return alert;
        };
        if alert.monitor.is_some() {
            return alert;
        }
        let id = &alert.inquiry_id;
        let urls = |to: &str| ActionUrls {
            page: key.url(id, LinkAction::View, to, now),
            take: key.url(id, LinkAction::Take, to, now),
            answered: key.url(id, LinkAction::Answered, to, now),
        };
        let shared = urls("");
        let mine = match &alert.recipient {
            Some(r) => urls(&r.person),
            None => shared.clone(),
        };
        alert.actions = Some(Arc::new(AlertLinks { mine, shared }));
        alert
    }

    fn alert_for(&self, event: &Event, tracker: &Tracker) -> Option<Alert> {
        let (kind, id, due_at) = match event {
            Event::InquiryWarned { inquiry_id, at, .. } => (AlertKind::Warning, inquiry_id, *at),
            Event::InquiryBreached { inquiry_id, at } => (AlertKind::Breach, inquiry_id, *at),
            Event::InquiryRenotified { inquiry_id, at, .. } => {
                (AlertKind::Renotify, inquiry_id, *at)
            }
            Event::InquiryEscalated { inquiry_id, at, .. } => (AlertKind::Breach, inquiry_id, *at),
            // Whoever was alerted learns that it was answered (nothing if no alert was raised).
            Event::InquiryResponded(r) => (AlertKind::Resolved, &r.inquiry_id, r.at),
            // Merged into an older clock: its own alerts end; that inquiry carries on.
            Event::InquiryMerged { inquiry_id, at, .. } => (AlertKind::Resolved, inquiry_id, *at),
            _ => return None,
        };
        let inquiry = tracker.get(id)?;
        if kind == AlertKind::Resolved && inquiry.alerts.is_empty() {
            return None;
        }
        Some(Alert {
            kind,
            inquiry_id: id.clone(),
            channel: inquiry.channel,
            language: inquiry.language,
            customer: match &inquiry.customer_name {
                Some(name) if !name.is_empty() => format!("{name} <{}>", inquiry.customer),
                _ => inquiry.customer.to_string(),
            },
            subject: inquiry.subject.to_string(),
            received_at: inquiry.received_at,
            deadline_at: inquiry.deadline_at.unwrap_or(due_at),
            due_at,
            link: format!("{}/inquiries/{}", self.public_url, id),
            actions: None,
            recipient: None,
            monitor: None,
        })
    }

    /// The status page: where a monitor alert links to.
    fn status_link(&self) -> String {
        format!("{}/", self.public_url)
    }

    /// The alerts about a monitor alert being raised or resolved (`tracker` must still hold
    /// it): routed like a breach, a resolution to whoever the alert reached.
    fn monitor_alerts_for(
        &self,
        event: &Event,
        tracker: &Tracker,
        now: DateTime<Utc>,
    ) -> Vec<Alert> {
        let (id, kind, at) = match event {
            Event::MonitorAlertRaised { alert, at, .. } => (alert, AlertKind::Breach, *at),
            Event::MonitorAlertResolved { alert, at } => (alert, AlertKind::Resolved, *at),
            _ => return Vec::new(),
        };
        let Some(m) = tracker.monitor_alert(id) else {
            return Vec::new();
        };
        let alert = Alert::about_monitor(m, kind, at, self.status_link());
        let recipients = match &self.oncall {
            // Escalated by time already: the list too (a resend after a restart).
            Some(oncall) if m.escalated_at.is_some() => {
                oncall.recipients_at_once(kind, None, now, &m.reached)
            }
            Some(oncall) => oncall.recipients(kind, None, now, &m.reached),
            None => Vec::new(),
        };
        if recipients.is_empty() {
            return vec![alert];
        }
        recipients
            .into_iter()
            .map(|r| Alert {
                recipient: Some(Arc::new(r)),
                ..alert.clone()
            })
            .collect()
    }
}

/// The ledger record of one delivery: `AlertDelivered`/`AlertFailed`, or their monitor
/// counterparts for an alert about the monitor itself.
fn delivery_record(
    alert: &Alert,
    result: Result<(), crate::notify::DeliveryError>,
    notifier: &str,
    at: DateTime<Utc>,
) -> Event {
    let recipients: Vec<String> = alert.recipient.iter().map(|r| r.person.clone()).collect();
    let (kind, due_at) = (alert.kind, alert.due_at);
    match (result, alert.monitor.is_some()) {
        (Ok(()), false) => Event::AlertDelivered {
            inquiry_id: alert.inquiry_id.clone(),
            kind,
            due_at,
            notifiers: vec![notifier.to_string()],
            recipients,
            at,
        },
        (Ok(()), true) => Event::MonitorAlertDelivered {
            alert: alert.inquiry_id.to_string(),
            kind,
            due_at,
            notifiers: vec![notifier.to_string()],
            recipients,
            at,
        },
        (Err(e), false) => Event::AlertFailed {
            inquiry_id: alert.inquiry_id.clone(),
            kind,
            due_at,
            error: e.to_string(),
            recipients,
            at,
        },
        (Err(e), true) => Event::MonitorAlertFailed {
            alert: alert.inquiry_id.to_string(),
            kind,
            due_at,
            error: e.to_string(),
            recipients,
            at,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(n: usize, source: bool) -> Pending {
        let event = Event::MonitorHeartbeat { at: Utc::now() };
        let done = if source {
            Done::Source {
                source: "s".into(),
                initial_sync_done: false,
                committed: oneshot::channel().0,
            }
        } else {
            Done::Nothing
        };
        Pending {
            events: vec![event; n],
            cursors: Vec::new(),
            durable: false,
            done,
        }
    }

    #[test]
    fn the_backlog_counts_what_waits_and_batches_stay_within_their_limits() {
        let mut w = Writer::default();
        for _ in 0..3 {
            w.push(pending(WRITE_MAX_EVENTS / 2, true));
        }
        w.push(pending(10, false));
        w.push(pending(0, false)); // nothing to write, nobody waiting: dropped
        assert_eq!(w.backlog.len(), 4);
        assert_eq!(w.backlog_events, 3 * WRITE_MAX_EVENTS / 2 + 10);
        assert_eq!(w.source_events, 3 * WRITE_MAX_EVENTS / 2);
        let first = w.take().unwrap();
        assert_eq!(first.events.len(), WRITE_MAX_EVENTS);
        assert_eq!(first.parts.len(), 2);
        assert_eq!(w.backlog_events, WRITE_MAX_EVENTS / 2 + 10);
        assert_eq!(w.waiting(), WRITE_MAX_EVENTS / 2 + 10);
        // A failed batch is written again first, before anything newer.
        w.failed = Some((first, tokio::time::Instant::now()));
        assert_eq!(w.waiting(), 3 * WRITE_MAX_EVENTS / 2 + 10);
        assert_eq!(w.take().unwrap().events.len(), WRITE_MAX_EVENTS);
        let rest = w.take().unwrap();
        assert_eq!(rest.parts.len(), 2);
        assert!(w.take().is_none());
        assert_eq!((w.backlog_events, w.source_events, w.waiting()), (0, 0, 0));
    }
}
