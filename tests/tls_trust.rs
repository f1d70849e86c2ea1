//! Private certificates against real servers: a Dovecot and an aiosmtpd whose certificates are
//! made by `openssl req -x509` (self-signed, marked as a CA) in the test, trusted through
//! `ca_file` holding that very certificate or through `tls_fingerprint`; a wrong pin or no trust
//! at all refused with an error naming the setting that fixes it; a pinned certificate's wrong
//! name or past dates logged as warnings. Also an HTTPS webhook pinned the same way.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use slawatch::config::{ImapSecurity, ImapSettings, Secret, SmtpSecurity, SmtpSettings};
use slawatch::notify::Notifier;
use slawatch::notify::smtp::SmtpNotifier;
use slawatch::sources::{EngineSink, SourceBatch, imap};
use slawatch::telemetry::SourceHealth;
use slawatch::tls::{Fingerprint, TlsTrust};
use support::dovecot::{Dovecot, PASSWORD, USER, openssl, openssl_fingerprint};
use support::smtp::{SmtpServer, warning_alert};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

/// Log lines written while the guard lives, on this thread (tests run on a current-thread
/// runtime, so the source's tasks log here too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let logs = Logs::default();
        let buf = logs.0.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || LogWriter(buf.clone()))
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    async fn wait_for(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.text().contains(needle) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line with {needle:?} in:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

struct NoHealth;

impl SourceHealth for NoHealth {
    fn set_up(&self, _: &str, _: bool) {}
    fn succeeded(&self, _: &str, _: chrono::DateTime<Utc>) {}
    fn error(&self, _: &str, _: &str) {}
}

/// An IMAP source `desk` committing into a list, until the token is cancelled.
fn run_source(settings: ImapSettings) -> (Arc<Mutex<Vec<SourceBatch>>>, CancellationToken) {
    let (tx, mut rx) = mpsc::channel::<slawatch::sources::Submission>(4);
    let batches = Arc::new(Mutex::new(Vec::new()));
    let recorded = batches.clone();
    tokio::spawn(async move {
        while let Some(sub) = rx.recv().await {
            recorded.lock().unwrap().push(sub.batch);
            let _ = sub.committed.send(Ok(()));
        }
    });
    let shutdown = CancellationToken::new();
    tokio::spawn(imap::run(
        "desk".into(),
        settings,
        Vec::new(),
        EngineSink::new(tx),
        Arc::new(NoHealth),
        shutdown.clone(),
    ));
    (batches, shutdown)
}

async fn wait_for_messages(batches: &Mutex<Vec<SourceBatch>>, n: usize, logs: &Logs) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen: usize = batches
            .lock()
            .unwrap()
            .iter()
            .map(|b| b.observations.len())
            .sum();
        if seen >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{seen} of {n} messages read; log:\n{}",
            logs.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn imaps(d: &Dovecot, host: &str, tls: TlsTrust) -> ImapSettings {
    ImapSettings {
        host: host.into(),
        port: d.imaps_port,
        security: ImapSecurity::Tls,
        allow_insecure: false,
        tls: TlsTrust {
            setting: "sources.desk".into(),
            ..tls
        },
        username: USER.into(),
        auth: slawatch::config::ImapAuth::Password(Secret::new(PASSWORD)),
        inbox_folders: vec!["INBOX".into()],
        sent_folders: vec!["Sent".into()],
        since: None,
        idle_timeout: Duration::from_secs(300),
        poll_interval: Duration::from_secs(60),
        body_prefix_bytes: 1024,
        timeout: Duration::from_secs(10),
    }
}

fn pin(cert: &Path) -> TlsTrust {
    TlsTrust {
        fingerprint: Some(
            Fingerprint::parse(&format!("sha256:{}", openssl_fingerprint(cert))).unwrap(),
        ),
        ..TlsTrust::default()
    }
}

/// A Dovecot with one message, serving `cert` made by `make` in its directory.
fn dovecot_with(make: impl FnOnce(&Dovecot) -> PathBuf) -> (Dovecot, PathBuf) {
    let mut d = Dovecot::configure();
    let cert = make(&d);
    d.launch();
    d.append(
        "INBOX",
        b"From: c@example.org\r\nTo: support@desk.example\r\nSubject: hi\r\nMessage-ID: <m1@example.org>\r\n\r\nHello\r\n",
        Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap(),
    );
    (d, cert)
}

#[tokio::test(flavor = "current_thread")]
async fn ca_file_holding_the_servers_own_x509_certificate_trusts_it_and_warns_about_its_name() {
    let (logs, _guard) = Logs::capture();
    // Named for another host than the one dialled: pinned, so only a warning.
    let (d, cert) = dovecot_with(|d| {
        d.use_self_signed_certificate(
            "/CN=mail.desk.example",
            &["subjectAltName=DNS:mail.desk.example"],
        )
    });
    let (batches, stop) = run_source(imaps(&d, "localhost", TlsTrust::with_ca_file(cert)));
    wait_for_messages(&batches, 1, &logs).await;
    stop.cancel();
    let text = logs.text();
    assert!(
        text.contains("is not valid for the name localhost; trusted anyway because it is pinned"),
        "{text}"
    );
    assert!(!text.contains("TLS failed"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_pinned_fingerprint_is_trusted_and_a_wrong_one_refused_naming_the_setting() {
    let (logs, _guard) = Logs::capture();
    let (d, cert) = dovecot_with(|d| {
        d.use_self_signed_certificate("/CN=localhost", &["subjectAltName=DNS:localhost"])
    });
    let (batches, stop) = run_source(imaps(&d, "localhost", pin(&cert)));
    wait_for_messages(&batches, 1, &logs).await;
    stop.cancel();
    assert!(!logs.text().contains("trusted anyway"), "{}", logs.text());

    // Another certificate's fingerprint (the harness's test CA): refused, nothing read.
    let (batches, stop) = run_source(imaps(&d, "localhost", pin(&d.cert_path())));
    logs.wait_for("is not the one pinned by sources.desk.tls_fingerprint")
        .await;
    stop.cancel();
    assert!(batches.lock().unwrap().is_empty());
    let text = logs.text();
    let actual = format!("sha256:{}", openssl_fingerprint(&cert));
    assert!(
        text.contains(&format!("certificate {actual} is not")),
        "{text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn an_untrusted_self_signed_certificate_is_refused_with_the_settings_that_fix_it() {
    let (logs, _guard) = Logs::capture();
    let (d, cert) = dovecot_with(|d| {
        d.use_self_signed_certificate("/CN=localhost", &["subjectAltName=DNS:localhost"])
    });
    let (batches, stop) = run_source(imaps(&d, "localhost", TlsTrust::default()));
    logs.wait_for("IMAP source failed").await;
    stop.cancel();
    assert!(batches.lock().unwrap().is_empty());
    let text = logs.text();
    let fingerprint = format!("sha256:{}", openssl_fingerprint(&cert));
    for part in [
        "sources.desk.ca_file",
        &format!("sources.desk.tls_fingerprint = \"{fingerprint}\""),
        "a CA certificate as its own",
    ] {
        assert!(text.contains(part), "{part:?} missing in:\n{text}");
    }
}

/// A self-signed certificate for `localhost` valid only in January 2020.
fn make_expired_certificate(dir: &Path) -> PathBuf {
    let run = |args: &[&str]| openssl(dir, args);
    std::fs::write(
        dir.join("expired-ca.cnf"),
        "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\nnew_certs_dir = .\n\
         serial = serial\ndefault_md = sha256\npolicy = any\ncopy_extensions = copy\n\
         [any]\ncommonName = supplied\n",
    )
    .unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "01\n").unwrap();
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost",
        "-keyout",
        "key.pem",
        "-out",
        "expired.csr",
    ]);
    run(&[
        "ca",
        "-batch",
        "-config",
        "expired-ca.cnf",
        "-selfsign",
        "-keyfile",
        "key.pem",
        "-in",
        "expired.csr",
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20200201000000Z",
        "-out",
        "cert.pem",
    ]);
    dir.join("cert.pem")
}

#[tokio::test(flavor = "current_thread")]
async fn an_expired_pinned_certificate_is_trusted_with_a_warning() {
    let (logs, _guard) = Logs::capture();
    let (d, cert) = dovecot_with(|d| {
        let cert = make_expired_certificate(d.dir());
        // Readable by Dovecot's processes when the tests run as root.
        d.own_files();
        cert
    });
    let (batches, stop) = run_source(imaps(&d, "localhost", pin(&cert)));
    wait_for_messages(&batches, 1, &logs).await;
    stop.cancel();
    let text = logs.text();
    assert!(
        text.contains("expired on 2020-02-01 00:00 UTC; trusted anyway because it is pinned"),
        "{text}"
    );
}

fn smtp_settings(server: &SmtpServer, security: SmtpSecurity, tls: TlsTrust) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".into(),
        port: match security {
            SmtpSecurity::Tls => server.smtps_port,
            _ => server.starttls_port,
        },
        security,
        tls: TlsTrust {
            setting: "notify.smtp".into(),
            ..tls
        },
        username: Some(support::smtp::USER.into()),
        password: Some(Secret::new(support::smtp::PASSWORD)),
        oauth2: None,
        from: "SLA monitor <slawatch@desk.example>".into(),
        to: vec!["oncall@desk.example".into()],
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn smtp_trusts_its_own_x509_certificate_over_starttls_and_implicit_tls_and_refuses_a_wrong_pin()
 {
    let (_logs, _guard) = Logs::capture();
    let mut server = SmtpServer::start();
    let cert =
        server.use_self_signed_certificate("/CN=127.0.0.1", &["subjectAltName=IP:127.0.0.1"]);
    for security in [SmtpSecurity::Starttls, SmtpSecurity::Tls] {
        let n = SmtpNotifier::new(
            &smtp_settings(&server, security, TlsTrust::with_ca_file(cert.clone())),
            chrono_tz::UTC,
            10,
        )
        .unwrap();
        let r = n.deliver(&[warning_alert("email-1")]).await;
        assert!(r[0].is_ok(), "{security:?}: {r:?}\n{}", server.log());
    }
    let got = server.wait_for(2, WAIT).await;
    assert!(got.iter().all(|m| m.meta["tls"] == true));

    let n = SmtpNotifier::new(
        &smtp_settings(&server, SmtpSecurity::Starttls, pin(&server.cert)),
        chrono_tz::UTC,
        10,
    )
    .unwrap();
    let err = n.deliver(&[warning_alert("email-2")]).await[0]
        .as_ref()
        .expect_err("a wrong pin must fail")
        .to_string();
    assert!(
        err.contains("is not the one pinned by notify.smtp.tls_fingerprint"),
        "{err}"
    );
    let n = SmtpNotifier::new(
        &smtp_settings(&server, SmtpSecurity::Starttls, TlsTrust::default()),
        chrono_tz::UTC,
        10,
    )
    .unwrap();
    let err = n.deliver(&[warning_alert("email-3")]).await[0]
        .as_ref()
        .expect_err("an untrusted certificate must fail")
        .to_string();
    assert!(err.contains("notify.smtp.ca_file"), "{err}");
    assert_eq!(server.messages().len(), 2);
}

/// An HTTPS server on 127.0.0.1 answering 200 to every request, counting them.
async fn https_server(cert: &Path, key: &Path) -> (String, Arc<Mutex<usize>>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_file(cert).unwrap()],
            PrivateKeyDer::from_pem_file(key).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hook", listener.local_addr().unwrap());
    let count = Arc::new(Mutex::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = tls.read(&mut buf).await {
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if n == 0 || text.contains("\r\n\r\n") && text.contains("\"alerts\"") {
                        break;
                    }
                }
                *counted.lock().unwrap() += 1;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, count)
}

#[tokio::test]
async fn an_https_webhook_with_a_self_signed_certificate_is_trusted_when_pinned() {
    use slawatch::config::{WebhookFormat, WebhookSettings};
    use slawatch::notify::webhook::WebhookNotifier;
    let (_logs, _guard) = Logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let cert = support::dovecot::make_self_signed_certificate(
        dir.path(),
        "/CN=127.0.0.1",
        &["subjectAltName=IP:127.0.0.1"],
    );
    let (url, count) = https_server(&cert, &dir.path().join("key.pem")).await;
    let webhook = |tls: TlsTrust| {
        WebhookNotifier::new(
            &WebhookSettings {
                url: Secret::new(url.clone()),
                format: WebhookFormat::Json,
                token: None,
                timeout: Duration::from_secs(5),
                tls: TlsTrust {
                    setting: "notify.webhook".into(),
                    ..tls
                },
            },
            10,
        )
        .unwrap()
    };
    for tls in [TlsTrust::with_ca_file(cert.clone()), pin(&cert)] {
        let r = webhook(tls).deliver(&[warning_alert("email-1")]).await;
        assert!(r[0].is_ok(), "{r:?}");
    }
    assert_eq!(*count.lock().unwrap(), 2);
    let r = webhook(TlsTrust::default())
        .deliver(&[warning_alert("email-2")])
        .await;
    let err = r[0].as_ref().expect_err("untrusted").to_string();
    assert!(
        err.contains("notify.webhook.ca_file") && err.contains("notify.webhook.tls_fingerprint"),
        "{err}"
    );
    assert_eq!(*count.lock().unwrap(), 2);
}

#[test]
fn check_config_refuses_trust_settings_that_can_never_work() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
    let text = r#"
[desk]
support_addresses = ["support@desk.example"]
[sources.support]
type = "imap"
host = "imap.desk.example"
username = "support@desk.example"
password_file = "pw"
ca_file = "empty.pem"
[sources.other]
type = "imap"
host = "imap.desk.example"
username = "support@desk.example"
password_file = "pw"
tls_fingerprint = "AB:CD"
[notify.smtp]
host = "smtp.desk.example"
from = "slawatch@desk.example"
to = ["oncall@desk.example"]
ca_file = "empty.pem"
tls_fingerprint = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#;
    std::fs::write(dir.path().join("pw"), "x\n").unwrap();
    let err = slawatch::config::load_text(text, dir.path(), vec![])
        .expect_err("must be refused")
        .to_string();
    for (key, why) in [
        ("sources.support.ca_file", "holds no PEM certificate"),
        ("sources.other.tls_fingerprint", "must start with sha256:"),
        (
            "notify.smtp.tls_fingerprint",
            "set either ca_file or tls_fingerprint",
        ),
        ("notify.smtp.ca_file", "holds no PEM certificate"),
    ] {
        assert!(
            err.lines().any(|l| l.contains(key) && l.contains(why)),
            "{key}: {why} missing in:\n{err}"
        );
    }
}
