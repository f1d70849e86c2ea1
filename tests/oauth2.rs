//! OAuth2 logins against real servers: a Dovecot whose `oauth2` passdb checks every XOAUTH2 /
//! OAUTHBEARER token at an introspection endpoint, and an aiosmtpd checking AUTH XOAUTH2 the
//! same way. No Microsoft or Google server can run here: the token and introspection endpoints
//! are a stand-in authority on loopback (`support::oauth2`) answering the documented shapes,
//! with tokens that expire in seconds.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use slawatch::config::{ImapAuth, ImapSecurity, ImapSettings, Secret, SmtpSecurity, SmtpSettings};
use slawatch::notify::Notifier;
use slawatch::notify::smtp::SmtpNotifier;
use slawatch::oauth2::{Flow, Mechanism, OAuth2Settings};
use slawatch::sources::{EngineSink, SourceBatch, imap};
use slawatch::telemetry::SourceHealth;
use slawatch::tls::TlsTrust;
use support::dovecot::{Dovecot, USER};
use support::oauth2::{Authority, CLIENT_ID, CLIENT_SECRET, FIRST_REFRESH_TOKEN};
use support::smtp::{SmtpServer, warning_alert};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Health(Mutex<Vec<String>>);

impl SourceHealth for Health {
    fn set_up(&self, _: &str, up: bool) {
        self.0.lock().unwrap().push(format!("up={up}"));
    }
    fn succeeded(&self, _: &str, _: DateTime<Utc>) {}
    fn error(&self, _: &str, kind: &str) {
        self.0.lock().unwrap().push(format!("error={kind}"));
    }
}

struct Running {
    batches: Arc<Mutex<Vec<SourceBatch>>>,
    health: Arc<Health>,
    shutdown: CancellationToken,
}

impl Running {
    fn start(settings: ImapSettings) -> Running {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (tx, mut rx) = mpsc::channel::<slawatch::sources::Submission>(4);
        let batches = Arc::new(Mutex::new(Vec::new()));
        let recorded = batches.clone();
        tokio::spawn(async move {
            while let Some(sub) = rx.recv().await {
                recorded.lock().unwrap().push(sub.batch);
                let _ = sub.committed.send(Ok(()));
            }
        });
        let health = Arc::new(Health::default());
        let shutdown = CancellationToken::new();
        tokio::spawn(imap::run(
            "desk".into(),
            settings,
            Vec::new(),
            EngineSink::new(tx),
            health.clone(),
            shutdown.clone(),
        ));
        Running {
            batches,
            health,
            shutdown,
        }
    }

    fn messages(&self) -> usize {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.observations.len())
            .sum()
    }

    async fn wait_for_messages(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.messages() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} messages; health {:?}",
                self.messages(),
                self.health.0.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn health(&self) -> Vec<String> {
        self.health.0.lock().unwrap().clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn client_credentials(a: &Authority, secret: &str) -> Flow {
    Flow::ClientCredentials {
        token_url: a.token_url(),
        client_id: CLIENT_ID.into(),
        client_secret: Secret::new(secret),
        scope: "https://outlook.office365.com/.default".into(),
    }
}

fn oauth2(flow: Flow, setting: &str) -> OAuth2Settings {
    OAuth2Settings {
        flow,
        timeout: Duration::from_secs(5),
        setting: setting.into(),
    }
}

fn imap_settings(d: &Dovecot, mechanism: Mechanism, flow: Flow) -> ImapSettings {
    ImapSettings {
        host: "localhost".into(),
        port: d.imap_port,
        security: ImapSecurity::Starttls,
        allow_insecure: false,
        tls: TlsTrust::with_ca_file(d.cert_path()),
        username: USER.into(),
        auth: ImapAuth::OAuth2 {
            mechanism,
            oauth2: oauth2(flow, "sources.desk.oauth2"),
        },
        inbox_folders: vec!["INBOX".into()],
        sent_folders: vec!["Sent".into()],
        since: None,
        idle_timeout: Duration::from_secs(300),
        poll_interval: Duration::from_secs(60),
        body_prefix_bytes: 1024,
        timeout: Duration::from_secs(10),
    }
}

fn message(id: &str) -> Vec<u8> {
    format!(
        "From: c@example.org\r\nTo: support@desk.example\r\nSubject: {id}\r\n\
         Message-ID: <{id}@example.org>\r\n\r\nHello\r\n"
    )
    .into_bytes()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_keeps_reading_across_token_expiry_and_a_dovecot_restart() {
    // Tokens live 4 s: refreshed after 2 s, expired well within the test.
    let authority = Authority::start(4, USER);
    let mut d = Dovecot::start_with_oauth2(&authority.introspection_url());
    d.append("INBOX", &message("m1"), t0());
    let r = Running::start(imap_settings(
        &d,
        Mechanism::XOAuth2,
        client_credentials(&authority, CLIENT_SECRET),
    ));
    r.wait_for_messages(1).await;
    // Folder discovery and both folders' connections shared one cached token.
    assert_eq!(authority.grants(), ["client_credentials"]);

    // The first token expires: the sessions have logged in again with renewed ones by then,
    // and mail still arrives.
    tokio::time::sleep(Duration::from_secs(5)).await;
    d.append("INBOX", &message("m2"), t0());
    r.wait_for_messages(2).await;

    // After a restart the connections log in again, with a new token (the old one expired).
    // Dovecot's mail processes outlive its master: the kick ends the old sessions first.
    d.kick();
    d.restart();
    d.append("INBOX", &message("m3"), t0());
    r.wait_for_messages(3).await;
    let grants = authority.grants();
    assert!(
        grants.len() >= 2,
        "{grants:?} {:?}\n{}",
        r.health(),
        d.log()
    );
    assert!(grants.iter().all(|g| g == "client_credentials"));
    assert!(d.log().contains("method=XOAUTH2"), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_log_in_again_with_a_renewed_token_before_it_expires_without_a_failure() {
    // Servers such as Exchange Online end a session whose token expired: each folder's session
    // logs in again when its token is due for renewal (halfway through a 4 s token here).
    let authority = Authority::start(4, USER);
    let d = Dovecot::start_with_oauth2(&authority.introspection_url());
    d.append("INBOX", &message("m1"), t0());
    let r = Running::start(imap_settings(
        &d,
        Mechanism::XOAuth2,
        client_credentials(&authority, CLIENT_SECRET),
    ));
    r.wait_for_messages(1).await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    d.append("INBOX", &message("m2"), t0());
    r.wait_for_messages(2).await;
    let logins = d.log().matches("method=XOAUTH2").count();
    assert!(logins >= 6, "{logins} logins:\n{}", d.log());
    assert!(authority.grants().len() >= 3, "{:?}", authority.grants());
    let health = r.health();
    assert!(
        health.iter().all(|h| h == "up=true"),
        "a planned re-login counted as a failure: {health:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_refreshes_after_a_refused_token_and_saves_the_rotated_refresh_token() {
    let authority = Authority::start(60, USER);
    let d = Dovecot::start_with_oauth2(&authority.introspection_url());
    d.append("INBOX", &message("m1"), t0());
    let state = tempfile::tempdir().unwrap();
    let saved = state.path().join("sources-desk-oauth2.refresh-token");
    let flow = Flow::RefreshToken {
        token_url: authority.token_url(),
        client_id: CLIENT_ID.into(),
        client_secret: None,
        scope: Some("https://outlook.office365.com/IMAP.AccessAsUser.All offline_access".into()),
        refresh_token: Secret::new(FIRST_REFRESH_TOKEN),
        saved: saved.clone(),
    };
    let r = Running::start(imap_settings(&d, Mechanism::OAuthBearer, flow));
    r.wait_for_messages(1).await;
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), "refresh-2");
    assert_eq!(authority.grants(), ["refresh_token"]);

    // The server now refuses the cached (unexpired) token: the source asks for a new one.
    authority.revoke_all();
    d.kick();
    d.append("INBOX", &message("m2"), t0());
    r.wait_for_messages(2).await;
    assert_eq!(authority.grants(), ["refresh_token", "refresh_token"]);
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), "refresh-3");
    assert!(
        r.health().contains(&"error=auth".to_string()),
        "{:?}",
        r.health()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_cannot_be_had_marks_the_source_down_without_leaking_the_secret() {
    let authority = Authority::start(60, USER);
    let d = Dovecot::start_with_oauth2(&authority.introspection_url());
    let r = Running::start(imap_settings(
        &d,
        Mechanism::XOAuth2,
        client_credentials(&authority, "wrong-client-secret"),
    ));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !r.health().contains(&"error=auth".to_string()) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", r.health());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(r.health().contains(&"up=false".to_string()));
    assert_eq!(r.messages(), 0);
    assert!(authority.grants().is_empty());

    // What the log says: the endpoint's refusal and the setting to fix, never the secret.
    let tokens = slawatch::oauth2::TokenSource::new(oauth2(
        client_credentials(&authority, "wrong-client-secret"),
        "sources.desk.oauth2",
    ))
    .unwrap();
    let err = tokens
        .token()
        .await
        .err()
        .map(|e| e.to_string())
        .expect("refused");
    assert!(err.contains("invalid_client"), "{err}");
    assert!(err.contains("sources.desk.oauth2"), "{err}");
    assert!(!err.contains("wrong-client-secret"), "{err}");
}

#[tokio::test]
async fn smtp_xoauth2_with_a_google_service_account_delivers_and_recovers_from_a_refused_token() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let authority = Authority::start(60, "alerts@desk.example");
    let server = SmtpServer::start_with_oauth2(&authority.introspection_url());
    let key: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&authority.service_account_file).unwrap())
            .unwrap();
    let flow = Flow::ServiceAccount {
        token_url: authority.token_url(),
        client_email: key["client_email"].as_str().unwrap().into(),
        private_key: Secret::new(key["private_key"].as_str().unwrap()),
        subject: "alerts@desk.example".into(),
        scope: "https://mail.google.com/".into(),
    };
    let n = SmtpNotifier::new(
        &SmtpSettings {
            host: "127.0.0.1".into(),
            port: server.starttls_port,
            security: SmtpSecurity::Starttls,
            tls: TlsTrust::with_ca_file(server.cert.clone()),
            username: Some("alerts@desk.example".into()),
            password: None,
            oauth2: Some(oauth2(flow, "notify.smtp.oauth2")),
            from: "SLA monitor <slawatch@desk.example>".into(),
            to: vec!["oncall@desk.example".into()],
            timeout: Duration::from_secs(10),
        },
        chrono_tz::UTC,
        10,
    )
    .unwrap();
    let r = n.deliver(&[warning_alert("email-1")]).await;
    assert!(r[0].is_ok(), "{r:?}\n{}", server.log());
    let got = server.wait_for(1, WAIT).await;
    assert_eq!(got[0].meta["auth_user"], "alerts@desk.example");
    assert_eq!(
        authority.grants(),
        ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    );

    // Refused token: this delivery fails (the dispatcher retries it), the next gets a new one.
    authority.revoke_all();
    let r = n.deliver(&[warning_alert("email-2")]).await;
    let err = r[0]
        .as_ref()
        .expect_err("a revoked token is refused")
        .to_string();
    assert!(err.contains("535"), "{err}");
    let r = n.deliver(&[warning_alert("email-2")]).await;
    assert!(r[0].is_ok(), "{r:?}");
    server.wait_for(2, WAIT).await;
    assert_eq!(authority.grants().len(), 2);
}

#[test]
fn check_config_names_the_flow_and_what_it_will_request() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("client-secret"), "s3cr3t-value\n").unwrap();
    let text = r#"
[desk]
support_addresses = ["support@desk.example"]
[sources.support]
type = "imap"
host = "outlook.office365.com"
auth = "xoauth2"
username = "support@desk.example"
[sources.support.oauth2]
token_url = "https://login.microsoftonline.com/tenant/oauth2/v2.0/token"
client_id = "app-id"
client_secret_file = "client-secret"
scope = "https://outlook.office365.com/.default"
[sources.google]
type = "imap"
host = "imap.gmail.com"
auth = "oauthbearer"
username = "support@desk.example"
[sources.google.oauth2]
token_command = ["/usr/local/bin/get-token", "support"]
[notify]
primary = ["smtp"]
[notify.smtp]
host = "smtp.office365.com"
auth = "xoauth2"
username = "alerts@desk.example"
from = "slawatch@desk.example"
to = ["oncall@desk.example"]
[notify.smtp.oauth2]
token_url = "https://login.microsoftonline.com/tenant/oauth2/v2.0/token"
client_id = "app-id"
client_secret_file = "client-secret"
scope = "https://outlook.office365.com/.default"
"#;
    let s = slawatch::config::load_text(text, dir.path(), vec![]).unwrap();
    let shown = s.effective().to_string();
    assert!(!shown.contains("s3cr3t-value"), "{shown}");
    for part in [
        "\"flow\":\"client_credentials\"",
        "POST https://login.microsoftonline.com/tenant/oauth2/v2.0/token grant_type=client_credentials client_id=app-id scope=https://outlook.office365.com/.default",
        "\"flow\":\"token_command\"",
        "\"auth\":\"oauthbearer\"",
    ] {
        assert!(shown.contains(part), "{part} missing in {shown}");
    }

    let broken = text
        .replace("client_secret_file = \"client-secret\"\nscope", "scope")
        .replace("auth = \"oauthbearer\"", "auth = \"gssapi\"");
    let err = slawatch::config::load_text(&broken, dir.path(), vec![])
        .expect_err("refused")
        .to_string();
    for key in [
        "sources.support.oauth2.client_secret",
        "notify.smtp.oauth2.client_secret",
        "sources.google.auth",
    ] {
        assert!(err.contains(key), "{key} missing in:\n{err}");
    }
}
