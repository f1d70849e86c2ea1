//! The engine: the one writer of the ledger.
//!
//! It owns the order of everything: observations from sources, manual acks from the CLI/API and
//! instants from the scheduler all go through one task. For each input it has the tracker decide
//! and apply the events (under the state's write lock), appends them — with the source's cursors
//! — to the ledger in one transaction, and only once they are in the ledger counts them in the
//! metrics, reschedules deadlines and hands alerts to the notifier.
//!
//! A source batch is written while the next one is decided (see [`InFlight`]), so the in-memory
//! state may be ahead of the ledger by the batch being written, and for as long as its append is
//! retried: a failed append is retried with backoff (the sources wait, their queue is bounded)
//! and is never rolled back, so memory and ledger cannot disagree once the append succeeds. If
//! the daemon stops before that, the uncommitted batches are simply read again after the restart
//! (their cursors were not committed either). Metrics, deadlines and alerts follow only what is
//! committed. Readers (HTTP, CLI) look at the shared state under a read lock.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use slawatch_core::domain::InquiryId;
use slawatch_core::tracker::observation::{ManualAck, Stage};
use slawatch_core::tracker::state::Rejected;
use slawatch_core::tracker::{Event, Inquiry, Observation, Tracker};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::notify::{Alert, AlertKind, Notifier};
use crate::scheduler::{Clock, Deadlines};
use crate::sources::{CursorUpdate, Submission};
use crate::store::{Sealing, Seals, Signer, Store, StoreError, Verification};
use crate::telemetry::Metrics;

/// What readers share with the engine.
pub struct Shared {
    pub tracker: RwLock<Tracker>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    /// Sources that have not finished their first sync yet (`/readyz` waits for none).
    pub pending_sources: Mutex<BTreeSet<String>>,
}

impl Shared {
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
}

/// A request to the engine from the CLI or the API.
#[derive(Debug)]
pub enum Command {
    Ack {
        ack: ManualAck,
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
    commands: mpsc::Sender<Command>,
}

impl EngineHandle {
    pub fn new(commands: mpsc::Sender<Command>) -> EngineHandle {
        EngineHandle { commands }
    }

    /// Records a manual acknowledgement; returns the inquiry as it is afterwards.
    pub async fn ack(&self, ack: ManualAck) -> Result<Inquiry, AckError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Ack { ack, reply })
            .await
            .map_err(|_| AckError::Stopped)?;
        answer.await.map_err(|_| AckError::Stopped)?
    }

    /// Queues a monitor event for the ledger (see [`Command::Record`]); `false` if the engine
    /// has stopped.
    pub async fn record(&self, event: Event) -> bool {
        self.commands.send(Command::Record(event)).await.is_ok()
    }

    /// Records pushed observations (call events); returns how many ledger events they caused.
    pub async fn observe(&self, observations: Vec<Observation>) -> Result<usize, AckError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Observe {
                observations,
                reply,
            })
            .await
            .map_err(|_| AckError::Stopped)?;
        answer.await.map_err(|_| AckError::Stopped)?
    }
}

/// How long deadlines of a source that has not finished its first sync are held back. Holding
/// them lets a backfill read the replies to old inquiries before those are declared missed; the
/// cap makes sure a source that never syncs (server down, folder missing) cannot silence alerts.
pub const SYNC_GRACE: Duration = Duration::from_secs(120);

/// Bound on one alert delivery, so a hanging notifier cannot pile up tasks.
pub const ALERT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest pause between two attempts at a failing ledger append.
const MAX_APPEND_BACKOFF: Duration = Duration::from_secs(30);

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
    pub shutdown: CancellationToken,
    /// How long deadlines of a source still in its first sync are held ([`SYNC_GRACE`]).
    pub sync_grace: Duration,
    /// How commits are sealed and where the head is shown.
    pub ledger: LedgerOptions,
}

/// What the engine does with the ledger beyond appending: sign every commit, show the head.
#[derive(Debug, Clone, Default)]
pub struct LedgerOptions {
    /// Seals every commit with a signed checkpoint (`store.signing_key_file`).
    pub signer: Option<Arc<Signer>>,
    /// `slawatch_ledger_head_seq`, set after every commit.
    pub head_seq: Option<prometheus::IntGauge>,
}

/// Most pushed-call requests gathered into one durable commit. Each waits for the commit's
/// disk sync, so one sync serves them all (group commit).
const GROUP_COMMIT_MAX: usize = 512;

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
    /// `AlertDelivered`/`AlertFailed` events, committed by the engine (the single ledger writer).
    results: mpsc::UnboundedSender<Vec<Event>>,
}

impl Deliveries {
    fn renotify(&self) -> std::sync::MutexGuard<'_, crate::notify::renotify::Renotifications> {
        self.renotify.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Alerts raised but never delivered (daemon killed between the ledger write and the send, or
/// every notifier failing) are sent again at start-up, unless older than this: a ledger written
/// before delivery records existed must not re-send weeks of old alerts.
pub const RESUME_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Why the engine loop woke up.
enum Wake {
    Shutdown,
    Command(Command),
    Submission(Submission),
    Deadline,
    Delivered(Vec<Event>),
    /// The ledger write of the submission in flight finished.
    Written(Written),
}

/// A source batch whose events are being written to the ledger while the engine decides the
/// next one: deciding (tracker) and writing (serialising, hashing, SQLite) overlap, on two
/// threads. Only one is in flight at a time, and it is finished (counted, scheduled, alerted,
/// answered) before anything else is written, so the ledger keeps the order in which the tracker
/// applied events.
struct InFlight {
    write: tokio::task::JoinHandle<Written>,
    now: DateTime<Utc>,
    source: String,
    initial_sync_done: bool,
    committed: oneshot::Sender<Result<(), String>>,
}

/// What a ledger write hands back: its events and the seq of the first, or why it gave up.
type Written = (Vec<Event>, Result<i64, String>);

/// The outcome of a write task; a task that panicked wrote nothing.
fn joined(outcome: Result<Written, tokio::task::JoinError>) -> Written {
    outcome.unwrap_or_else(|e| (Vec::new(), Err(format!("ledger write task failed: {e}"))))
}

/// Appends `events` and `cursors` in one transaction, retrying with backoff (sources wait
/// meanwhile, their queue is bounded) until the ledger takes them; gives up only at shutdown.
/// Returns the seq of the first event.
async fn write_until_stored(
    store: &Store,
    shutdown: &CancellationToken,
    now: DateTime<Utc>,
    events: &[Event],
    cursors: &[(String, CursorUpdate)],
    ledger: &LedgerOptions,
    durable: bool,
) -> Result<i64, String> {
    // A slow or retried write holds the engine without making it stuck (see `service`).
    let _writing = crate::service::ENGINE.ledger_write();
    let mut pause = Duration::from_millis(500);
    let mut attempt = 1u32;
    let sealing = Sealing {
        signer: ledger.signer.as_deref(),
        durable,
    };
    loop {
        let e = match store.commit_sealed(now, events, cursors, sealing).await {
            Ok(first_seq) => {
                if let Some(gauge) = &ledger.head_seq
                    && !events.is_empty()
                {
                    let sealed = i64::from(sealing.signer.is_some());
                    gauge.set(first_seq + events.len() as i64 - 1 + sealed);
                }
                return Ok(first_seq);
            }
            Err(e) => e,
        };
        tracing::error!(
            error = %e,
            attempt,
            events = events.len(),
            "Ledger append failed; retrying (sources wait meanwhile)."
        );
        tokio::select! {
            _ = shutdown.cancelled() => {
                return Err(format!("shutting down with {} events not written: {e}", events.len()));
            }
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(MAX_APPEND_BACKOFF);
        attempt += 1;
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
        let deliveries = Deliveries {
            tasks: TaskTracker::new(),
            renotify: Mutex::new(renotify),
            results,
        };
        self.resume_pending(&deliveries);
        self.notifier.still_firing(&self.still_firing());
        let mut in_flight: Option<InFlight> = None;
        let mut gate = SyncGate {
            grace_end: self.clock.now()
                + chrono::Duration::from_std(self.sync_grace).unwrap_or_default(),
            held: Vec::new(),
            warned: false,
        };
        loop {
            let grace = (!gate.held.is_empty()).then_some(gate.grace_end);
            let next = match (deadlines.next(), grace) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let next = match (next, deliveries.renotify().next()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let clock = self.clock;
            let wake = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => Wake::Shutdown,
                written = async { (&mut in_flight.as_mut().expect("guarded").write).await }, if in_flight.is_some() => {
                    Wake::Written(joined(written))
                }
                Some(command) = self.commands.recv() => Wake::Command(command),
                Some(submission) = self.input.recv() => Wake::Submission(submission),
                Some(events) = delivered.recv() => Wake::Delivered(events),
                _ = async move {
                    match next {
                        Some(at) => clock.sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => Wake::Deadline,
            };
            // Until this turn ends, the systemd watchdog sees the engine at work.
            let _turn = crate::service::ENGINE.turn();
            if let Wake::Written(written) = wake {
                let batch = in_flight.take().expect("a write was in flight");
                // A failed write means shutdown, which the next turn sees.
                self.finish_submission(batch, written, &mut deadlines, &mut gate, &deliveries);
                continue;
            }
            // A new batch is decided before the one in flight is finished; anything else
            // waits for it.
            let now = self.clock.now();
            let decided = match &wake {
                Wake::Submission(s) => self.decide_and_apply(&s.batch.observations, now),
                _ => Vec::new(),
            };
            let mut stored = true;
            if let Some(mut batch) = in_flight.take() {
                let written = joined((&mut batch.write).await);
                stored =
                    self.finish_submission(batch, written, &mut deadlines, &mut gate, &deliveries);
            }
            match wake {
                Wake::Shutdown => break,
                Wake::Written(_) => unreachable!("handled above"),
                Wake::Command(c) => self.handle_command(c, &mut deadlines, &deliveries).await,
                // A batch must not be stored after one before it was not (its cursor is further
                // on): its source reads both again. A write gives up only at shutdown.
                Wake::Submission(s) if !stored => {
                    let _ = s
                        .committed
                        .send(Err("an earlier batch was not written".into()));
                }
                Wake::Submission(s) => in_flight = Some(self.start_submission(s, decided, now)),
                Wake::Deadline => {
                    self.fire_due(&mut deadlines, &mut gate, &deliveries).await;
                    self.fire_renotify(&mut deadlines, &deliveries).await;
                }
                Wake::Delivered(events) => {
                    self.record_deliveries(events, &mut deadlines, &deliveries)
                        .await
                }
            }
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
        let mut last = Vec::new();
        while let Ok(events) = delivered.try_recv() {
            last.extend(events);
        }
        if !last.is_empty() {
            self.record_deliveries(last, &mut deadlines, &deliveries)
                .await;
        }
        tracing::info!("Engine stopped.");
    }

    /// Starts writing a source batch whose observations were decided into `events` at `now`.
    fn start_submission(
        &self,
        submission: Submission,
        events: Vec<Event>,
        now: DateTime<Utc>,
    ) -> InFlight {
        let Submission { batch, committed } = submission;
        let cursors: Vec<(String, CursorUpdate)> = batch
            .cursors
            .into_iter()
            .map(|c| (batch.source.clone(), c))
            .collect();
        let store = self.shared.store.clone();
        let shutdown = self.shutdown.clone();
        let ledger = self.ledger.clone();
        let write = tokio::spawn(async move {
            let result =
                write_until_stored(&store, &shutdown, now, &events, &cursors, &ledger, false).await;
            (events, result)
        });
        InFlight {
            write,
            now,
            source: batch.source,
            initial_sync_done: batch.initial_sync_done,
            committed,
        }
    }

    /// Once a batch's write ended: if it is in the ledger, everything that follows a commit and
    /// the source's first sync if the batch completed it; then the answer to the source.
    /// Returns whether it was stored.
    fn finish_submission(
        &self,
        batch: InFlight,
        (events, result): Written,
        deadlines: &mut Deadlines,
        gate: &mut SyncGate,
        deliveries: &Deliveries,
    ) -> bool {
        let result = result.map(|first_seq| {
            self.after_commit(batch.now, &events, first_seq, deadlines, deliveries)
        });
        if result.is_ok() && batch.initial_sync_done {
            let now = batch.now;
            let ready = {
                let mut pending = self
                    .shared
                    .pending_sources
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                pending.remove(&batch.source);
                pending.is_empty()
            };
            // Its held deadlines are due now.
            for (id, stage, _) in gate
                .held
                .extract_if(.., |(_, _, source)| *source == batch.source)
            {
                deadlines.insert(&id, now, stage);
            }
            tracing::info!(source = %batch.source, "Source finished its first sync.");
            if ready {
                tracing::info!(
                    pending_deadlines = deadlines.len(),
                    "Every source has synced."
                );
            }
        }
        let stored = result.is_ok();
        let _ = batch.committed.send(result);
        stored
    }

    async fn handle_command(
        &mut self,
        command: Command,
        deadlines: &mut Deadlines,
        deliveries: &Deliveries,
    ) {
        match command {
            Command::Ack { ack, reply } => {
                let now = self.clock.now();
                let id = ack.inquiry_id.clone();
                let decided = self
                    .write_tracker()
                    .observe(&Observation::ManualAck(ack), now);
                let answer = match decided {
                    Err(rejected) => Err(AckError::Rejected(rejected)),
                    Ok(events) => match self
                        .commit_with(now, &events, &[], deadlines, deliveries, true)
                        .await
                    {
                        Ok(()) => self
                            .read_tracker()
                            .get(&id)
                            .cloned()
                            .ok_or(AckError::Store("inquiry vanished after the ack".into())),
                        Err(e) => Err(AckError::Store(e)),
                    },
                };
                let _ = reply.send(answer);
            }
            Command::Record(event) => {
                let now = self.clock.now();
                self.write_tracker().apply(&event);
                if let Err(e) = self.commit(now, &[event], &[], deadlines, deliveries).await {
                    tracing::error!(error = %e, "Could not record a monitor event.");
                }
            }
            Command::Observe {
                observations,
                reply,
            } => {
                // Group commit: every push already queued joins this one's commit (and its
                // disk sync); other commands queued meanwhile run after it, in order.
                let mut group = vec![(observations, reply)];
                let mut after = Vec::new();
                while group.len() < GROUP_COMMIT_MAX {
                    match self.commands.try_recv() {
                        Ok(Command::Observe {
                            observations,
                            reply,
                        }) => group.push((observations, reply)),
                        Ok(other) => {
                            after.push(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let now = self.clock.now();
                let mut events = Vec::new();
                let mut counts = Vec::with_capacity(group.len());
                for (observations, _) in &group {
                    let decided = self.decide_and_apply(observations, now);
                    counts.push(decided.len());
                    events.extend(decided);
                }
                let stored = self
                    .commit_with(now, &events, &[], deadlines, deliveries, true)
                    .await;
                for ((_, reply), count) in group.into_iter().zip(counts) {
                    let answer = stored.clone().map(|()| count).map_err(AckError::Store);
                    let _ = reply.send(answer);
                }
                for command in after {
                    Box::pin(self.handle_command(command, deadlines, deliveries)).await;
                }
            }
        }
    }

    /// Fires every due instant, except those of inquiries whose source is still in its first
    /// sync (held until it finishes, or until the grace period ends).
    async fn fire_due(
        &mut self,
        deadlines: &mut Deadlines,
        gate: &mut SyncGate,
        deliveries: &Deliveries,
    ) {
        let now = self.clock.now();
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
                    match tracker.get(&id).map(|i| &i.source) {
                        Some(source) if pending.contains(source) => {
                            gate.held.push((id, stage, source.clone()))
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
        // `commit` retries until the ledger takes the events; an error means shutdown.
        let _ = self.commit(now, &events, &[], deadlines, deliveries).await;
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

    /// Appends the events (and cursors) to the ledger, retrying with backoff until it succeeds or
    /// the daemon shuts down; then counts them, schedules their deadlines and sends their alerts.
    async fn commit(
        &mut self,
        now: DateTime<Utc>,
        events: &[Event],
        cursors: &[(String, CursorUpdate)],
        deadlines: &mut Deadlines,
        deliveries: &Deliveries,
    ) -> Result<(), String> {
        self.commit_with(now, events, cursors, deadlines, deliveries, false)
            .await
    }

    /// [`Engine::commit`]; `durable` commits are on disk before this returns (what nobody sends
    /// again: pushed calls, acknowledgements; see [`Sealing::durable`]).
    async fn commit_with(
        &mut self,
        now: DateTime<Utc>,
        events: &[Event],
        cursors: &[(String, CursorUpdate)],
        deadlines: &mut Deadlines,
        deliveries: &Deliveries,
        durable: bool,
    ) -> Result<(), String> {
        let first_seq = write_until_stored(
            &self.shared.store,
            &self.shutdown,
            now,
            events,
            cursors,
            &self.ledger,
            durable,
        )
        .await?;
        self.after_commit(now, events, first_seq, deadlines, deliveries);
        Ok(())
    }

    /// What follows the commit of `events` (the first at `first_seq`): their seqs noted, their
    /// metrics counted, their deadlines scheduled and their alerts sent.
    fn after_commit(
        &self,
        now: DateTime<Utc>,
        events: &[Event],
        first_seq: i64,
        deadlines: &mut Deadlines,
        deliveries: &Deliveries,
    ) {
        let mut alerts = Vec::new();
        {
            let mut tracker = self.write_tracker();
            for (seq, event) in (first_seq..).zip(events) {
                tracker.note_ledger_seq(event, seq);
                self.shared.metrics.record(event, &tracker);
                deadlines.follow(event);
                deliveries.renotify().follow(event, &tracker, now);
                alerts.extend(self.alerts_for(event, &tracker, now));
            }
        }
        self.spawn_delivery(alerts, deliveries);
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
                let recipients: Vec<String> =
                    alert.recipient.iter().map(|r| r.person.clone()).collect();
                events.push(match result {
                    Ok(()) => Event::AlertDelivered {
                        inquiry_id: alert.inquiry_id.clone(),
                        kind: alert.kind,
                        due_at: alert.due_at,
                        notifiers: vec![notifier.name().to_string()],
                        recipients,
                        at,
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, inquiry = %alert.inquiry_id, recipients = ?recipients, "Alert delivery failed.");
                        Event::AlertFailed {
                            inquiry_id: alert.inquiry_id.clone(),
                            kind: alert.kind,
                            due_at: alert.due_at,
                            error: e.to_string(),
                            recipients,
                            at,
                        }
                    }
                });
            }
            let _ = results_tx.send(events);
        });
    }

    /// Re-notifies breached inquiries still unanswered whose reminder instant has come.
    async fn fire_renotify(&mut self, deadlines: &mut Deadlines, deliveries: &Deliveries) {
        let now = self.clock.now();
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
        let _ = self.commit(now, &events, &[], deadlines, deliveries).await;
    }

    /// Applies and commits delivery results.
    async fn record_deliveries(
        &mut self,
        events: Vec<Event>,
        deadlines: &mut Deadlines,
        deliveries: &Deliveries,
    ) {
        {
            let mut tracker = self.write_tracker();
            for e in &events {
                tracker.apply(e);
            }
        }
        let now = self.clock.now();
        let _ = self.commit(now, &events, &[], deadlines, deliveries).await;
    }

    /// Sends again, at once and as one batch, the alerts of open inquiries that were raised but
    /// never delivered (see [`RESUME_MAX_AGE`]), each only to the recipients the ledger does not
    /// record as reached. Recipients are decided now: whoever is on call at the restart (the
    /// same people as the first attempt unless a handoff came in between, in which case the
    /// incoming person gets it too, and nobody already reached gets it again).
    fn resume_pending(&self, deliveries: &Deliveries) {
        let now = self.clock.now();
        let oldest = now - chrono::Duration::from_std(RESUME_MAX_AGE).unwrap_or_default();
        let alerts: Vec<Alert> = {
            let tracker = self.read_tracker();
            // A mark delivered without per-person records went to the fixed destinations (or
            // predates routing): it is complete.
            let complete = |m: &slawatch_core::tracker::alert::AlertMark| {
                m.delivered_at.is_some() && m.reached().is_empty()
            };
            let raised: Vec<(Event, Vec<String>)> = tracker
                .open()
                .flat_map(|i| {
                    i.alerts
                        .iter()
                        .filter(|m| !complete(m) && m.at >= oldest)
                        .map(|m| (m.raised_by(&i.id), m.reached().to_vec()))
                })
                .collect();
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
                    AlertStage::Breach | AlertStage::Renotify => Event::InquiryBreached {
                        inquiry_id: i.id.clone(),
                        at: i.deadline_at.unwrap_or(latest.at),
                    },
                };
                self.alert_for(&event, &tracker)
            })
            .collect()
    }

    /// The alerts an event raises at `now`: one per recipient when a rotation routes it, else
    /// one for the notifiers' fixed destinations. Routed at `now`, when it is sent, not at the
    /// instant it is about: a breach raised late (the daemon was down at the deadline) goes to
    /// whoever is on call when it goes out, not to the person whose shift ended meanwhile.
    fn alerts_for(&self, event: &Event, tracker: &Tracker, now: DateTime<Utc>) -> Vec<Alert> {
        let Some(alert) = self.alert_for(event, tracker) else {
            return Vec::new();
        };
        let Some(oncall) = &self.oncall else {
            return vec![alert];
        };
        let Some(inquiry) = tracker.get(&alert.inquiry_id) else {
            return vec![alert];
        };
        let alerted: Vec<String> = inquiry
            .alerts
            .iter()
            .flat_map(|m| m.reached().iter().cloned())
            .collect();
        let recipients = oncall.recipients(alert.kind, inquiry.policy.as_deref(), now, &alerted);
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

    fn alert_for(&self, event: &Event, tracker: &Tracker) -> Option<Alert> {
        let (kind, id, due_at) = match event {
            Event::InquiryWarned { inquiry_id, at, .. } => (AlertKind::Warning, inquiry_id, *at),
            Event::InquiryBreached { inquiry_id, at } => (AlertKind::Breach, inquiry_id, *at),
            Event::InquiryRenotified { inquiry_id, at, .. } => {
                (AlertKind::Renotify, inquiry_id, *at)
            }
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
                _ => inquiry.customer.clone(),
            },
            subject: inquiry.subject.clone(),
            received_at: inquiry.received_at,
            deadline_at: inquiry.deadline_at.unwrap_or(due_at),
            due_at,
            link: format!("{}/api/v1/inquiries/{}", self.public_url, id),
            recipient: None,
        })
    }
}
