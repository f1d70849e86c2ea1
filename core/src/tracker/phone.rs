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
    CallDetails, Event, ExclusionReason, InquiryExcluded, InquiryKind, InquiryOpened,
    InquiryResponded, LanguageSource, LinkRole, Outcome, ResponseKind, UnmatchedReason,
};
use crate::tracker::inquiry::{Inquiry, InquiryState};
use crate::tracker::observation::{Call, CallDirection, CallIgnore};
use crate::tracker::state::Tracker;

/// The external id of a call: the same for every record of it, whichever feed read it.
pub fn call_external_id(call: &Call) -> String {
    format!("call:{}", call.call_id)
}

/// The thread of a customer number; withheld callers get one thread per call.
fn thread_of_call(call: &Call) -> String {
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
        events
    }

    fn decide_inbound_call(&self, call: &Call, answered: Option<DateTime<Utc>>) -> Vec<Event> {
        let external_id = call_external_id(call);
        if let Some(thread) = self.thread_of.get(external_id.as_str()) {
            // Another record of a call already read: it can only answer what is open.
            return match (answered, self.open_inquiry(thread)) {
                (Some(at), Some(open)) if open.received_at <= at => {
                    self.respond_by_call(open, at, call, &external_id)
                }
                _ => Vec::new(),
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

        if let Some(open) = self.open_inquiry(&thread_id) {
            // Another call from a number that is still owed an answer: one inquiry, oldest clock.
            let mut events = vec![Event::FollowUpAttached {
                inquiry_id: open.id.clone(),
                external_id: external_id.clone(),
                digest: external_id.clone(),
                received_at: call.started_at,
                first_seen_at: call.seen_at,
                customer,
                subject: subject_of(call),
            }];
            if let Some(at) = answered
                && open.received_at <= at
            {
                events.extend(self.respond_by_call(open, at, call, &external_id));
            }
            return events;
        }

        let policy = self
            .rules
            .policies
            .select(Channel::Phone, language, &call.source, &customer);
        let mut events = Vec::new();
        let (version, deadline_at, warn_at) =
            self.stamp_policy(policy, call.started_at, call.seen_at, &mut events);
        let inquiry_id = InquiryId::derive(Channel::Phone, &external_id);
        events.push(Event::InquiryOpened(Box::new(InquiryOpened {
            inquiry_id: inquiry_id.clone(),
            channel: Channel::Phone,
            source: call.source.clone(),
            external_id: external_id.clone(),
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
        })));
        if let Some(at) = answered
            && call.started_at <= at
        {
            let met = at <= deadline_at;
            events.push(responded(
                &inquiry_id,
                call.started_at,
                met,
                at,
                call,
                &external_id,
            ));
        }
        events
    }

    /// A callback: answers the open inquiry of the number it went to when it connected.
    fn decide_outbound_call(&self, call: &Call, answered: Option<DateTime<Utc>>) -> Vec<Event> {
        let record = format!("call:{}:{}", call.source, call.record_id);
        if self.seen_digests.contains(&super::state::key64(&record)) {
            return Vec::new();
        }
        let responder = call.agent.clone().unwrap_or_default();
        let at = answered.unwrap_or(call.started_at);
        let unmatched = |reason| {
            vec![Event::ReplyUnmatched {
                external_id: record.clone(),
                digest: record.clone(),
                source: call.source.clone(),
                at,
                reason,
                responder: responder.clone(),
                references: Vec::new(),
                recipients: vec![call.number.key()],
            }]
        };
        if call.number.is_withheld() {
            return unmatched(UnmatchedReason::CallbackUnrelated);
        }
        let thread_id = thread_of_call(call);
        let Some(open) = self.open_inquiry(&thread_id) else {
            return unmatched(UnmatchedReason::CallbackUnrelated);
        };
        let Some(connected) = answered else {
            return unmatched(UnmatchedReason::CallbackNotConnected);
        };
        if connected < open.received_at {
            // A call placed before the customer called: it cannot answer that call.
            return unmatched(UnmatchedReason::CallbackUnrelated);
        }
        let mut events = vec![Event::MessageLinked {
            external_id: record.clone(),
            digest: record.clone(),
            thread_id,
            at: connected,
            role: LinkRole::Reply,
        }];
        events.extend(self.respond_by_call(open, connected, call, &record));
        events
    }

    fn open_inquiry(&self, thread: &str) -> Option<&Inquiry> {
        self.open_in_thread
            .get(thread)
            .and_then(|open| self.get(&open.id))
            .filter(|i| i.state == InquiryState::Open)
    }

    /// Answers `inquiry` at `at`, then reopens from calls attached to it that were placed after
    /// `at` (read before the answer because logs are written at hangup).
    fn respond_by_call(
        &self,
        inquiry: &Inquiry,
        at: DateTime<Utc>,
        call: &Call,
        external_id: &str,
    ) -> Vec<Event> {
        let mut events = vec![responded_by_call(inquiry, at, call, external_id)];
        // A call placed after the answer is a new inquiry of its own.
        events.extend(self.open_from_later_follow_ups(inquiry, at, InquiryKind::First));
        events
    }
}

/// `inquiry` (of either channel) answered at `at` by `call`, whose record `record` is the
/// evidence.
pub(super) fn responded_by_call(
    inquiry: &Inquiry,
    at: DateTime<Utc>,
    call: &Call,
    record: &str,
) -> Event {
    // Met when the evidence says so, even if the breach fired first (see `InquiryRevised`).
    let met = inquiry.deadline_at.is_some_and(|d| at <= d);
    responded(&inquiry.id, inquiry.received_at, met, at, call, record)
}

fn responded(
    inquiry_id: &InquiryId,
    received_at: DateTime<Utc>,
    met: bool,
    at: DateTime<Utc>,
    call: &Call,
    external_id: &str,
) -> Event {
    Event::InquiryResponded(Box::new(InquiryResponded {
        inquiry_id: inquiry_id.clone(),
        at,
        response_seconds: (at - received_at).num_seconds().max(0),
        kind: ResponseKind::Phone,
        responder: call
            .agent
            .clone()
            .unwrap_or_else(|| format!("phone:{}", call.source)),
        external_id: Some(external_id.to_string()),
        outcome: if met { Outcome::Met } else { Outcome::Missed },
        via: None,
        note: None,
    }))
}
