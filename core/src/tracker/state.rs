//! The tracker's state and the decide/apply pair.
//!
//! `decide` reads the state and returns events; `apply` (in `apply.rs`) is the only code that
//! changes the state. Everything the state holds is derived from events, so replaying the ledger
//! rebuilds it exactly. The maps below are the indexes the rules need: which thread a Message-ID
//! belongs to (`threads.rs`), which inquiry of a thread is open, which message bytes were already
//! seen. The rules themselves live by channel: `email.rs`, `phone.rs`, `ack.rs`, `contacts.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::desk::DeskSettings;
use crate::domain::{Channel, InquiryId};
use crate::tracker::alert::MonitorAlert;
use crate::tracker::event::{
    Event, InquiryKind, InquiryOpened, LanguageSource, MonitorProblem, Outcome, ResponseKind,
    RevisionReason,
};
use crate::tracker::inquiry::{FollowUp, Inquiry, InquiryState, OpenSummary};
use crate::tracker::observation::{Observation, Stage};
use crate::tracker::policy::{Policy, PolicyRecord, PolicySet};
use crate::tracker::revision::Answer;

/// What the rules are configured with.
#[derive(Debug, Clone)]
pub struct TrackerRules {
    pub desk: DeskSettings,
    pub policies: PolicySet,
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PendingReply {
    pub(super) external_id: String,
    pub(super) at: DateTime<Utc>,
    pub(super) responder: String,
    pub(super) recipients: Vec<String>,
}

impl PendingReply {
    /// The response it is, once the message it answers is read.
    pub(super) fn answer(&self) -> Answer {
        Answer {
            at: self.at,
            seen_at: self.at,
            responder: self.responder.clone(),
            kind: ResponseKind::Email,
            evidence: Some(self.external_id.clone()),
        }
    }
}

/// A 64-bit key for a string (digests, message ids, senders) in the large dedupe indexes: 8 bytes
/// instead of a heap string per message. The chance of any collision among a million keys is
/// about 3 in 100 million. SipHash-1-3 with fixed keys, so that a key means the same in every
/// build: keys are written to the store (the archive of threads outside the working set,
/// `working_set.rs`) and to snapshots.
pub fn key64(text: &str) -> u64 {
    use std::hash::Hasher;
    let mut hasher =
        siphasher::sip::SipHasher13::new_with_keys(0x736c_6177_6174_6368, 0x6b65_7936_3420_7631);
    hasher.write(text.as_bytes());
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
    pub(super) by_received: BTreeSet<(DateTime<Utc>, InquiryId)>,
    /// Source → how many phone inquiries of it `by_received` lists (none listed: no entry). A
    /// call record looks for the same call read from another feed only when there is one.
    pub(super) phone_listed: HashMap<Arc<str>, usize>,
    /// Every Message-ID (or call id) seen → its thread.
    pub(super) thread_of: HashMap<Arc<str>, Arc<str>>,
    /// Header digests of every message seen: a re-fetch of the same bytes is dropped.
    pub(super) seen_digests: HashSet<u64>,
    /// Thread → its open inquiry.
    pub(super) open_in_thread: HashMap<Arc<str>, OpenSummary>,
    /// Replies read before the message they answer: referenced id → replies.
    pub(super) pending_replies: HashMap<String, Vec<PendingReply>>,
    /// Policy versions already recorded in the ledger.
    pub(super) policies_seen: HashSet<String>,
    /// Message-ID → sender of the customer messages seen (both as [`key64`]): a second delivery
    /// of the same message (another alias, a redelivery: other `Received:` lines, so another
    /// digest) is the same inquiry, not a new one.
    pub(super) sender_of: HashMap<u64, u64>,
    /// Customer email ↔ phone numbers, for answers across channels (`contacts` module).
    pub(super) contacts: Arc<super::contacts::ContactMap>,
    /// The monitor's own alerts still active, by id (`MonitorAlertRaised` → `…Resolved`).
    pub(super) monitor_alerts: BTreeMap<String, MonitorAlert>,
    /// Each policy used so far with its record: the version is a hash of the parameters
    /// (canonical JSON, SHA-256), worked out once per policy, not for every new inquiry.
    pub(super) policy_records: Mutex<Vec<(Policy, PolicyRecord)>>,
    /// Every thread in memory → its record: the desk's earliest reply in it, its answered
    /// inquiries, and what the indexes above hold of it, which leaves memory with it when it
    /// falls outside the working set (`working_set.rs`). The key is the shared copy of the
    /// thread id the indexes above hold: one map, so each thread id is hashed and stored once.
    /// (Boxed: the map's buckets stay small, at a third of them empty.)
    pub(super) threads: HashMap<Arc<str>, Box<super::working_set::ThreadRecord>>,
    /// Set while a thread's events are applied again (`working_set.rs`): what belongs to no
    /// thread is already as it stands.
    pub(super) restoring: bool,
    /// The latest instant any evidence applied speaks of: the working set's clock in a
    /// backfill, where evidence is older than the wall clock.
    pub(super) latest_evidence: Option<DateTime<Utc>>,
    /// The highest ledger seq noted.
    pub(super) last_seq: i64,
    /// Policy versions, shared by the inquiries stamped with them.
    pub(super) policy_versions: HashSet<Arc<str>>,
    /// Responders (desk addresses, agents, extensions): a few people answer many inquiries.
    /// Those no inquiry in memory names any more leave with evictions.
    pub(super) responders: HashSet<Arc<str>>,
    /// Source names, shared by their inquiries the same way.
    pub(super) sources: HashSet<Arc<str>>,
}

impl Tracker {
    pub fn new(rules: Arc<TrackerRules>) -> Tracker {
        Tracker {
            rules,
            inquiries: HashMap::new(),
            by_received: BTreeSet::new(),
            phone_listed: HashMap::new(),
            thread_of: HashMap::new(),
            seen_digests: HashSet::new(),
            open_in_thread: HashMap::new(),
            pending_replies: HashMap::new(),
            policies_seen: HashSet::new(),
            sender_of: HashMap::new(),
            threads: HashMap::new(),
            contacts: Arc::default(),
            monitor_alerts: BTreeMap::new(),
            policy_records: Mutex::new(Vec::new()),
            restoring: false,
            latest_evidence: None,
            last_seq: 0,
            policy_versions: HashSet::new(),
            responders: HashSet::new(),
            sources: HashSet::new(),
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

    /// Whether [`Tracker::newest_before`] can yield a phone inquiry of a source other than
    /// `source` (a call read from another feed), without walking it.
    pub fn lists_calls_from_other_sources(&self, source: &str) -> bool {
        self.phone_listed.keys().any(|s| **s != *source)
    }

    pub fn open(&self) -> impl Iterator<Item = &Inquiry> {
        self.open_in_thread.values().filter_map(|o| self.get(&o.id))
    }

    /// The monitor's own alerts still active, by id.
    pub fn monitor_alerts(&self) -> impl Iterator<Item = &MonitorAlert> {
        self.monitor_alerts.values()
    }

    pub fn monitor_alert(&self, id: &str) -> Option<&MonitorAlert> {
        self.monitor_alerts.get(id)
    }

    /// The event that raises a monitor alert about `problem` of `subject` at `now`; none while
    /// one is active for it already (one alert per episode, also across restarts).
    pub fn raise_monitor_alert(
        &self,
        problem: MonitorProblem,
        subject: &str,
        detail: &str,
        now: DateTime<Utc>,
    ) -> Option<Event> {
        let alert = problem.alert_id(subject);
        (!self.monitor_alerts.contains_key(&alert)).then(|| Event::MonitorAlertRaised {
            alert,
            problem,
            subject: subject.to_string(),
            detail: detail.to_string(),
            at: now,
        })
    }

    /// The event recording that `by` took the open inquiry `id` at `at` until `until` ("I'm on
    /// it"; `how` says through what). Refused for an unknown or closed inquiry.
    pub fn take(
        &self,
        id: &InquiryId,
        by: &str,
        how: &str,
        at: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Event, Rejected> {
        let inquiry = self
            .get(id)
            .ok_or_else(|| Rejected::UnknownInquiry(id.clone()))?;
        if inquiry.state != InquiryState::Open {
            return Err(Rejected::NotOpen(id.clone(), inquiry.state.as_str()));
        }
        Ok(Event::InquiryTaken {
            inquiry_id: id.clone(),
            by: by.to_string(),
            at,
            until,
            how: how.to_string(),
        })
    }

    /// The event that resolves the active monitor alert `alert` at `now`; none if it is not
    /// active.
    pub fn resolve_monitor_alert(&self, alert: &str, now: DateTime<Utc>) -> Option<Event> {
        self.monitor_alerts
            .contains_key(alert)
            .then(|| Event::MonitorAlertResolved {
                alert: alert.to_string(),
                at: now,
            })
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
        let mut events = match observation {
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
        };
        self.revise_breaches(&mut events, now);
        Ok(events)
    }

    /// DESIGN.md "Evidence order": a response at or before the deadline is met, even when the
    /// breach fired before that evidence was read (a reply fetched late, a call record written
    /// at hangup). The breach stays in the ledger; an `InquiryRevised` after the response says
    /// that it was not one, and why.
    fn revise_breaches(&self, events: &mut Vec<Event>, now: DateTime<Utc>) {
        let mut i = 0;
        while i < events.len() {
            if let Event::InquiryResponded(r) = &events[i]
                && r.outcome == Outcome::Met
                && self
                    .inquiries
                    .get(&r.inquiry_id)
                    .is_some_and(|inquiry| inquiry.breached_at.is_some())
            {
                let revision = Event::InquiryRevised {
                    inquiry_id: r.inquiry_id.clone(),
                    at: now,
                    reason: RevisionReason::AnsweredBeforeDeadline,
                    from: Outcome::Missed,
                    to: Outcome::Met,
                    evidence: r.external_id.clone(),
                    response: None,
                };
                events.insert(i + 1, revision);
                i += 1;
            }
            i += 1;
        }
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

    // ---- rules shared by every channel ---------------------------------------------------

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
        let moved: Vec<&FollowUp> = inquiry
            .follow_up_messages
            .iter()
            .filter(|f| f.received_at > at)
            .collect();
        let Some(&first) = moved.first() else {
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
            source: inquiry.source.to_string(),
            external_id: first.external_id.clone(),
            thread_id: inquiry.thread_id.to_string(),
            digest: Some(first.digest.clone()),
            customer: first.customer.clone(),
            customer_name: inquiry
                .customer_name
                .as_deref()
                .map(String::from)
                .filter(|_| *first.customer == *inquiry.customer),
            subject: first.subject.clone(),
            language: inquiry.language,
            language_source,
            received_at: first.received_at,
            first_seen_at: first.first_seen_at,
            date_header: None,
            reply_to: inquiry.reply_to.to_vec(),
            deadline_at,
            warn_at,
            policy: version,
            kind,
            call: None,
        })));
        events.extend(moved[1..].iter().map(|f| Event::FollowUpAttached {
            inquiry_id: id.clone(),
            external_id: f.external_id.clone(),
            digest: f.digest.clone(),
            received_at: f.received_at,
            first_seen_at: f.first_seen_at,
            customer: f.customer.clone(),
            subject: f.subject.clone(),
        }));
        // A reply read earlier that replies to one of these messages, or a callback read earlier
        // to the number, answers the new inquiry.
        let reply = moved
            .iter()
            .map(|f| f.external_id.split('#').next().unwrap_or(&f.external_id))
            .chain(std::iter::once(&*inquiry.thread_id))
            .filter_map(|id| self.pending_replies.get(id))
            .flatten()
            .filter(|r| r.at >= first.received_at && r.recipients.contains(&first.customer))
            .min_by_key(|r| r.at);
        if let Some(reply) = reply {
            let kind = match inquiry.channel {
                Channel::Email => ResponseKind::Email,
                Channel::Phone => ResponseKind::Phone,
            };
            let answer = Answer {
                kind,
                ..reply.answer()
            };
            events.push(answer.responded(&id, first.received_at, deadline_at));
        }
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

    /// Notes that `event`, already applied, is stored in the ledger as `seq` (seqs come in
    /// increasing order: replay, then commits).
    pub fn note_ledger_seq(&mut self, event: &Event, seq: i64) {
        if let Some(inquiry) = event.inquiry_id().and_then(|id| self.inquiries.get_mut(id)) {
            let first = inquiry.ledger_seqs.map_or(seq, |(first, _)| first);
            inquiry.ledger_seqs = Some((first, seq));
        }
        self.last_seq = self.last_seq.max(seq);
        self.note_thread_seq(event, seq);
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
        let mut records = self
            .policy_records
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let index = match records.iter().position(|(p, _)| p == policy) {
            Some(index) => index,
            None => {
                records.push((policy.clone(), policy.record()));
                records.len() - 1
            }
        };
        let record = &records[index].1;
        let (deadline_at, warn_at) = policy.deadlines(start);
        let version = record.version.clone();
        let already = self.policies_seen.contains(&version)
            || events.iter().any(
                |e| matches!(e, Event::PolicyActivated { policy, .. } if policy.version == version),
            );
        if !already {
            events.push(Event::PolicyActivated {
                at: seen_at,
                policy: record.clone(),
            });
        }
        (version, deadline_at, warn_at)
    }
}
