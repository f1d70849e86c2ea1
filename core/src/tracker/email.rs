//! The email rules: an inbound message opens an inquiry, is excluded with its reason, or attaches
//! to an open one as a follow-up; the desk's own mail answers the inquiries of its thread.
//! DESIGN.md "What is an inquiry", "Threads" and "What is a response".

use chrono::{DateTime, Utc};

use crate::domain::{Channel, InquiryId};
use crate::tracker::classify::{OutboundKind, classify_inbound, classify_outbound};
use crate::tracker::event::{
    Event, InquiryExcluded, InquiryKind, InquiryOpened, InquiryResponded, LinkRole, Outcome,
    ResponseKind, RevisedResponse, RevisionReason, UnmatchedReason,
};
use crate::tracker::inquiry::{Inquiry, InquiryState, SlaStatus};
use crate::tracker::language::detect_language;
use crate::tracker::observation::Mail;
use crate::tracker::state::{PendingReply, Tracker, key64};
use crate::tracker::threads::referenced_ids;

impl Tracker {
    // ---- inbound mail -------------------------------------------------------------------

    /// DESIGN.md "What is an inquiry" and "Threads".
    pub(super) fn decide_received(&self, mail: &Mail) -> Vec<Event> {
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
        let thread_id = self.customer_thread(mail, &external_id);
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

        let kind = match self.place_in_thread(thread_id.as_str(), mail.delivered_at) {
            Place::Joins(inquiry) => {
                // A second customer message before the reply: the clock keeps running from the
                // oldest. Delivered before the answer but read after it, it still belongs here.
                let mut events = vec![Event::FollowUpAttached {
                    inquiry_id: inquiry.id.clone(),
                    external_id,
                    digest: mail.digest.clone(),
                    received_at: mail.delivered_at,
                    first_seen_at: mail.seen_at,
                    customer: customer.email,
                    subject: mail.subject.clone(),
                }];
                if inquiry.state == InquiryState::Open
                    && let Some(deadline_at) = inquiry.deadline_at
                    && let Some(reply) = self.pending_reply_to(mail, inquiry.received_at)
                {
                    events.push(responded_by_email(
                        &inquiry.id,
                        inquiry.received_at,
                        deadline_at,
                        reply.at,
                        &reply.responder,
                        &reply.external_id,
                    ));
                    events.extend(self.open_from_later_follow_ups(
                        inquiry,
                        reply.at,
                        InquiryKind::NextReply,
                    ));
                }
                return events;
            }
            // Unless a reply read earlier answered this message before the later clock began:
            // then both clocks stand, one after the other.
            Place::Precedes(inquiry)
                if self
                    .pending_reply_to(mail, mail.delivered_at)
                    .is_none_or(|r| r.at >= inquiry.received_at) =>
            {
                return self.open_older_clock(mail, inquiry, external_id, thread_id);
            }
            Place::Precedes(_) => InquiryKind::First,
            Place::Opens { answered_before } => {
                if answered_before {
                    InquiryKind::NextReply
                } else {
                    InquiryKind::First
                }
            }
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
        if let Some(reply) = self.pending_reply_to(mail, mail.delivered_at) {
            events.push(responded_by_email(
                &inquiry_id,
                mail.delivered_at,
                deadline_at,
                reply.at,
                &reply.responder,
                &reply.external_id,
            ));
        }
        events
    }

    /// Where a customer message delivered at `at` belongs in its thread, whatever was read
    /// first: the earliest inquiry of the thread whose clock still ran at `at` (open, or answered
    /// at or after `at`) takes it as a follow-up, or — received after `at` — turns out to be part
    /// of the older clock this message starts. Otherwise the message opens a new inquiry.
    fn place_in_thread(&self, thread: &str, at: DateTime<Utc>) -> Place<'_> {
        let mut candidates: Vec<&Inquiry> = self
            .answered_in_thread
            .get(thread)
            .into_iter()
            .flatten()
            .chain(self.open_in_thread.get(thread).map(|o| &o.id))
            .filter_map(|id| self.get(id))
            .collect();
        candidates.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
        let answered: Vec<DateTime<Utc>> =
            candidates.iter().filter_map(|i| i.responded_at).collect();
        let running = candidates
            .into_iter()
            .find(|i| i.state == InquiryState::Open || i.responded_at.is_some_and(|r| r >= at));
        match running {
            Some(inquiry) if inquiry.received_at <= at => Place::Joins(inquiry),
            Some(inquiry) => Place::Precedes(inquiry),
            // A next reply when the desk answered in this thread before it: an inquiry answered
            // earlier, or (no inquiry at all) a reply linked to the thread.
            None => Place::Opens {
                answered_before: if answered.is_empty() {
                    self.replied_threads.contains(thread)
                } else {
                    answered.iter().any(|r| *r < at)
                },
            },
        }
    }

    /// The inquiry of `thread` whose clock ran when a reply was sent at `at`: received at or
    /// before it, and open or answered only after it.
    fn clock_running_at(&self, thread: &str, at: DateTime<Utc>) -> Option<&Inquiry> {
        self.answered_in_thread
            .get(thread)
            .into_iter()
            .flatten()
            .chain(self.open_in_thread.get(thread).map(|o| &o.id))
            .filter_map(|id| self.get(id))
            .filter(|i| {
                i.received_at <= at
                    && (i.state == InquiryState::Open || i.responded_at.is_some_and(|r| r > at))
            })
            .min_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)))
    }

    /// The earliest reply read before `mail` that references it, goes to its sender and was
    /// sent at or after `since`: `mail`'s own delivery when it opens an inquiry; the start of the
    /// inquiry it joins otherwise (the reply threads into that conversation, whatever the order
    /// of the two messages' delivery).
    fn pending_reply_to(&self, mail: &Mail, since: DateTime<Utc>) -> Option<&PendingReply> {
        let sender = mail.from.as_ref().map(|a| a.email.as_str()).unwrap_or("");
        let reaches_customer = |r: &&PendingReply| {
            r.recipients
                .iter()
                .any(|to| *to == sender || mail.reply_to.iter().any(|a| a.email == *to))
        };
        self.pending_replies
            .get(&mail.message_id)?
            .iter()
            .filter(|r| r.at >= since)
            .filter(reaches_customer)
            .min_by_key(|r| r.at)
    }

    /// `mail`, read after `later`, was delivered before it in the same conversation: the clock
    /// starts at `mail`. A new inquiry opens from it and takes over `later`'s messages and its
    /// response (kept if it still meets the earlier deadline); `later` is merged into it.
    fn open_older_clock(
        &self,
        mail: &Mail,
        later: &Inquiry,
        external_id: String,
        thread_id: String,
    ) -> Vec<Event> {
        let customer = mail.from.clone().unwrap_or_default();
        let (language, language_source) = detect_language(
            mail.content_language.as_deref(),
            &mail.text_sample,
            self.rules.desk.default_language,
        );
        let policy =
            self.rules
                .policies
                .select(Channel::Email, language, &mail.source, &customer.email);
        let inquiry_id = InquiryId::derive(Channel::Email, &external_id);
        let mut events = vec![Event::InquiryMerged {
            inquiry_id: later.id.clone(),
            into: inquiry_id.clone(),
            at: mail.seen_at,
            evidence: external_id.clone(),
        }];
        let (version, deadline_at, warn_at) =
            self.stamp_policy(policy, mail.delivered_at, mail.seen_at, &mut events);
        events.push(Event::InquiryOpened(Box::new(InquiryOpened {
            inquiry_id: inquiry_id.clone(),
            channel: Channel::Email,
            source: mail.source.clone(),
            external_id,
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
            kind: later.kind.unwrap_or(InquiryKind::First),
            call: None,
        })));
        // The first response of the older clock: a reply read earlier that answers `mail`, or
        // the one `later` had. Messages of `later` after it belong to the next clock.
        let pending = self.pending_reply_to(mail, mail.delivered_at);
        let first_response = match (pending, later.responded_at) {
            (Some(reply), Some(answered)) if answered <= reply.at => None,
            (Some(reply), _) => Some(reply.at),
            (None, _) => None,
        };
        let until = first_response.or(later.responded_at);
        let moved = std::iter::once((
            later.external_id.to_string(),
            later.received_at,
            later.first_seen_at,
            &later.customer,
            &later.subject,
        ))
        .chain(later.follow_up_messages.iter().map(|f| {
            (
                f.external_id.clone(),
                f.received_at,
                f.first_seen_at,
                &f.customer,
                &f.subject,
            )
        }));
        for (external_id, received_at, first_seen_at, customer, subject) in moved {
            if until.is_some_and(|r| received_at > r) {
                continue;
            }
            events.push(Event::FollowUpAttached {
                inquiry_id: inquiry_id.clone(),
                external_id,
                digest: String::new(),
                received_at,
                first_seen_at,
                customer: customer.clone(),
                subject: subject.clone(),
            });
        }
        match (pending, first_response) {
            (Some(reply), Some(_)) => {
                events.push(responded_by_email(
                    &inquiry_id,
                    mail.delivered_at,
                    deadline_at,
                    reply.at,
                    &reply.responder,
                    &reply.external_id,
                ));
                let next = self.open_from_later_follow_ups(later, reply.at, InquiryKind::NextReply);
                let carried = carry_displaced_response(later, &next);
                events.extend(next);
                events.extend(carried);
            }
            _ => {
                if let Some(at) = later.responded_at {
                    events.push(Event::InquiryResponded(Box::new(InquiryResponded {
                        inquiry_id,
                        at,
                        response_seconds: (at - mail.delivered_at).num_seconds().max(0),
                        kind: later.response_kind.unwrap_or(ResponseKind::Email),
                        responder: later.responder.clone().unwrap_or_default(),
                        external_id: None,
                        outcome: if at <= deadline_at {
                            Outcome::Met
                        } else {
                            Outcome::Missed
                        },
                        via: None,
                        note: None,
                    })));
                }
            }
        }
        events
    }

    // ---- the desk's mail ----------------------------------------------------------------

    /// DESIGN.md "What is a response".
    pub(super) fn decide_sent(&self, mail: &Mail) -> Vec<Event> {
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
                let at = mail.delivered_at;
                let running = self.clock_running_at(thread_id.as_str(), at);
                // Only a message that goes to the customer is a response; one forwarded to a
                // third party (a supplier, a courier) keeps the thread but answers nothing.
                if let Some(inquiry) = running
                    && !inquiry.addressed_by(&recipients)
                {
                    return vec![linked(thread_id, LinkRole::Forward)];
                }
                let mut events = vec![linked(thread_id.clone(), LinkRole::Reply)];
                match running {
                    Some(inquiry) if inquiry.state == InquiryState::Open => {
                        if let Some(deadline_at) = inquiry.deadline_at {
                            events.push(responded_by_email(
                                &inquiry.id,
                                inquiry.received_at,
                                deadline_at,
                                at,
                                &responder,
                                &external_id,
                            ));
                        }
                        events.extend(self.open_from_later_follow_ups(
                            inquiry,
                            at,
                            InquiryKind::NextReply,
                        ));
                    }
                    Some(inquiry) => {
                        // Answered after this reply was sent, by a response read before it:
                        // this one is the first response.
                        events.push(earlier_response(inquiry, at, &responder, &external_id));
                        let next =
                            self.open_from_later_follow_ups(inquiry, at, InquiryKind::NextReply);
                        let carried = carry_displaced_response(inquiry, &next);
                        events.extend(next);
                        events.extend(carried);
                    }
                    None => {}
                }
                // A reply to a message not read yet waits for it: that message may open an
                // inquiry of its own (read later, delivered before this reply).
                let unseen = |ids: &[String]| -> Vec<String> {
                    ids.iter()
                        .filter(|r| !self.thread_of.contains_key(r.as_str()))
                        .cloned()
                        .collect()
                };
                if running.is_none() {
                    let unseen = unseen(&references);
                    if !unseen.is_empty() {
                        events.push(unmatched(UnmatchedReason::UnknownThread, unseen));
                    }
                } else {
                    let parents = if mail.in_reply_to.is_empty() {
                        mail.references.last().cloned().into_iter().collect()
                    } else {
                        mail.in_reply_to.clone()
                    };
                    let awaiting = unseen(&parents);
                    if !awaiting.is_empty() {
                        events.push(Event::ReplyAwaiting {
                            external_id: external_id.clone(),
                            awaiting,
                            at,
                            responder: responder.clone(),
                            recipients: recipients.clone(),
                        });
                    }
                }
                events
            }
        }
    }
}

/// `inquiry`, answered later, was first answered by the reply `external_id` sent at `at`.
fn earlier_response(
    inquiry: &Inquiry,
    at: DateTime<Utc>,
    responder: &str,
    external_id: &str,
) -> Event {
    let from = if inquiry.sla == SlaStatus::Met {
        Outcome::Met
    } else {
        Outcome::Missed
    };
    let met = inquiry.deadline_at.is_some_and(|d| at <= d);
    Event::InquiryRevised {
        inquiry_id: inquiry.id.clone(),
        at,
        reason: RevisionReason::EarlierResponse,
        from,
        to: if met { Outcome::Met } else { Outcome::Missed },
        evidence: Some(external_id.to_string()),
        response: Some(Box::new(RevisedResponse {
            at,
            response_seconds: (at - inquiry.received_at).num_seconds().max(0),
            kind: ResponseKind::Email,
            responder: responder.to_string(),
        })),
    }
}

/// The response `inquiry` had before an earlier one displaced it still answers the inquiry the
/// later messages open (`next`, from `open_from_later_follow_ups`) when it came after them: it
/// threads into the conversation while that clock ran. Returns the events to add after `next`.
fn carry_displaced_response(inquiry: &Inquiry, next: &[Event]) -> Option<Event> {
    let opened = next.iter().find_map(|e| match e {
        Event::InquiryOpened(o) => Some(o),
        _ => None,
    })?;
    let answered = next
        .iter()
        .any(|e| matches!(e, Event::InquiryResponded(r) if r.inquiry_id == opened.inquiry_id));
    let at = inquiry
        .responded_at
        .filter(|at| *at >= opened.received_at)?;
    (!answered).then(|| {
        Event::InquiryResponded(Box::new(InquiryResponded {
            inquiry_id: opened.inquiry_id.clone(),
            at,
            response_seconds: (at - opened.received_at).num_seconds().max(0),
            kind: inquiry.response_kind.unwrap_or(ResponseKind::Email),
            responder: inquiry.responder.clone().unwrap_or_default(),
            external_id: None,
            outcome: if at <= opened.deadline_at {
                Outcome::Met
            } else {
                Outcome::Missed
            },
            via: None,
            note: None,
        }))
    })
}

/// Where a customer message belongs in its thread (see `Tracker::place_in_thread`).
enum Place<'a> {
    Joins(&'a Inquiry),
    Precedes(&'a Inquiry),
    Opens { answered_before: bool },
}

pub(super) fn responded_by_email(
    inquiry_id: &InquiryId,
    received_at: DateTime<Utc>,
    deadline_at: DateTime<Utc>,
    at: DateTime<Utc>,
    responder: &str,
    external_id: &str,
) -> Event {
    // Met when the evidence says so, even if the breach fired first (see `InquiryRevised`).
    let met = at <= deadline_at;
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
