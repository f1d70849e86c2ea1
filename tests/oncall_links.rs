//! The on-call manager's phone, end to end: the real binary alerts through a real SMTP server
//! (aiosmtpd, STARTTLS + AUTH), and the links are taken from the delivered mail, never built by
//! the test. Read and write tokens are configured: the links must work without them, and only
//! on their own inquiry and action.
//!
//! - the signed page link opens the inquiry's page (checked in headless Chromium) with its
//!   actions; "I'm on it" is a confirmation (GET changes nothing) and a POST;
//! - after a take the next re-notification goes to the taker only; the other inquiry's still
//!   goes to both;
//! - tampered, wrong-inquiry, wrong-action and expired links are refused;
//! - "answered elsewhere" closes the inquiry with the same ledger event `slawatch ack` writes.

mod support;

use std::time::{Duration, Instant};

use support::chromium::chromium;
use support::daemon::{Daemon, overdue_mailbox, request};
use support::slawatchd::require;
use support::smtp::{PASSWORD, Received, SmtpServer, USER};

const READ: &str = "read-token-0123456789";
const WRITE: &str = "write-token-0123456789";
const LINK_KEY: &str = "link-key-0123456789-0123456789-0123456789";

fn config(smtp: &SmtpServer, link_ttl: &str) -> String {
    format!(
        r#"
[store]
url = "sqlite://{{dir}}/ledger.db"
[http]
bind = "127.0.0.1:{{port}}"
public_url = "http://127.0.0.1:{{port}}"
link_ttl = "{link_ttl}"
[desk]
support_addresses = ["support@example.com"]
internal_domains = ["example.com"]
[policy]
target = "15m"
warn = ["10m"]
renotify_every = "6s"
renotify_max = 20
[sources.mail]
type = "maildir"
path = "{{dir}}/maildir"
scan_interval = "1s"
[notify]
primary = ["smtp"]
take_for = "10m"
[notify.smtp]
host = "127.0.0.1"
port = {port}
security = "starttls"
ca_file = "{ca}"
username = "{USER}"
from = "SLA monitor <slawatch@example.com>"
to = ["nobody-on-call@example.com"]
timeout = "5s"

[notify.oncall.people.ana]
email = "ana@example.com"
[notify.oncall.people.lead]
email = "lead@example.com"
[notify.oncall.rotations.desk]
time_zone = "Europe/Madrid"
escalation = ["lead"]
[[notify.oncall.rotations.desk.layers]]
slots = [{{ when = "Mon 00:00-Mon 00:00", person = "ana" }}]
"#,
        port = smtp.starttls_port,
        ca = smtp.cert.display(),
    )
}

fn start(dir: &std::path::Path, smtp: &SmtpServer, link_ttl: &str, inquiries: usize) -> Daemon {
    overdue_mailbox(dir, inquiries);
    let mut daemon = Daemon::configure(
        dir,
        &config(smtp, link_ttl),
        &[
            ("SLAWATCH__NOTIFY__SMTP__PASSWORD", PASSWORD),
            ("SLAWATCH__HTTP__READ_TOKEN", READ),
            ("SLAWATCH__HTTP__TOKEN", WRITE),
            ("SLAWATCH__HTTP__LINK_KEY", LINK_KEY),
        ],
    );
    daemon.start();
    daemon
}

/// The inquiry id an alert mail is about.
fn inquiry_of(m: &Received) -> String {
    m.body()
        .lines()
        .find_map(|l| l.strip_prefix("Inquiry:"))
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

fn to(m: &Received) -> String {
    m.meta["rcpt_tos"][0]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The link on the line after `label` in a mail body (or on its own line after `Open it:`).
fn link(m: &Received, label: &str) -> String {
    let body = m.body();
    let mut lines = body.lines();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix(label) {
            let rest = rest.trim();
            let url = if rest.starts_with("http") {
                rest.to_string()
            } else {
                lines.next().unwrap_or_default().trim().to_string()
            };
            return url;
        }
    }
    panic!("no {label:?} link in:\n{body}");
}

/// `http://127.0.0.1:port/path?query` → `/path?query`.
fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/".into(), |i| rest[i..].to_string())
}

/// A POST of a form body (what a browser sends), no token.
fn post_form(d: &Daemon, path: &str, form: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        d.addr,
        form.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn wait(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Replaces `name=value` in a query string.
fn with_param(path: &str, name: &str, value: &str) -> String {
    let (base, query) = path.split_once('?').unwrap();
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k == name => format!("{k}={value}"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

#[test]
fn links_from_the_alert_mail_take_and_answer_an_inquiry_without_a_token() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    require("chromium", "chromium");
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = start(dir.path(), &smtp, "2h", 3);

    // Three overdue inquiries: each breach goes to ana (on call) and lead (escalation).
    wait("6 breach mails", Duration::from_secs(60), || {
        smtp.messages().len() >= 6
    });
    let mails = smtp.messages();
    let breach_to = |person: &str| -> Vec<Received> {
        mails
            .iter()
            .filter(|m| to(m) == format!("{person}@example.com"))
            .cloned()
            .collect()
    };
    let (ana, lead) = (breach_to("ana"), breach_to("lead"));
    assert_eq!((ana.len(), lead.len()), (3, 3), "one breach each");
    let mut ids: Vec<String> = ana.iter().map(inquiry_of).collect();
    ids.sort();
    let (taken, other, answered) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    let mail_about = |mails: &[Received], id: &str| -> Received {
        mails.iter().find(|m| inquiry_of(m) == id).cloned().unwrap()
    };
    let ana_mail = mail_about(&ana, &taken);

    // The page link opens the page without a token, with the actions; without the link the
    // page needs the read token.
    let page = path_of(&link(&ana_mail, "Open it:"));
    assert!(
        page.starts_with(&format!("/inquiries/{taken}?to=ana&exp=")),
        "{page}"
    );
    let (status, _) = daemon.get(&format!("/inquiries/{taken}"));
    assert_eq!(status, 401, "the page without a link needs the read token");
    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(
        profile.path(),
        &["--dump-dom"],
        &format!("http://{}{page}", daemon.addr),
    );
    assert!(dom.contains("BREACHED"), "{dom}");
    assert!(dom.contains("id=\"take\""), "take button:\n{dom}");
    assert!(dom.contains("id=\"answered\""), "answered button:\n{dom}");
    assert!(dom.contains("question "), "subject shown:\n{dom}");

    // "I'm on it": GET is a confirmation that changes nothing, the form POSTs.
    let take = path_of(&link(&ana_mail, "I'm on it"));
    let (status, form) = daemon.get(&take);
    assert_eq!(status, 200, "{form}");
    assert!(form.contains("method=\"post\""), "{form}");
    assert!(
        !form.contains("name=\"by\""),
        "a personal link names who takes it"
    );
    let count = |kind: &str| -> usize {
        daemon
            .sql(&format!(
                "SELECT count(*) FROM ledger WHERE kind = '{kind}'"
            ))
            .parse()
            .unwrap_or(0)
    };
    assert_eq!(count("inquiry_taken"), 0, "a GET took it");

    // Refused: tampered (recipient, expiry, signature), another inquiry, another action.
    for (what, path) in [
        ("edited recipient", with_param(&take, "to", "lead")),
        ("edited expiry", with_param(&take, "exp", "4102444800")),
        (
            "edited signature",
            with_param(&take, "sig", &"0".repeat(64)),
        ),
        ("another inquiry", take.replace(&taken, &other)),
        ("another action", take.replace("/take?", "/answered?")),
    ] {
        let (status, body) = post_form(&daemon, &path, "");
        assert_eq!(status, 403, "{what}: {body}");
        assert!(body.contains("not valid"), "{what}: {body}");
    }
    assert_eq!(count("inquiry_taken"), 0);

    let (status, body) = post_form(&daemon, &take, "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("ana has it until"), "{body}");
    wait("the take in the ledger", Duration::from_secs(10), || {
        count("inquiry_taken") == 1
    });
    let payload = daemon.sql("SELECT payload FROM ledger WHERE kind = 'inquiry_taken'");
    assert!(
        payload.contains("\"by\":\"ana\"") && payload.contains("\"how\":\"link\""),
        "{payload}"
    );
    let api: serde_json::Value = {
        let (_, body) = request_with(&daemon, &format!("/api/v1/inquiries/{taken}"), READ);
        serde_json::from_str(&body).unwrap()
    };
    assert_eq!(api["taken"]["by"], "ana");
    let (_, page_now) = request_with(&daemon, &format!("/inquiries/{taken}"), READ);
    assert!(
        page_now.contains("id=\"taken\" dir=\"auto\">ana at "),
        "who took it, on the page:\n{page_now}"
    );
    assert!(
        page_now.contains("data-kind=\"inquiry_taken\""),
        "{page_now}"
    );
    assert_eq!(api["sla"], "missed", "taking is not a response");
    assert_eq!(api["state"], "open");

    // The next re-notification of the taken inquiry goes to ana only; the other one's still
    // to both.
    let renotified = |id: &str, person: &str| -> usize {
        smtp.messages()
            .iter()
            .filter(|m| {
                m.header("X-Slawatch-Alert").as_deref() == Some("renotify")
                    && inquiry_of(m) == id
                    && to(m) == format!("{person}@example.com")
            })
            .count()
    };
    let took_at = Instant::now();
    wait(
        "a re-notification of both inquiries after the take",
        Duration::from_secs(30),
        || renotified(&taken, "ana") >= 1 && renotified(&other, "lead") >= 1,
    );
    // Re-notifications raised before the take may have reached lead; none after it.
    let lead_before = renotified(&taken, "lead");
    wait("two more rounds", Duration::from_secs(30), || {
        renotified(&other, "lead") >= 3
    });
    assert_eq!(
        renotified(&taken, "lead"),
        lead_before,
        "lead reminded of a taken inquiry ({:?} after the take)",
        took_at.elapsed()
    );
    assert!(
        renotified(&taken, "ana") >= 2,
        "the taker is still reminded"
    );

    // "Answered elsewhere" from lead's mail: the same ledger event as `slawatch ack`.
    let lead_mail = mail_about(&lead, &answered);
    let answer = path_of(&link(&lead_mail, "Answered elsewhere"));
    let (status, form) = daemon.get(&answer);
    assert_eq!(status, 200, "{form}");
    assert!(form.contains("name=\"via\""), "{form}");
    let (status, body) = post_form(&daemon, &answer, "via=phone&note=called+back%2C+sorted");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Answered by lead via phone"), "{body}");
    let out = daemon.cli(&[
        "ack",
        &taken,
        "--by",
        "lead",
        "--via",
        "phone",
        "--note",
        "called back, sorted",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let responded = |id: &str| -> serde_json::Value {
        let p = daemon.sql(&format!(
            "SELECT payload FROM ledger WHERE kind = 'inquiry_responded' AND payload LIKE '%{id}%'"
        ));
        let mut v: serde_json::Value = serde_json::from_str(&p).unwrap();
        for k in ["inquiry_id", "at", "response_seconds"] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    assert_eq!(
        responded(&answered),
        responded(&taken),
        "answered elsewhere and `slawatch ack` record the same event"
    );
    // Once answered, the links have nothing left to do.
    let (status, _) = post_form(&daemon, &answer, "via=phone");
    assert_eq!(status, 409);
    assert!(daemon.stop());
}

/// GET with a bearer token.
fn request_with(d: &Daemon, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
        d.addr
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn an_expired_link_is_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let daemon = start(dir.path(), &smtp, "3s", 1);
    wait("the breach mails", Duration::from_secs(60), || {
        smtp.messages().len() >= 2
    });
    let mail = smtp.messages()[0].clone();
    let take = path_of(&link(&mail, "I'm on it"));
    let exp: i64 = take
        .split("exp=")
        .nth(1)
        .and_then(|e| e.split('&').next())
        .and_then(|e| e.parse().ok())
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!(exp <= now + 4, "expires 3 s after the alert");
    std::thread::sleep(Duration::from_secs((exp - now + 1).max(0) as u64));
    let (status, body) = post_form(&daemon, &take, "");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("expired"), "{body}");
    let (status, body) = request(daemon.addr, "GET", &path_of(&link(&mail, "Open it:")), None);
    assert_eq!(status, 403, "{body}");
    let taken: usize = daemon
        .sql("SELECT count(*) FROM ledger WHERE kind = 'inquiry_taken'")
        .parse()
        .unwrap();
    assert_eq!(taken, 0);
}

/// A Slack webhook is a shared channel: its links name nobody, and the form asks who takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_channel_link_asks_who_takes_it() {
    let hook = support::webhook::Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    overdue_mailbox(dir.path(), 1);
    let config = r#"
[store]
url = "sqlite://{dir}/ledger.db"
[http]
bind = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[desk]
support_addresses = ["support@example.com"]
internal_domains = ["example.com"]
[sources.mail]
type = "maildir"
path = "{dir}/maildir"
scan_interval = "1s"
[notify]
primary = ["webhook"]
[notify.webhook]
format = "slack"
"#;
    let mut daemon = Daemon::configure(
        dir.path(),
        config,
        &[
            ("SLAWATCH__NOTIFY__WEBHOOK__URL", hook.url.as_str()),
            ("SLAWATCH__HTTP__TOKEN", WRITE),
            ("SLAWATCH__HTTP__LINK_KEY", LINK_KEY),
        ],
    );
    daemon.start();
    let text = {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(t) = hook
                .bodies()
                .iter()
                .find_map(|b| b["text"].as_str().map(str::to_string))
            {
                break t;
            }
            assert!(
                Instant::now() < until,
                "no Slack message:\n{}",
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    // `<url|label>`, with Slack's escaping of `&` undone (as Slack does when showing it).
    let slack_link = |label: &str| -> String {
        let end = text
            .find(&format!("|{label}>"))
            .unwrap_or_else(|| panic!("no {label} link in {text}"));
        let start = text[..end].rfind('<').unwrap() + 1;
        path_of(&text[start..end].replace("&amp;", "&"))
    };
    let take = slack_link("I'm on it");
    assert!(
        take.contains("/take?to=&exp="),
        "a shared link names nobody: {take}"
    );
    assert!(slack_link("open").contains("?to=&exp="));
    assert!(slack_link("answered elsewhere").contains("/answered?to=&exp="));
    let (status, form) = daemon.get(&take);
    assert_eq!(status, 200, "{form}");
    assert!(form.contains("name=\"by\""), "the form asks who: {form}");
    let (status, body) = post_form(&daemon, &take, "by=");
    assert_eq!(status, 400, "{body}");
    let (status, body) = post_form(&daemon, &take, "by=Carla+Ruiz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Carla Ruiz has it until"), "{body}");
    let payload = daemon.sql("SELECT payload FROM ledger WHERE kind = 'inquiry_taken'");
    assert!(
        payload.contains("\"by\":\"Carla Ruiz\"") && payload.contains("\"how\":\"shared_link\""),
        "{payload}"
    );
    assert!(daemon.stop());
}
