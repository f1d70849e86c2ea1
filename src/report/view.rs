//! The report's per-inquiry lists (rows, breaches, exclusions) as views over the compact
//! records of the fold: each item is built when a renderer reads it, one at a time, so a
//! report over a million inquiries never holds a million rows of strings.

use std::fmt;
use std::sync::Arc;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::{Serialize, Serializer};
use slawatch_core::tracker::event::InquiryKind;
use slawatch_core::tracker::observation::AckVia;

use super::fold::{AlertLog, Interner, Record, RevisionLog, TakeLog, TextArena};
use super::{
    AlertDelivery, AlertFailure, AlertRow, Breach, Exclusion, InquiryRow, TakeRow, mask_customer,
};

/// The fold's records and texts, and how to show them.
#[derive(Debug)]
pub struct Table {
    pub(super) records: Vec<Record>,
    pub(super) strings: Interner,
    pub(super) ids: TextArena,
    pub(super) mask: bool,
    pub(super) time_zone: Tz,
}

impl Table {
    fn text(&self, n: u32) -> String {
        self.strings.get(n).to_string()
    }

    fn customer(&self, r: &Record) -> String {
        let customer = self.strings.get(r.customer);
        if self.mask {
            mask_customer(customer)
        } else {
            customer.to_string()
        }
    }

    /// The CSV/JSON row of record `n`.
    pub fn row(&self, n: u32) -> InquiryRow {
        let r = &self.records[n as usize];
        let local = r.received_at.with_timezone(&self.time_zone);
        InquiryRow {
            id: r.id.to_string(),
            channel: r.channel.as_str().into(),
            source: self.text(r.source),
            language: r.language.as_str().into(),
            kind: r.kind.map(|k| kind_str(k).into()),
            customer: self.customer(r),
            received_at: r.received_at,
            received_local: local.format_with_items(local_format().iter()).to_string(),
            first_seen_at: r.first_seen_at,
            detection_seconds: detection_seconds(r),
            deadline_at: r.deadline_at,
            policy: r.policy.map(|p| self.text(p)),
            state: r.state.as_str().into(),
            sla: sla_str(r).into(),
            responded_at: r.responded_at,
            response_seconds: r.response_seconds,
            response_kind: r.response_kind.map(|k| k.as_str().into()),
            responder: r.responder.map(|p| self.text(p)),
            response_id: r.response_id.map(|t| self.ids.get(t).to_string()),
            external_id: self.ids.get(r.external_id).to_string(),
            excluded_reason: r.excluded_reason.map(|x| x.as_str().into()),
            excluded_detail: r.excluded_detail.map(|d| self.text(d)),
            breached_at: r.breached_at,
            alerts: r.alerts,
            follow_ups: r.follow_ups,
            alert_deliveries: alert_summary(r.alert_log()),
            revisions: revision_summary(r.revisions()),
        }
    }

    /// The breach evidence of record `n`.
    pub fn breach(&self, n: u32) -> Breach {
        let r = &self.records[n as usize];
        Breach {
            id: r.id.to_string(),
            channel: r.channel.as_str().into(),
            language: r.language.as_str().into(),
            customer: self.customer(r),
            subject: r.subject.as_deref().unwrap_or_default().to_string(),
            received_at: r.received_at,
            deadline_at: r.deadline_at,
            breached_at: r.breached_at,
            responded: r.responded_at.is_some(),
            responded_at: r.responded_at,
            response_seconds: r.response_seconds,
            response_kind: r.response_kind.map(|k| k.as_str().into()),
            responder: r.responder.map(|p| self.text(p)),
            external_id: self.ids.get(r.external_id).to_string(),
            response_id: r.response_id.map(|t| self.ids.get(t).to_string()),
            ack_via: r.ack_via.map(|v| via_str(v).into()),
            ack_note: r.evidence.as_deref().and_then(|e| e.ack_note.clone()),
            alerts: r.alert_log().iter().map(alert_row).collect(),
            takes: r
                .takes()
                .iter()
                .map(|t| take_row(r.alert_log(), t))
                .collect(),
            policy: r.policy.map(|p| self.text(p)),
        }
    }

    /// The exclusion of record `n`.
    pub fn exclusion(&self, n: u32) -> Exclusion {
        let r = &self.records[n as usize];
        Exclusion {
            id: r.id.to_string(),
            channel: r.channel.as_str().into(),
            customer: self.customer(r),
            subject: r.subject.as_deref().unwrap_or_default().to_string(),
            received_at: r.received_at,
            reason: r
                .excluded_reason
                .map(|x| x.as_str())
                .unwrap_or("unknown")
                .into(),
            detail: r.excluded_detail.map(|d| self.text(d)).unwrap_or_default(),
            external_id: self.ids.get(r.external_id).to_string(),
        }
    }
}

/// Some of the table's records, in order, each shown as a `T` when read.
pub struct Listing<T> {
    table: Arc<Table>,
    order: Vec<u32>,
    view: fn(&Table, u32) -> T,
}

impl<T> Listing<T> {
    pub(super) fn new(table: Arc<Table>, order: Vec<u32>, view: fn(&Table, u32) -> T) -> Self {
        Listing { table, order, view }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The items, built one at a time.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = T> + '_ {
        self.order.iter().map(|n| (self.view)(&self.table, *n))
    }

    /// The `n`-th item.
    pub fn get(&self, n: usize) -> Option<T> {
        self.order.get(n).map(|r| (self.view)(&self.table, *r))
    }
}

impl<T> Clone for Listing<T> {
    fn clone(&self) -> Self {
        Listing {
            table: self.table.clone(),
            order: self.order.clone(),
            view: self.view,
        }
    }
}

impl<T: PartialEq> PartialEq for Listing<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<T> fmt::Debug for Listing<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Listing({} items)", self.order.len())
    }
}

impl<T: Serialize> Serialize for Listing<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

/// `received_local`'s format, parsed once (parsing it for every row of a year showed).
fn local_format() -> &'static [Item<'static>] {
    static ITEMS: std::sync::OnceLock<Vec<Item<'static>>> = std::sync::OnceLock::new();
    ITEMS.get_or_init(|| StrftimeItems::new("%Y-%m-%d %H:%M:%S %Z").collect())
}

pub(super) fn detection_seconds(r: &Record) -> i64 {
    (r.first_seen_at - r.received_at).num_seconds().max(0)
}

pub(super) fn sla_str(r: &Record) -> &'static str {
    r.sla.as_str()
}

/// As the ledger spells it (serde names).
fn kind_str(k: InquiryKind) -> &'static str {
    match k {
        InquiryKind::First => "first",
        InquiryKind::NextReply => "next_reply",
    }
}

fn via_str(v: AckVia) -> &'static str {
    match v {
        AckVia::Phone => "phone",
        AckVia::Email => "email",
        AckVia::Other => "other",
    }
}

fn alert_row(a: &AlertLog) -> AlertRow {
    AlertRow {
        stage: a.kind.as_str().into(),
        at: a.due_at,
        delivered: a
            .attempts
            .iter()
            .filter(|t| t.delivered)
            .map(|t| AlertDelivery {
                at: t.at,
                notifiers: t.notifiers.clone(),
                recipients: t.recipients.clone(),
            })
            .collect(),
        failed: a
            .attempts
            .iter()
            .filter(|t| !t.delivered)
            .map(|t| AlertFailure {
                at: t.at,
                recipients: t.recipients.clone(),
                error: t.error.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// A take with the alert it answered: the first delivered to the taker before it, else the
/// first delivered to anyone before it, else the first raised before it.
pub fn take_row(alerts: &[AlertLog], t: &TakeLog) -> TakeRow {
    let delivered = || {
        alerts
            .iter()
            .flat_map(|a| a.attempts.iter())
            .filter(|x| x.delivered && x.at <= t.at)
    };
    let to_taker = delivered()
        .filter(|x| x.recipients.contains(&t.by))
        .map(|x| x.at)
        .min();
    let raised = alerts
        .iter()
        .filter(|a| a.raised && a.due_at <= t.at)
        .map(|a| a.due_at)
        .min();
    let alerted_at = to_taker
        .or_else(|| delivered().map(|x| x.at).min())
        .or(raised);
    TakeRow {
        by: t.by.clone(),
        at: t.at,
        until: t.until,
        how: t.how.clone(),
        alerted_at,
        alert_to_take_seconds: alerted_at.map(|a| (t.at - a).num_seconds().max(0)),
    }
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Every delivery attempt of the inquiry's alerts in one line, oldest alert first:
/// `breach delivered 2026-03-01T10:15:02Z via smtp to oncall@desk.example; warning failed
/// 2026-03-01T10:10:01Z: connection refused`. `None` when no attempt was recorded.
/// Every revision of an inquiry's outcome in one line, oldest first, separated by `; `:
/// `{instant} {reason}: {from} -> {to} by {evidence}` (` by …` left out when unknown).
pub fn revision_summary(log: &[RevisionLog]) -> Option<String> {
    let parts: Vec<String> = log
        .iter()
        .map(|r| {
            let mut s = format!(
                "{} {}: {} -> {}",
                instant(r.at),
                r.reason.as_str(),
                r.from.as_str(),
                r.to.as_str()
            );
            if let Some(e) = &r.evidence {
                s.push_str(" by ");
                s.push_str(e);
            }
            s
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

pub fn alert_summary(log: &[AlertLog]) -> Option<String> {
    let mut parts = Vec::new();
    for a in log {
        for t in &a.attempts {
            let mut s = format!(
                "{} {} {}",
                a.kind.as_str(),
                if t.delivered { "delivered" } else { "failed" },
                instant(t.at)
            );
            if !t.notifiers.is_empty() {
                s.push_str(" via ");
                s.push_str(&t.notifiers.join("+"));
            }
            if !t.recipients.is_empty() {
                s.push_str(" to ");
                s.push_str(&t.recipients.join(", "));
            }
            if let Some(e) = &t.error {
                s.push_str(": ");
                s.push_str(e);
            }
            parts.push(s);
        }
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
