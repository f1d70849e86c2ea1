//! A private Dovecot (IMAP, STARTTLS, IMAPS, IDLE, LMTP) for integration tests.
//!
//! Each instance lives in its own 0755 temp dir (as root, Dovecot's children run as the `dovecot`
//! user and must traverse it) on free 127.0.0.1 ports, with a self-signed certificate for
//! `localhost`/`127.0.0.1`, one passwd-file user, a `\Sent` folder and fast IDLE notifications.
//! A missing `dovecot` or `openssl` is a loud failure, never a skipped test. Stopped (SIGTERM,
//! SIGKILL after 5 s) and deleted on drop.
//!
//! Everything here is synchronous std code, usable from tests, benches and async tests alike.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "secret";

const DOVECOT: &str = "/usr/sbin/dovecot";

pub struct Dovecot {
    dir: tempfile::TempDir,
    child: Option<Child>,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub lmtp_port: u16,
    uid: u32,
    gid: u32,
}

fn require_tool(path: &str, what: &str) {
    let ok = Command::new(path)
        .arg(if path.ends_with("openssl") {
            "version"
        } else {
            "--version"
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{what} is required by the integration tests but `{path}` cannot be run; install it \
         (Debian: apt-get install dovecot-imapd dovecot-lmtpd openssl)"
    );
}

fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    let mut out = [0u16; N];
    for (i, l) in listeners.iter().enumerate() {
        out[i] = l.local_addr().unwrap().port();
    }
    out
}

/// The user Dovecot's processes run as: `dovecot` when we are root (imap-login refuses root),
/// ourselves otherwise.
fn run_user(dir: &Path) -> (String, u32, u32) {
    let probe = dir.join(".probe");
    std::fs::write(&probe, b"").unwrap();
    let meta = std::fs::metadata(&probe).unwrap();
    std::fs::remove_file(&probe).unwrap();
    if meta.uid() != 0 {
        let name = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        return (name, meta.uid(), meta.gid());
    }
    let out = Command::new("getent")
        .args(["passwd", "dovecot"])
        .output()
        .expect("getent");
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    let f: Vec<&str> = line.trim().split(':').collect();
    assert!(
        f.len() >= 4,
        "running as root needs the `dovecot` system user (installed with dovecot-core)"
    );
    (
        "dovecot".into(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
    )
}

/// Runs `openssl` in `dir`; fails the test with its stderr when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throw-away CA (`ca.pem`) and a server certificate it signed (`cert.pem`, `key.pem`) for
/// `localhost` and `127.0.0.1`. Not one self-signed certificate: webpki refuses a CA
/// certificate used as the server's own.
pub fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-days",
        "3650",
        "-subj",
        "/CN=slawatch test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "server.csr",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            "server.ext",
            "-out",
            "cert.pem",
        ],
    );
}

/// One self-signed certificate made the usual way (`openssl req -x509`, which marks it a CA) as
/// the server's `cert.pem`/`key.pem`, for `subject` (`/CN=…`) with `extra` `-addext` options
/// (e.g. a subjectAltName); returns its path.
pub fn make_self_signed_certificate(dir: &Path, subject: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "30",
        "-subj",
        subject,
        "-keyout",
        "key.pem",
        "-out",
        "cert.pem",
    ];
    for e in extra {
        args.extend(["-addext", e]);
    }
    openssl(dir, &args);
    dir.join("cert.pem")
}

/// The SHA-256 fingerprint of a PEM certificate as openssl prints it (`AB:CD:…`).
pub fn openssl_fingerprint(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl x509 -fingerprint failed");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    text.split_once('=')
        .map(|(_, f)| f.to_string())
        .unwrap_or_else(|| panic!("unexpected fingerprint output {text:?}"))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() && !path.is_symlink() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

impl Dovecot {
    /// Configures and starts an instance; panics with the log if it does not become ready.
    pub fn start() -> Dovecot {
        let mut d = Dovecot::configure();
        d.launch();
        d
    }

    /// Configures an instance without starting it, so a test or bench can fill the Maildir
    /// first ([`Dovecot::maildir_drop`]); then call [`Dovecot::launch`].
    pub fn configure() -> Dovecot {
        Dovecot::configure_with(None)
    }

    /// Like [`Dovecot::start`], and the user may also log in with `XOAUTH2` / `OAUTHBEARER`:
    /// an `oauth2` passdb checks each token at `introspection_url` (RFC 7662, `POST token=…`),
    /// which must answer `{"active": true, "username": "alice"}`.
    pub fn start_with_oauth2(introspection_url: &str) -> Dovecot {
        let mut d = Dovecot::configure_with(Some(introspection_url));
        d.launch();
        d
    }

    fn configure_with(introspection_url: Option<&str>) -> Dovecot {
        require_tool(DOVECOT, "Dovecot");
        require_tool("openssl", "The openssl command-line tool");
        let dir = tempfile::Builder::new()
            .prefix("slawatch-dovecot-")
            .permissions(std::fs::Permissions::from_mode(0o755))
            .tempdir()
            .expect("create temp dir");
        let [imap_port, imaps_port, lmtp_port] = free_ports::<3>();
        let (user, uid, gid) = run_user(dir.path());
        let d = dir.path().display().to_string();
        for sub in ["run", "state", "home", &format!("home/{USER}")] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        make_certificates(dir.path());
        std::fs::write(
            dir.path().join("passwd"),
            format!("{USER}:{{PLAIN}}{PASSWORD}::::{d}/home/{USER}\n"),
        )
        .unwrap();
        let (mechanisms, oauth2_passdb) = match introspection_url {
            None => ("plain login", String::new()),
            Some(url) => {
                std::fs::write(
                    dir.path().join("dovecot-oauth2.conf.ext"),
                    format!(
                        "introspection_mode = post\nintrospection_url = {url}\n\
                         force_introspection = yes\nusername_attribute = username\n\
                         active_attribute = active\nactive_value = true\ntimeout_msecs = 5000\n"
                    ),
                )
                .unwrap();
                (
                    "plain login xoauth2 oauthbearer",
                    format!(
                        "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  \
                         args = {d}/dovecot-oauth2.conf.ext\n}}\n"
                    ),
                )
            }
        };
        let conf = format!(
            r#"instance_name = slawatch-test-{imap_port}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
debug_log_path = {d}/dovecot.log
listen = 127.0.0.1
protocols = imap lmtp
default_internal_user = {user}
default_internal_group = {user}
default_login_user = {user}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_uid = {uid}
mail_gid = {gid}
mail_location = maildir:~/Maildir
ssl = yes
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_username_format = %Ln
auth_failure_delay = 0
mailbox_idle_check_interval = 1 secs
imap_idle_notify_interval = 2 mins
{oauth2_passdb}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  prefix =
  mailbox Sent {{
    special_use = \Sent
    auto = subscribe
  }}
  mailbox Drafts {{
    special_use = \Drafts
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \Trash
    auto = subscribe
  }}
}}
service imap-login {{
  chroot =
  user = {user}
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
  chroot =
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@localhost
}}
"#
        );
        std::fs::write(dir.path().join("dovecot.conf"), conf).unwrap();
        if uid != 0 {
            chown_tree(dir.path(), uid, gid);
        }
        let check = Command::new(DOVECOT)
            .arg("-c")
            .arg(dir.path().join("dovecot.conf"))
            .arg("-n")
            .output()
            .expect("run dovecot -n");
        assert!(
            check.status.success(),
            "dovecot rejected the test configuration: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        Dovecot {
            dir,
            child: None,
            imap_port,
            imaps_port,
            lmtp_port,
            uid,
            gid,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    /// Replaces the server's certificate by a self-signed one (see
    /// [`make_self_signed_certificate`]) before [`Dovecot::launch`]; returns its path.
    pub fn use_self_signed_certificate(&self, subject: &str, extra: &[&str]) -> PathBuf {
        let cert = make_self_signed_certificate(self.dir.path(), subject, extra);
        self.own_files();
        cert
    }

    /// Gives every file of the instance to its run user again (after a test wrote some).
    pub fn own_files(&self) {
        if self.uid != 0 {
            chown_tree(self.dir.path(), self.uid, self.gid);
        }
    }

    /// The test CA's certificate: trust it to verify the server (`localhost`, `127.0.0.1`).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Starts the server and waits until a real LOGIN succeeds (the banner comes earlier).
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        let _ = std::fs::remove_file(self.dir.path().join("run/anvil-auth-penalty"));
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dovecot");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.child.take().unwrap().stderr {
                    let _ = e.read_to_string(&mut err);
                }
                panic!(
                    "dovecot exited ({status}) during start-up: {err}\n--- dovecot.log ---\n{}",
                    self.log()
                );
            }
            if self.try_login().is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "dovecot did not accept LOGIN within 10 s (as root, every parent of {} must \
                     be traversable by the dovecot user)\n--- dovecot.log ---\n{}",
                    self.dir.path().display(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_login(&self) -> std::io::Result<()> {
        let mut c = ImapClient::connect(self.imap_port)?;
        c.command(&format!("LOGIN {USER} {PASSWORD}"))?;
        let _ = c.command("LOGOUT");
        Ok(())
    }

    /// Stops the server: SIGTERM, SIGKILL after 5 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Runs `doveadm -c CONF args…` and returns stdout; panics on failure.
    pub fn doveadm(&self, args: &[&str]) -> String {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .output()
            .expect("run doveadm");
        assert!(
            out.status.success(),
            "doveadm {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Disconnects every session of the user (`* BYE`).
    pub fn kick(&self) {
        self.doveadm(&["kick", USER]);
    }

    pub fn set_uidvalidity(&self, folder: &str, n: u32) {
        self.doveadm(&[
            "mailbox",
            "update",
            "-u",
            USER,
            "--uid-validity",
            &n.to_string(),
            folder,
        ]);
    }

    /// Flags of every message in `folder`, one string per message.
    pub fn flags(&self, folder: &str) -> Vec<String> {
        self.doveadm(&["fetch", "-u", USER, "flags", "mailbox", folder])
            .lines()
            .filter_map(|l| l.strip_prefix("flags:").map(|f| f.trim().to_string()))
            .collect()
    }

    /// APPENDs a message with the given INTERNALDATE over IMAP (plain, loopback).
    pub fn append(&self, folder: &str, raw: &[u8], internaldate: chrono::DateTime<chrono::Utc>) {
        let mut c = ImapClient::connect(self.imap_port).expect("connect for APPEND");
        c.command(&format!("LOGIN {USER} {PASSWORD}")).unwrap();
        let date = internaldate.format("%d-%b-%Y %H:%M:%S +0000");
        c.append(folder, &date.to_string(), raw).unwrap();
        let _ = c.command("LOGOUT");
    }

    /// Delivers a message over LMTP to the user's INBOX.
    pub fn lmtp_deliver(&self, raw: &[u8]) {
        let s = TcpStream::connect(("127.0.0.1", self.lmtp_port)).expect("connect LMTP");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let expect = |r: &mut BufReader<TcpStream>, code: &str| loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(
                line.starts_with(code),
                "LMTP: expected {code}, got {line:?}"
            );
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        };
        expect(&mut r, "220");
        for (cmd, code) in [
            ("LHLO localhost", "250"),
            ("MAIL FROM:<sender@example.org>", "250"),
            (&format!("RCPT TO:<{USER}@localhost>") as &str, "250"),
            ("DATA", "354"),
        ] {
            write!(w, "{cmd}\r\n").unwrap();
            expect(&mut r, code);
        }
        for line in raw.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                w.write_all(b".").unwrap();
            }
            w.write_all(line).unwrap();
        }
        if !raw.ends_with(b"\n") {
            w.write_all(b"\r\n").unwrap();
        }
        w.write_all(b".\r\n").unwrap();
        expect(&mut r, "250");
        let _ = w.write_all(b"QUIT\r\n");
    }

    /// The on-disk Maildir of a folder (`INBOX` is the root, others are `.Name`).
    pub fn maildir(&self, folder: &str) -> PathBuf {
        let root = self.dir.path().join("home").join(USER).join("Maildir");
        if folder.eq_ignore_ascii_case("INBOX") {
            root
        } else {
            root.join(format!(".{}", folder.replace('/', ".")))
        }
    }

    /// Writes a message straight into the Maildir (tmp, then rename into `new`); its mtime
    /// becomes the INTERNALDATE. Works before [`Dovecot::launch`] too (fast bulk fixtures).
    pub fn maildir_drop(&self, folder: &str, name: &str, raw: &[u8], mtime: SystemTime) {
        let md = self.maildir(folder);
        for sub in ["tmp", "new", "cur"] {
            let p = md.join(sub);
            if !p.exists() {
                std::fs::create_dir_all(&p).unwrap();
                self.own(&md);
            }
        }
        let tmp = md.join("tmp").join(name);
        let f = std::fs::File::create(&tmp).unwrap();
        (&f).write_all(raw).unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        if self.uid != 0 {
            let _ = std::os::unix::fs::chown(&tmp, Some(self.uid), Some(self.gid));
        }
        std::fs::rename(&tmp, md.join("new").join(name)).unwrap();
    }

    fn own(&self, md: &Path) {
        if self.uid == 0 {
            return;
        }
        let home = self.dir.path().join("home");
        let mut p = md.to_path_buf();
        while p.starts_with(&home) {
            let _ = std::os::unix::fs::chown(&p, Some(self.uid), Some(self.gid));
            for sub in ["tmp", "new", "cur"] {
                let _ = std::os::unix::fs::chown(p.join(sub), Some(self.uid), Some(self.gid));
            }
            if !p.pop() {
                break;
            }
        }
    }

    /// Total bytes Dovecot reports having sent to IMAP clients (`out=` of logged-out sessions).
    pub fn imap_bytes_sent(&self) -> u64 {
        self.log()
            .lines()
            .filter(|l| l.contains("imap(") && l.contains(" out="))
            .filter_map(|l| {
                let rest = &l[l.find(" out=")? + 5..];
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal blocking IMAP client for fixtures (plain, loopback).
pub struct ImapClient {
    r: BufReader<TcpStream>,
    w: TcpStream,
    tag: u32,
}

impl ImapClient {
    pub fn connect(port: u16) -> std::io::Result<ImapClient> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut c = ImapClient {
            r: BufReader::new(s.try_clone()?),
            w: s,
            tag: 0,
        };
        let greeting = c.line()?;
        if !greeting.starts_with("* OK") {
            return Err(std::io::Error::other(format!("greeting {greeting:?}")));
        }
        Ok(c)
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        Ok(l)
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("F{}", self.tag)
    }

    fn finish(&mut self, tag: &str) -> std::io::Result<Vec<String>> {
        let mut lines = Vec::new();
        loop {
            let l = self.line()?;
            if let Some(rest) = l.strip_prefix(tag) {
                if rest.trim_start().starts_with("OK") {
                    return Ok(lines);
                }
                return Err(std::io::Error::other(format!("{tag}{rest}")));
            }
            lines.push(l);
        }
    }

    /// Runs a command; returns the untagged lines or an error for NO/BAD.
    pub fn command(&mut self, cmd: &str) -> std::io::Result<Vec<String>> {
        let tag = self.next_tag();
        write!(self.w, "{tag} {cmd}\r\n")?;
        self.finish(&tag)
    }

    pub fn append(&mut self, folder: &str, date: &str, raw: &[u8]) -> std::io::Result<()> {
        let tag = self.next_tag();
        write!(
            self.w,
            "{tag} APPEND \"{folder}\" () \"{date}\" {{{}}}\r\n",
            raw.len()
        )?;
        let cont = self.line()?;
        if !cont.starts_with('+') {
            return Err(std::io::Error::other(format!("APPEND: {cont:?}")));
        }
        self.w.write_all(raw)?;
        self.w.write_all(b"\r\n")?;
        self.finish(&tag).map(|_| ())
    }
}

/// A conversation's mail as a mail client writes it: `In-Reply-To` the last parent and
/// `References` the chain; no `Message-ID` when `id` is empty.
pub fn conversation_mail(
    from: &str,
    to: &str,
    id: &str,
    subject: &str,
    parents: &[String],
) -> Vec<u8> {
    let mut head = format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n");
    if !id.is_empty() {
        head.push_str(&format!("Message-ID: {id}\r\n"));
    }
    if let Some(parent) = parents.last() {
        head.push_str(&format!(
            "In-Reply-To: {parent}\r\nReferences: {}\r\n",
            parents.join(" ")
        ));
    }
    format!("{head}\r\nHello, about {subject}: my order has not arrived yet.\r\n").into_bytes()
}
