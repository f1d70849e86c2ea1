//! Escalation instants: a breach nobody took or answered within its rotation's
//! `escalate_after` goes on to the escalation list, once.
//!
//! An ordered set like the re-notifications', owned by the engine: an `InquiryBreached`
//! schedules its escalation `escalate_after` later (after it is raised, for a breach raised
//! late). When the instant comes the engine escalates the inquiry if it is still open, was not
//! escalated yet and nobody holds it; a take that holds puts the instant off until the take
//! runs out. At start-up the set is rebuilt from the tracker (open, breached inquiries without
//! an escalation mark), so an escalation that fell due while the daemon was down goes at once.
//! A rotation with `escalate_after = 0` (the default) escalates with the breach itself and
//! schedules nothing here.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use slawatch_core::domain::InquiryId;
use slawatch_core::tracker::alert::AlertStage;
use slawatch_core::tracker::{Event, Inquiry, Tracker};

use super::oncall::OnCall;

#[derive(Debug, Default)]
pub struct Escalations {
    queue: BTreeSet<(DateTime<Utc>, InquiryId)>,
}

/// Whether `inquiry` still waits for its escalation: open, breached, not escalated.
pub fn waiting(inquiry: &Inquiry) -> bool {
    inquiry.state == slawatch_core::tracker::InquiryState::Open
        && inquiry.breached_at.is_some()
        && !inquiry
            .alerts
            .iter()
            .any(|m| m.stage == AlertStage::Escalation)
}

impl Escalations {
    /// From the tracker's state at start-up.
    pub fn rebuild(tracker: &Tracker, oncall: Option<&OnCall>, now: DateTime<Utc>) -> Escalations {
        let mut out = Escalations::default();
        let Some(oncall) = oncall else {
            return out;
        };
        for inquiry in tracker.open().filter(|i| waiting(i)) {
            let Some(after) = oncall.escalate_after(inquiry.policy.as_deref()) else {
                continue;
            };
            // From when the breach went out, as for re-notifications: one raised late waits its
            // full interval; one never delivered is being sent again now.
            let Some(breached) = inquiry
                .alerts
                .iter()
                .filter(|m| m.stage == AlertStage::Breach)
                .map(|m| m.delivered_at.unwrap_or(now).max(m.at))
                .max()
            else {
                continue;
            };
            let mut at = breached + after;
            if let Some(taken) = &inquiry.taken {
                at = at.max(taken.until);
            }
            out.queue.insert((at, inquiry.id.clone()));
        }
        out
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn next(&self) -> Option<DateTime<Utc>> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Removes and returns every `(inquiry, instant)` due at `now`, earliest first.
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Vec<(InquiryId, DateTime<Utc>)> {
        let mut due = Vec::new();
        while self.queue.first().is_some_and(|(at, _)| *at <= now) {
            if let Some((at, id)) = self.queue.pop_first() {
                due.push((id, at));
            }
        }
        due
    }

    /// Puts an inquiry's escalation at `at` (a take holds it until then).
    pub fn put_off(&mut self, id: InquiryId, at: DateTime<Utc>) {
        self.queue.insert((at, id));
    }

    /// Keeps the set in step with an event decided at `now` (`tracker` has it applied).
    pub fn follow(
        &mut self,
        event: &Event,
        tracker: &Tracker,
        oncall: Option<&OnCall>,
        now: DateTime<Utc>,
    ) {
        let Event::InquiryBreached { inquiry_id, at } = event else {
            return;
        };
        let (Some(oncall), Some(inquiry)) = (oncall, tracker.get(inquiry_id)) else {
            return;
        };
        if let Some(after) = oncall.escalate_after(inquiry.policy.as_deref()) {
            self.queue
                .insert(((*at).max(now) + after, inquiry_id.clone()));
        }
    }
}
