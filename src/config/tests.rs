//! Configuration tests: every problem named with its key path, env overrides, secrets.

use std::path::{Path, PathBuf};

use super::*;

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("slawatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const MINIMAL: &str = r#"
[desk]
support_addresses = ["support@example.com"]
[sources.mail]
type = "maildir"
path = "maildir"
"#;

fn problems(result: Result<Settings, ConfigError>) -> Vec<String> {
    match result {
        Err(ConfigError::Invalid(p)) => p.iter().map(|p| p.to_string()).collect(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("configuration unexpectedly valid"),
    }
}

#[test]
fn the_bundled_default_configuration_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/slawatch.toml");
    let settings = load_with_env(&path, vec![]).unwrap();
    assert_eq!(settings.http.bind.to_string(), "127.0.0.1:9750");
    assert_eq!(settings.policies.default.target.as_secs(), 900);
    assert_eq!(settings.policies.default.warn_offsets[0].as_secs(), 600);
    assert!(matches!(settings.sources[0].kind, SourceKind::Maildir(_)));
}

#[test]
fn every_problem_is_reported_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        r#"
[http]
bind = "not an address"
[desk]
support_addresses = ["support@example.com", "nobody"]
default_language = "fr"
time_zone = "Mars/Olympus"
[policy]
target = "fifteen minutes"
warn = ["20m"]
colour = "red"
[sources.support]
type = "imap"
host = "imap.example.com"
security = "plain"
port = 70000
[sources.other]
type = "pop3"
"#,
    );
    let found = problems(load_with_env(&path, vec![]));
    let expect = [
        "http.bind:",
        "desk.support_addresses[1]:",
        "desk.default_language:",
        "desk.time_zone:",
        "policy.target:",
        "policy.colour: unknown key",
        "sources.support.security:",
        "sources.support.port:",
        "sources.support.username: is required",
        "sources.support.password: is required",
        "sources.other.type:",
    ];
    for e in expect {
        assert!(
            found.iter().any(|f| f.starts_with(e)),
            "missing `{e}` in {found:#?}"
        );
    }
}

#[test]
fn warn_offsets_must_come_before_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &format!("{MINIMAL}\n[policy]\ntarget = \"15m\"\nwarn = [\"20m\"]\n"),
    );
    let found = problems(load_with_env(&path, vec![]));
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("policy.warn:") && f.contains("not before the target")),
        "{found:?}"
    );
}

#[test]
fn environment_variables_override_file_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), MINIMAL);
    let env = vec![
        (
            "SLAWATCH__HTTP__BIND".to_string(),
            "127.0.0.1:19750".to_string(),
        ),
        ("SLAWATCH__POLICY__TARGET".to_string(), "10m".to_string()),
        (
            "SLAWATCH__SOURCES__MAIL__SCAN_INTERVAL".to_string(),
            "5s".to_string(),
        ),
    ];
    let s = load_with_env(&path, env).unwrap();
    assert_eq!(s.http.bind.port(), 19750);
    assert_eq!(s.policies.default.target.as_secs(), 600);
    let SourceKind::Maildir(m) = &s.sources[0].kind else {
        panic!()
    };
    assert_eq!(m.scan_interval.as_secs(), 5);
}

#[test]
fn secrets_come_from_files_or_the_environment_never_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let imap = r#"
[desk]
support_addresses = ["support@example.com"]
[sources.support]
type = "imap"
host = "imap.example.com"
username = "support@example.com"
"#;
    let inline = write(dir.path(), &format!("{imap}password = \"hunter2\"\n"));
    let found = problems(load_with_env(&inline, vec![]));
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("sources.support.password: secrets are not written")),
        "{found:?}"
    );
    assert!(
        found.iter().all(|f| !f.contains("hunter2")),
        "a problem message leaks the secret: {found:?}"
    );

    std::fs::write(dir.path().join("imap-password"), "s3cret\n").unwrap();
    let from_file = write(
        dir.path(),
        &format!("{imap}password_file = \"imap-password\"\n"),
    );
    let s = load_with_env(&from_file, vec![]).unwrap();
    let SourceKind::Imap(i) = &s.sources[0].kind else {
        panic!()
    };
    let ImapAuth::Password(password) = &i.auth else {
        panic!("password auth expected")
    };
    assert_eq!(password.expose(), "s3cret");
    assert_eq!(format!("{password:?}"), "<redacted>");
    let printed = serde_json::to_string(&s.effective()).unwrap();
    assert!(!printed.contains("s3cret") && printed.contains("<redacted>"));

    let bare = write(dir.path(), imap);
    let env = vec![(
        "SLAWATCH__SOURCES__SUPPORT__PASSWORD".to_string(),
        "from-env".to_string(),
    )];
    let s = load_with_env(&bare, env).unwrap();
    let SourceKind::Imap(i) = &s.sources[0].kind else {
        panic!()
    };
    let ImapAuth::Password(password) = &i.auth else {
        panic!("password auth expected")
    };
    assert_eq!(password.expose(), "from-env");
}

#[test]
fn business_hours_calendars_are_parsed_in_their_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &format!(
            "{MINIMAL}\n[policy.calendar]\ntime_zone = \"Asia/Riyadh\"\nsunday = [\"08:00-17:00\"]\nmonday = [\"08:00-12:00\", \"13:00-17:00\"]\nholidays = [\"2026-12-02\"]\n"
        ),
    );
    let s = load_with_env(&path, vec![]).unwrap();
    let slawatch_core::tracker::policy::Calendar::BusinessHours(h) = &s.policies.default.calendar
    else {
        panic!()
    };
    assert_eq!(h.time_zone, chrono_tz::Asia::Riyadh);
    assert_eq!(h.weekly[0].len(), 2);
    assert_eq!(h.weekly[6].len(), 1);
    assert_eq!(h.holidays.len(), 1);

    let bad = write(
        dir.path(),
        &format!("{MINIMAL}\n[policy.calendar]\nmonday = [\"9-5\"]\n"),
    );
    let found = problems(load_with_env(&bad, vec![]));
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("policy.calendar.time_zone: is required")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("policy.calendar.monday:")),
        "{found:?}"
    );
}

#[test]
fn plain_imap_is_refused_off_loopback_unless_explicitly_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[desk]\nsupport_addresses = [\"support@example.com\"]\n[sources.s]\ntype = \"imap\"\nusername = \"u\"\nsecurity = \"plain\"\n";
    let env = || {
        vec![(
            "SLAWATCH__SOURCES__S__PASSWORD".to_string(),
            "p".to_string(),
        )]
    };
    let remote = write(dir.path(), &format!("{base}host = \"imap.example.com\"\n"));
    assert!(
        problems(load_with_env(&remote, env()))
            .iter()
            .any(|f| f.starts_with("sources.s.security:"))
    );
    let local = write(dir.path(), &format!("{base}host = \"127.0.0.1\"\n"));
    assert!(load_with_env(&local, env()).is_ok());
    let allowed = write(
        dir.path(),
        &format!("{base}host = \"imap.example.com\"\nallow_insecure = true\n"),
    );
    assert!(load_with_env(&allowed, env()).is_ok());
}

#[test]
fn a_password_in_the_store_url_in_the_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &format!("{MINIMAL}\n[store]\nurl = \"postgres://app:pw@db:5432/x\"\n"),
    );
    let found = problems(load_with_env(&path, vec![]));
    assert!(
        found.iter().any(|f| f.starts_with("store.url: a password")),
        "{found:?}"
    );
    assert!(found.iter().all(|f| !f.contains(":pw@")), "{found:?}");
}

#[test]
fn postgres_urls_are_checked_and_the_password_comes_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let with = |url: &str| {
        write(
            dir.path(),
            &format!(
                "{MINIMAL}\n[store]\nurl = \"{url}\"\npassword_file = \"pw\"\nhead_file = \"state/head\"\n"
            ),
        )
    };
    std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
    std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
    let ca = dir.path().join("ca.pem");

    // TLS that does not verify, an unknown option and a missing CA file are named.
    for (url, says) in [
        (
            "postgres://app@db:5432/sla?sslmode=require",
            "sslmode=verify-full",
        ),
        (
            "postgres://app@db/sla?target_session_attrs=standby",
            "target_session_attrs",
        ),
        (
            "postgres://app@db/sla?sslrootcert=/nonexistent/ca.pem",
            "/nonexistent/ca.pem",
        ),
        ("postgres://app@db/sla?sslmod=verify-full", "unknown option"),
        ("postgres://app@db:port/sla", "port"),
    ] {
        let found = problems(load_with_env(&with(url), vec![]));
        assert!(
            found
                .iter()
                .any(|f| f.starts_with("store.url") && f.contains(says)),
            "{url}: {found:?}"
        );
    }

    // A multi-host URL with verified TLS is fine; the password is read from its file and
    // never printed; the head file is relative to the configuration.
    let url = format!(
        "postgres://app@db1:5432,db2:5432/sla?target_session_attrs=read-write&sslmode=verify-full&sslrootcert={}",
        ca.display()
    );
    let settings = load_with_env(&with(&url), vec![]).unwrap();
    assert_eq!(
        settings.store.password.as_ref().map(|p| p.expose()),
        Some("s3cret")
    );
    assert_eq!(settings.store.head_file, dir.path().join("state/head"));
    assert!(settings.warnings().iter().all(|w| !w.contains("store.url")));
    let shown = settings.effective().to_string();
    assert!(!shown.contains("s3cret"), "{shown}");

    // Plain TCP to another host is allowed, with a warning; to this host, without.
    let settings = load_with_env(&with("postgres://app@db.example/sla"), vec![]).unwrap();
    assert!(
        settings
            .warnings()
            .iter()
            .any(|w| w.contains("store.url") && w.contains("in clear")),
        "{:?}",
        settings.warnings()
    );
    let settings = load_with_env(&with("postgres://app@127.0.0.1:5433/sla"), vec![]).unwrap();
    assert!(settings.warnings().iter().all(|w| !w.contains("store.url")));
}

#[test]
fn a_public_bind_needs_a_token_unless_anonymous_access_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), MINIMAL);
    let env = |extra: &[(&str, &str)]| {
        let mut env = vec![(
            "SLAWATCH__HTTP__BIND".to_string(),
            "0.0.0.0:9750".to_string(),
        )];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    };
    let found = problems(load_with_env(&path, env(&[])));
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("http.bind: 0.0.0.0:9750 is reachable")
                && f.contains("http.token_file")
                && f.contains("http.read_token_file")
                && f.contains("http.allow_anonymous = true")),
        "{found:?}"
    );
    let anonymous = load_with_env(&path, env(&[("SLAWATCH__HTTP__ALLOW_ANONYMOUS", "true")]));
    let http_warnings = |s: crate::config::Settings| {
        s.warnings()
            .into_iter()
            .filter(|w| !w.starts_with("NO NOTIFIER"))
            .count()
    };
    assert_eq!(http_warnings(anonymous.unwrap()), 1);
    let with_tokens = load_with_env(
        &path,
        env(&[
            ("SLAWATCH__HTTP__TOKEN", "w-token"),
            ("SLAWATCH__HTTP__READ_TOKEN", "r-token"),
        ]),
    );
    assert_eq!(http_warnings(with_tokens.unwrap()), 0);
    assert_eq!(http_warnings(load_with_env(&path, vec![]).unwrap()), 0);
}

#[test]
fn two_roles_with_one_token_value_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), MINIMAL);
    let env = vec![
        ("SLAWATCH__HTTP__TOKEN".to_string(), "same".to_string()),
        (
            "SLAWATCH__HTTP__READ_TOKEN".to_string(),
            "other".to_string(),
        ),
        (
            "SLAWATCH__HTTP__METRICS_TOKEN".to_string(),
            "same".to_string(),
        ),
    ];
    let found = problems(load_with_env(&path, env));
    assert_eq!(
        found,
        vec!["http.metrics_token: has the same value as http.token: each role needs its own token"]
    );
}

#[test]
fn http_limits_have_defaults_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), MINIMAL);
    let s = load_with_env(&path, vec![]).unwrap();
    assert!(s.http.header_timeout <= std::time::Duration::from_secs(10));
    assert_eq!(s.http.request_timeout, DEFAULT_REQUEST_TIMEOUT);
    assert_eq!(s.http.max_connections as u64, DEFAULT_MAX_CONNECTIONS);
    let bad = write(
        dir.path(),
        &format!(
            "{MINIMAL}[http]\nheader_timeout = \"0s\"\nmax_connections = 0\npublic_url = \"ftp://x\"\nallowed_hosts = [\"Desk.Example\"]\n"
        ),
    );
    let found = problems(load_with_env(&bad, vec![]));
    for key in [
        "http.header_timeout",
        "http.max_connections",
        "http.public_url",
    ] {
        assert!(found.iter().any(|f| f.starts_with(key)), "{key}: {found:?}");
    }
}

#[test]
fn signed_links_need_a_long_enough_key_once_the_public_url_is_set() {
    let dir = tempfile::tempdir().unwrap();
    // No public URL: no key needed; links default to two hours, a take to half an hour.
    let s = load_with_env(&write(dir.path(), MINIMAL), vec![]).unwrap();
    assert!(s.http.link_key.is_none());
    assert_eq!(s.http.link_ttl, DEFAULT_LINK_TTL);
    assert_eq!(s.notify.take_for, std::time::Duration::from_secs(30 * 60));
    let public = format!("{MINIMAL}[http]\npublic_url = \"https://sla.example\"\n");
    let found = problems(load_with_env(&write(dir.path(), &public), vec![]));
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("http.link_key_file") && f.contains("required")),
        "{found:?}"
    );
    std::fs::write(dir.path().join("short.key"), "too short\n").unwrap();
    let short = format!("{public}link_key_file = \"short.key\"\n");
    let found = problems(load_with_env(&write(dir.path(), &short), vec![]));
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("http.link_key_file") && f.contains("9 bytes")),
        "{found:?}"
    );
    let missing = format!("{public}link_key_file = \"absent.key\"\n");
    let found = problems(load_with_env(&write(dir.path(), &missing), vec![]));
    assert!(
        found.iter().any(|f| f.starts_with("http.link_key_file")),
        "{found:?}"
    );
    let key = "k".repeat(40);
    std::fs::write(dir.path().join("link.key"), format!("{key}\n")).unwrap();
    let good = format!(
        "{public}link_key_file = \"link.key\"\nlink_ttl = \"30m\"\n[notify]\ntake_for = \"10m\"\n"
    );
    let s = load_with_env(&write(dir.path(), &good), vec![]).unwrap();
    assert_eq!(s.http.link_key.as_ref().map(|k| k.expose().len()), Some(40));
    assert_eq!(s.http.link_ttl, std::time::Duration::from_secs(1800));
    assert_eq!(s.notify.take_for, std::time::Duration::from_secs(600));
    // Never printed.
    let shown = s.effective().to_string();
    assert!(!shown.contains(&key), "{shown}");
    assert!(shown.contains("\"link_key\":\"<redacted>\""), "{shown}");
    let long = format!("{public}link_key_file = \"link.key\"\nlink_ttl = \"3d\"\n");
    let found = problems(load_with_env(&write(dir.path(), &long), vec![]));
    assert!(
        found.iter().any(|f| f.starts_with("http.link_ttl")),
        "{found:?}"
    );
}

#[test]
fn plain_http_and_plain_smtp_go_to_loopback_by_resolved_address() {
    for ok in [
        "https://api.twilio.com",
        "http://127.0.0.1:8080",
        "http://localhost:8080/x",
        "http://[::1]:8080",
    ] {
        assert!(https_or_loopback(ok), "{ok}");
    }
    for refused in [
        "http://localhost.evil.example",
        "http://127.0.0.1@evil.example",
        "http://127.0.0.1.evil.example",
        "http://192.0.2.1",
        "ftp://127.0.0.1",
        "127.0.0.1:80",
    ] {
        assert!(!https_or_loopback(refused), "{refused}");
    }
    assert!(resolves_to_loopback("localhost"));
    assert!(resolves_to_loopback("127.0.0.2"));
    assert!(resolves_to_loopback("[::1]"));
    assert!(!resolves_to_loopback("localhost.evil.example"));
    assert!(!resolves_to_loopback("192.0.2.1"));
}

#[test]
fn the_report_token_is_a_secret_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let inline = write(
        dir.path(),
        &format!("{MINIMAL}[http]\nreport_token = \"audit\"\n"),
    );
    let found = problems(load_with_env(&inline, vec![]));
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("http.report_token: secrets are not written")),
        "{found:?}"
    );

    std::fs::write(dir.path().join("report-token"), "from-file\n").unwrap();
    let from_file = write(
        dir.path(),
        &format!("{MINIMAL}[http]\nreport_token_file = \"report-token\"\n"),
    );
    let s = load_with_env(&from_file, vec![]).unwrap();
    assert_eq!(
        s.http.report_token.as_ref().map(Secret::expose),
        Some("from-file")
    );
    let printed = serde_json::to_string(&s.effective()).unwrap();
    assert!(!printed.contains("from-file"), "{printed}");

    let bare = write(dir.path(), MINIMAL);
    let s = load_with_env(&bare, vec![]).unwrap();
    assert!(s.http.report_token.is_none());
    let env = vec![(
        "SLAWATCH__HTTP__REPORT_TOKEN".to_string(),
        "from-env".to_string(),
    )];
    let s = load_with_env(&bare, env).unwrap();
    assert_eq!(
        s.http.report_token.as_ref().map(Secret::expose),
        Some("from-env")
    );
}

#[test]
fn the_contact_map_is_normalised_to_e164_and_off_unless_switched_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), MINIMAL);
    let settings = load_with_env(&path, vec![]).unwrap();
    assert!(!settings.contacts.answers_across_channels());
    assert_eq!(settings.contacts.customers(), 0);

    let path = write(
        dir.path(),
        &format!(
            "{MINIMAL}\n[contacts]\nanswer_across_channels = true\ndefault_region = \"ES\"\n\
             [[contacts.customers]]\nemail = \"Ana@Cliente.example\"\n\
             phones = [\"+34 600 12 34 56\", \"0034911222333\", \"600 765 432\"]\n"
        ),
    );
    let settings = load_with_env(&path, vec![]).unwrap();
    let contacts = &settings.contacts;
    assert!(contacts.answers_across_channels());
    assert_eq!(
        contacts.numbers_of("ana@cliente.example"),
        ["+34600123456", "+34911222333", "+34600765432"]
    );
    assert_eq!(contacts.emails_of("+34911222333"), ["ana@cliente.example"]);
    assert_eq!(
        settings.effective()["contacts"]["answer_across_channels"],
        true
    );
}

#[test]
fn contact_map_problems_are_named_by_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &format!(
            "{MINIMAL}\n[contacts]\nanswer_across_channels = \"yes please\"\ndefault_region = \"Atlantis\"\n\
             [[contacts.customers]]\nemail = \"ana\"\nphones = [\"+34600123456\", \"anonymous\", \"call me\"]\n\
             [[contacts.customers]]\nemail = \"bob@example.org\"\nphones = []\ncolour = \"red\"\n"
        ),
    );
    let found = problems(load_with_env(&path, vec![]));
    for expected in [
        "contacts.answer_across_channels",
        "contacts.default_region",
        "contacts.customers[0].email",
        "contacts.customers[0].phones[1]",
        "contacts.customers[0].phones[2]",
        "contacts.customers[1].phones",
        "contacts.customers[1].colour",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{expected} missing from {found:#?}"
        );
    }
    assert!(
        !found
            .iter()
            .any(|p| p.starts_with("contacts.customers[0].phones[0]")),
        "{found:#?}"
    );
}

#[test]
fn list_entries_that_can_never_match_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        r#"
[desk]
support_addresses = ["@example.com", "support@", ""]
internal_domains = ["ana@example.com", "example.com"]
ignore_senders = ["robots.example.net", "@robots.example.net"]
ignore_subjects = [" "]
auto_ack_subjects = [""]
[http]
allowed_hosts = ["https://desk.example", "desk.example:8080"]
[policy]
[[policy.rules]]
name = "vip"
senders = ["vip.example", "@vip.example"]
sources = ["mail", "nosuch"]
[sources.mail]
type = "maildir"
path = "m"
inbox_folders = [""]
"#,
    );
    let found = problems(load_with_env(&path, vec![]));
    for expect in [
        "desk.support_addresses[1]:",
        "desk.support_addresses[2]: is empty",
        "desk.internal_domains[0]:",
        "desk.ignore_senders[0]:",
        "desk.ignore_subjects[0]: is empty",
        "desk.auto_ack_subjects[0]: is empty",
        "policy.rules[0].senders[0]:",
        "policy.rules[0].sources[1]: `nosuch` is not a configured source",
        "http.allowed_hosts[0]:",
        "sources.mail.inbox_folders[0]: is empty",
    ] {
        assert!(
            found.iter().any(|f| f.starts_with(expect)),
            "{expect} not in {found:#?}"
        );
    }
    for fine in [
        "desk.support_addresses[0]",
        "desk.internal_domains[1]",
        "desk.ignore_senders[1]",
        "policy.rules[0].senders[1]",
        "policy.rules[0].sources[0]",
        "http.allowed_hosts[1]",
    ] {
        assert!(
            !found.iter().any(|f| f.starts_with(fine)),
            "{fine} in {found:#?}"
        );
    }
}

/// Arbitrary bytes, and the bundled files with bytes changed, through the configuration reader:
/// a list of problems, never a panic (`SLAWATCH_FUZZ_CASES` sets the cases).
mod fuzz {
    use proptest::prelude::*;

    use super::*;
    use crate::sources::calls::fuzz_config;

    const BUNDLED: &str = include_str!("../../config/slawatch.toml");
    const PHONE: &str = include_str!("../../config/phone-example.toml");

    fn check(text: &str) {
        let dir = Path::new("/nonexistent-slawatch-fuzz");
        let _ = load_text(text, dir, vec![]);
    }

    /// One of the bundled files with a few lines replaced by arbitrary or key-shaped ones.
    fn mutated() -> impl Strategy<Value = String> {
        let line = prop_oneof![
            any::<String>(),
            "[a-z_]{1,20} = (\"[ -~]{0,30}\"|[0-9-]{1,20}|\\[\"[ -~]{0,20}\"\\]|true|\\{\\})",
            "\\[\\[?[a-z_.]{1,30}\\]\\]?",
        ];
        (
            prop_oneof![Just(BUNDLED), Just(PHONE)],
            proptest::collection::vec((any::<prop::sample::Index>(), line), 1..4),
        )
            .prop_map(|(base, edits)| {
                let mut lines: Vec<String> = base.lines().map(String::from).collect();
                for (at, text) in edits {
                    let i = at.index(lines.len());
                    lines[i] = text;
                }
                lines.join("\n")
            })
    }

    proptest! {
        #![proptest_config(fuzz_config())]

        #[test]
        fn fuzz_config_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            check(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn fuzz_config_mutated(text in mutated()) {
            check(&text);
        }
    }
}

#[test]
fn audit_recipients_must_be_addresses_the_alert_mail_can_reach() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{MINIMAL}[audit]\nhead_recipients = [\"auditor@\", \"Audit <audit@example.com>\"]\n"
    );
    let problems = problems(load_with_env(&write(dir.path(), &text), vec![]));
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("audit.head_recipients[0]: `auditor@` is not an email address")),
        "{problems:?}"
    );
    assert!(
        !problems.iter().any(|p| p.contains("head_recipients[1]")),
        "{problems:?}"
    );
}

#[test]
fn a_notify_section_that_names_no_notifier_is_refused_and_none_at_all_is_a_loud_warning() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = "\n[notify.smtp]\nhost = \"smtp.example.com\"\nfrom = \"SLA <sla@example.com>\"\nto = [\"oncall@example.com\"]\n";
    // Configured but not named: it would never be used.
    let path = write(
        dir.path(),
        &format!("{MINIMAL}\n[notify]\nretry_for = \"1m\"{smtp}"),
    );
    let found = problems(load_with_env(&path, vec![]));
    assert!(
        found
            .iter()
            .any(|f| f.starts_with("notify.primary: names no notifier")
                && f.contains("[notify.smtp]")
                && f.contains("primary = [\"smtp\"]")),
        "{found:?}"
    );
    // Named: fine, and no warning about it.
    let path = write(
        dir.path(),
        &format!("{MINIMAL}\n[notify]\nprimary = [\"smtp\"]{smtp}"),
    );
    let settings = load_with_env(&path, vec![]).unwrap();
    assert!(
        !settings
            .warnings()
            .iter()
            .any(|w| w.starts_with("NO NOTIFIER")),
        "{:?}",
        settings.warnings()
    );
    // Nothing configured: the daemon runs, alerts are logged only, and it says so loudly.
    let path = write(dir.path(), MINIMAL);
    let settings = load_with_env(&path, vec![]).unwrap();
    assert!(
        settings
            .warnings()
            .iter()
            .any(|w| w.starts_with("NO NOTIFIER") && w.contains("pages NOBODY")),
        "{:?}",
        settings.warnings()
    );
}

#[test]
fn a_source_pages_when_silent_past_its_limit_which_must_exceed_its_own_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), MINIMAL);
    let settings = load_with_env(&path, vec![]).unwrap();
    for s in &settings.sources {
        assert_eq!(
            s.silent_after,
            s.kind.check_interval() + std::time::Duration::from_secs(120)
        );
        assert!(
            settings
                .effective()
                .to_string()
                .contains("\"silent_after\"")
        );
    }
    let name = settings.sources[0].name.to_uppercase();
    let found = problems(load_with_env(
        &path,
        vec![(
            format!("SLAWATCH__SOURCES__{name}__SILENT_AFTER"),
            "1ms".to_string(),
        )],
    ));
    assert!(
        found
            .iter()
            .any(|f| f.contains(".silent_after: must be longer")),
        "{found:?}"
    );
}

#[test]
fn a_lease_ttl_that_cannot_keep_a_pair_safe_and_prompt_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["1s", "2500ms", "61s", "10m"] {
        let path = write(
            dir.path(),
            &format!("{MINIMAL}\n[store]\nlease_ttl = \"{bad}\"\n"),
        );
        let found = problems(load_with_env(&path, vec![]));
        assert!(
            found.iter().any(|f| f.starts_with("store.lease_ttl: ")),
            "{bad}: {found:?}"
        );
    }
    let path = write(
        dir.path(),
        &format!("{MINIMAL}\n[store]\nlease_ttl = \"5s\"\n"),
    );
    let settings = load_with_env(&path, vec![]).unwrap();
    assert_eq!(settings.store.lease_ttl.as_secs(), 5);
    let path = write(dir.path(), MINIMAL);
    assert_eq!(
        load_with_env(&path, vec![]).unwrap().store.lease_ttl,
        super::settings::LEASE_TTL
    );
}
