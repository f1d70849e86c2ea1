//! The email rules: an inbound message opens an inquiry, is excluded with its reason, or attaches
//! to an open one as a follow-up; the desk's own mail answers the inquiries of its thread.
//! DESIGN.md "What is an inquiry", "Threads" and "What is a response".

use chrono::{DateTime, Utc};

use crate::domain::{Channel, InquiryId};
use crate::tracker::classify::{OutboundKind, classify_inbound, classify_outbound};
use crate::tracker::event::{
    Event, InquiryExcluded, InquiryKind, InquiryOpened, InquiryResponded, LinkRole, Outcome,
    ResponseKind, UnmatchedReason,
};
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
