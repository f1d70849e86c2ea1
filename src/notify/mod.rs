//! Notifiers: where alerts go.
//!
//! The engine hands every warning, breach, re-notification and resolution, once it is in the
//! ledger, to a [`Notifier`] as a typed [`Alert`], and writes each delivery's result back to the
//! ledger. Channels: [`smtp`], [`webhook`] (JSON or Slack text), [`alertmanager`] (API v2 push),
//! all behind [`dispatch`] (one ordered queue, retry, fallback, health metrics) when `[notify]`
//! names them; [`renotify`] holds the re-notification instants. Without `[notify]` the built-in
//! [`LogNotifier`] writes a structured log line per alert, or one digest line when many fall due
//! at once (e.g. inquiries that went overdue while the daemon was down). [`oncall`] decides who
//! receives each alert when a rotation is configured: the engine hands one copy of an alert per
//! recipient, so each delivery is recorded (and resumed) per person.

pub mod alertmanager;
pub mod dispatch;
pub mod oncall;
pub mod renotify;
pub mod smtp;
pub mod webhook;
pub mod window;

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use serde::Serialize;

use slawatch_core::domain::{Channel, InquiryId, Language};
/// The kinds of alert are decided by the rules, in the core.
pub use slawatch_core::tracker::AlertKind;

/// One alert about one inquiry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub inquiry_id: InquiryId,
    pub channel: Channel,
    pub language: Language,
    pub customer: String,
    pub subject: String,
    pub received_at: DateTime<Utc>,
    pub deadline_at: DateTime<Utc>,
    /// The instant the alert is about (the warn instant, the deadline, or when it was answered).
    pub due_at: DateTime<Utc>,
    /// Link to the inquiry on the status page / API.
    pub link: String,
    /// The person this copy of the alert is for, when an on-call rotation routes it; `None`
    /// sends it to the notifier's fixed destination (`notify.smtp.to`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<std::sync::Arc<oncall::Recipient>>,
}

impl Alert {
    /// One line a person reads on a lock screen: `[SLA 5 min left] email/ar — x@y: subject`.
    pub fn headline(&self) -> String {
        let status = match self.kind {
            AlertKind::Warning => {
                let left = (self.deadline_at - self.due_at).num_minutes().max(0);
                format!("SLA {left} min left")
            }
            AlertKind::Breach => "SLA breached".to_string(),
            AlertKind::Renotify => {
                let over = (self.due_at - self.deadline_at).num_minutes().max(0);
                format!("SLA breached {over} min ago")
            }
            AlertKind::Resolved => {
                let took = (self.due_at - self.received_at).num_minutes().max(0);
                format!("SLA answered after {took} min")
            }
        };
        format!(
            "[{status}] {}/{} — {}: {}",
            self.channel, self.language, self.customer, self.subject
        )
    }
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
#[error("{notifier}: {message}")]
pub struct DeliveryError {
    pub notifier: String,
    pub message: String,
}

/// What a delivery returns: one result per alert of the batch.
pub type Delivery<'a> = Pin<Box<dyn Future<Output = Vec<Result<(), DeliveryError>>> + Send + 'a>>;

/// A delivery channel.
pub trait Notifier: Send + Sync + 'static {
    /// Short name, the `notifier` metric label.
    fn name(&self) -> &str;
    /// Delivers a batch of alerts that fell due together; returns one result per alert.
    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a>;
    /// Delivers alerts held for a time-window digest: as one digest per recipient whatever their
    /// number (a notifier without digests delivers them as usual).
    fn deliver_digest<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        self.deliver(alerts)
    }
    /// True if the notifier counts `alerts_total` itself (per inner notifier), so the caller
    /// must not count again.
    fn records_own_metrics(&self) -> bool {
        false
    }
    /// How long the caller waits for `deliver` (a notifier that retries needs longer).
    fn budget(&self) -> std::time::Duration {
        crate::engine::ALERT_DELIVERY_TIMEOUT
    }
    /// At start-up: the alerts delivered before the restart whose inquiries are still open. A
    /// notifier that keeps alerts alive on the other side (Alertmanager) resumes doing so;
    /// nothing is sent again by the others.
    fn still_firing(&self, _alerts: &[Alert]) {}
}

/// Above this many alerts in one batch the log notifier writes a digest line instead.
pub const DIGEST_THRESHOLD: usize = 10;

/// Writes alerts as structured log lines (`target = "slawatch::alert"`).
#[derive(Debug, Default)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn name(&self) -> &str {
        "log"
    }

    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        Box::pin(async move {
            if alerts.len() > DIGEST_THRESHOLD {
                let ids: Vec<&str> = alerts.iter().map(|a| a.inquiry_id.as_str()).collect();
                tracing::warn!(target: "slawatch::alert", count = alerts.len(), inquiries = ?ids, "SLA alert digest: {} alerts fell due together.", alerts.len());
            } else {
                for a in alerts {
                    tracing::warn!(
                        target: "slawatch::alert",
                        kind = a.kind.as_str(),
                        inquiry = %a.inquiry_id,
                        channel = %a.channel,
                        language = %a.language,
                        received_at = %a.received_at.to_rfc3339(),
                        deadline_at = %a.deadline_at.to_rfc3339(),
                        link = %a.link,
                        recipient = a.recipient.as_ref().map(|r| r.person.as_str()),
                        "{}",
                        a.headline()
                    );
                }
            }
            alerts.iter().map(|_| Ok(())).collect()
        })
    }
}
