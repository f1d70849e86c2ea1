//! The phone rules (DESIGN.md "Rules that decide the numbers", `phone-feeds.md` §5).
//!
//! - An inbound call to a support line is an inquiry received when it reached the phone system
//!   (`Call::started_at`, the earliest start of the call's records).
//! - Every record of one call shares its `call_id`: the first one read opens the inquiry, later
//!   ones can only answer it. Records of the same call from two feeds (CDR and queue_log) meet on
//!   the same id, so they are one inquiry.
//! - A human pickup answers it. Missed, abandoned and voicemail calls stay open; their customer
//!   key is the E.164 number, their thread `tel:<number>`. A later call from that number while one
//!   is open joins it (the clock keeps running from the oldest); if a person answers that later
//!   call, it answers the open inquiry. A connected outbound call to the number (a callback) at or
//!   after arrival answers it too; one that did not connect, or to a number with nothing open,
//!   answers nothing and is recorded with the reason.
//! - A withheld number opens an inquiry of its own (nothing can merge into it or call it back),
//!   unless the source's configuration excludes it; internal calls and calls to other lines are
//!   excluded with their reason.
//! - Calls read after the callback that answered the inquiry they joined, but placed after it
//!   (call logs are written at hangup, not in call order), open a new inquiry.

use chrono::{DateTime, Utc};

use crate::domain::{Channel, InquiryId};
use crate::phone_number::NumberStatus;
use crate::tracker::event::{
    CallDetails, Contradiction, Event, ExclusionReason, InquiryExcluded, InquiryKind,
    InquiryOpened, LanguageSource, LinkRole, ResponseKind, UnmatchedReason,
};
use crate::tracker::inquiry::Inquiry;
use crate::tracker::observation::{Call, CallDirection, CallIgnore};
use crate::tracker::revision::{Answer, Place};
use crate::tracker::state::Tracker;

/// The external id of a call: the same for every record of it, whichever feed read it.
pub fn call_external_id(call: &Call) -> String {
    format!("call:{}", call.call_id)
}

/// The thread of a customer number; withheld callers get one thread per call.
pub(crate) fn thread_of_call(call: &Call) -> String {
    if call.number.is_withheld() {
        format!("tel:withheld:{}", call.call_id)
    } else {
        format!("tel:{}", call.number.key())
    }
}

/// The call's facts kept on the inquiry it opens.
fn call_details(call: &Call) -> CallDetails {
    CallDetails {
        line: call.line.clone(),
        queue_entered_at: call.queue_entered_at,
        withheld: call.number.is_withheld(),
    }
}

/// What the inquiry list shows as its subject.
fn subject_of(call: &Call) -> String {
    let mut s = if call.number.is_withheld() {
        "Call from a withheld number (cannot be called back)".to_string()
    } else {
        format!("Call from {}", call.number.key())
    };
    if let Some(line) = &call.line {
        s.push_str(&format!(" on {line}"));
    }
    if let Some(q) = call.queue_entered_at {
        let ivr = (q - call.started_at).num_seconds().max(0);
        s.push_str(&format!(
            ", queued {} ({ivr} s before)",
            q.format("%Y-%m-%dT%H:%M:%SZ")
        ));
    }
    match call.number.status {
        NumberStatus::Unverified => s.push_str(" [number unverified]"),
        NumberStatus::Unparseable => {
            s.push_str(&format!(" [number unparseable: {:?}]", call.number.raw))
        }
        NumberStatus::Valid | NumberStatus::Withheld => {}
    }
    s
}

impl Tracker {
    /// Any call record; `answered` is the human pickup (or callback connection) it reports.
    pub(super) fn decide_call(&self, call: &Call, answered: Option<DateTime<Utc>>) -> Vec<Event> {
        // A pickup before the call started contradicts the record itself: flagged, and it
        // answers nothing.
        let contradiction =
            answered
                .filter(|at| *at < call.started_at)
                .map(|at| Event::EvidenceContradicted {
                    source: call.source.clone(),
                    external_id: format!("call:{}:{}", call.source, call.record_id),
                    kind: Contradiction::AnsweredBeforeStart,
                    detail: format!(
                        "call {} picked up {} before it started {}",
                        call.call_id,
                        at.format("%Y-%m-%dT%H:%M:%SZ"),
                        call.started_at.format("%Y-%m-%dT%H:%M:%SZ")
                    ),
                    at: call.seen_at,
                });
        let answered = answered.filter(|at| *at >= call.started_at);
        let mut events = match call.direction {
            CallDirection::Inbound => self.decide_inbound_call(call, answered),
            CallDirection::Outbound => self.decide_outbound_call(call, answered),
        };
        // With the contact map on, the same conversation may answer the customer's mail.
        if let Some(at) = answered
            && self.contacts().answers_across_channels()
        {
            let record = match call.direction {
                CallDirection::Inbound => call_external_id(call),
                CallDirection::Outbound => format!("call:{}:{}", call.source, call.record_id),
            };
            let across = self.answer_email_by_call(call, at, &record);
            if !across.is_empty() {
                // A callback that answered mail is linked, not "unrelated".
                if let [Event::ReplyUnmatched { at, .. }] = events.as_slice() {
                    let linked_at = *at;
                    events = vec![Event::MessageLinked {
                        external_id: record.clone(),
                        digest: record.clone(),
                        thread_id: format!("tel:{}", call.number.key()),
                        at: linked_at,
                        role: LinkRole::Reply,
                    }];
                }
                events.extend(across);
            }
        }
        events.extend(contradiction);
        events
    }

    fn decide_inbound_call(&self, call: &Call, answered: Option<DateTime<Utc>>) -> Vec<Event> {
        let external_id = call_external_id(call);
        if let Some(thread) = self.thread_of.get(external_id.as_str()) {
            // Another record of a call already read: its pickup answers the clock that ran then.
            return match answered {
                Some(at) => {
                    self.answer_call_clock(thread, &external_id, &pickup(call, at, &external_id))
                }
                None => Vec::new(),
            };
        }
        let customer = call.number.key();
        let thread_id = thread_of_call(call);
        let language = call.language.unwrap_or(self.rules.desk.default_language);
        if let Some(ignore) = call.ignore {
            let (reason, detail) = match ignore {
                CallIgnore::Internal => (ExclusionReason::InternalCall, "internal call"),
                CallIgnore::NotSupportLine => (
                    ExclusionReason::NotSupportLine,
                    "not a configured support line",
                ),
                CallIgnore::Withheld => (
                    ExclusionReason::WithheldNumber,
                    "withheld number, excluded by configuration",
                ),
            };
            return vec![Event::InquiryExcluded(Box::new(InquiryExcluded {
                inquiry_id: InquiryId::derive(Channel::Phone, &external_id),
                channel: Channel::Phone,
                source: call.source.clone(),
                external_id,
                thread_id,
                digest: None,
                customer,
                customer_name: call.name.clone(),
                subject: subject_of(call),
                language,
                received_at: call.started_at,
                first_seen_at: call.seen_at,
                reason,
                detail: format!(
                    "{detail} (number {:?}, line {})",
                    call.number.raw,
                    call.line.as_deref().unwrap_or("-")
                ),
            }))];
        }

        // The first answer of this call's own clock: its pickup, or a callback read before it.
        let own_answer = answered
            .filter(|at| call.started_at <= *at)
            .map(|at| pickup(call, at, &external_id));
        let callback = self.pending_callback(&thread_id, call);
        let answer = match (own_answer, callback) {
            (Some(a), Some(b)) => Some(if b.at < a.at { b } else { a }),
            (a, b) => a.or(b),
        };
        match self.place_in_thread(&thread_id, call.started_at) {
            Place::Joins(target) => {
                // Another call from a number still owed an answer (or answered only after this
                // call came in): one inquiry, oldest clock.
                let mut events = vec![Event::FollowUpAttached {
                    inquiry_id: target.id.clone(),
                    external_id: external_id.clone(),
                    digest: external_id.clone(),
                    received_at: call.started_at,
                    first_seen_at: call.seen_at,
                    customer,
                    subject: subject_of(call),
                }];
                if let Some(at) = answered.filter(|at| target.received_at <= *at) {
                    let pickup = pickup(call, at, &external_id);
                    events.extend(self.pick_up(target, &external_id, &pickup));
                }
                return events;
            }
            Place::Precedes(later) if answer.as_ref().is_none_or(|a| a.at >= later.received_at) => {
                return self.open_call_before(call, later, answer, external_id, thread_id);
            }
            Place::Precedes(_) | Place::Opens { .. } => {}
        }

        let mut events = Vec::new();
        let opened = self.opened_by_call(call, external_id, thread_id, &mut events);
        let (inquiry_id, deadline_at) = (opened.inquiry_id.clone(), opened.deadline_at);
        events.push(Event::InquiryOpened(Box::new(opened)));
        if let Some(answer) = answer {
            events.push(answer.responded(&inquiry_id, call.started_at, deadline_at));
        }
        events
    }

    /// The inquiry a new call opens; the first use of its policy version goes into `events`.
    fn opened_by_call(
        &self,
        call: &Call,
        external_id: String,
        thread_id: String,
        events: &mut Vec<Event>,
    ) -> InquiryOpened {
        let customer = call.number.key();
        let language = call.language.unwrap_or(self.rules.desk.default_language);
        let policy = self
            .rules
            .policies
            .select(Channel::Phone, language, &call.source, &customer);
        let (version, deadline_at, warn_at) =
            self.stamp_policy(policy, call.started_at, call.seen_at, events);
        InquiryOpened {
            inquiry_id: InquiryId::derive(Channel::Phone, &external_id),
            channel: Channel::Phone,
            source: call.source.clone(),
            external_id,
            thread_id,
            digest: None,
            customer,
            customer_name: call.name.clone().filter(|n| !n.trim().is_empty()),
            subject: subject_of(call),
            language,
            language_source: if call.language.is_some() {
                LanguageSource::Line
            } else {
                LanguageSource::Default
            },
            received_at: call.started_at,
            first_seen_at: call.seen_at,
            date_header: None,
            deadline_at,
            reply_to: Vec::new(),
            warn_at,
            policy: version,
            // A new call is always a first inquiry: there is no "next reply" on the phone.
            kind: InquiryKind::First,
            call: Some(call_details(call)),
        }
    }

    /// `call`, read after `later`, came in before it from the same number while `later`'s
    /// clock ran: the clock starts at `call`, which takes `later` over (see
    /// `Tracker::take_over_later_clock`); `later` is merged into it.
    fn open_call_before(
        &self,
        call: &Call,
        later: &Inquiry,
        answer: Option<Answer>,
        external_id: String,
        thread_id: String,
    ) -> Vec<Event> {
        let mut events = vec![Event::InquiryMerged {
            inquiry_id: later.id.clone(),
            into: InquiryId::derive(Channel::Phone, &external_id),
            at: call.seen_at,
            evidence: external_id.clone(),
        }];
        let opened = self.opened_by_call(call, external_id, thread_id, &mut events);
        let rest = self.take_over_later_clock(&opened, later, answer, InquiryKind::First);
        events.push(Event::InquiryOpened(Box::new(opened)));
        events.extend(rest);
        events
    }

    /// The earliest callback read before `call`, to its number, that connected at or after
    /// the call came in: it answers the call's inquiry.
    fn pending_callback(&self, thread_id: &str, call: &Call) -> Option<Answer> {
        let number = call.number.key();
        self.pending_replies
            .get(thread_id)?
            .iter()
            .filter(|r| r.at >= call.started_at && r.recipients.contains(&number))
            .min_by_key(|r| r.at)
            .map(|r| Answer {
                kind: ResponseKind::Phone,
                ..r.answer()
            })
    }

    /// A callback: answers the open inquiry of the number it went to when it connected.
    fn decide_outbound_call(&self, call: &Call, answered: Option<DateTime<Utc>>) -> Vec<Event> {
        let record = format!("call:{}:{}", call.source, call.record_id);
        if self.seen_digests.contains(&super::state::key64(&record)) {
            return Vec::new();
        }
        let responder = call.agent.clone().unwrap_or_default();
        let at = answered.unwrap_or(call.started_at);
        let unmatched = |reason, references| {
            vec![Event::ReplyUnmatched {
                external_id: record.clone(),
                digest: record.clone(),
                source: call.source.clone(),
                at,
                reason,
                responder: responder.clone(),
                references,
                recipients: vec![call.number.key()],
            }]
        };
        if call.number.is_withheld() {
            return unmatched(UnmatchedReason::CallbackUnrelated, Vec::new());
        }
        let Some(connected) = answered else {
            return unmatched(UnmatchedReason::CallbackNotConnected, Vec::new());
        };
        let thread_id = thread_of_call(call);
        let answer = Answer {
            at: connected,
            seen_at: call.seen_at,
            responder: responder.clone(),
            kind: ResponseKind::Phone,
            evidence: Some(record.clone()),
        };
        let answered = self.answer_running_clock(&thread_id, &answer, InquiryKind::First);
        if answered.is_empty() {
            // Nothing of that number's was waiting then, as far as read: the callback waits for
            // a call placed before it and read later (logs are written at hangup, APIs return
            // newest first).
            return unmatched(UnmatchedReason::CallbackUnrelated, vec![thread_id]);
        }
        let mut events = vec![Event::MessageLinked {
            external_id: record.clone(),
            digest: record.clone(),
            thread_id,
            at: connected,
            role: LinkRole::Reply,
        }];
        events.extend(answered);
        events
    }
}

/// A human pickup of `call` at `at` (or its connection, for a callback): the answer it is.
fn pickup(call: &Call, at: DateTime<Utc>, record: &str) -> Answer {
    Answer {
        at,
        seen_at: call.seen_at,
        responder: call
            .agent
            .clone()
            .unwrap_or_else(|| format!("phone:{}", call.source)),
        kind: ResponseKind::Phone,
        evidence: Some(record.to_string()),
    }
}

/// `inquiry` (of either channel) answered at `at` by `call`, whose record `record` is the
/// evidence.
pub(super) fn responded_by_call(
    inquiry: &Inquiry,
    at: DateTime<Utc>,
    call: &Call,
    record: &str,
) -> Option<Event> {
    Some(pickup(call, at, record).responded(&inquiry.id, inquiry.received_at, inquiry.deadline_at?))
}
