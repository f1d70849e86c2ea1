//! Fixtures shared by the unit tests, the integration tests (`tests/`) and the benchmarks
//! (`benches/`): the smallest desk, a tracker over it with the default policy, and an email or
//! phone inquiry opened at a given instant. Public only so those crates can reach it; the daemon
//! never uses it.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::desk::DeskSettings;
use crate::domain::{Channel, InquiryId, Language};
use crate::tracker::event::{InquiryKind, InquiryOpened, LanguageSource};
use crate::tracker::policy::{Policy, PolicySet};
use crate::tracker::{Tracker, TrackerRules};

/// The desk of the fixtures: answers from `support@desk.example`, English, UTC.
pub const SUPPORT: &str = "support@desk.example";

/// A tracker over the [`SUPPORT`] desk with the default policy (15 minutes, warned at 10).
pub fn tracker() -> Tracker {
    Tracker::new(Arc::new(TrackerRules {
        desk: DeskSettings::with_address(SUPPORT),
        policies: PolicySet::single(Policy::default()),
    }))
}

/// The external id (Message-ID) of fixture inquiry `n`; its id is
/// `InquiryId::derive(channel, &external_id(n))`.
pub fn external_id(n: u64) -> String {
    format!("<m{n}@customer.example>")
}

/// Inquiry `n` from `c{n}@customer.example`, subject `Question {n}`, received (and seen) at
/// `received_at` under the default policy. Callers change the fields a test is about.
pub fn opened(
    n: u64,
    channel: Channel,
    language: Language,
    received_at: DateTime<Utc>,
) -> Box<InquiryOpened> {
    let external_id = external_id(n);
    Box::new(InquiryOpened {
        inquiry_id: InquiryId::derive(channel, &external_id),
        channel,
        source: "inbox".into(),
        thread_id: external_id.clone(),
        external_id,
        digest: Some(format!("digest{n}")),
        customer: format!("c{n}@customer.example"),
        customer_name: None,
        subject: format!("Question {n}"),
        language,
        language_source: LanguageSource::Header,
        reply_to: Vec::new(),
        received_at,
        first_seen_at: received_at,
        date_header: None,
        deadline_at: received_at + TimeDelta::minutes(15),
        warn_at: vec![received_at + TimeDelta::minutes(10)],
        policy: "default@test".into(),
        kind: InquiryKind::First,
        call: None,
    })
}
