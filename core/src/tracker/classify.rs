//! Mail classification: is an inbound message an inquiry, and is an outbound one a response?
//! (Rules: DESIGN.md, "What is an inquiry" and "What is a response".)
//!
//! Pure functions of a parsed [`Mail`] and the desk's identity ([`DeskSettings`]). Every
//! exclusion carries its reason code (stored, reported, a metric label) and the evidence that
//! decided it, so an auditor can see why a message was not counted. Rules are checked in a fixed
//! order so the same message always gets the same reason.

use crate::desk::DeskSettings;
use crate::tracker::event::ExclusionReason;
use crate::tracker::observation::Mail;

/// Why an inbound message is not an inquiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exclusion {
    pub reason: ExclusionReason,
    /// The evidence, e.g. `Auto-Submitted: auto-replied`.
    pub detail: String,
}

impl Exclusion {
    fn new(reason: ExclusionReason, detail: impl Into<String>) -> Option<Exclusion> {
        Some(Exclusion {
            reason,
            detail: detail.into(),
        })
    }
}

/// Subjects that bounce generators use (osTicket's list and the common MTAs). Alone they prove
/// nothing — a customer may forward a bounce and ask about it — so they only count together with
/// another bounce signal.
const BOUNCE_SUBJECTS: [&str; 6] = [
    "undeliverable:",
    "delivery status notification",
    "undelivered mail returned to sender",
    "mail delivery failed",
    "delivery failure",
    "returned mail:",
];

/// Local parts of mail-system senders.
const SYSTEM_SENDERS: [&str; 2] = ["mailer-daemon", "postmaster"];

/// Decides whether an inbound message is an inquiry: `None` if it is, else why not.
pub fn classify_inbound(mail: &Mail, desk: &DeskSettings) -> Option<Exclusion> {
    let s = &mail.signals;
    if s.slawatch_alert {
        return Exclusion::new(ExclusionReason::OwnAlert, "X-Slawatch-Alert present");
    }
    let Some(from) = mail.from.as_ref().filter(|a| !a.email.is_empty()) else {
        return Exclusion::new(ExclusionReason::NoSender, "no usable From address");
    };
    if let Some(detail) = bounce_evidence(mail) {
        return Exclusion::new(ExclusionReason::Bounce, detail);
    }
    if let Some(v) = s.auto_submitted.as_deref().filter(|v| is_automatic(v)) {
        return Exclusion::new(
            ExclusionReason::AutoSubmitted,
            format!("Auto-Submitted: {v}"),
        );
    }
    if let Some(h) = &s.vendor_autoreply {
        return Exclusion::new(ExclusionReason::AutoReply, format!("{h} present"));
    }
    if let Some(detail) = exchange_out_of_office(mail) {
        return Exclusion::new(ExclusionReason::OutOfOffice, detail);
    }
    if let Some(detail) = &s.machine_generated {
        return Exclusion::new(ExclusionReason::MachineGenerated, detail.clone());
    }
    if let Some(detail) = &s.helpdesk_loop {
        return Exclusion::new(ExclusionReason::HelpdeskLoop, detail.clone());
    }
    if let Some(p) = s.precedence.as_deref().filter(|p| is_bulk_precedence(p)) {
        return Exclusion::new(ExclusionReason::Precedence, format!("Precedence: {p}"));
    }
    if s.list_header {
        return Exclusion::new(
            ExclusionReason::MailingList,
            "List-Id/List-Unsubscribe/Mailing-List present",
        );
    }
    if s.x_loop {
        return Exclusion::new(ExclusionReason::MailLoop, "X-Loop/X-No-Loop present");
    }
    if s.spam_flag {
        return Exclusion::new(ExclusionReason::Spam, "X-Spam-Flag/X-Spam-Status: yes");
    }
    if is_support_address(desk, &from.email) {
        return Exclusion::new(
            ExclusionReason::InternalSender,
            format!("From {} is a support address", from.email),
        );
    }
    if is_internal(desk, &from.email) {
        return Exclusion::new(
            ExclusionReason::InternalSender,
            format!("From {} is in an internal domain", from.email),
        );
    }
    if let Some(entry) = desk
        .ignore_senders
        .iter()
        .find(|entry| sender_matches(entry, &from.email))
    {
        return Exclusion::new(ExclusionReason::Ignored, format!("sender matches {entry}"));
    }
    let subject = mail.subject.to_lowercase();
    if let Some(entry) = desk
        .ignore_subjects
        .iter()
        .find(|entry| !entry.is_empty() && subject.contains(&entry.to_lowercase()))
    {
        return Exclusion::new(
            ExclusionReason::Ignored,
            format!("subject contains {entry:?}"),
        );
    }
    None
}

/// The evidence that a message is a bounce or DSN, if any.
fn bounce_evidence(mail: &Mail) -> Option<String> {
    let s = &mail.signals;
    let system_sender = [mail.from.as_ref(), mail.sender.as_ref()]
        .into_iter()
        .flatten()
        .find(|a| is_system_sender(&a.email));
    if let Some(a) = system_sender {
        return Some(format!("sender {}", a.email));
    }
    if s.delivery_status_report {
        return Some("Content-Type: multipart/report; report-type=delivery-status".into());
    }
    if s.failed_recipients {
        return Some("X-Failed-Recipients present".into());
    }
    let null_path = s.return_path.as_deref() == Some("");
    let subject = mail.subject.trim().to_lowercase();
    let bounce_subject = BOUNCE_SUBJECTS.iter().find(|p| subject.starts_with(*p));
    let automatic =
        s.auto_submitted.as_deref().is_some_and(is_automatic) || s.vendor_autoreply.is_some();
    match (null_path, bounce_subject) {
        (true, Some(p)) => Some(format!("Return-Path: <> and subject {p:?}")),
        (true, None) => Some("Return-Path: <>".into()),
        // A bounce subject from an automatic sender is a bounce, not just an auto-reply.
        (false, Some(p)) if automatic => Some(format!("automatic message with subject {p:?}")),
        // A bounce-like subject alone is not evidence (a customer may forward one).
        (false, _) => None,
    }
}

/// Subject prefixes Exchange and Outlook put on an out-of-office reply (English, Spanish, Arabic,
/// and the other languages a desk commonly meets), lower-cased.
const OUT_OF_OFFICE_PREFIXES: [&str; 10] = [
    "out of office autoreply:",
    "out of office:",
    "automatic reply:",
    "autoreply:",
    "respuesta automática:",
    "fuera de la oficina:",
    "réponse automatique :",
    "automatische antwort:",
    "risposta automatica:",
    "رد تلقائي:",
];

/// An Exchange out-of-office reply that carries no `Auto-Submitted` (Exchange 2003–2010 and
/// Outlook's client-side rules): its subject is an automatic-reply prefix over the conversation's
/// `Thread-Topic`, and the message passed through Exchange. A prefix alone is not evidence (a
/// customer may write about an automatic reply), nor is any Exchange header alone (every
/// Outlook customer's mail has them).
fn exchange_out_of_office(mail: &Mail) -> Option<String> {
    let s = &mail.signals;
    let subject = mail.subject.trim();
    let lower = subject.to_lowercase();
    let prefix = OUT_OF_OFFICE_PREFIXES
        .iter()
        .find(|p| lower.starts_with(*p))?;
    let rest = lower[prefix.len()..].trim();
    let topic = s.thread_topic.as_deref()?.trim().to_lowercase();
    let from_exchange = s.exchange_headers || s.auto_response_suppress;
    (from_exchange && topic == rest).then(|| {
        format!("subject {prefix:?} over Thread-Topic {topic:?}, Exchange headers present")
    })
}

fn is_system_sender(email: &str) -> bool {
    let local = email.split('@').next().unwrap_or_default();
    SYSTEM_SENDERS.iter().any(|s| local.eq_ignore_ascii_case(s))
}

/// `Auto-Submitted` other than `no` (RFC 3834): the first token decides (`auto-replied;
/// owner-email=…` is automatic).
fn is_automatic(value: &str) -> bool {
    let token = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    !token.is_empty() && token != "no"
}

fn is_bulk_precedence(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "bulk" | "list" | "junk"
    )
}

/// `Precedence` values that an automatic acknowledgement is sent with.
fn is_auto_precedence(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "bulk" | "list" | "junk" | "auto_reply" | "auto-reply"
    )
}

/// `address` or `@domain` (also matching subdomains' exact domain only).
fn sender_matches(entry: &str, email: &str) -> bool {
    let entry = entry.trim().to_ascii_lowercase();
    match entry.strip_prefix('@') {
        Some(domain) => email
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain)),
        None => !entry.is_empty() && entry == email.to_ascii_lowercase(),
    }
}

/// One of the desk's own addresses: an exact entry, or any address of exactly an `@domain`
/// entry's domain (no subdomains), case-insensitive.
pub fn is_support_address(desk: &DeskSettings, email: &str) -> bool {
    let email = email.trim();
    !email.is_empty()
        && desk
            .support_addresses
            .iter()
            .any(|a| match a.trim().strip_prefix('@') {
                Some(domain) => email
                    .rsplit_once('@')
                    .is_some_and(|(local, d)| !local.is_empty() && d.eq_ignore_ascii_case(domain)),
                None => a.trim().eq_ignore_ascii_case(email),
            })
}

/// An address in one of the desk's own domains (exact domain, case-insensitive).
pub fn is_internal(desk: &DeskSettings, email: &str) -> bool {
    let Some((_, domain)) = email.trim().rsplit_once('@') else {
        return false;
    };
    desk.internal_domains
        .iter()
        .any(|d| d.trim_start_matches('@').eq_ignore_ascii_case(domain))
}

/// What a message from a sent folder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundKind {
    /// A reply to a customer: may answer inquiries.
    Reply,
    /// The desk's automatic acknowledgement: never stops the clock.
    AutoAcknowledgement,
    /// Sent only to colleagues: not a response.
    InternalForward,
    /// Not sent from a support address.
    NotFromSupport,
}

/// Classifies a message found in a sent folder (DESIGN.md, "What is a response").
pub fn classify_outbound(mail: &Mail, desk: &DeskSettings) -> OutboundKind {
    let from_support = [mail.from.as_ref(), mail.sender.as_ref()]
        .into_iter()
        .flatten()
        .any(|a| is_support_address(desk, &a.email));
    if !from_support {
        return OutboundKind::NotFromSupport;
    }
    let s = &mail.signals;
    let subject = mail.subject.trim().to_lowercase();
    let automatic = s.auto_submitted.as_deref().is_some_and(is_automatic)
        || s.vendor_autoreply.is_some()
        || s.machine_generated.is_some()
        || s.precedence.as_deref().is_some_and(is_auto_precedence)
        || desk
            .auto_ack_subjects
            .iter()
            .any(|p| !p.is_empty() && subject.starts_with(&p.trim().to_lowercase()));
    if automatic {
        return OutboundKind::AutoAcknowledgement;
    }
    let outside = mail
        .to
        .iter()
        .chain(&mail.cc)
        .any(|a| !is_support_address(desk, &a.email) && !is_internal(desk, &a.email));
    if outside {
        OutboundKind::Reply
    } else {
        OutboundKind::InternalForward
    }
}

#[cfg(test)]
mod tests;
