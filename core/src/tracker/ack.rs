//! Manual acknowledgements: an inquiry answered on another channel (`slawatch ack`, the API),
//! recorded with who, how and when.

use crate::tracker::event::{Event, InquiryKind, InquiryResponded, Outcome, ResponseKind};
use crate::tracker::inquiry::InquiryState;
use crate::tracker::observation::ManualAck;
use crate::tracker::state::{Rejected, Tracker};

impl Tracker {
    /// The inquiry answered on another channel at `ack.at`: met when that is at or before the
    /// deadline (a breach already fired is then revised, see `Tracker::decide`).
    pub(super) fn decide_ack(&self, ack: &ManualAck) -> Result<Vec<Event>, Rejected> {
        let inquiry = self
            .inquiries
            .get(&ack.inquiry_id)
            .ok_or_else(|| Rejected::UnknownInquiry(ack.inquiry_id.clone()))?;
        if inquiry.state != InquiryState::Open {
            return Err(Rejected::NotOpen(
                inquiry.id.clone(),
                inquiry.state.as_str(),
            ));
        }
        if ack.at < inquiry.received_at {
            return Err(Rejected::AckBeforeReceipt {
                at: ack.at,
                received: inquiry.received_at,
            });
        }
        let in_time = inquiry.deadline_at.is_some_and(|d| ack.at <= d);
        let mut events = vec![Event::InquiryResponded(Box::new(InquiryResponded {
            inquiry_id: inquiry.id.clone(),
            at: ack.at,
            response_seconds: (ack.at - inquiry.received_at).num_seconds().max(0),
            kind: ResponseKind::Manual,
            responder: ack.by.clone(),
            external_id: None,
            outcome: if in_time {
                Outcome::Met
            } else {
                Outcome::Missed
            },
            via: Some(ack.via),
            note: ack.note.clone(),
        }))];
        events.extend(self.open_from_later_follow_ups(inquiry, ack.at, InquiryKind::NextReply));
        Ok(events)
    }
}
