//! Dispatch: the one notifier the engine sees when real notifiers are configured.
//!
//! - **Every notifier on its own lane, in parallel.** Each primary (and the fallback) has its
//!   own queue and worker: an SMTP server down for minutes delays the webhook and Alertmanager
//!   copies of an alert by nothing. An alert counts as delivered as soon as one primary's
//!   server accepted it; the others go on independently.
//! - **Order, and digests of what piled up,** per lane: while a lane retries a batch, the next
//!   ones wait behind it, and when it takes the next batch it takes everything queued at that
//!   moment as one batch (which a notifier turns into a digest above `digest_over`). So a mail
//!   server down for minutes gets, once back, the alerts in order, none lost, and not one mail
//!   per alert. The monitor's own alerts (a source silent, the ledger stuck) go out in a batch
//!   of their own: never folded into a digest, never held by a window.
//! - **Time-window digests** (`digest_window`, off by default): per lane and recipient, once more
//!   than `digest_over` alerts went out within the window, further ones are held and sent as one
//!   digest at the window's end ([`super::window`]); the first ones are never delayed.
//! - **Retry with backoff** per lane, for up to `retry_for`, only the alerts that failed. A lane
//!   that gives up signals `notifier_failing` (a monitor alert, through the lanes that work),
//!   and its next success signals that it is over.
//! - **Fallback.** An alert some primary could not deliver goes to the fallback notifier too
//!   (it stands in for the person that primary was meant to reach).
//! - **Health.** `slawatch_notifier_up{notifier}` (1 after a successful attempt, 0 after a
//!   failed one), `slawatch_alerts_total{kind,notifier,result}` once per alert and notifier with
//!   its final result, and `slawatch_alert_delivery_latency_seconds{notifier}` from the instant
//!   the alert is about (warn instant or deadline) to acceptance by the server.
//!
//! Results go back to the engine, which writes `AlertDelivered`/`AlertFailed` to the ledger;
//! alerts without a delivery record are sent again at the next start (`Engine::resume_pending`).
//! The one window for a duplicate: killed after a server accepted an alert and before its
//! `AlertDelivered` was written (the resend carries the same `Message-ID`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use prometheus::{HistogramOpts, HistogramVec, IntGaugeVec, Opts};
use tokio::sync::{mpsc, oneshot};

use super::window::DigestWindow;
use super::{Alert, Delivery, DeliveryError, MonitorProblem, Notifier};
use crate::monitor::{Signal, Signals};
use crate::telemetry::{Metrics, TelemetryError};

/// First pause after a failed attempt; doubled after each further failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Longest pause between attempts: a mail server that comes back is used within this.
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// Latency buckets (seconds): the target is under 1 s; 300 s is a warning's whole lead time.
const LATENCY_BUCKETS: [f64; 11] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The notifier health series, and the signals of a notifier that gives up or recovers.
#[derive(Clone)]
pub struct NotifierHealth {
    metrics: Arc<Metrics>,
    up: IntGaugeVec,
    latency: HistogramVec,
    signals: Option<Signals>,
    /// Per notifier: whether it gave up last (`None`: no verdict yet). Signals go out on
    /// changes only.
    failing: Arc<Mutex<HashMap<String, bool>>>,
}

impl NotifierHealth {
    /// Registers the series in `metrics`' registry, at their initial values for `names`.
    pub fn new(metrics: Arc<Metrics>, names: &[&str]) -> Result<NotifierHealth, TelemetryError> {
        let up = IntGaugeVec::new(
            Opts::new(
                "slawatch_notifier_up",
                "1 if the notifier's last delivery attempt succeeded (or none was made yet), 0 if it failed.",
            ),
            &["notifier"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "slawatch_alert_delivery_latency_seconds",
                "From the instant an alert is about (warn instant or deadline) to its acceptance by the notifier's server.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["notifier"],
        )?;
        metrics.register(Box::new(up.clone()))?;
        metrics.register(Box::new(latency.clone()))?;
        for name in names {
            up.with_label_values(&[name]).set(1);
            latency.with_label_values(&[name]);
        }
        Ok(NotifierHealth {
            metrics,
            up,
            latency,
            signals: None,
            failing: Arc::default(),
        })
    }

    /// Sends `notifier_failing` signals to the engine (the monitor's own alerts).
    pub fn with_signals(mut self, signals: Signals) -> NotifierHealth {
        self.signals = Some(signals);
        self
    }

    fn attempt(&self, notifier: &str, ok: bool) {
        self.up.with_label_values(&[notifier]).set(i64::from(ok));
    }

    fn delivered(&self, notifier: &str, alert: &Alert) {
        let seconds = (Utc::now() - alert.due_at).num_milliseconds().max(0) as f64 / 1000.0;
        self.latency.with_label_values(&[notifier]).observe(seconds);
        self.metrics
            .record_alert(alert.kind.as_str(), notifier, true);
    }

    fn failed(&self, notifier: &str, alert: &Alert) {
        self.metrics
            .record_alert(alert.kind.as_str(), notifier, false);
    }

    /// A lane's verdict after a batch: it gave up on some alerts (`failing`, with the last
    /// error), or delivered them all.
    fn verdict(&self, notifier: &str, failing: bool, detail: &str) {
        let changed = {
            let mut all = self.failing.lock().unwrap_or_else(|e| e.into_inner());
            all.insert(notifier.to_string(), failing) != Some(failing)
        };
        if let Some(signals) = &self.signals
            && changed
        {
            let _ = signals.send(Signal {
                problem: MonitorProblem::NotifierFailing,
                subject: notifier.to_string(),
                failing,
                detail: detail.to_string(),
            });
        }
    }
}

/// What the engine hands over: alerts and where their results go.
struct Job {
    alerts: Vec<Alert>,
    reply: oneshot::Sender<Vec<Result<(), DeliveryError>>>,
}

/// One alert of one job, on a lane.
#[derive(Clone)]
struct Item {
    job: u64,
    index: usize,
    alert: Alert,
}

/// A lane's result for one item.
struct Outcome {
    lane: usize,
    job: u64,
    index: usize,
    result: Result<(), DeliveryError>,
}

/// Primary notifiers with retry, each on its own lane, and a fallback.
pub struct Dispatch {
    queue: mpsc::UnboundedSender<Job>,
    budget: Duration,
    /// `smtp,webhook(fallback)`: recorded with each delivery in the ledger.
    label: String,
    /// The primaries, told which alerts are still active after a restart.
    primaries: Vec<Arc<dyn Notifier>>,
}

/// What is known of one alert of a job.
#[derive(Default)]
struct Progress {
    /// Primaries that reported.
    reported: usize,
    /// Some primary failed on it (the fallback is due once all reported).
    any_failed: bool,
    handed_to_fallback: bool,
    last_error: Option<DeliveryError>,
    result: Option<Result<(), DeliveryError>>,
}

/// A job whose results are not all in yet.
struct OpenJob {
    alerts: Vec<Alert>,
    progress: Vec<Progress>,
    reply: oneshot::Sender<Vec<Result<(), DeliveryError>>>,
}

impl Dispatch {
    /// Starts the lanes (needs a tokio runtime), without a digest window. They end when the
    /// `Dispatch` is dropped and their queues are empty.
    pub fn new(
        primaries: Vec<Arc<dyn Notifier>>,
        fallback: Option<Arc<dyn Notifier>>,
        retry_for: Duration,
        health: NotifierHealth,
    ) -> Dispatch {
        Dispatch::windowed(primaries, fallback, retry_for, health, Duration::ZERO, 1)
    }

    /// As [`Dispatch::new`], holding alerts per lane and recipient beyond `digest_over` within
    /// `digest_window` for one digest at the window's end.
    pub fn windowed(
        primaries: Vec<Arc<dyn Notifier>>,
        fallback: Option<Arc<dyn Notifier>>,
        retry_for: Duration,
        health: NotifierHealth,
        digest_window: Duration,
        digest_over: usize,
    ) -> Dispatch {
        let mut names: Vec<String> = primaries.iter().map(|p| p.name().to_string()).collect();
        names.extend(fallback.iter().map(|f| format!("{}(fallback)", f.name())));
        let label = names.join(",");
        let (queue, jobs) = mpsc::unbounded_channel::<Job>();
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel::<Outcome>();
        let lane = |index: usize, notifier: Arc<dyn Notifier>| {
            let (tx, rx) = mpsc::unbounded_channel::<Vec<Item>>();
            tokio::spawn(
                Lane {
                    index,
                    notifier,
                    retry_for,
                    health: health.clone(),
                }
                .run(rx, outcomes_tx.clone(), digest_window, digest_over),
            );
            tx
        };
        let lanes: Vec<mpsc::UnboundedSender<Vec<Item>>> = primaries
            .iter()
            .enumerate()
            .map(|(i, p)| lane(i, p.clone()))
            .collect();
        let fallback_lane = fallback.map(|f| lane(lanes.len(), f));
        drop(outcomes_tx);
        tokio::spawn(coordinate(jobs, outcomes, lanes, fallback_lane));
        // A lane uses up to its whole retry time per batch, and a batch may wait for the one
        // ahead of it; the fallback starts after the primaries; an alert held for a digest waits
        // up to the window more.
        let budget = retry_for * 4 + Duration::from_secs(60) + digest_window;
        Dispatch {
            queue,
            budget,
            label,
            primaries,
        }
    }
}

/// Hands each job to every primary lane, gathers their outcomes, hands what some primary could
/// not deliver to the fallback lane, and answers each job once every alert has a result.
async fn coordinate(
    mut jobs: mpsc::UnboundedReceiver<Job>,
    mut outcomes: mpsc::UnboundedReceiver<Outcome>,
    lanes: Vec<mpsc::UnboundedSender<Vec<Item>>>,
    fallback: Option<mpsc::UnboundedSender<Vec<Item>>>,
) {
    let primaries = lanes.len();
    let fallback_index = primaries;
    let mut open: BTreeMap<u64, OpenJob> = BTreeMap::new();
    let mut next_job = 0u64;
    let mut closed = false;
    loop {
        tokio::select! {
            job = jobs.recv(), if !closed => match job {
                None => closed = true,
                Some(job) => {
                    let id = next_job;
                    next_job += 1;
                    let items: Vec<Item> = job
                        .alerts
                        .iter()
                        .enumerate()
                        .map(|(index, alert)| Item { job: id, index, alert: alert.clone() })
                        .collect();
                    let mut progress: Vec<Progress> =
                        job.alerts.iter().map(|_| Progress::default()).collect();
                    if primaries == 0 {
                        match &fallback {
                            Some(f) => {
                                for p in &mut progress {
                                    p.handed_to_fallback = true;
                                }
                                let _ = f.send(items);
                            }
                            None => {
                                for p in &mut progress {
                                    p.result = Some(Err(no_notifier()));
                                }
                            }
                        }
                    } else {
                        for lane in &lanes {
                            let _ = lane.send(items.clone());
                        }
                    }
                    open.insert(id, OpenJob { alerts: job.alerts, progress, reply: job.reply });
                }
            },
            Some(outcome) = outcomes.recv() => {
                let Some(job) = open.get_mut(&outcome.job) else { continue };
                let Some(p) = job.progress.get_mut(outcome.index) else { continue };
                if outcome.lane == fallback_index {
                    if p.result.is_none() {
                        let primary = p.last_error.take();
                        p.result = Some(outcome.result.map_err(|e| match primary {
                            Some(primary) => DeliveryError {
                                notifier: "dispatch".into(),
                                message: format!("{primary}; fallback {e}"),
                            },
                            None => e,
                        }));
                    }
                } else {
                    p.reported += 1;
                    match outcome.result {
                        Ok(()) => {
                            if p.result.is_none() {
                                p.result = Some(Ok(()));
                            }
                        }
                        Err(e) => {
                            p.any_failed = true;
                            p.last_error = Some(e);
                        }
                    }
                    if p.reported == primaries && p.any_failed && !p.handed_to_fallback {
                        match &fallback {
                            Some(f) => {
                                p.handed_to_fallback = true;
                                tracing::warn!(
                                    alert = %job.alerts[outcome.index].inquiry_id,
                                    "A primary notifier failed; the fallback takes over."
                                );
                                let _ = f.send(vec![Item {
                                    job: outcome.job,
                                    index: outcome.index,
                                    alert: job.alerts[outcome.index].clone(),
                                }]);
                            }
                            None => {
                                if p.result.is_none() {
                                    p.result = Some(Err(p.last_error.take().unwrap_or_else(no_notifier)));
                                }
                            }
                        }
                    }
                }
            }
            else => break,
        }
        let done: Vec<u64> = open
            .iter()
            .filter(|(_, j)| j.progress.iter().all(|p| p.result.is_some()))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(job) = open.remove(&id) {
                let results = job
                    .progress
                    .into_iter()
                    .map(|p| p.result.unwrap_or_else(|| Err(no_notifier())))
                    .collect();
                let _ = job.reply.send(results);
            }
        }
        if closed && open.is_empty() {
            break;
        }
    }
}

fn no_notifier() -> DeliveryError {
    DeliveryError {
        notifier: "dispatch".into(),
        message: "no notifier configured".into(),
    }
}

impl Notifier for Dispatch {
    fn name(&self) -> &str {
        &self.label
    }

    fn records_own_metrics(&self) -> bool {
        true
    }

    fn budget(&self) -> Duration {
        self.budget
    }

    /// Primaries only: the fallback took over just the alerts it delivered, and holds those.
    fn still_firing(&self, alerts: &[Alert]) {
        for primary in &self.primaries {
            primary.still_firing(alerts);
        }
    }

    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let stopped = || {
                alerts
                    .iter()
                    .map(|_| {
                        Err(DeliveryError {
                            notifier: "dispatch".into(),
                            message: "the alert dispatcher has stopped".into(),
                        })
                    })
                    .collect()
            };
            if self
                .queue
                .send(Job {
                    alerts: alerts.to_vec(),
                    reply,
                })
                .is_err()
            {
                return stopped();
            }
            answer.await.unwrap_or_else(|_| stopped())
        })
    }
}

/// One notifier's queue and worker.
struct Lane {
    index: usize,
    notifier: Arc<dyn Notifier>,
    retry_for: Duration,
    health: NotifierHealth,
}

impl Lane {
    /// Delivers what comes in, in order: everything queued at once as one batch, the monitor's
    /// alerts apart, digests held by the window at its end.
    async fn run(
        self,
        mut queue: mpsc::UnboundedReceiver<Vec<Item>>,
        outcomes: mpsc::UnboundedSender<Outcome>,
        digest_window: Duration,
        digest_over: usize,
    ) {
        let mut window: DigestWindow<Item> = DigestWindow::new(digest_window, digest_over);
        let mut closed = false;
        loop {
            let flush_at = window.next_flush();
            let mut send: Vec<Item> = Vec::new();
            let mut monitor: Vec<Item> = Vec::new();
            let mut digests: Vec<Vec<Item>> = Vec::new();
            tokio::select! {
                items = queue.recv(), if !closed => match items {
                    None => closed = true,
                    Some(first) => {
                        let mut batch = first;
                        while let Ok(more) = queue.try_recv() {
                            batch.extend(more);
                        }
                        // Grouped per recipient, in order.
                        let mut groups: Vec<(String, Vec<Item>)> = Vec::new();
                        for item in batch {
                            if item.alert.monitor.is_some() {
                                monitor.push(item);
                                continue;
                            }
                            let key = item
                                .alert
                                .recipient
                                .as_ref()
                                .map(|r| r.person.clone())
                                .unwrap_or_default();
                            match groups.iter_mut().find(|(k, _)| *k == key) {
                                Some((_, items)) => items.push(item),
                                None => groups.push((key, vec![item])),
                            }
                        }
                        let now = tokio::time::Instant::now();
                        for (key, items) in groups {
                            send.extend(window.admit(&key, items, now));
                        }
                    }
                },
                _ = async {
                    match flush_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    digests = window
                        .due(tokio::time::Instant::now())
                        .into_iter()
                        .map(|(_, items)| items)
                        .collect();
                }
            }
            if closed {
                digests.extend(window.drain().into_iter().map(|(_, items)| items));
            }
            for (items, digest) in [(monitor, false), (send, false)]
                .into_iter()
                .chain(digests.into_iter().map(|d| (d, true)))
            {
                if items.is_empty() {
                    continue;
                }
                let alerts: Vec<Alert> = items.iter().map(|i| i.alert.clone()).collect();
                let errors = self.with_retry(&alerts, digest).await;
                for (item, error) in items.into_iter().zip(errors) {
                    let _ = outcomes.send(Outcome {
                        lane: self.index,
                        job: item.job,
                        index: item.index,
                        result: error.map_or(Ok(()), Err),
                    });
                }
            }
            if closed && !window.is_holding() {
                break;
            }
        }
    }

    /// Delivers through the lane's notifier, retrying the failed alerts with backoff for
    /// `retry_for`. Returns the final error of each alert, `None` if delivered.
    async fn with_retry(&self, alerts: &[Alert], digest: bool) -> Vec<Option<DeliveryError>> {
        let n = self.notifier.as_ref();
        let started = tokio::time::Instant::now();
        let mut errors: Vec<Option<DeliveryError>> = (0..alerts.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..alerts.len()).collect();
        let mut pause = FIRST_BACKOFF;
        let mut attempt = 1u32;
        loop {
            let batch: Vec<Alert> = pending.iter().map(|&i| alerts[i].clone()).collect();
            let mut results = if digest {
                n.deliver_digest(&batch).await
            } else {
                n.deliver(&batch).await
            }
            .into_iter();
            let mut still = Vec::new();
            for &i in &pending {
                match results.next() {
                    Some(Ok(())) => {
                        errors[i] = None;
                        self.health.delivered(n.name(), &alerts[i]);
                    }
                    Some(Err(e)) => {
                        errors[i] = Some(e);
                        still.push(i);
                    }
                    None => {
                        errors[i] = Some(DeliveryError {
                            notifier: n.name().to_string(),
                            message: "the notifier returned no result".into(),
                        });
                        still.push(i);
                    }
                }
            }
            self.health.attempt(n.name(), still.is_empty());
            pending = still;
            let Some(&first) = pending.first() else {
                self.health.verdict(n.name(), false, "");
                break;
            };
            let error = errors[first]
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_default();
            // A replica that lost the leader lease stops here: the active one resumes these
            // alerts from their intents in the ledger. Retrying would keep the stepped-down role
            // waiting on this task, and send the old alerts if this replica became the active
            // one again meanwhile.
            if !n.may_send() {
                tracing::warn!(
                    notifier = n.name(),
                    attempt,
                    alerts = pending.len(),
                    "Alert delivery stopped: this replica no longer holds the leader lease."
                );
                break;
            }
            if started.elapsed() + pause > self.retry_for {
                tracing::error!(notifier = n.name(), attempt, alerts = pending.len(), %error, "Alert delivery failed; giving up on this notifier.");
                self.health.verdict(
                    n.name(),
                    true,
                    &format!(
                        "gave up on {} alert(s) after {} attempts in {}: {error}",
                        pending.len(),
                        attempt,
                        humantime::format_duration(Duration::from_secs(
                            started.elapsed().as_secs()
                        ))
                    ),
                );
                break;
            }
            tracing::warn!(notifier = n.name(), attempt, alerts = pending.len(), %error, retry_in_ms = pause.as_millis() as u64, "Alert delivery failed; retrying.");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
        for &i in &pending {
            self.health.failed(n.name(), &alerts[i]);
        }
        errors
    }
}

/// Why the notifiers could not be built from the settings.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Smtp(#[from] super::smtp::SmtpError),
    #[error(transparent)]
    Webhook(#[from] super::webhook::WebhookError),
    #[error(transparent)]
    Alertmanager(#[from] super::alertmanager::AlertmanagerError),
    #[error(transparent)]
    Metrics(#[from] TelemetryError),
    #[error("notifier `{0}` is named but not configured")]
    Missing(String),
}

/// Builds the notifier the engine uses: a [`Dispatch`] over the named notifiers, whose lanes
/// signal a notifier giving up through `signals`; or, when `[notify]` names none, the log
/// notifier alone (which delivers to nobody: every alert is recorded as failed, never as
/// delivered, and `check-config` warns). The health series exist in every configuration.
/// Needs a tokio runtime.
pub fn build(
    settings: &crate::config::NotifySettings,
    time_zone: chrono_tz::Tz,
    metrics: Arc<Metrics>,
    signals: Option<Signals>,
    lease: Option<Arc<crate::store::lease::Lease>>,
) -> Result<Arc<dyn Notifier>, BuildError> {
    if settings.primary.is_empty() && settings.fallback.is_none() {
        let log = super::LogNotifier;
        NotifierHealth::new(metrics, &[log.name()])?;
        return Ok(Arc::new(log));
    }
    // In a pair, each channel checks the lease just before it sends (retries included).
    let one = |name: &str| {
        build_one(name, settings, time_zone).map(|inner| match &lease {
            Some(lease) => Arc::new(super::lease_gate::LeaseGated {
                inner,
                lease: lease.clone(),
            }) as Arc<dyn Notifier>,
            None => inner,
        })
    };
    let primaries = settings
        .primary
        .iter()
        .map(|n| one(n))
        .collect::<Result<Vec<_>, _>>()?;
    let fallback = settings.fallback.as_deref().map(one).transpose()?;
    let names: Vec<&str> = settings
        .primary
        .iter()
        .chain(settings.fallback.iter())
        .map(String::as_str)
        .collect();
    let mut health = NotifierHealth::new(metrics, &names)?;
    if let Some(signals) = signals {
        health = health.with_signals(signals);
    }
    Ok(Arc::new(Dispatch::windowed(
        primaries,
        fallback,
        settings.retry_for,
        health,
        settings.digest_window,
        settings.digest_over,
    )))
}

/// Builds one named notifier (`smtp`, `webhook`, `alertmanager`) without retry or fallback:
/// `slawatch test-alert` tries each on its own.
pub fn build_one(
    name: &str,
    settings: &crate::config::NotifySettings,
    time_zone: chrono_tz::Tz,
) -> Result<Arc<dyn Notifier>, BuildError> {
    let missing = || BuildError::Missing(name.to_string());
    Ok(match name {
        "smtp" => Arc::new(super::smtp::SmtpNotifier::new(
            settings.smtp.as_ref().ok_or_else(missing)?,
            time_zone,
            settings.digest_over,
        )?),
        "webhook" => Arc::new(super::webhook::WebhookNotifier::new(
            settings.webhook.as_ref().ok_or_else(missing)?,
            settings.digest_over,
        )?),
        "alertmanager" => Arc::new(super::alertmanager::AlertmanagerNotifier::new(
            settings.alertmanager.as_ref().ok_or_else(missing)?,
        )?),
        _ => return Err(missing()),
    })
}
