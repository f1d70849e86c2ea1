//! Re-notification instants: while a breached inquiry stays unanswered, the on-call person is
//! reminded every `renotify_every` of its policy, at most `renotify_max` times.
//!
//! An ordered set like the scheduler's, owned by the engine: after an `InquiryBreached` the
//! first re-notification is scheduled `renotify_every` later, after each `InquiryRenotified` the
//! next one. At start-up it is rebuilt from the tracker (open, breached inquiries and their
//! re-notification marks), so reminders that fell due while the daemon was down fire at once.
//! An instant whose inquiry was answered meanwhile is simply dropped when it comes due.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use slawatch_core::domain::InquiryId;
use slawatch_core::tracker::alert::AlertStage;
use slawatch_core::tracker::{Event, Inquiry, Tracker};

#[derive(Debug, Default)]
pub struct Renotifications {
    queue: BTreeSet<(DateTime<Utc>, InquiryId, u32)>,
}

/// The policy's `(renotify_every, renotify_max)` for an inquiry (the version it was opened
/// under when that version is still configured, else the default policy).
fn policy_of(tracker: &Tracker, inquiry: &Inquiry) -> (Duration, u32) {
    let policies = &tracker.rules().policies;
    let policy = policies
        .all()
        .find(|p| inquiry.policy.as_deref() == Some(p.record().version.as_str()))
        .unwrap_or(&policies.default);
    (policy.renotify_every, policy.renotify_max)
}

impl Renotifications {
    /// From the tracker's state at start-up (`now`).
    pub fn rebuild(tracker: &Tracker, now: DateTime<Utc>) -> Renotifications {
        let mut out = Renotifications::default();
        for inquiry in tracker.open().filter(|i| i.breached_at.is_some()) {
            let done = inquiry
                .alerts
                .iter()
                .filter(|m| m.stage == AlertStage::Renotify)
                .count() as u32;
            let last = inquiry
                .alerts
                .iter()
                .filter(|m| matches!(m.stage, AlertStage::Breach | AlertStage::Renotify))
                // When it was actually sent: a breach raised late (daemon down at the deadline)
                // is reminded an interval after it reached someone, not at once; one never
                // delivered is being sent again now (see `Engine::resume_pending`).
                .map(|m| m.delivered_at.unwrap_or(now).max(m.at))
                .max();
            if let Some(last) = last {
                out.after(tracker, inquiry, last, done + 1);
            }
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
        self.queue.first().map(|(at, _, _)| *at)
    }

    /// Removes and returns every `(inquiry, n, instant)` due at `now`, earliest first.
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Vec<(InquiryId, u32, DateTime<Utc>)> {
        let mut due = Vec::new();
        while self.queue.first().is_some_and(|(at, _, _)| *at <= now) {
            if let Some((at, id, n)) = self.queue.pop_first() {
                due.push((id, n, at));
            }
        }
        due
    }

    /// Schedules re-notification `n` one interval after `last`, within the policy's maximum.
    fn after(&mut self, tracker: &Tracker, inquiry: &Inquiry, last: DateTime<Utc>, n: u32) {
        let (every, max) = policy_of(tracker, inquiry);
        if n == 0 || n > max || every.is_zero() {
            return;
        }
        if let Ok(every) = chrono::Duration::from_std(every) {
            self.queue.insert((last + every, inquiry.id.clone(), n));
        }
    }

    /// Keeps the set in step with an event committed at `now` (`tracker` has it applied). The
    /// interval runs from when the alert is raised: a breach whose deadline passed while the
    /// daemon was down is reminded `renotify_every` after it is raised, not at once.
    pub fn follow(&mut self, event: &Event, tracker: &Tracker, now: DateTime<Utc>) {
        let (id, at, next) = match event {
            Event::InquiryBreached { inquiry_id, at } => (inquiry_id, *at, 1),
            Event::InquiryRenotified { inquiry_id, n, at } => (inquiry_id, *at, n + 1),
            _ => return,
        };
        if let Some(inquiry) = tracker.get(id) {
            self.after(tracker, inquiry, at.max(now), next);
        }
    }
}
