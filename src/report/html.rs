//! The HTML report: one self-contained file (inline CSS and SVG, no scripts, no fetches) that
//! prints cleanly on A4 and shows Arabic text right-to-left.
//!
//! Charts are SVG drawn here: daily compliance, the hour-of-week heatmap of received inquiries
//! (shaded by count, red cells where compliance fell below 100 %), and the response-time
//! distribution with the warning and promise marks. Every text from the ledger is escaped and
//! wrapped in `dir="auto"`, so a customer's Arabic subject reads right-to-left inside an
//! English table. The markup is a maud template, checked at compile time, that escapes every
//! value it is given; long tables are rendered row by row and streamed to the writer.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{Markup, PreEscaped, Render, html};

use super::{AlertRow, Breach, Counts, Percentiles, ReportData, format_ratio, format_seconds};

/// Writes the whole document.
pub fn render(data: &ReportData, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    document(data, out)
}

/// Bytes of markup gathered before they are written out: long tables (a year's breaches) stream
/// to the writer instead of being held whole.
const CHUNK: usize = 64 * 1024;

/// Writes `h` out once it holds a chunk.
fn spill(h: &mut String, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    if h.len() >= CHUNK {
        out.write_all(h.as_bytes())?;
        h.clear();
    }
    Ok(())
}

/// Text from the ledger: escaped, direction from its own first strong character.
fn txt(s: &str) -> Markup {
    html! { bdi dir="auto" { (s) } }
}

fn tz_of(data: &ReportData) -> Tz {
    data.time_zone.parse().unwrap_or(chrono_tz::UTC)
}

fn local(data: &ReportData, t: DateTime<Utc>) -> String {
    t.with_timezone(&tz_of(data))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn local_opt(data: &ReportData, t: Option<DateTime<Utc>>) -> String {
    t.map(|t| local(data, t)).unwrap_or_else(|| "—".into())
}

fn secs(s: Option<i64>) -> String {
    s.map(format_seconds).unwrap_or_else(|| "—".into())
}

const STYLE: &str = r#"
@page { size: A4; margin: 14mm 12mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Noto Sans", "Noto Sans Arabic", Arial, sans-serif; font-size: 10pt; color: #111; margin: 0 auto; max-width: 190mm; }
h1 { font-size: 17pt; margin: 0 0 2mm; }
h2 { font-size: 12.5pt; margin: 7mm 0 2mm; border-bottom: 1px solid #999; page-break-after: avoid; }
table { border-collapse: collapse; width: 100%; margin: 1mm 0 3mm; font-size: 8.5pt; }
th, td { border: 1px solid #bbb; padding: 1mm 1.5mm; text-align: start; vertical-align: top; }
th { background: #eee; }
tr { page-break-inside: avoid; }
td.n, th.n { text-align: end; font-variant-numeric: tabular-nums; }
.head { display: flex; flex-wrap: wrap; gap: 3mm; margin: 3mm 0; }
.fig { border: 1px solid #999; padding: 2mm 3mm; min-width: 28mm; }
.fig b { display: block; font-size: 15pt; }
.bad { color: #a00; }
.ok { color: #060; }
.banner { border: 2px solid #a00; color: #a00; padding: 2mm; font-weight: bold; }
.mono { font-family: "DejaVu Sans Mono", monospace; font-size: 7.5pt; word-break: break-all; }
svg { display: block; margin: 2mm 0; max-width: 100%; height: auto; }
figure { margin: 0; page-break-inside: avoid; }
figcaption { font-size: 8.5pt; color: #444; }
@media print { a { color: inherit; text-decoration: none; } }
"#;

fn document(d: &ReportData, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut h = String::with_capacity(2 * CHUNK);
    let tz = tz_of(d);
    let t = &d.totals;
    // The document is written in parts so that long tables stream to `out`: the elements that
    // hold them are opened and closed with constant markup around the parts.
    html! {
        (PreEscaped("<!DOCTYPE html>\n<html lang=\"en\" dir=\"ltr\">"))
        head {
            meta charset="utf-8";
            title { (d.title) }
            style { (PreEscaped(STYLE)) }
        }
        (PreEscaped("<body>\n"))
        h1 { (d.title) }
        p {
            "Period " b { (local(d, d.from)) } " to " b { (local(d, d.to)) }
            " (" (tz.name()) "; inquiries received in [from, to)). Generated "
            (d.generated_at.format("%Y-%m-%d %H:%M:%S")) " UTC."
            @if d.masked { " Customer addresses are masked." }
        }
        @if !d.ledger.intact {
            p class="banner" id="ledger-broken" {
                "The ledger failed verification: " (d.ledger.verification)
                ". The figures below cannot be trusted."
            }
        }
        // Headline figures.
        div class="head" id="headline" {
            div class="fig" { "Compliance" b id="compliance" { (format_ratio(t.compliance)) } }
            div class="fig" { "Received" b id="received" { (t.received) } }
            div class="fig" { "Met" b id="met" { (t.met) } }
            div class="fig" {
                "Missed" b id="missed" class=(if t.missed > 0 { "bad" } else { "ok" }) { (t.missed) }
            }
            div class="fig" { "Pending" b id="pending" { (t.pending) } }
            div class="fig" { "Excluded" b id="excluded" { (t.excluded) } }
        }
        p {
            "Missed: " (t.missed_answered_late) " answered late, " (t.missed_unanswered)
            " unanswered past the deadline. Compliance = met ÷ (met + missed); pending \
            inquiries are not counted."
        }
        h2 { "Compliance" }
        (counts_table("Channel", &d.by_channel))
        (counts_table("Language", &d.by_language))
        (counts_table("Month", &d.by_month))
        h2 { "Charts" }
        (daily_chart(d))
        (heatmap(d))
        (distribution_chart(d))
        h2 { "Response times" }
        table {
            tr {
                th { "Group" } th class="n" { "Answered" } th class="n" { "p50" }
                th class="n" { "p90" } th class="n" { "p95" } th class="n" { "p99" }
                th class="n" { "Max" }
            }
            (percentile_row("all", &d.response_times))
            @for (k, p) in &d.response_times_by_channel {
                (percentile_row(&format!("channel {k}"), p))
            }
            @for (k, p) in &d.response_times_by_language {
                (percentile_row(&format!("language {k}"), p))
            }
        }
        @if d.takes.takes > 0 {
            h2 { "Taken (\"I'm on it\")" }
            p { b id="takes" { (d.takes.takes) } " take(s). Time from the alert to the take:" }
            table id="take-times" {
                tr {
                    th { "Who" } th class="n" { "Takes" } th class="n" { "p50" }
                    th class="n" { "p90" } th class="n" { "p95" } th class="n" { "p99" }
                    th class="n" { "Max" }
                }
                (percentile_row("everyone", &d.takes.overall))
                @for (who, p) in &d.takes.by_person {
                    (percentile_row(who, p))
                }
            }
        }
        h2 { "Breaches (" (d.breaches.len()) ")" }
        @if d.breaches.is_empty() {
            p { "None." }
        }
    }
    .render_to(&mut h);
    if !d.breaches.is_empty() {
        h.push_str(
            "<table id=\"breaches\"><tr><th>Inquiry</th><th>Customer / subject</th>\
             <th>Received / deadline</th><th>Response</th><th>Alerts</th></tr>",
        );
        for b in d.breaches.iter() {
            breach_row(d, &b).render_to(&mut h);
            spill(&mut h, out)?;
        }
        h.push_str("</table>");
    }

    html! {
        h2 { "Exclusions (" (d.exclusions.len()) ")" }
        @if !d.excluded_by_reason.is_empty() {
            table {
                tr { th { "Reason" } th class="n" { "Count" } }
                @for (r, n) in &d.excluded_by_reason {
                    tr { td { (r) } td class="n" { (n) } }
                }
            }
        } @else {
            p { "None." }
        }
    }
    .render_to(&mut h);
    if !d.excluded_by_reason.is_empty() {
        h.push_str(
            "<table id=\"exclusions\"><tr><th>Inquiry</th><th>Received</th>\
             <th>Sender / subject</th><th>Reason</th><th>Evidence</th></tr>",
        );
        for x in d.exclusions.iter() {
            html! {
                tr {
                    td class="mono" { (x.id) }
                    td { (local(d, x.received_at)) }
                    td { (txt(&x.customer)) br; (txt(&x.subject)) }
                    td { (x.reason) }
                    td { (txt(&x.detail)) }
                }
            }
            .render_to(&mut h);
            spill(&mut h, out)?;
        }
        h.push_str("</table>");
    }

    let c = &d.coverage;
    html! {
        @if !d.contradictions.is_empty() {
            h2 { "Contradictory evidence (" (d.contradictions.len()) ")" }
            p { "Kept as read and flagged: the contradicted part decided nothing." }
            table id="contradictions" {
                tr { th { "Flagged" } th { "Source" } th { "Kind" } th { "Evidence" } th { "Detail" } }
                @for c in &d.contradictions {
                    tr {
                        td { (local(d, c.at)) }
                        td { (c.source) }
                        td { (c.kind) }
                        td class="mono" { (txt(&c.evidence)) }
                        td { (txt(&c.detail)) }
                    }
                }
            }
        }
        h2 { "Policy versions in force" }
        table {
            tr {
                th { "Version" } th { "First used" } th class="n" { "Target" } th { "Warn at" }
                th { "Re-notify" } th { "Calendar" } th class="n" { "Inquiries" }
            }
            @for p in &d.policies {
                @let r = &p.record;
                @let warn: Vec<String> = r
                    .warn_offsets_seconds
                    .iter()
                    .map(|s| format_seconds(*s as i64))
                    .collect();
                tr {
                    td class="mono" { (r.version) }
                    td { (local(d, p.activated_at)) }
                    td class="n" { (format_seconds(r.target_seconds as i64)) }
                    td { (warn.join(", ")) }
                    td {
                        "every " (format_seconds(r.renotify_every_seconds as i64))
                        " (max " (r.renotify_max) ")"
                    }
                    td { (r.calendar) }
                    td class="n" { (p.inquiries_in_period) }
                }
            }
        }
        h2 { "Monitoring coverage" }
        @if !c.recorded {
            p class="banner" {
                "This ledger holds no monitor start, heartbeat or source events: when the \
                monitor was running cannot be proven for this period."
            }
        }
        p {
            "The daemon was not watching for " b id="daemon-down" { (format_seconds(c.daemon_down_seconds)) }
            " of the period; " b id="gaps" { (c.gaps.len()) } " gap(s) in all."
        }
        @if !c.gaps.is_empty() {
            table id="coverage-gaps" {
                tr {
                    th { "#" } th { "From" } th { "To" } th class="n" { "Length" } th { "What" }
                    th { "Cause" } th class="n" { "Received during" } th class="n" { "Detected late" }
                }
                @for (n, g) in c.gaps.iter().enumerate() {
                    tr {
                        td { (n + 1) }
                        td { (local(d, g.start)) }
                        td { (local(d, g.end)) }
                        td class="n" { (format_seconds(g.seconds)) }
                        td {
                            @match &g.source {
                                Some(s) => { "source " (s) }
                                None => "daemon",
                            }
                        }
                        td { (g.cause) }
                        td class="n" { (g.inquiries_received) }
                        td class="n" { (g.detected_late) }
                    }
                }
            }
        }
        @if c.leader_changes.iter().any(|l| l.previous.is_some()) {
            p {
                "The active replica changed "
                b id="leader-changes" { (c.leader_changes.iter().filter(|l| l.previous.is_some()).count()) }
                " time(s) (a failover, or a handover at a clean stop):"
            }
            table id="coverage-leaders" {
                tr { th { "At" } th class="n" { "Epoch" } th { "New active" } th { "Before" } }
                @for l in &c.leader_changes {
                    tr {
                        td { (local(d, l.at)) }
                        td class="n" { (l.epoch) }
                        td { (l.replica) }
                        td { (l.previous.as_deref().unwrap_or("(first start)")) }
                    }
                }
            }
        }
        @if !c.monitor_alerts.is_empty() {
            p {
                "The monitor paged about its own blindness "
                b id="monitor-alerts" { (c.monitor_alerts.len()) } " time(s):"
            }
            table id="coverage-monitor-alerts" {
                tr {
                    th { "Alert" } th { "Raised" } th { "Resolved" } th class="n" { "Length" }
                    th { "Delivered by" } th { "Detail" }
                }
                @for a in &c.monitor_alerts {
                    tr {
                        td { (a.alert) }
                        td { (local(d, a.raised_at)) }
                        td {
                            @match a.resolved_at {
                                Some(t) => (local(d, t)),
                                None => "still active",
                            }
                        }
                        td class="n" { (format_seconds(a.seconds)) }
                        td {
                            @if a.delivered { (a.notifiers.join(", ")) } @else { "NOT DELIVERED" }
                        }
                        td { (a.detail) }
                    }
                }
            }
        }
        p {
            "Detection latency (first seen − received) over " (c.detection.answered)
            " inquiries: p50 " (secs(c.detection.p50)) ", p99 " (secs(c.detection.p99))
            ", max " (secs(c.detection.max)) ". Inquiries detected more than "
            (format_seconds(c.late_threshold_seconds)) " after they were received: "
            b id="late-detections" { (c.late_detections.len()) } "."
        }
    }
    .render_to(&mut h);
    if !c.late_detections.is_empty() {
        h.push_str(
            "<table><tr><th>Inquiry</th><th>Source</th><th>Received</th><th>First seen</th>\
             <th class=\"n\">Late by</th><th>Gap</th></tr>",
        );
        for l in &c.late_detections {
            html! {
                tr {
                    td class="mono" { (l.id) }
                    td { (l.source) }
                    td { (local(d, l.received_at)) }
                    td { (local(d, l.first_seen_at)) }
                    td class="n" { (format_seconds(l.detection_seconds)) }
                    td {
                        @match l.gap {
                            Some(g) => { "#" (g + 1) }
                            None => "—",
                        }
                    }
                }
            }
            .render_to(&mut h);
            spill(&mut h, out)?;
        }
        h.push_str("</table>");
    }

    html! {
        h2 { "Ledger" }
        table {
            tr {
                th { "Verification" }
                td id="verification" class=(if d.ledger.intact { "ok" } else { "bad" }) {
                    (d.ledger.verification)
                }
            }
            tr { th { "Events" } td { (d.ledger.events) } }
            tr {
                th { "Head" }
                td class="mono" id="head-hash" {
                    "seq "
                    @match d.ledger.head_seq {
                        Some(s) => (s),
                        None => "—",
                    }
                    " " (d.ledger.head_hash.as_deref().unwrap_or("(empty ledger)"))
                }
            }
        }
        p {
            "Pin the head hash: " code { "slawatch audit verify" } " must print the same hash, \
            or a later head whose chain contains this one."
        }
        (PreEscaped("</body></html>\n"))
    }
    .render_to(&mut h);
    out.write_all(h.as_bytes())
}

/// One breached inquiry: who and what, when, the response, and every alert and take.
fn breach_row(d: &ReportData, b: &Breach) -> Markup {
    html! {
        tr {
            td class="mono" {
                (b.id) br; (b.channel) " " (b.language) br; (b.external_id)
            }
            td { (txt(&b.customer)) br; (txt(&b.subject)) }
            td { (local(d, b.received_at)) br; (local_opt(d, b.deadline_at)) }
            td {
                @if b.responded {
                    (local_opt(d, b.responded_at)) " after " (secs(b.response_seconds)) " by "
                    (txt(b.responder.as_deref().unwrap_or("?")))
                    " (" (b.response_kind.as_deref().unwrap_or("?")) ")"
                    @if let Some(r) = &b.response_id {
                        br; span class="mono" { (r) }
                    }
                    @if let Some(v) = &b.ack_via {
                        br; "ack via " (v)
                    }
                    @if let Some(n) = &b.ack_note {
                        br; "note: " (txt(n))
                    }
                } @else {
                    b class="bad" { "not answered" }
                }
            }
            td {
                @if b.alerts.is_empty() && b.takes.is_empty() {
                    "—"
                }
                @for (n, a) in b.alerts.iter().enumerate() {
                    @if n > 0 { br; }
                    (alert_cell(d, a))
                }
                @for (n, t) in b.takes.iter().enumerate() {
                    @if n > 0 || !b.alerts.is_empty() { br; }
                    span class="take" {
                        "taken by " (txt(&t.by)) " at " (local(d, t.at))
                        @if let Some(s) = t.alert_to_take_seconds {
                            ", " (secs(Some(s))) " after the alert"
                        }
                    }
                }
            }
        }
    }
}

/// One alert of a breach: its stage and instant, then each delivery (when, which notifiers,
/// to whom) and each failure (when, why).
fn alert_cell(d: &ReportData, a: &AlertRow) -> Markup {
    html! {
        b { (a.stage) } " " (local(d, a.at))
        @for x in &a.delivered {
            br; (PreEscaped("&nbsp;")) "delivered " (local(d, x.at)) " via " (x.notifiers.join(", "))
            @if !x.recipients.is_empty() {
                " to " (recipients(&x.recipients))
            }
        }
        @for x in &a.failed {
            br; (PreEscaped("&nbsp;")) span class="bad" { "failed" } " " (local(d, x.at))
            @if !x.recipients.is_empty() {
                " to " (recipients(&x.recipients))
            }
            ": " (txt(&x.error))
        }
        @if a.delivered.is_empty() && a.failed.is_empty() {
            br; (PreEscaped("&nbsp;")) "no delivery recorded"
        }
    }
}

/// Recipients of an alert, each in its own direction, comma-separated.
fn recipients(to: &[String]) -> Markup {
    html! {
        @for (n, r) in to.iter().enumerate() {
            @if n > 0 { ", " }
            (txt(r))
        }
    }
}

fn counts_table(label: &str, rows: &std::collections::BTreeMap<String, Counts>) -> Markup {
    html! {
        table {
            tr {
                th { (label) } th class="n" { "Received" } th class="n" { "Excluded" }
                th class="n" { "Met" } th class="n" { "Missed late" }
                th class="n" { "Missed unanswered" } th class="n" { "Pending" }
                th class="n" { "Compliance" }
            }
            @for (k, c) in rows {
                tr {
                    td { (k) }
                    td class="n" { (c.received) }
                    td class="n" { (c.excluded) }
                    td class="n" { (c.met) }
                    td class="n" { (c.missed_answered_late) }
                    td class="n" { (c.missed_unanswered) }
                    td class="n" { (c.pending) }
                    td class="n" { (format_ratio(c.compliance)) }
                }
            }
        }
    }
}

fn percentile_row(label: &str, p: &Percentiles) -> Markup {
    html! {
        tr {
            td { (label) }
            td class="n" { (p.answered) }
            td class="n" { (secs(p.p50)) }
            td class="n" { (secs(p.p90)) }
            td class="n" { (secs(p.p95)) }
            td class="n" { (secs(p.p99)) }
            td class="n" { (secs(p.max)) }
        }
    }
}

/// Daily compliance as bars (height = compliance, grey when nothing was decided that day).
fn daily_chart(d: &ReportData) -> Markup {
    let (w, ht, pad) = (680.0, 170.0, 30.0);
    let n = d.by_day.len().max(1) as f64;
    let bw = (w - pad * 2.0) / n;
    let plot = ht - 2.0 * pad;
    html! {
        figure {
            svg id="chart-daily" xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (w) " " (ht) }
                width=(w) height=(ht) role="img" aria-label="Daily compliance" {
                rect x="0" y="0" width=(w) height=(ht) fill="#fff" {}
                @for (pct, label) in [(1.0, "100%"), (0.5, "50%"), (0.0, "0%")] {
                    @let y = pad + plot * (1.0 - pct);
                    line x1=(pad) y1=(y) x2=(w - pad) y2=(y) stroke="#ccc" {}
                    text x="2" y=(y + 3.0) font-size="9" { (label) }
                }
                @for (n, (day, c)) in d.by_day.iter().enumerate() {
                    @let x = pad + n as f64 * bw;
                    @let (value, colour) = match c.compliance {
                        Some(v) => (v, if v >= 1.0 { "#2a7" } else { "#c33" }),
                        None => (0.02, "#999"),
                    };
                    @let bh = (plot * value).max(1.0);
                    rect class="bar" x=(format!("{x:.2}")) y=(format!("{:.2}", pad + plot - bh))
                        width=(format!("{:.2}", (bw - 1.0).max(0.5))) height=(format!("{bh:.2}"))
                        fill=(colour) {
                        title { (day) " " (format_ratio(c.compliance)) }
                    }
                }
                @if let (Some(first), Some(last)) = (d.by_day.keys().next(), d.by_day.keys().last()) {
                    text x=(pad) y=(ht - 10.0) font-size="9" { (first) }
                    text x=(w - pad) y=(ht - 10.0) font-size="9" text-anchor="end" { (last) }
                }
            }
            figcaption { "Daily compliance (green 100 %, red below, grey: nothing decided)." }
        }
    }
}

/// Received inquiries by hour of week; red outline where compliance was below 100 %.
fn heatmap(d: &ReportData) -> Markup {
    let (cell, left, top) = (24.0, 34.0, 16.0);
    let (w, ht) = (left + cell * 24.0 + 4.0, top + cell * 7.0 + 4.0);
    let max = d
        .hour_of_week
        .iter()
        .map(|c| c.received)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    html! {
        figure {
            svg id="chart-heatmap" xmlns="http://www.w3.org/2000/svg" viewBox={ "0 0 " (w) " " (ht) }
                width=(w) height=(ht) role="img" aria-label="Hour-of-week heatmap" {
                rect x="0" y="0" width=(w) height=(ht) fill="#fff" {}
                @for hour in (0..24).step_by(3) {
                    text x=(left + hour as f64 * cell) y="11" font-size="9" { (format!("{hour:02}")) }
                }
                @for (day, name) in ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].iter().enumerate() {
                    text x="2" y=(top + day as f64 * cell + cell * 0.65) font-size="9" { (name) }
                    @for hour in 0..24 {
                        @let c = &d.hour_of_week[day * 24 + hour];
                        @let shade = 1.0 - (c.received as f64 / max);
                        @let g = (90.0 + 165.0 * shade) as u8;
                        @let fill = if c.received == 0 {
                            "#f4f4f4".to_string()
                        } else {
                            format!("rgb({g},{g},255)")
                        };
                        @let low = c.compliance.is_some_and(|v| v < 1.0);
                        rect class="cell" x=(left + hour as f64 * cell) y=(top + day as f64 * cell)
                            width=(cell) height=(cell) fill=(fill)
                            stroke=(if low { "#c00" } else { "#fff" })
                            stroke-width=[low.then_some("2")] {
                            title {
                                (name) " " (format!("{hour:02}")) ":00 received " (c.received)
                                " compliance " (format_ratio(c.compliance))
                            }
                        }
                    }
                }
            }
            figcaption {
                "Inquiries received by hour of week (darker = more; red outline: compliance \
                below 100 %)."
            }
        }
    }
}

/// Answered inquiries by response time.
fn distribution_chart(d: &ReportData) -> Markup {
    let (w, ht, pad) = (680.0, 170.0, 30.0);
    let buckets = &d.response_distribution;
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let bw = (w - 2.0 * pad) / buckets.len().max(1) as f64;
    let plot = ht - 2.0 * pad;
    html! {
        figure {
            svg id="chart-distribution" xmlns="http://www.w3.org/2000/svg"
                viewBox={ "0 0 " (w) " " (ht) } width=(w) height=(ht) role="img"
                aria-label="Response-time distribution" {
                rect x="0" y="0" width=(w) height=(ht) fill="#fff" {}
                @for (n, b) in buckets.iter().enumerate() {
                    @let x = pad + n as f64 * bw;
                    @let bh = if b.count == 0 {
                        0.0
                    } else {
                        (plot * b.count as f64 / max).max(1.0)
                    };
                    @let late = b.le_seconds.is_none_or(|s| s > 900);
                    @let label = match b.le_seconds {
                        Some(s) if s % 86400 == 0 => format!("≤{}d", s / 86400),
                        Some(s) if s % 3600 == 0 => format!("≤{}h", s / 3600),
                        Some(s) if s % 60 == 0 => format!("≤{}m", s / 60),
                        Some(s) => format!("≤{s}s"),
                        None => ">1d".to_string(),
                    };
                    rect class="bar" x=(format!("{:.2}", x + 2.0)) y=(format!("{:.2}", pad + plot - bh))
                        width=(format!("{:.2}", bw - 4.0)) height=(format!("{bh:.2}"))
                        fill=(if late { "#c33" } else { "#2a7" }) {
                        title { (label) " " (b.count) }
                    }
                    text x=(format!("{:.2}", x + bw / 2.0)) y=(ht - 12.0) font-size="9"
                        text-anchor="middle" { (label) }
                    text x=(format!("{:.2}", x + bw / 2.0)) y=(format!("{:.2}", pad + plot - bh - 3.0))
                        font-size="9" text-anchor="middle" { (b.count) }
                }
            }
            figcaption {
                "Answered inquiries by response time (red: after the 15-minute promise)."
            }
        }
    }
}
