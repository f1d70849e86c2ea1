//! The page of one inquiry at `/inquiries/{id}`: what the on-call manager opens from an alert,
//! on a phone, at night.
//!
//! Everything needed to act is on it, server-rendered in the wallboard's look (dark, large
//! type, states written out as well as coloured): the customer, subject, channel and language,
//! when it was received (UTC and the desk's time), the deadline and the time left, its state,
//! who was alerted and when, who took it, the response once there is one, and the timeline of
//! its ledger events. The time left is rendered by the server; a few lines of script keep it
//! ticking between reloads, and the page reads the same without them. Text from outside
//! (customer, subject, names, notes) is escaped and set in `dir="auto"` elements, so Arabic
//! renders right to left inside the left-to-right page.
//!
//! Rendering touches one inquiry (a map lookup under the read lock) and reads its own ledger
//! rows by their seq range: it costs the same with ten or a hundred thousand open inquiries.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use chrono_tz::Tz;
use maud::{Markup, PreEscaped, html};
use slawatch_core::tracker::alert::AlertMark;
use slawatch_core::tracker::event::{InquiryResponded, Outcome};
use slawatch_core::tracker::{Event, Inquiry, InquiryState, OpenStatus, SlaStatus};

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use slawatch_core::domain::InquiryId;

use super::AppState;
use super::markup::Text;
use super::status::{STYLE, human, time_left};
use crate::store::LedgerEntry;

/// Seconds between automatic reloads: new events (an answer, a take) show up without a tap.
const REFRESH_SECONDS: u32 = 30;

/// Rows of the timeline shown at most: an inquiry has a dozen events; one in a storm of
/// follow-ups must still render quickly.
pub const MAX_TIMELINE: usize = 200;

/// What the page shows besides the inquiry: its ledger rows and what the viewer may do.
#[derive(Debug, Default)]
pub struct PageView<'a> {
    /// Its ledger rows, oldest first.
    pub entries: &'a [LedgerEntry],
    /// The actions offered (signed links of the viewer), if any.
    pub actions: Option<Actions>,
}

/// The action links offered on the page.
#[derive(Debug, Clone, PartialEq)]
pub struct Actions {
    /// Opens the "I'm on it" confirmation.
    pub take: String,
    /// Opens the "answered elsewhere" form.
    pub answered: String,
}

/// Page-specific rules on top of the wallboard's [`STYLE`]: one column on a phone, two on a
/// wide screen.
const PAGE_STYLE: &str = r#"
main { max-width: 60em; margin: 0 auto; }
.state-banner { border-radius: .4em; padding: .5em .8em; margin-bottom: .8em; font-weight: 700; font-size: 1.3em; }
.state-banner.breached { background: #b91c1c; }
.state-banner.warning { background: #b45309; }
.state-banner.ok { background: #15803d; }
.state-banner.closed { background: #1e293b; }
.state-banner .left { display: block; font-size: 1.6em; font-variant-numeric: tabular-nums; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; margin: 0 0 1em; }
dl.facts dt { color: #94a3b8; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
section { margin-bottom: 1.2em; }
h2 { font-size: 1.1em; color: #94a3b8; margin: .6em 0 .3em; text-transform: uppercase; letter-spacing: .05em; }
.actions { display: flex; flex-wrap: wrap; gap: .6em; margin: .4em 0 1em; }
.button { display: inline-block; padding: .6em 1.1em; border-radius: .4em; background: #2563eb; color: #fff; text-decoration: none; font-weight: 700; border: 0; font: inherit; cursor: pointer; }
.button.secondary { background: #334155; }
ol.timeline { list-style: none; padding: 0; margin: 0; }
ol.timeline li { padding: .25em 0; border-bottom: 1px solid #1e293b; }
ol.timeline time { color: #94a3b8; font-variant-numeric: tabular-nums; margin-inline-end: .6em; }
.muted { color: #94a3b8; }
@media (max-width: 40em) { body { font-size: 17px; } dl.facts { grid-template-columns: 1fr; } dl.facts dd { margin-bottom: .3em; } }
"#;

/// Keeps `#left` ticking from its `data-deadline` (epoch seconds) between reloads.
const TICK_SCRIPT: &str = r#"
(function () {
  var el = document.getElementById("left");
  if (!el || !el.dataset.deadline) return;
  var deadline = Number(el.dataset.deadline);
  function two(n) { return (n < 10 ? "0" : "") + n; }
  function span(s) {
    var d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60, x = s % 60;
    if (d > 0) return d + "d " + h + "h";
    if (h > 0) return h + "h " + two(m) + "m";
    return m + "m " + two(x) + "s";
  }
  function tick() {
    var left = Math.round(deadline - Date.now() / 1000);
    el.textContent = left < 0 ? "overdue " + span(-left) : span(left) + " left";
  }
  setInterval(tick, 1000);
})();
"#;

/// Where the inquiry stands, in words and as a CSS class.
fn standing(i: &Inquiry, now: DateTime<Utc>) -> (&'static str, String) {
    match i.open_status_at(now) {
        Some(OpenStatus::Breached) => ("breached", "Open · BREACHED".to_string()),
        Some(OpenStatus::Warning) => ("warning", "Open · warning".to_string()),
        Some(OpenStatus::Ok) => ("ok", "Open · on time".to_string()),
        None => {
            let sla = match i.sla {
                SlaStatus::Met => " · answered in time",
                SlaStatus::Missed => " · answered late",
                SlaStatus::Pending | SlaStatus::Excluded => "",
            };
            let state = match i.state {
                InquiryState::Responded => "Answered",
                InquiryState::Excluded => "Not an inquiry",
                InquiryState::Merged => "Merged",
                InquiryState::Open => "Open",
            };
            ("closed", format!("{state}{sla}"))
        }
    }
}

/// `2026-11-24 14:05:00 UTC · 17:05 +03 (Asia/Riyadh)`.
pub fn both_times(at: DateTime<Utc>, tz: Tz) -> String {
    format!(
        "{} UTC · {} ({})",
        at.format("%Y-%m-%d %H:%M:%S"),
        at.with_timezone(&tz).format("%H:%M %Z"),
        tz.name()
    )
}

fn desk_time(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%m-%d %H:%M:%S").to_string()
}

/// One timeline row's words for an event: what happened, in a line.
pub fn describe(event: &Event) -> String {
    match event {
        Event::InquiryOpened(o) => format!(
            "Opened: {} {} from {} (policy {})",
            o.channel.as_str(),
            o.language.as_str(),
            o.customer,
            o.policy
        ),
        Event::InquiryExcluded(e) => {
            format!("Not an inquiry: {} ({})", e.reason.as_str(), e.detail)
        }
        Event::FollowUpAttached { customer, .. } => {
            format!("Follow-up message from {customer}: the clock keeps running")
        }
        Event::InquiryWarned { index, .. } => format!("Warning {} raised", index + 1),
        Event::InquiryBreached { .. } => "Deadline passed unanswered: breach raised".to_string(),
        Event::InquiryRenotified { n, .. } => format!("Re-notification {n} raised"),
        Event::InquiryEscalated { level, .. } => {
            format!("Nobody took or answered it: escalated (level {level})")
        }
        Event::InquiryTaken { by, until, how, .. } => format!(
            "Taken by {by} (\"I'm on it\", {}) until {}",
            how.replace('_', " "),
            until.format("%H:%M:%S UTC")
        ),
        Event::InquiryResponded(r) => response_words(r),
        Event::AlertDelivered {
            kind,
            notifiers,
            recipients,
            ..
        } => {
            let to = if recipients.is_empty() {
                String::new()
            } else {
                format!(" to {}", recipients.join(", "))
            };
            format!(
                "{} alert delivered{to} by {}",
                kind.as_str(),
                notifiers.join(", ")
            )
        }
        Event::AlertFailed {
            kind,
            error,
            recipients,
            ..
        } => {
            let to = if recipients.is_empty() {
                String::new()
            } else {
                format!(" to {}", recipients.join(", "))
            };
            format!("{} alert NOT delivered{to}: {error}", kind.as_str())
        }
        Event::InquiryRevised {
            reason, from, to, ..
        } => format!(
            "Revised: {} → {} ({})",
            from.as_str(),
            to.as_str(),
            reason.as_str()
        ),
        Event::InquiryMerged { into, .. } => format!("Merged into the older inquiry {into}"),
        Event::InquiryReclassified { kind, .. } => format!("Reclassified as {kind:?}"),
        other => other.kind().replace('_', " "),
    }
}

fn response_words(r: &InquiryResponded) -> String {
    let outcome = match r.outcome {
        Outcome::Met => "in time",
        Outcome::Missed => "late",
    };
    let via = r
        .via
        .map(|v| format!(" via {}", v.as_str()))
        .unwrap_or_default();
    let note = r
        .note
        .as_deref()
        .map(|n| format!(" — “{n}”"))
        .unwrap_or_default();
    format!(
        "Answered {outcome} by {} ({}{via}) after {}{note}",
        r.responder,
        r.kind.as_str(),
        human(r.response_seconds.max(0).unsigned_abs())
    )
}

/// The event instant shown on the timeline: when it happened, else when it was recorded.
fn event_at(entry: &LedgerEntry) -> DateTime<Utc> {
    match &entry.event {
        Event::InquiryOpened(o) => o.received_at,
        Event::InquiryResponded(r) => r.at,
        Event::FollowUpAttached { received_at, .. } => *received_at,
        Event::InquiryWarned { at, .. }
        | Event::InquiryBreached { at, .. }
        | Event::InquiryRenotified { at, .. }
        | Event::InquiryEscalated { at, .. }
        | Event::InquiryTaken { at, .. }
        | Event::AlertDelivered { at, .. }
        | Event::AlertFailed { at, .. }
        | Event::InquiryRevised { at, .. }
        | Event::InquiryMerged { at, .. }
        | Event::InquiryReclassified { at, .. } => *at,
        _ => entry.recorded_at,
    }
}

/// The whole page.
pub fn render(i: &Inquiry, view: &PageView<'_>, now: DateTime<Utc>, tz: Tz) -> String {
    let (class, words) = standing(i, now);
    let customer = match &i.customer_name {
        Some(name) if !name.is_empty() => format!("{name} <{}>", i.customer),
        _ => i.customer.to_string(),
    };
    let deadline = i.deadline_at.filter(|_| i.state == InquiryState::Open);
    let actions = view
        .actions
        .as_ref()
        .filter(|_| i.state == InquiryState::Open);
    let sla = format!("{} · {}", i.state.as_str(), i.sla.as_str());
    let excluded = i.excluded_reason.map(|reason| {
        format!(
            "{} ({})",
            reason.as_str(),
            i.excluded_detail.as_deref().unwrap_or_default()
        )
    });
    let response = i.responded_at.map(|at| {
        let by = i.responder.as_deref().unwrap_or("?");
        let kind = i.response_kind.map(|k| k.as_str()).unwrap_or("?");
        let after = human(i.response_seconds.unwrap_or(0).max(0).unsigned_abs());
        format!("by {by} ({kind}) at {} — after {after}", both_times(at, tz))
    });
    let taken = i.taken.as_ref().map(|t| {
        let holds = if t.holds_at(now) {
            "until"
        } else {
            "ran out at"
        };
        format!(
            "{} at {} — {holds} {}",
            t.by,
            desk_time(t.at, tz),
            desk_time(t.until, tz)
        )
    });
    let page = html! {
        (PreEscaped("<!doctype html>\n"))
        html lang="en" dir="ltr" {
            head {
                meta charset="utf-8";
                meta http-equiv="refresh" content=(REFRESH_SECONDS);
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (words) " · " (Text(&i.subject)) }
                style { (PreEscaped(STYLE)) (PreEscaped(PAGE_STYLE)) }
            }
            body {
                main {
                    header {
                        h1 { "slawatch · inquiry" }
                        span class="updated" { "Updated " (desk_time(now, tz)) " (" (tz.name()) ")" }
                    }
                    div class={ "state-banner " (class) } id="state" {
                        (words)
                        @if let Some(deadline) = deadline {
                            span class="left" id="left" data-deadline=(deadline.timestamp()) {
                                (time_left(deadline - now))
                            }
                        }
                    }
                    @if let Some(actions) = actions {
                        nav class="actions" aria-label="Actions" {
                            a class="button" id="take" href=(Text(&actions.take)) { "I'm on it" }
                            a class="button secondary" id="answered" href=(Text(&actions.answered)) {
                                "Answered elsewhere"
                            }
                        }
                    }
                    section {
                        dl class="facts" {
                            (fact("customer", "Customer", &customer, true))
                            (fact("subject", "Subject", &i.subject, true))
                            (fact("channel", "Channel", i.channel.as_str(), false))
                            (fact("language", "Language", i.language.as_str(), false))
                            (fact("received", "Received", &both_times(i.received_at, tz), false))
                            @if let Some(d) = i.deadline_at {
                                (fact("deadline", "Deadline", &both_times(d, tz), false))
                            }
                            (fact("sla", "State", &sla, false))
                            @if let Some(excluded) = &excluded {
                                (fact("excluded", "Excluded", excluded, false))
                            }
                            @if let Some(response) = &response {
                                (fact("response", "Response", response, true))
                            }
                            @if let Some(taken) = &taken {
                                (fact("taken", "Taken by", taken, true))
                            }
                            (fact("inquiry-id", "Inquiry", i.id.as_str(), false))
                        }
                    }
                    // Who was alerted, and when.
                    section id="alerts" {
                        h2 { "Alerts" }
                        @if i.alerts.is_empty() {
                            p class="muted" { "No alert raised." }
                        } @else {
                            ul {
                                @for m in &i.alerts {
                                    li dir="auto" {
                                        (alert_stage(m)) " raised " (desk_time(m.at, tz)) " · "
                                        (Text(&alert_delivery(m, tz)))
                                    }
                                }
                            }
                        }
                    }
                    section id="timeline" {
                        h2 { "Timeline" }
                        @if view.entries.is_empty() {
                            p class="muted" { "Not in the ledger yet." }
                        } @else {
                            ol class="timeline" {
                                @for entry in view.entries.iter().take(MAX_TIMELINE) {
                                    (timeline_row(entry, tz))
                                }
                            }
                            @if view.entries.len() > MAX_TIMELINE {
                                p class="muted" {
                                    "… and " (view.entries.len() - MAX_TIMELINE)
                                    " more events (see the API)."
                                }
                            }
                        }
                    }
                    footer {
                        a href="/" { "wallboard" }
                        " · "
                        a href={ "/api/v1/inquiries/" (Text(i.id.as_str())) } { "JSON" }
                    }
                }
                script { (PreEscaped(TICK_SCRIPT)) }
            }
        }
    };
    page.into_string()
}

/// One line of the facts list; text from outside (`auto`) reads in its own direction.
fn fact(id: &str, label: &str, value: &str, auto: bool) -> Markup {
    html! {
        dt { (label) }
        dd id=(id) dir=[auto.then_some("auto")] { (Text(value)) }
    }
}

/// Which alert: `warning 1`, `breach`, `re-notification 2`, `escalation`.
fn alert_stage(m: &AlertMark) -> String {
    match (m.stage.as_str(), m.index) {
        ("warning", Some(n)) => format!("warning {}", n + 1),
        ("renotify", Some(n)) => format!("re-notification {n}"),
        ("escalation", _) => "escalation".to_string(),
        (s, _) => s.to_string(),
    }
}

/// When and to whom an alert was delivered.
fn alert_delivery(m: &AlertMark, tz: Tz) -> String {
    match m.delivered_at {
        Some(at) if m.reached().is_empty() => format!("delivered {}", desk_time(at, tz)),
        Some(at) => format!(
            "delivered {} to {}",
            desk_time(at, tz),
            m.reached().join(", ")
        ),
        None => "not delivered yet".to_string(),
    }
}

/// One ledger event on the timeline.
fn timeline_row(entry: &LedgerEntry, tz: Tz) -> Markup {
    let at = event_at(entry);
    html! {
        li data-seq=(entry.seq) data-kind=(entry.event.kind()) {
            time datetime=(at.to_rfc3339_opts(SecondsFormat::Secs, true)) { (desk_time(at, tz)) }
            span dir="auto" { (Text(&describe(&entry.event))) }
        }
    }
}

/// The page's data: the inquiry (from the tracker, else the store's projection) and its
/// ledger rows.
pub async fn load(
    state: &AppState,
    id: &InquiryId,
) -> Result<(Inquiry, Vec<LedgerEntry>, Tz), Response> {
    let tz = state.tracker().rules().desk.time_zone;
    let inquiry = match state.inquiry(id).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return Err(message_page(
                StatusCode::NOT_FOUND,
                "No such inquiry",
                &format!("There is no inquiry {id}."),
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, inquiry = %id, "Reading an inquiry from the store failed.");
            return Err(message_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The ledger could not be read",
                "Try again in a moment.",
            ));
        }
    };
    // Not yet committed (the engine is retrying its append): no history to show yet.
    let entries = match inquiry.ledger_seqs {
        Some(seqs) => state
            .shared
            .store
            .events_for_inquiry(id, seqs)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, inquiry = %id, "Reading an inquiry's ledger rows failed.");
                message_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The ledger could not be read",
                    "Try again in a moment.",
                )
            })?,
        None => Vec::new(),
    };
    Ok((inquiry, entries, tz))
}

/// An HTML answer that is never cached (it carries customer data, and maybe signed links).
pub fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// A short page saying one thing (not found, refused, done), in the same look.
pub fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    let body = html! {
        (PreEscaped("<!doctype html>\n"))
        html lang="en" dir="ltr" {
            (head(title))
            body {
                main {
                    h1 id="title" { (Text(title)) }
                    p id="message" dir="auto" { (Text(text)) }
                }
            }
        }
    };
    html(status, body.into_string())
}

/// The `<head>` of the short pages (messages, forms): no refresh, no referrer.
pub fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="no-referrer";
            title { (Text(title)) }
            style { (PreEscaped(STYLE)) (PreEscaped(PAGE_STYLE)) }
        }
    }
}

/// The time left of an open inquiry at `now`, `None` when it has no deadline or is closed.
pub fn left(i: &Inquiry, now: DateTime<Utc>) -> Option<TimeDelta> {
    (i.state == InquiryState::Open)
        .then_some(i.deadline_at)
        .flatten()
        .map(|d| d - now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slawatch_core::domain::{Channel, Language};
    use slawatch_core::testing;

    fn entry(seq: i64, event: Event) -> LedgerEntry {
        LedgerEntry {
            seq,
            recorded_at: Utc::now(),
            event,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn an_open_arabic_inquiry_reads_right() {
        let now = Utc::now();
        let mut tracker = testing::tracker();
        let mut opened = testing::opened(
            1,
            Channel::Email,
            Language::Ar,
            now - TimeDelta::minutes(20),
        );
        opened.subject = "استفسار <b>عاجل</b>".to_string();
        let id = opened.inquiry_id.clone();
        let events = vec![
            Event::InquiryOpened(opened),
            Event::InquiryBreached {
                inquiry_id: id.clone(),
                at: now - TimeDelta::minutes(5),
            },
        ];
        for e in &events {
            tracker.apply(e);
        }
        let entries: Vec<LedgerEntry> = (1..).zip(events).map(|(n, e)| entry(n, e)).collect();
        let inquiry = tracker.get(&id).unwrap();
        let html = render(
            inquiry,
            &PageView {
                entries: &entries,
                actions: Some(Actions {
                    take: "/t?a=1&b=2".into(),
                    answered: "/a".into(),
                }),
            },
            now,
            chrono_tz::Asia::Riyadh,
        );
        assert!(html.contains("Open · BREACHED"), "{html}");
        assert!(html.contains("id=\"left\""));
        assert!(html.contains("overdue 5m 00s"), "{html}");
        assert!(html.contains("استفسار &lt;b&gt;عاجل&lt;/b&gt;"), "escaped");
        assert!(html.contains("dir=\"auto\">استفسار"));
        assert!(html.contains("(Asia/Riyadh)"));
        assert!(html.contains("href=\"/t?a=1&amp;b=2\""));
        assert!(html.contains("data-kind=\"inquiry_breached\""));
        assert_eq!(html.matches("<li data-seq=").count(), 2);
    }

    #[test]
    fn an_answered_inquiry_shows_the_response_and_no_actions() {
        let now = Utc::now();
        let mut tracker = testing::tracker();
        let opened = testing::opened(2, Channel::Phone, Language::Es, now - TimeDelta::minutes(9));
        let id = opened.inquiry_id.clone();
        tracker.apply(&Event::InquiryOpened(opened));
        tracker.apply(&Event::InquiryResponded(Box::new(InquiryResponded {
            inquiry_id: id.clone(),
            at: now - TimeDelta::minutes(1),
            response_seconds: 480,
            kind: slawatch_core::tracker::event::ResponseKind::Manual,
            responder: "ana".into(),
            external_id: None,
            outcome: Outcome::Met,
            via: Some(slawatch_core::tracker::observation::AckVia::Phone),
            note: Some("called back".into()),
        })));
        let inquiry = tracker.get(&id).unwrap();
        let view = PageView {
            entries: &[],
            actions: Some(Actions {
                take: "/t".into(),
                answered: "/a".into(),
            }),
        };
        let html = render(inquiry, &view, now, chrono_tz::UTC);
        assert!(html.contains("Answered · answered in time"), "{html}");
        assert!(html.contains("by ana (manual)"));
        assert!(!html.contains("id=\"take\""), "no actions once answered");
        assert!(left(inquiry, now).is_none());
    }
}
