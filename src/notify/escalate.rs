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
//! schedules nothing here. The monitor's own alerts escalate the same way, under the default
//! rotation's `escalate_after`, until they are resolved.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use slawatch_core::domain::InquiryId;
use slawatch_core::tracker::alert::AlertStage;
use slawatch_core::tracker::{Event, Inquiry, Tracker};

use super::oncall::OnCall;

#[derive(Debug, Default)]
pub struct Escalations {
    queue: BTreeSet<(DateTime<Utc>, InquiryId)>,
    /// The monitor's own alerts (by alert id), under the default rotation's `escalate_after`.
    monitor: BTreeSet<(DateTime<Utc>, String)>,
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
        if let Some(after) = oncall.escalate_after(None) {
            for m in tracker
                .monitor_alerts()
                .filter(|m| m.escalated_at.is_none())
            {
                let sent = m.delivered_at.unwrap_or(now).max(m.raised_at);
                out.monitor.insert((sent + after, m.id.clone()));
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.queue.len() + self.monitor.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.monitor.is_empty()
    }

    pub fn next(&self) -> Option<DateTime<Utc>> {
        let inquiry = self.queue.first().map(|(at, _)| *at);
        let monitor = self.monitor.first().map(|(at, _)| *at);
        match (inquiry, monitor) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Removes and returns every monitor alert `(id, instant)` due at `now`, earliest first.
    pub fn pop_due_monitor(&mut self, now: DateTime<Utc>) -> Vec<(String, DateTime<Utc>)> {
        let mut due = Vec::new();
        while self.monitor.first().is_some_and(|(at, _)| *at <= now) {
            if let Some((at, id)) = self.monitor.pop_first() {
                due.push((id, at));
            }
        }
        due
    }

    /// Schedules the escalation of the monitor alert `alert`, raised at `at` (sent at `now`).
    pub fn follow_monitor(
        &mut self,
        alert: &str,
        at: DateTime<Utc>,
        oncall: Option<&OnCall>,
        now: DateTime<Utc>,
    ) {
        if let Some(after) = oncall.and_then(|o| o.escalate_after(None)) {
            self.monitor
                .insert((at.max(now) + after, alert.to_string()));
        }
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
