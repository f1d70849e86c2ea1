//! The email rules: an inbound message opens an inquiry, is excluded with its reason, or attaches
//! to an open one as a follow-up; the desk's own mail answers the inquiries of its thread.
//! DESIGN.md "What is an inquiry", "Threads" and "What is a response".

use chrono::{DateTime, Utc};

use crate::domain::{Channel, InquiryId, Language};
use crate::tracker::classify::{OutboundKind, classify_inbound, classify_outbound};
use crate::tracker::event::{
    Contradiction, Event, InquiryExcluded, InquiryKind, InquiryOpened, LanguageSource, LinkRole,
    ResponseKind, UnmatchedReason,
};
use crate::tracker::inquiry::{Inquiry, InquiryState};
use crate::tracker::language::detect_language;
use crate::tracker::observation::Mail;
use crate::tracker::revision::{Answer, Place};
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

        let contradictions = self.replies_before(mail);
        let mut reclassified = None;
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
                    events.push(reply.answer().responded(
                        &inquiry.id,
                        inquiry.received_at,
                        deadline_at,
                    ));
                    events.extend(self.open_from_later_follow_ups(
                        inquiry,
                        reply.at,
                        InquiryKind::NextReply,
                    ));
                }
                events.extend(contradictions);
                return events;
            }
            // Unless a reply read earlier answered this message before the later clock began:
            // then both clocks stand, one after the other.
            Place::Precedes(inquiry)
                if self
                    .pending_reply_to(mail, mail.delivered_at)
                    .is_none_or(|r| r.at >= inquiry.received_at) =>
            {
                let mut events = self.open_older_clock(mail, inquiry, external_id, thread_id);
                events.extend(contradictions);
                return events;
            }
            // Answered before the later clock began: that one is a next reply after all.
            Place::Precedes(later) => {
                if later.kind == Some(InquiryKind::First) {
                    reclassified = Some(Event::InquiryReclassified {
                        inquiry_id: later.id.clone(),
                        kind: InquiryKind::NextReply,
                        at: mail.seen_at,
                        evidence: external_id.clone(),
                    });
                }
                if self.answered_before(&thread_id, mail.delivered_at) {
                    InquiryKind::NextReply
                } else {
                    InquiryKind::First
                }
            }
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
        let language = (language, language_source);
        let opened = self.opened_by_mail(mail, external_id, thread_id, kind, language, &mut events);
        let (inquiry_id, deadline_at) = (opened.inquiry_id.clone(), opened.deadline_at);
        events.push(Event::InquiryOpened(Box::new(opened)));

        // A reply read earlier that references this very message, and goes to its sender,
        // answers it now.
        if let Some(reply) = self.pending_reply_to(mail, mail.delivered_at) {
            events.push(
                reply
                    .answer()
                    .responded(&inquiry_id, mail.delivered_at, deadline_at),
            );
        }
        events.extend(reclassified);
        events.extend(contradictions);
        events
    }

    /// Replies read before `mail` that reply to it but were delivered before it: contradictory
    /// evidence (a server clock, a restored message), flagged. Such a reply answers nothing of
    /// `mail`'s own clock (it may answer the conversation's clock that ran when it was sent).
    fn replies_before(&self, mail: &Mail) -> Vec<Event> {
        let Some(replies) = self.pending_replies.get(&mail.message_id) else {
            return Vec::new();
        };
        replies
            .iter()
            .filter(|r| r.at < mail.delivered_at && !r.external_id.starts_with("call:"))
            .map(|r| Event::EvidenceContradicted {
                source: mail.source.clone(),
                external_id: r.external_id.clone(),
                kind: Contradiction::ReplyBeforeMessage,
                detail: format!(
                    "reply delivered {} replies to {} delivered {}",
                    r.at.format("%Y-%m-%dT%H:%M:%SZ"),
                    mail.message_id,
                    mail.delivered_at.format("%Y-%m-%dT%H:%M:%SZ")
                ),
                at: mail.seen_at,
            })
            .collect()
    }

    /// The inquiry `mail` opens; the first use of its policy version goes into `events`.
    fn opened_by_mail(
        &self,
        mail: &Mail,
        external_id: String,
        thread_id: String,
        kind: InquiryKind,
        (language, language_source): (Language, LanguageSource),
        events: &mut Vec<Event>,
    ) -> InquiryOpened {
        let customer = mail.from.clone().unwrap_or_default();
        let policy =
            self.rules
                .policies
                .select(Channel::Email, language, &mail.source, &customer.email);
        let (version, deadline_at, warn_at) =
            self.stamp_policy(policy, mail.delivered_at, mail.seen_at, events);
        InquiryOpened {
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
        }
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
    /// starts at `mail`. A new inquiry opens from it and takes over `later` (see
    /// `Tracker::take_over_later_clock`); `later` is merged into it.
    fn open_older_clock(
        &self,
        mail: &Mail,
        later: &Inquiry,
        external_id: String,
        thread_id: String,
    ) -> Vec<Event> {
        let mut events = vec![Event::InquiryMerged {
            inquiry_id: later.id.clone(),
            into: InquiryId::derive(Channel::Email, &external_id),
            at: mail.seen_at,
            evidence: external_id.clone(),
        }];
        let kind = if self.answered_before(&thread_id, mail.delivered_at) {
            InquiryKind::NextReply
        } else {
            InquiryKind::First
        };
        let language = detect_language(
            mail.content_language.as_deref(),
            &mail.text_sample,
            self.rules.desk.default_language,
        );
        let opened = self.opened_by_mail(mail, external_id, thread_id, kind, language, &mut events);
        let answer = self
            .pending_reply_to(mail, mail.delivered_at)
            .map(PendingReply::answer);
        let rest = self.take_over_later_clock(&opened, later, answer, InquiryKind::NextReply);
        events.push(Event::InquiryOpened(Box::new(opened)));
        events.extend(rest);
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
                // Read after the message it replies to, but delivered before it: flagged.
                if let Some(parent) = mail.in_reply_to.first()
                    && let Some(parent_at) = self.delivered_at_of(thread_id.as_str(), parent)
                    && parent_at > at
                {
                    events.push(Event::EvidenceContradicted {
                        source: mail.source.clone(),
                        external_id: external_id.clone(),
                        kind: Contradiction::ReplyBeforeMessage,
                        detail: format!(
                            "reply delivered {} replies to {parent} delivered {}",
                            at.format("%Y-%m-%dT%H:%M:%SZ"),
                            parent_at.format("%Y-%m-%dT%H:%M:%SZ")
                        ),
                        at: mail.seen_at,
                    });
                }
                let answer = Answer {
                    at,
                    seen_at: mail.seen_at,
                    responder: responder.clone(),
                    kind: ResponseKind::Email,
                    evidence: Some(external_id.clone()),
                };
                events.extend(self.answer_running_clock(
                    thread_id.as_str(),
                    &answer,
                    InquiryKind::NextReply,
                ));
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

pub(super) fn responded_by_email(
    inquiry_id: &InquiryId,
    received_at: DateTime<Utc>,
    deadline_at: DateTime<Utc>,
    at: DateTime<Utc>,
    responder: &str,
    external_id: &str,
) -> Event {
    let answer = Answer {
        at,
        seen_at: at,
        responder: responder.to_string(),
        kind: ResponseKind::Email,
        evidence: Some(external_id.to_string()),
    };
    answer.responded(inquiry_id, received_at, deadline_at)
}
