//! A real SMTP server on loopback for alert tests: aiosmtpd (Python) with STARTTLS + AUTH on one
//! port and implicit TLS + AUTH on another, a self-signed certificate for `127.0.0.1`, and every
//! accepted message written to `NNNNNN.eml` plus a JSON sidecar (`mail_from`, `rcpt_tos`,
//! `auth_user`, `tls`), renamed into place only when complete.
//!
//! A missing `python3`, `aiosmtpd` or `openssl` is a loud failure (Debian: `python3-aiosmtpd`, or
//! `pip install aiosmtpd==1.4.6`), never a skipped test. Certificates come from the Dovecot harness's
//! throw-away CA. Stopped with SIGKILL on `stop`/drop; it
//! can be started again on the same ports (an SMTP server that was down and is back).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "alerts@desk.example";
pub const PASSWORD: &str = "s3cret-smtp";

const SERVER_PY: &str = r#"
import base64, json, os, ssl, sys, time, urllib.parse, urllib.request
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

out, cert, key, user, password, starttls_port, smtps_port = sys.argv[1:8]
introspect = sys.argv[8] if len(sys.argv) > 8 else None
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
existing = [f for f in os.listdir(out) if f.endswith(".eml")]
counter = [len(existing)]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        counter[0] += 1
        base = os.path.join(out, "%06d" % counter[0])
        login = None
        if isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode()
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                "auth_user": login,
                "tls": session.ssl is not None
                       or server.transport.get_extra_info("sslcontext") is not None}
        with open(base + ".json.tmp", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".json.tmp", base + ".json")
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 OK"

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode() == user and auth_data.password.decode() == password)
    return AuthResult(success=ok, handled=False, auth_data=auth_data)

class OAuthHandler(Handler):
    # AUTH XOAUTH2 (Google's and Microsoft's SMTP): the token is checked at the authority's
    # introspection endpoint and must belong to the user named.
    async def auth_XOAUTH2(self, server, args):
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        fields = dict(p.split("=", 1) for p in base64.b64decode(args[1]).decode().split("\x01") if "=" in p)
        login, bearer = fields.get("user", ""), fields.get("auth", "")
        token = bearer[7:] if bearer.startswith("Bearer ") else ""
        request = urllib.request.Request(introspect, data=urllib.parse.urlencode({"token": token}).encode(),
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        answer = json.loads(urllib.request.urlopen(request, timeout=5).read())
        ok = bool(answer.get("active")) and answer.get("username") == login
        return AuthResult(success=ok, handled=False,
                          auth_data=LoginPassword(login.encode(), b"") if ok else None)

handler = OAuthHandler() if introspect else Handler()
common = dict(authenticator=authenticator, auth_required=True, decode_data=False,
              enable_SMTPUTF8=True)
starttls = Controller(handler, hostname="127.0.0.1", port=int(starttls_port), tls_context=ctx,
                      require_starttls=True, auth_require_tls=True, **common)
smtps = Controller(handler, hostname="127.0.0.1", port=int(smtps_port), ssl_context=ctx,
                   auth_require_tls=False, **common)
starttls.start()
smtps.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

pub struct SmtpServer {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    /// Where messages land.
    pub out: PathBuf,
    /// The CA that signed the server's certificate: the client's `ca_file`.
    pub cert: PathBuf,
    pub starttls_port: u16,
    pub smtps_port: u16,
    /// With it, AUTH XOAUTH2 is offered and its tokens checked there.
    introspection_url: Option<String>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One message as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub raw: String,
    pub meta: serde_json::Value,
}

impl Received {
    /// The first header of that name (unfolded), case-insensitive.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\r\n\r\n").next().unwrap_or_default();
        let mut out: Option<String> = None;
        let mut collecting = false;
        for line in head.split("\r\n") {
            if collecting && (line.starts_with(' ') || line.starts_with('\t')) {
                if let Some(o) = out.as_mut() {
                    o.push(' ');
                    o.push_str(line.trim());
                }
                continue;
            }
            if out.is_some() {
                break;
            }
            collecting = false;
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                out = Some(v.trim().to_string());
                collecting = true;
            }
        }
        out
    }

    /// The decoded text body.
    pub fn body(&self) -> String {
        mail_parser::MessageParser::default()
            .parse(self.raw.as_bytes())
            .and_then(|m| m.body_text(0).map(|b| b.into_owned()))
            .unwrap_or_default()
    }
}

/// The Python interpreter that has aiosmtpd: Debian's own (`python3-aiosmtpd` installs there),
/// else the first `python3` on the PATH (a pip install).
fn python() -> &'static str {
    static FOUND: std::sync::OnceLock<Option<&'static str>> = std::sync::OnceLock::new();
    let found = FOUND.get_or_init(|| {
        ["/usr/bin/python3", "python3"].into_iter().find(|python| {
            Command::new(python)
                .args(["-c", "import aiosmtpd"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    });
    found.unwrap_or_else(|| {
        panic!(
            "python3 with aiosmtpd is required by the alert tests; install it \
             (Debian: apt-get install python3-aiosmtpd, or pip install aiosmtpd==1.4.6)"
        )
    })
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        SmtpServer::start_with(None)
    }

    /// Also offers AUTH XOAUTH2, its tokens checked at `introspection_url` (RFC 7662).
    pub fn start_with_oauth2(introspection_url: &str) -> SmtpServer {
        SmtpServer::start_with(Some(introspection_url.to_string()))
    }

    fn start_with(introspection_url: Option<String>) -> SmtpServer {
        let _ = python();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let out = dir.join("out");
        std::fs::create_dir_all(&out).unwrap();
        // A CA and a server certificate it signed (webpki refuses a self-signed CA as the
        // server's own certificate).
        super::dovecot::make_certificates(&dir);
        let cert = dir.join("ca.pem");
        std::fs::write(dir.join("server.py"), SERVER_PY).unwrap();
        let mut server = SmtpServer {
            _tmp: tmp,
            dir,
            out,
            cert,
            starttls_port: free_port(),
            smtps_port: free_port(),
            introspection_url,
            child: None,
        };
        server.resume();
        server
    }

    /// Starts (again) on the same ports.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut child = Command::new(python())
                .arg(self.dir.join("server.py"))
                .arg(&self.out)
                .arg(self.dir.join("cert.pem"))
                .arg(self.dir.join("key.pem"))
                .args([USER, PASSWORD])
                .arg(self.starttls_port.to_string())
                .arg(self.smtps_port.to_string())
                .args(self.introspection_url.iter())
                .stdout(Stdio::piped())
                .stderr(Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(self.dir.join("server.log"))
                        .unwrap(),
                ))
                .spawn()
                .expect("python3 runs");
            let mut line = String::new();
            let stdout = child.stdout.take().unwrap();
            let _ = BufReader::new(stdout).read_line(&mut line);
            if line.trim() == "ready" {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            // The port may still be held by the previous run for a moment.
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start: {}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Restarts the server with a self-signed certificate made by `openssl req -x509` (see
    /// [`super::dovecot::make_self_signed_certificate`]); returns its path.
    pub fn use_self_signed_certificate(&mut self, subject: &str, extra: &[&str]) -> PathBuf {
        self.stop();
        let cert = super::dovecot::make_self_signed_certificate(&self.dir, subject, extra);
        self.resume();
        cert
    }

    /// Kills the server (connections drop, the ports close).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every message received so far, in arrival order.
    pub fn messages(&self) -> Vec<Received> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.out)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        names.sort();
        names
            .iter()
            .map(|p| Received {
                raw: std::fs::read_to_string(p).unwrap_or_default(),
                meta: std::fs::read_to_string(p.with_extension("json"))
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or(serde_json::Value::Null),
            })
            .collect()
    }

    /// Waits until at least `n` messages arrived.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let limit = Instant::now() + within;
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(
                Instant::now() < limit,
                "expected {n} messages within {within:?}, got {}",
                m.len()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A warning for inquiry `id`, received 10 minutes ago: what the notifier tests deliver.
pub fn warning_alert(id: &str) -> slawatch::notify::Alert {
    use slawatch_core::domain::{Channel, InquiryId, Language};
    let received = chrono::Utc::now() - chrono::Duration::minutes(10);
    slawatch::notify::Alert {
        kind: slawatch::notify::AlertKind::Warning,
        inquiry_id: InquiryId(id.into()),
        channel: Channel::Email,
        language: Language::En,
        customer: "c@example.org".into(),
        subject: "help".into(),
        received_at: received,
        deadline_at: received + chrono::Duration::minutes(15),
        due_at: received + chrono::Duration::minutes(10),
        link: "http://127.0.0.1:9750/".into(),
        actions: None,
        recipient: None,
        monitor: None,
    }
}
