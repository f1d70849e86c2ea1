//! A stand-in OAuth2 authority on loopback (Python, standard library only): a token endpoint
//! answering the shapes Microsoft's identity platform and Google document (form-encoded POST;
//! JSON `access_token`, `token_type`, `expires_in`, a rotated `refresh_token`), and an RFC 7662
//! introspection endpoint for Dovecot's `oauth2` passdb and the SMTP test server. No Microsoft
//! or Google server can run here: this plays their part, with tokens that expire in seconds.
//!
//! Grants accepted: `client_credentials` (client `slawatch-test` / `client-secret`),
//! `refresh_token` (starting with `refresh-1`, rotated on every use) and
//! `urn:ietf:params:oauth:grant-type:jwt-bearer` (an RS256 JWT whose signature is checked with
//! `openssl dgst` against the public key given). `POST /revoke` invalidates every token issued
//! so far; `GET /stats` returns the grants served and the introspections made.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const CLIENT_ID: &str = "slawatch-test";
pub const CLIENT_SECRET: &str = "client-secret";
pub const FIRST_REFRESH_TOKEN: &str = "refresh-1";

const AUTHORITY_PY: &str = r#"
import base64, json, os, secrets, subprocess, sys, tempfile, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

port, lifetime, username, public_key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
lock = threading.Lock()
tokens = {}        # access token -> expiry (epoch seconds)
state = {"refresh": "refresh-1", "n": 1, "grants": [], "introspections": 0}

def b64url(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

def jwt_ok(assertion):
    try:
        header, claims, sig = assertion.split(".")
        c = json.loads(b64url(claims))
        if json.loads(b64url(header)).get("alg") != "RS256":
            return False
        if not all(c.get(k) for k in ("iss", "sub", "scope", "aud", "iat", "exp")):
            return False
        with tempfile.TemporaryDirectory() as d:
            open(os.path.join(d, "in"), "wb").write((header + "." + claims).encode())
            open(os.path.join(d, "sig"), "wb").write(b64url(sig))
            r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", public_key,
                                "-signature", os.path.join(d, "sig"), os.path.join(d, "in")],
                               capture_output=True)
            return r.returncode == 0
    except Exception:
        return False

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with lock:
            self.reply(200, {"grants": state["grants"], "introspections": state["introspections"]})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length).decode()
        if self.headers.get("Content-Type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return self.reply(400, {"error": "invalid_request", "error_description": "form-encoded body expected"})
        form = {k: v[0] for k, v in parse_qs(raw).items()}
        with lock:
            if self.path == "/introspect":
                state["introspections"] += 1
                exp = tokens.get(form.get("token", ""))
                if exp is not None and exp > time.time():
                    return self.reply(200, {"active": True, "username": username})
                return self.reply(200, {"active": False})
            if self.path == "/revoke":
                tokens.clear()
                return self.reply(200, {})
            grant = form.get("grant_type")
            extra = {}
            if grant == "client_credentials":
                if form.get("client_id") != "slawatch-test" or form.get("client_secret") != "client-secret" or not form.get("scope"):
                    return self.reply(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
            elif grant == "refresh_token":
                if form.get("refresh_token") != state["refresh"] or form.get("client_id") != "slawatch-test":
                    return self.reply(400, {"error": "invalid_grant", "error_description": "AADSTS70008: The refresh token has expired or is invalid."})
                state["n"] += 1
                state["refresh"] = "refresh-%d" % state["n"]
                extra["refresh_token"] = state["refresh"]
            elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
                if not jwt_ok(form.get("assertion", "")):
                    return self.reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."})
            else:
                return self.reply(400, {"error": "unsupported_grant_type"})
            state["grants"].append(grant)
            token = "at-" + secrets.token_urlsafe(16)
            tokens[token] = time.time() + lifetime
            body = {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
            body.update(extra)
            return self.reply(200, body)

server = ThreadingHTTPServer(("127.0.0.1", port), H)
print("ready", flush=True)
server.serve_forever()
"#;

/// The running authority.
pub struct Authority {
    _dir: tempfile::TempDir,
    pub port: u16,
    /// A service account JSON key (RSA) whose JWTs the token endpoint accepts.
    pub service_account_file: PathBuf,
    child: Child,
}

impl Authority {
    /// Starts the authority; its access tokens live `lifetime_seconds` and introspect as
    /// belonging to `username`.
    pub fn start(lifetime_seconds: u64, username: &str) -> Authority {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("sa-key.pem");
        let public = dir.path().join("sa-pub.pem");
        run_openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            key.to_str().unwrap(),
        ]);
        run_openssl(&[
            "pkey",
            "-in",
            key.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let service_account_file = dir.path().join("service-account.json");
        std::fs::write(
            &service_account_file,
            serde_json::json!({
                "type": "service_account",
                "client_email": "slawatch@project.iam.gserviceaccount.com",
                "private_key": std::fs::read_to_string(&key).unwrap(),
                "token_uri": format!("http://127.0.0.1:{port}/token"),
            })
            .to_string(),
        )
        .unwrap();
        std::fs::write(dir.path().join("authority.py"), AUTHORITY_PY).unwrap();
        let mut child = Command::new("/usr/bin/python3")
            .arg(dir.path().join("authority.py"))
            .arg(port.to_string())
            .arg(lifetime_seconds.to_string())
            .arg(username)
            .arg(&public)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 is required by the OAuth2 tests (Debian: apt-get install python3)");
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        assert_eq!(
            line.trim(),
            "ready",
            "the OAuth2 test authority did not start"
        );
        Authority {
            _dir: dir,
            port,
            service_account_file,
            child,
        }
    }

    pub fn token_url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn introspection_url(&self) -> String {
        format!("http://127.0.0.1:{}/introspect", self.port)
    }

    /// The grant types served so far, in order.
    pub fn grants(&self) -> Vec<String> {
        let stats = self.get("/stats");
        stats["grants"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|g| g.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Invalidates every access token issued so far.
    pub fn revoke_all(&self) {
        let out = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=b'x=1', headers={'Content-Type': 'application/x-www-form-urlencoded'}))",
                &format!("http://127.0.0.1:{}/revoke", self.port),
            ])
            .status()
            .unwrap();
        assert!(out.success());
    }

    fn get(&self, path: &str) -> serde_json::Value {
        let out = Command::new("/usr/bin/python3")
            .args([
                "-c",
                "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())",
                &format!("http://127.0.0.1:{}{path}", self.port),
            ])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }
}

impl Drop for Authority {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}
