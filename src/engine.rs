//! The engine: the one writer of the ledger.
//!
//! It owns the order of everything: observations from sources, manual acks from the CLI/API and
//! instants from the scheduler all go through one task. For each input it has the tracker decide
//! and apply the events (under the state's write lock), appends them — with the source's cursors
//! — to the ledger in one transaction, and only once they are in the ledger counts them in the
//! metrics, reschedules deadlines and hands alerts to the notifier.
//!
//! The in-memory state may be ahead of the ledger only while an append is being retried: a
//! failed append is retried with backoff (the sources wait, their queue is bounded) and is never
//! rolled back, so memory and ledger cannot disagree once the append succeeds. If the daemon stops
//! before that, the uncommitted batch is simply read again after the restart (its cursor was not
//! committed either). Readers (HTTP, CLI) look at the shared state under a read lock.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::InquiryId;
use crate::notify::{Alert, AlertKind, Notifier};
use crate::scheduler::{Clock, Deadlines};
use crate::sources::{CursorUpdate, Submission};
use crate::store::{Store, StoreError};
use crate::telemetry::Metrics;
use crate::tracker::observation::{ManualAck, Stage};
use crate::tracker::state::Rejected;
use crate::tracker::{Event, Inquiry, Observation, Tracker};

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
    pub input: mpsc::Receiver<Submission>,
    pub commands: mpsc::Receiver<Command>,
    pub shutdown: CancellationToken,
    /// How long deadlines of a source still in its first sync are held ([`SYNC_GRACE`]).
    pub sync_grace: Duration,
}

/// Builds the in-memory state from the ledger: the start-up replay.
pub async fn replay(
    store: &Store,
    rules: Arc<crate::tracker::TrackerRules>,
) -> Result<(Tracker, Deadlines), StoreError> {
    let mut tracker = Tracker::new(rules);
    let mut deadlines = Deadlines::new();
    store
        .for_each_event(|entry| {
            tracker.apply(&entry.event);
            deadlines.follow(&entry.event);
            Ok::<(), StoreError>(())
        })
        .await?;
    Ok((tracker, deadlines))
}

/// Deadlines held back while their source finishes its first sync.
#[derive(Debug)]
struct SyncGate {
    /// After this instant nothing is held any more.
    grace_end: DateTime<Utc>,
    held: Vec<(InquiryId, Stage, String)>,
    warned: bool,
}

/// Why the engine loop woke up.
enum Wake {
    Shutdown,
    Command(Command),
    Submission(Submission),
    Deadline,
}

impl Engine {
    /// Runs until shutdown. `deadlines` comes from [`replay`].
    pub async fn run(mut self, mut deadlines: Deadlines) {
        let deliveries = TaskTracker::new();
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
            let clock = self.clock;
            let wake = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => Wake::Shutdown,
                Some(command) = self.commands.recv() => Wake::Command(command),
                Some(submission) = self.input.recv() => Wake::Submission(submission),
                _ = async move {
                    match next {
                        Some(at) => clock.sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => Wake::Deadline,
            };
            match wake {
                Wake::Shutdown => break,
                Wake::Command(c) => self.handle_command(c, &mut deadlines, &deliveries).await,
                Wake::Submission(s) => {
                    self.handle_submission(s, &mut deadlines, &mut gate, &deliveries)
                        .await
                }
                Wake::Deadline => self.fire_due(&mut deadlines, &mut gate, &deliveries).await,
            }
        }
        deliveries.close();
        if tokio::time::timeout(ALERT_DELIVERY_TIMEOUT, deliveries.wait())
            .await
            .is_err()
        {
            tracing::warn!("Alert deliveries still running at shutdown were abandoned.");
        }
        tracing::info!("Engine stopped.");
    }

    async fn handle_submission(
        &mut self,
        submission: Submission,
        deadlines: &mut Deadlines,
        gate: &mut SyncGate,
        deliveries: &TaskTracker,
    ) {
        let Submission { batch, committed } = submission;
        let now = self.clock.now();
        let events = self.decide_and_apply(&batch.observations, now);
        let cursors: Vec<(String, CursorUpdate)> = batch
            .cursors
            .into_iter()
            .map(|c| (batch.source.clone(), c))
            .collect();
        let result = self
            .commit(now, &events, &cursors, deadlines, deliveries)
            .await;
        if result.is_ok() && batch.initial_sync_done {
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
        let _ = committed.send(result);
    }

    async fn handle_command(
        &mut self,
        command: Command,
        deadlines: &mut Deadlines,
        deliveries: &TaskTracker,
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
                    Ok(events) => match self.commit(now, &events, &[], deadlines, deliveries).await
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
            Command::Observe {
                observations,
                reply,
            } => {
                let now = self.clock.now();
                let events = self.decide_and_apply(&observations, now);
                let answer = self
                    .commit(now, &events, &[], deadlines, deliveries)
                    .await
                    .map(|()| events.len())
                    .map_err(AckError::Store);
                let _ = reply.send(answer);
            }
        }
    }

    /// Fires every due instant, except those of inquiries whose source is still in its first
    /// sync (held until it finishes, or until the grace period ends).
    async fn fire_due(
        &mut self,
        deadlines: &mut Deadlines,
        gate: &mut SyncGate,
        deliveries: &TaskTracker,
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
        let mut tracker = self.write_tracker();
        let mut events = Vec::new();
        for observation in observations {
            // Only manual acks can be rejected, and they do not come in batches.
            if let Ok(decided) = tracker.observe(observation, now) {
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
        deliveries: &TaskTracker,
    ) -> Result<(), String> {
        if events.is_empty() && cursors.is_empty() {
            return Ok(());
        }
        let mut pause = Duration::from_millis(500);
        let mut attempt = 1u32;
        while let Err(e) = self.shared.store.append(now, events, cursors).await {
            tracing::error!(
                error = %e,
                attempt,
                events = events.len(),
                "Ledger append failed; retrying (sources wait meanwhile)."
            );
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    return Err(format!("shutting down with {} events not written: {e}", events.len()));
                }
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(MAX_APPEND_BACKOFF);
            attempt += 1;
        }
        let mut alerts = Vec::new();
        {
            let tracker = self.read_tracker();
            for event in events {
                self.shared.metrics.record(event, &tracker);
                deadlines.follow(event);
                alerts.extend(self.alert_for(event, &tracker));
            }
        }
        if !alerts.is_empty() {
            let notifier = self.notifier.clone();
            let metrics = self.shared.metrics.clone();
            deliveries.spawn(async move {
                let results = match tokio::time::timeout(ALERT_DELIVERY_TIMEOUT, notifier.deliver(&alerts)).await {
                    Ok(results) => results,
                    Err(_) => alerts
                        .iter()
                        .map(|_| {
                            Err(crate::notify::DeliveryError {
                                notifier: notifier.name().to_string(),
                                message: format!("no answer within {ALERT_DELIVERY_TIMEOUT:?}"),
                            })
                        })
                        .collect(),
                };
                for (alert, result) in alerts.iter().zip(results) {
                    if let Err(e) = &result {
                        tracing::warn!(error = %e, inquiry = %alert.inquiry_id, "Alert delivery failed.");
                    }
                    metrics.record_alert(alert.kind.as_str(), notifier.name(), result.is_ok());
                }
            });
        }
        Ok(())
    }

    fn alert_for(&self, event: &Event, tracker: &Tracker) -> Option<Alert> {
        let (kind, id, due_at) = match event {
            Event::InquiryWarned { inquiry_id, at, .. } => (AlertKind::Warning, inquiry_id, *at),
            Event::InquiryBreached { inquiry_id, at } => (AlertKind::Breach, inquiry_id, *at),
            _ => return None,
        };
        let inquiry = tracker.get(id)?;
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
        })
    }
}
