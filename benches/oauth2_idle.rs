//! Detection latency of an IMAP source logged in with XOAUTH2 while its tokens expire and are
//! renewed: a real Dovecot (oauth2 passdb, introspection at the loopback test authority; no
//! Microsoft or Google server can run here), tokens living 4 s, one LMTP delivery every 500 ms
//! for 30 s, and every 8 s the sessions kicked (as Exchange Online ends a session whose token
//! expired), so each re-login needs a renewed token.
//!
//! `cargo bench --bench oauth2_idle` (`SLAWATCH_BENCH_TOKEN_SECONDS=60` for longer-lived tokens:
//! then logins happen only at start and after kicks). Prints the latency from delivery to the source handing
//! the message on (p50, p99, max; all messages and those delivered within 2 s after a kick),
//! the token requests and the logins (introspections) against the IDLE wake-ups.
//! Figure to reach: p99 ≤ 1.5 s; logins only at (re)connects, none per IDLE cycle.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use slawatch::config::{ImapAuth, ImapSecurity, ImapSettings, Secret};
use slawatch::oauth2::{Flow, Mechanism, OAuth2Settings};
use slawatch::sources::{EngineSink, imap};
use slawatch::telemetry::SourceHealth;
use slawatch::tls::TlsTrust;
use slawatch_core::tracker::Observation;
use support::dovecot::{Dovecot, USER};
use support::oauth2::{Authority, CLIENT_ID, CLIENT_SECRET};

struct NoHealth;

impl SourceHealth for NoHealth {
    fn set_up(&self, _: &str, _: bool) {}
    fn succeeded(&self, _: &str, _: chrono::DateTime<chrono::Utc>) {}
    fn error(&self, _: &str, _: &str) {}
}

const MESSAGES: usize = 60;
const EVERY: Duration = Duration::from_millis(500);
const KICK_EVERY: usize = 16;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report(what: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return;
    }
    println!(
        "{what}: n={} p50={:.3} s p99={:.3} s max={:.3} s",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v[v.len() - 1]
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let lifetime: u64 = std::env::var("SLAWATCH_BENCH_TOKEN_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let authority = Authority::start(lifetime, USER);
    let d = Dovecot::start_with_oauth2(&authority.introspection_url());
    let settings = ImapSettings {
        host: "localhost".into(),
        port: d.imap_port,
        security: ImapSecurity::Starttls,
        allow_insecure: false,
        tls: TlsTrust::with_ca_file(d.cert_path()),
        username: USER.into(),
        auth: ImapAuth::OAuth2 {
            mechanism: Mechanism::XOAuth2,
            oauth2: OAuth2Settings {
                flow: Flow::ClientCredentials {
                    token_url: authority.token_url(),
                    client_id: CLIENT_ID.into(),
                    client_secret: Secret::new(CLIENT_SECRET),
                    scope: "https://outlook.office365.com/.default".into(),
                },
                timeout: Duration::from_secs(5),
                setting: "sources.desk.oauth2".into(),
            },
        },
        inbox_folders: vec!["INBOX".into()],
        sent_folders: vec!["Sent".into()],
        since: None,
        idle_timeout: Duration::from_secs(300),
        poll_interval: Duration::from_secs(60),
        body_prefix_bytes: 1024,
        timeout: Duration::from_secs(10),
    };
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let recorded = seen.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<slawatch::sources::Submission>(4);
    tokio::spawn(async move {
        while let Some(sub) = rx.recv().await {
            let now = Instant::now();
            for o in &sub.batch.observations {
                if let Observation::MessageReceived(m) = o {
                    recorded.lock().unwrap().insert(m.message_id.clone(), now);
                }
            }
            let _ = sub.committed.send(Ok(()));
        }
    });
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(imap::run(
        "desk".into(),
        settings,
        Vec::new(),
        EngineSink::new(tx),
        Arc::new(NoHealth),
        shutdown.clone(),
    ));
    // Let the folders log in and enter IDLE.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut sent = Vec::new();
    let mut last_kick = None::<Instant>;
    for i in 0..MESSAGES {
        if i > 0 && i % KICK_EVERY == 0 {
            d.kick();
            last_kick = Some(Instant::now());
        }
        let id = format!("<bench-{i}@example.org>");
        d.lmtp_deliver(
            format!(
                "From: c@example.org\r\nTo: support@desk.example\r\nSubject: {i}\r\n\
                 Message-ID: {id}\r\n\r\nHello\r\n"
            )
            .as_bytes(),
        );
        let at = Instant::now();
        let after_kick = last_kick.is_some_and(|k| at.duration_since(k) < Duration::from_secs(2));
        sent.push((id, at, after_kick));
        tokio::time::sleep(EVERY).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    shutdown.cancel();

    let seen = seen.lock().unwrap();
    let mut all = Vec::new();
    let mut kicked = Vec::new();
    let mut missing = 0;
    for (id, at, after_kick) in &sent {
        match seen.get(id) {
            Some(t) => {
                let s = t.saturating_duration_since(*at).as_secs_f64();
                all.push(s);
                if *after_kick {
                    kicked.push(s);
                }
            }
            None => missing += 1,
        }
    }
    report("detection latency, all messages", all);
    report("detection latency, within 2 s after a kick", kicked);
    println!("messages not seen: {missing}");
    println!(
        "token lifetime: {lifetime} s; token requests: {}; kicks: {}; messages (IDLE wake-ups): {MESSAGES}",
        authority.grants().len(),
        (MESSAGES - 1) / KICK_EVERY
    );
    let logins = d.log().matches("method=XOAUTH2").count();
    println!("XOAUTH2 logins: {logins} (two folders, one per connection)");
}
