//! Escalation by time, end to end: the engine (its clock anchored at a chosen instant) raises
//! the breach, the rotation (read from a real configuration file, `escalate_after = "3s"`)
//! sends it to the person on call only, and once nobody took or answered it for 3 s the SMTP
//! notifier sends it on to the escalation list through a real SMTP server (aiosmtpd), exactly
//! once: not again later, not again after a restart, and not while a take holds it.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use slawatch::config::{SmtpSecurity, SmtpSettings};
use slawatch::notify::oncall::OnCall;
use slawatch::notify::smtp::SmtpNotifier;
use slawatch::sources::SourceBatch;
use slawatch::store::Store;
use slawatch_core::domain::{Channel, InquiryId};
use slawatch_core::tracker::observation::{Address, Mail, Observation};
use slawatch_core::tracker::{Event, TrackerRules};
use support::engine::{Running, Setup, stop};
use support::smtp::{PASSWORD, SmtpServer, USER};

const CONFIG: &str = r#"
[desk]
support_addresses = ["support@desk.example"]
internal_domains = ["desk.example"]
time_zone = "Europe/Madrid"
[sources.s]
type = "maildir"
path = "maildir"
[notify.oncall.people.ana]
email = "ana@desk.example"
[notify.oncall.people.lead]
email = "lead@desk.example"
[notify.oncall.rotations.desk]
time_zone = "Europe/Madrid"
escalation = ["lead"]
escalate_after = "3s"
[[notify.oncall.rotations.desk.layers]]
slots = [{ when = "Mon 00:00-Mon 00:00", person = "ana" }]
"#;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn configuration() -> (Arc<TrackerRules>, OnCall) {
    configured(CONFIG)
}

fn configured(text: &str) -> (Arc<TrackerRules>, OnCall) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slawatch.toml");
    std::fs::write(&path, text).unwrap();
    let settings = slawatch::config::load_with_env(&path, vec![]).unwrap();
    let rules = Arc::new(TrackerRules {
        desk: settings.desk.clone(),
        policies: settings.policies.clone(),
    });
    (rules, settings.notify.oncall.clone().unwrap())
}

fn smtp(server: &SmtpServer) -> SmtpNotifier {
    SmtpNotifier::new(
        &SmtpSettings {
            host: "127.0.0.1".into(),
            port: server.starttls_port,
            security: SmtpSecurity::Starttls,
            tls: slawatch::tls::TlsTrust::with_ca_file(server.cert.clone()),
            username: Some(USER.into()),
            password: Some(slawatch::config::Secret::new(PASSWORD)),
            oauth2: None,
            from: "SLA monitor <slawatch@desk.example>".into(),
            to: vec![],
            timeout: Duration::from_secs(5),
        },
        chrono_tz::Europe::Madrid,
        10,
    )
    .unwrap()
}

async fn start(store: Store, server: &SmtpServer, now: DateTime<Utc>, take_for: u64) -> Running {
    start_with(configuration(), store, server, now, take_for).await
}

async fn start_with(
    (rules, oncall): (Arc<TrackerRules>, OnCall),
    store: Store,
    server: &SmtpServer,
    now: DateTime<Utc>,
    take_for: u64,
) -> Running {
    let setup = Setup {
        oncall: Some(Arc::new(oncall)),
        take_for: Duration::from_secs(take_for),
        ..Setup::at(now)
    };
    support::engine::start(store, rules, Arc::new(smtp(server)), setup).await
}

/// A customer mail received at `received` (overdue when it is 20 minutes old).
fn inquiry(id: &str, received: DateTime<Utc>) -> SourceBatch {
    SourceBatch {
        source: "s".into(),
        observations: vec![Observation::MessageReceived(Mail {
            source: "s".into(),
            folder: "INBOX".into(),
            message_id: format!("<{id}>"),
            digest: format!("digest-{id}"),
            delivered_at: received,
            seen_at: received,
            from: Some(Address {
                name: None,
                email: format!("{id}@customer.test"),
            }),
            to: vec![Address {
                name: None,
                email: "support@desk.example".into(),
            }],
            subject: format!("question {id}"),
            ..Mail::default()
        })],
        cursors: vec![],
        initial_sync_done: true,
    }
}

fn id(message: &str) -> InquiryId {
    InquiryId::derive(Channel::Email, &format!("<{message}>"))
}

/// How many mails `person` received about `inquiry`.
fn mails_to(server: &SmtpServer, inquiry: &InquiryId, person: &str) -> usize {
    server
        .messages()
        .iter()
        .filter(|m| {
            m.header("X-Slawatch-Inquiry").as_deref() == Some(inquiry.as_str())
                && m.meta["rcpt_tos"][0] == format!("{person}@desk.example")
        })
        .count()
}

async fn escalations(store: &Store) -> usize {
    let mut n = 0;
    store
        .for_each_event(|e| {
            if matches!(e.event, Event::InquiryEscalated { .. }) {
                n += 1;
            }
            Ok::<(), slawatch::store::StoreError>(())
        })
        .await
        .unwrap();
    n
}

async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let limit = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(tokio::time::Instant::now() < limit, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_untaken_breach_reaches_the_lead_once_after_escalate_after_even_across_a_restart() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let now = utc("2026-11-24T12:00:00Z");
    let r = start(Store::open(&url).await.unwrap(), &server, now, 1800).await;
    r.sink
        .submit(inquiry("late", utc("2026-11-24T11:40:00Z")))
        .await
        .unwrap();
    r.sink
        .submit(inquiry("later", utc("2026-11-24T11:40:00Z")))
        .await
        .unwrap();
    // The breach goes to ana only.
    server.wait_for(2, Duration::from_secs(15)).await;
    let started = std::time::Instant::now();
    assert_eq!(mails_to(&server, &id("late"), "ana"), 1);
    assert_eq!(
        mails_to(&server, &id("late"), "lead"),
        0,
        "escalated at once"
    );
    // After 3 s: the lead, once per inquiry.
    wait_until("the escalation of both", Duration::from_secs(15), || {
        mails_to(&server, &id("late"), "lead") == 1 && mails_to(&server, &id("later"), "lead") == 1
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "escalated after {:?}, before escalate_after",
        started.elapsed()
    );
    let lead_mail = server
        .messages()
        .into_iter()
        .find(|m| m.meta["rcpt_tos"][0] == "lead@desk.example")
        .unwrap();
    assert_eq!(
        lead_mail.header("X-Slawatch-Alert").as_deref(),
        Some("breach")
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(mails_to(&server, &id("late"), "lead"), 1, "escalated twice");
    assert_eq!(server.messages().len(), 4);
    stop(r).await;

    // Restarted: the escalations are in the ledger, delivered; nothing goes out again.
    let store = Store::open(&url).await.unwrap();
    assert_eq!(escalations(&store).await, 2);
    let r = start(store, &server, now + chrono::Duration::seconds(30), 1800).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.messages().len(), 4, "sent again after the restart");
    stop(r).await;
}

#[tokio::test]
async fn a_take_holds_the_escalation_until_take_for_runs_out_and_a_restart_rebuilds_it() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let now = utc("2026-11-24T12:00:00Z");
    // A take holds for 6 s.
    let r = start(Store::open(&url).await.unwrap(), &server, now, 6).await;
    r.sink
        .submit(inquiry("held", utc("2026-11-24T11:40:00Z")))
        .await
        .unwrap();
    server.wait_for(1, Duration::from_secs(15)).await;
    let started = std::time::Instant::now();
    let taken = r
        .engine
        .take(id("held"), "ana".into(), "api")
        .await
        .unwrap();
    assert_eq!(taken.taken.as_ref().map(|t| t.by.as_str()), Some("ana"));
    // escalate_after (3 s) passes while the take holds: nothing to the lead.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        mails_to(&server, &id("held"), "lead"),
        0,
        "escalated while taken"
    );
    // Stopped while held; restarted after the take ran out: the rebuilt escalation fires once.
    stop(r).await;
    let store = Store::open(&url).await.unwrap();
    assert_eq!(escalations(&store).await, 0);
    let r = start(store, &server, now + chrono::Duration::seconds(60), 6).await;
    wait_until(
        "the escalation after the take",
        Duration::from_secs(15),
        || mails_to(&server, &id("held"), "lead") == 1,
    )
    .await;
    assert!(started.elapsed() >= Duration::from_secs(4));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(mails_to(&server, &id("held"), "lead"), 1);
    assert_eq!(
        mails_to(&server, &id("held"), "ana"),
        1,
        "one breach to ana"
    );
    stop(r).await;
}

/// Today's routing (`escalate_after = 0`): the breach reaches both at once; while ana's take
/// holds, re-notifications go to her only; once it runs out unanswered they reach both again.
#[tokio::test]
async fn re_notifications_go_to_the_taker_only_until_take_for_runs_out() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = SmtpServer::start();
    let config = CONFIG.replace("escalate_after = \"3s\"\n", "")
        + "[policy]\ntarget = \"15m\"\nwarn = [\"10m\"]\nrenotify_every = \"2s\"\nrenotify_max = 50\n";
    let now = utc("2026-11-24T12:00:00Z");
    let r = start_with(
        configured(&config),
        Store::open("sqlite::memory:").await.unwrap(),
        &server,
        now,
        5,
    )
    .await;
    r.sink
        .submit(inquiry("taken", utc("2026-11-24T11:40:00Z")))
        .await
        .unwrap();
    server.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(
        mails_to(&server, &id("taken"), "lead"),
        1,
        "the breach, at once"
    );
    r.engine
        .take(id("taken"), "ana".into(), "api")
        .await
        .unwrap();
    let taken = std::time::Instant::now();
    let lead_then = mails_to(&server, &id("taken"), "lead");
    // While the take holds (5 s): ana is reminded, lead is not.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(mails_to(&server, &id("taken"), "ana") >= 2, "ana reminded");
    assert_eq!(
        mails_to(&server, &id("taken"), "lead"),
        lead_then,
        "lead reminded while ana's take held"
    );
    // Run out, unanswered: lead is reminded again.
    wait_until(
        "a reminder to lead after the take",
        Duration::from_secs(10),
        || mails_to(&server, &id("taken"), "lead") > lead_then,
    )
    .await;
    assert!(taken.elapsed() >= Duration::from_secs(5));
    stop(r).await;
}

/// The monitor's own alerts escalate the same way: a source silent past `escalate_after`
/// pages the lead once; one resolved before it never does.
#[tokio::test]
async fn a_monitor_alert_still_active_after_escalate_after_reaches_the_lead_once() {
    use slawatch::monitor::Signal;
    use slawatch_core::tracker::event::MonitorProblem;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = SmtpServer::start();
    let store = Store::open("sqlite::memory:").await.unwrap();
    let r = start(store, &server, utc("2026-11-24T12:00:00Z"), 1800).await;
    let signal = |subject: &str, failing: bool| Signal {
        problem: MonitorProblem::SourceSilent,
        subject: subject.into(),
        failing,
        detail: "no successful check for 10 minutes".into(),
    };
    let to = |person: &str, alert: &str| -> usize {
        server
            .messages()
            .iter()
            .filter(|m| {
                m.meta["rcpt_tos"][0] == format!("{person}@desk.example")
                    && m.header("X-Slawatch-Inquiry").as_deref() == Some(alert)
            })
            .count()
    };
    r.signals.send(signal("mail", true)).unwrap();
    r.signals.send(signal("calls", true)).unwrap();
    server.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(to("ana", "monitor-source-mail"), 1);
    assert_eq!(to("lead", "monitor-source-mail"), 0, "escalated at once");
    // `calls` recovers before escalate_after; `mail` does not.
    r.signals.send(signal("calls", false)).unwrap();
    wait_until("the lead paged about mail", Duration::from_secs(15), || {
        to("lead", "monitor-source-mail") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(to("lead", "monitor-source-mail"), 1, "paged twice");
    assert_eq!(
        to("lead", "monitor-source-calls"),
        0,
        "a resolved alert escalated"
    );
    stop(r).await;
}
