//! Loading: TOML file, then `SLAWATCH__SECTION__KEY` environment overrides, then one validating
//! pass into [`Settings`]. Every problem is reported with its key path; nothing starts with a
//! half-valid configuration.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};
use slawatch_core::desk::DeskSettings;
use slawatch_core::domain::{Channel, Language};
use slawatch_core::tracker::policy::{BusinessHours, Calendar, Policy, PolicyRule, PolicySet};

use super::reader::{Problem, Problems, Table};
use super::settings::*;
use crate::store::redact_url;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{} problem(s) in the configuration:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// Days an IMAP source backfills on its first start when `since` is not set.
pub const DEFAULT_BACKFILL_DAYS: i64 = 7;

/// A client that has not sent its request headers within this is dropped: a person's browser or
/// a scraper sends them in milliseconds, and a slow client holds a connection at most this long.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on one request up to its response's head: every route but the report answers from
/// memory or one ledger read, in well under a second.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound on `GET /api/v1/report` up to its response's head: a year's ledger is replayed and
/// folded before the first byte.
pub const DEFAULT_REPORT_TIMEOUT: Duration = Duration::from_secs(600);

/// Connections served at once: far above a desk's wallboards, scrapers and API clients, far
/// below the default limit of 1024 open files.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 256;

/// How long a signed link in an alert lasts: long enough to be tapped during the night it was
/// sent for; re-notifications bring fresh ones, and an old mail found the next day opens nothing.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(2 * 3600);

/// Longest `http.link_ttl` accepted: links stand in for a token, so they stay short-lived.
pub const MAX_LINK_TTL: Duration = Duration::from_secs(24 * 3600);

/// Environment prefix: `SLAWATCH__HTTP__BIND=0.0.0.0:9750` overrides `[http] bind`.
pub const ENV_PREFIX: &str = "SLAWATCH";

/// Loads and validates the configuration at `path`, with environment overrides.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("SLAWATCH__"))
        .collect();
    load_with_env(path, env)
}

/// Like [`load`], with the environment given (tests).
pub fn load_with_env(path: &Path, env: Vec<(String, String)>) -> Result<Settings, ConfigError> {
    let file_source = config::File::from(path)
        .format(config::FileFormat::Toml)
        .required(true);
    let base = path.parent().unwrap_or(Path::new("."));
    load_source(file_source, path, base, env)
}

/// Like [`load_with_env`] for configuration text (fuzzing; relative paths resolve from `base`).
pub fn load_text(
    text: &str,
    base: &Path,
    env: Vec<(String, String)>,
) -> Result<Settings, ConfigError> {
    let source = config::File::from_str(text, config::FileFormat::Toml);
    load_source(source, &base.join("slawatch.toml"), base, env)
}

fn load_source<S>(
    file_source: S,
    path: &Path,
    base: &Path,
    env: Vec<(String, String)>,
) -> Result<Settings, ConfigError>
where
    S: config::Source + Clone + Send + Sync + 'static,
{
    let read_err = |e: config::ConfigError| ConfigError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file_only: Value = config::Config::builder()
        .add_source(file_source.clone())
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(read_err)?;
    let env_source = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .source(Some(env.into_iter().collect()));
    let merged: Value = config::Config::builder()
        .add_source(file_source)
        .add_source(env_source)
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(read_err)?;
    validate(&merged, &file_only, base).map_err(ConfigError::Invalid)
}

fn validate(root: &Value, file_only: &Value, base: &Path) -> Result<Settings, Vec<Problem>> {
    let mut p = Problems::default();
    let mut top = Table::root(root);

    let mut t = top.table("store", &mut p);
    let store = StoreSettings {
        url: t
            .string("url", &mut p)
            .unwrap_or_else(|| "sqlite://data/slawatch.db".to_string()),
        password: secret(&mut t, "password", file_only, false, base, &mut p),
        signing_key_file: t.string("signing_key_file", &mut p).map(|f| base.join(f)),
        head_file: t
            .string("head_file", &mut p)
            .map(|f| base.join(f))
            .unwrap_or_else(|| PathBuf::from("slawatch-ledger.head")),
        accept_broken_ledger: false,
        working_window: t.duration("working_window", super::settings::WORKING_WINDOW, &mut p),
        snapshot_every: t.duration("snapshot_every", super::settings::SNAPSHOT_EVERY, &mut p),
        lease_ttl: t.duration("lease_ttl", super::settings::LEASE_TTL, &mut p),
    };
    // Shorter, a renewal's round trip and a commit's lock wait eat the lease; longer, a dead
    // active is replaced later than the 15-minute promise can afford.
    if !(3..=60).contains(&store.lease_ttl.as_secs()) || store.lease_ttl.subsec_nanos() != 0 {
        p.push(
            "store.lease_ttl",
            "must be whole seconds from 3s to 60s: the standby takes over this long after the active died",
        );
    }
    // Shorter than an hour, evidence read a little late (a reply fetched after a reconnect)
    // would send conversations back and forth between memory and the store all day.
    if store.working_window < std::time::Duration::from_secs(3600) {
        p.push(
            "store.working_window",
            "must be at least 1h: conversations with nothing open stay in memory this long",
        );
    }
    if store.snapshot_every < std::time::Duration::from_secs(60) {
        p.push(
            "store.snapshot_every",
            "must be at least 1m: each snapshot writes the whole working set",
        );
    }
    if (store.url.starts_with("postgres://") || store.url.starts_with("postgresql://"))
        && let Err(reason) = crate::store::postgres::Target::parse(&store.url)
    {
        p.push(
            "store.url",
            format!("`{}`: {reason}", redact_url(&store.url)),
        );
    }
    if let Some(file) = &store.signing_key_file
        && let Err(e) = crate::store::Signer::from_file(file)
    {
        p.push("store.signing_key_file", e.to_string());
    }
    let url_in_file = file_only
        .get("store")
        .and_then(|s| s.get("url"))
        .and_then(Value::as_str);
    if url_in_file.is_some_and(|u| redact_url(u) != u) {
        p.push(
            "store.url",
            "a password is written in the URL in the configuration file: use password_file or SLAWATCH__STORE__PASSWORD",
        );
    }
    if !(store.url.starts_with("sqlite:")
        || store.url.starts_with("postgres://")
        || store.url.starts_with("postgresql://"))
    {
        p.push(
            "store.url",
            format!(
                "`{}` must start with sqlite: or postgres://",
                redact_url(&store.url)
            ),
        );
    }
    t.finish(&mut p);

    let mut t = top.table("audit", &mut p);
    let audit = AuditSettings {
        head_recipients: t.string_list("head_recipients", &mut p),
    };
    for (i, a) in audit.head_recipients.iter().enumerate() {
        // The same check as the alert mail's recipients: what the SMTP notifier can send to.
        if !a.trim().is_empty() && a.parse::<lettre::message::Mailbox>().is_err() {
            p.push(
                format!("audit.head_recipients[{i}]"),
                format!("`{a}` is not an email address"),
            );
        }
    }
    t.finish(&mut p);

    let mut t = top.table("http", &mut p);
    let bind_text = t
        .string("bind", &mut p)
        .unwrap_or_else(|| "127.0.0.1:9750".to_string());
    let bind = bind_text.parse::<SocketAddr>().unwrap_or_else(|_| {
        p.push(
            "http.bind",
            format!("`{bind_text}` is not an address like 127.0.0.1:9750"),
        );
        SocketAddr::from(([127, 0, 0, 1], 9750))
    });
    let token = secret(&mut t, "token", file_only, false, base, &mut p);
    let read_token = secret(&mut t, "read_token", file_only, false, base, &mut p);
    let report_token = secret(&mut t, "report_token", file_only, false, base, &mut p);
    let metrics_token = secret(&mut t, "metrics_token", file_only, false, base, &mut p);
    let allow_anonymous = t.bool("allow_anonymous", false, &mut p);
    let public_url_given = t.string("public_url", &mut p);
    let public_url_set = public_url_given.is_some();
    let public_url = public_url_given.unwrap_or_else(|| format!("http://{bind}"));
    if reqwest::Url::parse(&public_url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .and_then(|u| u.host_str().map(str::to_string))
        .is_none()
    {
        p.push(
            "http.public_url",
            format!("`{public_url}` is not an http:// or https:// URL with a host"),
        );
    }
    let allowed_hosts: Vec<String> = t
        .string_list("allowed_hosts", &mut p)
        .into_iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    // The Host header is a host (and port): a scheme, path or space never matches it.
    for (i, h) in allowed_hosts.iter().enumerate() {
        if h.contains("://")
            || h.contains('/')
            || h.contains(char::is_whitespace)
            || h.contains('@')
        {
            p.push(
                format!("http.allowed_hosts[{i}]"),
                format!("`{h}` is not a host name (no scheme, path or user)"),
            );
        }
    }
    let header_timeout = t.duration("header_timeout", DEFAULT_HEADER_TIMEOUT, &mut p);
    let request_timeout = t.duration("request_timeout", DEFAULT_REQUEST_TIMEOUT, &mut p);
    let report_timeout = t.duration("report_timeout", DEFAULT_REPORT_TIMEOUT, &mut p);
    for (key, value) in [
        ("header_timeout", header_timeout),
        ("request_timeout", request_timeout),
        ("report_timeout", report_timeout),
    ] {
        if value.is_zero() {
            p.push(t.path(key), "must be longer than zero");
        }
    }
    let link_key = secret(&mut t, "link_key", file_only, false, base, &mut p);
    match &link_key {
        Some(k) if k.expose().len() < crate::http::links::MIN_KEY_BYTES => p.push(
            "http.link_key_file",
            format!(
                "the link key is {} bytes: at least {} are needed (e.g. `head -c 32 /dev/urandom | base64 > link.key`)",
                k.expose().len(),
                crate::http::links::MIN_KEY_BYTES
            ),
        ),
        None if public_url_set => p.push(
            "http.link_key_file",
            "is required when http.public_url is set: alerts carry signed links to the inquiry's page and actions (e.g. `head -c 32 /dev/urandom | base64 > link.key`)",
        ),
        _ => {}
    }
    let link_ttl = t.duration("link_ttl", DEFAULT_LINK_TTL, &mut p);
    if link_ttl.is_zero() || link_ttl > MAX_LINK_TTL {
        p.push(
            "http.link_ttl",
            format!(
                "must be longer than zero and at most {}: links in alerts are short-lived",
                humantime::format_duration(MAX_LINK_TTL)
            ),
        );
    }
    let max_connections = t.u64("max_connections", DEFAULT_MAX_CONNECTIONS, &mut p);
    if max_connections == 0 {
        p.push("http.max_connections", "must be at least 1");
    }
    t.finish(&mut p);
    let http = HttpSettings {
        bind,
        token,
        read_token,
        report_token,
        metrics_token,
        allow_anonymous,
        public_url: public_url.trim_end_matches('/').to_string(),
        allowed_hosts,
        link_key,
        link_ttl,
        header_timeout,
        request_timeout,
        report_timeout,
        max_connections: usize::try_from(max_connections.max(1)).unwrap_or(usize::MAX),
    };
    check_http_access(&http, &mut p);

    let mut t = top.table("desk", &mut p);
    let lower = |v: Vec<String>| {
        v.into_iter()
            .map(|s| s.trim().to_lowercase())
            .collect::<Vec<_>>()
    };
    let support_addresses = lower(t.string_list("support_addresses", &mut p));
    if support_addresses.is_empty() {
        p.push(
            "desk.support_addresses",
            "at least one support address is required (the desk answers from it)",
        );
    }
    let check =
        |key: &str, list: &[String], problem: fn(&str) -> Option<String>, p: &mut Problems| {
            for (i, entry) in list.iter().enumerate() {
                if let Some(why) = problem(entry) {
                    p.push(format!("desk.{key}[{i}]"), why);
                }
            }
        };
    use slawatch_core::desk::{address_entry_problem, domain_entry_problem};
    check(
        "support_addresses",
        &support_addresses,
        address_entry_problem,
        &mut p,
    );
    let default_language = match t.string("default_language", &mut p) {
        None => Language::En,
        Some(s) => Language::parse(&s).unwrap_or_else(|| {
            p.push(
                "desk.default_language",
                format!("`{s}` is not one of en, es, ar"),
            );
            Language::En
        }),
    };
    let time_zone = time_zone(&mut t, "time_zone", &mut p).unwrap_or(chrono_tz::UTC);
    let desk = DeskSettings {
        support_addresses,
        internal_domains: lower(t.string_list("internal_domains", &mut p)),
        ignore_senders: lower(t.string_list("ignore_senders", &mut p)),
        ignore_subjects: lower(t.string_list("ignore_subjects", &mut p)),
        auto_ack_subjects: lower(t.string_list("auto_ack_subjects", &mut p)),
        default_language,
        time_zone,
    };
    check(
        "internal_domains",
        &desk.internal_domains,
        domain_entry_problem,
        &mut p,
    );
    check(
        "ignore_senders",
        &desk.ignore_senders,
        address_entry_problem,
        &mut p,
    );
    t.finish(&mut p);

    let policies = policies(&mut top, &mut p);
    let sources = sources(&mut top, file_only, base, &mut p);
    // A rule naming a source that is not configured can never match.
    for (i, rule) in policies.rules.iter().enumerate() {
        for (j, name) in rule.sources.iter().enumerate() {
            if !sources.iter().any(|s| &s.name == name) {
                p.push(
                    format!("policy.rules[{i}].sources[{j}]"),
                    format!("`{name}` is not a configured source"),
                );
            }
        }
    }
    let contacts = std::sync::Arc::new(super::calls::contacts(&mut top, &mut p));
    let notify = super::notify::notify(
        &mut top,
        base,
        &mut |t, key, p| secret(t, key, file_only, false, base, p),
        &mut p,
    );
    if !audit.head_recipients.is_empty() && notify.smtp.is_none() {
        p.push(
            "audit.head_recipients",
            "the daily head mail goes out through [notify.smtp], which is not configured",
        );
    }
    if let Some(oncall) = &notify.oncall {
        let names: Vec<&str> = policies.all().map(|pol| pol.name.as_str()).collect();
        super::oncall::check_routes(oncall, &names, &mut p);
    }
    top.finish(&mut p);

    if p.0.is_empty() {
        Ok(Settings {
            store,
            audit,
            http,
            desk,
            policies,
            sources,
            notify,
            contacts,
        })
    } else {
        Err(p.0)
    }
}

fn policies(top: &mut Table, p: &mut Problems) -> PolicySet {
    let mut t = top.table("policy", p);
    let default = policy(&mut t, "policy", &Policy::default(), p);
    let mut rules = Vec::new();
    if let Some(list) = t.raw("rules") {
        match list {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let path = format!("policy.rules[{i}]");
                    let mut r = Table::at(&path, item);
                    let mut rule_policy = policy(&mut r, &path, &default, p);
                    match r.string("name", p) {
                        Some(n) => rule_policy.name = n,
                        None => p.push(
                            format!("{path}.name"),
                            "is required (it names the policy version)",
                        ),
                    }
                    let channels = r
                        .string_list("channels", p)
                        .into_iter()
                        .filter_map(|c| {
                            Channel::parse(&c).or_else(|| {
                                p.push(
                                    format!("{path}.channels"),
                                    format!("`{c}` is not email or phone"),
                                );
                                None
                            })
                        })
                        .collect();
                    let languages = r
                        .string_list("languages", p)
                        .into_iter()
                        .filter_map(|l| {
                            Language::parse(&l).or_else(|| {
                                p.push(
                                    format!("{path}.languages"),
                                    format!("`{l}` is not one of en, es, ar"),
                                );
                                None
                            })
                        })
                        .collect();
                    let sources = r.string_list("sources", p);
                    let senders: Vec<String> = r
                        .string_list("senders", p)
                        .into_iter()
                        .map(|s| s.trim().to_lowercase())
                        .collect();
                    for (i, s) in senders.iter().enumerate() {
                        if let Some(why) = slawatch_core::desk::address_entry_problem(s) {
                            p.push(format!("{path}.senders[{i}]"), why);
                        }
                    }
                    r.finish(p);
                    rules.push(PolicyRule {
                        channels,
                        languages,
                        sources,
                        senders,
                        policy: rule_policy,
                    });
                }
            }
            _ => p.push(
                "policy.rules",
                "must be a list of tables ([[policy.rules]])",
            ),
        }
    }
    t.finish(p);
    PolicySet { default, rules }
}

/// The policy keys of a table, defaults from `base`.
fn policy(t: &mut Table, path: &str, base: &Policy, p: &mut Problems) -> Policy {
    let target = t.duration("target", base.target, p);
    if target.is_zero() {
        p.push(format!("{path}.target"), "must be longer than zero");
    }
    let mut warn_offsets: Vec<Duration> = if t.raw("warn").is_some() {
        t.string_list("warn", p)
            .iter()
            .filter_map(|w| match super::reader::parse_duration(w) {
                Ok(d) if d < target => Some(d),
                Ok(_) => {
                    p.push(
                        format!("{path}.warn"),
                        format!(
                            "`{w}` is not before the target ({})",
                            humantime::format_duration(target)
                        ),
                    );
                    None
                }
                Err(e) => {
                    p.push(format!("{path}.warn"), e);
                    None
                }
            })
            .collect()
    } else {
        base.warn_offsets.clone()
    };
    // Warnings are numbered by their order in time.
    warn_offsets.sort();
    warn_offsets.dedup();
    let renotify_every = t.duration("renotify_every", base.renotify_every, p);
    let renotify_max = t
        .u64("renotify_max", base.renotify_max as u64, p)
        .min(u32::MAX as u64) as u32;
    let next_reply = t.bool("next_reply", base.next_reply, p);
    let calendar = match t.raw("calendar") {
        None => base.calendar.clone(),
        Some(Value::String(s)) if s == "24x7" => Calendar::Always,
        Some(Value::Object(_)) => {
            let mut c = t.table("calendar", p);
            let cal = business_hours(&mut c, p);
            c.finish(p);
            cal.map(Calendar::BusinessHours).unwrap_or(Calendar::Always)
        }
        Some(_) => {
            p.push(
                format!("{path}.calendar"),
                "must be \"24x7\" or a table with time_zone, weekday hours and holidays",
            );
            Calendar::Always
        }
    };
    let name = base.name.clone();
    Policy {
        name,
        target,
        warn_offsets,
        renotify_every,
        renotify_max,
        calendar,
        next_reply,
    }
}

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

fn business_hours(t: &mut Table, p: &mut Problems) -> Option<BusinessHours> {
    let tz = time_zone(t, "time_zone", p);
    if tz.is_none() && t.raw("time_zone").is_none() {
        p.push(
            t.path("time_zone"),
            "is required for business hours (e.g. \"Europe/Madrid\")",
        );
    }
    let mut weekly: [Vec<(NaiveTime, NaiveTime)>; 7] = Default::default();
    for (i, day) in WEEKDAYS.iter().enumerate() {
        for range in t.string_list(day, p) {
            let parsed = range.split_once('-').and_then(|(a, b)| {
                let a = NaiveTime::parse_from_str(a.trim(), "%H:%M").ok()?;
                let b = match b.trim() {
                    "24:00" => NaiveTime::MIN,
                    b => NaiveTime::parse_from_str(b, "%H:%M").ok()?,
                };
                Some((a, b))
            });
            match parsed {
                Some(r) => weekly[i].push(r),
                None => p.push(
                    t.path(day),
                    format!("`{range}` is not a range like 09:00-17:00"),
                ),
            }
        }
        weekly[i].sort();
    }
    if weekly.iter().all(Vec::is_empty) {
        p.push(
            t.path("monday"),
            "business hours need at least one open range in the week",
        );
    }
    let mut holidays = std::collections::BTreeSet::new();
    for h in t.string_list("holidays", p) {
        match NaiveDate::parse_from_str(h.trim(), "%Y-%m-%d") {
            Ok(d) => {
                holidays.insert(d);
            }
            Err(_) => p.push(
                t.path("holidays"),
                format!("`{h}` is not a date like 2026-12-25"),
            ),
        }
    }
    Some(BusinessHours {
        time_zone: tz?,
        weekly,
        holidays,
    })
}

fn time_zone(t: &mut Table, key: &str, p: &mut Problems) -> Option<Tz> {
    let s = t.string(key, p)?;
    s.parse::<Tz>()
        .map_err(|_| {
            p.push(
                t.path(key),
                format!("`{s}` is not an IANA time zone such as Europe/Madrid"),
            )
        })
        .ok()
}

fn sources(
    top: &mut Table,
    file_only: &Value,
    base: &Path,
    p: &mut Problems,
) -> Vec<SourceSettings> {
    let mut t = top.table("sources", p);
    let mut out = Vec::new();
    for name in t.keys() {
        let mut s = t.table(&name, p);
        let kind = s.string("type", p);
        let kind = match kind.as_deref() {
            Some("imap") => imap(&mut s, &name, file_only, base, p).map(SourceKind::Imap),
            Some("maildir") => maildir(&mut s, base, p).map(SourceKind::Maildir),
            Some(kind @ ("asterisk_cdr" | "asterisk_queue_log" | "csv_calls")) => {
                super::calls::call_log(&mut s, kind, base, p).map(SourceKind::CallLog)
            }
            Some("twilio") => {
                super::calls::twilio(&mut s, file_only, base, p).map(SourceKind::Twilio)
            }
            Some(other) => {
                p.push(
                    s.path("type"),
                    format!("`{other}` is not a source type (imap, maildir, asterisk_cdr, asterisk_queue_log, csv_calls, twilio)"),
                );
                None
            }
            None => {
                p.push(s.path("type"), "is required (imap or maildir)");
                None
            }
        };
        let silent_after = kind.as_ref().map(|k| {
            let limit = s.duration("silent_after", k.silent_after(), p);
            if limit <= k.check_interval() {
                p.push(
                    s.path("silent_after"),
                    format!(
                        "must be longer than the source's own check interval ({}), or it pages while the source works",
                        humantime::format_duration(k.check_interval())
                    ),
                );
            }
            limit
        });
        s.finish(p);
        if let (Some(kind), Some(silent_after)) = (kind, silent_after) {
            out.push(SourceSettings {
                name,
                kind,
                silent_after,
            });
        }
    }
    t.finish(p);
    take_queue_pickups_from_queue_log(&mut out);
    if out.is_empty() && p.0.is_empty() {
        p.push(
            "sources",
            "no source configured: add [sources.NAME] with type = \"imap\" or \"maildir\"",
        );
    }
    out
}

/// With a queue_log source, a queue call's pickup is its `CONNECT`: the CDR's `answer` of a
/// `Queue()` row may be the IVR's `Answer()` (`phone-feeds.md` §1.2), so CDR sources stop
/// taking it as the pickup — whichever feed is read first, the same pickup time wins.
fn take_queue_pickups_from_queue_log(sources: &mut [SourceSettings]) {
    use crate::sources::calls::lines::CallLogFormat;
    let queue_log = sources
        .iter()
        .any(|s| matches!(&s.kind, SourceKind::CallLog(c) if c.format == CallLogFormat::QueueLog));
    for s in sources {
        if let SourceKind::CallLog(c) = &mut s.kind
            && matches!(c.format, CallLogFormat::Cdr { .. })
        {
            c.lines.queue_pickups_from_queue_log = queue_log;
        }
    }
}

fn imap(
    s: &mut Table,
    name: &str,
    file_only: &Value,
    base: &Path,
    p: &mut Problems,
) -> Option<ImapSettings> {
    let host = s.required_string("host", p);
    let security = match s.string("security", p).as_deref() {
        None | Some("tls") => ImapSecurity::Tls,
        Some("starttls") => ImapSecurity::Starttls,
        Some("plain") => ImapSecurity::Plain,
        Some(other) => {
            p.push(
                s.path("security"),
                format!("`{other}` is not tls, starttls or plain"),
            );
            ImapSecurity::Tls
        }
    };
    let default_port = if security == ImapSecurity::Tls {
        993
    } else {
        143
    };
    let port = s.u64("port", default_port, p);
    if port == 0 || port > 65535 {
        p.push(s.path("port"), format!("{port} is not a TCP port"));
    }
    let allow_insecure = s.bool("allow_insecure", false, p);
    if security == ImapSecurity::Plain
        && !allow_insecure
        && host.as_deref().is_some_and(|h| !resolves_to_loopback(h))
    {
        p.push(s.path("security"), "plain IMAP sends the password in clear: only to a loopback host, or set allow_insecure = true");
    }
    let tls = super::tls::trust(s, base, p);
    let username = s.required_string("username", p);
    use crate::oauth2::Mechanism;
    let mechanism = super::oauth2::mechanism(s, &[Mechanism::XOAuth2, Mechanism::OAuthBearer], p);
    let mut secret_of =
        |t: &mut Table, key: &str, p: &mut Problems| secret(t, key, file_only, false, base, p);
    let oauth2 = super::oauth2::oauth2(
        s,
        mechanism.is_some(),
        username.as_deref(),
        base,
        &mut secret_of,
        p,
    );
    let auth = match (mechanism, oauth2) {
        (Some(mechanism), Some(oauth2)) => Some(ImapAuth::OAuth2 { mechanism, oauth2 }),
        (Some(_), None) => None,
        (None, _) => secret(s, "password", file_only, true, base, p).map(ImapAuth::Password),
    };
    if mechanism.is_some() && (s.raw("password").is_some() || s.raw("password_file").is_some()) {
        p.push(
            s.path("password"),
            "is not used with an OAuth2 auth: remove it",
        );
    }
    let mut inbox_folders = s.string_list("inbox_folders", p);
    if inbox_folders.is_empty() {
        inbox_folders.push("INBOX".to_string());
    }
    let sent_folders = s.string_list("sent_folders", p);
    // Without `since`, the first start backfills one week: enough for replies to recent mail,
    // without turning years of old unanswered mail into fresh "missed" inquiries.
    let since = match s.string("since", p).as_deref() {
        None => Some(Utc::now() - chrono::Duration::days(DEFAULT_BACKFILL_DAYS)),
        Some("all") => None,
        Some(d) => match NaiveDate::parse_from_str(d, "%Y-%m-%d") {
            Ok(d) => Some(Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN))),
            Err(_) => {
                p.push(
                    s.path("since"),
                    format!("`{d}` is not a date like 2026-11-01, or \"all\""),
                );
                None
            }
        },
    };
    let idle_timeout = s.duration("idle_timeout", Duration::from_secs(5 * 60), p);
    if idle_timeout > Duration::from_secs(29 * 60) {
        p.push(
            s.path("idle_timeout"),
            "must be at most 29m (RFC 2177); 5m finds dead connections in time",
        );
    }
    let poll_interval = s.duration("poll_interval", Duration::from_secs(60), p);
    let body_prefix_bytes = s.u64("body_prefix_bytes", 2048, p).min(1 << 20) as u32;
    let timeout = s.duration("timeout", Duration::from_secs(60), p);
    let _ = name;
    Some(ImapSettings {
        host: host?,
        port: port as u16,
        security,
        allow_insecure,
        tls,
        username: username?,
        auth: auth?,
        inbox_folders,
        sent_folders,
        since,
        idle_timeout,
        poll_interval,
        body_prefix_bytes,
        timeout,
    })
}

fn maildir(s: &mut Table, base: &Path, p: &mut Problems) -> Option<MaildirSettings> {
    let path = s.required_string("path", p).map(|f| base.join(f));
    let mut inbox_folders = s.string_list("inbox_folders", p);
    if inbox_folders.is_empty() {
        inbox_folders.push("INBOX".to_string());
    }
    let mut sent_folders = s.string_list("sent_folders", p);
    if sent_folders.is_empty() {
        sent_folders.push("Sent".to_string());
    }
    let scan_interval = s.duration("scan_interval", Duration::from_secs(2), p);
    Some(MaildirSettings {
        path: path?,
        inbox_folders,
        sent_folders,
        scan_interval,
    })
}

/// A secret from `KEY_file` (a path) or the environment (`SLAWATCH__…__KEY`), never written in the
/// configuration file itself.
pub(super) fn secret(
    t: &mut Table,
    key: &str,
    file_only: &Value,
    required: bool,
    base: &Path,
    p: &mut Problems,
) -> Option<Secret> {
    let path = t.path(key);
    let in_file = path
        .split('.')
        .try_fold(file_only, |v, k| v.get(k))
        .is_some();
    let file_key = format!("{key}_file");
    let from_file = t.string(&file_key, p);
    let direct = t.string(key, p);
    if in_file {
        p.push(&path, format!("secrets are not written in the configuration file: use {file_key} or the environment variable {}", env_name(&path)));
        return None;
    }
    if let Some(v) = direct {
        return Some(Secret::new(v));
    }
    if let Some(f) = from_file {
        let f = base.join(f);
        return match std::fs::read_to_string(&f) {
            Ok(v) => Some(Secret::new(v.trim_end_matches(['\r', '\n']))),
            Err(e) => {
                p.push(
                    t.path(&file_key),
                    format!("cannot read {}: {e}", f.display()),
                );
                None
            }
        };
    }
    if required {
        p.push(
            &path,
            format!(
                "is required: set {file_key} or the environment variable {}",
                env_name(&path)
            ),
        );
    }
    None
}

fn env_name(path: &str) -> String {
    format!("{ENV_PREFIX}__{}", path.replace('.', "__").to_uppercase())
}

/// Whether `host` (a name or an IP literal, IPv6 with or without brackets) reaches this machine
/// only: an IP literal must be loopback, a name must resolve, and every address it resolves to
/// must be loopback. `localhost.evil.example` resolves elsewhere (or not at all) and is refused.
pub fn resolves_to_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    use std::net::ToSocketAddrs as _;
    match (host, 0).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// Whether `url` is `https://…`, or `http://…` to a host that resolves to loopback only. The URL
/// is parsed, so `http://127.0.0.1@evil.example` is a URL to `evil.example`.
pub fn https_or_loopback(url: &str) -> bool {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" => u.host_str().is_some(),
        Ok(u) if u.scheme() == "http" => u.host_str().is_some_and(resolves_to_loopback),
        _ => false,
    }
}

/// The access rules of `[http]`: a public bind needs tokens, and no two tokens are the same
/// (a shared value would make the roles one).
fn check_http_access(http: &HttpSettings, p: &mut Problems) {
    if !http.bind.ip().is_loopback() && !http.any_token() && !http.allow_anonymous {
        p.push(
            "http.bind",
            format!(
                "{} is reachable from other hosts and no token is set: anyone who can reach it could read customer addresses and acknowledge inquiries. Set http.token_file and http.read_token_file (or SLAWATCH__HTTP__TOKEN, SLAWATCH__HTTP__READ_TOKEN), or http.allow_anonymous = true",
                http.bind
            ),
        );
    }
    let tokens = http.tokens();
    for (i, (a, x)) in tokens.iter().enumerate() {
        for (b, y) in &tokens[i + 1..] {
            if let (Some(x), Some(y)) = (x, y)
                && x.expose() == y.expose()
            {
                p.push(
                    *b,
                    format!("has the same value as {a}: each role needs its own token"),
                );
            }
        }
        if x.as_ref().is_some_and(|x| x.expose().trim().is_empty()) {
            p.push(*a, "is empty");
        }
    }
}

impl Settings {
    /// Things that are allowed but probably not meant: printed by `check-config`, logged by `run`.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.http.bind.ip().is_loopback() && !self.http.any_token() {
            out.push(format!(
                "http.bind {} is reachable from other hosts and no token is set (http.allow_anonymous = true): anyone who can reach it can read customer addresses and acknowledge inquiries",
                self.http.bind
            ));
        }
        if !self.notify.pages_someone() {
            out.push(
                "NO NOTIFIER: [notify] names none, so every warning and breach is only written to the log and pages NOBODY (recorded as not delivered); configure [notify.smtp], [notify.webhook] or [notify.alertmanager] and name it in notify.primary"
                    .to_string(),
            );
        }
        if let Ok(target) = crate::store::postgres::Target::parse(&self.store.url)
            && target.sends_in_clear()
        {
            out.push(format!(
                "store.url {} connects without TLS to a host that is not this one: the password and the ledger cross the network in clear; add sslmode=verify-full (and sslrootcert=/path/ca.pem for a private CA)",
                redact_url(&self.store.url)
            ));
        }
        if self.http.any_token() && self.http.token.is_none() {
            out.push(
                "http.token is not set while another token is: acknowledgements and pushed calls are refused over HTTP"
                    .to_string(),
            );
        }
        out
    }

    /// What each call-log source can join across feeds (`check-config` prints it): records of
    /// one call from several feeds must be one inquiry.
    pub fn call_joins(&self) -> Vec<String> {
        use crate::sources::calls::cdr_csv::CdrLayout;
        use crate::sources::calls::join::JOIN_TOLERANCE_SECONDS;
        use crate::sources::calls::lines::CallLogFormat;
        let queue_log = self.sources.iter().any(
            |s| matches!(&s.kind, SourceKind::CallLog(c) if c.format == CallLogFormat::QueueLog),
        );
        let mut out = Vec::new();
        for s in &self.sources {
            let SourceKind::CallLog(c) = &s.kind else {
                continue;
            };
            let name = &s.name;
            let CallLogFormat::Cdr { layout, .. } = &c.format else {
                if let CallLogFormat::Generic(_) = &c.format {
                    out.push(format!(
                        "sources.{name}: a mapped CSV joins no other feed: read it alone for its calls"
                    ));
                }
                continue;
            };
            let with = if queue_log {
                "; a queue call's pickup is queue_log's CONNECT, never the CDR's answer (with an IVR in front it is the IVR's Answer())"
            } else {
                " (no queue_log source is configured); a queue call's pickup is the CDR's answer, which is the IVR's Answer() when the dialplan answers before Queue(): add the queue_log source to take it from CONNECT"
            };
            out.push(match layout {
                CdrLayout::Columns21 => format!(
                    "sources.{name}: layout 21 writes linkedid and uniqueid: its records join queue_log by call id, transfers included{with}"
                ),
                CdrLayout::Uniqueid17 | CdrLayout::Columns18 => format!(
                    "sources.{name}: layout {} writes uniqueid: its records join queue_log by call id; a transferred call's second leg is a record of its own{with}",
                    layout.as_str()
                ),
                CdrLayout::Columns16 | CdrLayout::Userfield17 => format!(
                    "sources.{name}: layout {} has no uniqueid: its records join queue_log by caller number and start time (±{JOIN_TOLERANCE_SECONDS} s of the uniqueid's epoch); a later record of the same channel (Asterisk 12+ writes one per segment) starts later and is tracked as the same caller's next call; two calls of one caller (or two withheld calls) within {JOIN_TOLERANCE_SECONDS} s are ambiguous: counted in slawatch_call_joins_ambiguous_total and logged, never merged; write uniqueid (cdr.conf [csv] loguniqueid=yes) to join exactly{with}",
                    layout.as_str()
                ),
            });
        }
        out
    }

    /// The effective configuration as `check-config` prints it: every value, secrets redacted.
    pub fn effective(&self) -> Value {
        let secret = |s: &Option<Secret>| s.as_ref().map(|_| "<redacted>");
        let policies: Vec<Value> = self
            .policies
            .all()
            .enumerate()
            .map(|(i, pol)| {
                let mut v = serde_json::to_value(pol.record()).unwrap_or(Value::Null);
                if i > 0 {
                    let r = &self.policies.rules[i - 1];
                    v["when"] = json!({
                        "channels": r.channels, "languages": r.languages,
                        "sources": r.sources, "senders": r.senders,
                    });
                }
                v
            })
            .collect();
        let mut sources: Vec<Value> = self
            .sources
            .iter()
            .map(|s| match &s.kind {
                SourceKind::Imap(i) => super::tls::with_effective(json!({
                    "name": s.name, "type": "imap", "host": i.host, "port": i.port, "security": i.security,
                    "allow_insecure": i.allow_insecure, "username": i.username,
                    "auth": match &i.auth { ImapAuth::Password(_) => json!("password"), ImapAuth::OAuth2 { mechanism, .. } => json!(mechanism.name()) },
                    "password": matches!(i.auth, ImapAuth::Password(_)).then_some("<redacted>"),
                    "oauth2": match &i.auth { ImapAuth::OAuth2 { oauth2, .. } => super::oauth2::effective(oauth2), ImapAuth::Password(_) => Value::Null },
                    "inbox_folders": i.inbox_folders,
                    "sent_folders": if i.sent_folders.is_empty() { json!("SPECIAL-USE \\Sent") } else { json!(i.sent_folders) },
                    "since": i.since, "idle_timeout": humantime::format_duration(i.idle_timeout).to_string(),
                    "poll_interval": humantime::format_duration(i.poll_interval).to_string(),
                    "body_prefix_bytes": i.body_prefix_bytes, "timeout": humantime::format_duration(i.timeout).to_string(),
                }), &i.tls),
                SourceKind::Maildir(m) => json!({
                    "name": s.name, "type": "maildir", "path": m.path, "inbox_folders": m.inbox_folders,
                    "sent_folders": m.sent_folders, "scan_interval": humantime::format_duration(m.scan_interval).to_string(),
                }),
                SourceKind::CallLog(c) => super::calls::effective(&s.name, c),
                SourceKind::Twilio(t) => super::calls::effective_twilio(&s.name, t),
            })
            .collect();
        for (v, s) in sources.iter_mut().zip(&self.sources) {
            v["silent_after"] = json!(humantime::format_duration(s.silent_after).to_string());
        }
        json!({
            "store": { "url": redact_url(&self.store.url), "password": secret(&self.store.password), "signing_key_file": self.store.signing_key_file, "head_file": self.store.head_file,
                "working_window": humantime::format_duration(self.store.working_window).to_string(),
                "snapshot_every": humantime::format_duration(self.store.snapshot_every).to_string(),
                "lease_ttl": humantime::format_duration(self.store.lease_ttl).to_string() },
            "audit": { "head_recipients": self.audit.head_recipients },
            "http": {
                "bind": self.http.bind.to_string(), "token": secret(&self.http.token),
                "read_token": secret(&self.http.read_token), "report_token": secret(&self.http.report_token),
                "metrics_token": secret(&self.http.metrics_token), "allow_anonymous": self.http.allow_anonymous,
                "public_url": self.http.public_url, "allowed_hosts": self.http.allowed_hosts,
                "link_key": secret(&self.http.link_key),
                "link_ttl": humantime::format_duration(self.http.link_ttl).to_string(),
                "header_timeout": humantime::format_duration(self.http.header_timeout).to_string(),
                "request_timeout": humantime::format_duration(self.http.request_timeout).to_string(),
                "report_timeout": humantime::format_duration(self.http.report_timeout).to_string(),
                "max_connections": self.http.max_connections,
            },
            "desk": {
                "support_addresses": self.desk.support_addresses, "internal_domains": self.desk.internal_domains,
                "ignore_senders": self.desk.ignore_senders, "ignore_subjects": self.desk.ignore_subjects,
                "auto_ack_subjects": self.desk.auto_ack_subjects, "default_language": self.desk.default_language,
                "time_zone": self.desk.time_zone.name(),
            },
            "policies": policies,
            "sources": sources,
            "notify": self.notify.effective(),
            "contacts": super::calls::effective_contacts(&self.contacts),
        })
    }
}
