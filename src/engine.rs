//! The engine: the one writer of the ledger.
//!
//! It owns the order of everything: observations from sources, manual acks from the CLI/API and
//! instants from the scheduler all go through one task, which asks the tracker for events,
//! appends them (with the source cursors) to the ledger in one transaction, applies them to the
//! in-memory state, updates metrics and reschedules deadlines. Readers (HTTP, CLI) look at the
//! shared state under a read lock; they never write.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, oneshot};

use crate::store::Store;
use crate::telemetry::Metrics;
use crate::tracker::observation::ManualAck;
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
    /// Append one of the monitor's own events (heartbeat, source down/up) to the ledger. They
    /// change no inquiry; they let reports prove when the monitor was watching.
    Record(Event),
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
}

/// Everything the engine task needs.
pub struct Engine {
    pub shared: Arc<Shared>,
    pub clock: crate::scheduler::Clock,
    pub notifier: Arc<dyn crate::notify::Notifier>,
    /// Base URL for links in alerts.
    pub public_url: String,
    pub input: mpsc::Receiver<crate::sources::Submission>,
    pub commands: mpsc::Receiver<Command>,
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Builds the in-memory state from the ledger: the start-up replay.
pub async fn replay(
    store: &Store,
    rules: Arc<crate::tracker::TrackerRules>,
) -> Result<(Tracker, crate::scheduler::Deadlines), crate::store::StoreError> {
    let mut tracker = Tracker::new(rules);
    let mut deadlines = crate::scheduler::Deadlines::new();
    store
        .for_each_event(|entry| {
            tracker.apply(&entry.event);
            deadlines.follow(&entry.event);
            Ok::<(), crate::store::StoreError>(())
        })
        .await?;
    Ok((tracker, deadlines))
}

impl Engine {
    /// Runs until shutdown. `deadlines` comes from [`replay`].
    pub async fn run(mut self, mut deadlines: crate::scheduler::Deadlines) {
        loop {
            // Deadlines wait until every source has finished its first sync: a backfilled
            // inquiry must not be declared missed before its reply, later in the backfill, is read.
            let next = if self.shared.is_ready() {
                deadlines.next()
            } else {
                None
            };
            let clock = self.clock;
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                Some(command) = self.commands.recv() => self.handle_command(command, &mut deadlines).await,
                Some(submission) = self.input.recv() => self.handle_submission(submission, &mut deadlines).await,
                _ = async move {
                    match next {
                        Some(at) => clock.sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => self.fire_due(&mut deadlines).await,
            }
        }
        tracing::info!("Engine stopped.");
    }

    async fn handle_submission(
        &mut self,
        submission: crate::sources::Submission,
        deadlines: &mut crate::scheduler::Deadlines,
    ) {
        let crate::sources::Submission { batch, committed } = submission;
        let now = self.clock.now();
        let observations: Vec<Observation> = batch.observations;
        let events = self.decide_and_apply(&observations, now);
        let cursors: Vec<(String, crate::sources::CursorUpdate)> = batch
            .cursors
            .into_iter()
            .map(|c| (batch.source.clone(), c))
            .collect();
        let result = self.commit(now, &events, &cursors, deadlines).await;
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
            tracing::info!(source = %batch.source, "Source finished its first sync.");
            if ready {
                tracing::info!(
                    pending_deadlines = deadlines.len(),
                    "Every source has synced; deadlines are live."
                );
            }
        }
        let _ = committed.send(result);
    }

    async fn handle_command(
        &mut self,
        command: Command,
        deadlines: &mut crate::scheduler::Deadlines,
    ) {
        match command {
            Command::Ack { ack, reply } => {
                let now = self.clock.now();
                let id = ack.inquiry_id.clone();
                let decided = {
                    let mut tracker = self
                        .shared
                        .tracker
                        .write()
                        .unwrap_or_else(|e| e.into_inner());
                    tracker.observe(&Observation::ManualAck(ack), now)
                };
                let answer = match decided {
                    Err(rejected) => Err(AckError::Rejected(rejected)),
                    Ok(events) => {
                        self.record_metrics(&events);
                        match self.commit(now, &events, &[], deadlines).await {
                            Ok(()) => self
                                .shared
                                .tracker
                                .read()
                                .unwrap_or_else(|e| e.into_inner())
                                .get(&id)
                                .cloned()
                                .ok_or(AckError::Store("inquiry vanished after the ack".into())),
                            Err(e) => Err(AckError::Store(e)),
                        }
                    }
                };
                let _ = reply.send(answer);
            }
            Command::Record(event) => {
                let now = self.clock.now();
                self.shared
                    .tracker
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .apply(&event);
                self.record_metrics(std::slice::from_ref(&event));
                if let Err(e) = self.commit(now, &[event], &[], deadlines).await {
                    tracing::error!(error = %e, "Could not record a monitor event.");
                }
            }
        }
    }

    async fn fire_due(&mut self, deadlines: &mut crate::scheduler::Deadlines) {
        let now = self.clock.now();
        let due = deadlines.pop_due(now);
        if due.is_empty() {
            return;
        }
        let observations: Vec<Observation> = due
            .into_iter()
            .map(|(inquiry_id, stage)| Observation::DeadlineReached { inquiry_id, stage })
            .collect();
        let events = self.decide_and_apply(&observations, now);
        if let Err(e) = self.commit(now, &events, &[], deadlines).await {
            tracing::error!(error = %e, "Could not record passed deadlines; they will be retried.");
        }
    }

    /// Decides and applies a batch under one write lock.
    fn decide_and_apply(
        &self,
        observations: &[Observation],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<Event> {
        let mut events = Vec::new();
        {
            let mut tracker = self
                .shared
                .tracker
                .write()
                .unwrap_or_else(|e| e.into_inner());
            for observation in observations {
                // Only manual acks can be rejected, and they do not come in batches.
                if let Ok(decided) = tracker.observe(observation, now) {
                    events.extend(decided);
                }
            }
        }
        self.record_metrics(&events);
        events
    }

    fn record_metrics(&self, events: &[Event]) {
        let tracker = self
            .shared
            .tracker
            .read()
            .unwrap_or_else(|e| e.into_inner());
        for event in events {
            self.shared.metrics.record(event, &tracker);
        }
    }

    /// Appends the events (and cursors) to the ledger, then schedules deadlines and sends alerts.
    /// If the ledger refuses the batch, the in-memory state is rebuilt from the ledger so the two
    /// never disagree, and the source is told to retry.
    async fn commit(
        &mut self,
        now: chrono::DateTime<chrono::Utc>,
        events: &[Event],
        cursors: &[(String, crate::sources::CursorUpdate)],
        deadlines: &mut crate::scheduler::Deadlines,
    ) -> Result<(), String> {
        if events.is_empty() && cursors.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.shared.store.append(now, events, cursors).await {
            tracing::error!(error = %e, "Ledger append failed; rebuilding state from the ledger.");
            let rules = Arc::new(
                self.shared
                    .tracker
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .rules()
                    .clone(),
            );
            match replay(&self.shared.store, rules).await {
                Ok((tracker, rebuilt)) => {
                    *self
                        .shared
                        .tracker
                        .write()
                        .unwrap_or_else(|p| p.into_inner()) = tracker;
                    *deadlines = rebuilt;
                }
                Err(e2) => tracing::error!(error = %e2, "Replay after a failed append failed too."),
            }
            return Err(e.to_string());
        }
        let mut alerts = Vec::new();
        {
            let tracker = self
                .shared
                .tracker
                .read()
                .unwrap_or_else(|p| p.into_inner());
            for event in events {
                deadlines.follow(event);
                if let Some(alert) = self.alert_for(event, &tracker) {
                    alerts.push(alert);
                }
            }
        }
        if !alerts.is_empty() {
            let notifier = self.notifier.clone();
            let metrics = self.shared.metrics.clone();
            tokio::spawn(async move {
                let results = notifier.deliver(&alerts).await;
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

    fn alert_for(&self, event: &Event, tracker: &Tracker) -> Option<crate::notify::Alert> {
        use crate::notify::{Alert, AlertKind};
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
