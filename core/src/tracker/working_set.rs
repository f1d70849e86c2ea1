//! The working set: what the tracker keeps in memory, what it lets go, and how it comes back.
//!
//! A busy desk takes a million inquiries a year; memory holds only the **working set**
//! (DESIGN.md "Scale and availability"): open inquiries and the conversations new evidence can
//! still attach to. The unit is the **thread** (a mail conversation, a caller's number): a
//! thread with nothing open and no evidence newer than a cutoff is *evicted* — every index
//! entry that belongs to it leaves memory together ([`Tracker::evict`]).
//!
//! Nothing is lost: an evicted thread is exactly the events that built it. The tracker hands
//! back an [`EvictedThread`] (the ledger seqs of its events and the keys that lead to it: its
//! Message-IDs, digests, inquiry ids, its own id), which the daemon files in the store. When
//! new evidence refers to one of those keys ([`Tracker::wanted_for`]; during a replay
//! [`Tracker::wanted_for_event`]), the daemon reads the thread's events back from the ledger
//! and the tracker applies them again ([`Tracker::restore`]). Apply is the only code that
//! builds state, so a restored thread is the thread as it was, and decisions never depend on
//! what happened to be in memory: the order property tests run with a one-hour window to hold
//! that.
//!
//! The core does no I/O: it says which keys it lacks and takes the events it is given. Keys are
//! [`key64`] of the text (stable across builds).
//!
//! What stays in memory whatever its age, because it belongs to no thread: replies waiting for
//! the message they answer (`pending_replies`), the digests of unmatched replies, the policy
//! versions seen and the monitor's active alerts. A [`Snapshot`] carries them with the seqs of
//! every thread in memory, so a restart reads the working set's events instead of the whole
//! ledger.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::InquiryId;
use crate::tracker::alert::MonitorAlert;
use crate::tracker::event::Event;
use crate::tracker::inquiry::InquiryState;
use crate::tracker::observation::Observation;
use crate::tracker::phone::{call_external_id, thread_of_call};
use crate::tracker::state::{PendingReply, Tracker, key64};
use crate::tracker::threads::referenced_ids;

/// What memory holds of one thread: what the rules read of it, and what the indexes hold of
/// it, so that it can leave memory in one piece. A month of threads is in memory at once, so
/// the lists are boxed slices with no spare room (two words each, not three).
#[derive(Debug, Clone)]
pub(crate) struct ThreadRecord {
    /// The desk's earliest reply in the thread: a customer message delivered after it is a
    /// next reply.
    pub(super) replied_at: Option<DateTime<Utc>>,
    /// Its answered inquiries, in the order they were answered: a customer message delivered
    /// before one of their answers, but read after it, belongs to that inquiry (DESIGN.md
    /// "Evidence order").
    pub(super) answered: Box<[InquiryId]>,
    /// Message-IDs and call ids indexed to the thread (`thread_of` keys).
    messages: Box<[Arc<str>]>,
    /// Digests of its messages and call records (`seen_digests`).
    digests: Box<[u64]>,
    /// Its inquiries. (Its `sender_of` entries are those of its messages' keys.)
    inquiries: Box<[InquiryId]>,
    /// Ledger seqs of the events about it, in order.
    seqs: Box<[i64]>,
    /// Events applied and not yet in the ledger: such a thread stays.
    unnoted: u32,
    /// The latest instant its evidence speaks of.
    last_at: DateTime<Utc>,
}

impl Default for ThreadRecord {
    fn default() -> ThreadRecord {
        ThreadRecord {
            replied_at: None,
            answered: Box::default(),
            messages: Box::default(),
            digests: Box::default(),
            inquiries: Box::default(),
            seqs: Box::default(),
            unnoted: 0,
            last_at: DateTime::<Utc>::MIN_UTC,
        }
    }
}

impl ThreadRecord {
    /// The desk replied in the thread at `at`: its earliest reply stays.
    pub(super) fn replied(&mut self, at: DateTime<Utc>) {
        self.replied_at = Some(self.replied_at.map_or(at, |first| first.min(at)));
    }

    /// Inquiry `id` of the thread was answered.
    pub(super) fn answered(&mut self, id: &InquiryId) {
        push_exact(&mut self.answered, id.clone());
    }

    /// Inquiry `id` is not among its answered ones any more (merged into another).
    pub(super) fn unanswer(&mut self, id: &InquiryId) {
        if self.answered.contains(id) {
            let mut answered = std::mem::take(&mut self.answered).into_vec();
            answered.retain(|a| a != id);
            self.answered = answered.into_boxed_slice();
        }
    }
}

/// A thread that left memory: how to find it again and how to rebuild it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvictedThread {
    /// The thread id.
    pub thread: String,
    /// [`key64`] of every text that leads to it (its id, Message-IDs, call ids, digests,
    /// inquiry ids), sorted, without duplicates.
    pub keys: Vec<u64>,
    /// The ledger seqs of its events, in order: applying them again rebuilds it.
    pub seqs: Vec<i64>,
}

/// The working set, as it stood at one ledger seq: the seqs of every thread in memory, and what
/// belongs to no thread. Serialised by the daemon with the seq and head hash it was taken at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`key64`] of a fixed text: a snapshot written by a build whose keys differ is refused.
    pub key_check: u64,
    /// Each thread's ledger seqs, in order.
    pub threads: Vec<Vec<i64>>,
    pub pending_replies: Vec<(String, Vec<PendingReply>)>,
    /// Digests seen that belong to no thread (unmatched replies).
    pub loose_digests: Vec<u64>,
    pub policies_seen: Vec<String>,
    pub monitor_alerts: Vec<MonitorAlert>,
}

/// [`Snapshot::key_check`]'s value in this build.
pub fn key_check() -> u64 {
    key64("slawatch working set keys")
}

impl Tracker {
    /// The record of `thread`, created empty.
    pub(super) fn record_of(&mut self, thread: &Arc<str>) -> &mut ThreadRecord {
        self.threads.entry(thread.clone()).or_default()
    }

    /// The thread an event is about, once applied: the one it names, or its inquiry's.
    pub(super) fn thread_touched(&self, event: &Event) -> Option<Arc<str>> {
        match named_thread(event) {
            Some(thread) => self.threads.get_key_value(thread).map(|(k, _)| k.clone()),
            None => event
                .inquiry_id()
                .and_then(|id| self.inquiries.get(id))
                .map(|i| i.thread_id.clone()),
        }
    }

    /// After `apply`: the event counts as not yet in the ledger, and moves its thread's latest
    /// instant on.
    pub(super) fn touch_thread(&mut self, event: &Event) {
        let Some(thread) = self.thread_touched(event) else {
            return;
        };
        let at = evidence_instant(event);
        if at.is_some() {
            self.latest_evidence = self.latest_evidence.max(at);
        }
        let record = self.record_of(&thread);
        record.unnoted += 1;
        if let Some(at) = at {
            record.last_at = record.last_at.max(at);
        }
    }

    /// `event`, applied before, is in the ledger as `seq`.
    pub(super) fn note_thread_seq(&mut self, event: &Event, seq: i64) {
        let Some(thread) = self.thread_touched(event) else {
            return;
        };
        let record = self.record_of(&thread);
        record.unnoted = record.unnoted.saturating_sub(1);
        if record.seqs.last().is_none_or(|last| *last < seq) {
            push_exact(&mut record.seqs, seq);
        }
    }

    /// Records that `message` (and its digest) is indexed to `thread`.
    pub(super) fn note_message(
        &mut self,
        thread: &Arc<str>,
        message: &Arc<str>,
        digest: Option<u64>,
    ) {
        let record = self.record_of(thread);
        push_exact(&mut record.messages, message.clone());
        if let Some(digest) = digest {
            push_exact(&mut record.digests, digest);
        }
    }

    /// Records an inquiry of `thread`.
    pub(super) fn note_inquiry(&mut self, thread: &Arc<str>, id: &InquiryId) {
        push_exact(&mut self.record_of(thread).inquiries, id.clone());
    }

    /// The latest instant any evidence applied speaks of.
    pub fn latest_evidence(&self) -> Option<DateTime<Utc>> {
        self.latest_evidence
    }

    /// The highest ledger seq noted (0: none).
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// The cutoff of a working window at `now`: threads whose last evidence is older leave. In
    /// a backfill the evidence is older than the clock, and the window follows the evidence.
    pub fn working_cutoff(&self, now: DateTime<Utc>, window: chrono::Duration) -> DateTime<Utc> {
        self.latest_evidence.map_or(now, |latest| latest.min(now)) - window
    }

    /// Whether `thread` is in memory.
    pub fn holds_thread(&self, thread: &str) -> bool {
        self.threads.contains_key(thread)
    }

    /// How many threads are in memory.
    pub fn threads_held(&self) -> usize {
        self.threads.len()
    }

    /// The keys an observation may need that memory does not hold: the daemon looks them up
    /// among the evicted threads and [`restore`](Tracker::restore)s those it finds before
    /// `decide`. Empty when everything it can refer to is in memory.
    pub fn wanted_for(&self, observation: &Observation) -> Vec<u64> {
        let mut texts: Vec<String> = Vec::new();
        match observation {
            Observation::MessageReceived(mail) | Observation::MessageSent(mail) => {
                if !self.seen_digests.contains(&key64(&mail.digest)) {
                    texts.push(mail.digest.clone());
                }
                for id in std::iter::once(&mail.message_id).chain(referenced_ids(mail).iter()) {
                    if !self.thread_of.contains_key(id.as_str())
                        && !self.threads.contains_key(id.as_str())
                    {
                        texts.push(id.clone());
                    }
                }
            }
            Observation::CallStarted(call)
            | Observation::CallAnswered(call)
            | Observation::CallEnded(call) => {
                let external = call_external_id(call);
                if !self.thread_of.contains_key(external.as_str()) {
                    texts.push(external);
                }
                let thread = thread_of_call(call);
                if !self.threads.contains_key(thread.as_str()) {
                    texts.push(thread);
                }
                let record = format!("call:{}:{}", call.source, call.record_id);
                if !self.seen_digests.contains(&key64(&record)) {
                    texts.push(record);
                }
            }
            Observation::ManualAck(ack) => return self.wanted_for_inquiry(&ack.inquiry_id),
            Observation::DeadlineReached { inquiry_id, .. } => {
                return self.wanted_for_inquiry(inquiry_id);
            }
        }
        keys_of(texts)
    }

    /// The key of inquiry `id` when memory does not hold it (an action on an old inquiry).
    pub fn wanted_for_inquiry(&self, id: &InquiryId) -> Vec<u64> {
        if self.inquiries.contains_key(id) {
            Vec::new()
        } else {
            vec![key64(id.as_str())]
        }
    }

    /// The keys applying `event` needs that memory does not hold (a replay meets an event about
    /// a thread evicted earlier in it): restored before it is applied.
    pub fn wanted_for_event(&self, event: &Event) -> Vec<u64> {
        match (named_thread(event), event.inquiry_id()) {
            (Some(thread), _) if !self.threads.contains_key(thread) => {
                keys_of(vec![thread.to_string()])
            }
            (None, Some(id)) if !self.inquiries.contains_key(id) => {
                keys_of(vec![id.as_str().to_string()])
            }
            _ => Vec::new(),
        }
    }

    /// Applies a thread's events again (they come from the ledger, in seq order) and notes their
    /// seqs: the thread is in memory as it was. An event already applied (its thread is in
    /// memory with that seq) is skipped.
    pub fn restore<'a>(&mut self, events: impl IntoIterator<Item = (i64, &'a Event)>) {
        self.restoring = true;
        for (seq, event) in events {
            if let Some(thread) = self.thread_touched(event)
                && self
                    .threads
                    .get(&thread)
                    .is_some_and(|m| m.seqs.binary_search(&seq).is_ok())
            {
                continue;
            }
            self.apply(event);
            self.note_ledger_seq(event, seq);
        }
        self.restoring = false;
    }

    /// Evicts every thread with nothing open, every event in the ledger, and no evidence at or
    /// after `cutoff`; returns them for the store, largest first seq last.
    pub fn evict(&mut self, cutoff: DateTime<Utc>) -> Vec<EvictedThread> {
        let leaving: Vec<Arc<str>> = self
            .threads
            .iter()
            .filter(|(thread, m)| {
                m.unnoted == 0
                    && !m.seqs.is_empty()
                    && m.last_at < cutoff
                    && !self.open_in_thread.contains_key(&***thread)
                    && m.inquiries.iter().all(|id| {
                        self.inquiries
                            .get(id)
                            .is_none_or(|i| i.state != InquiryState::Open)
                    })
            })
            .map(|(thread, _)| thread.clone())
            .collect();
        let mut evicted: Vec<EvictedThread> =
            leaving.into_iter().map(|t| self.evict_thread(t)).collect();
        evicted.sort_by_key(|e| e.seqs.last().copied());
        if !evicted.is_empty() {
            self.responders.retain(|r| Arc::strong_count(r) > 1);
            self.sources.retain(|s| Arc::strong_count(s) > 1);
        }
        evicted
    }

    /// Gives back the indexes' spare room once they hold fewer entries than they grew to (a
    /// replay holds many more inquiries between two evictions than the working set): called
    /// after start-up and after evictions. The maps cost nothing when nothing shrank; the
    /// received-time index is rebuilt, one pass over it (a few milliseconds at a month of
    /// inquiries).
    pub fn shrink_to_fit(&mut self) {
        // Appended to in time order, the received-time index's nodes are left a little over
        // half full; built again from its entries (in order already) they are full: about
        // 40 bytes less an inquiry.
        self.by_received = std::mem::take(&mut self.by_received).into_iter().collect();
        self.inquiries.shrink_to_fit();
        self.phone_listed.shrink_to_fit();
        self.thread_of.shrink_to_fit();
        self.seen_digests.shrink_to_fit();
        self.open_in_thread.shrink_to_fit();
        self.pending_replies.shrink_to_fit();
        self.sender_of.shrink_to_fit();
        self.threads.shrink_to_fit();
        self.responders.shrink_to_fit();
        self.sources.shrink_to_fit();
    }

    fn evict_thread(&mut self, thread: Arc<str>) -> EvictedThread {
        let record = self.threads.remove(&thread).map(|m| *m).unwrap_or_default();
        let mut keys = vec![key64(&thread)];
        for message in &record.messages {
            if self.thread_of.get(message).is_some_and(|t| *t == thread) {
                self.thread_of.remove(message);
            }
            let key = key64(message);
            // The sender of a customer message, if it was one (keyed by its plain Message-ID,
            // which is among the thread's messages).
            self.sender_of.remove(&key);
            keys.push(key);
        }
        for digest in &record.digests {
            self.seen_digests.remove(digest);
            keys.push(*digest);
        }
        for id in &record.inquiries {
            if let Some(inquiry) = self.inquiries.remove(id) {
                self.unlist(id, inquiry.received_at, inquiry.channel, &inquiry.source);
            }
            keys.push(key64(id.as_str()));
        }
        keys.sort_unstable();
        keys.dedup();
        EvictedThread {
            thread: thread.to_string(),
            keys,
            seqs: record.seqs.into_vec(),
        }
    }

    /// The working set as it stands: every event of every thread in memory must be in the
    /// ledger (the daemon takes it between commits).
    pub fn snapshot(&self) -> Snapshot {
        let threaded: HashSet<u64> = self
            .threads
            .values()
            .flat_map(|m| m.digests.iter().copied())
            .collect();
        let mut loose_digests: Vec<u64> = self
            .seen_digests
            .iter()
            .filter(|d| !threaded.contains(d))
            .copied()
            .collect();
        loose_digests.sort_unstable();
        let mut threads: Vec<Vec<i64>> = self
            .threads
            .values()
            .filter(|m| !m.seqs.is_empty())
            .map(|m| m.seqs.to_vec())
            .collect();
        threads.sort();
        let mut pending_replies: Vec<(String, Vec<PendingReply>)> = self
            .pending_replies
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        pending_replies.sort_by(|a, b| a.0.cmp(&b.0));
        let mut policies_seen: Vec<String> = self.policies_seen.iter().cloned().collect();
        policies_seen.sort();
        Snapshot {
            key_check: key_check(),
            threads,
            pending_replies,
            loose_digests,
            policies_seen,
            monitor_alerts: self.monitor_alerts.values().cloned().collect(),
        }
    }

    /// Whether every event applied so far is in the ledger (a snapshot may be taken).
    pub fn all_noted(&self) -> bool {
        self.threads.values().all(|m| m.unnoted == 0)
    }

    /// Starts from a snapshot's loose state; the daemon then [`restore`](Tracker::restore)s
    /// the events of [`Snapshot::threads`], all merged in seq order.
    pub fn load_snapshot(&mut self, snapshot: &Snapshot) {
        self.pending_replies = snapshot
            .pending_replies
            .iter()
            .cloned()
            .collect::<HashMap<_, _>>();
        self.seen_digests
            .extend(snapshot.loose_digests.iter().copied());
        self.policies_seen
            .extend(snapshot.policies_seen.iter().cloned());
        self.monitor_alerts = snapshot
            .monitor_alerts
            .iter()
            .map(|a| (a.id.clone(), a.clone()))
            .collect();
    }
}

/// The thread an event names itself (the others are about an inquiry, in its thread).
fn named_thread(event: &Event) -> Option<&str> {
    match event {
        Event::InquiryOpened(e) => Some(&e.thread_id),
        Event::InquiryExcluded(e) => Some(&e.thread_id),
        Event::MessageLinked { thread_id, .. } => Some(thread_id),
        _ => None,
    }
}

/// Pushes with no spare capacity: a thread holds a handful of each, and a month of them is in
/// memory at once.
fn push_exact<T>(list: &mut Box<[T]>, item: T) {
    let mut grown = std::mem::take(list).into_vec();
    grown.reserve_exact(1);
    grown.push(item);
    *list = grown.into_boxed_slice();
}

fn keys_of(mut texts: Vec<String>) -> Vec<u64> {
    let mut keys: Vec<u64> = texts.drain(..).map(|t| key64(&t)).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The latest instant an event's evidence speaks of (what ages a thread).
fn evidence_instant(event: &Event) -> Option<DateTime<Utc>> {
    match event {
        Event::InquiryOpened(e) => Some(e.received_at.max(e.first_seen_at)),
        Event::InquiryExcluded(e) => Some(e.received_at.max(e.first_seen_at)),
        Event::FollowUpAttached {
            received_at,
            first_seen_at,
            ..
        } => Some((*received_at).max(*first_seen_at)),
        Event::MessageLinked { at, .. }
        | Event::InquiryWarned { at, .. }
        | Event::InquiryBreached { at, .. }
        | Event::InquiryRevised { at, .. } => Some(*at),
        Event::InquiryResponded(e) => Some(e.at),
        Event::InquiryTaken { until, .. } => Some(*until),
        _ => None,
    }
}
