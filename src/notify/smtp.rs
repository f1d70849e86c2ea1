//! SMTP notifier: alert mail through lettre, over implicit TLS, STARTTLS or (loopback only) plain.
//!
//! Each alert is one short mail whose subject is the alert's headline (readable on a phone lock
//! screen) and whose body has what the on-call person needs to act: received time in UTC and the
//! desk's time zone, age, deadline, channel, language, the link and the `slawatch ack` command.
//! When more alerts fall due together than `digest_over`, they go out as one digest listing all.
//!
//! An alert addressed to an on-call person ([`Alert::recipient`]) is mailed to that person alone,
//! so each person's delivery succeeds or fails (and is recorded) on its own; digests are formed
//! per person. Alerts without a recipient go to the fixed `to` list, as one mail.
//!
//! Every mail carries `Auto-Submitted: auto-generated` (RFC 3834; no auto-replies to it) and
//! `X-Slawatch-Alert` (the mail source excludes it as `own_alert` if it comes back into the
//! support mailbox). Mails about one inquiry thread together: each has a stable `Message-ID`
//! derived from the inquiry, stage and instant, and `In-Reply-To`/`References` name one thread
//! root per inquiry, so mail clients group the warning, breach and later mails.
//!
//! Each mail is one connection ([`connection`]: TCP, TLS with slawatch's own trust, lettre's SMTP
//! conversation), at most [`MAX_CONNECTIONS`] at once; the whole conversation is bounded by
//! `timeout`, so a server that accepts and then stalls fails the attempt instead of hanging it.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;

use super::{Alert, AlertKind, Delivery, DeliveryError};
use crate::config::{SmtpSecurity, SmtpSettings};

mod connection;

use connection::{Connector, Login};

/// Connections open at once: alerts due together (up to `digest_over`, 10) are sent side by
/// side; a mail server limits connections per client, so a few, not ten.
pub const MAX_CONNECTIONS: usize = 4;

/// Longest subject text taken from the customer's mail: the headline must fit a lock screen.
const SUBJECT_CHARS: usize = 80;

/// Why the SMTP notifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("invalid address {address}: {message}")]
    Address { address: String, message: String },
    #[error("plain SMTP to {host} refused: it does not resolve to loopback addresses only")]
    NotLoopback { host: String },
}

/// The loopback address `host` resolves to, when it resolves to loopback addresses only.
fn plain_loopback(host: &str) -> Option<String> {
    use std::net::ToSocketAddrs as _;
    if !crate::config::resolves_to_loopback(host) {
        return None;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip,
        Err(_) => (bare, 0).to_socket_addrs().ok()?.next()?.ip(),
    };
    Some(ip.to_string())
}

/// Sends alerts as mail.
pub struct SmtpNotifier {
    connector: Connector,
    login: Login,
    connections: tokio::sync::Semaphore,
    from: Mailbox,
    to: Vec<Mailbox>,
    timeout: Duration,
    time_zone: Tz,
    digest_over: usize,
    /// Right-hand side of generated Message-IDs (the sender's domain).
    domain: String,
}

impl std::fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpNotifier")
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

impl SmtpNotifier {
    /// Prepares the connection settings (TLS trust, login); connects only when an alert is sent.
    pub fn new(s: &SmtpSettings, time_zone: Tz, digest_over: usize) -> Result<Self, SmtpError> {
        let address = |a: &str| {
            a.parse::<Mailbox>().map_err(|e| SmtpError::Address {
                address: a.to_string(),
                message: e.to_string(),
            })
        };
        let from = address(&s.from)?;
        let to =
            s.to.iter()
                .map(|a| address(a))
                .collect::<Result<Vec<_>, _>>()?;
        // Plain SMTP crosses no network: the host is resolved now and every address must be
        // loopback; the connection then goes to that address, not to the name again.
        let dial = match s.security {
            SmtpSecurity::Plain => {
                plain_loopback(&s.host).ok_or_else(|| SmtpError::NotLoopback {
                    host: s.host.clone(),
                })?
            }
            SmtpSecurity::Tls | SmtpSecurity::Starttls => s.host.clone(),
        };
        let login = match (&s.username, &s.password, &s.oauth2) {
            (Some(user), _, Some(oauth2)) => Login::OAuth2 {
                user: user.clone(),
                tokens: crate::oauth2::TokenSource::new(oauth2.clone())?,
            },
            (Some(user), Some(password), None) => Login::Password(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            )),
            _ => Login::None,
        };
        let domain = from
            .email
            .domain()
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        Ok(SmtpNotifier {
            connector: Connector::new(s, dial)?,
            login,
            connections: tokio::sync::Semaphore::new(MAX_CONNECTIONS),
            from,
            to,
            timeout: s.timeout,
            time_zone,
            digest_over: digest_over.max(1),
            domain,
        })
    }

    async fn send(&self, message: Result<Message, String>) -> Result<(), DeliveryError> {
        let fail = |message: String| DeliveryError {
            notifier: "smtp".to_string(),
            message,
        };
        let message = message.map_err(fail)?;
        // Never closed, so acquiring only waits.
        let _slot = self.connections.acquire().await;
        let conversation = async {
            let mut conn = self.connector.connect(&self.login).await?;
            conn.send(message.envelope(), &message.formatted())
                .await
                .map_err(|e| describe(&e))?;
            let _ = conn.quit().await;
            Ok::<(), String>(())
        };
        match tokio::time::timeout(self.timeout, conversation).await {
            Ok(result) => result.map_err(fail),
            Err(_) => Err(fail(format!(
                "the SMTP server did not finish the conversation within {:?}",
                self.timeout
            ))),
        }
    }

    /// A plain-text mail that is not an alert (the ledger's daily head for auditors), to `to`;
    /// `id` becomes the left part of its `Message-ID`.
    pub async fn send_text(
        &self,
        to: &[String],
        subject: &str,
        body: &str,
        id: &str,
    ) -> Result<(), DeliveryError> {
        let message = to
            .iter()
            .map(|a| {
                a.parse::<Mailbox>()
                    .map_err(|e| format!("invalid address {a}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|to| {
                self.base(subject, format!("<{id}@{}>", self.domain), to)
                    .body(body.to_string())
                    .map_err(|e| e.to_string())
            });
        self.send(message).await
    }

    /// The addresses an alert goes to: its on-call recipient, else the fixed `to` list.
    fn addresses(&self, alert: &Alert) -> Result<Vec<Mailbox>, String> {
        match &alert.recipient {
            Some(r) => r
                .email
                .parse::<Mailbox>()
                .map(|m| vec![m])
                .map_err(|e| format!("invalid address for {}: {e}", r.person)),
            None if self.to.is_empty() => {
                Err("nobody is on call for this alert and notify.smtp.to is empty".to_string())
            }
            None => Ok(self.to.clone()),
        }
    }

    fn base(
        &self,
        subject: &str,
        message_id: String,
        to: Vec<Mailbox>,
    ) -> lettre::message::MessageBuilder {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(message_id))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_string(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Auto-Response-Suppress"),
                "All".to_string(),
            ))
            .header(ContentType::TEXT_PLAIN);
        for to in to {
            b = b.to(to);
        }
        b
    }

    /// The mail for one alert.
    pub fn alert_message(&self, alert: &Alert) -> Result<Message, String> {
        let root = thread_root(alert, &self.domain);
        let to = self.addresses(alert)?;
        self.base(
            &clean(&alert.headline()),
            message_id(alert, &self.domain),
            to,
        )
        .in_reply_to(root.clone())
        .references(root)
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Slawatch-Alert"),
            alert.kind.as_str().to_string(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Slawatch-Inquiry"),
            alert.inquiry_id.to_string(),
        ))
        .body(alert_body(alert, self.time_zone))
        .map_err(|e| format!("cannot build the alert mail: {e}"))
    }

    /// One mail listing many alerts (all for the same recipient).
    pub fn digest_message(&self, alerts: &[Alert]) -> Result<Message, String> {
        let ids: Vec<&str> = alerts.iter().map(|a| a.inquiry_id.as_str()).collect();
        let person = alerts
            .first()
            .and_then(|a| a.recipient.as_ref())
            .map(|r| r.person.as_str())
            .unwrap_or_default();
        let id = format!(
            "<digest.{}.{}@{}>",
            alerts.first().map(|a| a.due_at.timestamp()).unwrap_or(0),
            short_hash(&format!("{person}:{}", ids.join(","))),
            self.domain
        );
        let to = match alerts.first() {
            Some(a) => self.addresses(a)?,
            None => self.to.clone(),
        };
        self.base(&digest_subject(alerts), id, to)
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Slawatch-Alert"),
                "digest".to_string(),
            ))
            .body(digest_body(alerts, self.time_zone))
            .map_err(|e| format!("cannot build the digest mail: {e}"))
    }
}

impl super::Notifier for SmtpNotifier {
    fn name(&self) -> &str {
        "smtp"
    }

    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        Box::pin(self.send_grouped(alerts, self.digest_over))
    }

    fn deliver_digest<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        // Held for a time-window digest: one mail per recipient as soon as there are two.
        Box::pin(self.send_grouped(alerts, 1))
    }
}

impl SmtpNotifier {
    /// Sends per recipient: a digest for a group larger than `digest_over`, else one mail each.
    async fn send_grouped(
        &self,
        alerts: &[Alert],
        digest_over: usize,
    ) -> Vec<Result<(), DeliveryError>> {
        // One group per recipient (the fixed list is one more): a digest is per person.
        let mut groups: Vec<(Option<&str>, Vec<usize>)> = Vec::new();
        for (i, a) in alerts.iter().enumerate() {
            let key = a.recipient.as_ref().map(|r| r.person.as_str());
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(i),
                None => groups.push((key, vec![i])),
            }
        }
        // Mails go out side by side over the pooled connections: the last of ten must not
        // wait for nine conversations before it.
        let mut sends = Vec::new();
        for (_, members) in &groups {
            if members.len() > digest_over {
                let batch: Vec<Alert> = members.iter().map(|&i| alerts[i].clone()).collect();
                sends.push((members.clone(), self.digest_message(&batch)));
            } else {
                sends.extend(
                    members
                        .iter()
                        .map(|&i| (vec![i], self.alert_message(&alerts[i]))),
                );
            }
        }
        let results = futures_util::future::join_all(
            sends
                .into_iter()
                .map(|(members, message)| async move { (members, self.send(message).await) }),
        )
        .await;
        let mut out: Vec<Result<(), DeliveryError>> = alerts.iter().map(|_| Ok(())).collect();
        for (members, result) in results {
            if let Err(e) = result {
                for i in members {
                    out[i] = Err(DeliveryError {
                        notifier: e.notifier.clone(),
                        message: e.message.clone(),
                    });
                }
            }
        }
        out
    }
}

/// The error and its causes on one line; lettre's errors never contain the password.
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut text = if e.is_permanent() {
        format!("the SMTP server refused permanently: {e}")
    } else if e.is_transient() {
        format!("the SMTP server refused for now: {e}")
    } else {
        format!("SMTP failed: {e}")
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            let _ = write!(text, ": {part}");
        }
        source = s.source();
    }
    if e.status().is_some_and(|c| c.to_string().starts_with("535")) {
        text.push_str(" (check notify.smtp.username and its password or token)");
    }
    text
}

/// Customer-supplied text without line breaks or control characters, bounded in length.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn short(s: &str) -> String {
    let s = clean(s);
    if s.chars().count() > SUBJECT_CHARS {
        let mut t: String = s.chars().take(SUBJECT_CHARS - 1).collect();
        t.push('…');
        t
    } else {
        s
    }
}

/// Stable per (inquiry, stage, instant, recipient): a resend after a crash carries the same id.
fn message_id(alert: &Alert, domain: &str) -> String {
    let person = alert
        .recipient
        .as_ref()
        .map(|r| format!(".{}", id_part(&r.person)))
        .unwrap_or_default();
    format!(
        "<{}.{}.{}{person}@{}>",
        id_part(alert.inquiry_id.as_str()),
        alert.kind.as_str(),
        alert.due_at.timestamp(),
        domain
    )
}

/// One per inquiry: every alert mail about it replies to this id, so clients thread them.
fn thread_root(alert: &Alert, domain: &str) -> String {
    format!(
        "<{}.slawatch@{}>",
        id_part(alert.inquiry_id.as_str()),
        domain
    )
}

/// 16 hex digits of SHA-256: distinct digests get distinct Message-IDs.
fn short_hash(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..8])
}

fn id_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn times(at: DateTime<Utc>, tz: Tz) -> String {
    let local = at.with_timezone(&tz);
    format!(
        "{} UTC ({} {})",
        at.format("%Y-%m-%d %H:%M:%S"),
        local.format("%Y-%m-%d %H:%M %Z"),
        tz.name()
    )
}

fn minutes(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    format!("{} min {:02} s", s / 60, s % 60)
}

/// The body of one alert mail.
pub fn alert_body(a: &Alert, tz: Tz) -> String {
    if let Some(m) = &a.monitor {
        return super::monitor_text(a, m, tz);
    }
    let mut b = String::new();
    let what = match a.kind {
        AlertKind::Warning => format!(
            "An inquiry has {} left before its first-response deadline.",
            minutes(a.deadline_at - a.due_at)
        ),
        AlertKind::Breach => "An inquiry passed its first-response deadline unanswered.".into(),
        AlertKind::Renotify => format!(
            "Still unanswered: the inquiry passed its first-response deadline {} ago.",
            minutes(a.due_at - a.deadline_at)
        ),
        AlertKind::Resolved => format!(
            "Resolved: the inquiry was answered at {}, {} after it was received. No action needed.",
            a.due_at.format("%H:%M:%S UTC"),
            minutes(a.due_at - a.received_at)
        ),
    };
    let _ = writeln!(b, "{what}\n");
    let _ = writeln!(b, "Customer:  {}", clean(&a.customer));
    let _ = writeln!(b, "Subject:   {}", clean(&a.subject));
    let _ = writeln!(b, "Channel:   {}", a.channel);
    let _ = writeln!(b, "Language:  {}", a.language);
    let _ = writeln!(b, "Received:  {}", times(a.received_at, tz));
    let _ = writeln!(
        b,
        "Age:       {} (at {})",
        minutes(a.due_at - a.received_at),
        a.due_at.format("%H:%M:%S UTC")
    );
    let _ = writeln!(b, "Deadline:  {}", times(a.deadline_at, tz));
    let _ = writeln!(b, "Inquiry:   {}", a.inquiry_id);
    match (&a.actions, a.kind) {
        (Some(links), AlertKind::Warning | AlertKind::Breach | AlertKind::Renotify) => {
            let _ = writeln!(b, "\nOpen it:   {}", links.mine.page);
            let _ = writeln!(
                b,
                "\nI'm on it (holds re-notifications and escalation):\n  {}",
                links.mine.take
            );
            let _ = writeln!(
                b,
                "\nAnswered elsewhere (phone, other):\n  {}",
                links.mine.answered
            );
        }
        _ => {
            let _ = writeln!(b, "\nOpen it:   {}", a.link);
        }
    }
    let _ = writeln!(
        b,
        "\nAnswered on another channel? Record it:\n  slawatch ack {} --by \"YOUR NAME\" --via phone",
        a.inquiry_id
    );
    let _ = writeln!(
        b,
        "\n-- \nslawatch: automatic alert (Auto-Submitted). Replies to this mail are not read."
    );
    b
}

fn digest_subject(alerts: &[Alert]) -> String {
    let breached = alerts
        .iter()
        .filter(|a| matches!(a.kind, AlertKind::Breach | AlertKind::Renotify))
        .count();
    let resolved = alerts
        .iter()
        .filter(|a| a.kind == AlertKind::Resolved)
        .count();
    let warned = alerts.len() - breached - resolved;
    let mut subject = format!(
        "[SLA digest] {} alerts: {breached} breached, {warned} about to breach",
        alerts.len()
    );
    if resolved > 0 {
        subject.push_str(&format!(", {resolved} answered"));
    }
    subject
}

/// The body of a digest: one line per alert, breaches first, oldest first.
pub fn digest_body(alerts: &[Alert], tz: Tz) -> String {
    let mut sorted: Vec<&Alert> = alerts.iter().collect();
    sorted.sort_by_key(|a| {
        let rank = match a.kind {
            AlertKind::Breach | AlertKind::Renotify => 0,
            AlertKind::Warning => 1,
            AlertKind::Resolved => 2,
        };
        (rank, a.deadline_at)
    });
    let mut b = String::new();
    let _ = writeln!(
        b,
        "{} alerts fell due together (listed in full below).\n",
        alerts.len()
    );
    for a in sorted {
        let status = match a.kind {
            AlertKind::Breach | AlertKind::Renotify => "BREACHED".to_string(),
            AlertKind::Resolved => "answered".to_string(),
            AlertKind::Warning => {
                format!("{} left", minutes(a.deadline_at - a.due_at))
            }
        };
        let _ = writeln!(
            b,
            "- [{status}] {}/{} {} — {}\n  received {}, deadline {}\n  {}  (slawatch ack {} --by NAME)",
            a.channel,
            a.language,
            short(&a.customer),
            short(&a.subject),
            times(a.received_at, tz),
            times(a.deadline_at, tz),
            // The signed page (with its actions) when there is one.
            a.actions.as_ref().map_or(&a.link, |l| &l.mine.page),
            a.inquiry_id,
        );
    }
    let _ = writeln!(
        b,
        "\n-- \nslawatch: automatic alert digest (Auto-Submitted). Replies to this mail are not read."
    );
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use slawatch_core::domain::{Channel, InquiryId, Language};

    #[test]
    fn an_alert_with_signed_links_offers_the_page_and_both_actions() {
        use crate::notify::{ActionUrls, AlertLinks};
        let urls = |to: &str| ActionUrls {
            page: format!("https://sla.example/inquiries/e1?to={to}&exp=1&sig=p"),
            take: format!("https://sla.example/inquiries/e1/take?to={to}&exp=1&sig=t"),
            answered: format!("https://sla.example/inquiries/e1/answered?to={to}&exp=1&sig=a"),
        };
        let mut a = alert(AlertKind::Breach, "e1");
        a.actions = Some(std::sync::Arc::new(AlertLinks {
            mine: urls("ana"),
            shared: urls(""),
        }));
        let body = alert_body(&a, chrono_tz::UTC);
        for line in [
            "Open it:   https://sla.example/inquiries/e1?to=ana&exp=1&sig=p",
            "I'm on it (holds re-notifications and escalation):\n  https://sla.example/inquiries/e1/take?to=ana",
            "Answered elsewhere (phone, other):\n  https://sla.example/inquiries/e1/answered?to=ana",
        ] {
            assert!(body.contains(line), "{line:?} missing:\n{body}");
        }
        assert!(digest_body(std::slice::from_ref(&a), chrono_tz::UTC).contains("e1?to=ana&exp=1"));
        // A resolved notice has nothing left to do: the plain page only.
        a.kind = AlertKind::Resolved;
        assert!(!alert_body(&a, chrono_tz::UTC).contains("I'm on it"));
    }

    fn alert(kind: AlertKind, id: &str) -> Alert {
        let received = DateTime::parse_from_rfc3339("2026-11-24T14:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Alert {
            kind,
            inquiry_id: InquiryId(id.into()),
            channel: Channel::Email,
            language: Language::Ar,
            customer: "Layla <layla@example.org>".into(),
            subject: "Invoice\r\nBcc: evil@example.com".into(),
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

    fn notifier() -> SmtpNotifier {
        SmtpNotifier::new(
            &SmtpSettings {
                host: "127.0.0.1".into(),
                port: 2525,
                security: SmtpSecurity::Plain,
                tls: Default::default(),
                username: None,
                password: None,
                oauth2: None,
                from: "SLA monitor <slawatch@desk.example>".into(),
                to: vec!["oncall@desk.example".into()],
                timeout: Duration::from_secs(5),
            },
            chrono_tz::Asia::Riyadh,
            10,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn alert_mail_has_threading_and_loop_headers_and_no_injected_header() {
        let n = notifier();
        let text = String::from_utf8(
            n.alert_message(&alert(AlertKind::Warning, "e1"))
                .unwrap()
                .formatted(),
        )
        .unwrap();
        assert!(
            text.contains("Auto-Submitted: auto-generated\r\n"),
            "{text}"
        );
        assert!(text.contains("X-Slawatch-Alert: warning\r\n"), "{text}");
        assert!(text.contains("Message-ID: <e1.warning."), "{text}");
        assert!(
            text.contains("In-Reply-To: <e1.slawatch@desk.example>"),
            "{text}"
        );
        assert!(
            text.contains("References: <e1.slawatch@desk.example>"),
            "{text}"
        );
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(
            text.contains("Subject: [SLA 5 min left] email/ar"),
            "{text}"
        );
        assert!(text.contains("17:05 +03 Asia/Riyadh"), "{text}");
        assert!(text.contains("slawatch ack e1 --by"), "{text}");
    }

    #[tokio::test]
    async fn breach_threads_onto_the_same_root_with_its_own_id() {
        let n = notifier();
        let w = n.alert_message(&alert(AlertKind::Warning, "e1")).unwrap();
        let b = n.alert_message(&alert(AlertKind::Breach, "e1")).unwrap();
        let w = String::from_utf8(w.formatted()).unwrap();
        let b = String::from_utf8(b.formatted()).unwrap();
        let id = |t: &str| {
            t.lines()
                .find(|l| l.starts_with("Message-ID:"))
                .unwrap()
                .to_string()
        };
        assert_ne!(id(&w), id(&b));
        assert!(b.contains("In-Reply-To: <e1.slawatch@desk.example>"));
    }

    #[tokio::test]
    async fn digest_lists_every_alert() {
        let n = notifier();
        let alerts: Vec<Alert> = (0..25)
            .map(|i| alert(AlertKind::Breach, &format!("e{i}")))
            .collect();
        let body = digest_body(&alerts, chrono_tz::UTC);
        for i in 0..25 {
            assert!(body.contains(&format!("slawatch ack e{i} --by")), "e{i}");
        }
        let m = String::from_utf8(n.digest_message(&alerts).unwrap().formatted()).unwrap();
        assert!(m.contains("[SLA digest] 25 alerts: 25 breached"), "{m}");
    }
}
