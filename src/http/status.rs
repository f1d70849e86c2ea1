//! The status page at `/`: what is open and how today is going, as plain server-rendered HTML.
//!
//! It must work on any screen in the office without JavaScript, fonts or other assets, and keep
//! itself fresh (`<meta http-equiv="refresh">`). Everything that came from outside (customers,
//! subjects, names) is escaped; subjects carry `dir="auto"` so Arabic renders right to left. The
//! full wallboard is a later piece of work; this page answers "is anything about to be late?".

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use super::AppState;
use crate::telemetry::open_status_at;
use crate::tracker::{Inquiry, InquiryState, OpenStatus, SlaStatus, Tracker};

/// Rows shown at most; the rest are counted. Bounds the page on a very bad day.
const MAX_ROWS: usize = 500;
/// How far back before today an inquiry may have been received and still be decided today
/// (a late manual ack of an old inquiry). Bounds the scan for today's figures.
const TODAY_LOOKBACK: TimeDelta = TimeDelta::days(7);
/// Seconds between automatic reloads.
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
    /// Open inquiries, least time left first.
    pub open: Vec<(OpenStatus, Inquiry)>,
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
            open: Vec::new(),
        };
        for i in tracker.open() {
            let Some(status) = open_status_at(i, now) else {
                continue;
            };
            match status {
                OpenStatus::Ok => s.ok += 1,
                OpenStatus::Warning => s.warning += 1,
                OpenStatus::Breached => s.breached += 1,
            }
            s.open.push((status, i.clone()));
        }
        s.open.sort_by(|(_, a), (_, b)| {
            (a.deadline_at.is_none(), a.deadline_at, a.received_at, &a.id).cmp(&(
                b.deadline_at.is_none(),
                b.deadline_at,
                b.received_at,
                &b.id,
            ))
        });

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
    let (summary, tz) = {
        let tracker = state.tracker();
        let tz = tracker.rules().desk.time_zone;
        (Summary::compute(&tracker, now, tz), tz)
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        render(&summary, now, tz),
    )
}

/// The whole page.
pub fn render(s: &Summary, now: DateTime<Utc>, tz: Tz) -> String {
    let mut h = String::with_capacity(4096 + s.open.len().min(MAX_ROWS) * 400);
    let compliance = s
        .compliance_today()
        .map_or_else(|| "–".to_string(), |c| format!("{:.1} %", c * 100.0));
    let _ = write!(
        h,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>slawatch: {open} open, {breached} breached</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #111; background: #fff; }}
.figures {{ display: flex; flex-wrap: wrap; gap: 1rem; margin-bottom: 1.5rem; }}
.figure {{ border: 1px solid #ccc; border-radius: 6px; padding: .6rem 1rem; min-width: 8rem; }}
.figure b {{ display: block; font-size: 2rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ text-align: start; padding: .3rem .6rem; border-bottom: 1px solid #ddd; }}
tr.breached td {{ background: #fde2e2; }}
tr.warning td {{ background: #fff4cc; }}
td.num {{ font-variant-numeric: tabular-nums; white-space: nowrap; }}
</style>
</head>
<body>
<h1>slawatch</h1>
<p>Every inquiry answered within its deadline. Updated {updated} ({tz}); refreshes every {REFRESH_SECONDS} s.</p>
<div class="figures">
<div class="figure"><b>{ok}</b>open, ok</div>
<div class="figure"><b>{warning}</b>open, warning</div>
<div class="figure"><b>{breached}</b>open, breached</div>
<div class="figure"><b>{answered}</b>answered today</div>
<div class="figure"><b>{compliance}</b>in time today ({met} of {decided})</div>
</div>
"#,
        open = s.open.len(),
        breached = s.breached,
        updated = escape(
            &now.with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        ),
        tz = escape(tz.name()),
        ok = s.ok,
        warning = s.warning,
        answered = s.answered_today,
        compliance = escape(&compliance),
        met = s.met_today,
        decided = s.met_today + s.missed_today,
    );
    if s.open.is_empty() {
        h.push_str("<p>No open inquiries.</p>\n");
    } else {
        h.push_str(
            "<table>\n<thead><tr><th>Time left</th><th>State</th><th>Channel</th>\
             <th>Language</th><th>Customer</th><th>Subject</th><th>Received</th></tr></thead>\n\
             <tbody>\n",
        );
        for (status, i) in s.open.iter().take(MAX_ROWS) {
            let left = i
                .deadline_at
                .map_or_else(|| "–".to_string(), |d| time_left(d - now));
            let customer = match &i.customer_name {
                Some(name) if !name.is_empty() => format!("{name} <{}>", i.customer),
                _ => i.customer.clone(),
            };
            let _ = writeln!(
                h,
                "<tr class=\"{state}\"><td class=\"num\">{left}</td><td>{state}</td>\
                 <td>{channel}</td><td>{language}</td><td dir=\"auto\">{customer}</td>\
                 <td dir=\"auto\">{subject}</td><td class=\"num\">{received}</td></tr>",
                state = status.as_str(),
                left = escape(&left),
                channel = i.channel.as_str(),
                language = i.language.as_str(),
                customer = escape(&customer),
                subject = escape(&i.subject),
                received = escape(
                    &i.received_at
                        .with_timezone(&tz)
                        .format("%Y-%m-%d %H:%M")
                        .to_string()
                ),
            );
        }
        h.push_str("</tbody>\n</table>\n");
        if s.open.len() > MAX_ROWS {
            let _ = writeln!(
                h,
                "<p>… and {} more open inquiries (see <a href=\"/api/v1/inquiries?state=open\">the API</a>).</p>",
                s.open.len() - MAX_ROWS
            );
        }
    }
    h.push_str(
        "<p><a href=\"/metrics\">metrics</a> · <a href=\"/api/v1/inquiries\">API</a> · \
         <a href=\"/readyz\">readiness</a></p>\n</body>\n</html>\n",
    );
    h
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `12m 05s left`, `overdue 3m 10s`, `1h 02m left`.
fn time_left(d: TimeDelta) -> String {
    let secs = d.num_seconds();
    let span = human(secs.unsigned_abs());
    if secs < 0 {
        format!("overdue {span}")
    } else {
        format!("{span} left")
    }
}

fn human(secs: u64) -> String {
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

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(escape("مرحبا"), "مرحبا");
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
