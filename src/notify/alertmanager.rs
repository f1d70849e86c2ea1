//! Alertmanager notifier: pushes each alert to `POST {url}/api/v2/alerts` (API v2).
//!
//! Labels (the alert's identity in Alertmanager): `alertname` = `SlaWarning` or `SlaBreach`,
//! `severity` = `warning` or `page`, `channel`, `language`, `inquiry`. Annotations carry the
//! headline, customer and subject; `generatorURL` links to the inquiry. Alertmanager's own
//! routing (`group_by: [alertname, channel]`) batches many inquiries into one notification, so
//! no digest is built here.
//!
//! A `resolved` alert (the inquiry was answered) ends both stages' alerts with `endsAt`.
//!
//! A `renotify` alert re-sends the active `SlaBreach`. Between re-notifications (default every
//! 15 minutes) Alertmanager may resolve it by itself after its `resolve_timeout` (default 5
//! minutes): set `resolve_timeout` above `renotify_every`, or re-sends every 30 s–3 min are
//! still to be built.

use serde_json::json;

use super::{Alert, AlertKind, Delivery, DeliveryError};
use crate::config::AlertmanagerSettings;

/// Why the Alertmanager client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the Alertmanager HTTP client: {0}")]
pub struct AlertmanagerError(String);

#[derive(Debug)]
pub struct AlertmanagerNotifier {
    client: reqwest::Client,
    endpoint: String,
}

impl AlertmanagerNotifier {
    pub fn new(s: &AlertmanagerSettings) -> Result<Self, AlertmanagerError> {
        Ok(AlertmanagerNotifier {
            client: super::webhook::client(s.timeout).map_err(AlertmanagerError)?,
            endpoint: format!("{}/api/v2/alerts", s.url.trim_end_matches('/')),
        })
    }

    /// The API v2 body for a batch.
    pub fn payload(alerts: &[Alert]) -> serde_json::Value {
        let mut items: Vec<serde_json::Value> = Vec::new();
        // Copies of one alert for several on-call people are one alert to Alertmanager (its own
        // routing decides who is paged): pushed once.
        let mut seen = std::collections::BTreeSet::new();
        for a in alerts {
            if !seen.insert((a.inquiry_id.as_str(), a.kind.as_str(), a.due_at)) {
                continue;
            }
            let ends = a.due_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let fired: &[(&str, &str)] = match a.kind {
                AlertKind::Warning => &[("SlaWarning", "warning")],
                // A re-notification re-sends the active breach (keeps it firing).
                AlertKind::Breach | AlertKind::Renotify => &[("SlaBreach", "page")],
                // Both stages end: the labels are the identity, `endsAt` resolves them.
                AlertKind::Resolved => &[("SlaWarning", "warning"), ("SlaBreach", "page")],
            };
            for (name, severity) in fired {
                let mut item = json!({
                    "labels": {
                        "alertname": name, "severity": severity,
                        "channel": a.channel.as_str(), "language": a.language.as_str(),
                        "inquiry": a.inquiry_id.as_str(),
                    },
                    "annotations": {
                        "summary": a.headline(), "customer": a.customer, "subject": a.subject,
                        "deadline": a.deadline_at.to_rfc3339(),
                    },
                    "startsAt": a.due_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "generatorURL": a.link,
                });
                if a.kind == AlertKind::Resolved {
                    // startsAt must not be after endsAt: the inquiry's receipt is before both.
                    item["startsAt"] = json!(
                        a.received_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                    item["endsAt"] = json!(ends);
                }
                items.push(item);
            }
        }
        json!(items)
    }
}

impl super::Notifier for AlertmanagerNotifier {
    fn name(&self) -> &str {
        "alertmanager"
    }

    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        Box::pin(async move {
            let result = match self
                .client
                .post(&self.endpoint)
                .json(&Self::payload(alerts))
                .send()
                .await
            {
                Err(e) => Err(format!("Alertmanager request failed: {e}")),
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    Err(format!(
                        "Alertmanager answered {status}: {}",
                        body.chars().take(200).collect::<String>()
                    ))
                }
            };
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, InquiryId, Language};
    use crate::notify::oncall::Recipient;

    #[test]
    fn copies_of_one_alert_for_several_people_are_pushed_once() {
        let now = chrono::Utc::now();
        let copy = |person: &str| Alert {
            kind: AlertKind::Breach,
            inquiry_id: InquiryId("email-1".into()),
            channel: Channel::Email,
            language: Language::En,
            customer: "x@customer.test".into(),
            subject: "s".into(),
            received_at: now,
            deadline_at: now,
            due_at: now,
            link: "http://127.0.0.1:9750/".into(),
            recipient: Some(Recipient {
                person: person.into(),
                email: format!("{person}@desk.example"),
                handle: None,
            }),
        };
        let body = AlertmanagerNotifier::payload(&[copy("ana"), copy("dana")]);
        assert_eq!(body.as_array().map(Vec::len), Some(1), "{body}");
    }
}
