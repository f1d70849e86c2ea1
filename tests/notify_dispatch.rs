//! Webhook and Alertmanager notifiers against real receivers, and the dispatcher over real
//! servers: retry while the SMTP server is down (order kept, nothing lost), wrong credentials
//! (`notifier_up` 0, the fallback takes over), health metrics.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use slawatch::config::{
    AlertmanagerSettings, Secret, SmtpSecurity, SmtpSettings, WebhookFormat, WebhookSettings,
};
use slawatch::notify::alertmanager::AlertmanagerNotifier;
use slawatch::notify::dispatch::{Dispatch, NotifierHealth};
use slawatch::notify::smtp::SmtpNotifier;
use slawatch::notify::webhook::WebhookNotifier;
use slawatch::notify::{Alert, AlertKind, Notifier};
use slawatch::telemetry::Metrics;
use slawatch_core::desk::DeskSettings;
use slawatch_core::domain::{Channel, InquiryId, Language};
use slawatch_core::tracker::policy::{Policy, PolicySet};
use slawatch_core::tracker::{Tracker, TrackerRules};
use support::smtp::{PASSWORD, SmtpServer, USER};
use support::webhook::Receiver;

fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn alert(kind: AlertKind, id: &str) -> Alert {
    let received: DateTime<Utc> = Utc::now() - chrono::Duration::minutes(15);
    Alert {
        kind,
        inquiry_id: InquiryId(id.into()),
        channel: Channel::Phone,
        language: Language::Es,
        customer: "+34600000000".into(),
        subject: "Llamada".into(),
        received_at: received,
        deadline_at: received + chrono::Duration::minutes(15),
        due_at: Utc::now(),
        link: format!("http://127.0.0.1:9750/api/v1/inquiries/{id}"),
        actions: None,
        recipient: None,
        monitor: None,
    }
}

fn webhook(url: &str, format: WebhookFormat) -> WebhookSettings {
    WebhookSettings {
        url: Secret::new(url),
        format,
        token: Some(Secret::new("hook-token")),
        timeout: Duration::from_secs(5),
        tls: Default::default(),
    }
}

fn smtp(server: &SmtpServer, password: &str) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".into(),
        port: server.starttls_port,
        security: SmtpSecurity::Starttls,
        tls: slawatch::tls::TlsTrust::with_ca_file(server.cert.clone()),
        username: Some(USER.into()),
        password: Some(Secret::new(password)),
        oauth2: None,
        from: "slawatch@desk.example".into(),
        to: vec!["oncall@desk.example".into()],
        timeout: Duration::from_secs(3),
    }
}

fn render(metrics: &Metrics) -> String {
    let desk = DeskSettings {
        support_addresses: vec!["support@desk.example".into()],
        internal_domains: vec![],
        ignore_senders: vec![],
        ignore_subjects: vec![],
        auto_ack_subjects: vec![],
        default_language: Language::En,
        time_zone: chrono_tz::UTC,
    };
    let tracker = Tracker::new(Arc::new(TrackerRules {
        desk,
        policies: PolicySet::single(Policy::default()),
    }));
    metrics.render(&tracker, Utc::now()).unwrap()
}

#[tokio::test]
async fn webhook_posts_generic_json_and_slack_text_with_the_token() {
    install_ring();
    let receiver = Receiver::start().await;
    let json = WebhookNotifier::new(&webhook(&receiver.url, WebhookFormat::Json), 10).unwrap();
    let r = json.deliver(&[alert(AlertKind::Breach, "phone-1")]).await;
    assert!(r[0].is_ok(), "{r:?}");
    let slack = WebhookNotifier::new(&webhook(&receiver.url, WebhookFormat::Slack), 10).unwrap();
    let r = slack.deliver(&[alert(AlertKind::Warning, "phone-2")]).await;
    assert!(r[0].is_ok(), "{r:?}");
    let bodies = receiver.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(bodies[0]["count"], 1);
    assert_eq!(bodies[0]["alerts"][0]["inquiry_id"], "phone-1");
    assert_eq!(bodies[0]["alerts"][0]["kind"], "breach");
    assert!(
        bodies[0]["alerts"][0]["headline"]
            .as_str()
            .unwrap()
            .starts_with("[SLA breached] phone/es")
    );
    let text = bodies[1]["text"].as_str().unwrap();
    assert!(text.contains("phone/es"), "{text}");
    assert!(text.contains("/api/v1/inquiries/phone-2|open>"), "{text}");
    assert_eq!(
        receiver.authorizations()[0].as_deref(),
        Some("Bearer hook-token")
    );
    // A refusal is a failure, without the URL in the message.
    receiver.answer(503);
    let r = json.deliver(&[alert(AlertKind::Breach, "phone-3")]).await;
    let err = r[0].as_ref().unwrap_err().to_string();
    assert!(err.contains("503"), "{err}");
    assert!(!err.contains("/hook"), "{err}");
}

#[tokio::test]
async fn slack_text_escapes_markup_from_the_customer() {
    install_ring();
    let receiver = Receiver::start().await;
    let slack = WebhookNotifier::new(&webhook(&receiver.url, WebhookFormat::Slack), 10).unwrap();
    let mut a = alert(AlertKind::Breach, "phone-9");
    a.customer = "Mallory <mallory@evil.example>".into();
    a.subject = "<!channel> refund & <https://evil.example/pay|your invoice>".into();
    let r = slack.deliver(&[a]).await;
    assert!(r[0].is_ok(), "{r:?}");
    let bodies = receiver.wait_for(1, Duration::from_secs(5)).await;
    let text = bodies[0]["text"].as_str().unwrap();
    assert!(!text.contains("<!channel>"), "{text}");
    assert!(!text.contains("<https://evil.example"), "{text}");
    assert!(
        text.contains(
            "&lt;!channel&gt; refund &amp; &lt;https://evil.example/pay|your invoice&gt;"
        ),
        "{text}"
    );
    assert!(text.contains("&lt;mallory@evil.example&gt;"), "{text}");
    // The one link left is ours.
    assert_eq!(text.matches('<').count(), 1, "{text}");
    assert!(
        text.contains("<http://127.0.0.1:9750/api/v1/inquiries/phone-9|open>"),
        "{text}"
    );
}

#[tokio::test]
async fn a_real_alertmanager_receives_the_push_and_routes_it() {
    install_ring();
    let receiver = Receiver::start().await;
    let am = support::alertmanager::Alertmanager::start(&receiver.url);
    let n = AlertmanagerNotifier::new(&AlertmanagerSettings {
        url: am.url.clone(),
        timeout: Duration::from_secs(5),
        tls: Default::default(),
        resend_every: Duration::from_secs(60),
    })
    .unwrap();
    let r = n
        .deliver(&[
            alert(AlertKind::Breach, "phone-10"),
            alert(AlertKind::Warning, "phone-11"),
        ])
        .await;
    assert!(r.iter().all(Result::is_ok), "{r:?}\n{}", am.log());
    let bodies = receiver.wait_for(2, Duration::from_secs(20)).await;
    let mut names: Vec<String> = bodies
        .iter()
        .map(|b| b["groupLabels"]["alertname"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["SlaBreach", "SlaWarning"]);
    let breach = bodies
        .iter()
        .find(|b| b["groupLabels"]["alertname"] == "SlaBreach")
        .unwrap();
    assert_eq!(breach["status"], "firing");
    let labels = &breach["alerts"][0]["labels"];
    assert_eq!(labels["severity"], "page");
    assert_eq!(labels["channel"], "phone");
    assert_eq!(labels["language"], "es");
    assert_eq!(labels["inquiry"], "phone-10");

    // Answered: the breach is resolved with endsAt.
    let r = n.deliver(&[alert(AlertKind::Resolved, "phone-10")]).await;
    assert!(r.iter().all(Result::is_ok), "{r:?}\n{}", am.log());
    let limit = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let resolved = receiver
            .bodies()
            .into_iter()
            .any(|b| b["status"] == "resolved" && b["groupLabels"]["alertname"] == "SlaBreach");
        if resolved {
            break;
        }
        assert!(
            std::time::Instant::now() < limit,
            "no resolved notification: {:?}",
            receiver.bodies()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Alertmanager's view of one inquiry's alert: `(state, endsAt)` if it holds it.
async fn alertmanager_alert(url: &str, alertname: &str, inquiry: &str) -> Option<(String, String)> {
    let alerts: Vec<serde_json::Value> = reqwest::get(format!("{url}/api/v2/alerts"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == alertname && a["labels"]["inquiry"] == inquiry)
        .map(|a| {
            (
                a["status"]["state"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                a["endsAt"].as_str().unwrap_or_default().to_string(),
            )
        })
}

#[tokio::test]
async fn alertmanager_keeps_a_breach_firing_by_re_pushing_it_until_resolved() {
    install_ring();
    let receiver = Receiver::start().await;
    let am = support::alertmanager::Alertmanager::start(&receiver.url);
    // Re-push every second: each push says the alert ends 4 s later.
    let settings = AlertmanagerSettings {
        url: am.url.clone(),
        timeout: Duration::from_secs(5),
        tls: Default::default(),
        resend_every: Duration::from_secs(1),
    };
    let n = AlertmanagerNotifier::new(&settings).unwrap();
    let r = n.deliver(&[alert(AlertKind::Breach, "phone-20")]).await;
    assert!(r.iter().all(Result::is_ok), "{r:?}\n{}", am.log());
    let (_, first_end) = alertmanager_alert(&am.url, "SlaBreach", "phone-20")
        .await
        .expect("the breach is in Alertmanager");
    // Three times the validity of one push: without the re-push it would have ended.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (state, end) = alertmanager_alert(&am.url, "SlaBreach", "phone-20")
        .await
        .expect("the breach is still in Alertmanager");
    assert_eq!(state, "active", "{}", am.log());
    assert!(end > first_end, "endsAt moved on: {first_end} → {end}");
    assert_eq!(n.active(), 1);
    assert!(
        !receiver.bodies().iter().any(|b| b["status"] == "resolved"),
        "no resolved notification while unanswered: {:?}",
        receiver.bodies()
    );

    // A restarted slawatch (a new notifier) told what is still firing keeps it alive, without
    // a new delivery.
    drop(n);
    let restarted = AlertmanagerNotifier::new(&settings).unwrap();
    restarted.still_firing(&[alert(AlertKind::Breach, "phone-20")]);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (state, _) = alertmanager_alert(&am.url, "SlaBreach", "phone-20")
        .await
        .unwrap();
    assert_eq!(state, "active", "{}", am.log());

    // Answered: resolved, and no longer re-pushed.
    let r = restarted
        .deliver(&[alert(AlertKind::Resolved, "phone-20")])
        .await;
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    assert_eq!(restarted.active(), 0);
    let limit = std::time::Instant::now() + Duration::from_secs(20);
    while !receiver
        .bodies()
        .iter()
        .any(|b| b["status"] == "resolved" && b["groupLabels"]["alertname"] == "SlaBreach")
    {
        assert!(
            std::time::Instant::now() < limit,
            "no resolved notification"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn smtp_down_then_back_delivers_every_alert_in_order() {
    install_ring();
    let mut server = SmtpServer::start();
    let metrics = Arc::new(Metrics::new("test", &[]));
    let health = NotifierHealth::new(metrics.clone(), &["smtp"]).unwrap();
    let primary: Arc<dyn Notifier> =
        Arc::new(SmtpNotifier::new(&smtp(&server, PASSWORD), chrono_tz::UTC, 3).unwrap());
    let dispatch = Arc::new(Dispatch::new(
        vec![primary],
        None,
        Duration::from_secs(60),
        health,
    ));
    server.stop();
    // Five batches fall due one after the other while the server is down.
    let mut waiting = Vec::new();
    for i in 0..5 {
        let d = dispatch.clone();
        waiting.push(tokio::spawn(async move {
            d.deliver(&[alert(AlertKind::Breach, &format!("phone-{i}"))])
                .await
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(render(&metrics).contains("slawatch_notifier_up{notifier=\"smtp\"} 0"));
    server.resume();
    for w in waiting {
        let r = tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("delivered after the server came back")
            .unwrap();
        assert!(r[0].is_ok(), "{r:?}");
    }
    // The first batch alone (it was being retried), then the four that piled up behind it,
    // above the digest threshold of 3: one digest, in order.
    let got = server.messages();
    let text: String = got.iter().map(|m| m.body()).collect();
    let positions: Vec<usize> = (0..5)
        .map(|i| {
            text.find(&format!("slawatch ack phone-{i} "))
                .unwrap_or_else(|| panic!("phone-{i} lost: {text}"))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert!(got.len() <= 2, "{} mails", got.len());
    let shown = render(&metrics);
    assert!(
        shown.contains("slawatch_notifier_up{notifier=\"smtp\"} 1"),
        "{shown}"
    );
    assert!(
        shown
            .contains("slawatch_alerts_total{kind=\"breach\",notifier=\"smtp\",result=\"sent\"} 5"),
        "{shown}"
    );
    assert!(shown.contains("slawatch_alert_delivery_latency_seconds_count{notifier=\"smtp\"} 5"));
}

#[tokio::test]
async fn wrong_smtp_credentials_mark_it_down_and_the_fallback_delivers() {
    install_ring();
    let server = SmtpServer::start();
    let receiver = Receiver::start().await;
    let metrics = Arc::new(Metrics::new("test", &[]));
    let health = NotifierHealth::new(metrics.clone(), &["smtp", "webhook"]).unwrap();
    let primary: Arc<dyn Notifier> =
        Arc::new(SmtpNotifier::new(&smtp(&server, "wrong"), chrono_tz::UTC, 10).unwrap());
    let fallback: Arc<dyn Notifier> =
        Arc::new(WebhookNotifier::new(&webhook(&receiver.url, WebhookFormat::Json), 10).unwrap());
    let dispatch = Dispatch::new(
        vec![primary],
        Some(fallback),
        Duration::from_secs(2),
        health,
    );
    let r = dispatch
        .deliver(&[alert(AlertKind::Warning, "phone-20")])
        .await;
    assert!(r[0].is_ok(), "{r:?}");
    let bodies = receiver.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(bodies[0]["alerts"][0]["inquiry_id"], "phone-20");
    assert!(server.messages().is_empty());
    let shown = render(&metrics);
    assert!(
        shown.contains("slawatch_notifier_up{notifier=\"smtp\"} 0"),
        "{shown}"
    );
    assert!(
        shown.contains("slawatch_notifier_up{notifier=\"webhook\"} 1"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "slawatch_alerts_total{kind=\"warning\",notifier=\"smtp\",result=\"failed\"} 1"
        ),
        "{shown}"
    );
    assert!(
        shown.contains(
            "slawatch_alerts_total{kind=\"warning\",notifier=\"webhook\",result=\"sent\"} 1"
        ),
        "{shown}"
    );
}

#[tokio::test]
async fn a_failing_notifier_never_delays_another() {
    install_ring();
    let mut server = SmtpServer::start();
    let receiver = Receiver::start().await;
    let metrics = Arc::new(Metrics::new("test", &[]));
    let health = NotifierHealth::new(metrics.clone(), &["smtp", "webhook"]).unwrap();
    let smtp_n: Arc<dyn Notifier> =
        Arc::new(SmtpNotifier::new(&smtp(&server, PASSWORD), chrono_tz::UTC, 10).unwrap());
    let hook: Arc<dyn Notifier> =
        Arc::new(WebhookNotifier::new(&webhook(&receiver.url, WebhookFormat::Json), 10).unwrap());
    let dispatch = Arc::new(Dispatch::new(
        vec![smtp_n, hook],
        None,
        Duration::from_secs(60),
        health,
    ));
    server.stop();
    // SMTP is down and retried for a minute; the webhook copy of each alert goes at once, and
    // the alert counts as delivered as soon as it did.
    for i in 0..3 {
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            dispatch.deliver(&[alert(AlertKind::Breach, &format!("phone-{i}"))]),
        )
        .await
        .expect("answered while SMTP is still retrying");
        assert!(r[0].is_ok(), "{r:?}");
        let bodies = receiver.wait_for(i + 1, Duration::from_secs(1)).await;
        assert_eq!(bodies[i]["alerts"][0]["inquiry_id"], format!("phone-{i}"));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the webhook waited {:?} behind SMTP",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(server.messages().is_empty());
    // SMTP comes back: its copies follow, in order, none lost.
    server.resume();
    let limit = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text: String = server.messages().iter().map(|m| m.body()).collect();
        if (0..3).all(|i| text.contains(&format!("slawatch ack phone-{i} "))) {
            break;
        }
        assert!(
            std::time::Instant::now() < limit,
            "SMTP copies lost: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = render(&metrics);
    assert!(
        shown.contains(
            "slawatch_alerts_total{kind=\"breach\",notifier=\"webhook\",result=\"sent\"} 3"
        ) && shown
            .contains("slawatch_alerts_total{kind=\"breach\",notifier=\"smtp\",result=\"sent\"} 3"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_notifier_that_gives_up_signals_it_once_and_its_recovery_once() {
    use slawatch::notify::MonitorProblem;
    install_ring();
    let receiver = Receiver::start().await;
    let metrics = Arc::new(Metrics::new("test", &[]));
    let (signals, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let health = NotifierHealth::new(metrics.clone(), &["webhook"])
        .unwrap()
        .with_signals(signals);
    let hook: Arc<dyn Notifier> =
        Arc::new(WebhookNotifier::new(&webhook(&receiver.url, WebhookFormat::Json), 10).unwrap());
    let dispatch = Dispatch::new(vec![hook], None, Duration::from_secs(2), health);
    receiver.answer(503);
    for i in 0..2 {
        let r = dispatch
            .deliver(&[alert(AlertKind::Breach, &format!("phone-{i}"))])
            .await;
        let err = r[0].as_ref().unwrap_err().to_string();
        assert!(err.contains("503"), "{err}");
    }
    let signal = seen.try_recv().expect("a signal after giving up");
    assert_eq!(signal.problem, MonitorProblem::NotifierFailing);
    assert_eq!(signal.subject, "webhook");
    assert!(signal.failing);
    assert!(signal.detail.contains("503"), "{}", signal.detail);
    assert!(seen.try_recv().is_err(), "signalled once per episode");
    receiver.answer(200);
    let r = dispatch
        .deliver(&[alert(AlertKind::Breach, "phone-9")])
        .await;
    assert!(r[0].is_ok(), "{r:?}");
    let signal = seen.try_recv().expect("a signal once it delivers again");
    assert!(!signal.failing);
    assert!(seen.try_recv().is_err());
}

#[tokio::test]
async fn the_watchdog_fires_while_slawatch_pushes_and_resolves_when_it_stops() {
    install_ring();
    let sink = Receiver::start().await;
    let deadman = Receiver::start().await;
    let am =
        support::alertmanager::Alertmanager::start_with_watchdog(&sink.url, Some(&deadman.url));
    let n = AlertmanagerNotifier::new(&AlertmanagerSettings {
        url: am.url.clone(),
        timeout: Duration::from_secs(5),
        resend_every: Duration::from_secs(1),
        tls: Default::default(),
    })
    .unwrap();
    // Pushed at start-up, with nothing else firing, and routed to the dead-man's switch alone.
    let firing = deadman.wait_for(2, Duration::from_secs(20)).await;
    for b in &firing {
        assert_eq!(b["groupLabels"]["alertname"], "SlawatchWatchdog", "{b}");
        assert_eq!(b["status"], "firing", "{b}");
    }
    assert!(sink.bodies().is_empty(), "{:?}", sink.bodies());
    // slawatch stops pushing (its process died): Alertmanager resolves the watchdog once its
    // endsAt passes, and the dead-man's switch hears no more "firing".
    drop(n);
    let limit = std::time::Instant::now() + Duration::from_secs(30);
    while !deadman.bodies().iter().any(|b| b["status"] == "resolved") {
        assert!(
            std::time::Instant::now() < limit,
            "the watchdog was never resolved: {}",
            am.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = deadman.bodies().len();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        deadman.bodies()[after..]
            .iter()
            .all(|b| b["status"] != "firing"),
        "{:?}",
        &deadman.bodies()[after..]
    );
}
