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
pub mod escalate;
pub mod lease_gate;
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
pub use slawatch_core::tracker::event::MonitorProblem;

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
    /// Link to the inquiry's page (`/inquiries/{id}`; the status page for the monitor's own).
    pub link: String,
    /// Signed links to the inquiry's page and its actions ("I'm on it", "answered elsewhere")
    /// for this copy's recipient, and for a shared channel; `None` without `http.link_key`
    /// (and for the monitor's own alerts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions: Option<std::sync::Arc<AlertLinks>>,
    /// The person this copy of the alert is for, when an on-call rotation routes it; `None`
    /// sends it to the notifier's fixed destination (`notify.smtp.to`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<std::sync::Arc<oncall::Recipient>>,
    /// Set on an alert about the monitor itself (a source silent, the ledger not writable, a
    /// notifier failing): then `inquiry_id` is the monitor alert's own id (`monitor-…`, never an
    /// inquiry's), `kind` is `breach` while the problem lasts and `resolved` when it is over,
    /// and the inquiry fields describe the problem (`subject` its detail, `received_at` when
    /// it began).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<std::sync::Arc<MonitorNotice>>,
}

/// The signed links an alert carries (see `http::links`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertLinks {
    /// For the person this copy is addressed to (the same as `shared` when it has none).
    pub mine: ActionUrls,
    /// For a shared channel (a chat webhook): the form asks who is acting.
    pub shared: ActionUrls,
}

/// The three links of one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionUrls {
    /// The inquiry's page, with the action buttons.
    pub page: String,
    /// "I'm on it".
    pub take: String,
    /// "Answered elsewhere".
    pub answered: String,
}

/// What an alert about the monitor itself is about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorNotice {
    pub problem: MonitorProblem,
    /// The source or notifier concerned (`ledger` for the ledger).
    pub subject: String,
    pub detail: String,
}

impl MonitorNotice {
    /// What is blind, in a few words: `source mail`, `the ledger`, `notifier smtp`.
    pub fn what(&self) -> String {
        match self.problem {
            MonitorProblem::SourceSilent => format!("source {} silent", self.subject),
            MonitorProblem::LedgerNotWritable => "ledger not writable".to_string(),
            MonitorProblem::NotifierFailing => format!("notifier {} failing", self.subject),
        }
    }

    /// What the person paged should do first.
    pub fn advice(&self) -> &'static str {
        match self.problem {
            MonitorProblem::SourceSilent => {
                "Inquiries arriving through this source are not seen, so they cannot be alerted \
                 either. Check the server, the credentials and the daemon's log."
            }
            MonitorProblem::LedgerNotWritable => {
                "Alerts still go out, but nothing is recorded until the ledger takes writes \
                 again, and sources are paused. Check the disk (space, read-only remount) and \
                 the daemon's log."
            }
            MonitorProblem::NotifierFailing => {
                "Alerts through this notifier are not arriving; the other notifiers and the \
                 fallback still deliver. Check its server and credentials."
            }
        }
    }
}

impl Alert {
    /// The alert about the monitor alert `alert` (raised, or with `kind` = `resolved`,
    /// resolved at `due_at`); `link` points at the status page.
    pub fn about_monitor(
        alert: &slawatch_core::tracker::alert::MonitorAlert,
        kind: AlertKind,
        due_at: DateTime<Utc>,
        link: String,
    ) -> Alert {
        Alert {
            kind,
            inquiry_id: InquiryId(alert.id.as_str().into()),
            channel: Channel::Email,
            language: Language::En,
            customer: "slawatch".to_string(),
            subject: alert.detail.clone(),
            received_at: alert.raised_at,
            deadline_at: alert.raised_at,
            due_at,
            link,
            actions: None,
            recipient: None,
            monitor: Some(std::sync::Arc::new(MonitorNotice {
                problem: alert.problem,
                subject: alert.subject.clone(),
                detail: alert.detail.clone(),
            })),
        }
    }

    /// One line a person reads on a lock screen: `[SLA 5 min left] email/ar — x@y: subject`,
    /// or for the monitor's own alerts `[MONITOR BLIND] source mail silent: …`.
    pub fn headline(&self) -> String {
        if let Some(m) = &self.monitor {
            return match self.kind {
                AlertKind::Resolved => {
                    let took = (self.due_at - self.received_at).num_minutes().max(0);
                    format!("[MONITOR OK] {} — over after {took} min", m.what())
                }
                _ => format!("[MONITOR BLIND] {}: {}", m.what(), m.detail),
            };
        }
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

/// The text of one alert about the monitor itself (mail body, chat text): what is blind since
/// when, what was seen, and what to do.
pub fn monitor_text(a: &Alert, m: &MonitorNotice, tz: chrono_tz::Tz) -> String {
    use std::fmt::Write as _;
    let when = |t: DateTime<Utc>| {
        format!(
            "{} UTC ({})",
            t.format("%Y-%m-%d %H:%M:%S"),
            t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z")
        )
    };
    let mut b = String::new();
    match a.kind {
        AlertKind::Resolved => {
            let _ = writeln!(
                b,
                "Resolved: {} is over. slawatch sees and tells again.\n",
                m.what()
            );
            let _ = writeln!(b, "Began:     {}", when(a.received_at));
            let _ = writeln!(b, "Ended:     {}", when(a.due_at));
        }
        _ => {
            let _ = writeln!(
                b,
                "slawatch cannot fully watch the desk: {}.\n\n{}\n",
                m.what(),
                m.advice()
            );
            let _ = writeln!(b, "Since:     {}", when(a.received_at));
            let _ = writeln!(b, "Seen:      {}", m.detail);
        }
    }
    let _ = writeln!(b, "Alert:     {}", a.inquiry_id);
    let _ = writeln!(b, "\nStatus:    {}", a.link);
    let _ = writeln!(
        b,
        "\n-- \nslawatch: automatic alert about the monitor itself (Auto-Submitted). Replies to \
         this mail are not read."
    );
    b
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
    /// Whether a delivery can reach a person at all (the log notifier cannot): alerts left
    /// undelivered are sent again at start-up only through a notifier that can.
    fn reaches_anyone(&self) -> bool {
        true
    }
    /// Whether this channel may send at all now: false on a replica that no longer holds the
    /// leader lease (see `lease_gate`), where retrying a refused alert is pointless.
    fn may_send(&self) -> bool {
        true
    }
    /// At start-up: the alerts delivered before the restart whose inquiries are still open. A
    /// notifier that keeps alerts alive on the other side (Alertmanager) resumes doing so;
    /// nothing is sent again by the others.
    fn still_firing(&self, _alerts: &[Alert]) {}
}

/// Above this many alerts in one batch the log notifier writes a digest line instead.
pub const DIGEST_THRESHOLD: usize = 10;

/// Writes alerts as structured log lines (`target = "slawatch::alert"`): what is left when
/// `[notify]` names no notifier. A log line reaches nobody, so every alert it writes is a
/// failed delivery (`AlertFailed`, `alerts_total{notifier="log",result="failed"}`), and
/// `check-config` says loudly that nobody will be paged.
#[derive(Debug, Default)]
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn name(&self) -> &str {
        "log"
    }

    fn reaches_anyone(&self) -> bool {
        false
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
            // Written to a log is delivered to nobody: never recorded as delivered.
            alerts
                .iter()
                .map(|_| {
                    Err(DeliveryError {
                        notifier: "log".into(),
                        message: LOGGED_ONLY.into(),
                    })
                })
                .collect()
        })
    }
}

/// The result of every alert the log notifier writes: no person received it.
pub const LOGGED_ONLY: &str =
    "logged only: no notifier is configured under [notify] (primary), so nobody was paged";
