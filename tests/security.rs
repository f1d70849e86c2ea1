//! Issue 15, "Secure enough to face a network", against the real binary: every route × every
//! token, the public-bind refusal, the `Host` check (direct and behind a reverse proxy), slow
//! clients beyond the connection limit while `/healthz` and `/metrics` are timed, the header and
//! request timeouts, body limits, and the reviewer's items (SMTP AUTH out of the logs at trace
//! level, resolved-loopback checks, the webhook URL as a secret, pushed times far from now, two
//! roles with one token).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::daemon::Daemon;
use support::smtp::{PASSWORD, SmtpServer, USER};

const WRITE: &str = "write-8d1f0c2e";
const READ: &str = "read-51a7b9d4";
const REPORT: &str = "report-c03e66aa";
const METRICS: &str = "metrics-7be2f915";

/// A configuration with a Maildir source; `http` is the `[http]` table's body after `bind`.
fn config(bind: &str, http: &str) -> String {
    format!(
        r#"[store]
url = "sqlite://{{dir}}/ledger.db"
[http]
bind = "{bind}"
{http}
[desk]
support_addresses = ["support@desk.example"]
internal_domains = ["desk.example"]
[policy]
target = "15m"
warn = ["10m"]
[sources.mail]
type = "maildir"
path = "{{dir}}/maildir"
scan_interval = "1s"
"#
    )
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("slawatch-security-")
        .tempdir()
        .unwrap()
}

/// A Maildir with one customer message in it; returns the message's inquiry once listed.
fn mailbox(dir: &Path) {
    let maildir = dir.join("maildir");
    for sub in ["cur", "new", "tmp", ".Sent/cur", ".Sent/new", ".Sent/tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let now = chrono::Utc::now().timestamp();
    std::fs::write(
        maildir.join("new").join(format!("{now}.M1P1.security")),
        support::slawatchd::message(
            "sec-1",
            "Nadia <nadia@customer.example>",
            "Where is my order?",
            "en",
            "Hello, my order has not arrived.",
        ),
    )
    .unwrap();
}

/// Starts a daemon on `config` with `env`, waits until its mailbox is read.
fn daemon(dir: &Path, config: &str, env: &[(&str, &str)]) -> Daemon {
    mailbox(dir);
    let mut d = Daemon::configure(dir, config, env);
    d.start();
    d.wait_ready(Duration::from_secs(30));
    d
}

/// An answer: status, head (lower-cased names), body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// One HTTP/1.1 request with `headers` (a `Host` among them replaces the default).
fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Answer {
        status: head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The id of the one inquiry, read with `auth` headers.
fn inquiry_id(d: &Daemon, auth: &[(&str, &str)]) -> String {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let a = send(d.addr, "GET", "/api/v1/inquiries", auth, None);
        if a.status == 200
            && let Some(id) = a
                .body
                .split("\"id\":\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
        {
            return id.to_string();
        }
        assert!(Instant::now() < until, "no inquiry listed: {}", a.body);
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every route, as (method, path, body). The write routes get bodies that pass the token check
/// and then fail validation (400), so the table never changes the state it tests.
fn routes(id: &str) -> Vec<(&'static str, String, Option<&'static str>)> {
    vec![
        ("GET", "/healthz".into(), None),
        ("GET", "/readyz".into(), None),
        ("GET", "/metrics".into(), None),
        ("GET", "/".into(), None),
        ("GET", "/api/v1/inquiries".into(), None),
        ("GET", format!("/api/v1/inquiries/{id}"), None),
        (
            "GET",
            "/api/v1/report?from=2026-01-01&to=2026-01-02".into(),
            None,
        ),
        (
            "POST",
            format!("/api/v1/inquiries/{id}/ack"),
            Some(r#"{"by": ""}"#),
        ),
        ("POST", "/api/v1/calls".into(), Some("[]")),
        ("GET", format!("/inquiries/{id}"), None),
        ("GET", format!("/inquiries/{id}/answered"), None),
        // A JSON body is not the form: refused once the token is accepted.
        (
            "POST",
            format!("/inquiries/{id}/answered"),
            Some(r#"{"by": ""}"#),
        ),
    ]
}

/// Checks every route with each credential against `expected` (one row per route, one column
/// per credential), and that no token reached the log.
fn table(d: &Daemon, credentials: &[(&str, Option<&str>)], expected: &[&[u16]]) {
    let id = inquiry_id(d, &[("Authorization", &bearer(WRITE))]);
    let mut wrong = Vec::new();
    for ((method, path, body), row) in routes(&id).iter().zip(expected) {
        for ((name, token), want) in credentials.iter().zip(row.iter()) {
            let auth = token.map(bearer);
            let headers: Vec<(&str, &str)> = auth
                .as_deref()
                .map(|a| vec![("Authorization", a)])
                .unwrap_or_default();
            let got = send(d.addr, method, path, &headers, *body);
            if got.status != *want {
                wrong.push(format!(
                    "{method} {path} with {name}: {} (expected {want}) {}",
                    got.status, got.body
                ));
            }
            if got.status == 401 {
                assert!(
                    got.head.contains("www-authenticate: bearer"),
                    "{method} {path}: {}",
                    got.head
                );
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let log = d.log();
    for t in [WRITE, READ, REPORT, METRICS] {
        assert!(!log.contains(t), "a token reached the log:\n{log}");
    }
}

#[test]
fn every_route_answers_every_token_as_the_access_table_says() {
    let credentials = [
        ("no token", None),
        ("read", Some(READ)),
        ("write", Some(WRITE)),
        ("report", Some(REPORT)),
        ("metrics", Some(METRICS)),
        ("a wrong token", Some("not-a-token")),
    ];

    // Every token configured.
    let dir = tempdir();
    let d = daemon(
        dir.path(),
        &config("127.0.0.1:{port}", ""),
        &[
            ("SLAWATCH__HTTP__TOKEN", WRITE),
            ("SLAWATCH__HTTP__READ_TOKEN", READ),
            ("SLAWATCH__HTTP__REPORT_TOKEN", REPORT),
            ("SLAWATCH__HTTP__METRICS_TOKEN", METRICS),
        ],
    );
    #[rustfmt::skip]
    table(&d, &credentials, &[
        //  none read write report metrics wrong
        &[200, 200, 200, 200, 200, 200], // /healthz
        &[200, 200, 200, 200, 200, 200], // /readyz
        &[401, 401, 401, 401, 200, 401], // /metrics
        &[401, 200, 200, 401, 401, 401], // /
        &[401, 200, 200, 401, 401, 401], // /api/v1/inquiries
        &[401, 200, 200, 401, 401, 401], // /api/v1/inquiries/{id}
        &[401, 401, 401, 200, 401, 401], // /api/v1/report
        &[401, 401, 400, 401, 401, 401], // POST …/ack
        &[401, 401, 400, 401, 401, 401], // POST /api/v1/calls
        &[401, 200, 200, 401, 401, 401], // /inquiries/{id}
        &[401, 401, 200, 401, 401, 401], // /inquiries/{id}/answered
        &[401, 401, 400, 401, 401, 401], // POST /inquiries/{id}/answered
    ]);
    drop(d);

    // No token at all, on loopback: open, but never the report.
    let dir = tempdir();
    let d = daemon(dir.path(), &config("127.0.0.1:{port}", ""), &[]);
    #[rustfmt::skip]
    table(&d, &credentials, &[
        &[200, 200, 200, 200, 200, 200],
        &[200, 200, 200, 200, 200, 200],
        &[200, 200, 200, 200, 200, 200],
        &[200, 200, 200, 200, 200, 200],
        &[200, 200, 200, 200, 200, 200],
        &[200, 200, 200, 200, 200, 200],
        &[403, 403, 403, 403, 403, 403],
        &[400, 400, 400, 400, 400, 400],
        &[400, 400, 400, 400, 400, 400],
        &[200, 200, 200, 200, 200, 200],
        &[200, 200, 200, 200, 200, 200],
        &[400, 400, 400, 400, 400, 400],
    ]);
    drop(d);

    // Read and write tokens only: /metrics stays open, the report stays off.
    let dir = tempdir();
    let d = daemon(
        dir.path(),
        &config("127.0.0.1:{port}", ""),
        &[
            ("SLAWATCH__HTTP__TOKEN", WRITE),
            ("SLAWATCH__HTTP__READ_TOKEN", READ),
        ],
    );
    #[rustfmt::skip]
    table(&d, &credentials, &[
        &[200, 200, 200, 200, 200, 200],
        &[200, 200, 200, 200, 200, 200],
        &[200, 200, 200, 200, 200, 200],
        &[401, 200, 200, 401, 401, 401],
        &[401, 200, 200, 401, 401, 401],
        &[401, 200, 200, 401, 401, 401],
        &[403, 403, 403, 403, 403, 403],
        &[401, 401, 400, 401, 401, 401],
        &[401, 401, 400, 401, 401, 401],
        &[401, 200, 200, 401, 401, 401],
        &[401, 401, 200, 401, 401, 401],
        &[401, 401, 400, 401, 401, 401],
    ]);
}

#[test]
fn a_wallboard_keeps_the_read_token_in_an_http_only_cookie_that_only_reads() {
    let dir = tempdir();
    let d = daemon(
        dir.path(),
        &config("127.0.0.1:{port}", ""),
        &[
            ("SLAWATCH__HTTP__TOKEN", WRITE),
            ("SLAWATCH__HTTP__READ_TOKEN", READ),
        ],
    );
    let set = send(d.addr, "GET", &format!("/?token={READ}"), &[], None);
    assert_eq!(set.status, 303, "{}", set.body);
    assert!(set.head.contains("\r\nlocation: /\r\n"), "{}", set.head);
    let cookie_line = set
        .head
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .expect("a cookie")
        .to_string();
    assert!(cookie_line.contains("httponly"), "{cookie_line}");
    assert!(cookie_line.contains("samesite=strict"), "{cookie_line}");
    let cookie = format!("slawatch_read={READ}");
    let with = [("Cookie", cookie.as_str())];
    assert_eq!(send(d.addr, "GET", "/", &with, None).status, 200);
    assert_eq!(
        send(d.addr, "GET", "/api/v1/inquiries", &with, None).status,
        200
    );
    let id = inquiry_id(&d, &with);
    // The cookie never writes (a cross-site form would carry it).
    let ack = send(
        d.addr,
        "POST",
        &format!("/api/v1/inquiries/{id}/ack"),
        &with,
        Some(r#"{"by": "Laila", "via": "phone"}"#),
    );
    assert_eq!(ack.status, 401, "{}", ack.body);
    // Only the read token goes in a URL; a wrong one sets nothing.
    for t in [WRITE, "wrong"] {
        let a = send(d.addr, "GET", &format!("/?token={t}"), &[], None);
        assert_eq!(a.status, 401, "{t}");
        assert!(!a.head.contains("set-cookie"), "{}", a.head);
    }
    assert_eq!(
        send(
            d.addr,
            "GET",
            "/",
            &[("Cookie", "slawatch_read=wrong")],
            None
        )
        .status,
        401
    );
}

/// Runs `slawatch ARGS` with `env` on `dir`'s configuration; gives up (and fails) after 30 s.
fn run_cli(d: &Daemon, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_slawatch"))
        .arg("--config")
        .arg(d.dir.join("slawatch.toml"))
        .args(args)
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run slawatch");
    let until = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("slawatch {args:?} still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_public_bind_without_tokens_is_refused_by_run_and_check_config() {
    let dir = tempdir();
    mailbox(dir.path());
    let d = Daemon::configure(dir.path(), &config("0.0.0.0:{port}", ""), &[]);
    for args in [&["check-config"][..], &["run"][..]] {
        let (code, _, stderr) = run_cli(&d, args, &[]);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        for key in [
            "http.bind",
            "http.token_file",
            "http.read_token_file",
            "http.allow_anonymous",
        ] {
            assert!(
                stderr.contains(key),
                "{args:?} does not name {key}:\n{stderr}"
            );
        }
    }
    // Explicitly anonymous: allowed, with a warning.
    let (code, _, stderr) = run_cli(
        &d,
        &["check-config"],
        &[("SLAWATCH__HTTP__ALLOW_ANONYMOUS", "true")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("warning: http.bind"), "{stderr}");
    // With tokens: fine, and the tokens are redacted.
    let (code, stdout, stderr) = run_cli(
        &d,
        &["check-config"],
        &[
            ("SLAWATCH__HTTP__TOKEN", WRITE),
            ("SLAWATCH__HTTP__READ_TOKEN", READ),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stdout.contains(WRITE) && !stdout.contains(READ),
        "{stdout}"
    );
    assert!(
        stdout.contains("\"read_token\": \"<redacted>\""),
        "{stdout}"
    );
}

#[test]
fn the_same_value_for_two_tokens_is_refused() {
    let dir = tempdir();
    mailbox(dir.path());
    let d = Daemon::configure(dir.path(), &config("127.0.0.1:{port}", ""), &[]);
    let (code, _, stderr) = run_cli(
        &d,
        &["check-config"],
        &[
            ("SLAWATCH__HTTP__TOKEN", WRITE),
            ("SLAWATCH__HTTP__REPORT_TOKEN", WRITE),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("http.report_token: has the same value as http.token"),
        "{stderr}"
    );
    assert!(!stderr.contains(WRITE), "{stderr}");
}

/// A reverse proxy that forwards one connection at a time to `upstream`, setting `Host` to
/// `public_name` as nginx's `proxy_set_header Host` does.
fn reverse_proxy(upstream: SocketAddr, public_name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let text = String::from_utf8_lossy(&head).into_owned();
            let rewritten: String = text
                .split_inclusive("\r\n")
                .map(|line| {
                    if line.to_ascii_lowercase().starts_with("host:") {
                        format!("Host: {public_name}\r\nX-Forwarded-Host: {public_name}\r\n")
                    } else {
                        line.to_string()
                    }
                })
                .collect();
            let Ok(mut server) = TcpStream::connect(upstream) else {
                return;
            };
            let _ = server.write_all(rewritten.as_bytes());
            let mut answer = Vec::new();
            let _ = server.read_to_end(&mut answer);
            let _ = client.write_all(&answer);
        }
    });
    addr
}

#[test]
fn requests_for_other_host_names_are_refused_directly_and_through_a_proxy() {
    let dir = tempdir();
    let d = daemon(
        dir.path(),
        &config(
            "127.0.0.1:{port}",
            "public_url = \"https://sla.desk.example\"\nallowed_hosts = [\"wallboard.lan\"]",
        ),
        // A public URL needs the key that signs the links in alerts.
        &[(
            "SLAWATCH__HTTP__LINK_KEY",
            "a-link-key-of-at-least-thirty-two-bytes",
        )],
    );
    let port = d.addr.port();
    let host = |h: &str, path: &str| send(d.addr, "GET", path, &[("Host", h)], None);
    for ok in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "sla.desk.example".to_string(),
        "wallboard.lan:80".to_string(),
    ] {
        assert_eq!(host(&ok, "/api/v1/inquiries").status, 200, "{ok}");
    }
    for refused in [
        format!("rebind.evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1.nip.example:{port}"),
        format!("sla.desk.example.evil.example:{port}"),
    ] {
        for path in ["/", "/api/v1/inquiries", "/metrics", "/api/v1/calls"] {
            let a = host(&refused, path);
            assert_eq!(a.status, 421, "{refused} {path}: {}", a.body);
        }
        // Health checks are exempt (load balancers probe by address).
        assert_eq!(host(&refused, "/healthz").status, 200);
        assert_eq!(host(&refused, "/readyz").status, 200);
    }
    // A forwarded-host header does not launder a foreign Host.
    let a = send(
        d.addr,
        "GET",
        "/api/v1/inquiries",
        &[
            ("Host", "rebind.evil.example"),
            ("X-Forwarded-Host", "127.0.0.1"),
        ],
        None,
    );
    assert_eq!(a.status, 421);

    // Behind a reverse proxy that sets Host to the public name: served.
    let proxy = reverse_proxy(d.addr, "sla.desk.example");
    let a = send(
        proxy,
        "GET",
        "/api/v1/inquiries",
        &[("Host", "sla.desk.example")],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("Where is my order?"), "{}", a.body);
    // The same proxy in front of a daemon that does not know the name: refused.
    let dir = tempdir();
    let other = daemon(dir.path(), &config("127.0.0.1:{port}", ""), &[]);
    let proxy = reverse_proxy(other.addr, "sla.desk.example");
    let a = send(
        proxy,
        "GET",
        "/api/v1/inquiries",
        &[("Host", "sla.desk.example")],
        None,
    );
    assert_eq!(a.status, 421, "{}", a.body);
}

/// A client that connects, sends half a request head and waits; when dropped by the server it
/// connects again, until `stop`.
fn slow_client(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    connected: Arc<std::sync::atomic::AtomicUsize>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let _ = s.write_all(b"GET /api/v1/inquiries HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
        connected.fetch_add(1, Ordering::Relaxed);
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 256];
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match s.read(&mut buf) {
                Ok(0) => break, // dropped by the server: come back
                Ok(_) => break,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
    }
}

#[test]
fn health_and_metrics_answer_at_once_with_more_slow_clients_than_the_connection_limit() {
    const LIMIT: usize = 20;
    const SLOW: usize = 100;
    let dir = tempdir();
    let d = daemon(
        dir.path(),
        &config("127.0.0.1:{port}", &format!("max_connections = {LIMIT}")),
        &[],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..SLOW)
        .map(|_| {
            let (stop, connected) = (stop.clone(), connected.clone());
            std::thread::spawn(move || slow_client(d.addr, stop, connected))
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(30);
    while connected.load(Ordering::Relaxed) < SLOW {
        assert!(Instant::now() < until, "slow clients could not connect");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));

    let mut health = Vec::new();
    let mut metrics = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let a = send(d.addr, "GET", "/healthz", &[], None);
        health.push(t.elapsed());
        assert_eq!((a.status, a.body.as_str()), (200, "ok"));
        let t = Instant::now();
        let a = send(d.addr, "GET", "/metrics", &[], None);
        metrics.push(t.elapsed());
        assert_eq!(a.status, 200);
        assert!(a.body.contains("slawatch_build_info"));
    }
    // An evicted connection closes within a second (it may be finishing a response).
    std::thread::sleep(Duration::from_millis(1500));
    let reconnects = connected.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    health.sort();
    metrics.sort();
    eprintln!(
        "{SLOW} slow clients over a limit of {LIMIT} ({reconnects} connections made): /healthz median {:?} max {:?}; /metrics median {:?} max {:?}",
        health[health.len() / 2],
        health[health.len() - 1],
        metrics[metrics.len() / 2],
        metrics[metrics.len() - 1],
    );
    // Generous: a loopback answer takes milliseconds; "at once" is well under 2 s.
    assert!(
        health[health.len() - 1] < Duration::from_secs(2),
        "{health:?}"
    );
    assert!(
        metrics[metrics.len() - 1] < Duration::from_secs(2),
        "{metrics:?}"
    );
    // The slow clients were really held off: the server dropped some to make room.
    assert!(
        reconnects > SLOW,
        "no slow client was ever dropped ({reconnects})"
    );
}

#[test]
fn a_client_that_never_finishes_its_headers_or_its_body_is_dropped() {
    let dir = tempdir();
    let d = daemon(
        dir.path(),
        &config(
            "127.0.0.1:{port}",
            "header_timeout = \"2s\"\nrequest_timeout = \"2s\"",
        ),
        &[],
    );
    // Half a head: the connection is closed after the header timeout.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let t = Instant::now();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(15),
        "closed after {took:?}"
    );

    // A whole head and a body that never comes: 408 after the request timeout.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        b"POST /api/v1/calls HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{\"call",
    )
    .unwrap();
    let t = Instant::now();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let took = t.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(15), "answered after {took:?}");

    // Bodies are bounded per route: an ack body of 64 KiB is refused before it is read.
    let id = inquiry_id(&d, &[]);
    let big = format!(r#"{{"by": "Laila", "note": "{}"}}"#, "x".repeat(64 * 1024));
    let a = send(
        d.addr,
        "POST",
        &format!("/api/v1/inquiries/{id}/ack"),
        &[],
        Some(&big),
    );
    assert_eq!(a.status, 413, "{}", a.body);
}

#[test]
fn pushed_calls_and_acks_far_from_now_are_refused_with_a_clear_error() {
    let dir = tempdir();
    let d = daemon(dir.path(), &config("127.0.0.1:{port}", ""), &[]);
    let id = inquiry_id(&d, &[]);
    let old = (chrono::Utc::now() - chrono::Duration::days(30)).to_rfc3339();
    let ahead = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let calls = |at: &str| {
        format!(
            r#"{{"call_id": "far", "event": "answered", "direction": "outbound", "number": "+34699000111", "started_at": "{at}", "answered_at": "{at}"}}"#
        )
    };
    let a = send(d.addr, "POST", "/api/v1/calls", &[], Some(&calls(&old)));
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.body
            .contains("started_at is more than 7 days in the past"),
        "{}",
        a.body
    );
    let a = send(d.addr, "POST", "/api/v1/calls", &[], Some(&calls(&ahead)));
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("started_at is in the future"), "{}", a.body);
    let ack = |at: &str| format!(r#"{{"by": "Laila", "via": "phone", "at": "{at}"}}"#);
    let path = format!("/api/v1/inquiries/{id}/ack");
    let a = send(d.addr, "POST", &path, &[], Some(&ack(&ahead)));
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("at is in the future"), "{}", a.body);
    let a = send(
        d.addr,
        "POST",
        &path,
        &[],
        Some(&ack("2020-01-01T00:00:00Z")),
    );
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.body.contains("\"parameter\":\"at\""), "{}", a.body);
    // The inquiry is still open.
    let one = send(d.addr, "GET", &format!("/api/v1/inquiries/{id}"), &[], None);
    assert!(one.body.contains("\"state\":\"open\""), "{}", one.body);
}

#[test]
fn plain_text_to_names_that_only_look_local_is_refused() {
    let dir = tempdir();
    mailbox(dir.path());
    for (section, key) in [
        (
            "[sources.tw]\ntype = \"twilio\"\nbase_url = \"http://localhost.evil.example\"\naccount_sid = \"AC1\"\n",
            "sources.tw.base_url",
        ),
        (
            "[sources.tw]\ntype = \"twilio\"\nbase_url = \"http://127.0.0.1@evil.example\"\naccount_sid = \"AC1\"\n",
            "sources.tw.base_url",
        ),
        (
            "[notify]\nprimary = [\"smtp\"]\n[notify.smtp]\nhost = \"localhost.evil.example\"\nsecurity = \"plain\"\nfrom = \"a@desk.example\"\nto = [\"b@desk.example\"]\n",
            "notify.smtp.security",
        ),
        (
            "[notify]\nprimary = [\"smtp\"]\n[notify.smtp]\nhost = \"127.0.0.1.evil.example\"\nsecurity = \"plain\"\nfrom = \"a@desk.example\"\nto = [\"b@desk.example\"]\n",
            "notify.smtp.security",
        ),
    ] {
        let d = Daemon::configure(
            dir.path(),
            &format!("{}\n{section}", config("127.0.0.1:{port}", "")),
            &[],
        );
        let (code, _, stderr) = run_cli(
            &d,
            &["check-config"],
            &[("SLAWATCH__SOURCES__TW__AUTH_TOKEN", "t")],
        );
        assert_eq!(code, Some(1), "{section}: {stderr}");
        assert!(stderr.contains(key), "{key} not named:\n{stderr}");
    }
    // Loopback by name or address is fine.
    let d = Daemon::configure(
        dir.path(),
        &format!(
            "{}\n[sources.tw]\ntype = \"twilio\"\nbase_url = \"http://localhost:9\"\naccount_sid = \"AC1\"\n[notify]\nprimary = [\"smtp\"]\n[notify.smtp]\nhost = \"localhost\"\nsecurity = \"plain\"\nfrom = \"a@desk.example\"\nto = [\"b@desk.example\"]\n",
            config("127.0.0.1:{port}", "")
        ),
        &[],
    );
    let (code, _, stderr) = run_cli(
        &d,
        &["check-config"],
        &[("SLAWATCH__SOURCES__TW__AUTH_TOKEN", "t")],
    );
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn the_webhook_url_is_a_secret_read_from_a_file_and_redacted() {
    let dir = tempdir();
    mailbox(dir.path());
    let url = "https://hooks.example.com/services/T0/B0/hook-credential-93ab";
    std::fs::write(dir.path().join("webhook-url"), format!("{url}\n")).unwrap();
    let notify = "[notify]\nprimary = [\"webhook\"]\n[notify.webhook]\nformat = \"slack\"\n";
    let d = Daemon::configure(
        dir.path(),
        &format!(
            "{}\n{notify}url_file = \"{{dir}}/webhook-url\"\n",
            config("127.0.0.1:{port}", "")
        ),
        &[],
    );
    let (code, stdout, stderr) = run_cli(&d, &["check-config"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stdout.contains("hook-credential") && !stderr.contains("hook-credential"));
    assert!(stdout.contains("\"url\": \"<redacted>\""), "{stdout}");
    // Written in the configuration file: refused, like every secret.
    let d = Daemon::configure(
        dir.path(),
        &format!(
            "{}\n{notify}url = \"{url}\"\n",
            config("127.0.0.1:{port}", "")
        ),
        &[],
    );
    let (code, _, stderr) = run_cli(&d, &["check-config"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("notify.webhook.url: secrets are not written in the configuration file"),
        "{stderr}"
    );
    assert!(!stderr.contains("hook-credential"), "{stderr}");
}

#[test]
fn smtp_auth_never_reaches_the_logs_even_at_trace_level() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smtp = SmtpServer::start();
    let dir = tempdir();
    mailbox(dir.path());
    let d = Daemon::configure(
        dir.path(),
        &format!(
            "{}\n[notify]\nprimary = [\"smtp\"]\n[notify.smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"starttls\"\nca_file = \"{}\"\nusername = \"{USER}\"\nfrom = \"SLA monitor <slawatch@desk.example>\"\nto = [\"oncall@desk.example\"]\ntimeout = \"5s\"\n",
            config("127.0.0.1:{port}", ""),
            smtp.starttls_port,
            smtp.cert.display()
        ),
        &[],
    );
    let (code, stdout, stderr) = run_cli(
        &d,
        &["test-alert"],
        &[
            ("SLAWATCH__NOTIFY__SMTP__PASSWORD", PASSWORD),
            ("RUST_LOG", "trace"),
        ],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("smtp: sent"), "{stdout}");
    assert_eq!(smtp.messages().len(), 1);
    // Trace level really is on (other crates log at it).
    assert!(
        stderr.contains("TRACE") || stderr.contains("DEBUG"),
        "{stderr}"
    );
    use base64_forms::*;
    for secret in [
        PASSWORD.to_string(),
        b64(PASSWORD.as_bytes()),
        b64(format!("\0{USER}\0{PASSWORD}").as_bytes()),
        b64(format!("{USER}\0{USER}\0{PASSWORD}").as_bytes()),
    ] {
        assert!(
            !stderr.contains(&secret),
            "the SMTP credential reached the log:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("AUTH "),
        "the AUTH command reached the log:\n{stderr}"
    );
}

mod base64_forms {
    /// Standard base64 with padding (what `AUTH PLAIN` / `AUTH LOGIN` send).
    pub fn b64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
