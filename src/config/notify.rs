//! `[notify]`: where alerts go. Parsed here, apart from the rest of the configuration, so the
//! alerting settings grow without touching the other sections.
//!
//! ```toml
//! [notify]
//! primary = ["smtp"]          # every alert goes through each of these
//! fallback = "webhook"         # takes over an alert a primary could not deliver
//! digest_window = "60s"       # per person, beyond digest_over in 60 s: one digest at its end
//! heartbeat_url_file = "/run/secrets/heartbeat-url"  # dead-man's switch (healthchecks-style)
//! heartbeat_every = "1m"       # GET (or heartbeat_method = "post") each interval while alive
//!
//! [notify.smtp]
//! host = "smtp.example.com"
//! security = "starttls"        # tls (465) | starttls (587) | plain (loopback only)
//! username = "slawatch@example.com"
//! password_file = "/run/secrets/smtp"
//! from = "SLA monitor <slawatch@example.com>"
//! to = ["oncall@example.com"]    # everyone, or (with [notify.oncall]) when nobody is on call
//!
//! [notify.webhook]
//! url_file = "/run/secrets/webhook-url"   # a secret: chat webhook URLs carry their credential
//! format = "json"              # json | slack
//!
//! [notify.alertmanager]
//! url = "http://127.0.0.1:9093"
//! resend_every = "1m"          # re-push active alerts (Prometheus does the same), 1 s–5 min
//! ```
//!
//! `[notify.oncall]` (people, rotations, routes) is parsed in `oncall.rs`.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::reader::{Problems, Table};
use super::settings::Secret;
use super::tls::with_effective;

/// Bound on one SMTP conversation or HTTP request: an alert that waits longer than this is
/// better retried (or handed to the fallback) than waited for, with 5 minutes of warning left.
pub const DEFAULT_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long "I'm on it" holds an inquiry: a call back and a note take minutes; half an hour
/// without an answer means the taker needs help, and the alerts resume.
pub const DEFAULT_TAKE_FOR: Duration = Duration::from_secs(30 * 60);

/// How long a notifier keeps retrying one batch before the fallback takes it: long enough to
/// ride out a mail server restart, short enough that a warning still arrives before its deadline
/// (a warning falls due 5 minutes before it).
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(120);

/// Above this many alerts falling due together, one digest is sent instead of one per alert.
pub const DEFAULT_DIGEST_OVER: u64 = 10;

#[derive(Debug, Clone, Default)]
pub struct NotifySettings {
    /// Names (`smtp`, `webhook`, `alertmanager`) that receive every alert; empty = log only.
    pub primary: Vec<String>,
    /// The notifier that takes over an alert a primary gave up on.
    pub fallback: Option<String>,
    pub retry_for: Duration,
    pub digest_over: usize,
    /// Per recipient, alerts beyond `digest_over` within this window are held for one digest
    /// at its end; zero (the default) sends every alert at once.
    pub digest_window: Duration,
    /// How long "I'm on it" holds an inquiry (`notify.take_for`): re-notifications go to the
    /// taker only and escalation waits; after it, both resume unless it was answered.
    pub take_for: Duration,
    pub smtp: Option<SmtpSettings>,
    pub webhook: Option<WebhookSettings>,
    pub alertmanager: Option<AlertmanagerSettings>,
    /// Who receives each alert; `None`: everyone in the notifiers' fixed destinations.
    pub oncall: Option<crate::notify::oncall::OnCall>,
    /// The dead-man's switch: requested every `heartbeat_every` while the daemon runs, so a
    /// healthchecks-style service pages when the requests stop (the daemon or its machine
    /// died). A secret: such URLs carry their check's key.
    pub heartbeat: Option<HeartbeatSettings>,
}

/// `notify.heartbeat_url` and its interval and method.
#[derive(Debug, Clone)]
pub struct HeartbeatSettings {
    pub url: Secret,
    pub every: Duration,
    pub method: HeartbeatMethod,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeartbeatMethod {
    Get,
    Post,
}

/// Default heartbeat interval: healthchecks.io's smallest period is one minute; with its grace
/// time a dead daemon is paged within a few minutes, well inside one 15-minute deadline.
pub const DEFAULT_HEARTBEAT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Implicit TLS (port 465).
    Tls,
    /// Plain connect, then STARTTLS, required (port 587).
    Starttls,
    /// No TLS: loopback only.
    Plain,
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// `ca_file` / `tls_fingerprint`: private CAs and pinned certificates.
    pub tls: crate::tls::TlsTrust,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// `auth = "xoauth2"`: AUTH XOAUTH2 as `username` with a token from `[notify.smtp.oauth2]`
    /// instead of the password.
    pub oauth2: Option<crate::oauth2::OAuth2Settings>,
    /// The `From:` mailbox, e.g. `SLA monitor <slawatch@example.com>`.
    pub from: String,
    /// Recipients of every alert; with an on-call rotation, of the alerts nobody is on call for
    /// (may then be empty).
    pub to: Vec<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// `{"alerts": [...], "digest": bool}`.
    Json,
    /// `{"text": "..."}`: Slack, Mattermost, Rocket.Chat incoming webhooks.
    Slack,
}

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// A secret: chat webhook URLs carry their credential (from `url_file` or the environment).
    pub url: Secret,
    pub format: WebhookFormat,
    /// Sent as `Authorization: Bearer …` when set.
    pub token: Option<Secret>,
    pub timeout: Duration,
    /// `ca_file` / `tls_fingerprint` for an https:// URL.
    pub tls: crate::tls::TlsTrust,
}

#[derive(Debug, Clone)]
pub struct AlertmanagerSettings {
    /// Base URL; alerts are posted to `{url}/api/v2/alerts`.
    pub url: String,
    pub timeout: Duration,
    /// `ca_file` / `tls_fingerprint` for an https:// URL.
    pub tls: crate::tls::TlsTrust,
    /// How often alerts still active are pushed again. Each push says they end
    /// [`ALERTMANAGER_VALID_FOR`] pushes later, so Alertmanager keeps them firing while slawatch
    /// runs and resolves them by itself if slawatch stops pushing.
    pub resend_every: Duration,
}

/// Default re-push interval of active alerts, as Prometheus' own `resend_delay` (1 minute).
pub const DEFAULT_ALERTMANAGER_RESEND: Duration = Duration::from_secs(60);

/// Accepted re-push intervals: below a second floods Alertmanager; above five minutes an alert
/// would outlive its warning lead time between pushes.
pub const ALERTMANAGER_RESEND_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(300);

/// An active alert's `endsAt` is this many re-push intervals after the push (Prometheus uses
/// four evaluation/resend intervals): three pushes may fail before Alertmanager resolves it.
pub const ALERTMANAGER_VALID_FOR: u32 = 4;

/// Known notifier names.
pub const NOTIFIERS: [&str; 3] = ["smtp", "webhook", "alertmanager"];

use super::oauth2::SecretFn;

/// Parses `[notify]`. `secret` reads a secret key the way the rest of the configuration does.
pub(super) fn notify(
    top: &mut Table,
    base: &Path,
    secret: &mut SecretFn<'_>,
    p: &mut Problems,
) -> NotifySettings {
    let mut t = top.table("notify", p);
    let primary = t.string_list("primary", p);
    let fallback = t.string("fallback", p);
    let retry_for = t.duration("retry_for", DEFAULT_RETRY_FOR, p);
    let digest_over = t.u64("digest_over", DEFAULT_DIGEST_OVER, p).max(1) as usize;
    let digest_window = t.duration("digest_window", Duration::ZERO, p);
    let take_for = t.duration("take_for", DEFAULT_TAKE_FOR, p);
    if take_for.is_zero() {
        p.push(t.path("take_for"), "must be longer than zero");
    }
    let oncall = super::oncall::oncall(&mut t, p);
    let heartbeat = secret(&mut t, "heartbeat_url", p).map(|url| {
        if !is_http_url(url.expose()) {
            p.push(
                t.path("heartbeat_url"),
                "must be an http:// or https:// URL (its value is a secret, not shown)",
            );
        }
        let every = t.duration("heartbeat_every", DEFAULT_HEARTBEAT_EVERY, p);
        if every < Duration::from_secs(1) {
            p.push(t.path("heartbeat_every"), "must be at least 1s");
        }
        let method = match t.string("heartbeat_method", p).as_deref() {
            None | Some("get") => HeartbeatMethod::Get,
            Some("post") => HeartbeatMethod::Post,
            Some(other) => {
                p.push(
                    t.path("heartbeat_method"),
                    format!("`{other}` is not one of get, post"),
                );
                HeartbeatMethod::Get
            }
        };
        HeartbeatSettings {
            url,
            every,
            method,
            timeout: DEFAULT_NOTIFY_TIMEOUT,
        }
    });
    let smtp = t.raw("smtp").is_some().then(|| {
        let mut s = t.table("smtp", p);
        let out = smtp(&mut s, base, secret, oncall.is_some(), p);
        s.finish(p);
        out
    });
    let webhook = t.raw("webhook").is_some().then(|| {
        let mut s = t.table("webhook", p);
        let out = webhook(&mut s, base, secret, p);
        s.finish(p);
        out
    });
    let alertmanager = t.raw("alertmanager").is_some().then(|| {
        let mut s = t.table("alertmanager", p);
        let url = s.required_string("url", p).unwrap_or_default();
        check_url(&s.path("url"), &url, p);
        let timeout = s.duration("timeout", DEFAULT_NOTIFY_TIMEOUT, p);
        let resend_every = s.duration("resend_every", DEFAULT_ALERTMANAGER_RESEND, p);
        let tls = super::tls::trust(&mut s, base, p);
        if !ALERTMANAGER_RESEND_RANGE.contains(&resend_every) {
            p.push(
                s.path("resend_every"),
                format!(
                    "must be between 1s and 5m (got {}); Prometheus re-sends every 1m",
                    humantime::format_duration(resend_every)
                ),
            );
        }
        s.finish(p);
        AlertmanagerSettings {
            url: url.trim_end_matches('/').to_string(),
            timeout,
            tls,
            resend_every,
        }
    });
    let configured = |name: &str| match name {
        "smtp" => smtp.as_ref().is_some_and(Option::is_some),
        "webhook" => webhook.is_some(),
        "alertmanager" => alertmanager.is_some(),
        _ => false,
    };
    for (i, name) in primary.iter().enumerate() {
        check_name(&format!("notify.primary[{i}]"), name, &configured, p);
    }
    // A desk that configured a notifier and named none would never be paged: alerts would be
    // written to the log only, which reaches nobody.
    let some_configured: Vec<&str> = NOTIFIERS.into_iter().filter(|n| configured(n)).collect();
    if primary.is_empty() && fallback.is_none() && !some_configured.is_empty() {
        p.push(
            "notify.primary",
            format!(
                "names no notifier, so alerts would reach nobody although [notify.{}] is configured: set primary = [\"{}\"]",
                some_configured.join("], [notify."),
                some_configured.join("\", \""),
            ),
        );
    }
    if let Some(name) = &fallback {
        check_name("notify.fallback", name, &configured, p);
        if primary.contains(name) {
            p.push(
                "notify.fallback",
                format!("`{name}` is also a primary notifier: a fallback must be another one"),
            );
        }
    }
    t.finish(p);
    NotifySettings {
        primary,
        fallback,
        retry_for,
        digest_over,
        digest_window,
        take_for,
        smtp: smtp.flatten(),
        webhook,
        alertmanager,
        oncall,
        heartbeat,
    }
}

fn check_name(key: &str, name: &str, configured: &dyn Fn(&str) -> bool, p: &mut Problems) {
    if !NOTIFIERS.contains(&name) {
        p.push(
            key,
            format!("`{name}` is not a notifier (smtp, webhook, alertmanager)"),
        );
    } else if !configured(name) {
        p.push(
            key,
            format!("`{name}` is named but [notify.{name}] is missing"),
        );
    }
}

fn check_url(key: &str, url: &str, p: &mut Problems) {
    if !(url.is_empty() || is_http_url(url)) {
        p.push(key, format!("`{url}` must be an http:// or https:// URL"));
    }
}

fn is_http_url(url: &str) -> bool {
    reqwest::Url::parse(url)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

fn smtp(
    s: &mut Table,
    base: &Path,
    secret: &mut SecretFn<'_>,
    routed: bool,
    p: &mut Problems,
) -> Option<SmtpSettings> {
    let host = s.required_string("host", p)?;
    let security = match s.string("security", p).as_deref() {
        None | Some("starttls") => SmtpSecurity::Starttls,
        Some("tls") => SmtpSecurity::Tls,
        Some("plain") => SmtpSecurity::Plain,
        Some(other) => {
            p.push(
                s.path("security"),
                format!("`{other}` is not one of tls, starttls, plain"),
            );
            SmtpSecurity::Starttls
        }
    };
    if security == SmtpSecurity::Plain && !super::load::resolves_to_loopback(&host) {
        p.push(
            s.path("security"),
            format!(
                "plain SMTP is allowed only to a host that resolves to loopback addresses only, not `{host}`: use tls or starttls"
            ),
        );
    }
    let default_port: u16 = match security {
        SmtpSecurity::Tls => 465,
        SmtpSecurity::Starttls => 587,
        SmtpSecurity::Plain => 25,
    };
    let port = s.u64("port", u64::from(default_port), p);
    let port = u16::try_from(port).unwrap_or_else(|_| {
        p.push(s.path("port"), format!("{port} is not a port"));
        default_port
    });
    let tls = super::tls::trust(s, base, p);
    let username = s.string("username", p);
    let mechanism = super::oauth2::mechanism(s, &[crate::oauth2::Mechanism::XOAuth2], p);
    let oauth2 =
        super::oauth2::oauth2(s, mechanism.is_some(), username.as_deref(), base, secret, p);
    let password = secret(s, "password", p);
    if mechanism.is_some() {
        if username.is_none() {
            p.push(s.path("username"), "is required with auth = \"xoauth2\"");
        }
        if password.is_some() {
            p.push(
                s.path("password"),
                "is not used with auth = \"xoauth2\": remove it",
            );
        }
    } else if username.is_some() != password.is_some() {
        p.push(
            s.path("password"),
            "username and password go together: set both or neither",
        );
    }
    let from = s.required_string("from", p).unwrap_or_default();
    if !from.is_empty() && from.parse::<lettre::message::Mailbox>().is_err() {
        p.push(
            s.path("from"),
            format!("`{from}` is not a mailbox like `SLA monitor <slawatch@example.com>`"),
        );
    }
    let to = s.string_list("to", p);
    if to.is_empty() && !routed {
        p.push(
            s.path("to"),
            "at least one recipient is required (or an on-call rotation under [notify.oncall])",
        );
    }
    for (i, a) in to.iter().enumerate() {
        if a.parse::<lettre::message::Mailbox>().is_err() {
            p.push(
                format!("{}[{i}]", s.path("to")),
                format!("`{a}` is not an email address"),
            );
        }
    }
    let timeout = s.duration("timeout", DEFAULT_NOTIFY_TIMEOUT, p);
    Some(SmtpSettings {
        host,
        port,
        security,
        tls,
        username,
        password,
        oauth2,
        from,
        to,
        timeout,
    })
}

fn webhook(
    s: &mut Table,
    base: &Path,
    secret: &mut SecretFn<'_>,
    p: &mut Problems,
) -> WebhookSettings {
    // Chat webhook URLs carry their credential in the path: a secret like the others.
    let url = secret(s, "url", p);
    if url.is_none() && !p.0.iter().any(|e| e.key == s.path("url")) {
        p.push(
            s.path("url"),
            "is required: set url_file or the environment variable SLAWATCH__NOTIFY__WEBHOOK__URL",
        );
    }
    let url = url.unwrap_or_else(|| Secret::new(""));
    if !url.expose().is_empty() && !is_http_url(url.expose()) {
        p.push(
            s.path("url"),
            "must be an http:// or https:// URL (its value is a secret, not shown)",
        );
    }
    let format = match s.string("format", p).as_deref() {
        None | Some("json") => WebhookFormat::Json,
        Some("slack") => WebhookFormat::Slack,
        Some(other) => {
            p.push(
                s.path("format"),
                format!("`{other}` is not one of json, slack"),
            );
            WebhookFormat::Json
        }
    };
    let token = secret(s, "token", p);
    let timeout = s.duration("timeout", DEFAULT_NOTIFY_TIMEOUT, p);
    WebhookSettings {
        url,
        format,
        token,
        timeout,
        tls: super::tls::trust(s, base, p),
    }
}

impl NotifySettings {
    /// Whether any notifier reaches a person: without one, alerts are only logged.
    pub fn pages_someone(&self) -> bool {
        !self.primary.is_empty() || self.fallback.is_some()
    }

    /// As `check-config` prints it, secrets redacted.
    pub fn effective(&self) -> Value {
        let d = |d: Duration| humantime::format_duration(d).to_string();
        json!({
            "primary": self.primary,
            "fallback": self.fallback,
            "retry_for": d(self.retry_for),
            "digest_over": self.digest_over,
            "digest_window": d(self.digest_window),
            "take_for": d(self.take_for),
            "smtp": self.smtp.as_ref().map(|s| with_effective(json!({
                "host": s.host, "port": s.port, "security": s.security,
                "username": s.username, "password": s.password.as_ref().map(|_| "<redacted>"),
                "auth": if s.oauth2.is_some() { "xoauth2" } else { "password" },
                "oauth2": s.oauth2.as_ref().map(super::oauth2::effective),
                "from": s.from, "to": s.to, "timeout": d(s.timeout),
            }), &s.tls)),
            "webhook": self.webhook.as_ref().map(|w| with_effective(json!({
                "url": "<redacted>", "format": w.format,
                "token": w.token.as_ref().map(|_| "<redacted>"), "timeout": d(w.timeout),
            }), &w.tls)),
            "alertmanager": self.alertmanager.as_ref().map(|a| with_effective(json!({
                "url": a.url, "timeout": d(a.timeout), "resend_every": d(a.resend_every),
            }), &a.tls)),
            "oncall": self.oncall.as_ref().map(super::oncall::effective),
            "heartbeat": self.heartbeat.as_ref().map(|h| json!({
                "url": "<redacted>", "every": d(h.every), "method": h.method,
            })),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{ConfigError, DEFAULT_ALERTMANAGER_RESEND, load_with_env};

    const BASE: &str = r#"
[desk]
support_addresses = ["support@example.com"]
[sources.mail]
type = "maildir"
path = "maildir"
"#;

    fn load(
        dir: &Path,
        extra: &str,
        env: Vec<(String, String)>,
    ) -> Result<super::super::Settings, ConfigError> {
        let path = dir.join("slawatch.toml");
        std::fs::write(&path, format!("{BASE}\n{extra}")).unwrap();
        load_with_env(&path, env)
    }

    #[test]
    fn smtp_and_webhook_are_read_with_secrets_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let s = load(
            dir.path(),
            r#"
[notify]
primary = ["smtp"]
fallback = "webhook"
[notify.smtp]
host = "smtp.example.com"
username = "alerts@example.com"
from = "SLA <alerts@example.com>"
to = ["oncall@example.com"]
[notify.webhook]
format = "slack"
"#,
            vec![
                ("SLAWATCH__NOTIFY__SMTP__PASSWORD".into(), "pw".into()),
                (
                    "SLAWATCH__NOTIFY__WEBHOOK__URL".into(),
                    "https://hooks.example.com/services/T0/B0/XYZ".into(),
                ),
            ],
        )
        .unwrap();
        let smtp = s.notify.smtp.as_ref().unwrap();
        assert_eq!(smtp.port, 587);
        assert_eq!(smtp.password.as_ref().unwrap().expose(), "pw");
        let shown = s.effective().to_string();
        assert!(!shown.contains("\"pw\""), "{shown}");
        assert!(
            !shown.contains("XYZ"),
            "the webhook credential leaked: {shown}"
        );
    }

    #[test]
    fn every_notifier_problem_names_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(
            dir.path(),
            r#"
[notify]
primary = ["smtp", "pager"]
fallback = "alertmanager"
[notify.smtp]
host = "smtp.example.com"
security = "plain"
password = "in-the-file"
from = "not an address"
[notify.webhook]
url = "https://hooks.example.com/in-the-file"
format = "xml"
"#,
            vec![],
        )
        .unwrap_err()
        .to_string();
        for key in [
            "notify.primary[1]",
            "notify.fallback",
            "notify.smtp.security",
            "notify.smtp.password",
            "notify.smtp.from",
            "notify.smtp.to",
            "notify.webhook.url",
            "notify.webhook.format",
        ] {
            assert!(err.contains(key), "{key} missing in:\n{err}");
        }
    }

    #[test]
    fn alertmanager_re_pushes_every_minute_unless_configured_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let s = load(
            dir.path(),
            "[notify]\nprimary = [\"alertmanager\"]\n[notify.alertmanager]\nurl = \"http://127.0.0.1:9093/\"\n",
            vec![],
        )
        .unwrap();
        let am = s.notify.alertmanager.as_ref().unwrap();
        assert_eq!(am.resend_every, DEFAULT_ALERTMANAGER_RESEND);
        assert_eq!(am.url, "http://127.0.0.1:9093");
        let err = load(
            dir.path(),
            "[notify]\nprimary = [\"alertmanager\"]\n[notify.alertmanager]\nurl = \"http://127.0.0.1:9093\"\nresend_every = \"10m\"\n",
            vec![],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("notify.alertmanager.resend_every"), "{err}");
    }
}
