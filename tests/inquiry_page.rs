//! The page of one inquiry (`/inquiries/{id}`), opened in a real headless Chromium against the
//! real daemon: what the on-call manager sees on a phone when an alert's link is tapped.
//! A screenshot at a phone's size is written to `target/inquiry-page.png`.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::chromium::chromium;
use support::slawatchd::{Options, Slawatch, message, require, wait_for};

fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&target).expect("create target dir");
    target.join(name)
}

/// The text of the element with `id` in a dumped DOM (its first line of content).
fn element<'a>(dom: &'a str, id: &str) -> &'a str {
    let marker = format!("id=\"{id}\"");
    let Some(at) = dom.find(&marker) else {
        return "";
    };
    let rest = &dom[at..];
    let start = rest.find('>').map_or(0, |i| i + 1);
    let end = rest[start..].find("</").map_or(rest.len(), |e| start + e);
    &rest[start..end]
}

#[test]
fn the_page_of_a_breached_arabic_inquiry_in_chromium() {
    require("chromium", "chromium");
    let daemon = Slawatch::start(Options {
        env: &[("SLAWATCH__DESK__TIME_ZONE", "Asia/Riyadh")],
        ..Options::default()
    });
    let received = chrono::Utc::now().timestamp() - 20 * 60;
    daemon.deliver(
        received,
        1,
        &message(
            "page1",
            "ليلى <laila@customer.example>",
            "استفسار عن الطلب رقم ٤٥",
            "ar",
            "مرحبا، لم يصل طلبي بعد. أرجو المساعدة في أقرب وقت ممكن.",
        ),
    );
    let id = wait_for(
        Duration::from_secs(30),
        "the breached inquiry in the API",
        || {
            let (_, body) = daemon.get("/api/v1/inquiries?state=open");
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let i = v["inquiries"].as_array()?.first()?.clone();
            (i["breached_at"].is_string()).then(|| i["id"].as_str().map(str::to_string))?
        },
    );
    let (status, html) = daemon.get(&format!("/inquiries/{id}"));
    assert_eq!(status, 200, "{html}");
    let (status, _) = daemon.get("/inquiries/e0000000000000000");
    assert_eq!(status, 404);

    let profile = tempfile::tempdir().expect("profile dir");
    let url = format!("http://127.0.0.1:{}/inquiries/{id}", daemon.port);
    let dom = chromium(profile.path(), &["--dump-dom"], &url);
    assert!(element(&dom, "state").contains("BREACHED"), "{dom}");
    assert!(element(&dom, "left").starts_with("overdue"), "{dom}");
    assert_eq!(
        element(&dom, "customer"),
        "ليلى &lt;laila@customer.example&gt;"
    );
    assert_eq!(element(&dom, "subject"), "استفسار عن الطلب رقم ٤٥");
    assert!(dom.contains("id=\"subject\" dir=\"auto\""));
    assert_eq!(element(&dom, "channel"), "email");
    assert_eq!(element(&dom, "language"), "ar");
    let received_text = element(&dom, "received");
    assert!(
        received_text.contains(" UTC · ") && received_text.contains("(Asia/Riyadh)"),
        "received in UTC and desk time: {received_text}"
    );
    assert!(element(&dom, "sla").contains("open · missed"), "{dom}");
    for kind in ["inquiry_opened", "inquiry_breached"] {
        assert!(
            dom.contains(&format!("data-kind=\"{kind}\"")),
            "timeline has {kind}:\n{dom}"
        );
    }
    assert!(dom.contains("breach raised"), "alerts section:\n{dom}");

    let shot = screenshot_path("inquiry-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=412,915",
        ],
        &url,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000);
    println!("inquiry page screenshot: {}", shot.display());
}
