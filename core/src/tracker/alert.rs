//! Alerts as the rules decide them: the kinds of alert ([`AlertKind`]), the stages an inquiry
//! raises ([`AlertStage`]) and the mark each raised stage leaves on the inquiry ([`AlertMark`]).
//! Delivering them is the daemon's business; which alert is due, and whether it was raised, is
//! decided here from events alone.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::InquiryId;
use crate::tracker::event::Event;

/// Which alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    Warning,
    Breach,
    /// Still unanswered `renotify_every` after the last alert.
    Renotify,
    /// An alerted inquiry was answered or acknowledged: sent to whoever was alerted.
    Resolved,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Warning => "warning",
            AlertKind::Breach => "breach",
            AlertKind::Renotify => "renotify",
            AlertKind::Resolved => "resolved",
        }
    }
}

/// Which alert stage was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStage {
    Warning,
    Breach,
    /// A re-notification while breached (`index` = n).
    Renotify,
    /// The breach sent on to the escalation list after `escalate_after` (`index` = level).
    Escalation,
}

impl AlertStage {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStage::Warning => "warning",
            AlertStage::Breach => "breach",
            AlertStage::Renotify => "renotify",
            AlertStage::Escalation => "escalation",
        }
    }
}

/// A stage alert raised for an inquiry (delivery records come with the notifiers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertMark {
    pub stage: AlertStage,
    /// Which warn offset, for warnings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u8>,
    pub at: DateTime<Utc>,
    /// When a notifier's server first accepted it (`AlertDelivered`); `None` while pending.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The on-call people it reached so far (`AlertDelivered::recipients`): boxed, as most
    /// alerts go to fixed destinations and every open inquiry carries its marks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<Box<Vec<String>>>,
}

impl AlertMark {
    pub(super) fn raised(stage: AlertStage, index: Option<u8>, at: DateTime<Utc>) -> AlertMark {
        AlertMark {
            stage,
            index,
            at,
            delivered_at: None,
            delivered_to: None,
        }
    }

    /// The ledger event that raised this mark for inquiry `inquiry_id`.
    pub fn raised_by(&self, inquiry_id: &InquiryId) -> Event {
        let inquiry_id = inquiry_id.clone();
        match self.stage {
            AlertStage::Warning => Event::InquiryWarned {
                inquiry_id,
                index: self.index.unwrap_or(0),
                at: self.at,
            },
            AlertStage::Breach => Event::InquiryBreached {
                inquiry_id,
                at: self.at,
            },
            AlertStage::Renotify => Event::InquiryRenotified {
                inquiry_id,
                n: u32::from(self.index.unwrap_or(1)),
                at: self.at,
            },
            AlertStage::Escalation => Event::InquiryEscalated {
                inquiry_id,
                level: self.index.unwrap_or(1),
                at: self.at,
            },
        }
    }

    /// The on-call people it reached so far.
    pub fn reached(&self) -> &[String] {
        self.delivered_to.as_deref().map_or(&[], Vec::as_slice)
    }

    pub(super) fn add_reached(&mut self, person: &str) {
        let reached = self.delivered_to.get_or_insert_default();
        if !reached.iter().any(|r| r == person) {
            reached.push(person.to_string());
        }
    }
    /// Whether this mark is the one an alert of `kind` about `due_at` was raised for.
    /// An escalation is delivered as a breach alert about its own instant.
    pub fn is(&self, kind: AlertKind, due_at: DateTime<Utc>) -> bool {
        let stage = match kind {
            AlertKind::Warning => AlertStage::Warning,
            AlertKind::Breach if self.stage == AlertStage::Escalation => AlertStage::Escalation,
            AlertKind::Breach => AlertStage::Breach,
            AlertKind::Renotify => AlertStage::Renotify,
            AlertKind::Resolved => return false,
        };
        self.stage == stage && self.at == due_at
    }
}

/// A monitor alert raised and not resolved yet (see `Event::MonitorAlertRaised`): the
/// monitor's own blindness, kept apart from the inquiries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorAlert {
    /// `monitor-source-{name}`, `monitor-ledger`, `monitor-notifier-{name}`.
    pub id: String,
    pub problem: crate::tracker::event::MonitorProblem,
    pub subject: String,
    pub detail: String,
    pub raised_at: DateTime<Utc>,
    /// When a notifier's server first accepted it; `None` while pending.
    pub delivered_at: Option<DateTime<Utc>>,
    /// The on-call people it reached so far.
    pub reached: Vec<String>,
    /// When it went on to the escalation list by time (`MonitorAlertEscalated`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<DateTime<Utc>>,
}
