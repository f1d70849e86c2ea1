//! The built-in wallboard at `/`, opened in a real headless Chromium against a real daemon.
//!
//! Four inquiries are delivered to the daemon's Maildir with receipt times that put them in
//! each state (breached, warning, ok); the rendered DOM must list them least time left first
//! with the right state on each row, Arabic subjects in `dir="auto"` cells, and the headline
//! counters. A screenshot is written to `target/wallboard.png` for a human to look at.
//! Chromium missing is a failure with the package to install, never a skip.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::chromium::chromium;
use support::slawatchd::{Options, Slawatch, message, require, wait_for};

/// (state class, subject) of each table row, in order.
fn rows(dom: &str) -> Vec<(String, String)> {
    let Some(start) = dom.find("<tbody>") else {
        return Vec::new();
    };
    let body = &dom[start
        ..dom[start..]
            .find("</tbody>")
            .map_or(dom.len(), |e| start + e)];
    body.split("<tr class=\"")
        .skip(1)
        .map(|row| {
            let state = row.split('"').next().unwrap_or_default().to_string();
            // The subject is the sixth cell.
            let cells: Vec<&str> = row.split("<td").skip(1).collect();
            let subject = cells
                .get(5)
                .and_then(|c| c.split_once('>'))
                .map(|(_, rest)| rest.split("</td>").next().unwrap_or_default())
                .unwrap_or_default()
                .to_string();
            (state, subject)
        })
        .collect()
}

fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&target).expect("create target dir");
    target.join("wallboard.png")
}

#[test]
fn wallboard_in_chromium_lists_inquiries_by_time_left_with_states() {
    require("chromium", "chromium");
    let daemon = Slawatch::start(Options::default());
    let now = chrono::Utc::now().timestamp();
    let mails = [
        (
            now - 120,
            "Where is my parcel?",
            "en",
            "Nadia <nadia@customer.example>",
        ),
        (
            now - 20 * 60,
            "Refund still missing",
            "en",
            "Tom <tom@customer.example>",
        ),
        (
            now - 30,
            "استفسار عن الطلب رقم ٤٥",
            "ar",
            "ليلى <laila@customer.example>",
        ),
        (
            now - 12 * 60,
            "¿Dónde está mi pedido?",
            "es",
            "Ana <ana@customer.example>",
        ),
    ];
    for (n, (at, subject, lang, from)) in mails.iter().enumerate() {
        let body = match *lang {
            "ar" => "مرحبا، لم يصل طلبي بعد. أرجو المساعدة في أقرب وقت ممكن.",
            "es" => "Hola, mi pedido todavía no ha llegado. ¿Me pueden ayudar, por favor?",
            _ => "Hello, my order has not arrived yet. Could you help me please?",
        };
        daemon.deliver(
            *at,
            n as u32 + 1,
            &message(&format!("wall{n}"), from, subject, lang, body),
        );
    }
    wait_for(
        Duration::from_secs(30),
        "four open inquiries in the API",
        || {
            let (_, body) = daemon.get("/api/v1/inquiries?state=open");
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            let n = v["inquiries"].as_array().map_or(0, Vec::len);
            (n == 4).then_some(())
        },
    );

    let profile = tempfile::tempdir().expect("profile dir");
    let url = format!("http://127.0.0.1:{}/", daemon.port);
    let dom = chromium(profile.path(), &["--dump-dom"], &url);
    let rows = rows(&dom);
    let expected = [
        ("breached", "Refund still missing"),
        ("warning", "¿Dónde está mi pedido?"),
        ("ok", "Where is my parcel?"),
        ("ok", "استفسار عن الطلب رقم ٤٥"),
    ];
    let got: Vec<(&str, &str)> = rows.iter().map(|(s, t)| (s.as_str(), t.as_str())).collect();
    assert_eq!(
        got, expected,
        "rows (state, subject) in the rendered DOM:\n{dom}"
    );
    assert!(
        dom.contains("<td dir=\"auto\">استفسار عن الطلب رقم ٤٥</td>"),
        "Arabic subject in a dir=auto cell"
    );
    assert!(dom.contains("id=\"breached\"><b>1</b>"), "breached counter");
    assert!(dom.contains("id=\"warning\"><b>1</b>"), "warning counter");
    assert!(dom.contains("id=\"ok\"><b>2</b>"), "ok counter");
    assert!(dom.contains("overdue"), "the breached row reads overdue");

    let shot = screenshot_path();
    let _ = std::fs::remove_file(&shot);
    chromium(
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1920,1080",
        ],
        &url,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot at {} looks empty ({} bytes)",
        shot.display(),
        png.len()
    );
    println!("wallboard screenshot: {}", shot.display());
}
