//! Alertmanager notifier: pushes each alert to `POST {url}/api/v2/alerts` (API v2).
//!
//! Labels (the alert's identity in Alertmanager): `alertname` = `SlaWarning` or `SlaBreach`,
//! `severity` = `warning` or `page`, `channel`, `language`, `inquiry`. Annotations carry the
//! headline, customer and subject; `generatorURL` links to the inquiry. Alertmanager's own
//! routing (`group_by: [alertname, channel]`) batches many inquiries into one notification, so
//! no digest is built here.
//!
//! Not done yet: re-sending active alerts every few minutes and resolving them with `endsAt`
//! when the inquiry is answered; until then Alertmanager resolves each alert after its
//! `resolve_timeout` (default 5 minutes).

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
        let items: Vec<serde_json::Value> = alerts
            .iter()
            .map(|a| {
                let (name, severity) = match a.kind {
                    AlertKind::Warning => ("SlaWarning", "warning"),
                    AlertKind::Breach => ("SlaBreach", "page"),
                };
                json!({
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
                })
            })
            .collect();
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
