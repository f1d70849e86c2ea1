//! The HTML report: one self-contained file (inline CSS and SVG, no scripts, no fetches) that
//! prints cleanly on A4 and shows Arabic text right-to-left.
//!
//! Charts are SVG drawn here: daily compliance, the hour-of-week heatmap of received inquiries
//! (shaded by count, red cells where compliance fell below 100 %), and the response-time
//! distribution with the warning and promise marks. Every text from the ledger is escaped and
//! wrapped in `dir="auto"`, so a customer's Arabic subject reads right-to-left inside an
//! English table.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{AlertRow, Counts, Percentiles, ReportData, format_ratio, format_seconds};

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

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Text from the ledger: escaped, direction from its own first strong character.
fn txt(s: &str) -> String {
    format!("<bdi dir=\"auto\">{}</bdi>", esc(s))
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
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\" dir=\"ltr\"><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(&d.title)
    );
    let _ = write!(
        h,
        "<h1>{}</h1><p>Period <b>{}</b> to <b>{}</b> ({}; inquiries received in [from, to)). \
         Generated {} UTC.{}</p>",
        esc(&d.title),
        esc(&local(d, d.from)),
        esc(&local(d, d.to)),
        esc(tz.name()),
        d.generated_at.format("%Y-%m-%d %H:%M:%S"),
        if d.masked {
            " Customer addresses are masked."
        } else {
            ""
        }
    );
    if !d.ledger.intact {
        let _ = write!(
            h,
            "<p class=\"banner\" id=\"ledger-broken\">The ledger failed verification: {}. \
             The figures below cannot be trusted.</p>",
            esc(&d.ledger.verification)
        );
    }

    // Headline figures.
    let t = &d.totals;
    let _ = write!(
        h,
        "<div class=\"head\" id=\"headline\">\
         <div class=\"fig\">Compliance<b id=\"compliance\">{}</b></div>\
         <div class=\"fig\">Received<b id=\"received\">{}</b></div>\
         <div class=\"fig\">Met<b id=\"met\">{}</b></div>\
         <div class=\"fig\">Missed<b id=\"missed\" class=\"{}\">{}</b></div>\
         <div class=\"fig\">Pending<b id=\"pending\">{}</b></div>\
         <div class=\"fig\">Excluded<b id=\"excluded\">{}</b></div></div>",
        format_ratio(t.compliance),
        t.received,
        t.met,
        if t.missed > 0 { "bad" } else { "ok" },
        t.missed,
        t.pending,
        t.excluded
    );
    let _ = write!(
        h,
        "<p>Missed: {} answered late, {} unanswered past the deadline. \
         Compliance = met ÷ (met + missed); pending inquiries are not counted.</p>",
        t.missed_answered_late, t.missed_unanswered
    );

    h.push_str("<h2>Compliance</h2>");
    counts_table(&mut h, "Channel", &d.by_channel);
    counts_table(&mut h, "Language", &d.by_language);
    counts_table(&mut h, "Month", &d.by_month);

    h.push_str("<h2>Charts</h2>");
    daily_chart(&mut h, d);
    heatmap(&mut h, d);
    distribution_chart(&mut h, d);

    h.push_str("<h2>Response times</h2><table><tr><th>Group</th><th class=\"n\">Answered</th><th class=\"n\">p50</th><th class=\"n\">p90</th><th class=\"n\">p95</th><th class=\"n\">p99</th><th class=\"n\">Max</th></tr>");
    percentile_row(&mut h, "all", &d.response_times);
    for (k, p) in &d.response_times_by_channel {
        percentile_row(&mut h, &format!("channel {k}"), p);
    }
    for (k, p) in &d.response_times_by_language {
        percentile_row(&mut h, &format!("language {k}"), p);
    }
    h.push_str("</table>");

    if d.takes.takes > 0 {
        let _ = write!(
            h,
            "<h2>Taken (\"I'm on it\")</h2><p><b id=\"takes\">{}</b> take(s). Time from the alert to the take:</p>\
             <table id=\"take-times\"><tr><th>Who</th><th class=\"n\">Takes</th><th class=\"n\">p50</th><th class=\"n\">p90</th><th class=\"n\">p95</th><th class=\"n\">p99</th><th class=\"n\">Max</th></tr>",
            d.takes.takes
        );
        percentile_row(&mut h, "everyone", &d.takes.overall);
        for (who, p) in &d.takes.by_person {
            percentile_row(&mut h, who, p);
        }
        h.push_str("</table>");
    }

    let _ = write!(h, "<h2>Breaches ({})</h2>", d.breaches.len());
    if d.breaches.is_empty() {
        h.push_str("<p>None.</p>");
    } else {
        h.push_str("<table id=\"breaches\"><tr><th>Inquiry</th><th>Customer / subject</th><th>Received / deadline</th><th>Response</th><th>Alerts</th></tr>");
        for b in d.breaches.iter() {
            let response = if b.responded {
                format!(
                    "{} after {} by {} ({}){}{}{}",
                    esc(&local_opt(d, b.responded_at)),
                    secs(b.response_seconds),
                    txt(b.responder.as_deref().unwrap_or("?")),
                    esc(b.response_kind.as_deref().unwrap_or("?")),
                    b.response_id
                        .as_deref()
                        .map(|r| format!("<br><span class=\"mono\">{}</span>", esc(r)))
                        .unwrap_or_default(),
                    b.ack_via
                        .as_deref()
                        .map(|v| format!("<br>ack via {}", esc(v)))
                        .unwrap_or_default(),
                    b.ack_note
                        .as_deref()
                        .map(|n| format!("<br>note: {}", txt(n)))
                        .unwrap_or_default(),
                )
            } else {
                "<b class=\"bad\">not answered</b>".to_string()
            };
            let mut alerts: Vec<String> = b.alerts.iter().map(|a| alert_cell(d, a)).collect();
            alerts.extend(b.takes.iter().map(|t| {
                format!(
                    "<span class=\"take\">taken by {} at {}{}</span>",
                    txt(&t.by),
                    esc(&local(d, t.at)),
                    t.alert_to_take_seconds
                        .map(|s| format!(", {} after the alert", secs(Some(s))))
                        .unwrap_or_default()
                )
            }));
            let _ = write!(
                h,
                "<tr><td class=\"mono\">{}<br>{} {}<br>{}</td><td>{}<br>{}</td><td>{}<br>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&b.id),
                esc(&b.channel),
                esc(&b.language),
                esc(&b.external_id),
                txt(&b.customer),
                txt(&b.subject),
                esc(&local(d, b.received_at)),
                esc(&local_opt(d, b.deadline_at)),
                response,
                if alerts.is_empty() {
                    "—".into()
                } else {
                    alerts.join("<br>")
                }
            );
            spill(&mut h, out)?;
        }
        h.push_str("</table>");
    }

    let _ = write!(h, "<h2>Exclusions ({})</h2>", d.exclusions.len());
    if !d.excluded_by_reason.is_empty() {
        h.push_str("<table><tr><th>Reason</th><th class=\"n\">Count</th></tr>");
        for (r, n) in &d.excluded_by_reason {
            let _ = write!(h, "<tr><td>{}</td><td class=\"n\">{n}</td></tr>", esc(r));
        }
        h.push_str("</table>");
        h.push_str("<table id=\"exclusions\"><tr><th>Inquiry</th><th>Received</th><th>Sender / subject</th><th>Reason</th><th>Evidence</th></tr>");
        for x in d.exclusions.iter() {
            let _ = write!(
                h,
                "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}<br>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&x.id),
                esc(&local(d, x.received_at)),
                txt(&x.customer),
                txt(&x.subject),
                esc(&x.reason),
                txt(&x.detail)
            );
            spill(&mut h, out)?;
        }
        h.push_str("</table>");
    } else {
        h.push_str("<p>None.</p>");
    }

    if !d.contradictions.is_empty() {
        let _ = write!(
            h,
            "<h2>Contradictory evidence ({})</h2>",
            d.contradictions.len()
        );
        h.push_str("<p>Kept as read and flagged: the contradicted part decided nothing.</p>");
        h.push_str("<table id=\"contradictions\"><tr><th>Flagged</th><th>Source</th><th>Kind</th><th>Evidence</th><th>Detail</th></tr>");
        for c in &d.contradictions {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td></tr>",
                esc(&local(d, c.at)),
                esc(&c.source),
                esc(&c.kind),
                txt(&c.evidence),
                txt(&c.detail)
            );
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Policy versions in force</h2><table><tr><th>Version</th><th>First used</th><th class=\"n\">Target</th><th>Warn at</th><th>Re-notify</th><th>Calendar</th><th class=\"n\">Inquiries</th></tr>");
    for p in &d.policies {
        let r = &p.record;
        let warn: Vec<String> = r
            .warn_offsets_seconds
            .iter()
            .map(|s| format_seconds(*s as i64))
            .collect();
        let _ = write!(
            h,
            "<tr><td class=\"mono\">{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>every {} (max {})</td><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&r.version),
            esc(&local(d, p.activated_at)),
            format_seconds(r.target_seconds as i64),
            esc(&warn.join(", ")),
            format_seconds(r.renotify_every_seconds as i64),
            r.renotify_max,
            esc(&r.calendar),
            p.inquiries_in_period
        );
    }
    h.push_str("</table>");

    let c = &d.coverage;
    h.push_str("<h2>Monitoring coverage</h2>");
    if !c.recorded {
        h.push_str(
            "<p class=\"banner\">This ledger holds no monitor start, heartbeat or source \
                    events: when the monitor was running cannot be proven for this period.</p>",
        );
    }
    let _ = write!(
        h,
        "<p>The daemon was not watching for <b id=\"daemon-down\">{}</b> of the period; \
         <b id=\"gaps\">{}</b> gap(s) in all.</p>",
        format_seconds(c.daemon_down_seconds),
        c.gaps.len()
    );
    if !c.gaps.is_empty() {
        h.push_str("<table id=\"coverage-gaps\"><tr><th>#</th><th>From</th><th>To</th><th class=\"n\">Length</th><th>What</th><th>Cause</th><th class=\"n\">Received during</th><th class=\"n\">Detected late</th></tr>");
        for (n, g) in c.gaps.iter().enumerate() {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                n + 1,
                esc(&local(d, g.start)),
                esc(&local(d, g.end)),
                format_seconds(g.seconds),
                match &g.source {
                    Some(s) => format!("source {}", esc(s)),
                    None => "daemon".into(),
                },
                esc(&g.cause),
                g.inquiries_received,
                g.detected_late
            );
        }
        h.push_str("</table>");
    }
    if !c.monitor_alerts.is_empty() {
        let _ = write!(
            h,
            "<p>The monitor paged about its own blindness <b id=\"monitor-alerts\">{}</b> time(s):</p>\
             <table id=\"coverage-monitor-alerts\"><tr><th>Alert</th><th>Raised</th><th>Resolved</th>\
             <th class=\"n\">Length</th><th>Delivered by</th><th>Detail</th></tr>",
            c.monitor_alerts.len()
        );
        for a in &c.monitor_alerts {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.alert),
                esc(&local(d, a.raised_at)),
                a.resolved_at
                    .map_or_else(|| "still active".to_string(), |t| esc(&local(d, t))),
                format_seconds(a.seconds),
                if a.delivered {
                    esc(&a.notifiers.join(", "))
                } else {
                    "NOT DELIVERED".to_string()
                },
                esc(&a.detail)
            );
        }
        h.push_str("</table>");
    }
    let _ = write!(
        h,
        "<p>Detection latency (first seen − received) over {} \
         inquiries: p50 {}, p99 {}, max {}. Inquiries detected more than {} after they were \
         received: <b id=\"late-detections\">{}</b>.</p>",
        c.detection.answered,
        secs(c.detection.p50),
        secs(c.detection.p99),
        secs(c.detection.max),
        format_seconds(c.late_threshold_seconds),
        c.late_detections.len()
    );
    if !c.late_detections.is_empty() {
        h.push_str("<table><tr><th>Inquiry</th><th>Source</th><th>Received</th><th>First seen</th><th class=\"n\">Late by</th><th>Gap</th></tr>");
        for l in &c.late_detections {
            let _ = write!(
                h,
                "<tr><td class=\"mono\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                esc(&l.id),
                esc(&l.source),
                esc(&local(d, l.received_at)),
                esc(&local(d, l.first_seen_at)),
                format_seconds(l.detection_seconds),
                l.gap
                    .map(|g| format!("#{}", g + 1))
                    .unwrap_or_else(|| "—".into())
            );
            spill(&mut h, out)?;
        }
        h.push_str("</table>");
    }

    let _ = write!(
        h,
        "<h2>Ledger</h2><table><tr><th>Verification</th><td id=\"verification\" class=\"{}\">{}</td></tr>\
         <tr><th>Events</th><td>{}</td></tr><tr><th>Head</th><td class=\"mono\" id=\"head-hash\">seq {} {}</td></tr></table>\
         <p>Pin the head hash: <code>slawatch audit verify</code> must print the same hash, or a later \
         head whose chain contains this one.</p>",
        if d.ledger.intact { "ok" } else { "bad" },
        esc(&d.ledger.verification),
        d.ledger.events,
        d.ledger
            .head_seq
            .map(|s| s.to_string())
            .unwrap_or_else(|| "—".into()),
        esc(d.ledger.head_hash.as_deref().unwrap_or("(empty ledger)"))
    );
    h.push_str("</body></html>\n");
    out.write_all(h.as_bytes())
}

/// One alert of a breach: its stage and instant, then each delivery (when, which notifiers,
/// to whom) and each failure (when, why).
fn alert_cell(d: &ReportData, a: &AlertRow) -> String {
    let mut cell = format!("<b>{}</b> {}", esc(&a.stage), esc(&local(d, a.at)));
    for x in &a.delivered {
        let _ = write!(
            cell,
            "<br>&nbsp;delivered {} via {}",
            esc(&local(d, x.at)),
            esc(&x.notifiers.join(", "))
        );
        if !x.recipients.is_empty() {
            let to: Vec<String> = x.recipients.iter().map(|r| txt(r)).collect();
            let _ = write!(cell, " to {}", to.join(", "));
        }
    }
    for x in &a.failed {
        let _ = write!(
            cell,
            "<br>&nbsp;<span class=\"bad\">failed</span> {}",
            esc(&local(d, x.at))
        );
        if !x.recipients.is_empty() {
            let to: Vec<String> = x.recipients.iter().map(|r| txt(r)).collect();
            let _ = write!(cell, " to {}", to.join(", "));
        }
        let _ = write!(cell, ": {}", txt(&x.error));
    }
    if a.delivered.is_empty() && a.failed.is_empty() {
        cell.push_str("<br>&nbsp;no delivery recorded");
    }
    cell
}

fn counts_table(h: &mut String, label: &str, rows: &std::collections::BTreeMap<String, Counts>) {
    let _ = write!(
        h,
        "<table><tr><th>{label}</th><th class=\"n\">Received</th><th class=\"n\">Excluded</th><th class=\"n\">Met</th><th class=\"n\">Missed late</th><th class=\"n\">Missed unanswered</th><th class=\"n\">Pending</th><th class=\"n\">Compliance</th></tr>"
    );
    for (k, c) in rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(k),
            c.received,
            c.excluded,
            c.met,
            c.missed_answered_late,
            c.missed_unanswered,
            c.pending,
            format_ratio(c.compliance)
        );
    }
    h.push_str("</table>");
}

fn percentile_row(h: &mut String, label: &str, p: &Percentiles) {
    let _ = write!(
        h,
        "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
        esc(label),
        p.answered,
        secs(p.p50),
        secs(p.p90),
        secs(p.p95),
        secs(p.p99),
        secs(p.max)
    );
}

/// Daily compliance as bars (height = compliance, grey when nothing was decided that day).
fn daily_chart(h: &mut String, d: &ReportData) {
    let (w, ht, pad) = (680.0, 170.0, 30.0);
    let n = d.by_day.len().max(1) as f64;
    let bw = (w - pad * 2.0) / n;
    let _ = write!(
        h,
        "<figure><svg id=\"chart-daily\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {ht}\" width=\"{w}\" height=\"{ht}\" role=\"img\" aria-label=\"Daily compliance\">\
         <rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{ht}\" fill=\"#fff\"/>"
    );
    let plot = ht - 2.0 * pad;
    for (pct, label) in [(1.0, "100%"), (0.5, "50%"), (0.0, "0%")] {
        let y = pad + plot * (1.0 - pct);
        let _ = write!(
            h,
            "<line x1=\"{pad}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ccc\"/><text x=\"2\" y=\"{}\" font-size=\"9\">{label}</text>",
            w - pad,
            y + 3.0
        );
    }
    for (n, (day, c)) in d.by_day.iter().enumerate() {
        let x = pad + n as f64 * bw;
        let (value, colour) = match c.compliance {
            Some(v) => (v, if v >= 1.0 { "#2a7" } else { "#c33" }),
            None => (0.02, "#999"),
        };
        let bh = (plot * value).max(1.0);
        let _ = write!(
            h,
            "<rect class=\"bar\" x=\"{x:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{bh:.2}\" fill=\"{colour}\"><title>{} {}</title></rect>",
            pad + plot - bh,
            (bw - 1.0).max(0.5),
            esc(day),
            format_ratio(c.compliance)
        );
    }
    if let (Some(first), Some(last)) = (d.by_day.keys().next(), d.by_day.keys().last()) {
        let _ = write!(
            h,
            "<text x=\"{pad}\" y=\"{}\" font-size=\"9\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"9\" text-anchor=\"end\">{}</text>",
            ht - 10.0,
            esc(first),
            w - pad,
            ht - 10.0,
            esc(last)
        );
    }
    h.push_str("</svg><figcaption>Daily compliance (green 100 %, red below, grey: nothing decided).</figcaption></figure>");
}

/// Received inquiries by hour of week; red outline where compliance was below 100 %.
fn heatmap(h: &mut String, d: &ReportData) {
    let (cell, left, top) = (24.0, 34.0, 16.0);
    let (w, ht) = (left + cell * 24.0 + 4.0, top + cell * 7.0 + 4.0);
    let max = d
        .hour_of_week
        .iter()
        .map(|c| c.received)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let _ = write!(
        h,
        "<figure><svg id=\"chart-heatmap\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {ht}\" width=\"{w}\" height=\"{ht}\" role=\"img\" aria-label=\"Hour-of-week heatmap\"><rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{ht}\" fill=\"#fff\"/>"
    );
    for hour in (0..24).step_by(3) {
        let _ = write!(
            h,
            "<text x=\"{}\" y=\"11\" font-size=\"9\">{hour:02}</text>",
            left + hour as f64 * cell
        );
    }
    for (day, name) in ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .iter()
        .enumerate()
    {
        let _ = write!(
            h,
            "<text x=\"2\" y=\"{}\" font-size=\"9\">{name}</text>",
            top + day as f64 * cell + cell * 0.65
        );
        for hour in 0..24 {
            let c = &d.hour_of_week[day * 24 + hour];
            let shade = 1.0 - (c.received as f64 / max);
            let g = (90.0 + 165.0 * shade) as u8;
            let fill = if c.received == 0 {
                "#f4f4f4".to_string()
            } else {
                format!("rgb({g},{g},255)")
            };
            let stroke = if c.compliance.is_some_and(|v| v < 1.0) {
                "stroke=\"#c00\" stroke-width=\"2\""
            } else {
                "stroke=\"#fff\""
            };
            let _ = write!(
                h,
                "<rect class=\"cell\" x=\"{}\" y=\"{}\" width=\"{cell}\" height=\"{cell}\" fill=\"{fill}\" {stroke}><title>{name} {hour:02}:00 received {} compliance {}</title></rect>",
                left + hour as f64 * cell,
                top + day as f64 * cell,
                c.received,
                format_ratio(c.compliance)
            );
        }
    }
    h.push_str("</svg><figcaption>Inquiries received by hour of week (darker = more; red outline: compliance below 100 %).</figcaption></figure>");
}

/// Answered inquiries by response time.
fn distribution_chart(h: &mut String, d: &ReportData) {
    let (w, ht, pad) = (680.0, 170.0, 30.0);
    let buckets = &d.response_distribution;
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let bw = (w - 2.0 * pad) / buckets.len().max(1) as f64;
    let plot = ht - 2.0 * pad;
    let _ = write!(
        h,
        "<figure><svg id=\"chart-distribution\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {ht}\" width=\"{w}\" height=\"{ht}\" role=\"img\" aria-label=\"Response-time distribution\"><rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{ht}\" fill=\"#fff\"/>"
    );
    for (n, b) in buckets.iter().enumerate() {
        let x = pad + n as f64 * bw;
        let bh = if b.count == 0 {
            0.0
        } else {
            (plot * b.count as f64 / max).max(1.0)
        };
        let late = b.le_seconds.is_none_or(|s| s > 900);
        let label = match b.le_seconds {
            Some(s) if s % 86400 == 0 => format!("≤{}d", s / 86400),
            Some(s) if s % 3600 == 0 => format!("≤{}h", s / 3600),
            Some(s) if s % 60 == 0 => format!("≤{}m", s / 60),
            Some(s) => format!("≤{s}s"),
            None => ">1d".to_string(),
        };
        let _ = write!(
            h,
            "<rect class=\"bar\" x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{bh:.2}\" fill=\"{}\"><title>{} {}</title></rect>\
             <text x=\"{:.2}\" y=\"{}\" font-size=\"9\" text-anchor=\"middle\">{}</text>\
             <text x=\"{:.2}\" y=\"{:.2}\" font-size=\"9\" text-anchor=\"middle\">{}</text>",
            x + 2.0,
            pad + plot - bh,
            bw - 4.0,
            if late { "#c33" } else { "#2a7" },
            esc(&label),
            b.count,
            x + bw / 2.0,
            ht - 12.0,
            esc(&label),
            x + bw / 2.0,
            pad + plot - bh - 3.0,
            b.count
        );
    }
    h.push_str("</svg><figcaption>Answered inquiries by response time (red: after the 15-minute promise).</figcaption></figure>");
}
