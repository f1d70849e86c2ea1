//! Dispatch: the one notifier the engine sees when real notifiers are configured.
//!
//! - **Order, and digests of what piled up.** Batches go through one queue and one worker:
//!   while a batch is being retried the next ones wait behind it, and when the worker takes the
//!   next batch it takes everything queued at that moment as one batch (which a notifier turns
//!   into a digest above `digest_over`). So a mail server down for minutes gets, once back, the
//!   alerts in order, none lost, and not one mail per alert.
//! - **Time-window digests** (`digest_window`, off by default): per recipient, once more than
//!   `digest_over` alerts went out within the window, further ones are held and sent as one
//!   digest at the window's end ([`super::window`]); the first ones are never delayed.
//! - **Retry with backoff** per notifier, for up to `retry_for`, only the alerts that failed.
//! - **Fallback.** Alerts a primary still could not deliver go to the fallback notifier.
//! - **Health.** `slawatch_notifier_up{notifier}` (1 after a successful attempt, 0 after a
//!   failed one), `slawatch_alerts_total{kind,notifier,result}` once per alert and notifier with
//!   its final result, and `slawatch_alert_delivery_latency_seconds{notifier}` from the instant
//!   the alert is about (warn instant or deadline) to acceptance by the server.
//!
//! Results go back to the engine, which writes `AlertDelivered`/`AlertFailed` to the ledger;
//! alerts without a delivery record are sent again at the next start (`Engine::resume_pending`).
//! The one window for a duplicate: killed after the server accepted a mail and before its
//! `AlertDelivered` was written (the resend carries the same `Message-ID`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prometheus::{HistogramOpts, HistogramVec, IntGaugeVec, Opts};
use tokio::sync::{mpsc, oneshot};

use super::window::DigestWindow;
use super::{Alert, Delivery, DeliveryError, Notifier};
use crate::telemetry::{Metrics, TelemetryError};

/// First pause after a failed attempt; doubled after each further failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Longest pause between attempts: a mail server that comes back is used within this.
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// Latency buckets (seconds): the target is under 1 s; 300 s is a warning's whole lead time.
const LATENCY_BUCKETS: [f64; 11] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The notifier health series.
#[derive(Clone)]
pub struct NotifierHealth {
    metrics: Arc<Metrics>,
    up: IntGaugeVec,
    latency: HistogramVec,
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
        })
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
}

struct Job {
    alerts: Vec<Alert>,
    reply: oneshot::Sender<Vec<Result<(), DeliveryError>>>,
}

/// Primary notifiers with retry, a fallback, one ordered queue.
pub struct Dispatch {
    queue: mpsc::UnboundedSender<Job>,
    budget: Duration,
    /// `smtp,webhook(fallback)`: recorded with each delivery in the ledger.
    label: String,
    /// The primaries, told which alerts are still active after a restart.
    primaries: Vec<Arc<dyn Notifier>>,
}

/// A job's alerts whose results are not all in yet.
struct OpenJob {
    results: Vec<Option<Result<(), DeliveryError>>>,
    reply: oneshot::Sender<Vec<Result<(), DeliveryError>>>,
}

/// One alert of one job.
struct Item {
    job: u64,
    index: usize,
    alert: Alert,
}

impl Dispatch {
    /// Starts the worker (needs a tokio runtime), without a digest window. It ends when the
    /// `Dispatch` is dropped and its queue is empty.
    pub fn new(
        primaries: Vec<Arc<dyn Notifier>>,
        fallback: Option<Arc<dyn Notifier>>,
        retry_for: Duration,
        health: NotifierHealth,
    ) -> Dispatch {
        Dispatch::windowed(primaries, fallback, retry_for, health, Duration::ZERO, 1)
    }

    /// As [`Dispatch::new`], holding alerts per recipient beyond `digest_over` within
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
        let (queue, mut jobs) = mpsc::unbounded_channel::<Job>();
        let worker = Worker {
            primaries: primaries.clone(),
            fallback,
            retry_for,
            health,
        };
        tokio::spawn(async move {
            let mut window: DigestWindow<Item> = DigestWindow::new(digest_window, digest_over);
            let mut open: BTreeMap<u64, OpenJob> = BTreeMap::new();
            let mut next_job = 0u64;
            let mut closed = false;
            loop {
                let flush_at = window.next_flush();
                let mut send: Vec<Item> = Vec::new();
                let mut digests: Vec<Vec<Item>> = Vec::new();
                tokio::select! {
                    job = jobs.recv(), if !closed => match job {
                        None => closed = true,
                        Some(first) => {
                            let mut batch = vec![first];
                            while let Ok(more) = jobs.try_recv() {
                                batch.push(more);
                            }
                            // Grouped per recipient, in order.
                            let mut groups: Vec<(String, Vec<Item>)> = Vec::new();
                            for job in batch {
                                let id = next_job;
                                next_job += 1;
                                open.insert(id, OpenJob {
                                    results: job.alerts.iter().map(|_| None).collect(),
                                    reply: job.reply,
                                });
                                for (index, alert) in job.alerts.into_iter().enumerate() {
                                    let key = alert
                                        .recipient
                                        .as_ref()
                                        .map(|r| r.person.clone())
                                        .unwrap_or_default();
                                    let item = Item { job: id, index, alert };
                                    match groups.iter_mut().find(|(k, _)| *k == key) {
                                        Some((_, items)) => items.push(item),
                                        None => groups.push((key, vec![item])),
                                    }
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
                if !send.is_empty() {
                    let alerts: Vec<Alert> = send.iter().map(|i| i.alert.clone()).collect();
                    let results = worker.deliver(&alerts, false).await;
                    record(&mut open, &send, results);
                }
                for items in digests.into_iter().filter(|d| !d.is_empty()) {
                    let alerts: Vec<Alert> = items.iter().map(|i| i.alert.clone()).collect();
                    let results = worker.deliver(&alerts, true).await;
                    record(&mut open, &items, results);
                }
                let done: Vec<u64> = open
                    .iter()
                    .filter(|(_, j)| j.results.iter().all(Option::is_some))
                    .map(|(id, _)| *id)
                    .collect();
                for id in done {
                    if let Some(job) = open.remove(&id) {
                        let _ = job.reply.send(job.results.into_iter().flatten().collect());
                    }
                }
                if closed && open.is_empty() && !window.is_holding() {
                    break;
                }
            }
        });
        // Each primary and the fallback may use their whole retry time; twice that also covers
        // the batches queued ahead; an alert held for a digest waits up to the window more.
        let budget = retry_for * 4 + Duration::from_secs(60) + digest_window;
        Dispatch {
            queue,
            budget,
            label,
            primaries,
        }
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

/// Files each item's result under its job.
fn record(
    open: &mut BTreeMap<u64, OpenJob>,
    items: &[Item],
    results: Vec<Result<(), DeliveryError>>,
) {
    let mut results = results.into_iter();
    for item in items {
        let result = results.next().unwrap_or_else(|| {
            Err(DeliveryError {
                notifier: "dispatch".into(),
                message: "the notifier returned no result".into(),
            })
        });
        if let Some(slot) = open
            .get_mut(&item.job)
            .and_then(|j| j.results.get_mut(item.index))
        {
            *slot = Some(result);
        }
    }
}

struct Worker {
    primaries: Vec<Arc<dyn Notifier>>,
    fallback: Option<Arc<dyn Notifier>>,
    retry_for: Duration,
    health: NotifierHealth,
}

impl Worker {
    /// Delivers through every primary, then the fallback; `digest` sends the alerts as one
    /// digest per recipient whatever their number.
    async fn deliver(&self, alerts: &[Alert], digest: bool) -> Vec<Result<(), DeliveryError>> {
        let mut delivered = vec![false; alerts.len()];
        let mut last_error: Vec<Option<DeliveryError>> = (0..alerts.len()).map(|_| None).collect();
        for primary in &self.primaries {
            let errors = self.with_retry(primary.as_ref(), alerts, digest).await;
            for (i, e) in errors.into_iter().enumerate() {
                match e {
                    None => delivered[i] = true,
                    Some(e) => last_error[i] = Some(e),
                }
            }
        }
        if let Some(fallback) = &self.fallback {
            // Alerts no primary delivered (any single primary failing hands its failures over:
            // the fallback stands in for the person that primary was meant to reach).
            let missed: Vec<usize> = if self.primaries.is_empty() {
                (0..alerts.len()).collect()
            } else {
                (0..alerts.len())
                    .filter(|&i| last_error[i].is_some())
                    .collect()
            };
            if !missed.is_empty() {
                let batch: Vec<Alert> = missed.iter().map(|&i| alerts[i].clone()).collect();
                tracing::warn!(
                    fallback = fallback.name(),
                    alerts = batch.len(),
                    "Primary notifier failed; the fallback takes over."
                );
                let errors = self.with_retry(fallback.as_ref(), &batch, digest).await;
                for (k, e) in errors.into_iter().enumerate() {
                    let i = missed[k];
                    match e {
                        None => delivered[i] = true,
                        Some(e) => last_error[i] = Some(e),
                    }
                }
            }
        }
        delivered
            .into_iter()
            .zip(last_error)
            .map(|(ok, e)| {
                if ok {
                    Ok(())
                } else {
                    Err(e.unwrap_or(DeliveryError {
                        notifier: "dispatch".into(),
                        message: "no notifier configured".into(),
                    }))
                }
            })
            .collect()
    }

    /// Delivers through one notifier, retrying the failed alerts with backoff for `retry_for`.
    /// Returns the final error of each alert, `None` if delivered.
    async fn with_retry(
        &self,
        n: &dyn Notifier,
        alerts: &[Alert],
        digest: bool,
    ) -> Vec<Option<DeliveryError>> {
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
                break;
            };
            let error = errors[first]
                .as_ref()
                .map(|e| e.message.clone())
                .unwrap_or_default();
            if started.elapsed() + pause > self.retry_for {
                tracing::error!(notifier = n.name(), attempt, alerts = pending.len(), %error, "Alert delivery failed; giving up on this notifier.");
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

/// Builds the notifier the engine uses: a [`Dispatch`] over the named notifiers, or over the log
/// notifier when `[notify]` names none (so the health series exist in every configuration).
/// Needs a tokio runtime.
pub fn build(
    settings: &crate::config::NotifySettings,
    time_zone: chrono_tz::Tz,
    metrics: Arc<Metrics>,
) -> Result<Arc<dyn Notifier>, BuildError> {
    if settings.primary.is_empty() && settings.fallback.is_none() {
        let log: Arc<dyn Notifier> = Arc::new(super::LogNotifier);
        let health = NotifierHealth::new(metrics, &[log.name()])?;
        return Ok(Arc::new(Dispatch::new(
            vec![log],
            None,
            settings.retry_for,
            health,
        )));
    }
    let one = |name: &str| build_one(name, settings, time_zone);
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
    let health = NotifierHealth::new(metrics, &names)?;
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
