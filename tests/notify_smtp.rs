//! The SMTP notifier against a real SMTP server on loopback (aiosmtpd with STARTTLS, implicit
//! TLS and AUTH): what actually arrives, threading and loop headers, digests, wrong credentials,
//! a server that stalls, and our own alert coming back into the support mailbox.

mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use slawatch::config::{SmtpSecurity, SmtpSettings};
use slawatch::notify::smtp::SmtpNotifier;
use slawatch::notify::{Alert, AlertKind, Notifier};
use slawatch_core::desk::DeskSettings;
use slawatch_core::domain::{Channel, InquiryId, Language};
use slawatch_core::mail::{Envelope, parse_complete_message};
use slawatch_core::tracker::classify::classify_inbound;
use slawatch_core::tracker::event::ExclusionReason;
use support::smtp::{PASSWORD, SmtpServer, USER};

fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn settings(server: &SmtpServer, security: SmtpSecurity, password: &str) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".into(),
        port: match security {
            SmtpSecurity::Tls => server.smtps_port,
            _ => server.starttls_port,
        },
        security,
        tls: slawatch::tls::TlsTrust::with_ca_file(server.cert.clone()),
        username: Some(USER.into()),
        password: Some(slawatch::config::Secret::new(password)),
        oauth2: None,
        from: "SLA monitor <slawatch@desk.example>".into(),
        to: vec!["oncall@desk.example".into(), "lead@desk.example".into()],
        timeout: Duration::from_secs(5),
    }
}

fn alert(kind: AlertKind, id: &str) -> Alert {
    let received: DateTime<Utc> = Utc::now() - chrono::Duration::minutes(10);
    Alert {
        kind,
        inquiry_id: InquiryId(id.into()),
        channel: Channel::Email,
        language: Language::Ar,
        customer: "ليلى <layla@example.org>".into(),
        subject: "الفاتورة رقم 42".into(),
        received_at: received,
        deadline_at: received + chrono::Duration::minutes(15),
        due_at: received
            + chrono::Duration::minutes(if kind == AlertKind::Warning { 10 } else { 15 }),
        link: format!("http://127.0.0.1:9750/api/v1/inquiries/{id}"),
        actions: None,
        recipient: None,
        monitor: None,
    }
}

#[tokio::test]
async fn starttls_with_auth_delivers_threaded_alerts_that_come_back_excluded() {
    install_ring();
    let server = SmtpServer::start();
    let n = SmtpNotifier::new(
        &settings(&server, SmtpSecurity::Starttls, PASSWORD),
        chrono_tz::Asia::Riyadh,
        10,
    )
    .unwrap();
    let warning = alert(AlertKind::Warning, "email-1");
    let breach = alert(AlertKind::Breach, "email-1");
    let r = n.deliver(std::slice::from_ref(&warning)).await;
    assert!(r.iter().all(Result::is_ok), "{r:?}\n{}", server.log());
    let r = n.deliver(std::slice::from_ref(&breach)).await;
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    let got = server.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2);
    for m in &got {
        assert_eq!(m.meta["auth_user"], USER, "{:?}", m.meta);
        assert_eq!(m.meta["tls"], true);
        assert_eq!(
            m.meta["rcpt_tos"],
            serde_json::json!(["oncall@desk.example", "lead@desk.example"])
        );
        assert_eq!(
            m.header("Auto-Submitted").as_deref(),
            Some("auto-generated")
        );
        assert_eq!(
            m.header("In-Reply-To").as_deref(),
            Some("<email-1.slawatch@desk.example>")
        );
        assert!(m.body().contains("slawatch ack email-1 --by"), "{}", m.raw);
        assert!(m.body().contains("Asia/Riyadh"), "{}", m.raw);
        assert!(
            m.body()
                .contains("http://127.0.0.1:9750/api/v1/inquiries/email-1")
        );
    }
    assert_eq!(
        got[0].header("X-Slawatch-Alert").as_deref(),
        Some("warning")
    );
    assert_eq!(got[1].header("X-Slawatch-Alert").as_deref(), Some("breach"));
    assert_ne!(got[0].header("Message-ID"), got[1].header("Message-ID"));
    // The subject is RFC 2047 encoded (Arabic); decoded by the mail parser below.

    // The alert mail forwarded into the support mailbox is recognised as our own.
    let desk = DeskSettings {
        support_addresses: vec!["support@desk.example".into()],
        internal_domains: vec![],
        ignore_senders: vec![],
        ignore_subjects: vec![],
        auto_ack_subjects: vec![],
        default_language: Language::En,
        time_zone: chrono_tz::UTC,
    };
    let envelope = Envelope {
        source: "inbox".into(),
        folder: "INBOX".into(),
        delivered_at: Utc::now(),
        seen_at: Utc::now(),
    };
    let mail = parse_complete_message(got[0].raw.as_bytes(), &envelope);
    assert!(
        mail.subject
            .starts_with("[SLA 5 min left] email/ar — ليلى <layla@example.org>: الفاتورة"),
        "{}",
        mail.subject
    );
    let excluded = classify_inbound(&mail, &desk).expect("excluded");
    assert_eq!(excluded.reason, ExclusionReason::OwnAlert);
}

#[tokio::test]
async fn implicit_tls_with_auth_delivers() {
    install_ring();
    let server = SmtpServer::start();
    let n = SmtpNotifier::new(
        &settings(&server, SmtpSecurity::Tls, PASSWORD),
        chrono_tz::UTC,
        10,
    )
    .unwrap();
    let r = n.deliver(&[alert(AlertKind::Breach, "email-2")]).await;
    assert!(r.iter().all(Result::is_ok), "{r:?}\n{}", server.log());
    let got = server.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].meta["tls"], true);
    assert!(
        got[0]
            .header("Subject")
            .is_some_and(|s| s.contains("SLA breached") || s.starts_with("=?")),
        "{:?}",
        got[0].header("Subject")
    );
}

#[tokio::test]
async fn many_alerts_due_together_go_out_as_one_digest_listing_all() {
    install_ring();
    let server = SmtpServer::start();
    let n = SmtpNotifier::new(
        &settings(&server, SmtpSecurity::Starttls, PASSWORD),
        chrono_tz::UTC,
        10,
    )
    .unwrap();
    let alerts: Vec<Alert> = (0..500)
        .map(|i| alert(AlertKind::Breach, &format!("email-{i}")))
        .collect();
    let r = n.deliver(&alerts).await;
    assert_eq!(r.len(), 500);
    assert!(r.iter().all(Result::is_ok));
    let got = server.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.messages().len(), 1);
    let body = got[0].body();
    for i in 0..500 {
        assert!(
            body.contains(&format!("slawatch ack email-{i} --by")),
            "email-{i} missing"
        );
    }
    assert_eq!(got[0].header("X-Slawatch-Alert").as_deref(), Some("digest"));
}

#[tokio::test]
async fn wrong_credentials_fail_with_a_clear_error_and_no_mail() {
    install_ring();
    let server = SmtpServer::start();
    let n = SmtpNotifier::new(
        &settings(&server, SmtpSecurity::Starttls, "wrong-password"),
        chrono_tz::UTC,
        10,
    )
    .unwrap();
    let r = n.deliver(&[alert(AlertKind::Warning, "email-3")]).await;
    let err = r[0].as_ref().expect_err("must fail").to_string();
    assert!(err.contains("535"), "{err}");
    assert!(err.contains("notify.smtp.username"), "{err}");
    assert!(
        !err.contains("wrong-password"),
        "the password leaked: {err}"
    );
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn a_server_that_accepts_and_stalls_times_out() {
    install_ring();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts every connection and never says a word.
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let n = SmtpNotifier::new(
        &SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            security: SmtpSecurity::Plain,
            tls: Default::default(),
            username: None,
            password: None,
            oauth2: None,
            from: "slawatch@desk.example".into(),
            to: vec!["oncall@desk.example".into()],
            timeout: Duration::from_secs(2),
        },
        chrono_tz::UTC,
        10,
    )
    .unwrap();
    let started = Instant::now();
    let r = n.deliver(&[alert(AlertKind::Warning, "email-4")]).await;
    let took = started.elapsed();
    assert!(r[0].is_err(), "{r:?}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "took {took:?}"
    );
    held.abort();
}

#[tokio::test]
async fn a_server_that_was_down_receives_the_alert_once_it_is_back() {
    install_ring();
    let mut server = SmtpServer::start();
    let n = SmtpNotifier::new(
        &settings(&server, SmtpSecurity::Starttls, PASSWORD),
        chrono_tz::UTC,
        10,
    )
    .unwrap();
    server.stop();
    let r = n.deliver(&[alert(AlertKind::Warning, "email-5")]).await;
    assert!(r[0].is_err(), "delivered to a stopped server?");
    server.resume();
    let r = n.deliver(&[alert(AlertKind::Warning, "email-5")]).await;
    assert!(r[0].is_ok(), "{r:?}");
    assert_eq!(server.wait_for(1, Duration::from_secs(10)).await.len(), 1);
}
