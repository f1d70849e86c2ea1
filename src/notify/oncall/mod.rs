//! On-call routing: who receives each alert.
//!
//! This module owns the on-call schedule (people, rotations with layers and overrides, the
//! escalation list, per-policy routes) and the one pure decision made from it,
//! [`OnCall::recipients`]: given an alert's kind, the inquiry's policy and the instant it is
//! sent, the people to tell. It is pure so that the same rule holds in the daemon (live, and
//! when resuming after a restart, where those already recorded as reached are left out) and in
//! `slawatch oncall`/`check-config`, which read the configuration alone. The rotation maths
//! (handoffs in a time zone, daylight saving, gaps) is in [`schedule`].
//!
//! Without `[notify.oncall]` there is no routing: every alert goes to the notifiers' fixed
//! destinations (`notify.smtp.to`), as before.

pub mod schedule;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AlertKind;
pub use schedule::{Layer, LayerKind, Override, Rotation, Shift, WeeklySpan};

/// How far ahead `check-config` looks for uncovered time: four weeks holds every weekly pattern
/// and the overrides of the month ahead.
pub const GAP_HORIZON: chrono::Duration = chrono::Duration::weeks(4);

/// Someone who can be on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The key under `[notify.oncall.people]`: what the ledger records.
    pub name: String,
    pub email: String,
    /// A chat handle (e.g. `@ana`) named in webhook messages.
    pub handle: Option<String>,
}

/// One person an alert is addressed to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Recipient {
    pub person: String,
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle: Option<String>,
}

impl From<&Person> for Recipient {
    fn from(p: &Person) -> Recipient {
        Recipient {
            person: p.name.clone(),
            email: p.email.clone(),
            handle: p.handle.clone(),
        }
    }
}

/// The validated `[notify.oncall]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct OnCall {
    pub people: BTreeMap<String, Person>,
    pub rotations: BTreeMap<String, Rotation>,
    /// The rotation used for inquiries no route names.
    pub default_rotation: String,
    /// Policy name → rotation name.
    pub routes: BTreeMap<String, String>,
}

impl OnCall {
    /// The rotation for an inquiry under `policy` (a policy name, or a `name@hash` version).
    pub fn rotation_for(&self, policy: Option<&str>) -> Option<&Rotation> {
        let name = policy
            .map(|p| p.split_once('@').map_or(p, |(name, _)| name))
            .and_then(|p| self.routes.get(p))
            .unwrap_or(&self.default_rotation);
        self.rotations.get(name)
    }

    /// The person on call at `at` for an inquiry under `policy`, if anyone.
    pub fn on_call(&self, policy: Option<&str>, at: DateTime<Utc>) -> Option<Recipient> {
        let name = self.rotation_for(policy)?.on_call(at)?;
        self.people.get(name).map(Recipient::from)
    }

    /// Who receives an alert of `kind` about an inquiry under `policy`, sent at `at`.
    ///
    /// - warning: whoever is on call at `at` (the escalation list when nobody is);
    /// - breach, re-notification: whoever is on call plus the escalation list;
    /// - resolved: exactly the people in `alerted` (those the ledger records as having received
    ///   an alert about the inquiry), whoever is on call now.
    ///
    /// Each person appears once, in that order. Empty means nobody is addressed: the caller
    /// falls back to the notifiers' fixed destinations.
    ///
    /// With the rotation's `escalate_after` set, a breach and its re-notifications go to the
    /// person on call only (re-notifications to the escalation list too once it was reached
    /// by the escalation the engine sends after `escalate_after`, see
    /// [`OnCall::escalation_for`]), unless nobody is on call.
    pub fn recipients(
        &self,
        kind: AlertKind,
        policy: Option<&str>,
        at: DateTime<Utc>,
        alerted: &[String],
    ) -> Vec<Recipient> {
        self.recipients_within(kind, policy, at, alerted, false)
    }

    /// [`OnCall::recipients`] escalating at once whatever `escalate_after` says: an alert that
    /// was escalated by time already, sent again.
    pub fn recipients_at_once(
        &self,
        kind: AlertKind,
        policy: Option<&str>,
        at: DateTime<Utc>,
        alerted: &[String],
    ) -> Vec<Recipient> {
        self.recipients_within(kind, policy, at, alerted, true)
    }

    fn recipients_within(
        &self,
        kind: AlertKind,
        policy: Option<&str>,
        at: DateTime<Utc>,
        alerted: &[String],
        at_once: bool,
    ) -> Vec<Recipient> {
        let names: Vec<&str> = match kind {
            AlertKind::Resolved => alerted.iter().map(String::as_str).collect(),
            AlertKind::Warning | AlertKind::Breach | AlertKind::Renotify => {
                let Some(rotation) = self.rotation_for(policy) else {
                    return Vec::new();
                };
                let on_call = rotation.on_call(at);
                let escalate = match kind {
                    AlertKind::Warning => on_call.is_none(),
                    _ => on_call.is_none() || at_once || rotation.escalate_after.is_zero(),
                };
                on_call
                    .into_iter()
                    .chain(rotation.escalation.iter().map(String::as_str).filter(|p| {
                        // Once escalated, reminders go to the list too.
                        escalate || (kind == AlertKind::Renotify && alerted.iter().any(|a| a == p))
                    }))
                    .collect()
            }
        };
        let mut out: Vec<Recipient> = Vec::new();
        for name in names {
            if let Some(person) = self.people.get(name)
                && !out.iter().any(|r| r.person == name)
            {
                out.push(Recipient::from(person));
            }
        }
        out
    }

    /// How long a breach under `policy` waits before it escalates; `None` when it escalates at
    /// once (zero `escalate_after`) or there is nobody to escalate to.
    pub fn escalate_after(&self, policy: Option<&str>) -> Option<chrono::Duration> {
        let rotation = self.rotation_for(policy)?;
        if rotation.escalate_after.is_zero() || rotation.escalation.is_empty() {
            return None;
        }
        chrono::Duration::from_std(rotation.escalate_after).ok()
    }

    /// Who a timed escalation reaches: the escalation list of the inquiry's rotation, less
    /// those already `alerted`.
    pub fn escalation_for(&self, policy: Option<&str>, alerted: &[String]) -> Vec<Recipient> {
        let Some(rotation) = self.rotation_for(policy) else {
            return Vec::new();
        };
        rotation
            .escalation
            .iter()
            .filter(|p| !alerted.contains(p))
            .filter_map(|p| self.people.get(p))
            .map(Recipient::from)
            .collect()
    }

    /// The escalation chain of `rotation` in one line, as `check-config` and `slawatch oncall`
    /// show it: `warning → on call; breach → on call, after 10m without a take or an answer
    /// → lead`.
    pub fn chain(&self, rotation: &Rotation) -> String {
        let names: Vec<String> = rotation
            .escalation
            .iter()
            .map(|n| match self.people.get(n) {
                Some(p) => format!("{} <{}>", p.name, p.email),
                None => n.clone(),
            })
            .collect();
        if names.is_empty() {
            return "warning, breach and re-notifications → whoever is on call (no escalation list)"
                .to_string();
        }
        let list = names.join(", ");
        if rotation.escalate_after.is_zero() {
            format!(
                "warning → whoever is on call; breach and re-notifications → on call and {list} at once"
            )
        } else {
            format!(
                "warning → whoever is on call; breach → on call; after {} with nobody taking or \
                 answering it → {list} (once; then re-notifications to both); \
                 a take holds it until take_for runs out",
                humantime::format_duration(rotation.escalate_after)
            )
        }
    }

    /// Every stretch of `[from, from + GAP_HORIZON)` when a rotation has nobody on call, per
    /// rotation name.
    pub fn gaps(&self, from: DateTime<Utc>) -> Vec<(&Rotation, Vec<Shift>)> {
        self.rotations
            .values()
            .map(|r| (r, r.gaps(from, from + GAP_HORIZON)))
            .filter(|(_, g)| !g.is_empty())
            .collect()
    }
}

/// A gap as `check-config` reports it: `Sat 20:00-Mon 08:00 Europe/Madrid (nobody on call;
/// 4 times in the next 4 weeks, first Sat 2026-11-28 20:00 CET)`, one line per weekly pattern.
pub fn describe_gaps(rotation: &Rotation, gaps: &[Shift]) -> Vec<String> {
    let mut patterns: Vec<(WeeklySpan, usize, DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for gap in gaps {
        let span = WeeklySpan {
            start: schedule::minute_of_week(schedule::local_clock(rotation.time_zone, gap.start)),
            end: schedule::minute_of_week(schedule::local_clock(rotation.time_zone, gap.end)),
        };
        let long = gap.end - gap.start >= chrono::Duration::weeks(1);
        match patterns.iter_mut().find(|(s, ..)| *s == span && !long) {
            Some(p) => p.1 += 1,
            None => patterns.push((span, 1, gap.start, gap.end)),
        }
    }
    patterns
        .into_iter()
        .map(|(span, count, start, end)| {
            let (a, b) = (rotation.local_text(start), rotation.local_text(end));
            if count > 1 {
                format!(
                    "nobody is on call {} {} ({count} times in the next {} weeks, first {a} - {b})",
                    span.describe(),
                    rotation.time_zone.name(),
                    GAP_HORIZON.num_weeks()
                )
            } else {
                format!(
                    "nobody is on call {a} - {b} ({} {})",
                    span.describe(),
                    rotation.time_zone.name()
                )
            }
        })
        .collect()
}
