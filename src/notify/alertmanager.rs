//! Alertmanager notifier: pushes each alert to `POST {url}/api/v2/alerts` (API v2).
//!
//! Labels (the alert's identity in Alertmanager): `alertname` = `SlaWarning` or `SlaBreach`,
//! `severity` = `warning` or `page`, `channel`, `language`, `inquiry`; the monitor's own alerts
//! are `SlawatchSourceSilent`, `SlawatchLedgerNotWritable`, `SlawatchNotifierFailing` (labels
//! `monitor` = its id, `subject`), and `SlawatchWatchdog` fires always (see [`WATCHDOG`]). Annotations carry the
//! headline, customer and subject; `generatorURL` links to the inquiry. Alertmanager's own
//! routing (`group_by: [alertname, channel]`) batches many inquiries into one notification, so
//! no digest is built here.
//!
//! **Kept firing the way Prometheus does it.** Alertmanager resolves an alert whose `endsAt` has
//! passed. So every firing alert is pushed with `endsAt` = push time + four re-push intervals,
//! and a background task pushes every alert still active again each `resend_every` (default
//! 1 minute). While slawatch runs, a breach stays firing until the inquiry is answered (a
//! `resolved` alert then ends both stages with `endsAt` = answer time); if slawatch stops,
//! Alertmanager resolves its alerts about four intervals later, and the `SlawatchDown` rule
//! (see `dashboards/`) says why. After a restart the engine hands back the alerts still active
//! ([`super::Notifier::still_firing`]), so they keep firing across it.
//!
//! [`ActiveAlerts`] is the pure part: which (inquiry, alertname) pairs fire, and their payload at
//! an instant.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use slawatch_core::domain::InquiryId;
use tokio::sync::Notify;

use super::{Alert, AlertKind, Delivery, DeliveryError, MonitorProblem};
use crate::config::{ALERTMANAGER_VALID_FOR, AlertmanagerSettings};

/// Why the Alertmanager client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the Alertmanager HTTP client: {0}")]
pub struct AlertmanagerError(String);

/// The two alerts slawatch raises in Alertmanager about inquiries, as (alertname, severity).
const WARNING: (&str, &str) = ("SlaWarning", "warning");
const BREACH: (&str, &str) = ("SlaBreach", "page");

/// The monitor's own alerts (its blindness), one alertname per problem, all paging.
const SOURCE_SILENT: (&str, &str) = ("SlawatchSourceSilent", "page");
const LEDGER_NOT_WRITABLE: (&str, &str) = ("SlawatchLedgerNotWritable", "page");
const NOTIFIER_FAILING: (&str, &str) = ("SlawatchNotifierFailing", "page");

/// The dead-man's switch: always firing while slawatch runs and reaches Alertmanager. Its
/// absence is what pages (`docs/watchdog.md`, `dashboards/alertmanager/alertmanager.example.yml`):
/// a route sends it to a receiver that expects it every few minutes (a healthchecks-style
/// service, a dead man's snitch), which pages when it stops.
pub const WATCHDOG: (&str, &str) = ("SlawatchWatchdog", "none");

/// The stages an alert fires (or, for `resolved`, ends).
fn stages(alert: &Alert) -> &'static [(&'static str, &'static str)] {
    if let Some(m) = &alert.monitor {
        return match m.problem {
            MonitorProblem::SourceSilent => &[SOURCE_SILENT],
            MonitorProblem::LedgerNotWritable => &[LEDGER_NOT_WRITABLE],
            MonitorProblem::NotifierFailing => &[NOTIFIER_FAILING],
        };
    }
    match alert.kind {
        AlertKind::Warning => &[WARNING],
        // A re-notification re-sends the active breach (keeps it firing).
        AlertKind::Breach | AlertKind::Renotify => &[BREACH],
        // Both stages end: the labels are the identity, `endsAt` resolves them.
        AlertKind::Resolved => &[WARNING, BREACH],
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One API v2 alert item for `alert` at stage `(name, severity)`, without `endsAt`.
fn item(alert: &Alert, (name, severity): (&str, &str)) -> Value {
    if let Some(m) = &alert.monitor {
        return json!({
            "labels": {
                "alertname": name, "severity": severity,
                "monitor": alert.inquiry_id.as_str(), "subject": m.subject,
            },
            "annotations": {
                "summary": alert.headline(), "detail": m.detail, "advice": m.advice(),
            },
            "startsAt": rfc3339(alert.received_at),
            "generatorURL": alert.link,
        });
    }
    json!({
        "labels": {
            "alertname": name, "severity": severity,
            "channel": alert.channel.as_str(), "language": alert.language.as_str(),
            "inquiry": alert.inquiry_id.as_str(),
        },
        "annotations": {
            "summary": alert.headline(), "customer": alert.customer, "subject": alert.subject,
            "deadline": alert.deadline_at.to_rfc3339(),
        },
        "startsAt": rfc3339(alert.due_at),
        "generatorURL": alert.link,
    })
}

/// The watchdog item at `now`, valid until `now + valid_for`.
pub fn watchdog(now: DateTime<Utc>, valid_for: chrono::Duration, started: DateTime<Utc>) -> Value {
    json!({
        "labels": { "alertname": WATCHDOG.0, "severity": WATCHDOG.1 },
        "annotations": {
            "summary": "slawatch is running and reaches Alertmanager (always firing: page when it stops).",
        },
        "startsAt": rfc3339(started),
        "endsAt": rfc3339(now + valid_for),
    })
}

/// The alerts firing in Alertmanager because of slawatch: what the re-push sends.
#[derive(Debug, Default)]
pub struct ActiveAlerts {
    firing: BTreeMap<(InquiryId, &'static str), Value>,
}

impl ActiveAlerts {
    /// Takes delivered alerts into account: warnings and breaches start firing (a later push of
    /// the same stage keeps its first `startsAt`), `resolved` stops both stages.
    pub fn record(&mut self, alerts: &[Alert]) {
        for a in alerts {
            for &stage in stages(a) {
                let key = (a.inquiry_id.clone(), stage.0);
                if a.kind == AlertKind::Resolved {
                    self.firing.remove(&key);
                } else {
                    self.firing.entry(key).or_insert_with(|| item(a, stage));
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.firing.len()
    }

    pub fn is_empty(&self) -> bool {
        self.firing.is_empty()
    }

    /// The re-push body at `now`: every active alert, valid until `now + valid_for`.
    pub fn payload(&self, now: DateTime<Utc>, valid_for: chrono::Duration) -> Value {
        let ends = json!(rfc3339(now + valid_for));
        Value::Array(
            self.firing
                .values()
                .map(|v| {
                    let mut v = v.clone();
                    v["endsAt"] = ends.clone();
                    v
                })
                .collect(),
        )
    }
}

#[derive(Debug)]
pub struct AlertmanagerNotifier {
    client: reqwest::Client,
    endpoint: String,
    valid_for: chrono::Duration,
    active: Arc<Mutex<ActiveAlerts>>,
    /// Wakes the re-push task at once (after a restart's `still_firing`).
    wake: Arc<Notify>,
}

impl AlertmanagerNotifier {
    /// Builds the client and starts the re-push task (needs a tokio runtime); the task ends when
    /// the notifier is dropped.
    pub fn new(s: &AlertmanagerSettings) -> Result<Self, AlertmanagerError> {
        let n = AlertmanagerNotifier {
            client: crate::tls::http_client(s.timeout, &s.tls)
                .map_err(|e| AlertmanagerError(e.to_string()))?,
            endpoint: format!("{}/api/v2/alerts", s.url.trim_end_matches('/')),
            valid_for: chrono::Duration::from_std(s.resend_every * ALERTMANAGER_VALID_FOR)
                .unwrap_or(chrono::Duration::MAX),
            active: Arc::default(),
            wake: Arc::default(),
        };
        tokio::spawn(repush(
            n.client.clone(),
            n.endpoint.clone(),
            s.resend_every,
            n.valid_for,
            Arc::downgrade(&n.active),
            n.wake.clone(),
        ));
        Ok(n)
    }

    /// The API v2 body for a batch delivered at `now`: firing stages valid until
    /// `now + valid_for`, resolved ones ended at the answer. Copies of one alert for several
    /// on-call people are one alert to Alertmanager (its own routing decides who is paged):
    /// pushed once.
    pub fn payload(alerts: &[Alert], now: DateTime<Utc>, valid_for: chrono::Duration) -> Value {
        let mut items = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for a in alerts {
            if !seen.insert((a.inquiry_id.as_str(), a.kind.as_str(), a.due_at)) {
                continue;
            }
            for &stage in stages(a) {
                let mut v = item(a, stage);
                if a.kind == AlertKind::Resolved {
                    // startsAt must not be after endsAt: the inquiry's receipt is before both.
                    v["startsAt"] = json!(rfc3339(a.received_at));
                    v["endsAt"] = json!(rfc3339(a.due_at));
                } else {
                    v["endsAt"] = json!(rfc3339(now + valid_for));
                }
                items.push(v);
            }
        }
        Value::Array(items)
    }

    /// How many alerts are firing (kept alive by the re-push).
    pub fn active(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ActiveAlerts> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Pushes every active alert again each `every`, or at once when woken, with the always-firing
/// [`WATCHDOG`] (pushed at once at start-up, then with every re-push, even when nothing else
/// is active).
async fn repush(
    client: reqwest::Client,
    endpoint: String,
    every: Duration,
    valid_for: chrono::Duration,
    active: Weak<Mutex<ActiveAlerts>>,
    wake: Arc<Notify>,
) {
    let started = Utc::now();
    let mut failing = false;
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = wake.notified() => {}
            }
        }
        first = false;
        let Some(active) = active.upgrade() else {
            return;
        };
        let body = {
            let active = active.lock().unwrap_or_else(|e| e.into_inner());
            let now = Utc::now();
            let mut body = active.payload(now, valid_for);
            if let Value::Array(items) = &mut body {
                items.push(watchdog(now, valid_for, started));
            }
            body
        };
        drop(active);
        let result = post(&client, &endpoint, &body).await;
        match (&result, failing) {
            (Err(e), false) => tracing::warn!(
                error = %e,
                "Cannot re-push the active alerts and the watchdog to Alertmanager; retrying every {}.",
                humantime::format_duration(every)
            ),
            (Ok(()), true) => tracing::info!("Active alerts re-pushed to Alertmanager again."),
            _ => {}
        }
        failing = result.is_err();
    }
}

async fn post(client: &reqwest::Client, endpoint: &str, body: &Value) -> Result<(), String> {
    match client.post(endpoint).json(body).send().await {
        Err(e) => Err(format!(
            "Alertmanager request failed: {}",
            crate::tls::describe(&e.without_url(), "notify.alertmanager")
        )),
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            Err(format!(
                "Alertmanager answered {status}: {}",
                body.chars().take(200).collect::<String>()
            ))
        }
    }
}

impl super::Notifier for AlertmanagerNotifier {
    fn name(&self) -> &str {
        "alertmanager"
    }

    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        Box::pin(async move {
            let body = Self::payload(alerts, Utc::now(), self.valid_for);
            let result = post(&self.client, &self.endpoint, &body).await;
            if result.is_ok() {
                self.lock().record(alerts);
            }
            alerts
                .iter()
                .map(|_| {
                    result.clone().map_err(|message| DeliveryError {
                        notifier: "alertmanager".into(),
                        message,
                    })
                })
                .collect()
        })
    }

    fn still_firing(&self, alerts: &[Alert]) {
        self.lock().record(alerts);
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use slawatch_core::domain::{Channel, Language};

    fn alert(kind: AlertKind, id: &str, due_minute: u32) -> Alert {
        let at = |m| Utc.with_ymd_and_hms(2026, 3, 2, 9, m, 0).unwrap();
        Alert {
            kind,
            inquiry_id: InquiryId::from_display(id),
            channel: Channel::Email,
            language: Language::Ar,
            customer: "c@example.com".into(),
            subject: "s".into(),
            received_at: at(0),
            deadline_at: at(15),
            due_at: at(due_minute),
            link: format!("http://127.0.0.1:9750/api/v1/inquiries/{id}"),
            actions: None,
            recipient: None,
            monitor: None,
        }
    }

    fn names(v: &Value) -> Vec<(String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["labels"]["inquiry"].as_str().unwrap().to_string(),
                    i["labels"]["alertname"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn firing_alerts_are_valid_for_four_intervals_and_resolved_ones_end_at_the_answer() {
        let now = Utc.with_ymd_and_hms(2026, 3, 2, 9, 15, 3).unwrap();
        let body = AlertmanagerNotifier::payload(
            &[
                alert(AlertKind::Breach, "a", 15),
                alert(AlertKind::Resolved, "b", 12),
            ],
            now,
            chrono::Duration::seconds(240),
        );
        assert_eq!(body[0]["labels"]["alertname"], "SlaBreach");
        assert_eq!(body[0]["startsAt"], "2026-03-02T09:15:00Z");
        assert_eq!(body[0]["endsAt"], "2026-03-02T09:19:03Z");
        // Resolved ends both stages at the answer, started at the receipt.
        assert_eq!(body[1]["labels"]["alertname"], "SlaWarning");
        assert_eq!(body[2]["labels"]["alertname"], "SlaBreach");
        for resolved in [&body[1], &body[2]] {
            assert_eq!(resolved["startsAt"], "2026-03-02T09:00:00Z");
            assert_eq!(resolved["endsAt"], "2026-03-02T09:12:00Z");
        }
    }

    #[test]
    fn the_active_set_keeps_each_stage_until_its_inquiry_is_resolved() {
        let mut active = ActiveAlerts::default();
        active.record(&[
            alert(AlertKind::Warning, "a", 10),
            alert(AlertKind::Warning, "b", 10),
        ]);
        active.record(&[alert(AlertKind::Breach, "a", 15)]);
        // A re-notification of a breach already firing adds nothing and keeps its start.
        active.record(&[alert(AlertKind::Renotify, "a", 30)]);
        let now = Utc.with_ymd_and_hms(2026, 3, 2, 9, 31, 0).unwrap();
        let body = active.payload(now, chrono::Duration::seconds(60));
        assert_eq!(
            names(&body),
            [
                ("a".into(), "SlaBreach".into()),
                ("a".into(), "SlaWarning".into()),
                ("b".into(), "SlaWarning".into()),
            ]
        );
        assert_eq!(body[0]["startsAt"], "2026-03-02T09:15:00Z");
        assert!(
            body.as_array()
                .unwrap()
                .iter()
                .all(|i| i["endsAt"] == "2026-03-02T09:32:00Z")
        );
        active.record(&[alert(AlertKind::Resolved, "a", 40)]);
        assert_eq!(
            names(&active.payload(now, chrono::Duration::seconds(60))),
            [("b".into(), "SlaWarning".into())]
        );
    }

    #[test]
    fn copies_of_one_alert_for_several_people_are_pushed_once() {
        let now = chrono::Utc::now();
        let copy = |person: &str| Alert {
            kind: AlertKind::Breach,
            inquiry_id: InquiryId::from_display("email-1"),
            channel: Channel::Email,
            language: Language::En,
            customer: "x@customer.test".into(),
            subject: "s".into(),
            received_at: now,
            deadline_at: now,
            due_at: now,
            link: "http://127.0.0.1:9750/".into(),
            actions: None,
            recipient: Some(std::sync::Arc::new(crate::notify::oncall::Recipient {
                person: person.into(),
                email: format!("{person}@desk.example"),
                handle: None,
            })),
            monitor: None,
        };
        let body = AlertmanagerNotifier::payload(
            &[copy("ana"), copy("dana")],
            now,
            chrono::Duration::seconds(60),
        );
        assert_eq!(body.as_array().map(Vec::len), Some(1), "{body}");
    }
}
