//! Time-window digests through the dispatcher to a real SMTP server (aiosmtpd): a storm that
//! trickles in, alert by alert, reaches each person as the first few mails at once and then one
//! digest at the end of the window; another person's alert is not held by it.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use slawatch::config::{Secret, SmtpSecurity, SmtpSettings};
use slawatch::notify::dispatch::{Dispatch, NotifierHealth};
use slawatch::notify::oncall::Recipient;
use slawatch::notify::smtp::SmtpNotifier;
use slawatch::notify::{Alert, AlertKind, Notifier};
use slawatch::telemetry::Metrics;
use slawatch_core::domain::{Channel, InquiryId, Language};
use support::smtp::{PASSWORD, SmtpServer, USER};

fn alert(id: &str, person: &str) -> Alert {
    let now = Utc::now();
    Alert {
        kind: AlertKind::Warning,
        inquiry_id: InquiryId(id.into()),
        channel: Channel::Email,
        language: Language::En,
        customer: "x@customer.test".into(),
        subject: format!("question {id}"),
        received_at: now - chrono::Duration::minutes(10),
        deadline_at: now + chrono::Duration::minutes(5),
        due_at: now,
        link: format!("http://127.0.0.1:9750/api/v1/inquiries/{id}"),
        actions: None,
        recipient: Some(std::sync::Arc::new(Recipient {
            person: person.into(),
            email: format!("{person}@desk.example"),
            handle: None,
        })),
        monitor: None,
    }
}

#[tokio::test]
async fn a_trickling_storm_sends_the_first_alerts_at_once_and_the_rest_as_one_digest() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = SmtpServer::start();
    let settings = SmtpSettings {
        host: "127.0.0.1".into(),
        port: server.starttls_port,
        security: SmtpSecurity::Starttls,
        tls: slawatch::tls::TlsTrust::with_ca_file(server.cert.clone()),
        username: Some(USER.into()),
        password: Some(Secret::new(PASSWORD)),
        oauth2: None,
        from: "SLA monitor <slawatch@desk.example>".into(),
        to: vec![],
        timeout: Duration::from_secs(5),
    };
    let digest_over = 2;
    let window = Duration::from_secs(3);
    let smtp: Arc<dyn Notifier> =
        Arc::new(SmtpNotifier::new(&settings, chrono_tz::UTC, digest_over).unwrap());
    let health = NotifierHealth::new(Arc::new(Metrics::new("test", &[])), &["smtp"]).unwrap();
    let dispatch = Arc::new(Dispatch::windowed(
        vec![smtp],
        None,
        Duration::from_secs(10),
        health,
        window,
        digest_over,
    ));

    // Five alerts for ana, one every 200 ms, each falling due on its own.
    let started = Instant::now();
    let mut waiting = Vec::new();
    for i in 0..5 {
        let d = dispatch.clone();
        waiting.push(tokio::spawn(async move {
            d.deliver(&[alert(&format!("storm-{i}"), "ana")]).await
        }));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Ben's alert meanwhile: his window is his own.
    dispatch.deliver(&[alert("other", "ben")]).await[0]
        .as_ref()
        .unwrap();

    // The first two for ana and ben's went out at once, well before the window ends.
    let early = server.wait_for(3, Duration::from_secs(2)).await;
    assert!(started.elapsed() < window, "{:?}", started.elapsed());
    assert_eq!(early.len(), 3);
    assert!(
        early
            .iter()
            .all(|m| m.header("X-Slawatch-Alert").as_deref() == Some("warning"))
    );

    // The other three: one digest to ana at the end of the window, listing all three.
    for w in waiting {
        let r = w.await.unwrap();
        assert!(r[0].is_ok(), "{r:?}");
    }
    assert!(started.elapsed() >= window, "{:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = server.messages();
    assert_eq!(all.len(), 4, "one digest for the held alerts");
    let digest = &all[3];
    assert_eq!(digest.header("X-Slawatch-Alert").as_deref(), Some("digest"));
    assert_eq!(
        digest.meta["rcpt_tos"],
        serde_json::json!(["ana@desk.example"])
    );
    let body = digest.body();
    for i in 2..5 {
        assert!(
            body.contains(&format!("storm-{i}")),
            "storm-{i} in:\n{body}"
        );
    }
    let to_ben = all
        .iter()
        .filter(|m| m.meta["rcpt_tos"] == serde_json::json!(["ben@desk.example"]))
        .count();
    assert_eq!(to_ben, 1);
}
