//! Response-time policies: target, warn offsets, re-notify interval and calendar, and the rules
//! that pick one for an inquiry.
//!
//! A policy is identified by its *version*, `name@hash`, where the hash covers every parameter:
//! changing the target or the calendar yields a new version, inquiries keep the version they were
//! opened under (their deadlines are stored in the ledger), so a policy change never rewrites the
//! past. Calendars work in a named time zone; everything else is UTC.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{Channel, Language};

/// One response-time policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    /// Time allowed for the first response (15 minutes by the desk's promise).
    pub target: Duration,
    /// Instants after receipt at which the on-call manager is warned (e.g. 10 minutes).
    pub warn_offsets: Vec<Duration>,
    /// How often to re-notify while an inquiry stays breached, and how many times at most.
    pub renotify_every: Duration,
    pub renotify_max: u32,
    pub calendar: Calendar,
    /// A customer message after a reply opens a "next reply" inquiry.
    pub next_reply: bool,
}

/// When the clock runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Calendar {
    /// 24x7: every second counts.
    Always,
    BusinessHours(BusinessHours),
}

/// Opening hours per weekday in a named time zone, minus holidays.
#[derive(Debug, Clone, PartialEq)]
pub struct BusinessHours {
    pub time_zone: Tz,
    /// Half-open local intervals `[start, end)` per weekday (index 0 = Monday), sorted and
    /// non-overlapping; an end at or before its start closes on the next day.
    pub weekly: [Vec<(NaiveTime, NaiveTime)>; 7],
    pub holidays: BTreeSet<NaiveDate>,
}

/// What the ledger keeps of a policy version: every parameter, in plain units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRecord {
    pub version: String,
    pub name: String,
    pub target_seconds: u64,
    pub warn_offsets_seconds: Vec<u64>,
    pub renotify_every_seconds: u64,
    pub renotify_max: u32,
    /// `24x7`, or `business-hours <tz> <weekly…> holidays <dates…>`.
    pub calendar: String,
    pub next_reply: bool,
}

impl Policy {
    pub fn record(&self) -> PolicyRecord {
        let mut record = PolicyRecord {
            version: String::new(),
            name: self.name.clone(),
            target_seconds: self.target.as_secs(),
            warn_offsets_seconds: self.warn_offsets.iter().map(Duration::as_secs).collect(),
            renotify_every_seconds: self.renotify_every.as_secs(),
            renotify_max: self.renotify_max,
            calendar: self.calendar.describe(),
            next_reply: self.next_reply,
        };
        let canonical = serde_json::to_string(&record).expect("policy record serializes");
        let hash = hex::encode(Sha256::digest(canonical.as_bytes()));
        record.version = format!("{}@{}", self.name, &hash[..8]);
        record
    }

    /// `name@hash` of the parameters.
    pub fn version(&self) -> String {
        self.record().version
    }

    /// The deadline and warn instants of an inquiry received at `received_at`.
    pub fn deadlines(&self, received_at: DateTime<Utc>) -> (DateTime<Utc>, Vec<DateTime<Utc>>) {
        let deadline = self.calendar.add(received_at, self.target);
        let warns = self
            .warn_offsets
            .iter()
            .map(|offset| self.calendar.add(received_at, *offset))
            .collect();
        (deadline, warns)
    }
}

impl Calendar {
    /// `start` plus `span` of calendar time (working time for business hours).
    pub fn add(&self, start: DateTime<Utc>, span: Duration) -> DateTime<Utc> {
        let span = chrono::Duration::from_std(span).unwrap_or(chrono::Duration::MAX);
        match self {
            Calendar::Always => start
                .checked_add_signed(span)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            Calendar::BusinessHours(hours) => hours.add(start, span),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Calendar::Always => "24x7".to_string(),
            Calendar::BusinessHours(h) => {
                let mut out = format!("business-hours {}", h.time_zone.name());
                for (index, intervals) in h.weekly.iter().enumerate() {
                    let day = Weekday::try_from(index as u8).unwrap_or(Weekday::Mon);
                    for (a, b) in intervals {
                        out.push_str(&format!(
                            " {day}:{}-{}",
                            a.format("%H:%M"),
                            b.format("%H:%M")
                        ));
                    }
                }
                if !h.holidays.is_empty() {
                    out.push_str(" holidays");
                    for d in &h.holidays {
                        out.push_str(&format!(" {d}"));
                    }
                }
                out
            }
        }
    }
}

/// How far ahead a business-hours deadline is searched before giving up (a calendar with no open
/// hour at all is rejected by config validation; this only bounds a pathological one).
const MAX_CALENDAR_DAYS: u64 = 3 * 366;

impl BusinessHours {
    fn add(&self, start: DateTime<Utc>, span: chrono::Duration) -> DateTime<Utc> {
        let mut remaining = span;
        let local_start = start.with_timezone(&self.time_zone).date_naive();
        for day_offset in 0..MAX_CALENDAR_DAYS {
            let Some(day) = local_start.checked_add_days(Days::new(day_offset)) else {
                break;
            };
            if self.holidays.contains(&day) {
                continue;
            }
            for (open, close) in &self.weekly[day.weekday().num_days_from_monday() as usize] {
                // An interval ending at or before its start (e.g. 18:00–00:00) closes the next day.
                let close_day = if close <= open {
                    day.succ_opt()
                } else {
                    Some(day)
                };
                let (Some(open_at), Some(close_at)) = (
                    self.instant(day, *open),
                    close_day.and_then(|d| self.instant(d, *close)),
                ) else {
                    continue;
                };
                if close_at <= start {
                    continue;
                }
                let from = open_at.max(start);
                let available = close_at - from;
                if remaining <= available {
                    return from + remaining;
                }
                remaining -= available;
            }
        }
        DateTime::<Utc>::MAX_UTC
    }

    /// A local wall-clock time as UTC; a time skipped by a DST jump maps to the first instant
    /// after the gap, an ambiguous one to its earlier instant.
    fn instant(&self, day: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
        let local = day.and_time(time);
        match self.time_zone.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            chrono::LocalResult::Ambiguous(early, _) => Some(early.with_timezone(&Utc)),
            chrono::LocalResult::None => {
                // In a spring-forward gap: walk forward minute by minute to the first valid time.
                (1..=180).find_map(|m| {
                    let t = local + chrono::Duration::minutes(m);
                    self.time_zone
                        .from_local_datetime(&t)
                        .earliest()
                        .map(|t| t.with_timezone(&Utc))
                })
            }
        }
    }
}

/// Picks the policy for a new inquiry: the first rule that matches, else the default.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySet {
    pub default: Policy,
    pub rules: Vec<PolicyRule>,
}

/// `when` conditions are ANDed; an empty list matches anything.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRule {
    pub channels: Vec<Channel>,
    pub languages: Vec<Language>,
    pub sources: Vec<String>,
    /// Lower-case sender addresses or `@domain` suffixes.
    pub senders: Vec<String>,
    pub policy: Policy,
}

impl PolicySet {
    pub fn single(policy: Policy) -> PolicySet {
        PolicySet {
            default: policy,
            rules: Vec::new(),
        }
    }

    pub fn select(
        &self,
        channel: Channel,
        language: Language,
        source: &str,
        sender: &str,
    ) -> &Policy {
        self.rules
            .iter()
            .find(|r| {
                (r.channels.is_empty() || r.channels.contains(&channel))
                    && (r.languages.is_empty() || r.languages.contains(&language))
                    && (r.sources.is_empty() || r.sources.iter().any(|s| s == source))
                    && (r.senders.is_empty() || r.senders.iter().any(|s| sender_matches(s, sender)))
            })
            .map(|r| &r.policy)
            .unwrap_or(&self.default)
    }

    /// Every policy, default first.
    pub fn all(&self) -> impl Iterator<Item = &Policy> {
        std::iter::once(&self.default).chain(self.rules.iter().map(|r| &r.policy))
    }
}

fn sender_matches(pattern: &str, sender: &str) -> bool {
    let sender = sender.to_ascii_lowercase();
    match pattern.strip_prefix('@') {
        Some(domain) => sender.rsplit_once('@').is_some_and(|(_, d)| d == domain),
        None => sender == pattern,
    }
}

impl Default for Policy {
    /// The desk's promise: 15 minutes, warned at 10, 24x7, re-notified every 15 minutes up to 4 times.
    fn default() -> Policy {
        Policy {
            name: "default".to_string(),
            target: Duration::from_secs(15 * 60),
            warn_offsets: vec![Duration::from_secs(10 * 60)],
            renotify_every: Duration::from_secs(15 * 60),
            renotify_max: 4,
            calendar: Calendar::Always,
            next_reply: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn madrid_office() -> BusinessHours {
        let nine = NaiveTime::from_hms_opt(9, 0, 0).unwrap();
        let five = NaiveTime::from_hms_opt(17, 0, 0).unwrap();
        let day = vec![(nine, five)];
        let weekly = [
            day.clone(),
            day.clone(),
            day.clone(),
            day.clone(),
            day,
            vec![],
            vec![],
        ];
        BusinessHours {
            time_zone: chrono_tz::Europe::Madrid,
            weekly,
            holidays: [NaiveDate::from_ymd_opt(2026, 12, 25).unwrap()]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn always_calendar_adds_wall_time_across_midnight() {
        let p = Policy::default();
        let (deadline, warns) = p.deadlines(utc("2026-11-24T23:55:00Z"));
        assert_eq!(deadline, utc("2026-11-25T00:10:00Z"));
        assert_eq!(warns, vec![utc("2026-11-25T00:05:00Z")]);
    }

    #[test]
    fn business_hours_pause_overnight_and_skip_holidays() {
        let cal = Calendar::BusinessHours(madrid_office());
        // Thursday 24 Dec 2026, 16:55 Madrid (15:55 UTC): 5 minutes left that day, then Christmas
        // (holiday), then Saturday/Sunday closed: the remaining 10 minutes run Monday 09:00–09:10.
        let got = cal.add(utc("2026-12-24T15:55:00Z"), Duration::from_secs(15 * 60));
        assert_eq!(got, utc("2026-12-28T08:10:00Z"));
    }

    #[test]
    fn business_hours_start_before_opening_counts_from_opening() {
        let cal = Calendar::BusinessHours(madrid_office());
        let got = cal.add(utc("2026-11-24T05:00:00Z"), Duration::from_secs(15 * 60));
        assert_eq!(got, utc("2026-11-24T08:15:00Z"));
    }

    #[test]
    fn business_hours_follow_dst_change() {
        let cal = Calendar::BusinessHours(madrid_office());
        // Friday 27 Mar 2026 16:50 CET (15:50 UTC): 10 minutes left; Monday 30 Mar is CEST (UTC+2).
        let got = cal.add(utc("2026-03-27T15:50:00Z"), Duration::from_secs(15 * 60));
        assert_eq!(got, utc("2026-03-30T07:05:00Z"));
    }

    #[test]
    fn version_changes_with_any_parameter() {
        let a = Policy::default();
        let mut b = a.clone();
        b.target = Duration::from_secs(20 * 60);
        assert_ne!(a.version(), b.version());
        assert_eq!(a.version(), Policy::default().version());
        assert!(a.version().starts_with("default@"));
    }

    #[test]
    fn first_matching_rule_wins() {
        let arabic = Policy {
            name: "arabic".into(),
            ..Policy::default()
        };
        let set = PolicySet {
            default: Policy::default(),
            rules: vec![PolicyRule {
                channels: vec![],
                languages: vec![Language::Ar],
                sources: vec![],
                senders: vec![],
                policy: arabic,
            }],
        };
        assert_eq!(
            set.select(Channel::Email, Language::Ar, "imap", "a@b").name,
            "arabic"
        );
        assert_eq!(
            set.select(Channel::Email, Language::Es, "imap", "a@b").name,
            "default"
        );
    }
}
