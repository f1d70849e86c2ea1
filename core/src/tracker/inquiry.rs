//! Inquiry records: one inquiry as derived from its events (the API's JSON shape), where it
//! stands, whether the promise was kept, and the compact summary kept of each open one.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{Channel, InquiryId, Language};
use crate::tracker::alert::{AlertMark, AlertStage};
use crate::tracker::event::{ExclusionReason, InquiryKind, LanguageSource, ResponseKind};

/// Where an inquiry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InquiryState {
    Open,
    Responded,
    Excluded,
    /// Part of an older clock after all (`merged_into` says which): not counted on its own.
    Merged,
}

impl SlaStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SlaStatus::Pending => "pending",
            SlaStatus::Met => "met",
            SlaStatus::Missed => "missed",
            SlaStatus::Excluded => "excluded",
        }
    }
}

impl InquiryState {
    pub fn as_str(self) -> &'static str {
        match self {
            InquiryState::Open => "open",
            InquiryState::Responded => "responded",
            InquiryState::Excluded => "excluded",
            InquiryState::Merged => "merged",
        }
    }

    pub fn parse(s: &str) -> Option<InquiryState> {
        [
            InquiryState::Open,
            InquiryState::Responded,
            InquiryState::Excluded,
            InquiryState::Merged,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// Whether the promise was kept. `excluded` for a message that is not an inquiry (it has no
/// deadline): the API, the CSV and the JSON report use the same words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlaStatus {
    Pending,
    Met,
    Missed,
    Excluded,
}

/// How an open inquiry is doing, for the `open_inquiries{state}` gauge and the wallboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpenStatus {
    Ok,
    Warning,
    Breached,
}

impl OpenStatus {
    pub const ALL: [OpenStatus; 3] = [OpenStatus::Ok, OpenStatus::Warning, OpenStatus::Breached];

    pub fn as_str(self) -> &'static str {
        match self {
            OpenStatus::Ok => "ok",
            OpenStatus::Warning => "warning",
            OpenStatus::Breached => "breached",
        }
    }
}

/// Someone said "I'm on it" (`InquiryTaken`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taken {
    pub by: String,
    pub at: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Taken {
    /// Whether the take still holds at `now`.
    pub fn holds_at(&self, now: DateTime<Utc>) -> bool {
        now < self.until
    }
}

/// A customer message attached to an open inquiry.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    pub external_id: String,
    pub digest: String,
    pub received_at: DateTime<Utc>,
    pub first_seen_at: DateTime<Utc>,
    pub customer: String,
    pub subject: String,
}

/// The follow-up messages of an inquiry, oldest first. Most inquiries have none: one thin
/// pointer in every record, not an empty list's three words (nor a slice's two: one word more
/// takes the record into the allocator's next size class, 448 bytes instead of 384). The list
/// holds no spare room.
#[derive(Debug, Clone, Default)]
#[allow(clippy::box_collection)] // The box is the point: a thin pointer in the record.
pub struct FollowUps(Option<Box<Vec<FollowUp>>>);

impl FollowUps {
    pub fn iter(&self) -> std::slice::Iter<'_, FollowUp> {
        self.as_slice().iter()
    }

    pub fn as_slice(&self) -> &[FollowUp] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// Adds one, keeping them ordered by received time.
    pub(super) fn insert(&mut self, follow_up: FollowUp) {
        let list = self.0.get_or_insert_default();
        list.reserve_exact(1);
        list.push(follow_up);
        list.sort_by_key(|f| f.received_at);
    }

    pub(super) fn retain(&mut self, keep: impl FnMut(&FollowUp) -> bool) {
        if let Some(mut list) = self.0.take() {
            list.retain(keep);
            if !list.is_empty() {
                list.shrink_to_fit();
                self.0 = Some(list);
            }
        }
    }
}

impl PartialEq for FollowUps {
    fn eq(&self, other: &FollowUps) -> bool {
        self.as_slice() == other.as_slice()
    }
}

/// One inquiry as derived from its events: the JSON shape of the API. It reads back from that
/// JSON (the store's inquiry projection keeps it), less the fields the JSON leaves out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inquiry {
    pub id: InquiryId,
    pub channel: Channel,
    pub source: Arc<str>,
    /// Message-ID or call id; for the first message of a conversation the same shared text as
    /// `thread_id`.
    pub external_id: Arc<str>,
    pub thread_id: Arc<str>,
    pub customer: Box<str>,
    pub customer_name: Option<Box<str>>,
    pub subject: Box<str>,
    pub language: Language,
    pub received_at: DateTime<Utc>,
    pub first_seen_at: DateTime<Utc>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub warn_at: Box<[DateTime<Utc>]>,
    pub responded_at: Option<DateTime<Utc>>,
    pub response_seconds: Option<i64>,
    pub response_kind: Option<ResponseKind>,
    pub responder: Option<Arc<str>>,
    /// The reply's Message-ID or the call record that is the first response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_id: Option<Arc<str>>,
    pub state: InquiryState,
    pub sla: SlaStatus,
    pub excluded_reason: Option<ExclusionReason>,
    pub excluded_detail: Option<Box<str>>,
    pub policy: Option<Arc<str>>,
    pub kind: Option<InquiryKind>,
    pub follow_ups: u32,
    pub breached_at: Option<DateTime<Utc>>,
    pub alerts: Vec<AlertMark>,
    /// Phone only: the line, queue entry and withheld flag of the call that opened it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<Box<crate::tracker::event::CallDetails>>,
    /// The customer's `Reply-To` addresses (a reply may go there).
    #[serde(skip)]
    pub reply_to: Box<[String]>,
    #[serde(skip)]
    pub language_source: Option<LanguageSource>,
    /// The follow-up messages, oldest first.
    #[serde(skip)]
    pub follow_up_messages: FollowUps,
    /// Who took it last ("I'm on it") and until when (`InquiryTaken`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taken: Option<Box<Taken>>,
    /// Set when it turned out to be part of an older clock (`InquiryMerged`): that inquiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<Box<InquiryId>>,
    /// The ledger seqs of the first and the last event about it, once committed: its history
    /// is read back from the ledger by this range (the daemon's `Store::events_for_inquiry`).
    #[serde(skip)]
    pub ledger_seqs: Option<(i64, i64)>,
}

impl Inquiry {
    /// Who holds it at `now` ("I'm on it" not run out), if anyone.
    pub fn taken_at(&self, now: DateTime<Utc>) -> Option<&Taken> {
        self.taken.as_deref().filter(|t| t.holds_at(now))
    }

    /// The open inquiry's status, or `None` when it is not open.
    pub fn open_status(&self) -> Option<OpenStatus> {
        if self.state != InquiryState::Open {
            None
        } else if self.breached_at.is_some() {
            Some(OpenStatus::Breached)
        } else if self.alerts.iter().any(|a| a.stage == AlertStage::Warning) {
            Some(OpenStatus::Warning)
        } else {
            Some(OpenStatus::Ok)
        }
    }

    /// How the inquiry is doing at `now` (see [`OpenSummary::status_at`]); `None` if not open.
    pub fn open_status_at(&self, now: DateTime<Utc>) -> Option<OpenStatus> {
        let recorded = self.open_status()?;
        Some(status_at(
            recorded == OpenStatus::Breached,
            self.deadline_at?,
            recorded == OpenStatus::Warning,
            self.warn_at.iter().min().copied(),
            now,
        ))
    }

    /// Its messages or calls, the first then the follow-ups: (external id, received, first
    /// seen, customer, subject).
    pub(super) fn members(
        &self,
    ) -> impl Iterator<Item = (String, DateTime<Utc>, DateTime<Utc>, &str, &str)> {
        std::iter::once((
            self.external_id.to_string(),
            self.received_at,
            self.first_seen_at,
            &*self.customer,
            &*self.subject,
        ))
        .chain(self.follow_up_messages.iter().map(|f| {
            (
                f.external_id.clone(),
                f.received_at,
                f.first_seen_at,
                f.customer.as_str(),
                f.subject.as_str(),
            )
        }))
    }

    /// Whether the message or call `external_id` is one of its own (the first or a follow-up).
    pub fn contains(&self, external_id: &str) -> bool {
        &*self.external_id == external_id
            || self
                .follow_up_messages
                .iter()
                .any(|f| f.external_id == external_id)
    }

    pub(super) fn warned(&self, index: u8) -> bool {
        self.alerts
            .iter()
            .any(|a| a.stage == AlertStage::Warning && a.index == Some(index))
    }

    /// Whether a message to these recipients reaches the customer.
    pub(super) fn addressed_by(&self, recipients: &[String]) -> bool {
        recipients
            .iter()
            .any(|r| **r == *self.customer || self.reply_to.contains(r))
    }
}

/// What metrics and wallboards need of an open inquiry, kept compact in the open-thread index so
/// that scanning 100,000 open inquiries touches a few megabytes, not every inquiry record.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenSummary {
    pub id: InquiryId,
    pub channel: Channel,
    pub language: Language,
    pub received_at: DateTime<Utc>,
    pub deadline_at: DateTime<Utc>,
    /// The earliest warn instant, if any.
    pub first_warn_at: Option<DateTime<Utc>>,
    pub warned: bool,
    pub breached: bool,
}

impl OpenSummary {
    /// The status at `now`: instants already passed count even before the scheduler fired them
    /// (during a first sync, deadlines are held; the gauge shows the truth meanwhile).
    pub fn status_at(&self, now: DateTime<Utc>) -> OpenStatus {
        status_at(
            self.breached,
            self.deadline_at,
            self.warned,
            self.first_warn_at,
            now,
        )
    }
}

/// Breached once the deadline has passed, warning once a warn instant has passed — whether or
/// not the scheduler has fired them yet — else ok.
fn status_at(
    breached: bool,
    deadline_at: DateTime<Utc>,
    warned: bool,
    first_warn_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> OpenStatus {
    if breached || deadline_at <= now {
        OpenStatus::Breached
    } else if warned || first_warn_at.is_some_and(|w| w <= now) {
        OpenStatus::Warning
    } else {
        OpenStatus::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::event::CallDetails;
    use chrono::TimeZone;

    /// The store keeps an inquiry as its JSON and serves it again: reading it back and writing
    /// it again gives the same bytes, every optional part present.
    #[test]
    fn an_inquiry_reads_back_from_its_json_to_the_same_json() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
            + chrono::Duration::nanoseconds(123_456_789);
        let later = |m| at + chrono::Duration::minutes(m);
        let inquiry = Inquiry {
            id: InquiryId::from_display("p1"),
            channel: Channel::Phone,
            source: "pbx".into(),
            external_id: "1767600000.1".into(),
            thread_id: "+34600000001".into(),
            customer: "+34600000001".into(),
            customer_name: Some("Cliente \"uno\", S.L.".into()),
            subject: "استفسار".into(),
            language: Language::Ar,
            received_at: at,
            first_seen_at: later(1),
            deadline_at: Some(later(15)),
            warn_at: Box::new([later(10)]),
            responded_at: Some(later(20)),
            response_seconds: Some(1200),
            response_kind: Some(ResponseKind::Manual),
            responder: Some("maria".into()),
            response_id: Some("1767601200.9".into()),
            state: InquiryState::Responded,
            sla: SlaStatus::Missed,
            excluded_reason: None,
            excluded_detail: None,
            policy: Some("default@1".into()),
            kind: Some(InquiryKind::NextReply),
            follow_ups: 2,
            breached_at: Some(later(15)),
            alerts: vec![
                AlertMark {
                    stage: AlertStage::Warning,
                    index: Some(0),
                    at: later(10),
                    delivered_at: Some(later(10)),
                    delivered_to: Some(Box::new(vec!["ana@desk.example".into()])),
                },
                AlertMark {
                    stage: AlertStage::Breach,
                    index: None,
                    at: later(15),
                    delivered_at: None,
                    delivered_to: None,
                },
            ],
            call: Some(Box::new(CallDetails {
                line: Some("ventas".into()),
                queue_entered_at: Some(at + chrono::Duration::seconds(20)),
                withheld: false,
            })),
            reply_to: Box::default(),
            language_source: None,
            follow_up_messages: FollowUps::default(),
            taken: Some(Box::new(Taken {
                by: "ana".into(),
                at: later(12),
                until: later(42),
            })),
            merged_into: Some(Box::new(InquiryId::from_display("p0"))),
            ledger_seqs: None,
        };
        let json = serde_json::to_string(&inquiry).unwrap();
        let back: Inquiry = serde_json::from_str(&json).unwrap();
        assert_eq!(back, inquiry);
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }
}
