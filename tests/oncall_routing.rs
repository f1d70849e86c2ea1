//! On-call routing end to end: the engine (controlled clock) raises alerts, the rotation from a
//! real configuration file decides who gets them, the SMTP notifier sends them to a real SMTP
//! server on loopback (aiosmtpd, STARTTLS + AUTH), and each test reads who actually received
//! what (the envelope recipients the server accepted) and what the ledger recorded.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use slawatch::config::{SmtpSecurity, SmtpSettings};
use slawatch::notify::oncall::OnCall;
use slawatch::notify::smtp::SmtpNotifier;
use slawatch::notify::{Alert, Delivery, DeliveryError, Notifier};
use slawatch::sources::SourceBatch;
use slawatch::store::Store;
use slawatch_core::domain::{Channel, InquiryId};
use slawatch_core::tracker::observation::{AckVia, Address, Mail, ManualAck, Observation};
use slawatch_core::tracker::{Event, TrackerRules};
use support::engine::{Running, Setup, stop};
use support::smtp::{PASSWORD, Received, SmtpServer, USER};

/// Weekly turns ana → ben, handing off Mondays 08:00 Madrid (07:00 UTC in winter), from Monday
/// 2026-11-23; carla covers Christmas; dana hears of every breach. Mail from `@vip.example`
/// falls under the `vip` policy, which routes to its own rotation (erin, always).
const CONFIG: &str = r#"
[desk]
support_addresses = ["support@desk.example"]
internal_domains = ["desk.example"]
time_zone = "Europe/Madrid"
[sources.s]
type = "maildir"
path = "maildir"

[[policy.rules]]
name = "vip"
senders = ["@vip.example"]

[notify.oncall]
rotation = "desk"
routes = { vip = "vip" }
[notify.oncall.people.ana]
email = "ana@desk.example"
[notify.oncall.people.ben]
email = "ben@desk.example"
[notify.oncall.people.carla]
email = "carla@desk.example"
[notify.oncall.people.dana]
email = "dana@desk.example"
[notify.oncall.people.erin]
email = "erin@desk.example"

[notify.oncall.rotations.desk]
time_zone = "Europe/Madrid"
escalation = ["dana"]
[[notify.oncall.rotations.desk.layers]]
people = ["ana", "ben"]
shift = "weekly"
handoff = "2026-11-23 08:00"
[[notify.oncall.rotations.desk.overrides]]
person = "carla"
from = "2026-12-24 20:00"
to = "2026-12-26 08:00"

[notify.oncall.rotations.vip]
time_zone = "America/New_York"
[[notify.oncall.rotations.vip.layers]]
slots = [{ when = "Mon 00:00-Mon 00:00", person = "erin" }]
"#;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The rules and the rotation, read from [`CONFIG`] the way the daemon reads them.
fn configuration() -> (Arc<TrackerRules>, OnCall) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slawatch.toml");
    std::fs::write(&path, CONFIG).unwrap();
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
            // With a rotation the fixed list is only for alerts nobody is on call for.
            to: vec![],
            timeout: Duration::from_secs(5),
        },
        chrono_tz::Europe::Madrid,
        10,
    )
    .unwrap()
}

async fn start(store: Store, notifier: Arc<dyn Notifier>, now: DateTime<Utc>) -> Running {
    let (rules, oncall) = configuration();
    let setup = Setup {
        oncall: Some(Arc::new(oncall)),
        ..Setup::at(now)
    };
    support::engine::start(store, rules, notifier, setup).await
}

/// A customer mail from `from`, received at `received`.
fn inquiry(id: &str, from: &str, received: DateTime<Utc>) -> SourceBatch {
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
                email: from.into(),
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

/// `(alert kind, envelope recipients)` of each mail, in arrival order.
fn received(mails: &[Received]) -> Vec<(String, Vec<String>)> {
    mails
        .iter()
        .map(|m| {
            let to: Vec<String> = m.meta["rcpt_tos"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            (m.header("X-Slawatch-Alert").unwrap_or_default(), to)
        })
        .collect()
}

/// The mails about one inquiry (its id is in `X-Slawatch-Inquiry`), sorted for comparison.
fn about(server: &SmtpServer, inquiry: &InquiryId) -> Vec<(String, Vec<String>)> {
    let mails: Vec<Received> = server
        .messages()
        .into_iter()
        .filter(|m| m.header("X-Slawatch-Inquiry").as_deref() == Some(inquiry.as_str()))
        .collect();
    let mut out = received(&mails);
    out.sort();
    out
}

fn mail(kind: &str, to: &str) -> (String, Vec<String>) {
    (kind.to_string(), vec![format!("{to}@desk.example")])
}

/// Waits until the ledger holds `n` `AlertDelivered` records (the mails arrive before them).
async fn deliveries_recorded(r: &Running, n: usize) -> Vec<(String, Vec<String>)> {
    let limit = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut found = Vec::new();
        r.shared
            .store
            .for_each_event(|entry| {
                if let Event::AlertDelivered {
                    kind, recipients, ..
                } = &entry.event
                {
                    found.push((kind.as_str().to_string(), recipients.clone()));
                }
                Ok::<(), slawatch::store::StoreError>(())
            })
            .await
            .unwrap();
        if found.len() >= n {
            found.sort();
            return found;
        }
        assert!(
            tokio::time::Instant::now() < limit,
            "expected {n} delivery records, found {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_warning_reaches_only_the_person_on_call_and_after_the_handoff_the_next_one() {
    install_ring();
    let server = SmtpServer::start();
    // Two seconds before Monday's 08:00 Madrid handoff from ana to ben.
    let now = utc("2026-11-30T06:59:58Z");
    let r = start(
        Store::open("sqlite::memory:").await.unwrap(),
        Arc::new(smtp(&server)),
        now,
    )
    .await;
    // Warned (10 minutes after receipt) at 06:59:49 UTC, ana's shift: fires at once.
    r.sink
        .submit(inquiry(
            "before",
            "x@customer.test",
            utc("2026-11-30T06:49:49Z"),
        ))
        .await
        .unwrap();
    // Warned at 07:00:01 UTC, three seconds from now: ben's shift.
    r.sink
        .submit(inquiry(
            "after",
            "y@customer.test",
            utc("2026-11-30T06:50:01Z"),
        ))
        .await
        .unwrap();
    server.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(about(&server, &id("before")), [mail("warning", "ana")]);
    assert_eq!(about(&server, &id("after")), [mail("warning", "ben")]);

    // Answered now (ben on call): the resolved mail goes to ana, who was alerted, not to ben.
    deliveries_recorded(&r, 2).await;
    r.engine
        .ack(ManualAck {
            inquiry_id: id("before"),
            by: "Ana".into(),
            via: AckVia::Phone,
            at: utc("2026-11-30T07:00:05Z"),
            note: None,
        })
        .await
        .unwrap();
    server.wait_for(3, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        about(&server, &id("before")),
        [mail("resolved", "ana"), mail("warning", "ana")]
    );
    assert_eq!(server.messages().len(), 3);
    stop(r).await;
}

#[tokio::test]
async fn an_override_date_reaches_the_override_person() {
    install_ring();
    let server = SmtpServer::start();
    // Christmas Day, 11:00 Madrid: carla covers instead of the scheduled ana/ben.
    let now = utc("2026-12-25T10:00:00Z");
    let r = start(
        Store::open("sqlite::memory:").await.unwrap(),
        Arc::new(smtp(&server)),
        now,
    )
    .await;
    r.sink
        .submit(inquiry(
            "xmas",
            "x@customer.test",
            utc("2026-12-25T09:50:00Z"),
        ))
        .await
        .unwrap();
    server.wait_for(1, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(about(&server, &id("xmas")), [mail("warning", "carla")]);
    assert_eq!(server.messages().len(), 1);
    stop(r).await;
}

#[tokio::test]
async fn a_breach_reaches_the_person_on_call_and_the_escalation_list_and_resolved_reaches_both() {
    install_ring();
    let server = SmtpServer::start();
    let now = utc("2026-11-24T12:00:00Z");
    let r = start(
        Store::open("sqlite::memory:").await.unwrap(),
        Arc::new(smtp(&server)),
        now,
    )
    .await;
    // Received 20 minutes ago: overdue, one breach (no warning after its deadline).
    r.sink
        .submit(inquiry(
            "late",
            "x@customer.test",
            utc("2026-11-24T11:40:00Z"),
        ))
        .await
        .unwrap();
    server.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(
        about(&server, &id("late")),
        [mail("breach", "ana"), mail("breach", "dana")]
    );
    // Each person's delivery is its own ledger record.
    assert_eq!(
        deliveries_recorded(&r, 2).await,
        [
            ("breach".to_string(), vec!["ana".to_string()]),
            ("breach".to_string(), vec!["dana".to_string()])
        ]
    );
    r.engine
        .ack(ManualAck {
            inquiry_id: id("late"),
            by: "Ana".into(),
            via: AckVia::Phone,
            at: now,
            note: None,
        })
        .await
        .unwrap();
    server.wait_for(4, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        about(&server, &id("late")),
        [
            mail("breach", "ana"),
            mail("breach", "dana"),
            mail("resolved", "ana"),
            mail("resolved", "dana")
        ]
    );
    assert_eq!(server.messages().len(), 4);
    stop(r).await;
}

#[tokio::test]
async fn an_inquiry_under_a_routed_policy_reaches_its_own_rotation() {
    install_ring();
    let server = SmtpServer::start();
    let now = utc("2026-11-24T12:00:00Z");
    let r = start(
        Store::open("sqlite::memory:").await.unwrap(),
        Arc::new(smtp(&server)),
        now,
    )
    .await;
    r.sink
        .submit(inquiry(
            "vip",
            "boss@vip.example",
            utc("2026-11-24T11:40:00Z"),
        ))
        .await
        .unwrap();
    r.sink
        .submit(inquiry(
            "plain",
            "x@customer.test",
            utc("2026-11-24T11:50:00Z"),
        ))
        .await
        .unwrap();
    server.wait_for(2, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The vip rotation has no escalation list: erin alone, even for a breach.
    assert_eq!(about(&server, &id("vip")), [mail("breach", "erin")]);
    assert_eq!(about(&server, &id("plain")), [mail("warning", "ana")]);
    assert_eq!(server.messages().len(), 2);
    stop(r).await;
}

/// Sends through the inner notifier, except to one person, whose copies fail (the daemon
/// stopping between two recipients' deliveries leaves the ledger in this state).
struct ExceptFor {
    inner: SmtpNotifier,
    person: &'static str,
}

impl Notifier for ExceptFor {
    fn name(&self) -> &str {
        "smtp"
    }
    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        Box::pin(async move {
            let skip = |a: &Alert| {
                a.recipient
                    .as_ref()
                    .is_some_and(|r| r.person == self.person)
            };
            let sent: Vec<Alert> = alerts.iter().filter(|a| !skip(a)).cloned().collect();
            let mut results = self.inner.deliver(&sent).await.into_iter();
            alerts
                .iter()
                .map(|a| {
                    if skip(a) {
                        Err(DeliveryError {
                            notifier: "smtp".into(),
                            message: "stopped before this recipient".into(),
                        })
                    } else {
                        results.next().unwrap()
                    }
                })
                .collect()
        })
    }
}

#[tokio::test]
async fn after_a_restart_between_two_recipients_only_the_missing_one_gets_the_alert_once() {
    install_ring();
    let server = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let now = utc("2026-11-24T12:00:00Z");

    // The breach reaches ana; dana's copy does not go out before the stop.
    let r = start(
        Store::open(&url).await.unwrap(),
        Arc::new(ExceptFor {
            inner: smtp(&server),
            person: "dana",
        }),
        now,
    )
    .await;
    r.sink
        .submit(inquiry(
            "split",
            "x@customer.test",
            utc("2026-11-24T11:40:00Z"),
        ))
        .await
        .unwrap();
    server.wait_for(1, Duration::from_secs(15)).await;
    deliveries_recorded(&r, 1).await;
    let store = r.shared.store.clone();
    stop(r).await;
    store.close().await;
    assert_eq!(about(&server, &id("split")), [mail("breach", "ana")]);

    // After the restart dana gets it, ana not again.
    let r = start(
        Store::open(&url).await.unwrap(),
        Arc::new(smtp(&server)),
        now + chrono::Duration::seconds(30),
    )
    .await;
    server.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(
        deliveries_recorded(&r, 2).await,
        [
            ("breach".to_string(), vec!["ana".to_string()]),
            ("breach".to_string(), vec!["dana".to_string()])
        ]
    );
    let store = r.shared.store.clone();
    stop(r).await;
    store.close().await;
    assert_eq!(
        about(&server, &id("split")),
        [mail("breach", "ana"), mail("breach", "dana")]
    );

    // A third start sends nothing: both are recorded.
    let r = start(
        Store::open(&url).await.unwrap(),
        Arc::new(smtp(&server)),
        now + chrono::Duration::seconds(60),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop(r).await;
    assert_eq!(server.messages().len(), 2, "sent again");
}

#[tokio::test]
async fn a_breach_raised_after_the_handoff_goes_to_whoever_is_on_call_when_it_is_sent() {
    install_ring();
    let server = SmtpServer::start();
    // Monday 08:05 Madrid: ben's week began at 08:00. The inquiry's deadline was 07:55 Madrid,
    // in ana's shift, but the daemon only reads it now (it was down).
    let now = utc("2026-11-30T07:05:00Z");
    let r = start(
        Store::open("sqlite::memory:").await.unwrap(),
        Arc::new(smtp(&server)),
        now,
    )
    .await;
    r.sink
        .submit(inquiry(
            "missed",
            "x@customer.test",
            utc("2026-11-30T06:40:00Z"),
        ))
        .await
        .unwrap();
    server.wait_for(2, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        about(&server, &id("missed")),
        [mail("breach", "ben"), mail("breach", "dana")]
    );
    assert_eq!(server.messages().len(), 2);
    stop(r).await;
}
