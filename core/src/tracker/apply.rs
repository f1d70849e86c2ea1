//! `apply`: the only code that changes the tracker's state, one event at a time. Total: an
//! event about an unknown inquiry is ignored, so a replay of any ledger rebuilds the state.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::domain::Channel;
use crate::tracker::alert::{AlertKind, AlertMark, AlertStage, MonitorAlert};
use crate::tracker::event::{Event, LinkRole, Outcome, UnmatchedReason};
use crate::tracker::inquiry::{
    FollowUp, FollowUps, Inquiry, InquiryState, OpenSummary, SlaStatus, Taken,
};
use crate::tracker::state::{PendingReply, Tracker, key64};

impl Tracker {
    /// Folds one event into the state. Total: an event about an unknown inquiry is ignored.
    pub fn apply(&mut self, event: &Event) {
        self.apply_event(event);
        self.touch_thread(event);
    }

    fn apply_event(&mut self, event: &Event) {
        match event {
            Event::PolicyActivated { policy, .. } => {
                self.policies_seen.insert(policy.version.clone());
            }
            Event::InquiryOpened(e) => {
                let (external_id, thread) =
                    self.index_message(&e.external_id, &e.thread_id, e.digest.as_deref());
                // A thread has one open inquiry. An inquiry opened for an older clock than an
                // answered one (`InquiryMerged`) does not displace a later one still open.
                self.open_in_thread
                    .entry(thread.clone())
                    .or_insert(OpenSummary {
                        id: e.inquiry_id.clone(),
                        channel: e.channel,
                        language: e.language,
                        received_at: e.received_at,
                        deadline_at: e.deadline_at,
                        first_warn_at: e.warn_at.iter().min().copied(),
                        warned: false,
                        breached: false,
                    });
                let plain_id = e.external_id.split('#').next().unwrap_or(&e.external_id);
                // The reply waiting for this message is matched now. Not when a thread comes
                // back into memory: the waiting replies are as they stand today, and one that
                // waits for this message arrived after it was opened.
                if !self.restoring {
                    self.pending_replies.remove(plain_id);
                }
                self.sender_of.insert(key64(plain_id), key64(&e.customer));
                let policy = self.share_policy(&e.policy);
                let source = share(&mut self.sources, &e.source);
                self.insert(Inquiry {
                    id: e.inquiry_id.clone(),
                    channel: e.channel,
                    source,
                    external_id,
                    thread_id: thread,
                    customer: e.customer.as_str().into(),
                    customer_name: e.customer_name.as_deref().map(Box::from),
                    subject: e.subject.as_str().into(),
                    language: e.language,
                    received_at: e.received_at,
                    first_seen_at: e.first_seen_at,
                    deadline_at: Some(e.deadline_at),
                    warn_at: e.warn_at.as_slice().into(),
                    responded_at: None,
                    response_seconds: None,
                    response_kind: None,
                    responder: None,
                    response_id: None,
                    state: InquiryState::Open,
                    sla: SlaStatus::Pending,
                    excluded_reason: None,
                    excluded_detail: None,
                    policy: Some(policy),
                    kind: Some(e.kind),
                    follow_ups: 0,
                    breached_at: None,
                    alerts: Vec::new(),
                    call: e.call.clone().map(Box::new),
                    reply_to: e.reply_to.as_slice().into(),
                    language_source: Some(e.language_source),
                    follow_up_messages: FollowUps::default(),
                    taken: None,
                    merged_into: None,
                    ledger_seqs: None,
                });
            }
            Event::InquiryExcluded(e) => {
                let (external_id, thread) =
                    self.index_message(&e.external_id, &e.thread_id, e.digest.as_deref());
                let plain_id = e.external_id.split('#').next().unwrap_or(&e.external_id);
                self.sender_of.insert(key64(plain_id), key64(&e.customer));
                let source = share(&mut self.sources, &e.source);
                self.insert(Inquiry {
                    id: e.inquiry_id.clone(),
                    channel: e.channel,
                    source,
                    external_id,
                    thread_id: thread,
                    customer: e.customer.as_str().into(),
                    customer_name: e.customer_name.as_deref().map(Box::from),
                    subject: e.subject.as_str().into(),
                    language: e.language,
                    received_at: e.received_at,
                    first_seen_at: e.first_seen_at,
                    deadline_at: None,
                    warn_at: Box::default(),
                    responded_at: None,
                    response_seconds: None,
                    response_kind: None,
                    responder: None,
                    response_id: None,
                    state: InquiryState::Excluded,
                    sla: SlaStatus::Excluded,
                    excluded_reason: Some(e.reason),
                    excluded_detail: Some(e.detail.as_str().into()),
                    policy: None,
                    kind: None,
                    follow_ups: 0,
                    breached_at: None,
                    alerts: Vec::new(),
                    call: None,
                    reply_to: Box::default(),
                    language_source: None,
                    follow_up_messages: FollowUps::default(),
                    taken: None,
                    merged_into: None,
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
                if let Some(thread) = &thread {
                    self.index_message(external_id, thread, Some(digest));
                }
                let plain_id = external_id.split('#').next().unwrap_or(external_id);
                self.sender_of.insert(key64(plain_id), key64(customer));
                if let Some(i) = self.inquiries.get_mut(inquiry_id) {
                    i.follow_ups += 1;
                    i.follow_up_messages.insert(FollowUp {
                        external_id: external_id.clone(),
                        digest: digest.clone(),
                        received_at: *received_at,
                        first_seen_at: *first_seen_at,
                        customer: customer.clone(),
                        subject: subject.clone(),
                    });
                }
            }
            Event::MessageLinked {
                external_id,
                digest,
                thread_id,
                role,
                at,
            } => {
                self.index_message(external_id, thread_id, Some(digest));
                if *role == LinkRole::Reply {
                    let thread = self.share_thread(thread_id);
                    self.record_of(&thread).replied(*at);
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
                // A reply whose thread is unknown, or a callback with nothing open then, waits
                // for the message or call it answers to be read.
                if matches!(
                    reason,
                    UnmatchedReason::UnknownThread | UnmatchedReason::CallbackUnrelated
                ) {
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
                    let evidence = e.external_id.as_deref();
                    let response_id = evidence.map(|x| share_message(&self.thread_of, i, x));
                    i.responder = Some(share(&mut self.responders, &e.responder));
                    i.response_id = response_id;
                    i.sla = match e.outcome {
                        Outcome::Met => SlaStatus::Met,
                        Outcome::Missed => SlaStatus::Missed,
                    };
                    // Customer messages delivered after the response are not part of this
                    // clock (they open the next one, see `open_from_later_follow_ups`).
                    i.follow_up_messages.retain(|f| f.received_at <= e.at);
                    i.follow_ups = i.follow_up_messages.len() as u32;
                    let thread_id = i.thread_id.clone();
                    if self.open_in_thread.get(&*thread_id).map(|o| &o.id) == Some(&e.inquiry_id) {
                        self.open_in_thread.remove(&*thread_id);
                    }
                    let record = self.record_of(&thread_id);
                    record.answered(&e.inquiry_id);
                    // A response in a thread makes later customer messages next replies.
                    record.replied(e.at);
                }
            }
            Event::InquiryReclassified {
                inquiry_id, kind, ..
            } => {
                if let Some(i) = self.inquiries.get_mut(inquiry_id) {
                    i.kind = Some(*kind);
                }
            }
            Event::InquiryMerged {
                inquiry_id, into, ..
            } => {
                if let Some(i) = self.inquiries.get_mut(inquiry_id) {
                    i.merged_into = Some(Box::new(into.clone()));
                    i.state = InquiryState::Merged;
                    let thread = i.thread_id.clone();
                    let (received_at, channel, source) =
                        (i.received_at, i.channel, i.source.clone());
                    self.unlist(inquiry_id, received_at, channel, &source);
                    if self.open_in_thread.get(&*thread).map(|o| &o.id) == Some(inquiry_id) {
                        self.open_in_thread.remove(&*thread);
                    }
                    if let Some(record) = self.threads.get_mut(&*thread) {
                        record.unanswer(inquiry_id);
                    }
                }
            }
            Event::InquiryRevised {
                inquiry_id,
                to,
                response,
                evidence,
                ..
            } => {
                if let Some(i) = self.inquiries.get_mut(inquiry_id) {
                    i.sla = match to {
                        Outcome::Met => SlaStatus::Met,
                        Outcome::Missed => SlaStatus::Missed,
                    };
                    if let Some(r) = response {
                        i.responded_at = Some(r.at);
                        i.response_seconds = Some(r.response_seconds);
                        i.response_kind = Some(r.kind);
                        let response_id = evidence
                            .as_deref()
                            .map(|x| share_message(&self.thread_of, i, x));
                        i.responder = Some(share(&mut self.responders, &r.responder));
                        i.response_id = response_id;
                        i.follow_up_messages.retain(|f| f.received_at <= r.at);
                        i.follow_ups = i.follow_up_messages.len() as u32;
                    }
                }
            }
            Event::ReplyAwaiting {
                external_id,
                awaiting,
                at,
                responder,
                recipients,
            } => {
                for parent in awaiting {
                    self.pending_replies
                        .entry(parent.clone())
                        .or_default()
                        .push(PendingReply {
                            external_id: external_id.clone(),
                            at: *at,
                            responder: responder.clone(),
                            recipients: recipients.clone(),
                        });
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
            | Event::LeaderChanged { .. }
            | Event::MonitorHeartbeat { .. }
            | Event::MonitorStopped { .. }
            | Event::SourceDown { .. }
            | Event::SourceUp { .. } => {}
            // The ledger's own seals and checks: no inquiry state.
            Event::LedgerCheckpoint { .. }
            | Event::LedgerVerified { .. }
            | Event::EvidenceContradicted { .. } => {}
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
            Event::InquiryEscalated {
                inquiry_id,
                level,
                at,
            } => {
                if let Some(i) = self.inquiries.get_mut(inquiry_id) {
                    push_mark(
                        &mut i.alerts,
                        AlertMark::raised(AlertStage::Escalation, Some(*level), *at),
                    );
                }
            }
            Event::InquiryTaken {
                inquiry_id,
                by,
                at,
                until,
                ..
            } => {
                if let Some(i) = self.inquiries.get_mut(inquiry_id)
                    && i.state == InquiryState::Open
                {
                    i.taken = Some(Box::new(Taken {
                        by: by.clone(),
                        at: *at,
                        until: *until,
                    }));
                }
            }
            Event::AlertFailed { .. } | Event::MonitorAlertFailed { .. } => {}
            Event::MonitorAlertRaised {
                alert,
                problem,
                subject,
                detail,
                at,
            } => {
                self.monitor_alerts
                    .entry(alert.clone())
                    .or_insert_with(|| MonitorAlert {
                        id: alert.clone(),
                        problem: *problem,
                        subject: subject.clone(),
                        detail: detail.clone(),
                        raised_at: *at,
                        delivered_at: None,
                        reached: Vec::new(),
                        escalated_at: None,
                    });
            }
            Event::MonitorAlertResolved { alert, .. } => {
                self.monitor_alerts.remove(alert);
            }
            Event::MonitorAlertEscalated { alert, at } => {
                if let Some(m) = self.monitor_alerts.get_mut(alert) {
                    m.escalated_at.get_or_insert(*at);
                }
            }
            Event::MonitorAlertDelivered {
                alert,
                kind: AlertKind::Breach,
                recipients,
                at,
                ..
            } => {
                if let Some(m) = self.monitor_alerts.get_mut(alert) {
                    m.delivered_at.get_or_insert(*at);
                    for r in recipients {
                        if !m.reached.contains(r) {
                            m.reached.push(r.clone());
                        }
                    }
                }
            }
            // A resolution's delivery: the alert is gone already.
            Event::MonitorAlertDelivered { .. } => {}
        }
    }

    /// The shared copy of a policy version (one per version, not one per inquiry).
    fn share_policy(&mut self, version: &str) -> Arc<str> {
        share(&mut self.policy_versions, version)
    }

    /// Takes an inquiry out of the received-time index (merged, or evicted).
    pub(super) fn unlist(
        &mut self,
        id: &crate::domain::InquiryId,
        received_at: chrono::DateTime<chrono::Utc>,
        channel: Channel,
        source: &str,
    ) {
        if self.by_received.remove(&(received_at, id.clone())) && channel == Channel::Phone {
            unlist_phone(&mut self.phone_listed, source);
        }
    }

    fn insert(&mut self, inquiry: Inquiry) {
        self.note_inquiry(&inquiry.thread_id.clone(), &inquiry.id);
        if self
            .by_received
            .insert((inquiry.received_at, inquiry.id.clone()))
            && inquiry.channel == Channel::Phone
        {
            *self.phone_listed.entry(inquiry.source.clone()).or_default() += 1;
        }
        self.inquiries.insert(inquiry.id.clone(), Box::new(inquiry));
    }
}

/// The copy of `text` in `set`, added when missing: a few distinct values (policy versions,
/// sources, responders) held once, not once per inquiry.
fn share(set: &mut HashSet<Arc<str>>, text: &str) -> Arc<str> {
    if let Some(shared) = set.get(text) {
        return shared.clone();
    }
    let shared: Arc<str> = Arc::from(text);
    set.insert(shared.clone());
    shared
}

/// The text of a response's evidence (a reply's Message-ID, a call id), shared with the copy
/// memory already holds when there is one: the inquiry's own call, or the reply as indexed to
/// its thread.
fn share_message(thread_of: &HashMap<Arc<str>, Arc<str>>, inquiry: &Inquiry, id: &str) -> Arc<str> {
    if *inquiry.external_id == *id {
        return inquiry.external_id.clone();
    }
    match thread_of.get_key_value(id) {
        Some((shared, _)) => shared.clone(),
        None => Arc::from(id),
    }
}

/// One phone inquiry of `source` less in the received-time index.
fn unlist_phone(listed: &mut HashMap<Arc<str>, usize>, source: &str) {
    if let Some(n) = listed.get_mut(source) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            listed.remove(source);
        }
    }
}

/// Adds an alert mark with no spare capacity: an open inquiry holds two or three marks, and
/// a hundred thousand of them are kept at once on a bad day.
fn push_mark(marks: &mut Vec<AlertMark>, mark: AlertMark) {
    marks.reserve_exact(1);
    marks.push(mark);
}
