//! Evidence that cannot be forged: signed checkpoints, the published head, one writer per
//! ledger, read-only commands that never create a ledger, start-up verification and durable
//! acknowledgements. Tampering is done as an intruder would, with the `sqlite3` tool on the file,
//! and caught with `slawatch audit verify --public-key` (the auditor holds only the public key)
//! and with `--expect` (a head recorded earlier).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use slawatch::store::{Sealing, Signer, Store, link_hash, signing};
use slawatch_core::domain::InquiryId;
use slawatch_core::tracker::event::Event;
use support::daemon::Daemon;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
}

fn breached(i: usize) -> Event {
    Event::InquiryBreached {
        inquiry_id: InquiryId::from_display(format!("e{i}")),
        at: t0() + chrono::Duration::seconds(i as i64),
    }
}

/// A temp dir with a key pair, a ledger and a configuration pointing at both.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        signing::generate(&dir.path().join("keys")).unwrap();
        for folder in ["maildir", "maildir/.Sent"] {
            for sub in ["new", "cur", "tmp"] {
                std::fs::create_dir_all(dir.path().join(folder).join(sub)).unwrap();
            }
        }
        let world = World { dir };
        let text = config(world.dir.path(), true)
            .replace("{port}", &support::daemon::free_port().to_string());
        std::fs::write(world.config(), text).unwrap();
        world
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("slawatch.toml")
    }

    fn public_key(&self) -> PathBuf {
        self.dir.path().join("keys").join(signing::PUBLIC_KEY_FILE)
    }

    fn signer(&self) -> Signer {
        Signer::from_file(&self.dir.path().join("keys").join(signing::PRIVATE_KEY_FILE)).unwrap()
    }

    async fn store(&self) -> Store {
        Store::open(&format!("sqlite://{}", self.db().display()))
            .await
            .unwrap()
    }

    /// `commits` commits of `per_commit` events each, signed or not.
    async fn write(&self, commits: usize, per_commit: usize, signed: bool) {
        let store = self.store().await;
        let signer = self.signer();
        for c in 0..commits {
            let events: Vec<Event> = (0..per_commit).map(|i| breached(c * 10 + i)).collect();
            let sealing = Sealing {
                signer: signed.then_some(&signer),
                durable: false,
            };
            let at = t0()
                + chrono::Duration::minutes(c as i64 + 1)
                + chrono::Duration::minutes(60 * i64::from(signed));
            store
                .commit_sealed(at, &events, &[], sealing)
                .await
                .unwrap();
        }
        store.close().await;
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_slawatch"))
            .arg("--config")
            .arg(self.config())
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .expect("run slawatch")
    }

    /// `audit verify`, with the public key and/or an expected head: (exit code, stdout).
    fn verify(&self, key: bool, expect: Option<&str>) -> (i32, String) {
        let key_path = self.public_key();
        let mut args = vec!["audit", "verify"];
        if key {
            args.extend(["--public-key", key_path.to_str().unwrap()]);
        }
        if let Some(pin) = expect {
            args.extend(["--expect", pin]);
        }
        let out = self.cli(&args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    /// The head as `SEQ:HASH`.
    fn pin(&self) -> String {
        sqlite3(
            &self.db(),
            "SELECT seq || ':' || hash FROM ledger ORDER BY seq DESC LIMIT 1",
        )
    }

    /// Removes the append-only guards, as an intruder would, then runs `sql`.
    fn tamper(&self, sql: &str) {
        sqlite3(
            &self.db(),
            &format!(
                "DROP TRIGGER IF EXISTS ledger_no_update; DROP TRIGGER IF EXISTS ledger_no_delete; {sql}"
            ),
        );
    }

    /// Re-hashes every row from `from` on with the documented plain recipe, as a forger
    /// would; with `fix_checkpoints` also rewrites each checkpoint's `head_hash` (the signature
    /// cannot be redone without the private key).
    fn rehash_from(&self, from: i64, fix_checkpoints: bool) {
        let rows = sqlite3(
            &self.db(),
            &format!(
                "SELECT seq, hex(recorded_at), hex(kind), hex(payload) FROM ledger WHERE seq >= {from} ORDER BY seq"
            ),
        );
        let mut prev = sqlite3(
            &self.db(),
            &format!("SELECT hash FROM ledger WHERE seq = {}", from - 1),
        );
        let text = |h: &str| String::from_utf8(hex::decode(h).unwrap()).unwrap();
        let mut sql = String::new();
        for line in rows.lines() {
            let parts: Vec<&str> = line.split('|').collect();
            let seq: i64 = parts[0].parse().unwrap();
            let (recorded_at, kind, mut payload) = (text(parts[1]), text(parts[2]), text(parts[3]));
            if fix_checkpoints && kind == "ledger_checkpoint" {
                let mut v: serde_json::Value = serde_json::from_str(&payload).unwrap();
                v["head_hash"] = serde_json::Value::String(prev.clone());
                payload = serde_json::to_string(&v).unwrap();
            }
            let hash = link_hash(&prev, seq, &recorded_at, &kind, &payload);
            sql.push_str(&format!(
                "UPDATE ledger SET payload = '{}', prev_hash = '{prev}', hash = '{hash}' WHERE seq = {seq};",
                payload.replace('\'', "''")
            ));
            prev = hash;
        }
        self.tamper(&sql);
    }
}

fn config(dir: &Path, with_key: bool) -> String {
    let key = if with_key {
        format!(
            "signing_key_file = \"{}\"\n",
            dir.join("keys").join(signing::PRIVATE_KEY_FILE).display()
        )
    } else {
        String::new()
    };
    format!(
        r#"
[store]
url = "sqlite://{{dir}}/ledger.db"
{key}
[http]
bind = "127.0.0.1:{{port}}"
[desk]
support_addresses = ["support@example.com"]
[sources.mail]
type = "maildir"
path = "{{dir}}/maildir"
"#
    )
    .replace("{dir}", &dir.display().to_string())
}

/// Runs `sqlite3 db sql` and returns its trimmed output; panics if the tool is missing.
fn sqlite3(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .unwrap_or_else(|e| panic!("the sqlite3 command-line tool is required by this test: {e}"));
    assert!(
        out.status.success(),
        "sqlite3 failed on {sql:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn assert_fails(world: &World, key: bool, expect: Option<&str>, wanted: &str) {
    let (code, text) = world.verify(key, expect);
    assert_eq!(
        code, 1,
        "tampering not caught (key {key}, expect {expect:?}):\n{text}"
    );
    assert!(text.contains("BROKEN"), "{text}");
    assert!(text.contains(wanted), "expected {wanted:?} in:\n{text}");
}

#[tokio::test]
async fn a_signed_ledger_verifies_with_the_public_key_and_with_openssl() {
    let w = World::new();
    w.write(5, 3, true).await;
    let (code, text) = w.verify(true, Some(&w.pin()));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ledger intact: 20 events"), "{text}");
    assert!(
        text.contains("5 checkpoints, every signature valid"),
        "{text}"
    );
    assert!(!text.contains("not signed"), "{text}");

    // The documented recipe: the signed bytes and the signature out of the database, checked by
    // openssl with the public key alone.
    let script = format!(
        r#"set -e
db='{db}'; seq=8
sqlite3 "$db" "SELECT json_extract(payload, '$.signature') FROM ledger WHERE seq = $seq" | xxd -r -p > sig
sqlite3 "$db" "SELECT hex('slawatch-ledger-checkpoint-v1' || char(10) || json_extract(payload, '$.head_seq') || char(10) || json_extract(payload, '$.head_hash')) FROM ledger WHERE seq = $seq" | xxd -r -p > msg
openssl pkeyutl -verify -pubin -inkey '{key}' -rawin -in msg -sigfile sig"#,
        db = w.db().display(),
        key = w.public_key().display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(w.dir.path())
        .output()
        .expect("sh, sqlite3, xxd and openssl are required by this test");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.contains("Signature Verified Successfully"),
        "{said}"
    );
    assert_eq!(
        sqlite3(&w.db(), "SELECT kind FROM ledger WHERE seq = 8"),
        "ledger_checkpoint"
    );
}

#[tokio::test]
async fn an_edited_payload_is_caught_with_the_key_and_with_expect() {
    let w = World::new();
    w.write(4, 3, true).await;
    let pin = w.pin();
    w.tamper("UPDATE ledger SET payload = replace(payload, '\"e11\"', '\"e99\"'), inquiry_id = 'e99' WHERE seq = 6");
    assert_fails(&w, true, None, "seq 6");
    assert_fails(&w, false, Some(&pin), "seq 6");
}

#[tokio::test]
async fn a_chain_rehashed_with_the_plain_recipe_fails_at_the_next_checkpoint() {
    // The plain re-hash leaves the checkpoint naming the old hash.
    let w = World::new();
    w.write(4, 3, true).await;
    let pin = w.pin();
    w.tamper("UPDATE ledger SET payload = replace(payload, '\"e11\"', '\"e99\"'), inquiry_id = 'e99' WHERE seq = 6");
    w.rehash_from(6, false);
    assert_fails(&w, true, None, "seq 8");
    assert_fails(&w, false, Some(&pin), "");

    // A forger who also rewrites the checkpoints' head hashes gets a chain that links, but no
    // signature over it: the public key catches it at the first checkpoint after the change,
    // and the head recorded earlier is gone.
    let w = World::new();
    w.write(4, 3, true).await;
    let pin = w.pin();
    w.tamper("UPDATE ledger SET payload = replace(payload, '\"e11\"', '\"e99\"'), inquiry_id = 'e99' WHERE seq = 6");
    w.rehash_from(6, true);
    let (code, text) = w.verify(false, None);
    assert_eq!(code, 0, "without the key the forgery links: {text}");
    assert_fails(&w, true, None, "signature does not verify");
    let (_, text) = w.verify(true, None);
    assert!(text.contains("seq 8"), "{text}");
    assert_fails(&w, false, Some(&pin), "no longer has the expected hash");
}

#[tokio::test]
async fn a_deleted_middle_row_is_caught_with_the_key_and_with_expect() {
    let w = World::new();
    w.write(4, 3, true).await;
    let pin = w.pin();
    w.tamper("DELETE FROM ledger WHERE seq = 7");
    assert_fails(&w, true, None, "missing");
    assert_fails(&w, false, Some(&pin), "missing");
}

#[tokio::test]
async fn a_cut_tail_is_caught_with_the_key_and_with_expect() {
    // Cut inside the last commit: its checkpoint is gone, the rows before it are unsigned.
    let w = World::new();
    w.write(4, 3, true).await;
    let pin = w.pin();
    w.tamper("DELETE FROM ledger WHERE seq = 16");
    assert_fails(&w, true, None, "follow the last signed checkpoint");
    assert_fails(&w, false, Some(&pin), "tail was cut");

    // Cut at a commit boundary: every remaining row is signed, so only a head recorded earlier
    // shows it.
    let w = World::new();
    w.write(4, 3, true).await;
    let pin = w.pin();
    w.tamper("DELETE FROM ledger WHERE seq > 12");
    let (code, text) = w.verify(true, None);
    assert_eq!(code, 0, "{text}");
    assert_fails(&w, true, Some(&pin), "tail was cut");
    // The hash alone (without its seq) works as well.
    let hash = pin.split_once(':').unwrap().1.to_string();
    assert_fails(&w, false, Some(&hash), "not in the chain");
}

#[tokio::test]
async fn a_ledger_from_before_signing_stays_verifiable() {
    let w = World::new();
    w.write(3, 2, false).await;
    let (code, text) = w.verify(false, None);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("rows 1..=6 linked, not signed"), "{text}");
    // An auditor with the key wants signatures: none is a failure.
    assert_fails(&w, true, None, "no signed checkpoint");

    // Signing configured later: the old rows are reported as linked, not signed.
    w.write(2, 2, true).await;
    let (code, text) = w.verify(true, Some(&w.pin()));
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("rows 1..=6 linked, not signed (written before signing began)"),
        "{text}"
    );
    assert!(
        text.contains("2 checkpoints, every signature valid"),
        "{text}"
    );
}

#[tokio::test]
async fn a_checkpoint_signed_by_another_key_fails() {
    let w = World::new();
    w.write(2, 2, true).await;
    let other = tempfile::tempdir().unwrap();
    let (_, public, _) = signing::generate(other.path()).unwrap();
    let out = w.cli(&["audit", "verify", "--public-key", public.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("signature does not verify"));
}

#[test]
fn read_only_commands_never_create_a_missing_ledger() {
    let w = World::new();
    for args in [
        &["audit", "verify"][..],
        &["report", "--from", "2026-03-01", "--to", "2026-04-01"],
        &["inquiries"],
    ] {
        let out = w.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&format!("no ledger at {}", w.db().display())),
            "{args:?}: {err}"
        );
        assert!(!w.db().exists(), "{args:?} created the ledger");
    }
}

#[test]
fn one_daemon_per_ledger_and_readers_beside_it() {
    let w = World::new();
    let mut d = Daemon::configure(w.dir.path(), &config(w.dir.path(), true), &[]);
    d.start();
    d.wait_ready(Duration::from_secs(30));

    // A second daemon on the same ledger exits 1 naming the first.
    let out = d.cli(&["run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let pid = d.pid().unwrap();
    assert!(err.contains("in use by another slawatch"), "{err}");
    assert!(err.contains(&format!("pid {pid} on host ")), "{err}");
    assert!(err.contains(" since 20"), "{err}");

    // Read-only commands work beside it.
    let key = w.public_key();
    let out = d.cli(&["audit", "verify", "--public-key", key.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = d.cli(&["inquiries"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d.cli(&[
        "report",
        "--from",
        "2026-01-01",
        "--to",
        "2027-01-01",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The head is published: log line at start-up, gauge.
    let seq = d.metric("slawatch_ledger_head_seq").expect("head gauge");
    assert!(seq >= 3.0, "{seq}");
    assert!(d.log().contains("Ledger head at start-up."), "{}", d.log());
    assert!(d.stop());
    assert!(d.log().contains("Ledger head at shutdown."), "{}", d.log());
    // The start-up verification is in the ledger, and the head is signed.
    assert_eq!(
        d.sql("SELECT json_extract(payload, '$.scope') FROM ledger WHERE kind = 'ledger_verified'"),
        "full"
    );
    assert_eq!(
        d.sql("SELECT kind FROM ledger ORDER BY seq DESC LIMIT 1"),
        "ledger_checkpoint"
    );

    // Killed, the lock goes with the process: the next start is not blocked.
    d.start();
    d.kill9();
    d.start();
    assert!(d.stop());
}

#[test]
fn a_broken_ledger_stops_the_start_unless_accepted_which_is_recorded() {
    let w = World::new();
    let mut d = Daemon::configure(w.dir.path(), &config(w.dir.path(), true), &[]);
    d.start();
    assert!(d.stop());
    w.tamper("UPDATE ledger SET payload = replace(payload, '\"version\":\"', '\"version\":\"9') WHERE kind = 'monitor_started'");

    let out = d.cli(&["run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the ledger is broken at seq 2"), "{err}");
    assert!(err.contains("--accept-broken-ledger"), "{err}");

    d.start_with(&["--accept-broken-ledger"]);
    assert!(d.stop());
    let accepted = d.sql(
        "SELECT json_extract(payload, '$.accepted_break.seq') FROM ledger WHERE kind = 'ledger_verified' ORDER BY seq DESC LIMIT 1",
    );
    assert_eq!(accepted, "2");
}

#[test]
fn acknowledged_pushes_survive_a_kill_9_right_after_the_answer() {
    let w = World::new();
    let mut d = Daemon::configure(w.dir.path(), &config(w.dir.path(), true), &[]);
    d.start();
    d.wait_ready(Duration::from_secs(30));
    let started = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let n = 50;
    let mut events = 0;
    for i in 0..n {
        let body = format!(
            r#"{{"call_id": "durable-{i}", "event": "ended", "outcome": "voicemail", "number": "+34600{i:06}", "started_at": "{started}"}}"#
        );
        let (status, answer) =
            support::daemon::request(d.addr, "POST", "/api/v1/calls", Some(&body));
        assert_eq!(status, 202, "{answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        events += answer["events"].as_u64().unwrap();
    }
    let (status, answer) = support::daemon::request(
        d.addr,
        "POST",
        &format!(
            "/api/v1/inquiries/{}/ack",
            d.inquiries()[0]["id"].as_str().unwrap()
        ),
        Some(r#"{"by": "Laila", "via": "phone"}"#),
    );
    assert_eq!(status, 200, "{answer}");
    d.kill9();
    assert!(events >= n, "every push caused an event ({events})");
    assert_eq!(
        d.sql("SELECT count(*) FROM ledger WHERE payload LIKE '%durable-%' AND kind = 'inquiry_opened'"),
        n.to_string()
    );
    assert_eq!(
        d.sql("SELECT count(*) FROM ledger WHERE kind = 'inquiry_responded'"),
        "1"
    );
    let key = w.public_key();
    let out = d.cli(&["audit", "verify", "--public-key", key.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_head_is_mailed_to_the_auditors() {
    use support::smtp::{PASSWORD, SmtpServer, USER};
    let smtp = SmtpServer::start();
    let w = World::new();
    let text = format!(
        r#"{base}
[audit]
head_recipients = ["auditor@audit.example"]
[notify]
primary = ["smtp"]
[notify.smtp]
host = "127.0.0.1"
port = {port}
security = "starttls"
ca_file = "{ca}"
username = "{USER}"
from = "SLA monitor <slawatch@example.com>"
to = ["oncall@example.com"]
timeout = "5s"
"#,
        base = config(w.dir.path(), true),
        port = smtp.starttls_port,
        ca = smtp.cert.display(),
    );
    let mut d = Daemon::configure(
        w.dir.path(),
        &text,
        &[("SLAWATCH__NOTIFY__SMTP__PASSWORD", PASSWORD)],
    );
    d.start();
    d.wait_for("the head mail", Duration::from_secs(30), |_| {
        !smtp.messages().is_empty()
    });
    assert!(d.stop());
    let mail = &smtp.messages()[0];
    let subject = mail.header("Subject").unwrap_or_default();
    assert!(subject.contains("slawatch ledger head"), "{subject}");
    let body = mail.body();
    assert!(body.contains("--expect "), "{body}");
    // The mailed pin is a head the ledger still holds.
    let pin = body
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("slawatch audit verify --public-key ledger-signing.pub --expect ")
        })
        .expect("the pin in the mail")
        .trim()
        .to_string();
    let key = w.public_key();
    let out = d.cli(&[
        "audit",
        "verify",
        "--public-key",
        key.to_str().unwrap(),
        "--expect",
        &pin,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
