//! Webhook notifier: one HTTP POST per batch of alerts, as generic JSON or as a Slack-compatible
//! `{"text": …}` payload (Slack, Mattermost, Rocket.Chat incoming webhooks).
//!
//! Generic JSON: `{"source": "slawatch", "digest": bool, "count": n, "alerts": [Alert…]}` where
//! each alert has `kind, inquiry_id, channel, language, customer, subject, received_at,
//! deadline_at, due_at, link, headline`. Any 2xx answer is a delivery. Error texts never carry
//! the URL: chat webhook URLs are credentials.

use std::fmt::Write as _;

use serde_json::json;

use super::{Alert, AlertKind, Delivery, DeliveryError};
use crate::config::{WebhookFormat, WebhookSettings};

/// Why the webhook client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct WebhookError(String);

pub struct WebhookNotifier {
    client: reqwest::Client,
    url: crate::config::Secret,
    format: WebhookFormat,
    token: Option<crate::config::Secret>,
    digest_over: usize,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl WebhookNotifier {
    pub fn new(s: &WebhookSettings, digest_over: usize) -> Result<Self, WebhookError> {
        Ok(WebhookNotifier {
            client: crate::tls::http_client(s.timeout, &s.tls)
                .map_err(|e| WebhookError(e.to_string()))?,
            url: s.url.clone(),
            format: s.format,
            token: s.token.clone(),
            digest_over: digest_over.max(1),
        })
    }

    /// The request body for a batch.
    pub fn payload(&self, alerts: &[Alert]) -> serde_json::Value {
        let digest = alerts.len() > self.digest_over;
        match self.format {
            WebhookFormat::Json => {
                let items: Vec<serde_json::Value> = alerts
                    .iter()
                    .map(|a| {
                        let mut v = serde_json::to_value(a).unwrap_or_default();
                        v["headline"] = json!(a.headline());
                        v
                    })
                    .collect();
                json!({"source": "slawatch", "digest": digest, "count": alerts.len(), "alerts": items})
            }
            WebhookFormat::Slack => {
                let mut text = String::new();
                if digest {
                    let _ = writeln!(
                        text,
                        "*SLA digest: {} alerts fell due together*",
                        alerts.len()
                    );
                }
                // Copies of one alert for several on-call people are one line naming them all
                // (by chat handle when known).
                let mut lines: Vec<(&Alert, Vec<&str>)> = Vec::new();
                for a in alerts {
                    let who = a
                        .recipient
                        .as_ref()
                        .map(|r| r.handle.as_deref().unwrap_or(&r.person));
                    let same = |b: &Alert| {
                        b.inquiry_id == a.inquiry_id && b.kind == a.kind && b.due_at == a.due_at
                    };
                    match lines.iter_mut().find(|(b, _)| same(b)) {
                        Some((_, names)) => names.extend(who),
                        None => lines.push((a, who.into_iter().collect())),
                    }
                }
                for (a, names) in lines {
                    // The headline carries the customer's name and subject: escaped, so a subject
                    // cannot mention `<!channel>` or hide a link behind other text.
                    let _ = write!(text, "{}", slack_escape(&a.headline()));
                    match (&a.actions, a.kind) {
                        // A channel is shared: its links ask who is acting.
                        (
                            Some(links),
                            AlertKind::Warning | AlertKind::Breach | AlertKind::Renotify,
                        ) => {
                            let _ = write!(
                                text,
                                " <{}|open> · <{}|I'm on it> · <{}|answered elsewhere>",
                                slack_escape(&links.shared.page),
                                slack_escape(&links.shared.take),
                                slack_escape(&links.shared.answered)
                            );
                        }
                        _ => {
                            let _ = write!(text, " <{}|open>", slack_escape(&a.link));
                        }
                    }
                    if !names.is_empty() {
                        let _ = write!(text, " → {}", names.join(", "));
                    }
                    text.push('\n');
                }
                json!({"text": text})
            }
        }
    }

    async fn post(&self, alerts: &[Alert]) -> Result<(), String> {
        let mut request = self
            .client
            .post(self.url.expose())
            .json(&self.payload(alerts));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| {
            format!(
                "webhook request failed: {}",
                crate::tls::describe(&e.without_url(), "notify.webhook")
            )
        })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("webhook answered {status}"))
        }
    }
}

/// Escapes the three characters Slack-compatible text treats as markup (`&`, `<`, `>`), as
/// their documentation asks: `<!channel>`, `<@U123>` and `<https://x|text>` then stay text.
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

impl super::Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        "webhook"
    }

    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        Box::pin(async move {
            let result = self.post(alerts).await;
            alerts
                .iter()
                .map(|_| {
                    result.clone().map_err(|message| DeliveryError {
                        notifier: "webhook".into(),
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
    use crate::config::Secret;
    use crate::notify::AlertKind;
    use crate::notify::oncall::Recipient;
    use slawatch_core::domain::{Channel, InquiryId, Language};

    #[test]
    fn a_slack_message_names_every_on_call_recipient_of_an_alert_on_one_line() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let n = WebhookNotifier::new(
            &WebhookSettings {
                url: Secret::new("http://127.0.0.1:9/hook"),
                format: WebhookFormat::Slack,
                token: None::<Secret>,
                timeout: std::time::Duration::from_secs(1),
                tls: Default::default(),
            },
            10,
        )
        .unwrap();
        let now = chrono::Utc::now();
        let copy = |person: &str, handle: Option<&str>| Alert {
            kind: AlertKind::Breach,
            inquiry_id: InquiryId("email-1".into()),
            channel: Channel::Email,
            language: Language::En,
            customer: "x@customer.test".into(),
            subject: "s".into(),
            received_at: now,
            deadline_at: now,
            due_at: now,
            link: "http://127.0.0.1:9750/i".into(),
            actions: None,
            recipient: Some(std::sync::Arc::new(Recipient {
                person: person.into(),
                email: format!("{person}@desk.example"),
                handle: handle.map(str::to_string),
            })),
            monitor: None,
        };
        let body = n.payload(&[copy("ana", Some("@ana")), copy("lead", None)]);
        let text = body["text"].as_str().unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.ends_with("|open> → @ana, lead\n"), "{text}");
    }

    #[test]
    fn slack_markup_in_a_subject_stays_text() {
        assert_eq!(
            slack_escape("<!channel> & <https://evil.example|your invoice>"),
            "&lt;!channel&gt; &amp; &lt;https://evil.example|your invoice&gt;"
        );
    }
}
