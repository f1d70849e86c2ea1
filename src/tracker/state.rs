//! Tracker state and the decide/apply pair.
//!
//! `decide` reads the state and returns events; `apply` is the only code that changes the
//! state. Everything the state holds is derived from events, so replaying the ledger rebuilds it
//! exactly. The maps below are the indexes the rules need: which thread a Message-ID belongs to,
//! which inquiry of a thread is open, which message bytes were already seen.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::DeskSettings;
use crate::domain::{Channel, InquiryId, Language};
use crate::tracker::classify::{OutboundKind, classify_inbound, classify_outbound};
use crate::tracker::event::{
    Event, ExclusionReason, InquiryExcluded, InquiryKind, InquiryOpened, InquiryResponded,
    LanguageSource, LinkRole, Outcome, ResponseKind, UnmatchedReason,
};
use crate::tracker::language::detect_language;
use crate::tracker::observation::{Mail, ManualAck, Observation, Stage};
use crate::tracker::policy::PolicySet;

/// What the rules are configured with.
#[derive(Debug, Clone)]
pub struct TrackerRules {
    pub desk: DeskSettings,
    pub policies: PolicySet,
}

/// Where an inquiry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InquiryState {
    Open,
    Responded,
    Excluded,
}

impl InquiryState {
    pub fn as_str(self) -> &'static str {
        match self {
            InquiryState::Open => "open",
            InquiryState::Responded => "responded",
            InquiryState::Excluded => "excluded",
        }
    }

    pub fn parse(s: &str) -> Option<InquiryState> {
        [
            InquiryState::Open,
            InquiryState::Responded,
            InquiryState::Excluded,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// Whether the promise was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlaStatus {
    Pending,
    Met,
    Missed,
}

/// How an open inquiry is doing, for the `open_inquiries{state}` gauge and the wallboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpenStatus {
    Ok,
    Warning,
    Breached,
}

impl OpenStatus {
    pub const ALL: [OpenStatus; 3] = [OpenStatus::Ok, OpenStatus::Warning, OpenStatus::Breached];

    pub fn as_str(self) -> &'static str {
        match self {
            OpenStatus::Ok => "ok",
            OpenStatus::Warning => "warning",
            OpenStatus::Breached => "breached",
        }
    }
}

/// Which alert stage was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStage {
    Warning,
    Breach,
    /// A re-notification while breached (`index` = n).
    Renotify,
}

impl AlertStage {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStage::Warning => "warning",
            AlertStage::Breach => "breach",
            AlertStage::Renotify => "renotify",
        }
    }
}

/// A stage alert raised for an inquiry (delivery records come with the notifiers).
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    fn raised(stage: AlertStage, index: Option<u8>, at: DateTime<Utc>) -> AlertMark {
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
        }
    }

    /// The on-call people it reached so far.
    pub fn reached(&self) -> &[String] {
        self.delivered_to.as_deref().map_or(&[], Vec::as_slice)
    }

    fn add_reached(&mut self, person: &str) {
        let reached = self.delivered_to.get_or_insert_default();
        if !reached.iter().any(|r| r == person) {
            reached.push(person.to_string());
        }
    }
    /// Whether this mark is the one an alert of `kind` about `due_at` was raised for.
    pub fn is(&self, kind: crate::notify::AlertKind, due_at: DateTime<Utc>) -> bool {
        let stage = match kind {
            crate::notify::AlertKind::Warning => AlertStage::Warning,
            crate::notify::AlertKind::Breach => AlertStage::Breach,
            crate::notify::AlertKind::Renotify => AlertStage::Renotify,
            crate::notify::AlertKind::Resolved => return false,
        };
        self.stage == stage && self.at == due_at
    }
}

/// A customer message attached to an open inquiry.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    pub external_id: String,
    pub digest: String,
    pub received_at: DateTime<Utc>,
    pub first_seen_at: DateTime<Utc>,
    pub customer: String,
    pub subject: String,
}

/// One inquiry as derived from its events: the JSON shape of the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inquiry {
    pub id: InquiryId,
    pub channel: Channel,
    pub source: String,
    /// Message-ID or call id; for the first message of a conversation the same shared text as
    /// `thread_id`.
    pub external_id: Arc<str>,
    pub thread_id: Arc<str>,
    pub customer: String,
    pub customer_name: Option<String>,
    pub subject: String,
    pub language: Language,
    pub received_at: DateTime<Utc>,
    pub first_seen_at: DateTime<Utc>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub warn_at: Vec<DateTime<Utc>>,
    pub responded_at: Option<DateTime<Utc>>,
    pub response_seconds: Option<i64>,
    pub response_kind: Option<ResponseKind>,
    pub responder: Option<String>,
    pub state: InquiryState,
    pub sla: SlaStatus,
    pub excluded_reason: Option<ExclusionReason>,
    pub excluded_detail: Option<String>,
    pub policy: Option<String>,
    pub kind: Option<InquiryKind>,
    pub follow_ups: u32,
    pub breached_at: Option<DateTime<Utc>>,
    pub alerts: Vec<AlertMark>,
    /// Phone only: the line, queue entry and withheld flag of the call that opened it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<Box<crate::tracker::event::CallDetails>>,
    /// The customer's `Reply-To` addresses (a reply may go there).
    #[serde(skip)]
    pub reply_to: Vec<String>,
    #[serde(skip)]
    pub language_source: Option<LanguageSource>,
    /// The follow-up messages, oldest first.
    #[serde(skip)]
    pub follow_up_messages: Vec<FollowUp>,
    /// The ledger seqs of the first and the last event about it, once committed: its history
    /// is read back from the ledger by this range ([`crate::store::Store::events_for_inquiry`]).
    #[serde(skip)]
    pub ledger_seqs: Option<(i64, i64)>,
}

impl Inquiry {
    /// The open inquiry's status, or `None` when it is not open.
    pub fn open_status(&self) -> Option<OpenStatus> {
        if self.state != InquiryState::Open {
            None
        } else if self.breached_at.is_some() {
            Some(OpenStatus::Breached)
        } else if self.alerts.iter().any(|a| a.stage == AlertStage::Warning) {
            Some(OpenStatus::Warning)
        } else {
            Some(OpenStatus::Ok)
        }
    }

    /// How the inquiry is doing at `now` (see [`OpenSummary::status_at`]); `None` if not open.
    pub fn open_status_at(&self, now: DateTime<Utc>) -> Option<OpenStatus> {
        let recorded = self.open_status()?;
        Some(status_at(
            recorded == OpenStatus::Breached,
            self.deadline_at?,
            recorded == OpenStatus::Warning,
            self.warn_at.iter().min().copied(),
            now,
        ))
    }

    fn warned(&self, index: u8) -> bool {
        self.alerts
            .iter()
            .any(|a| a.stage == AlertStage::Warning && a.index == Some(index))
    }

    /// Whether a message to these recipients reaches the customer.
    fn addressed_by(&self, recipients: &[String]) -> bool {
        recipients
            .iter()
            .any(|r| *r == self.customer || self.reply_to.contains(r))
    }
}

/// Why an observation was refused (only manual acks can be).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejected {
    #[error("no inquiry {0}")]
    UnknownInquiry(InquiryId),
    #[error("inquiry {0} is {1}, not open")]
    NotOpen(InquiryId, &'static str),
    #[error("the acknowledgement time {at} is before the inquiry was received ({received})")]
    AckBeforeReceipt {
        at: DateTime<Utc>,
        received: DateTime<Utc>,
    },
}

/// A desk reply whose thread was not known when it was read.
#[derive(Debug, Clone)]
struct PendingReply {
    external_id: String,
    at: DateTime<Utc>,
    responder: String,
    recipients: Vec<String>,
}

/// What metrics and wallboards need of an open inquiry, kept compact in the open-thread index so
/// that scanning 100,000 open inquiries touches a few megabytes, not every inquiry record.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenSummary {
    pub id: InquiryId,
    pub channel: Channel,
    pub language: Language,
    pub received_at: DateTime<Utc>,
    pub deadline_at: DateTime<Utc>,
    /// The earliest warn instant, if any.
    pub first_warn_at: Option<DateTime<Utc>>,
    pub warned: bool,
    pub breached: bool,
}

impl OpenSummary {
    /// The status at `now`: instants already passed count even before the scheduler fired them
    /// (during a first sync, deadlines are held; the gauge shows the truth meanwhile).
    pub fn status_at(&self, now: DateTime<Utc>) -> OpenStatus {
        status_at(
            self.breached,
            self.deadline_at,
            self.warned,
            self.first_warn_at,
            now,
        )
    }
}

/// Breached once the deadline has passed, warning once a warn instant has passed — whether or
/// not the scheduler has fired them yet — else ok.
fn status_at(
    breached: bool,
    deadline_at: DateTime<Utc>,
    warned: bool,
    first_warn_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> OpenStatus {
    if breached || deadline_at <= now {
        OpenStatus::Breached
    } else if warned || first_warn_at.is_some_and(|w| w <= now) {
        OpenStatus::Warning
    } else {
        OpenStatus::Ok
    }
}

/// A 64-bit key for a string (digests, message ids, senders) in the large dedupe indexes: 8 bytes
/// instead of a heap string per message. The chance of any collision among a million keys is
/// about 3 in 100 million.
pub(super) fn key64(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// The state of every inquiry and the indexes the rules need.
///
/// Sized for 100,000 open inquiries in well under 150 MB: inquiry records are boxed (a map
/// bucket holds a pointer, not 400 bytes), thread ids are shared, dedupe keys are 64-bit.
#[derive(Debug)]
pub struct Tracker {
    pub(super) rules: Arc<TrackerRules>,
    pub(super) inquiries: HashMap<InquiryId, Box<Inquiry>>,
    /// Inquiries by received time, newest last: the API's order and paging key.
    by_received: BTreeSet<(DateTime<Utc>, InquiryId)>,
    /// Every Message-ID (or call id) seen → its thread.
    pub(super) thread_of: HashMap<Arc<str>, Arc<str>>,
    /// Header digests of every message seen: a re-fetch of the same bytes is dropped.
    pub(super) seen_digests: HashSet<u64>,
    /// Thread → its open inquiry.
    pub(super) open_in_thread: HashMap<Arc<str>, OpenSummary>,
    /// Threads the desk has replied in: a later customer message is a next reply.
    replied_threads: HashSet<Arc<str>>,
    /// Replies read before the message they answer: referenced id → replies.
    pending_replies: HashMap<String, Vec<PendingReply>>,
    /// Policy versions already recorded in the ledger.
    pub(super) policies_seen: HashSet<String>,
    /// Message-ID → sender of the customer messages seen (both as [`key64`]): a second delivery
    /// of the same message (another alias, a redelivery: other `Received:` lines, so another
    /// digest) is the same inquiry, not a new one.
    sender_of: HashMap<u64, u64>,
    /// Thread ids, shared by the indexes above.
    threads: HashSet<Arc<str>>,
    /// Customer email ↔ phone numbers, for answers across channels (`contacts` module).
    pub(super) contacts: Arc<super::contacts::ContactMap>,
}

impl Tracker {
    pub fn new(rules: Arc<TrackerRules>) -> Tracker {
        Tracker {
            rules,
            inquiries: HashMap::new(),
            by_received: BTreeSet::new(),
            thread_of: HashMap::new(),
            seen_digests: HashSet::new(),
            open_in_thread: HashMap::new(),
            replied_threads: HashSet::new(),
            pending_replies: HashMap::new(),
            policies_seen: HashSet::new(),
            sender_of: HashMap::new(),
            threads: HashSet::new(),
            contacts: Arc::default(),
        }
    }

    pub fn rules(&self) -> &TrackerRules {
        &self.rules
    }

    pub fn get(&self, id: &InquiryId) -> Option<&Inquiry> {
        self.inquiries.get(id).map(|b| &**b)
    }

    pub fn len(&self) -> usize {
        self.inquiries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inquiries.is_empty()
    }

    /// Inquiries newest first.
    pub fn newest_first(&self) -> impl Iterator<Item = &Inquiry> {
        self.by_received
            .iter()
            .rev()
            .filter_map(|(_, id)| self.get(id))
    }

    /// Inquiries received strictly before `(at, id)`, newest first (cursor paging).
    pub fn newest_before(
        &self,
        at: DateTime<Utc>,
        id: &InquiryId,
    ) -> impl Iterator<Item = &Inquiry> {
        self.by_received
            .range(..(at, id.clone()))
            .rev()
            .filter_map(|(_, id)| self.get(id))
    }

    pub fn open(&self) -> impl Iterator<Item = &Inquiry> {
        self.open_in_thread.values().filter_map(|o| self.get(&o.id))
    }

    /// The open inquiries in compact form (cheap to scan: metrics, wallboard headlines).
    pub fn open_summaries(&self) -> impl Iterator<Item = &OpenSummary> {
        self.open_in_thread.values()
    }

    /// The events an observation causes at `now`. Nothing changes until they are applied.
    pub fn decide(
        &self,
        observation: &Observation,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, Rejected> {
        Ok(match observation {
            Observation::MessageReceived(mail) => self.decide_received(mail),
            Observation::MessageSent(mail) => {
                self.answer_calls_by_mail(mail, self.decide_sent(mail))
            }
            Observation::ManualAck(ack) => self.decide_ack(ack)?,
            Observation::DeadlineReached { inquiry_id, stage } => {
                self.decide_deadline(inquiry_id, *stage, now)
            }
            Observation::CallStarted(call) | Observation::CallEnded(call) => {
                self.decide_call(call, None)
            }
            Observation::CallAnswered(call) => {
                self.decide_call(call, Some(call.answered_at.unwrap_or(call.started_at)))
            }
        })
    }

    /// `decide` then `apply` each event; returns the events (tests and replay-free callers).
    pub fn observe(
        &mut self,
        observation: &Observation,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, Rejected> {
        let events = self.decide(observation, now)?;
        for e in &events {
            self.apply(e);
        }
        Ok(events)
    }

    // ---- inbound mail -------------------------------------------------------------------

    /// DESIGN.md "What is an inquiry" and "Threads".
    fn decide_received(&self, mail: &Mail) -> Vec<Event> {
        if self.seen_digests.contains(&key64(&mail.digest)) {
            return Vec::new();
        }
        let sender = mail.from.as_ref().map(|a| a.email.as_str()).unwrap_or("");
        if self
            .sender_of
            .get(&key64(&mail.message_id))
            .is_some_and(|s| *s == key64(sender))
        {
            // The same message delivered again (another alias, a redelivery).
            return Vec::new();
        }
        let external_id = self.external_id(mail);
        let thread_id = self.thread_for(mail).unwrap_or_else(|| external_id.clone());
        let customer = mail.from.clone().unwrap_or_default();
        let (language, language_source) = detect_language(
            mail.content_language.as_deref(),
            &mail.text_sample,
            self.rules.desk.default_language,
        );

        if let Some(exclusion) = classify_inbound(mail, &self.rules.desk) {
            return vec![Event::InquiryExcluded(Box::new(InquiryExcluded {
                inquiry_id: InquiryId::derive(Channel::Email, &external_id),
                channel: Channel::Email,
                source: mail.source.clone(),
                external_id,
                thread_id,
                digest: Some(mail.digest.clone()),
                customer: customer.email,
                customer_name: customer.name,
                subject: mail.subject.clone(),
                language,
                received_at: mail.delivered_at,
                first_seen_at: mail.seen_at,
                reason: exclusion.reason,
                detail: exclusion.detail,
            }))];
        }

        if let Some(open) = self.open_in_thread.get(thread_id.as_str()) {
            // A second customer message before any reply: the clock keeps running from the oldest.
            return vec![Event::FollowUpAttached {
                inquiry_id: open.id.clone(),
                external_id,
                digest: mail.digest.clone(),
                received_at: mail.delivered_at,
                first_seen_at: mail.seen_at,
                customer: customer.email,
                subject: mail.subject.clone(),
            }];
        }

        let kind = if self.replied_threads.contains(thread_id.as_str()) {
            InquiryKind::NextReply
        } else {
            InquiryKind::First
        };
        let policy =
            self.rules
                .policies
                .select(Channel::Email, language, &mail.source, &customer.email);
        if kind == InquiryKind::NextReply && !policy.next_reply {
            return vec![Event::MessageLinked {
                external_id,
                digest: mail.digest.clone(),
                thread_id,
                at: mail.delivered_at,
                role: LinkRole::CustomerMessage,
            }];
        }

        let mut events = Vec::new();
        let (version, deadline_at, warn_at) =
            self.stamp_policy(policy, mail.delivered_at, mail.seen_at, &mut events);
        let inquiry_id = InquiryId::derive(Channel::Email, &external_id);
        events.push(Event::InquiryOpened(Box::new(InquiryOpened {
            inquiry_id: inquiry_id.clone(),
            channel: Channel::Email,
            source: mail.source.clone(),
            external_id: external_id.clone(),
            thread_id,
            digest: Some(mail.digest.clone()),
            customer: customer.email,
            customer_name: customer.name,
            subject: mail.subject.clone(),
            language,
            language_source,
            received_at: mail.delivered_at,
            first_seen_at: mail.seen_at,
            date_header: mail.date_header,
            reply_to: mail.reply_to.iter().map(|a| a.email.clone()).collect(),
            deadline_at,
            warn_at,
            policy: version,
            kind,
            call: None,
        })));

        // A reply read earlier that references this very message, and goes to its sender,
        // answers it now.
        let reaches_customer = |r: &&PendingReply| {
            r.recipients
                .iter()
                .any(|to| *to == sender || mail.reply_to.iter().any(|a| a.email == *to))
        };
        if let Some(reply) = self
            .pending_replies
            .get(&mail.message_id)
            .and_then(|replies| {
                replies
                    .iter()
                    .filter(|r| r.at >= mail.delivered_at)
                    .filter(reaches_customer)
                    .min_by_key(|r| r.at)
            })
        {
            events.push(responded_by_email(
                &inquiry_id,
                mail.delivered_at,
                deadline_at,
                false,
                reply.at,
                &reply.responder,
                &reply.external_id,
            ));
        }
        events
    }

    // ---- the desk's mail ----------------------------------------------------------------

    /// DESIGN.md "What is a response".
    fn decide_sent(&self, mail: &Mail) -> Vec<Event> {
        if self.seen_digests.contains(&key64(&mail.digest)) {
            return Vec::new();
        }
        let external_id = self.external_id(mail);
        let responder = mail
            .from
            .as_ref()
            .map(|a| a.email.clone())
            .unwrap_or_default();
        let recipients: Vec<String> = mail
            .to
            .iter()
            .chain(&mail.cc)
            .map(|a| a.email.clone())
            .collect();
        let unmatched = |reason, references: Vec<String>| Event::ReplyUnmatched {
            external_id: external_id.clone(),
            digest: mail.digest.clone(),
            source: mail.source.clone(),
            at: mail.delivered_at,
            reason,
            responder: responder.clone(),
            references,
            recipients: recipients.clone(),
        };
        let linked = |thread_id: String, role| Event::MessageLinked {
            external_id: external_id.clone(),
            digest: mail.digest.clone(),
            thread_id,
            at: mail.delivered_at,
            role,
        };

        let thread = self.thread_for(mail);
        match classify_outbound(mail, &self.rules.desk) {
            OutboundKind::NotFromSupport => {
                vec![unmatched(UnmatchedReason::NotFromSupport, Vec::new())]
            }
            OutboundKind::AutoAcknowledgement => {
                vec![linked(
                    thread.unwrap_or_else(|| external_id.clone()),
                    LinkRole::AutoAcknowledgement,
                )]
            }
            OutboundKind::InternalForward => {
                vec![linked(
                    thread.unwrap_or_else(|| external_id.clone()),
                    LinkRole::InternalForward,
                )]
            }
            OutboundKind::Reply => {
                let references = referenced_ids(mail);
                if references.is_empty() {
                    return vec![unmatched(UnmatchedReason::NotThreaded, Vec::new())];
                }
                let Some(thread_id) = thread else {
                    return vec![unmatched(UnmatchedReason::UnknownThread, references)];
                };
                let open = self
                    .open_in_thread
                    .get(thread_id.as_str())
                    .and_then(|o| self.get(&o.id));
                // Only a message that goes to the customer is a response; one forwarded to a
                // third party (a supplier, a courier) keeps the thread but answers nothing.
                if let Some(inquiry) = open
                    && !inquiry.addressed_by(&recipients)
                {
                    return vec![linked(thread_id, LinkRole::Forward)];
                }
                let mut events = vec![linked(thread_id.clone(), LinkRole::Reply)];
                if let Some(inquiry) = open
                    && inquiry.received_at <= mail.delivered_at
                    && let Some(deadline_at) = inquiry.deadline_at
                {
                    events.push(responded_by_email(
                        &inquiry.id,
                        inquiry.received_at,
                        deadline_at,
                        inquiry.breached_at.is_some(),
                        mail.delivered_at,
                        &responder,
                        &external_id,
                    ));
                    events.extend(self.open_from_later_follow_ups(
                        inquiry,
                        mail.delivered_at,
                        InquiryKind::NextReply,
                    ));
                }
                events
            }
        }
    }

    // ---- manual acknowledgement and deadlines ----------------------------------------------

    fn decide_ack(&self, ack: &ManualAck) -> Result<Vec<Event>, Rejected> {
        let inquiry = self
            .inquiries
            .get(&ack.inquiry_id)
            .ok_or_else(|| Rejected::UnknownInquiry(ack.inquiry_id.clone()))?;
        if inquiry.state != InquiryState::Open {
            return Err(Rejected::NotOpen(
                inquiry.id.clone(),
                inquiry.state.as_str(),
            ));
        }
        if ack.at < inquiry.received_at {
            return Err(Rejected::AckBeforeReceipt {
                at: ack.at,
                received: inquiry.received_at,
            });
        }
        let in_time =
            inquiry.breached_at.is_none() && inquiry.deadline_at.is_some_and(|d| ack.at <= d);
        let mut events = vec![Event::InquiryResponded(Box::new(InquiryResponded {
            inquiry_id: inquiry.id.clone(),
            at: ack.at,
            response_seconds: (ack.at - inquiry.received_at).num_seconds().max(0),
            kind: ResponseKind::Manual,
            responder: ack.by.clone(),
            external_id: None,
            outcome: if in_time {
                Outcome::Met
            } else {
                Outcome::Missed
            },
            via: Some(ack.via),
            note: ack.note.clone(),
        }))];
        events.extend(self.open_from_later_follow_ups(inquiry, ack.at, InquiryKind::NextReply));
        Ok(events)
    }

    /// Customer messages (or calls) attached to `inquiry` that arrived after it was answered at
    /// `at` — read before the answer was — open a new inquiry from the oldest of them, the others
    /// attached to it. `kind` says what it is: a `NextReply` in a mail conversation (nothing when
    /// the policy does not track next replies; language inherited from the thread), or a `First`
    /// for a new call (its language stays the line's).
    pub(super) fn open_from_later_follow_ups(
        &self,
        inquiry: &Inquiry,
        at: DateTime<Utc>,
        kind: InquiryKind,
    ) -> Vec<Event> {
        let mut later = inquiry
            .follow_up_messages
            .iter()
            .filter(|f| f.received_at > at);
        let Some(first) = later.next() else {
            return Vec::new();
        };
        let policy = self.rules.policies.select(
            inquiry.channel,
            inquiry.language,
            &inquiry.source,
            &first.customer,
        );
        if kind == InquiryKind::NextReply && !policy.next_reply {
            return Vec::new();
        }
        let language_source = match kind {
            InquiryKind::NextReply => LanguageSource::Thread,
            InquiryKind::First => inquiry.language_source.unwrap_or(LanguageSource::Default),
        };
        let mut events = Vec::new();
        let (version, deadline_at, warn_at) =
            self.stamp_policy(policy, first.received_at, first.first_seen_at, &mut events);
        let id = InquiryId::derive(inquiry.channel, &first.external_id);
        events.push(Event::InquiryOpened(Box::new(InquiryOpened {
            inquiry_id: id.clone(),
            channel: inquiry.channel,
            source: inquiry.source.clone(),
            external_id: first.external_id.clone(),
            thread_id: inquiry.thread_id.to_string(),
            digest: Some(first.digest.clone()),
            customer: first.customer.clone(),
            customer_name: inquiry
                .customer_name
                .clone()
                .filter(|_| first.customer == inquiry.customer),
            subject: first.subject.clone(),
            language: inquiry.language,
            language_source,
            received_at: first.received_at,
            first_seen_at: first.first_seen_at,
            date_header: None,
            reply_to: inquiry.reply_to.clone(),
            deadline_at,
            warn_at,
            policy: version,
            kind,
            call: None,
        })));
        events.extend(later.map(|f| Event::FollowUpAttached {
            inquiry_id: id.clone(),
            external_id: f.external_id.clone(),
            digest: f.digest.clone(),
            received_at: f.received_at,
            first_seen_at: f.first_seen_at,
            customer: f.customer.clone(),
            subject: f.subject.clone(),
        }));
        events
    }

    /// The scheduler's instants. Stale ones (inquiry answered meanwhile, stage already fired,
    /// instant not reached) cause nothing, so the scheduler may be generous.
    fn decide_deadline(&self, id: &InquiryId, stage: Stage, now: DateTime<Utc>) -> Vec<Event> {
        let Some(inquiry) = self.inquiries.get(id) else {
            return Vec::new();
        };
        if inquiry.state != InquiryState::Open || inquiry.breached_at.is_some() {
            return Vec::new();
        }
        match stage {
            // A warning whose deadline has passed too is no warning: the breach says it all
            // (e.g. inquiries that went overdue while the daemon was down).
            Stage::Warning(_) if inquiry.deadline_at.is_some_and(|d| d <= now) => Vec::new(),
            Stage::Warning(index) => match inquiry.warn_at.get(index as usize) {
                Some(at) if *at <= now && !inquiry.warned(index) => {
                    vec![Event::InquiryWarned {
                        inquiry_id: id.clone(),
                        index,
                        at: *at,
                    }]
                }
                _ => Vec::new(),
            },
            Stage::Breach => match inquiry.deadline_at {
                Some(at) if at <= now => vec![Event::InquiryBreached {
                    inquiry_id: id.clone(),
                    at,
                }],
                _ => Vec::new(),
            },
        }
    }

    // ---- helpers ----------------------------------------------------------------------------

    /// The Message-ID, made unique when another message already used it.
    fn external_id(&self, mail: &Mail) -> String {
        if self.thread_of.contains_key(mail.message_id.as_str()) {
            format!(
                "{}#{}",
                mail.message_id,
                &mail.digest[..mail.digest.len().min(12)]
            )
        } else {
            mail.message_id.clone()
        }
    }

    /// The thread of the nearest known message this one refers to: `In-Reply-To` first, then
    /// `References` from the most recent.
    fn thread_for(&self, mail: &Mail) -> Option<String> {
        referenced_ids(mail)
            .iter()
            .find_map(|id| self.thread_of.get(id.as_str()).map(|t| t.to_string()))
    }

    /// Notes that `event`, already applied, is stored in the ledger as `seq` (seqs come in
    /// increasing order: replay, then commits).
    pub fn note_ledger_seq(&mut self, event: &Event, seq: i64) {
        if let Some(inquiry) = event.inquiry_id().and_then(|id| self.inquiries.get_mut(id)) {
            let first = inquiry.ledger_seqs.map_or(seq, |(first, _)| first);
            inquiry.ledger_seqs = Some((first, seq));
        }
    }

    // ---- apply ----------------------------------------------------------------------------

    /// Folds one event into the state. Total: an event about an unknown inquiry is ignored.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::PolicyActivated { policy, .. } => {
                self.policies_seen.insert(policy.version.clone());
            }
            Event::InquiryOpened(e) => {
                let (external_id, thread) =
                    self.index_message(&e.external_id, &e.thread_id, e.digest.as_deref());
                self.open_in_thread.insert(
                    thread.clone(),
                    OpenSummary {
                        id: e.inquiry_id.clone(),
                        channel: e.channel,
                        language: e.language,
                        received_at: e.received_at,
                        deadline_at: e.deadline_at,
                        first_warn_at: e.warn_at.iter().min().copied(),
                        warned: false,
                        breached: false,
                    },
                );
                let plain_id = e.external_id.split('#').next().unwrap_or(&e.external_id);
                self.pending_replies.remove(plain_id);
                self.sender_of.insert(key64(plain_id), key64(&e.customer));
                self.insert(Inquiry {
                    id: e.inquiry_id.clone(),
                    channel: e.channel,
                    source: e.source.clone(),
                    external_id,
                    thread_id: thread,
                    customer: e.customer.clone(),
                    customer_name: e.customer_name.clone(),
                    subject: e.subject.clone(),
                    language: e.language,
                    received_at: e.received_at,
                    first_seen_at: e.first_seen_at,
                    deadline_at: Some(e.deadline_at),
                    warn_at: e.warn_at.clone(),
                    responded_at: None,
                    response_seconds: None,
                    response_kind: None,
                    responder: None,
                    state: InquiryState::Open,
                    sla: SlaStatus::Pending,
                    excluded_reason: None,
                    excluded_detail: None,
                    policy: Some(e.policy.clone()),
                    kind: Some(e.kind),
                    follow_ups: 0,
                    breached_at: None,
                    alerts: Vec::new(),
                    call: e.call.clone().map(Box::new),
                    reply_to: e.reply_to.clone(),
                    language_source: Some(e.language_source),
                    follow_up_messages: Vec::new(),
                    ledger_seqs: None,
                });
            }
            Event::InquiryExcluded(e) => {
                let (external_id, thread) =
                    self.index_message(&e.external_id, &e.thread_id, e.digest.as_deref());
                let plain_id = e.external_id.split('#').next().unwrap_or(&e.external_id);
                self.sender_of.insert(key64(plain_id), key64(&e.customer));
                self.insert(Inquiry {
                    id: e.inquiry_id.clone(),
                    channel: e.channel,
                    source: e.source.clone(),
                    external_id,
                    thread_id: thread,
                    customer: e.customer.clone(),
                    customer_name: e.customer_name.clone(),
                    subject: e.subject.clone(),
                    language: e.language,
                    received_at: e.received_at,
                    first_seen_at: e.first_seen_at,
                    deadline_at: None,
                    warn_at: Vec::new(),
                    responded_at: None,
                    response_seconds: None,
                    response_kind: None,
                    responder: None,
                    state: InquiryState::Excluded,
                    sla: SlaStatus::Pending,
                    excluded_reason: Some(e.reason),
                    excluded_detail: Some(e.detail.clone()),
                    policy: None,
                    kind: None,
                    follow_ups: 0,
                    breached_at: None,
                    alerts: Vec::new(),
                    call: None,
                    reply_to: Vec::new(),
                    language_source: None,
                    follow_up_messages: Vec::new(),
                    ledger_seqs: None,
                });
            }
            Event::FollowUpAttached {
                inquiry_id,
                external_id,
                digest,
                received_at,
                first_seen_at,
                customer,
                subject,
            } => {
                let thread = self.inquiries.get(inquiry_id).map(|i| i.thread_id.clone());
                if let Some(thread) = thread {
                    self.index_message(external_id, &thread, Some(digest));
                }
                let plain_id = external_id.split('#').next().unwrap_or(external_id);
                self.sender_of.insert(key64(plain_id), key64(customer));
                if let Some(i) = self.inquiries.get_mut(inquiry_id) {
                    i.follow_ups += 1;
                    i.follow_up_messages.push(FollowUp {
                        external_id: external_id.clone(),
                        digest: digest.clone(),
                        received_at: *received_at,
                        first_seen_at: *first_seen_at,
                        customer: customer.clone(),
                        subject: subject.clone(),
                    });
                    i.follow_up_messages.sort_by_key(|f| f.received_at);
                }
            }
            Event::MessageLinked {
                external_id,
                digest,
                thread_id,
                role,
                ..
            } => {
                self.index_message(external_id, thread_id, Some(digest));
                if *role == LinkRole::Reply {
                    let thread = self.share_thread(thread_id);
                    self.replied_threads.insert(thread);
                }
            }
            Event::ReplyUnmatched {
                external_id,
                digest,
                at,
                reason,
                responder,
                references,
                recipients,
                ..
            } => {
                self.seen_digests.insert(key64(digest));
                if *reason == UnmatchedReason::UnknownThread {
                    for r in references {
                        self.pending_replies
                            .entry(r.clone())
                            .or_default()
                            .push(PendingReply {
                                external_id: external_id.clone(),
                                at: *at,
                                responder: responder.clone(),
                                recipients: recipients.clone(),
                            });
                    }
                }
            }
            Event::InquiryResponded(e) => {
                if let Some(i) = self.inquiries.get_mut(&e.inquiry_id) {
                    i.state = InquiryState::Responded;
                    i.responded_at = Some(e.at);
                    i.response_seconds = Some(e.response_seconds);
                    i.response_kind = Some(e.kind);
                    i.responder = Some(e.responder.clone());
                    i.sla = match e.outcome {
                        Outcome::Met => SlaStatus::Met,
                        Outcome::Missed => SlaStatus::Missed,
                    };
                    let thread_id = i.thread_id.clone();
                    if self.open_in_thread.get(&*thread_id).map(|o| &o.id) == Some(&e.inquiry_id) {
                        self.open_in_thread.remove(&*thread_id);
                    }
                    // Any response in a thread makes the next customer message a next reply.
                    self.replied_threads.insert(thread_id);
                }
            }
            Event::InquiryWarned {
                inquiry_id,
                index,
                at,
            } => {
                if let Some(i) = self.inquiries.get_mut(inquiry_id) {
                    push_mark(
                        &mut i.alerts,
                        AlertMark::raised(AlertStage::Warning, Some(*index), *at),
                    );
                    if let Some(open) = self.open_in_thread.get_mut(&*i.thread_id) {
                        open.warned = true;
                    }
                }
            }
            Event::InquiryBreached { inquiry_id, at } => {
                if let Some(i) = self.inquiries.get_mut(inquiry_id) {
                    i.breached_at = Some(*at);
                    i.sla = SlaStatus::Missed;
                    push_mark(
                        &mut i.alerts,
                        AlertMark::raised(AlertStage::Breach, None, *at),
                    );
                    if let Some(open) = self.open_in_thread.get_mut(&*i.thread_id) {
                        open.breached = true;
                    }
                }
            }
            // The monitor's own record (coverage for reports): no inquiry state.
            Event::MonitorStarted { .. }
            | Event::MonitorHeartbeat { .. }
            | Event::MonitorStopped { .. }
            | Event::SourceDown { .. }
            | Event::SourceUp { .. } => {}
            Event::AlertDelivered {
                inquiry_id,
                kind,
                due_at,
                recipients,
                at,
                ..
            } => {
                // Per-person deliveries of one alert all land on its one mark.
                if let Some(i) = self.inquiries.get_mut(inquiry_id)
                    && let Some(mark) = i.alerts.iter_mut().find(|m| {
                        m.is(*kind, *due_at)
                            && (m.delivered_at.is_none()
                                || (!recipients.is_empty()
                                    && !recipients.iter().all(|r| m.reached().contains(r))))
                    })
                {
                    mark.delivered_at.get_or_insert(*at);
                    for r in recipients {
                        mark.add_reached(r);
                    }
                }
            }
            Event::InquiryRenotified { inquiry_id, n, at } => {
                if let Some(i) = self.inquiries.get_mut(inquiry_id) {
                    push_mark(
                        &mut i.alerts,
                        AlertMark::raised(
                            AlertStage::Renotify,
                            Some(u8::try_from(*n).unwrap_or(u8::MAX)),
                            *at,
                        ),
                    );
                }
            }
            Event::AlertFailed { .. } => {}
        }
    }

    fn insert(&mut self, inquiry: Inquiry) {
        self.by_received
            .insert((inquiry.received_at, inquiry.id.clone()));
        self.inquiries.insert(inquiry.id.clone(), Box::new(inquiry));
    }

    /// Stamps a new inquiry with `policy`: its version and its deadlines from `start`, and — the
    /// first time this version is used — the `PolicyActivated` event that records its parameters.
    pub(super) fn stamp_policy(
        &self,
        policy: &crate::tracker::policy::Policy,
        start: DateTime<Utc>,
        seen_at: DateTime<Utc>,
        events: &mut Vec<Event>,
    ) -> (String, DateTime<Utc>, Vec<DateTime<Utc>>) {
        let record = policy.record();
        let (deadline_at, warn_at) = policy.deadlines(start);
        let version = record.version.clone();
        let already = self.policies_seen.contains(&version)
            || events.iter().any(
                |e| matches!(e, Event::PolicyActivated { policy, .. } if policy.version == version),
            );
        if !already {
            events.push(Event::PolicyActivated {
                at: seen_at,
                policy: record,
            });
        }
        (version, deadline_at, warn_at)
    }

    /// The shared copy of a thread id.
    fn share_thread(&mut self, thread_id: &str) -> Arc<str> {
        if let Some(shared) = self.threads.get(thread_id) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(thread_id);
        self.threads.insert(shared.clone());
        shared
    }

    /// Records a message in its thread; returns the shared copies of its id and thread id.
    fn index_message(
        &mut self,
        external_id: &str,
        thread_id: &str,
        digest: Option<&str>,
    ) -> (Arc<str>, Arc<str>) {
        let thread = self.share_thread(thread_id);
        let id: Arc<str> = if external_id == thread_id {
            thread.clone()
        } else {
            Arc::from(external_id)
        };
        // A disambiguated id (`<id>#digest`) is still reachable by the id replies quote.
        if let Some((plain, _)) = external_id.split_once('#') {
            self.thread_of
                .entry(Arc::from(plain))
                .or_insert_with(|| thread.clone());
        }
        self.thread_of.insert(id.clone(), thread.clone());
        if let Some(d) = digest {
            self.seen_digests.insert(key64(d));
        }
        (id, thread)
    }
}

/// `In-Reply-To` first, then `References` from the most recent, without duplicates.
fn referenced_ids(mail: &Mail) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in mail.in_reply_to.iter().chain(mail.references.iter().rev()) {
        if !out.contains(id) {
            out.push(id.clone());
        }
    }
    out
}

pub(super) fn responded_by_email(
    inquiry_id: &InquiryId,
    received_at: DateTime<Utc>,
    deadline_at: DateTime<Utc>,
    already_breached: bool,
    at: DateTime<Utc>,
    responder: &str,
    external_id: &str,
) -> Event {
    let met = !already_breached && at <= deadline_at;
    Event::InquiryResponded(Box::new(InquiryResponded {
        inquiry_id: inquiry_id.clone(),
        at,
        response_seconds: (at - received_at).num_seconds().max(0),
        kind: ResponseKind::Email,
        responder: responder.to_string(),
        external_id: Some(external_id.to_string()),
        outcome: if met { Outcome::Met } else { Outcome::Missed },
        via: None,
        note: None,
    }))
}

/// Adds an alert mark with no spare capacity: an open inquiry holds two or three marks, and
/// a hundred thousand of them are kept at once on a bad day.
fn push_mark(marks: &mut Vec<AlertMark>, mark: AlertMark) {
    marks.reserve_exact(1);
    marks.push(mark);
}
