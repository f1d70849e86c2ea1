//! The report's fold: the ledger's events, in seq order, into one compact record per inquiry
//! received in the report's period, plus the policy and monitor events the report shows.
//!
//! It owns no SLA rule. Whether an inquiry met or missed its promise is what the tracker
//! decided and wrote to the ledger (`InquiryBreached`, `InquiryResponded.outcome`); this fold
//! records those decisions field for field as [`Tracker::apply`](slawatch_core::tracker::Tracker::apply)
//! does (a unit test holds the two to the same figures), but only for the inquiries a report
//! counts and in far less memory, so a year of a busy desk (a million inquiries) fits in a few
//! hundred megabytes:
//!
//! - inquiries received outside the period are never stored (events about them are skipped);
//! - the tracker's matching indexes (threads, digests, senders) are not needed: every event the
//!   report reads names its inquiry;
//! - texts that repeat (sources, customers, responders, policy versions, exclusion evidence)
//!   are stored once ([`Interner`]); per-inquiry texts are boxed strings;
//! - the subject is evidence for breaches and exclusions only: it is released when an inquiry
//!   is answered in time, which neither is;
//! - the alert log (raised alerts, their deliveries and failures) exists only for inquiries
//!   that had an alert.
//!
//! The fold is pure: the I/O shell in the parent module feeds it decoded events.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use slawatch_core::domain::{Channel, InquiryId, Language};
use slawatch_core::tracker::event::{
    Event, ExclusionReason, InquiryKind, Outcome, ResponseKind, RevisionReason,
};
use slawatch_core::tracker::observation::AckVia;
use slawatch_core::tracker::policy::PolicyRecord;
use slawatch_core::tracker::{InquiryState, SlaStatus};

use crate::notify::AlertKind;

/// Texts stored once and referred to by number.
#[derive(Debug, Default)]
pub struct Interner {
    index: HashMap<Arc<str>, u32>,
    texts: Vec<Arc<str>>,
}

impl Interner {
    /// The number of `text`, storing it the first time.
    pub fn intern(&mut self, text: &str) -> u32 {
        if let Some(n) = self.index.get(text) {
            return *n;
        }
        let n = u32::try_from(self.texts.len()).expect("fewer than 4 billion distinct texts");
        let shared: Arc<str> = Arc::from(text);
        self.texts.push(shared.clone());
        self.index.insert(shared, n);
        n
    }

    pub fn get(&self, n: u32) -> &str {
        &self.texts[n as usize]
    }
}

/// Texts of one inquiry each (Message-IDs, call ids), end to end in one buffer: a million of
/// them cost their bytes, not a million allocations.
#[derive(Debug, Default)]
pub struct TextArena {
    text: String,
}

/// Where a text is in its [`TextArena`]: 40 bits of offset, 24 of length, plus one so that
/// `Option<TextRef>` is 8 bytes too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRef(std::num::NonZeroU64);

impl TextArena {
    /// Longest text kept whole (16 MiB); a longer one (no real identifier is) is cut at a
    /// character boundary.
    const MAX_LEN: usize = (1 << 24) - 1;

    pub fn push(&mut self, text: &str) -> TextRef {
        let mut len = text.len().min(Self::MAX_LEN);
        while !text.is_char_boundary(len) {
            len -= 1;
        }
        let start = self.text.len() as u64;
        self.text.push_str(&text[..len]);
        let packed = (start << 24 | len as u64) + 1;
        TextRef(std::num::NonZeroU64::new(packed).expect("never zero: one is added"))
    }

    pub fn get(&self, at: TextRef) -> &str {
        let packed = at.0.get() - 1;
        let (start, len) = ((packed >> 24) as usize, (packed & 0xff_ffff) as usize);
        &self.text[start..start + len]
    }
}

/// One delivery attempt of an alert, as the ledger recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// `true` for `AlertDelivered`, `false` for `AlertFailed`.
    pub delivered: bool,
    /// The notifiers that accepted it (deliveries only).
    pub notifiers: Vec<String>,
    pub recipients: Vec<String>,
    /// Why it failed (failures only).
    pub error: Option<String>,
}

/// One alert about an inquiry: raised by an `InquiryWarned`/`InquiryBreached`/
/// `InquiryRenotified` event (or, for `resolved` notices, only delivered), with its attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertLog {
    pub kind: AlertKind,
    /// The instant the alert is about (its `due_at`).
    pub due_at: DateTime<Utc>,
    /// Whether the ledger holds the event that raised it (counted in the `alerts` column).
    pub raised: bool,
    pub attempts: Vec<Attempt>,
}

/// What few inquiries have: the alert log and an acknowledgement's note.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evidence {
    pub alerts: Vec<AlertLog>,
    pub ack_note: Option<String>,
    /// Who said "I'm on it" and when (`InquiryTaken`), oldest first.
    pub takes: Vec<TakeLog>,
    /// Changes of its outcome by evidence read late (`InquiryRevised`), oldest first.
    pub revisions: Vec<RevisionLog>,
}

/// One `InquiryTaken`: who took the inquiry, when, until when and through what.
#[derive(Debug, Clone, PartialEq)]
pub struct TakeLog {
    pub by: String,
    pub at: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub how: String,
}

/// One `InquiryRevised`: when, why, from and to which outcome, and the evidence behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionLog {
    pub at: DateTime<Utc>,
    pub reason: RevisionReason,
    pub from: Outcome,
    pub to: Outcome,
    pub evidence: Option<String>,
}

/// One inquiry (or excluded message) received in the period, as its events left it.
/// Numbered texts are in the fold's [`Interner`].
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: InquiryId,
    pub channel: Channel,
    pub language: Language,
    pub kind: Option<InquiryKind>,
    pub state: InquiryState,
    pub sla: SlaStatus,
    pub response_kind: Option<ResponseKind>,
    pub excluded_reason: Option<ExclusionReason>,
    pub ack_via: Option<AckVia>,
    pub source: u32,
    pub customer: u32,
    pub policy: Option<u32>,
    pub responder: Option<u32>,
    pub excluded_detail: Option<u32>,
    pub received_at: DateTime<Utc>,
    pub first_seen_at: DateTime<Utc>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub responded_at: Option<DateTime<Utc>>,
    pub breached_at: Option<DateTime<Utc>>,
    pub response_seconds: Option<i64>,
    /// Message-ID or call id of the message or call that opened it (in the fold's ids).
    pub external_id: TextRef,
    /// Message-ID or call id of the response (in the fold's ids).
    pub response_id: Option<TextRef>,
    /// Kept while it can still be shown (see the module documentation).
    pub subject: Option<Box<str>>,
    /// Alerts raised (warnings, breach, re-notifications).
    pub alerts: u32,
    pub follow_ups: u32,
    pub evidence: Option<Box<Evidence>>,
}

impl Record {
    fn evidence(&mut self) -> &mut Evidence {
        self.evidence.get_or_insert_with(Default::default)
    }

    /// The revisions of its outcome, oldest first.
    pub fn revisions(&self) -> &[RevisionLog] {
        self.evidence.as_deref().map_or(&[], |e| &e.revisions)
    }

    /// Who took it ("I'm on it"), oldest first.
    pub fn takes(&self) -> &[TakeLog] {
        self.evidence.as_deref().map_or(&[], |e| &e.takes)
    }

    /// The alert log entries, oldest first (empty without alerts).
    pub fn alert_log(&self) -> &[AlertLog] {
        self.evidence.as_deref().map_or(&[], |e| &e.alerts)
    }

    fn raise(&mut self, kind: AlertKind, at: DateTime<Utc>) {
        self.alerts += 1;
        self.evidence().alerts.push(AlertLog {
            kind,
            due_at: at,
            raised: true,
            attempts: Vec::new(),
        });
    }

    /// Files an attempt under the alert it is about; a notice nothing raised (`resolved`) gets
    /// an entry of its own.
    fn attempt(&mut self, kind: AlertKind, due_at: DateTime<Utc>, attempt: Attempt) {
        let log = &mut self.evidence().alerts;
        let n = match log
            .iter()
            .position(|a| a.kind == kind && a.due_at == due_at)
        {
            Some(n) => n,
            None => {
                log.push(AlertLog {
                    kind,
                    due_at,
                    raised: false,
                    attempts: Vec::new(),
                });
                log.len() - 1
            }
        };
        log[n].attempts.push(attempt);
    }
}

/// A finished fold: what the report is derived from.
#[derive(Debug)]
pub struct FoldedPeriod {
    pub records: Vec<Record>,
    pub strings: Interner,
    pub ids: TextArena,
    pub policies: Vec<(DateTime<Utc>, PolicyRecord)>,
}

/// The ledger folded for one period `[from, to)`.
#[derive(Debug)]
pub struct PeriodFold {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    pub records: Vec<Record>,
    pub strings: Interner,
    /// Message-IDs and call ids.
    pub ids: TextArena,
    /// Every `PolicyActivated`, in ledger order.
    pub policies: Vec<(DateTime<Utc>, PolicyRecord)>,
    /// The monitor's own events (start, heartbeat, stop, source down/up), in ledger order.
    pub monitor: Vec<Event>,
    /// Evidence flagged as contradicting other evidence (`EvidenceContradicted`) in the period.
    pub contradictions: Vec<Event>,
    /// Record number by a 64-bit hash of the id (8 bytes a key instead of a 24-byte id) …
    by_hash: HashMap<u64, u32>,
    /// … and, for the rare id whose hash another id already has, by the id itself.
    by_id: HashMap<InquiryId, u32>,
}

fn id_hash(id: &InquiryId) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    id.as_str().hash(&mut h);
    h.finish()
}

impl PeriodFold {
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> PeriodFold {
        PeriodFold {
            from,
            to,
            records: Vec::new(),
            strings: Interner::default(),
            ids: TextArena::default(),
            policies: Vec::new(),
            monitor: Vec::new(),
            contradictions: Vec::new(),
            by_hash: HashMap::new(),
            by_id: HashMap::new(),
        }
    }

    fn in_period(&self, at: DateTime<Utc>) -> bool {
        at >= self.from && at < self.to
    }

    fn find(&self, id: &InquiryId) -> Option<usize> {
        let n = *self.by_hash.get(&id_hash(id))? as usize;
        if self.records[n].id == *id {
            Some(n)
        } else {
            self.by_id.get(id).map(|n| *n as usize)
        }
    }

    fn record_mut(&mut self, id: &InquiryId) -> Option<&mut Record> {
        let n = self.find(id)?;
        Some(&mut self.records[n])
    }

    /// Stores `record`, replacing an earlier one with the same id (as the tracker does when an
    /// id is opened again).
    fn put(&mut self, record: Record) {
        if let Some(n) = self.find(&record.id) {
            self.records[n] = record;
            return;
        }
        let n = u32::try_from(self.records.len()).expect("fewer than 4 billion inquiries");
        match self.by_hash.entry(id_hash(&record.id)) {
            Entry::Vacant(slot) => {
                slot.insert(n);
            }
            Entry::Occupied(_) => {
                self.by_id.insert(record.id.clone(), n);
            }
        }
        self.records.push(record);
    }

    /// An id opened again outside the period no longer belongs to it.
    fn forget(&mut self, id: &InquiryId) {
        if let Some(n) = self.find(id) {
            // Keep numbering stable: the record stays, marked as received outside the period.
            self.records[n].received_at = self.to;
        }
    }

    /// Folds one event.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::PolicyActivated { at, policy } => self.policies.push((*at, policy.clone())),
            Event::InquiryOpened(e) => {
                if !self.in_period(e.received_at) {
                    self.forget(&e.inquiry_id);
                    return;
                }
                let record = Record {
                    id: e.inquiry_id.clone(),
                    channel: e.channel,
                    language: e.language,
                    kind: Some(e.kind),
                    state: InquiryState::Open,
                    sla: SlaStatus::Pending,
                    response_kind: None,
                    excluded_reason: None,
                    ack_via: None,
                    source: self.strings.intern(&e.source),
                    customer: self.strings.intern(&e.customer),
                    policy: Some(self.strings.intern(&e.policy)),
                    responder: None,
                    excluded_detail: None,
                    received_at: e.received_at,
                    first_seen_at: e.first_seen_at,
                    deadline_at: Some(e.deadline_at),
                    responded_at: None,
                    breached_at: None,
                    response_seconds: None,
                    external_id: self.ids.push(&e.external_id),
                    response_id: None,
                    subject: Some(e.subject.as_str().into()),
                    alerts: 0,
                    follow_ups: 0,
                    evidence: None,
                };
                self.put(record);
            }
            Event::InquiryExcluded(e) => {
                if !self.in_period(e.received_at) {
                    self.forget(&e.inquiry_id);
                    return;
                }
                let record = Record {
                    id: e.inquiry_id.clone(),
                    channel: e.channel,
                    language: e.language,
                    kind: None,
                    state: InquiryState::Excluded,
                    sla: SlaStatus::Excluded,
                    response_kind: None,
                    excluded_reason: Some(e.reason),
                    ack_via: None,
                    source: self.strings.intern(&e.source),
                    customer: self.strings.intern(&e.customer),
                    policy: None,
                    responder: None,
                    excluded_detail: Some(self.strings.intern(&e.detail)),
                    received_at: e.received_at,
                    first_seen_at: e.first_seen_at,
                    deadline_at: None,
                    responded_at: None,
                    breached_at: None,
                    response_seconds: None,
                    external_id: self.ids.push(&e.external_id),
                    response_id: None,
                    subject: Some(e.subject.as_str().into()),
                    alerts: 0,
                    follow_ups: 0,
                    evidence: None,
                };
                self.put(record);
            }
            Event::FollowUpAttached { inquiry_id, .. } => {
                if let Some(r) = self.record_mut(inquiry_id) {
                    r.follow_ups += 1;
                }
            }
            Event::InquiryResponded(e) => {
                let Some(n) = self.find(&e.inquiry_id) else {
                    return;
                };
                let responder = self.strings.intern(&e.responder);
                let response_id = e.external_id.as_deref().map(|id| self.ids.push(id));
                let r = &mut self.records[n];
                r.state = InquiryState::Responded;
                r.responded_at = Some(e.at);
                r.response_seconds = Some(e.response_seconds);
                r.response_kind = Some(e.kind);
                r.responder = Some(responder);
                r.sla = match e.outcome {
                    Outcome::Met => SlaStatus::Met,
                    Outcome::Missed => SlaStatus::Missed,
                };
                if e.external_id.is_some() || e.via.is_some() || e.note.is_some() {
                    r.response_id = response_id;
                    r.ack_via = e.via;
                    match &e.note {
                        Some(note) => r.evidence().ack_note = Some(note.clone()),
                        None => {
                            if let Some(evidence) = r.evidence.as_deref_mut() {
                                evidence.ack_note = None;
                            }
                        }
                    }
                }
                if r.sla == SlaStatus::Met {
                    r.subject = None;
                }
            }
            Event::InquiryRevised {
                inquiry_id,
                at,
                reason,
                from,
                to,
                evidence,
                response,
            } => {
                let Some(n) = self.find(inquiry_id) else {
                    return;
                };
                if let Some(revised) = response {
                    let responder = self.strings.intern(&revised.responder);
                    let r = &mut self.records[n];
                    r.responded_at = Some(revised.at);
                    r.response_seconds = Some(revised.response_seconds);
                    r.response_kind = Some(revised.kind);
                    r.responder = Some(responder);
                }
                let r = &mut self.records[n];
                r.sla = match to {
                    Outcome::Met => SlaStatus::Met,
                    Outcome::Missed => SlaStatus::Missed,
                };
                r.evidence().revisions.push(RevisionLog {
                    at: *at,
                    reason: *reason,
                    from: *from,
                    to: *to,
                    evidence: evidence.clone(),
                });
            }
            Event::InquiryMerged { inquiry_id, .. } => {
                if let Some(r) = self.record_mut(inquiry_id) {
                    r.state = InquiryState::Merged;
                }
            }
            Event::InquiryReclassified {
                inquiry_id, kind, ..
            } => {
                if let Some(r) = self.record_mut(inquiry_id) {
                    r.kind = Some(*kind);
                }
            }
            Event::InquiryWarned { inquiry_id, at, .. } => {
                if let Some(r) = self.record_mut(inquiry_id) {
                    r.raise(AlertKind::Warning, *at);
                }
            }
            Event::InquiryBreached { inquiry_id, at } => {
                if let Some(r) = self.record_mut(inquiry_id) {
                    r.breached_at = Some(*at);
                    r.sla = SlaStatus::Missed;
                    r.raise(AlertKind::Breach, *at);
                }
            }
            Event::InquiryRenotified { inquiry_id, at, .. } => {
                if let Some(r) = self.record_mut(inquiry_id) {
                    r.raise(AlertKind::Renotify, *at);
                }
            }
            // Sent on to the escalation list: a breach alert about its own instant.
            Event::InquiryEscalated { inquiry_id, at, .. } => {
                if let Some(r) = self.record_mut(inquiry_id) {
                    r.raise(AlertKind::Breach, *at);
                }
            }
            Event::InquiryTaken {
                inquiry_id,
                by,
                at,
                until,
                how,
            } => {
                if let Some(r) = self.record_mut(inquiry_id) {
                    r.evidence().takes.push(TakeLog {
                        by: by.clone(),
                        at: *at,
                        until: *until,
                        how: how.clone(),
                    });
                }
            }
            Event::AlertDelivered {
                inquiry_id,
                kind,
                due_at,
                notifiers,
                recipients,
                at,
            } => {
                if let Some(r) = self.record_mut(inquiry_id) {
                    r.attempt(
                        *kind,
                        *due_at,
                        Attempt {
                            at: *at,
                            delivered: true,
                            notifiers: notifiers.clone(),
                            recipients: recipients.clone(),
                            error: None,
                        },
                    );
                }
            }
            Event::AlertFailed {
                inquiry_id,
                kind,
                due_at,
                recipients,
                error,
                at,
            } => {
                if let Some(r) = self.record_mut(inquiry_id) {
                    r.attempt(
                        *kind,
                        *due_at,
                        Attempt {
                            at: *at,
                            delivered: false,
                            notifiers: Vec::new(),
                            recipients: recipients.clone(),
                            error: Some(error.clone()),
                        },
                    );
                }
            }
            Event::MonitorStarted { .. }
            | Event::LeaderChanged { .. }
            | Event::MonitorStopped { .. }
            | Event::SourceDown { .. }
            | Event::SourceUp { .. }
            | Event::MonitorAlertRaised { .. }
            | Event::MonitorAlertResolved { .. }
            | Event::MonitorAlertEscalated { .. }
            | Event::MonitorAlertDelivered { .. }
            | Event::MonitorAlertFailed { .. }
            | Event::MonitorHeartbeat { .. } => self.monitor.push(event.clone()),
            Event::EvidenceContradicted { at, .. } => {
                if self.in_period(*at) {
                    self.contradictions.push(event.clone());
                }
            }
            Event::MessageLinked { .. }
            | Event::ReplyUnmatched { .. }
            | Event::ReplyAwaiting { .. }
            | Event::LedgerCheckpoint { .. }
            | Event::LedgerVerified { .. } => {}
        }
    }

    /// What the report needs once the ledger is folded: the records, their texts and the
    /// policies. The look-up indexes and the monitor events (already turned into gaps) go.
    pub fn into_parts(self) -> FoldedPeriod {
        FoldedPeriod {
            records: self.records,
            strings: self.strings,
            ids: self.ids,
            policies: self.policies,
        }
    }

    /// Record numbers of the period's inquiries, oldest first (by received instant, then id).
    /// An inquiry merged into an older clock is not counted on its own: its messages are in
    /// the inquiry it was merged into.
    pub fn population(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.records.len() as u32)
            .filter(|n| {
                let r = &self.records[*n as usize];
                self.in_period(r.received_at) && r.state != InquiryState::Merged
            })
            .collect();
        order.sort_unstable_by(|a, b| {
            let (a, b) = (&self.records[*a as usize], &self.records[*b as usize]);
            (a.received_at, &a.id).cmp(&(b.received_at, &b.id))
        });
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use slawatch_core::desk::DeskSettings;
    use slawatch_core::tracker::event::{InquiryExcluded, InquiryResponded, LanguageSource};
    use slawatch_core::tracker::policy::{Policy, PolicySet};
    use slawatch_core::tracker::{Tracker, TrackerRules};

    fn t(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    fn opened(id: &str, received: i64) -> Event {
        let mut opened =
            slawatch_core::testing::opened(0, Channel::Email, Language::Es, t(received));
        opened.inquiry_id = InquiryId::from_display(id);
        opened.source = "mail".into();
        opened.external_id = format!("<{id}@customer.example>");
        opened.thread_id = opened.external_id.clone();
        opened.digest = Some(format!("digest-{id}"));
        opened.customer = format!("{id}@customer.example");
        opened.subject = format!("subject {id}");
        opened.language_source = LanguageSource::Text;
        opened.first_seen_at = t(received) + Duration::seconds(3);
        opened.policy = "default@1".into();
        Event::InquiryOpened(opened)
    }

    fn responded(id: &str, at: i64, received: i64, outcome: Outcome) -> Event {
        Event::InquiryResponded(Box::new(InquiryResponded {
            inquiry_id: InquiryId::from_display(id),
            at: t(at),
            response_seconds: (at - received) * 60,
            kind: ResponseKind::Email,
            responder: "support@desk.example".into(),
            external_id: Some(format!("<reply-{id}@desk.example>")),
            outcome,
            via: None,
            note: None,
        }))
    }

    /// Every kind of event the report reads, about inquiries in and out of the period.
    fn ledger() -> Vec<Event> {
        let id = InquiryId::from_display;
        vec![
            opened("before", -30),
            responded("before", -20, -30, Outcome::Met),
            opened("met", 10),
            Event::FollowUpAttached {
                inquiry_id: id("met"),
                external_id: "<more@customer.example>".into(),
                digest: "digest-more".into(),
                received_at: t(12),
                first_seen_at: t(12),
                customer: "met@customer.example".into(),
                subject: "more".into(),
            },
            responded("met", 14, 10, Outcome::Met),
            opened("late", 20),
            Event::InquiryWarned {
                inquiry_id: id("late"),
                index: 0,
                at: t(30),
            },
            Event::AlertDelivered {
                inquiry_id: id("late"),
                kind: AlertKind::Warning,
                due_at: t(30),
                notifiers: vec!["smtp".into()],
                recipients: vec!["oncall@desk.example".into()],
                at: t(30),
            },
            Event::InquiryBreached {
                inquiry_id: id("late"),
                at: t(35),
            },
            Event::AlertFailed {
                inquiry_id: id("late"),
                kind: AlertKind::Breach,
                due_at: t(35),
                recipients: Vec::new(),
                error: "connection refused".into(),
                at: t(35),
            },
            Event::InquiryRenotified {
                inquiry_id: id("late"),
                n: 1,
                at: t(65),
            },
            responded("late", 70, 20, Outcome::Missed),
            opened("open", 40),
            Event::InquiryExcluded(Box::new(InquiryExcluded {
                inquiry_id: id("robot"),
                channel: Channel::Email,
                source: "mail".into(),
                external_id: "<robot@customer.example>".into(),
                thread_id: "<robot@customer.example>".into(),
                digest: None,
                customer: "robot@customer.example".into(),
                customer_name: None,
                subject: "Out of office".into(),
                language: Language::En,
                received_at: t(45),
                first_seen_at: t(45),
                reason: ExclusionReason::AutoSubmitted,
                detail: "Auto-Submitted: auto-replied".into(),
            })),
            opened("after", 24 * 60),
            Event::InquiryBreached {
                inquiry_id: id("unknown"),
                at: t(50),
            },
        ]
    }

    #[test]
    fn records_what_the_tracker_derives_for_the_period() {
        let (from, to) = (t(0), t(24 * 60));
        let rules = Arc::new(TrackerRules {
            desk: DeskSettings {
                support_addresses: vec!["support@desk.example".into()],
                internal_domains: vec!["desk.example".into()],
                ignore_senders: Vec::new(),
                ignore_subjects: Vec::new(),
                auto_ack_subjects: Vec::new(),
                default_language: Language::En,
                time_zone: chrono_tz::UTC,
            },
            policies: PolicySet::single(Policy::default()),
        });
        let mut tracker = Tracker::new(rules);
        let mut fold = PeriodFold::new(from, to);
        for e in ledger() {
            tracker.apply(&e);
            fold.apply(&e);
        }
        let mut expected: Vec<_> = tracker
            .newest_first()
            .filter(|i| i.received_at >= from && i.received_at < to)
            .collect();
        expected.reverse();
        let got: Vec<&Record> = fold
            .population()
            .into_iter()
            .map(|n| &fold.records[n as usize])
            .collect();
        assert_eq!(got.len(), expected.len());
        assert_eq!(got.len(), 4, "met, late, open, robot");
        let text = |n: u32| fold.strings.get(n).to_string();
        for (r, i) in got.iter().zip(&expected) {
            assert_eq!(r.id, i.id);
            assert_eq!((r.state, r.sla), (i.state, i.sla), "{}", i.id);
            assert_eq!(
                (r.received_at, r.first_seen_at, r.deadline_at),
                (i.received_at, i.first_seen_at, i.deadline_at)
            );
            assert_eq!(
                (r.responded_at, r.response_seconds, r.response_kind),
                (i.responded_at, i.response_seconds, i.response_kind)
            );
            assert_eq!(r.responder.map(text).as_deref(), i.responder.as_deref());
            assert_eq!(r.breached_at, i.breached_at);
            assert_eq!(r.alerts as usize, i.alerts.len(), "{}", i.id);
            assert_eq!(r.follow_ups, i.follow_ups);
            assert_eq!(r.policy.map(text).as_deref(), i.policy.as_deref());
            assert_eq!(r.kind, i.kind);
            assert_eq!(text(r.customer), &*i.customer);
            assert_eq!(text(r.source), &*i.source);
            assert_eq!(fold.ids.get(r.external_id), &*i.external_id);
            assert_eq!(r.excluded_reason, i.excluded_reason);
            assert_eq!(
                r.excluded_detail.map(text).as_deref(),
                i.excluded_detail.as_deref()
            );
        }
    }

    #[test]
    fn files_deliveries_and_failures_under_their_alert() {
        let mut fold = PeriodFold::new(t(0), t(24 * 60));
        for e in ledger() {
            fold.apply(&e);
        }
        let late = fold
            .records
            .iter()
            .find(|r| r.id.as_str() == "late")
            .expect("late");
        let log = late.alert_log();
        assert_eq!(
            log.iter().map(|a| a.kind).collect::<Vec<_>>(),
            [AlertKind::Warning, AlertKind::Breach, AlertKind::Renotify]
        );
        assert_eq!(log[0].attempts.len(), 1);
        assert!(log[0].attempts[0].delivered);
        assert_eq!(log[0].attempts[0].recipients, ["oncall@desk.example"]);
        assert!(!log[1].attempts[0].delivered);
        assert_eq!(
            log[1].attempts[0].error.as_deref(),
            Some("connection refused")
        );
        assert!(log[2].attempts.is_empty());
    }

    #[test]
    fn the_text_arena_gives_back_what_it_was_given() {
        let mut ids = TextArena::default();
        let texts = ["<a@b.example>", "", "llamada-٣٤٥", "<a@b.example>"];
        let refs: Vec<TextRef> = texts.iter().map(|t| ids.push(t)).collect();
        for (r, t) in refs.iter().zip(texts) {
            assert_eq!(ids.get(*r), t);
        }
        assert_eq!(std::mem::size_of::<Option<TextRef>>(), 8);
    }

    #[test]
    fn keeps_the_subject_only_where_a_report_shows_it() {
        let mut fold = PeriodFold::new(t(0), t(24 * 60));
        for e in ledger() {
            fold.apply(&e);
        }
        let subject = |id: &str| {
            fold.records
                .iter()
                .find(|r| r.id.as_str() == id)
                .and_then(|r| r.subject.as_deref().map(str::to_string))
        };
        assert_eq!(subject("met"), None, "answered in time: never shown");
        assert_eq!(subject("late").as_deref(), Some("subject late"));
        assert_eq!(subject("open").as_deref(), Some("subject open"));
        assert_eq!(subject("robot").as_deref(), Some("Out of office"));
    }
}
