//! Rotation maths: who is on call at an instant, the shifts over a period, and the gaps.
//!
//! A rotation works in local wall-clock time of its named time zone, the way people think about
//! shifts ("Ana from Monday 08:00"). Everything is a function of one monotonic local clock
//! ([`local_clock`]), so daylight-saving changes are handled in one place:
//!
//! - **Spring forward** (e.g. 02:00 → 03:00): the local times of the skipped hour never occur, so
//!   a handoff, slot edge or override edge at 02:30 takes effect at the first instant after the
//!   gap (03:00 local). Nobody's shift is lost or doubled; the outgoing one is an hour shorter.
//! - **Fall back** (e.g. 03:00 → 02:00): the repeated hour is read once. During its second pass
//!   the clock stands at the last second of that hour, so an edge at 02:30 takes effect at its
//!   first occurrence and is not crossed twice (no 30-minute flip back to the previous person).
//!   The outgoing or incoming shift is an hour longer.
//!
//! Layers are listed in the order the configuration gives them; a later layer wins wherever it
//! covers (PagerDuty's "higher layer" rule), and an override wins over every layer.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// Minutes in a week: weekly spans are measured in minutes since Monday 00:00 local.
pub const MINUTES_PER_WEEK: u32 = 7 * 24 * 60;

/// Longest run of repeated local time searched for when clocks go back (real ones are 1 hour,
/// the largest ever used 2 hours).
const MAX_FOLD_MINUTES: i64 = 180;

/// The wall-clock time in `tz` at `at`, made monotonic: during the second pass of an hour
/// repeated when clocks go back it reads the last second of that hour (see the module doc).
pub fn local_clock(tz: Tz, at: DateTime<Utc>) -> NaiveDateTime {
    let local = at.with_timezone(&tz).naive_local();
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Ambiguous(early, late)
            if late.with_timezone(&Utc) == at && early != late =>
        {
            let minute = local
                .with_second(0)
                .and_then(|t| t.with_nanosecond(0))
                .unwrap_or(local);
            (1..=MAX_FOLD_MINUTES)
                .map(|m| minute + chrono::Duration::minutes(m))
                .find(|t| {
                    !matches!(
                        tz.from_local_datetime(t),
                        chrono::LocalResult::Ambiguous(..)
                    )
                })
                .map(|end| end - chrono::Duration::seconds(1))
                .unwrap_or(local)
        }
        _ => local,
    }
}

/// Minutes since Monday 00:00 of a local time.
pub fn minute_of_week(local: NaiveDateTime) -> u32 {
    local.weekday().num_days_from_monday() * 24 * 60 + local.hour() * 60 + local.minute()
}

/// A recurring span of the week in local time, `[start, end)` in minutes since Monday 00:00. An
/// end at or before the start wraps over Sunday midnight; `start == end` is the whole week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeeklySpan {
    pub start: u32,
    pub end: u32,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

const DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// `Mon`/`monday` (any case) → 0.
fn day(text: &str) -> Option<u32> {
    let text = text.trim().to_ascii_lowercase();
    (0..7)
        .find(|&i| text == DAYS[i] || text == DAY_NAMES[i])
        .map(|i| i as u32)
}

fn hh_mm(text: &str) -> Option<u32> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    ((h < 24 && m < 60) || (h == 24 && m == 0)).then_some(h * 60 + m)
}

impl WeeklySpan {
    /// Parses `Mon 08:00-20:00` (an end at or before the start is on the next day, `24:00` is
    /// midnight), `Sat 20:00-Mon 08:00` (an explicit end day), or `Mon-Fri 08:00-20:00` (one
    /// span per day of the range, which may run across the week's end: `Sun-Thu`).
    pub fn parse(text: &str) -> Result<Vec<WeeklySpan>, String> {
        let bad = || {
            format!(
                "`{text}` is not a weekly time like \"Mon 08:00-20:00\", \"Mon-Fri 08:00-20:00\" or \"Sat 20:00-Mon 08:00\""
            )
        };
        let text = text.replace('–', "-");
        let (first, rest) = text
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(bad)?;
        let (start_time, end) = rest.trim().split_once('-').ok_or_else(bad)?;
        let start_time = hh_mm(start_time).filter(|m| *m < 24 * 60).ok_or_else(bad)?;
        let (end_day, end_time) = match end.trim().split_once(char::is_whitespace) {
            Some((d, t)) => (Some(day(d).ok_or_else(bad)?), hh_mm(t).ok_or_else(bad)?),
            None => (None, hh_mm(end).ok_or_else(bad)?),
        };
        let days: Vec<u32> = match first.split_once('-') {
            Some((a, b)) if end_day.is_none() => {
                // Either way across the week's end: `Sun-Thu` (the Gulf's work week) is Sunday
                // to Thursday, `Fri-Mon` four days.
                let (a, b) = (day(a).ok_or_else(bad)?, day(b).ok_or_else(bad)?);
                (0..=(b + 7 - a) % 7).map(|k| (a + k) % 7).collect()
            }
            Some(_) => return Err(bad()),
            None => vec![day(first).ok_or_else(bad)?],
        };
        Ok(days
            .into_iter()
            .map(|d| {
                let start = d * 24 * 60 + start_time;
                let end = match end_day {
                    Some(e) => e * 24 * 60 + end_time,
                    // Same day, or the next day when it ends at or before it starts.
                    None if end_time > start_time => d * 24 * 60 + end_time,
                    None => (d + 1) * 24 * 60 + end_time,
                } % MINUTES_PER_WEEK;
                WeeklySpan { start, end }
            })
            .collect())
    }

    pub fn contains(&self, minute: u32) -> bool {
        if self.start < self.end {
            self.start <= minute && minute < self.end
        } else {
            minute >= self.start || minute < self.end
        }
    }

    pub fn overlaps(&self, other: &WeeklySpan) -> bool {
        self.contains(other.start) || other.contains(self.start)
    }

    /// `Sat 20:00-Mon 08:00`.
    pub fn describe(&self) -> String {
        let at = |m: u32| {
            let m = m % MINUTES_PER_WEEK;
            let day = DAYS[(m / (24 * 60)) as usize];
            let mut day = day.to_string();
            day[..1].make_ascii_uppercase();
            format!("{day} {:02}:{:02}", m / 60 % 24, m % 60)
        };
        format!("{}-{}", at(self.start), at(self.end))
    }
}

/// How a layer decides who is on call.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerKind {
    /// People take turns of `shift_days` days each, handing off at the local time of
    /// `first_handoff`, when `people[0]` starts; before it the layer covers nobody.
    Turns {
        people: Vec<String>,
        shift_days: u32,
        first_handoff: NaiveDateTime,
    },
    /// Explicit weekly slots (non-overlapping): `Mon-Fri 08:00-20:00 → ana`.
    Slots(Vec<(WeeklySpan, String)>),
}

/// One layer of a rotation.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub kind: LayerKind,
    /// When set, the layer covers only these weekly spans (e.g. a daytime rotation).
    pub hours: Vec<WeeklySpan>,
}

impl Layer {
    /// Who this layer puts on call at a local clock reading, if anyone.
    pub fn person_at(&self, local: NaiveDateTime) -> Option<&str> {
        let minute = minute_of_week(local);
        if !self.hours.is_empty() && !self.hours.iter().any(|h| h.contains(minute)) {
            return None;
        }
        match &self.kind {
            LayerKind::Turns {
                people,
                shift_days,
                first_handoff,
            } => {
                let mut days = (local.date() - first_handoff.date()).num_days();
                if local.time() < first_handoff.time() {
                    days -= 1;
                }
                if days < 0 || people.is_empty() {
                    return None;
                }
                let turn = days / i64::from((*shift_days).max(1));
                Some(people[(turn % people.len() as i64) as usize].as_str())
            }
            LayerKind::Slots(slots) => slots
                .iter()
                .find(|(span, _)| span.contains(minute))
                .map(|(_, person)| person.as_str()),
        }
    }
}

/// A person covering `[from, to)` (local times) instead of whoever the layers put on call.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub person: String,
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
}

/// One rotation (a schedule): layers, overrides, and who else hears of breaches.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    pub name: String,
    pub time_zone: Tz,
    pub layers: Vec<Layer>,
    pub overrides: Vec<Override>,
    /// People who also receive breaches and re-notifications (and warnings when nobody is on
    /// call).
    pub escalation: Vec<String>,
    /// How long a breach waits for someone to take or answer it before it goes to `escalation`
    /// (`escalate_after`); zero sends it to both at once.
    pub escalate_after: std::time::Duration,
}

/// A stretch of time with one person (or nobody) on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub person: Option<String>,
}

impl Rotation {
    /// Who is on call at `at`: the last override covering it, else the last layer covering it.
    pub fn on_call(&self, at: DateTime<Utc>) -> Option<&str> {
        let local = local_clock(self.time_zone, at);
        self.on_call_local(local)
    }

    fn on_call_local(&self, local: NaiveDateTime) -> Option<&str> {
        if let Some(o) = self
            .overrides
            .iter()
            .rev()
            .find(|o| o.from <= local && local < o.to)
        {
            return Some(o.person.as_str());
        }
        self.layers.iter().rev().find_map(|l| l.person_at(local))
    }

    /// The shifts over `[from, to)`, consecutive and merged (a change of person starts a new
    /// one). Every configured edge is a whole local minute and every zone's offset a whole
    /// number of minutes, so walking UTC minutes finds every handoff exactly.
    pub fn shifts(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Shift> {
        let mut out: Vec<Shift> = Vec::new();
        if from >= to {
            return out;
        }
        let mut at = from;
        let mut current = self.on_call(from).map(str::to_string);
        let mut start = from;
        loop {
            // The next whole UTC minute.
            let next = at
                .with_second(0)
                .and_then(|t| t.with_nanosecond(0))
                .unwrap_or(at)
                + chrono::Duration::minutes(1);
            if next >= to {
                break;
            }
            let person = self.on_call(next);
            if person != current.as_deref() {
                out.push(Shift {
                    start,
                    end: next,
                    person: current.take(),
                });
                current = person.map(str::to_string);
                start = next;
            }
            at = next;
        }
        out.push(Shift {
            start,
            end: to,
            person: current,
        });
        out
    }

    /// The stretches of `[from, to)` when nobody is on call.
    pub fn gaps(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Shift> {
        self.shifts(from, to)
            .into_iter()
            .filter(|s| s.person.is_none())
            .collect()
    }

    /// `Sat 2026-11-28 20:00` in the rotation's zone.
    pub fn local_text(&self, at: DateTime<Utc>) -> String {
        at.with_timezone(&self.time_zone)
            .format("%a %Y-%m-%d %H:%M %Z")
            .to_string()
    }
}

/// A local date-time as written in the configuration: `2026-12-24 20:00` or `2026-12-24T20:00`.
pub fn parse_local(text: &str) -> Result<NaiveDateTime, String> {
    let t = text.trim().replace('T', " ");
    NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M")
        .or_else(|_| {
            NaiveDate::parse_from_str(&t, "%Y-%m-%d").map(|d| d.and_time(chrono::NaiveTime::MIN))
        })
        .map_err(|_| format!("`{text}` is not a local date and time like 2026-12-24 20:00"))
}
