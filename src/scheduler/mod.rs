//! The scheduler: every future deadline in one ordered set.
//!
//! Each open inquiry contributes its warn instants and its breach instant; the engine waits until
//! the earliest one (`Clock::sleep_until`) and hands every due `(inquiry, stage)` to the tracker
//! as `Observation::DeadlineReached`. Nothing ever scans all inquiries on a timer: inserting and
//! removing are `O(log n)`, finding the next instant is `O(1)`.
//!
//! The set lives inside the engine task, which is also the only code that inserts into it, so the
//! wait is simply re-armed on every loop turn (no separate task and `Notify` are needed). At
//! start-up it is rebuilt from the ledger; instants already in the past fire at once, in one batch.

pub mod clock;

pub use clock::Clock;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use slawatch_core::domain::InquiryId;
use slawatch_core::tracker::Event;
use slawatch_core::tracker::observation::Stage;

/// The ordered set of pending instants.
///
/// Instants of an inquiry that was answered are not searched out and removed: they stay until
/// they come due and are then ignored by the tracker (it decides nothing for an inquiry that is
/// no longer open). That keeps the set to one B-tree entry per instant, with no per-inquiry
/// index, at the price of a wake-up for nothing at most once per stale instant.
#[derive(Debug, Default)]
pub struct Deadlines {
    queue: BTreeSet<(DateTime<Utc>, InquiryId, Stage)>,
}

impl Deadlines {
    pub fn new() -> Deadlines {
        Deadlines::default()
    }

    /// Pending instants, stale ones included.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The earliest pending instant.
    pub fn next(&self) -> Option<DateTime<Utc>> {
        self.queue.first().map(|(at, _, _)| *at)
    }

    pub fn insert(&mut self, id: &InquiryId, at: DateTime<Utc>, stage: Stage) {
        self.queue.insert((at, id.clone(), stage));
    }

    /// Removes and returns every instant at or before `now`, earliest first.
    pub fn pop_due(&mut self, now: DateTime<Utc>) -> Vec<(InquiryId, Stage)> {
        let mut due = Vec::new();
        while self.queue.first().is_some_and(|(at, _, _)| *at <= now) {
            if let Some((_, id, stage)) = self.queue.pop_first() {
                due.push((id, stage));
            }
        }
        due
    }

    /// The instants of every open inquiry `tracker` holds (open ones are never evicted): the
    /// set at start-up, without the stale instants of the whole history a replay would follow.
    pub fn of_open(tracker: &slawatch_core::tracker::Tracker) -> Deadlines {
        let mut deadlines = Deadlines::new();
        for inquiry in tracker
            .newest_first()
            .filter(|i| i.state == slawatch_core::tracker::InquiryState::Open)
        {
            for (i, at) in inquiry.warn_at.iter().enumerate() {
                deadlines.insert(
                    &inquiry.id,
                    *at,
                    Stage::Warning(i.min(u8::MAX as usize) as u8),
                );
            }
            if let Some(at) = inquiry.deadline_at {
                deadlines.insert(&inquiry.id, at, Stage::Breach);
            }
        }
        deadlines
    }

    /// Keeps the set in step with an applied event: an opened inquiry brings its instants.
    pub fn follow(&mut self, event: &Event) {
        if let Event::InquiryOpened(e) = event {
            for (i, at) in e.warn_at.iter().enumerate() {
                self.insert(
                    &e.inquiry_id,
                    *at,
                    Stage::Warning(i.min(u8::MAX as usize) as u8),
                );
            }
            self.insert(&e.inquiry_id, e.deadline_at, Stage::Breach);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn pops_due_instants_in_order_and_leaves_the_rest() {
        let mut d = Deadlines::new();
        let a = InquiryId("a".into());
        let b = InquiryId("b".into());
        d.insert(&a, t("2026-11-24T10:15:00Z"), Stage::Breach);
        d.insert(&a, t("2026-11-24T10:10:00Z"), Stage::Warning(0));
        d.insert(&b, t("2026-11-24T10:05:00Z"), Stage::Breach);
        assert_eq!(d.next(), Some(t("2026-11-24T10:05:00Z")));
        let due = d.pop_due(t("2026-11-24T10:10:00Z"));
        assert_eq!(
            due,
            vec![(b.clone(), Stage::Breach), (a.clone(), Stage::Warning(0))]
        );
        assert_eq!(d.next(), Some(t("2026-11-24T10:15:00Z")));
        assert!(d.pop_due(t("2026-11-24T10:14:59Z")).is_empty());
    }

    #[test]
    fn an_instant_exactly_at_now_is_due() {
        let mut d = Deadlines::new();
        let a = InquiryId("zzz".into());
        d.insert(&a, t("2026-11-24T10:15:00Z"), Stage::Breach);
        d.insert(&a, t("2026-11-24T10:15:00.001Z"), Stage::Warning(0));
        assert_eq!(
            d.pop_due(t("2026-11-24T10:15:00Z")),
            vec![(a, Stage::Breach)]
        );
        assert_eq!(d.len(), 1);
    }
}
