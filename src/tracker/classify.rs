//! Mail classification: is an inbound message an inquiry, and is an outbound one a response?
//! (Rules: DESIGN.md, "What is an inquiry" and "What is a response".)

use crate::config::DeskSettings;
use crate::tracker::event::ExclusionReason;
use crate::tracker::observation::Mail;

pub struct Exclusion {
    pub reason: ExclusionReason,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundKind {
    Reply,
    AutoAcknowledgement,
    InternalForward,
    NotFromSupport,
}

pub fn classify_inbound(mail: &Mail, desk: &DeskSettings) -> Option<Exclusion> {
    if let Some(v) = &mail.signals.auto_submitted
        && v != "no"
    {
        return Some(Exclusion {
            reason: ExclusionReason::AutoSubmitted,
            detail: format!("Auto-Submitted: {v}"),
        });
    }
    let from = mail.from.as_ref()?;
    if desk.internal_domains.iter().any(|d| d == from.domain()) {
        return Some(Exclusion {
            reason: ExclusionReason::InternalSender,
            detail: from.email.clone(),
        });
    }
    None
}

pub fn classify_outbound(mail: &Mail, desk: &DeskSettings) -> OutboundKind {
    let Some(from) = &mail.from else {
        return OutboundKind::NotFromSupport;
    };
    if !desk.support_addresses.contains(&from.email) {
        return OutboundKind::NotFromSupport;
    }
    if mail
        .signals
        .auto_submitted
        .as_deref()
        .is_some_and(|v| v != "no")
    {
        return OutboundKind::AutoAcknowledgement;
    }
    if mail
        .to
        .iter()
        .chain(&mail.cc)
        .all(|a| desk.internal_domains.iter().any(|d| d == a.domain()))
    {
        return OutboundKind::InternalForward;
    }
    OutboundKind::Reply
}
