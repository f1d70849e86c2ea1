//! The built-in wallboard at `/`: what is open, what breaches next and how today is going, as
//! plain server-rendered HTML for a TV on the desk when there is no Grafana.
//!
//! It must work on any screen in the office without fonts, scripts or other assets from
//! elsewhere, and be read from three metres away: large type, a dark background that is easy on
//! a night shift and bright colours per state (each state also written out, not only coloured).
//! It keeps itself fresh with `<meta http-equiv="refresh">` and uses no JavaScript at all.
//! Everything that came from outside (customers, subjects, names) is escaped; those cells carry
//! `dir="auto"` so Arabic renders right to left inside a left-to-right page.
//!
//! Rendering is bounded on a very bad day: only the [`MAX_ROWS`] inquiries with the least time
//! left are copied out from under the tracker's read lock and rendered; the rest are counted.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use maud::{Markup, PreEscaped, html};
use slawatch_core::tracker::{Inquiry, InquiryState, OpenStatus, SlaStatus, Tracker};

use super::AppState;
use super::markup::Text;

/// Rows shown at most; the rest are counted. A TV shows a few dozen; 500 bounds the page (and
/// the work under the read lock) while still letting someone scroll through a bad morning.
pub const MAX_ROWS: usize = 500;
/// How far back before today an inquiry may have been received and still be decided today
/// (a late manual ack of an old inquiry). Bounds the scan for today's figures.
const TODAY_LOOKBACK: TimeDelta = TimeDelta::days(7);
/// Seconds between automatic reloads: fresh enough for a 15-minute promise, light on the server.
const REFRESH_SECONDS: u32 = 15;

/// Headline figures and the open inquiries, computed under the read lock.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub ok: usize,
    pub warning: usize,
    pub breached: usize,
    pub answered_today: usize,
    pub met_today: usize,
    pub missed_today: usize,
    /// When the oldest open inquiry was received.
    pub oldest_received: Option<DateTime<Utc>>,
    /// The earliest deadline of an open inquiry that has not passed yet.
    pub next_deadline: Option<DateTime<Utc>>,
    /// Open inquiries, least time left first, at most [`MAX_ROWS`].
    pub open: Vec<(OpenStatus, Inquiry)>,
    /// All open inquiries, including those not in `open`.
    pub open_total: usize,
    /// What the monitor itself cannot see or tell (its active monitor alerts, a ledger that
    /// takes no writes): shown as a banner above everything, since the figures below may be
    /// incomplete while it lasts.
    pub monitor: Vec<String>,
    /// The ledger's state in one line (`ledger writable`, or why not).
    pub ledger: String,
    /// Which replica this is (`active` / `standby` in a pair; empty for the only daemon).
    pub role: String,
}

impl Summary {
    /// Figures at `now`; "today" is the calendar day in `tz`.
    pub fn compute(tracker: &Tracker, now: DateTime<Utc>, tz: Tz) -> Summary {
        let today = start_of_day(now, tz);
        let mut s = Summary {
            ok: 0,
            warning: 0,
            breached: 0,
            answered_today: 0,
            met_today: 0,
            missed_today: 0,
            oldest_received: None,
            next_deadline: None,
            open: Vec::new(),
            open_total: 0,
            monitor: tracker
                .monitor_alerts()
                .map(|m| {
                    let what = crate::notify::MonitorNotice {
                        problem: m.problem,
                        subject: m.subject.clone(),
                        detail: m.detail.clone(),
                    }
                    .what();
                    format!(
                        "{what} since {}: {}",
                        m.raised_at.with_timezone(&tz).format("%H:%M:%S"),
                        m.detail
                    )
                })
                .collect(),
            ledger: "ledger writable".to_string(),
            role: String::new(),
        };
        // Sort references and clone only the rows shown: cloning every open inquiry on a very
        // bad day would dominate the render.
        let mut open: Vec<(OpenStatus, &Inquiry)> = Vec::new();
        for i in tracker.open() {
            let Some(status) = i.open_status_at(now) else {
                continue;
            };
            match status {
                OpenStatus::Ok => s.ok += 1,
                OpenStatus::Warning => s.warning += 1,
                OpenStatus::Breached => s.breached += 1,
            }
            if s.oldest_received.is_none_or(|o| i.received_at < o) {
                s.oldest_received = Some(i.received_at);
            }
            if let Some(d) = i.deadline_at
                && d > now
                && s.next_deadline.is_none_or(|n| d < n)
            {
                s.next_deadline = Some(d);
            }
            open.push((status, i));
        }
        s.open_total = open.len();
        let key = |i: &Inquiry| {
            (
                i.deadline_at.is_none(),
                i.deadline_at,
                i.received_at,
                i.id.clone(),
            )
        };
        if open.len() > MAX_ROWS {
            open.select_nth_unstable_by_key(MAX_ROWS, |(_, i)| key(i));
            open.truncate(MAX_ROWS);
        }
        open.sort_by_key(|(_, i)| key(i));
        s.open = open.into_iter().map(|(st, i)| (st, i.clone())).collect();

        let is_today = |t: Option<DateTime<Utc>>| t.is_some_and(|t| t >= today && t <= now);
        for i in tracker
            .newest_first()
            .take_while(|i| i.received_at >= today - TODAY_LOOKBACK)
        {
            if i.state == InquiryState::Responded && is_today(i.responded_at) {
                s.answered_today += 1;
            }
            // Each inquiry counts once, on the day its outcome was decided (as the metrics do).
            let decided_missed = match (i.breached_at, i.state) {
                // Counted in the inquiry it was merged into.
                (_, InquiryState::Merged) => false,
                // A breach revised: answered in time after all (`InquiryRevised`).
                (Some(_), InquiryState::Responded) if i.sla == SlaStatus::Met => false,
                (Some(b), _) => is_today(Some(b)),
                (None, InquiryState::Responded) => {
                    i.sla == SlaStatus::Missed && is_today(i.responded_at)
                }
                (None, InquiryState::Open) => is_today(i.deadline_at),
                (None, InquiryState::Excluded) => false,
            };
            if decided_missed {
                s.missed_today += 1;
            } else if i.sla == SlaStatus::Met && is_today(i.responded_at) {
                s.met_today += 1;
            }
        }
        s
    }

    /// Share of today's decided inquiries answered in time, if any were decided.
    pub fn compliance_today(&self) -> Option<f64> {
        let total = self.met_today + self.missed_today;
        (total > 0).then(|| self.met_today as f64 / total as f64)
    }
}

/// `GET /`.
pub async fn page(State(state): State<AppState>) -> impl IntoResponse {
    let now = Utc::now();
    let (mut summary, tz) = {
        let tracker = state.tracker();
        let tz = tracker.rules().desk.time_zone;
        (Summary::compute(&tracker, now, tz), tz)
    };
    let ledger = state.shared.ledger.snapshot();
    summary.ledger = ledger.describe(state.shared.now());
    summary.role = match state.shared.role() {
        crate::replica::Role::Single => String::new(),
        crate::replica::Role::Active { epoch } => format!("active replica (lease epoch {epoch})"),
        crate::replica::Role::Standby { seq, .. } => {
            format!("standby replica (follows the ledger at seq {seq})")
        }
    };
    if ledger.is_stuck(state.shared.now())
        && !summary.monitor.iter().any(|m| m.starts_with("ledger"))
    {
        summary.monitor.insert(0, summary.ledger.clone());
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        render(&summary, now, tz),
    )
}

/// Sizes are in `vw`/`vh` with a floor in `px`, so the same page fills a 1080p or 4K TV and is
/// still usable on a laptop. Colours: state backgrounds with white text keep ≥ 4.5:1 contrast.
pub(crate) const STYLE: &str = r#"
:root { color-scheme: dark; }
* { box-sizing: border-box; }
body { margin: 0; padding: 1.2vw 1.6vw; background: #0b0f14; color: #f1f5f9;
  font: clamp(16px, 1.55vw, 48px)/1.25 system-ui, "Segoe UI", Roboto, "Noto Sans", "Noto Sans Arabic", sans-serif; }
header { display: flex; justify-content: space-between; align-items: baseline; gap: 1vw; }
h1 { font-size: 1.6em; margin: 0 0 .4em; letter-spacing: .02em; }
.updated { color: #94a3b8; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(7.5em, 1fr)); gap: .8vw; margin-bottom: 1vw; }
.figure { border-radius: .4em; padding: .35em .6em; overflow: hidden; background: #1e293b; }
.figure b { display: block; font-size: 1.95em; line-height: 1.1; font-variant-numeric: tabular-nums; white-space: nowrap; }
.figure.alarm { background: #b91c1c; }
.figure.warn { background: #b45309; }
.figure.good { background: #15803d; }
table { border-collapse: collapse; width: 100%; }
th { text-align: start; color: #94a3b8; font-weight: 600; padding: .2em .5em; border-bottom: 2px solid #334155; }
td { text-align: start; padding: .25em .5em; border-bottom: 1px solid #1e293b; vertical-align: top; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; font-weight: 700; }
td.state { font-weight: 700; text-transform: uppercase; white-space: nowrap; }
tr.breached td { background: #7f1d1d; }
tr.breached td.state { background: #dc2626; }
tr.warning td { background: #713f12; }
tr.warning td.state { background: #d97706; }
tr.ok td.state { color: #4ade80; }
td.who { max-width: 22vw; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
td:nth-child(6) { max-width: 40vw; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.empty { font-size: 2em; color: #4ade80; }
.monitor { background: #b91c1c; border-radius: .4em; padding: .4em .8em; margin-bottom: 1vw; font-weight: 700; }
.monitor ul { margin: .2em 0 0; padding-inline-start: 1.2em; font-weight: 400; }
footer { margin-top: 1vw; color: #64748b; }
footer a { color: #94a3b8; }
"#;

/// The whole page.
pub fn render(s: &Summary, now: DateTime<Utc>, tz: Tz) -> String {
    let compliance = s
        .compliance_today()
        .map_or_else(|| "–".to_string(), |c| format!("{:.1} %", c * 100.0));
    let compliance_class = match s.compliance_today() {
        None => "figure",
        Some(c) if c >= 0.99 => "figure good",
        Some(c) if c >= 0.95 => "figure warn",
        Some(_) => "figure alarm",
    };
    let next = s.next_deadline.map_or_else(
        || "–".to_string(),
        |d| headline_span((d - now).num_seconds().max(0).unsigned_abs()),
    );
    let next_class = match s.next_deadline.map(|d| (d - now).num_seconds()) {
        Some(left) if left < 300 => "figure warn",
        _ => "figure",
    };
    let oldest = s.oldest_received.map_or_else(
        || "–".to_string(),
        |r| headline_span((now - r).num_seconds().max(0).unsigned_abs()),
    );
    let figure = |n: usize, class: &'static str| if n > 0 { class } else { "figure" };
    let updated = now.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S");
    let page = html! {
        (PreEscaped("<!doctype html>\n"))
        html lang="en" dir="ltr" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content=(REFRESH_SECONDS);
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "slawatch: " (s.open_total) " open, " (s.breached) " breached" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "slawatch · open inquiries" }
                    span class="updated" {
                        "Updated " (updated) " (" (tz.name()) ") · refreshes every "
                        (REFRESH_SECONDS) " s"
                    }
                }
                section class="figures" aria-label="Headline figures" {
                    div class=(figure(s.breached, "figure alarm")) id="breached" {
                        b { (s.breached) } "breached"
                    }
                    div class=(figure(s.warning, "figure warn")) id="warning" {
                        b { (s.warning) } "warning"
                    }
                    div class="figure" id="ok" { b { (s.ok) } "open, on time" }
                    div class=(next_class) id="next-breach" { b { (next) } "next breach in" }
                    div class="figure" id="oldest" { b { (oldest) } "oldest waiting" }
                    div class=(compliance_class) id="compliance" {
                        b { (compliance) }
                        "in time today (" (s.met_today) " of " (s.met_today + s.missed_today) ")"
                    }
                    div class="figure" id="answered" { b { (s.answered_today) } "answered today" }
                }
                @if !s.monitor.is_empty() {
                    section class="monitor" id="monitor" role="alert" {
                        "MONITOR BLIND: the figures may be incomplete"
                        ul {
                            @for line in &s.monitor {
                                li dir="auto" { (Text(line)) }
                            }
                        }
                    }
                }
                @if s.open.is_empty() {
                    p class="empty" { "No open inquiries." }
                } @else {
                    table id="open" {
                        thead {
                            tr {
                                th { "Time left" } th { "State" } th { "Channel" } th { "Lang" }
                                th { "Customer" } th { "Subject" } th { "Received" }
                            }
                        }
                        tbody {
                            @for (status, i) in &s.open {
                                (row(*status, i, now, tz))
                            }
                        }
                    }
                    @if s.open_total > s.open.len() {
                        p {
                            "… and " (s.open_total - s.open.len()) " more open inquiries (see "
                            a href="/api/v1/inquiries?state=open" { "the API" } ")."
                        }
                    }
                }
                footer {
                    span id="ledger" { (Text(&s.ledger)) }
                    @if !s.role.is_empty() {
                        " · " span id="role" { (Text(&s.role)) }
                    }
                    " · " a href="/metrics" { "metrics" }
                    " · " a href="/api/v1/inquiries" { "API" }
                    " · " a href="/readyz" { "readiness" }
                }
            }
        }
    };
    page.into_string()
}

/// One open inquiry's row.
fn row(status: OpenStatus, i: &Inquiry, now: DateTime<Utc>, tz: Tz) -> Markup {
    let customer = match &i.customer_name {
        Some(name) if !name.is_empty() => format!("{name} <{}>", i.customer),
        _ => i.customer.to_string(),
    };
    html! {
        tr class=(status.as_str()) data-id=(Text(i.id.as_str())) {
            td class="num" {
                @match i.deadline_at {
                    Some(d) => (time_left(d - now)),
                    None => "–",
                }
            }
            td class="state" { (status.as_str()) }
            td { (i.channel.as_str()) }
            td { (i.language.as_str()) }
            td dir="auto" class="who" { (Text(&customer)) }
            td dir="auto" { (Text(&i.subject)) }
            td class="num" { (i.received_at.with_timezone(&tz).format("%H:%M")) }
        }
    }
}

/// `12m 05s left`, `overdue 3m 10s`, `1h 02m left`.
pub(crate) fn time_left(d: TimeDelta) -> String {
    let secs = d.num_seconds();
    let span = human(secs.unsigned_abs());
    if secs < 0 {
        format!("overdue {span}")
    } else {
        format!("{span} left")
    }
}

/// A headline duration, short enough for a tile read across the room: seconds only matter in
/// the last ten minutes.
fn headline_span(secs: u64) -> String {
    if secs < 600 {
        human(secs)
    } else if secs < 3600 {
        format!("{}m", secs / 60)
    } else {
        human(secs)
    }
}

pub(crate) fn human(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else {
        format!("{m}m {s:02}s")
    }
}

/// Midnight of `now`'s day in `tz`, as UTC (the first valid instant of the day when midnight
/// falls in a daylight-saving gap).
fn start_of_day(now: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
    let day = now.with_timezone(&tz).date_naive();
    (0..=3)
        .filter_map(|hour| day.and_hms_opt(hour, 0, 0))
        .find_map(|t| tz.from_local_datetime(&t).earliest())
        .map_or(now - TimeDelta::days(1), |t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use slawatch_core::domain::{Channel, Language};
    use slawatch_core::testing;
    use slawatch_core::tracker::Event;

    /// `n` open Arabic emails received `ages` seconds before `now` (15-minute target, warn at 10).
    fn tracker_with(now: DateTime<Utc>, ages: &[i64]) -> Tracker {
        let mut tracker = testing::tracker();
        for (n, age) in (0u64..).zip(ages) {
            let mut opened = testing::opened(
                n,
                Channel::Email,
                Language::Ar,
                now - TimeDelta::seconds(*age),
            );
            opened.subject = format!("Question {n} age {age}");
            tracker.apply(&Event::InquiryOpened(opened));
        }
        tracker
    }

    #[test]
    fn headline_figures_and_order() {
        let now = Utc::now();
        let tracker = tracker_with(now, &[60, 1300, 700, 2000]);
        let s = Summary::compute(&tracker, now, chrono_tz::UTC);
        assert_eq!((s.ok, s.warning, s.breached, s.open_total), (1, 1, 2, 4));
        let subjects: Vec<&str> = s.open.iter().map(|(_, i)| &*i.subject).collect();
        assert_eq!(
            subjects,
            [
                "Question 3 age 2000",
                "Question 1 age 1300",
                "Question 2 age 700",
                "Question 0 age 60"
            ]
        );
        assert_eq!(s.oldest_received, Some(now - TimeDelta::seconds(2000)));
        // The next deadline still ahead: the warning one, 200 s from now.
        assert_eq!(
            s.next_deadline,
            Some(now - TimeDelta::seconds(700) + TimeDelta::minutes(15))
        );
        let html = render(&s, now, chrono_tz::UTC);
        assert!(html.contains("id=\"breached\"><b>2</b>"), "{html}");
        assert!(html.contains("class=\"figure alarm\" id=\"breached\""));
        assert!(html.contains("class=\"figure warn\" id=\"warning\""));
        assert!(html.contains("<b>3m 20s</b>next breach in"));
        assert!(html.contains("<b>33m</b>oldest waiting"));
        assert!(html.contains("<tr class=\"breached\""));
        assert!(html.contains("<tr class=\"warning\""));
        assert!(!html.contains("<script"), "no JavaScript needed");
    }

    #[test]
    fn rows_are_bounded_and_the_rest_counted() {
        let now = Utc::now();
        let ages: Vec<i64> = (0..(MAX_ROWS as i64 + 20)).map(|n| n * 7).collect();
        let tracker = tracker_with(now, &ages);
        let s = Summary::compute(&tracker, now, chrono_tz::UTC);
        assert_eq!(s.open_total, MAX_ROWS + 20);
        assert_eq!(s.open.len(), MAX_ROWS);
        // The rows kept are those with the least time left, in order.
        let oldest_first: Vec<DateTime<Utc>> = s.open.iter().map(|(_, i)| i.received_at).collect();
        assert!(oldest_first.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            s.open[0].1.received_at,
            now - TimeDelta::seconds(*ages.last().unwrap_or(&0))
        );
        let html = render(&s, now, chrono_tz::UTC);
        assert!(html.contains("… and 20 more open inquiries"));
        assert_eq!(html.matches("<tr class=").count(), MAX_ROWS);
    }

    #[test]
    fn empty_desk() {
        let now = Utc::now();
        let s = Summary::compute(&tracker_with(now, &[]), now, chrono_tz::UTC);
        let html = render(&s, now, chrono_tz::UTC);
        assert!(html.contains("No open inquiries."));
        assert!(html.contains("<b>–</b>next breach in"));
    }

    #[test]
    fn time_left_reads_well() {
        assert_eq!(time_left(TimeDelta::seconds(725)), "12m 05s left");
        assert_eq!(time_left(TimeDelta::seconds(-190)), "overdue 3m 10s");
        assert_eq!(time_left(TimeDelta::seconds(3720)), "1h 02m left");
        assert_eq!(time_left(TimeDelta::seconds(90_000)), "1d 1h left");
    }

    #[test]
    fn day_starts_at_local_midnight() {
        let now = DateTime::parse_from_rfc3339("2026-03-02T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let start = start_of_day(now, chrono_tz::Europe::Madrid);
        assert_eq!(start.to_rfc3339(), "2026-03-01T23:00:00+00:00");
    }
}
