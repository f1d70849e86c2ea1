//! Evidence read out of order, for every channel (DESIGN.md "Evidence order"; the rule is
//! written in the module doc of `tracker`).
//!
//! A conversation — an email thread, or the calls of one number — holds inquiries one after the
//! other, each a clock that runs from its first message to its first response. Whatever order
//! messages, replies, call records and callbacks are read in, each is placed on the clock that
//! ran at its own time:
//!
//! - a customer message or call joins the inquiry whose clock ran when it arrived, or starts the
//!   older clock that a later-read inquiry turns out to belong to ([`Place`]);
//! - a response answers the inquiry whose clock ran when it was given, and when that inquiry
//!   was answered later by a response read earlier, it becomes the first response
//!   ([`Tracker::answer_running_clock`]).
//!
//! The ledger keeps every first decision; the corrections are `InquiryRevised` and
//! `InquiryMerged` events after them.

use chrono::{DateTime, Utc};

use crate::domain::InquiryId;
use crate::tracker::event::{
    Event, InquiryKind, InquiryOpened, InquiryResponded, Outcome, ResponseKind, RevisedResponse,
    RevisionReason,
};
use crate::tracker::inquiry::{Inquiry, InquiryState, SlaStatus};
use crate::tracker::state::Tracker;

/// A response as evidence: when, by whom, how, and the record that shows it.
#[derive(Debug, Clone)]
pub(super) struct Answer {
    pub at: DateTime<Utc>,
    /// When it was read: the instant a revision it causes is decided.
    pub seen_at: DateTime<Utc>,
    pub responder: String,
    pub kind: ResponseKind,
    /// The reply's Message-ID, the callback's record or the picked-up call's id.
    pub evidence: Option<String>,
}

impl Answer {
    /// The `InquiryResponded` of an inquiry received at `received_at` with `deadline_at`: met
    /// when the evidence says so, even if the breach fired first (see `Tracker::decide`).
    pub fn responded(
        &self,
        inquiry_id: &InquiryId,
        received_at: DateTime<Utc>,
        deadline_at: DateTime<Utc>,
    ) -> Event {
        Event::InquiryResponded(Box::new(InquiryResponded {
            inquiry_id: inquiry_id.clone(),
            at: self.at,
            response_seconds: (self.at - received_at).num_seconds().max(0),
            kind: self.kind,
            responder: self.responder.clone(),
            external_id: self.evidence.clone(),
            outcome: outcome(self.at <= deadline_at),
            via: None,
            note: None,
        }))
    }

    /// The response `inquiry` already has, if answered.
    fn of(inquiry: &Inquiry) -> Option<Answer> {
        let at = inquiry.responded_at?;
        Some(Answer {
            at,
            seen_at: at,
            responder: inquiry.responder.as_deref().unwrap_or_default().to_string(),
            kind: inquiry.response_kind.unwrap_or(ResponseKind::Email),
            evidence: inquiry.response_id.as_deref().map(str::to_string),
        })
    }
}

fn outcome(met: bool) -> Outcome {
    if met { Outcome::Met } else { Outcome::Missed }
}

/// Where a customer message or call arriving at some instant belongs in its conversation.
pub(super) enum Place<'a> {
    /// The clock of this inquiry ran then: it joins it as a follow-up.
    Joins(&'a Inquiry),
    /// This inquiry began after it, and its clock still ran: it starts the older clock.
    Precedes(&'a Inquiry),
    /// Every clock had stopped: it opens a new inquiry, a next reply when the desk had answered
    /// in the conversation before it.
    Opens { answered_before: bool },
}

impl Tracker {
    /// The open and answered inquiries of `thread`, oldest first.
    fn clocks(&self, thread: &str) -> Vec<&Inquiry> {
        let mut clocks: Vec<&Inquiry> = self
            .threads
            .get(thread)
            .into_iter()
            .flat_map(|t| t.answered.iter())
            .chain(self.open_in_thread.get(thread).map(|o| &o.id))
            .filter_map(|id| self.get(id))
            .collect();
        clocks.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
        clocks
    }

    /// When the customer message or call `id` of `thread` arrived, if it belongs to one of the
    /// thread's open or answered inquiries.
    pub(super) fn delivered_at_of(&self, thread: &str, id: &str) -> Option<DateTime<Utc>> {
        self.clocks(thread)
            .into_iter()
            .flat_map(|i| i.members())
            .find(|m| m.0 == id)
            .map(|m| m.1)
    }

    /// Where a customer message or call arriving at `at` belongs in `thread`: the earliest
    /// inquiry whose clock still ran at `at` (open, or answered at or after `at`: at the same
    /// second the customer's message comes first) takes it as a follow-up, or — received after
    /// `at` — turns out to be part of the older clock it starts. Otherwise it opens an inquiry.
    pub(super) fn place_in_thread(&self, thread: &str, at: DateTime<Utc>) -> Place<'_> {
        let clocks = self.clocks(thread);
        let running = clocks
            .iter()
            .find(|i| i.state == InquiryState::Open || i.responded_at.is_some_and(|r| r >= at));
        match running {
            Some(inquiry) if inquiry.received_at <= at => Place::Joins(inquiry),
            Some(inquiry) => Place::Precedes(inquiry),
            None => Place::Opens {
                answered_before: self.answered_among(&clocks, thread, at),
            },
        }
    }

    /// Whether the desk answered in `thread` before `at`, so that a customer message then is a
    /// next reply: an inquiry answered earlier, or (no inquiry at all) a reply linked to the
    /// thread.
    pub(super) fn answered_before(&self, thread: &str, at: DateTime<Utc>) -> bool {
        self.answered_among(&self.clocks(thread), thread, at)
    }

    /// [`Tracker::answered_before`] with `thread`'s clocks already at hand.
    fn answered_among(&self, clocks: &[&Inquiry], thread: &str, at: DateTime<Utc>) -> bool {
        if clocks.is_empty() {
            self.threads
                .get(thread)
                .and_then(|t| t.replied_at)
                .is_some_and(|r| r < at)
        } else {
            clocks
                .iter()
                .any(|i| i.responded_at.is_some_and(|r| r < at))
        }
    }

    /// The inquiry of `thread` whose clock ran when a response was given at `at`: received at
    /// or before it, and open or answered only after it.
    pub(super) fn clock_running_at(&self, thread: &str, at: DateTime<Utc>) -> Option<&Inquiry> {
        self.clocks(thread).into_iter().find(|i| {
            i.received_at <= at
                && (i.state == InquiryState::Open || i.responded_at.is_some_and(|r| r > at))
        })
    }

    /// A response given at `answer.at` in `thread`: it answers the inquiry whose clock ran
    /// then. If that inquiry was answered later (by a response read before this one), this is
    /// its first response: the outcome is revised, and the messages that arrived after it open
    /// the next inquiry, which the displaced response answers if it came after them. Nothing
    /// when no clock ran then.
    pub(super) fn answer_running_clock(
        &self,
        thread: &str,
        answer: &Answer,
        next_kind: InquiryKind,
    ) -> Vec<Event> {
        match self.clock_running_at(thread, answer.at) {
            Some(inquiry) => self.answer_clock(inquiry, answer, next_kind),
            None => Vec::new(),
        }
    }

    /// A person picked up the call `call` at `answer.at`: it answers the inquiry the call
    /// belongs to (it opened it or joined it), never another one.
    pub(super) fn answer_call_clock(
        &self,
        thread: &str,
        call: &str,
        answer: &Answer,
    ) -> Vec<Event> {
        match self.clocks(thread).into_iter().find(|i| i.contains(call)) {
            Some(inquiry) if inquiry.received_at <= answer.at => {
                self.pick_up(inquiry, call, answer)
            }
            _ => Vec::new(),
        }
    }

    /// A person picked up `call`, one of `inquiry`'s, at `answer.at`. When the inquiry was
    /// answered before, the pickup waits: the call may turn out to start the next clock (read
    /// later, an earlier response moves it there), which the pickup then answers.
    pub(super) fn pick_up(&self, inquiry: &Inquiry, call: &str, answer: &Answer) -> Vec<Event> {
        let events = self.answer_clock(inquiry, answer, InquiryKind::First);
        if events.is_empty() && inquiry.responded_at.is_some_and(|r| r < answer.at) {
            return vec![awaiting(answer, call, &inquiry.customer)];
        }
        events
    }

    /// `answer` for `inquiry`: its first response when it is open; when it was answered only
    /// after `answer.at` (by a response read first), `answer` becomes its first response, the
    /// messages that arrived after it open the next inquiry, and the displaced response answers
    /// that one if it came after them. Nothing if it was answered before.
    pub(super) fn answer_clock(
        &self,
        inquiry: &Inquiry,
        answer: &Answer,
        next_kind: InquiryKind,
    ) -> Vec<Event> {
        let Some(deadline_at) = inquiry.deadline_at else {
            return Vec::new();
        };
        let mut events = Vec::new();
        if inquiry.state == InquiryState::Open {
            events.push(answer.responded(&inquiry.id, inquiry.received_at, deadline_at));
            events.extend(self.open_from_later_follow_ups(inquiry, answer.at, next_kind));
        } else if inquiry.responded_at.is_some_and(|r| r > answer.at) {
            events.push(earlier_response(inquiry, answer));
            events.extend(self.open_next_clock(inquiry, answer.at, next_kind));
        }
        events
    }

    /// `opened`, read after `later`, began before it in the same conversation: the clock
    /// starts at `opened`, which takes over `later`'s messages and its response — or, when
    /// `answer` (a response read earlier that answers `opened`) came first, the messages up to
    /// it, the rest opening the next inquiry. Returns the events that follow `opened`'s
    /// `InquiryOpened` (which follows the `InquiryMerged` of `later`).
    pub(super) fn take_over_later_clock(
        &self,
        opened: &InquiryOpened,
        later: &Inquiry,
        answer: Option<Answer>,
        next_kind: InquiryKind,
    ) -> Vec<Event> {
        let first = match (answer, Answer::of(later)) {
            (Some(a), Some(b)) => Some(if a.at < b.at { a } else { b }),
            (a, b) => a.or(b),
        };
        let until = first.as_ref().map(|a| a.at);
        let mut events: Vec<Event> = moved_into(&opened.inquiry_id, later)
            .filter(|e| {
                matches!(e, Event::FollowUpAttached { received_at, .. }
                    if until.is_none_or(|r| *received_at <= r))
            })
            .collect();
        if let Some(first) = first {
            events.push(first.responded(
                &opened.inquiry_id,
                opened.received_at,
                opened.deadline_at,
            ));
            if later.responded_at != Some(first.at) {
                events.extend(self.open_next_clock(later, first.at, next_kind));
            }
        }
        events
    }
}

impl Tracker {
    /// `inquiry` turned out to be answered at `at`, before the response it had: the messages
    /// that arrived after `at` open the next inquiry (`open_from_later_follow_ups`), and the
    /// response it had is placed again. A reply or a callback was given to the conversation: it
    /// answers that next inquiry if it came after its first message (and before any other
    /// answer), or else waits, as a callback read first does, for a call read later. A pickup
    /// answers its own call only: the next inquiry if that call moved there, or else it waits
    /// for that call to open one.
    fn open_next_clock(
        &self,
        inquiry: &Inquiry,
        at: DateTime<Utc>,
        kind: InquiryKind,
    ) -> Vec<Event> {
        let mut next = self.open_from_later_follow_ups(inquiry, at, kind);
        let Some(displaced) = Answer::of(inquiry) else {
            return next;
        };
        // A pickup's evidence is the picked-up call, one of the inquiry's own.
        let pickup = displaced
            .evidence
            .as_deref()
            .filter(|e| inquiry.contains(e));
        let moved = |call: &str| {
            next.iter().any(|e| match e {
                Event::InquiryOpened(o) => o.external_id == call,
                Event::FollowUpAttached { external_id, .. } => external_id == call,
                _ => false,
            })
        };
        let opened = next.iter().find_map(|e| match e {
            Event::InquiryOpened(o) => Some((o.inquiry_id.clone(), o.received_at, o.deadline_at)),
            _ => None,
        });
        let usable = opened.filter(|(_, received_at, _)| match pickup {
            Some(call) => moved(call),
            None => displaced.at >= *received_at,
        });
        match usable {
            Some((id, received_at, deadline_at)) => {
                let response = displaced.responded(&id, received_at, deadline_at);
                let existing = next
                    .iter()
                    .position(|e| matches!(e, Event::InquiryResponded(r) if r.inquiry_id == id));
                match existing {
                    Some(i) => {
                        if matches!(&next[i], Event::InquiryResponded(r) if r.at > displaced.at) {
                            next[i] = response;
                        }
                    }
                    None => next.push(response),
                }
            }
            None => match pickup {
                Some(call) => next.push(awaiting(&displaced, call, &inquiry.customer)),
                None if displaced.kind == ResponseKind::Phone => {
                    next.push(awaiting(&displaced, &inquiry.thread_id, &inquiry.customer))
                }
                None => {}
            },
        }
        self.absorb_later_clocks(inquiry, next)
    }

    /// `next` opens a clock after `inquiry`'s earlier answer. Inquiries of the thread that came
    /// in while that clock ran (it was read after them) belong to it: they are merged into it,
    /// their messages attached and the earliest of their responses kept.
    fn absorb_later_clocks(&self, inquiry: &Inquiry, mut next: Vec<Event>) -> Vec<Event> {
        let Some((id, received_at, deadline_at)) = next.iter().find_map(|e| match e {
            Event::InquiryOpened(o) => Some((o.inquiry_id.clone(), o.received_at, o.deadline_at)),
            _ => None,
        }) else {
            return next;
        };
        let answered_at = |next: &[Event]| {
            next.iter().find_map(|e| match e {
                Event::InquiryResponded(r) if r.inquiry_id == id => Some((r.at, r.clone())),
                _ => None,
            })
        };
        let mut answer = answered_at(&next).map(|(at, _)| at);
        let mut merged = Vec::new();
        let mut attached = Vec::new();
        let mut earliest: Option<Answer> = None;
        for later in self.clocks(&inquiry.thread_id) {
            if later.id == inquiry.id || later.received_at <= received_at {
                continue;
            }
            if answer.is_some_and(|a| later.received_at > a) {
                break;
            }
            merged.push(Event::InquiryMerged {
                inquiry_id: later.id.clone(),
                into: id.clone(),
                at: later.first_seen_at,
                evidence: inquiry.external_id.to_string(),
            });
            attached.extend(moved_into(&id, later));
            if let Some(theirs) = Answer::of(later)
                && answer.is_none_or(|a| theirs.at < a)
            {
                answer = Some(theirs.at);
                earliest = Some(theirs);
            }
        }
        if merged.is_empty() {
            return next;
        }
        if let Some(theirs) = earliest {
            next.retain(|e| !matches!(e, Event::InquiryResponded(r) if r.inquiry_id == id));
            next.push(theirs.responded(&id, received_at, deadline_at));
        }
        // The merges first: an open inquiry merged leaves its thread's open slot to `next`.
        merged.extend(next);
        merged.extend(attached);
        merged
    }
}

/// `later`'s messages or calls, attached to `into` (their digests were indexed when read).
fn moved_into<'a>(into: &'a InquiryId, later: &'a Inquiry) -> impl Iterator<Item = Event> + 'a {
    later.members().map(
        move |(external_id, received_at, first_seen_at, customer, subject)| {
            Event::FollowUpAttached {
                inquiry_id: into.clone(),
                external_id,
                digest: String::new(),
                received_at,
                first_seen_at,
                customer: customer.to_string(),
                subject: subject.to_string(),
            }
        },
    )
}

/// `inquiry`, answered later, was first answered by `answer`.
fn earlier_response(inquiry: &Inquiry, answer: &Answer) -> Event {
    let from = outcome(inquiry.sla == SlaStatus::Met);
    Event::InquiryRevised {
        inquiry_id: inquiry.id.clone(),
        at: answer.seen_at,
        reason: RevisionReason::EarlierResponse,
        from,
        to: outcome(inquiry.deadline_at.is_some_and(|d| answer.at <= d)),
        evidence: answer.evidence.clone(),
        response: Some(Box::new(RevisedResponse {
            at: answer.at,
            response_seconds: (answer.at - inquiry.received_at).num_seconds().max(0),
            kind: answer.kind,
            responder: answer.responder.clone(),
        })),
    }
}

/// `answer` waits for `id` (a message or call, or a number's thread) to open an inquiry it
/// answers.
fn awaiting(answer: &Answer, id: &str, customer: &str) -> Event {
    Event::ReplyAwaiting {
        external_id: answer.evidence.clone().unwrap_or_default(),
        awaiting: vec![id.to_string()],
        at: answer.at,
        responder: answer.responder.clone(),
        recipients: vec![customer.to_string()],
    }
}
