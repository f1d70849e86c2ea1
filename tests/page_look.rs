//! The pages look as they did before they were moved to templates.
//!
//! Each page is rendered from a fixed fixture (fixed clock, Arabic text, markup and quotes in
//! every text field) and opened in headless Chromium next to the page as the string-built
//! renderer produced it for the same fixture (`tests/fixtures/pages/*.html`). Their DOMs
//! (`--dump-dom`, whitespace between tags ignored) must be the same, and so must their
//! screenshots, pixel for pixel. Scripts are taken out before Chromium sees either page (the
//! inquiry page's ticking clock would make two shots differ) and compared as text instead. To record a page again after a change that is meant to
//! show, run with `SLAWATCH_RECORD_PAGES=1` and look at the difference before committing it.

mod support;

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use slawatch::http::page::{self, Actions, PageView};
use slawatch::http::status::{self, Summary};
use slawatch::store::LedgerEntry;
use slawatch_core::domain::{Channel, Language};
use slawatch_core::testing;
use slawatch_core::tracker::{AlertKind, Event, Tracker};
use support::chromium::chromium;
use support::slawatchd::require;

/// Text a customer could send, in every field that comes from outside.
const HOSTILE: &str = "<script>alert('x')</script> & \"quoted\"";

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-24T14:05:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

/// Four open inquiries (breached, warning, two on time), one with hostile text everywhere.
fn wallboard_tracker() -> Tracker {
    let now = now();
    let mut tracker = testing::tracker();
    for (n, (age, subject, name)) in [
        (20 * 60, "Refund still missing", Some("Tom")),
        (12 * 60, HOSTILE, Some(HOSTILE)),
        (120, "Where is my parcel?", None),
        (30, "استفسار عن الطلب رقم ٤٥", Some("ليلى")),
    ]
    .into_iter()
    .enumerate()
    {
        let mut opened = testing::opened(
            n as u64,
            Channel::ALL[n % Channel::ALL.len()],
            Language::ALL[n % Language::ALL.len()],
            now - TimeDelta::seconds(age),
        );
        opened.subject = subject.to_string();
        opened.customer_name = name.map(str::to_string);
        tracker.apply(&Event::InquiryOpened(opened));
    }
    tracker
}

fn wallboard() -> String {
    let tracker = wallboard_tracker();
    let mut s = Summary::compute(&tracker, now(), chrono_tz::Asia::Riyadh);
    s.monitor = vec![format!("source inbox silent: {HOSTILE}")];
    s.ledger = format!("ledger writable ({HOSTILE})");
    status::render(&s, now(), chrono_tz::Asia::Riyadh)
}

fn entry(seq: i64, event: Event) -> LedgerEntry {
    LedgerEntry {
        seq,
        recorded_at: now(),
        event,
        prev_hash: String::new(),
        hash: String::new(),
    }
}

/// A breached inquiry with hostile text, alerted and taken, with its timeline.
fn inquiry() -> String {
    let now = now();
    let mut tracker = testing::tracker();
    let mut opened = testing::opened(
        1,
        Channel::Email,
        Language::Ar,
        now - TimeDelta::minutes(20),
    );
    opened.subject = format!("استفسار {HOSTILE}");
    opened.customer_name = Some(HOSTILE.to_string());
    let id = opened.inquiry_id.clone();
    let deadline = opened.deadline_at;
    let events = vec![
        Event::InquiryOpened(opened),
        Event::InquiryBreached {
            inquiry_id: id.clone(),
            at: deadline,
        },
        Event::AlertDelivered {
            inquiry_id: id.clone(),
            kind: AlertKind::Breach,
            due_at: deadline,
            notifiers: vec!["smtp".into()],
            recipients: vec![HOSTILE.into()],
            at: deadline + TimeDelta::seconds(2),
        },
        Event::InquiryTaken {
            inquiry_id: id.clone(),
            by: HOSTILE.into(),
            at: now - TimeDelta::minutes(2),
            until: now + TimeDelta::minutes(28),
            how: "shared_link".into(),
        },
    ];
    for e in &events {
        tracker.apply(e);
    }
    let entries: Vec<LedgerEntry> = (1..).zip(events).map(|(n, e)| entry(n, e)).collect();
    let inquiry = tracker.get(&id).expect("inquiry");
    page::render(
        inquiry,
        &PageView {
            entries: &entries,
            actions: Some(Actions {
                take: format!("/inquiries/{id}/take?to=a&exp=1&sig=\"x'<"),
                answered: format!("/inquiries/{id}/answered?to=a&exp=1&sig=y"),
            }),
        },
        now,
        chrono_tz::Asia::Riyadh,
    )
}

/// The short page saying one thing.
fn message() -> String {
    let response = page::message_page(
        axum::http::StatusCode::FORBIDDEN,
        &format!("Link refused {HOSTILE}"),
        &format!("مرحبا {HOSTILE}"),
    );
    let body = futures_body(response);
    String::from_utf8(body).expect("utf-8")
}

fn futures_body(response: axum::response::Response) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec()
    })
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pages")
}

/// `html` without its `<script>` elements, and the scripts.
fn without_scripts(html: &str) -> (String, Vec<String>) {
    let (mut page, mut scripts) = (String::with_capacity(html.len()), Vec::new());
    let mut rest = html;
    while let Some(open) = rest.find("<script>") {
        page.push_str(&rest[..open]);
        let close = rest[open..]
            .find("</script>")
            .map_or(rest.len(), |c| open + c + "</script>".len());
        scripts.push(rest[open..close].to_string());
        rest = &rest[close..];
    }
    page.push_str(rest);
    (page, scripts)
}

/// The DOM Chromium builds from `file`, whitespace between tags dropped.
fn dom(profile: &Path, file: &Path) -> String {
    let dom = chromium(
        profile,
        &["--dump-dom"],
        &format!("file://{}", file.display()),
    );
    let mut out = String::with_capacity(dom.len());
    let mut rest = dom.as_str();
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        if !text.trim().is_empty() {
            out.push_str(text);
        }
        let close = rest[open..].find('>').map_or(rest.len(), |c| open + c + 1);
        out.push_str(&rest[open..close]);
        rest = &rest[close..];
    }
    out.push_str(rest.trim());
    out
}

fn screenshot(profile: &Path, file: &Path, shot: &Path, size: &str) -> Vec<u8> {
    let _ = std::fs::remove_file(shot);
    chromium(
        profile,
        &[
            &format!("--screenshot={}", shot.display()),
            &format!("--window-size={size}"),
        ],
        &format!("file://{}", file.display()),
    );
    std::fs::read(shot).expect("screenshot written")
}

/// Compares `html` with the recorded page `name` in Chromium: same DOM, same pixels.
fn same_look(name: &str, html: &str, size: &str) {
    let recorded = fixtures().join(format!("{name}.html"));
    if std::env::var_os("SLAWATCH_RECORD_PAGES").is_some() {
        std::fs::create_dir_all(fixtures()).expect("fixtures dir");
        std::fs::write(&recorded, html).expect("record page");
    }
    require("chromium", "chromium");
    let dir = tempfile::tempdir().expect("temp dir");
    let (old, old_scripts) =
        without_scripts(&std::fs::read_to_string(&recorded).expect("recorded page"));
    let (new, new_scripts) = without_scripts(html);
    assert_eq!(old_scripts, new_scripts, "{name}: the scripts differ");
    let recorded = dir.path().join(format!("{name}-recorded.html"));
    std::fs::write(&recorded, old).expect("write page");
    let now_file = dir.path().join(format!("{name}.html"));
    std::fs::write(&now_file, new).expect("write page");
    let profile = dir.path().join("profile");
    let (before, after) = (dom(&profile, &recorded), dom(&profile, &now_file));
    assert_eq!(
        before, after,
        "{name}: the DOM differs from the recorded page"
    );
    let before = screenshot(&profile, &recorded, &dir.path().join("before.png"), size);
    let after = screenshot(&profile, &now_file, &dir.path().join("after.png"), size);
    assert!(before.starts_with(b"\x89PNG") && before.len() > 5_000);
    assert!(
        before == after,
        "{name}: the screenshot differs from the recorded page's"
    );
}

#[test]
fn the_wallboard_looks_as_recorded() {
    same_look("wallboard", &wallboard(), "1920,1080");
}

#[test]
fn the_inquiry_page_looks_as_recorded() {
    same_look("inquiry", &inquiry(), "412,915");
}

#[test]
fn the_message_page_looks_as_recorded() {
    same_look("message", &message(), "412,915");
}

/// No markup from outside survives on any page: it is all text.
#[test]
fn hostile_text_is_escaped_on_every_page() {
    for (name, html) in [
        ("wallboard", wallboard()),
        ("inquiry", inquiry()),
        ("message", message()),
    ] {
        assert!(
            !html.contains("<script>alert"),
            "{name}: raw markup from outside:\n{html}"
        );
        assert!(
            !html.contains("\"quoted\""),
            "{name}: raw quotes from outside:\n{html}"
        );
        assert!(
            html.contains(
                "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quoted&quot;"
            ),
            "{name}: escaped text missing:\n{html}"
        );
    }
}
