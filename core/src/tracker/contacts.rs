//! Cross-channel answers: the desk's contact map, and the rule that lets a response on one
//! channel answer the same customer's open inquiry on the other.
//!
//! The map is explicit configuration — a customer's email address and the phone numbers
//! (E.164) that are theirs — and only those pairs count: nothing is guessed from a signature,
//! a subject or a message body. The rule is off unless the desk turns it on
//! (`answer_across_channels`), because whether a callback answers an email is the desk's
//! promise to define, not slawatch's. When on:
//!
//! - a connected callback to one of the customer's numbers, or an inbound call from one of them
//!   that a person answered, answers the customer's open email inquiries received before it;
//! - a reply from a support address that goes to the customer's address answers the open phone
//!   inquiries of the customer's numbers received before it.
//!
//! The usual rules of each channel still decide what a response is (a machine-answered
//! callback, an auto-acknowledgement or a forward to a colleague answer nothing), and a response
//! never answers an inquiry received after it.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::event::{Event, InquiryKind, LinkRole, UnmatchedReason};
use super::inquiry::{Inquiry, InquiryState};
use super::observation::{Call, Mail};
use super::state::Tracker;
use crate::domain::Channel;

/// Customer email address ↔ phone numbers, and whether a response may cross channels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContactMap {
    answer_across_channels: bool,
    /// Lower-case address → E.164 numbers.
    numbers_by_email: HashMap<String, Vec<String>>,
    /// E.164 number → lower-case addresses (a shared office line may belong to several).
    emails_by_number: HashMap<String, Vec<String>>,
}

impl ContactMap {
    /// `customers` are `(email, numbers)` pairs with numbers already in E.164 (the
    /// configuration normalises them); addresses are compared without case.
    pub fn new(
        answer_across_channels: bool,
        customers: impl IntoIterator<Item = (String, Vec<String>)>,
    ) -> ContactMap {
        let mut map = ContactMap {
            answer_across_channels,
            ..ContactMap::default()
        };
        for (email, numbers) in customers {
            let email = email.trim().to_lowercase();
            for number in numbers {
                let emails = map.emails_by_number.entry(number.clone()).or_default();
                if !emails.contains(&email) {
                    emails.push(email.clone());
                }
                let own = map.numbers_by_email.entry(email.clone()).or_default();
                if !own.contains(&number) {
                    own.push(number);
                }
            }
        }
        map
    }

    /// Whether responses may answer across channels at all.
    pub fn answers_across_channels(&self) -> bool {
        self.answer_across_channels && !self.numbers_by_email.is_empty()
    }

    /// How many customers are mapped.
    pub fn customers(&self) -> usize {
        self.numbers_by_email.len()
    }

    /// The numbers of the customer with this address (any case).
    pub fn numbers_of(&self, email: &str) -> &[String] {
        self.numbers_by_email
            .get(&email.trim().to_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// The addresses of the customers with this E.164 number.
    pub fn emails_of(&self, number: &str) -> &[String] {
        self.emails_by_number.get(number).map_or(&[], Vec::as_slice)
    }
}

impl Tracker {
    /// Installs the desk's contact map (the tracker starts with an empty one). It only changes
    /// decisions: replaying a ledger does not depend on it.
    pub fn set_contacts(&mut self, contacts: Arc<ContactMap>) {
        self.contacts = contacts;
    }

    pub fn contacts(&self) -> &ContactMap {
        &self.contacts
    }

    /// Open inquiries on `channel` of the customer `customer`, received at or before `at`.
    fn open_of_customer(
        &self,
        channel: Channel,
        customer: &str,
        at: DateTime<Utc>,
    ) -> Vec<&Inquiry> {
        let mut found: Vec<&Inquiry> = match channel {
            // Phone inquiries live in one thread per number.
            Channel::Phone => self
                .open_in_thread
                .get(format!("tel:{customer}").as_str())
                .and_then(|o| self.get(&o.id))
                .into_iter()
                .collect(),
            // Mail threads are per conversation: look through the open ones. Only customers on
            // the (short) contact map get here.
            Channel::Email => self
                .open()
                .filter(|i| {
                    i.channel == Channel::Email && i.customer.eq_ignore_ascii_case(customer)
                })
                .collect(),
        };
        found.retain(|i| i.state == InquiryState::Open && i.received_at <= at);
        found.sort_by(|a, b| (a.received_at, &a.id).cmp(&(b.received_at, &b.id)));
        found
    }

    /// A call that a person answered at `at` (an inbound pickup or a connected callback) to or
    /// from a mapped number: the answers it gives the customer's open email inquiries.
    /// `record` is the call record's id, used as the response's evidence.
    pub(super) fn answer_email_by_call(
        &self,
        call: &Call,
        at: DateTime<Utc>,
        record: &str,
    ) -> Vec<Event> {
        if !self.contacts.answers_across_channels() || call.number.is_withheld() {
            return Vec::new();
        }
        let number = call.number.key();
        let mut events = Vec::new();
        for email in self.contacts.emails_of(&number) {
            for inquiry in self.open_of_customer(Channel::Email, email, at) {
                events.extend(super::phone::responded_by_call(inquiry, at, call, record));
                events.extend(self.open_from_later_follow_ups(inquiry, at, InquiryKind::NextReply));
            }
        }
        events
    }

    /// Adds to the events decided for a sent message the answers it gives, as a reply to a
    /// mapped customer's address, to that customer's open phone inquiries. Only a reply from a
    /// support address to the customer counts: the events already decided say whether it was
    /// one (linked as a reply, or a reply that did not thread to any mail).
    pub(super) fn answer_calls_by_mail(&self, mail: &Mail, mut events: Vec<Event>) -> Vec<Event> {
        if !self.contacts.answers_across_channels() {
            return events;
        }
        let is_reply = events.iter().any(|e| {
            matches!(
                e,
                Event::MessageLinked {
                    role: LinkRole::Reply,
                    ..
                } | Event::ReplyUnmatched {
                    reason: UnmatchedReason::NotThreaded | UnmatchedReason::UnknownThread,
                    ..
                }
            )
        });
        if !is_reply {
            return events;
        }
        let at = mail.delivered_at;
        let responder = mail
            .from
            .as_ref()
            .map(|a| a.email.clone())
            .unwrap_or_default();
        let external_id = events
            .iter()
            .find_map(|e| match e {
                Event::MessageLinked { external_id, .. }
                | Event::ReplyUnmatched { external_id, .. } => Some(external_id.clone()),
                _ => None,
            })
            .unwrap_or_default();
        let mut answered: Vec<&Inquiry> = Vec::new();
        for to in mail.to.iter().chain(&mail.cc) {
            for number in self.contacts.numbers_of(&to.email) {
                for inquiry in self.open_of_customer(Channel::Phone, number, at) {
                    if !answered.iter().any(|a| a.id == inquiry.id) {
                        answered.push(inquiry);
                    }
                }
            }
        }
        let Some(first) = answered.first() else {
            return events;
        };
        // It did answer something: a reply that threaded to no mail is linked to the call's
        // thread instead of being recorded as answering nothing.
        if let Some(e) = events
            .iter_mut()
            .find(|e| matches!(e, Event::ReplyUnmatched { .. }))
            && let Event::ReplyUnmatched {
                external_id,
                digest,
                at,
                ..
            } = e
        {
            let linked = Event::MessageLinked {
                external_id: std::mem::take(external_id),
                digest: std::mem::take(digest),
                thread_id: first.thread_id.to_string(),
                at: *at,
                role: LinkRole::Reply,
            };
            *e = linked;
        }
        for inquiry in answered {
            events.push(super::email::responded_by_email(
                &inquiry.id,
                inquiry.received_at,
                inquiry.deadline_at.unwrap_or(at),
                at,
                &responder,
                &external_id,
            ));
            events.extend(self.open_from_later_follow_ups(inquiry, at, InquiryKind::First));
        }
        events
    }
}
