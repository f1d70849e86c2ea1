//! Validation of the call-log sources (`type = "asterisk_cdr"` / `"asterisk_queue_log"`).
//!
//! ```toml
//! [sources.pbx]
//! type = "asterisk_cdr"
//! path = "/var/log/asterisk/cdr-csv/Master.csv"
//! layout = "18"              # 16 | 17-uniqueid | 17-userfield | 18 | 21 (cdr.conf [csv])
//! time_zone = "UTC"          # usegmtime=yes; else the PBX's zone, e.g. "Europe/Madrid"
//! default_region = "ES"      # for national numbers on lines without their own
//! extension_max_digits = 6   # numbers this short are the desk's extensions
//! withheld = "track"         # or "exclude"
//! min_callback_seconds = 1
//! outbound_prefix = "9"      # stripped from dialled numbers
//! [[sources.pbx.lines]]
//! name = "soporte-es"
//! match = ["600", "soporte-es"]   # DIDs, dialplan contexts or queue names
//! language = "es"
//! region = "ES"
//! ```
//!
//! The desk's contact map, used to answer across channels (`tracker::contacts`), lives here
//! too, because its numbers are normalised like the call logs' numbers:
//!
//! ```toml
//! [contacts]
//! answer_across_channels = true   # default false: each channel answers only itself
//! default_region = "ES"           # for numbers written without a country code
//! [[contacts.customers]]
//! email = "ana@cliente.example"
//! phones = ["+34 600 12 34 56", "0034911222333"]
//! ```

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use slawatch_core::domain::Language;
use slawatch_core::phone_number::region;
use slawatch_core::tracker::contacts::ContactMap;

use super::reader::{Problems, Table};
use crate::sources::calls::cdr_csv::{CdrLayout, FileZone};
use crate::sources::calls::generic_csv::GenericCsv;
use crate::sources::calls::lines::{CallLines, CallLogFormat, CallLogSettings, Line};
use crate::sources::calls::poll::TwilioSettings;

pub(super) fn call_log(
    s: &mut Table,
    kind: &str,
    base: &Path,
    p: &mut Problems,
) -> Option<CallLogSettings> {
    let path = s.required_string("path", p).map(|f| base.join(f));
    let format = if kind == "asterisk_cdr" {
        let layout = match s.string("layout", p) {
            None => {
                p.push(
                    s.path("layout"),
                    "is required: Master.csv has no header (16, 17-uniqueid, 17-userfield, 18 or 21)",
                );
                None
            }
            Some(l) => CdrLayout::parse(&l).or_else(|| {
                p.push(
                    s.path("layout"),
                    format!("`{l}` is not one of 16, 17-uniqueid, 17-userfield, 18, 21"),
                );
                None
            }),
        };
        let zone = match s.string("time_zone", p) {
            None => {
                p.push(
                    s.path("time_zone"),
                    "is required: \"UTC\" (usegmtime=yes) or the PBX's zone such as Europe/Madrid",
                );
                None
            }
            Some(z) if z.eq_ignore_ascii_case("utc") => Some(FileZone::Utc),
            Some(z) => z.parse().map(FileZone::Local).ok().or_else(|| {
                p.push(
                    s.path("time_zone"),
                    format!("`{z}` is not UTC or an IANA time zone such as Europe/Madrid"),
                );
                None
            }),
        };
        layout
            .zip(zone)
            .map(|(layout, zone)| CallLogFormat::Cdr { layout, zone })
    } else if kind == "csv_calls" {
        generic(s, p).map(CallLogFormat::Generic)
    } else {
        Some(CallLogFormat::QueueLog)
    };
    let poll_interval = s.duration("poll_interval", Duration::from_millis(250), p);
    let lines = call_lines(s, p);
    Some(CallLogSettings {
        format: format?,
        path: path?,
        poll_interval,
        lines,
    })
}

/// The line keys shared by every phone source.
fn call_lines(s: &mut Table, p: &mut Problems) -> CallLines {
    let region_at = |t: &mut Table, key: &str, p: &mut Problems| {
        t.string(key, p).and_then(|r| {
            region(&r).or_else(|| {
                p.push(
                    t.path(key),
                    format!("`{r}` is not a region code such as ES, SA, AE"),
                );
                None
            })
        })
    };
    let default_region = region_at(s, "default_region", p);
    let extension_max_digits = s.u64("extension_max_digits", 6, p).min(15) as usize;
    let exclude_withheld = match s.string("withheld", p).as_deref() {
        None | Some("track") => false,
        Some("exclude") => true,
        Some(other) => {
            p.push(
                s.path("withheld"),
                format!("`{other}` is not track or exclude"),
            );
            false
        }
    };
    let min_callback_seconds = s.u64("min_callback_seconds", 1, p).min(3600) as i64;
    let outbound_prefix = s.string("outbound_prefix", p).filter(|x| !x.is_empty());
    let mut lines = Vec::new();
    match s.raw("lines") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let path = s.path(&format!("lines[{i}]"));
                let mut t = Table::at(&path, item);
                let name = t.required_string("name", p);
                let matches = t.string_list("match", p);
                if matches.is_empty() {
                    p.push(
                        t.path("match"),
                        "list the DIDs, contexts or queues of this line",
                    );
                }
                let language = t.string("language", p).and_then(|l| {
                    Language::parse(&l).or_else(|| {
                        p.push(
                            t.path("language"),
                            format!("`{l}` is not one of en, es, ar"),
                        );
                        None
                    })
                });
                let region = region_at(&mut t, "region", p);
                t.finish(p);
                if let Some(name) = name {
                    lines.push(Line {
                        name,
                        matches,
                        language,
                        region,
                    });
                }
            }
        }
        Some(_) => p.push(
            s.path("lines"),
            "must be a list of tables ([[sources.NAME.lines]])",
        ),
    }
    CallLines {
        lines,
        default_region,
        extension_max_digits,
        exclude_withheld,
        min_callback_seconds,
        outbound_prefix,
        // Set once every source is read: it depends on the others.
        queue_pickups_from_queue_log: false,
    }
}

pub(super) fn twilio(
    s: &mut Table,
    file_only: &Value,
    base: &Path,
    p: &mut Problems,
) -> Option<TwilioSettings> {
    let base_url = s
        .string("base_url", p)
        .unwrap_or_else(|| "https://api.twilio.com".to_string());
    if !super::load::https_or_loopback(&base_url) {
        p.push(
            s.path("base_url"),
            format!(
                "`{base_url}` must be https:// (plain http only to a host that resolves to loopback addresses only)"
            ),
        );
    }
    let account_sid = s.required_string("account_sid", p);
    let auth_token = super::load::secret(s, "auth_token", file_only, true, base, p);
    let poll_interval = s.duration("poll_interval", Duration::from_secs(60), p);
    let timeout = s.duration("timeout", Duration::from_secs(30), p);
    let backfill_days = s.u64("backfill_days", 1, p).clamp(1, 30) as i64;
    let since = s.string("since", p).and_then(|d| {
        chrono::NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d")
            .map_err(|_| p.push(s.path("since"), format!("`{d}` is not a date (YYYY-MM-DD)")))
            .ok()
    });
    let lines = call_lines(s, p);
    let tls = super::tls::trust(s, base, p);
    Some(TwilioSettings {
        base_url: base_url.trim_end_matches('/').to_string(),
        account_sid: account_sid?,
        auth_token: auth_token?,
        poll_interval,
        timeout,
        backfill_days,
        since,
        lines,
        tls,
    })
}

pub(super) fn effective_twilio(name: &str, t: &TwilioSettings) -> Value {
    super::tls::with_effective(
        json!({
            "name": name, "type": "twilio", "base_url": t.base_url, "account_sid": t.account_sid,
            "auth_token": "<redacted>", "poll_interval": humantime::format_duration(t.poll_interval).to_string(),
            "timeout": humantime::format_duration(t.timeout).to_string(), "backfill_days": t.backfill_days,
            "lines": t.lines.lines.iter().map(|x| x.name.clone()).collect::<Vec<_>>(),
        }),
        &t.tls,
    )
}
/// `fields` (the columns in order), `[sources.NAME.map]` (which field is what) and `time_zone`.
fn generic(s: &mut Table, p: &mut Problems) -> Option<GenericCsv> {
    let fields = s.string_list("fields", p);
    if fields.is_empty() {
        p.push(s.path("fields"), "list the file's columns in order");
    }
    let zone = match s.string("time_zone", p) {
        None => FileZone::Utc,
        Some(z) if z.eq_ignore_ascii_case("utc") => FileZone::Utc,
        Some(z) => match z.parse() {
            Ok(tz) => FileZone::Local(tz),
            Err(_) => {
                p.push(
                    s.path("time_zone"),
                    format!("`{z}` is not UTC or an IANA time zone"),
                );
                FileZone::Utc
            }
        },
    };
    let mut m = s.table("map", p);
    let mut index = |key: &str, required: bool, p: &mut Problems| -> Option<usize> {
        match m.string(key, p) {
            None => {
                if required {
                    p.push(m.path(key), "is required: the name of one of `fields`");
                }
                None
            }
            Some(name) => fields.iter().position(|f| *f == name).or_else(|| {
                p.push(m.path(key), format!("`{name}` is not one of `fields`"));
                None
            }),
        }
    };
    let call_id = index("call_id", true, p);
    let number = index("number", true, p);
    let dialled = index("dialled", true, p);
    let start = index("start", true, p);
    let answer = index("answer", false, p);
    let end = index("end", false, p);
    let agent = index("agent", false, p);
    let name = index("name", false, p);
    m.finish(p);
    Some(GenericCsv {
        call_id: call_id?,
        number: number?,
        dialled: dialled?,
        start: start?,
        answer,
        end,
        agent,
        name,
        zone,
        fields,
    })
}

pub(super) fn effective(name: &str, c: &CallLogSettings) -> Value {
    if let CallLogFormat::Generic(g) = &c.format {
        let col = |i: Option<usize>| i.and_then(|i| g.fields.get(i).cloned());
        return json!({
            "name": name, "type": "csv_calls", "path": c.path, "fields": g.fields,
            "map": { "call_id": col(Some(g.call_id)), "number": col(Some(g.number)),
                     "dialled": col(Some(g.dialled)), "start": col(Some(g.start)),
                     "answer": col(g.answer), "end": col(g.end), "agent": col(g.agent), "name": col(g.name) },
            "poll_interval": humantime::format_duration(c.poll_interval).to_string(),
            "lines": c.lines.lines.iter().map(|x| x.name.clone()).collect::<Vec<_>>(),
        });
    }
    let (kind, layout, zone) = match &c.format {
        CallLogFormat::Generic(_) => ("csv_calls", None, None),
        CallLogFormat::Cdr { layout, zone } => (
            "asterisk_cdr",
            Some(layout.as_str()),
            Some(match zone {
                FileZone::Utc => "UTC".to_string(),
                FileZone::Local(tz) => tz.name().to_string(),
            }),
        ),
        CallLogFormat::QueueLog => ("asterisk_queue_log", None, None),
    };
    let l = &c.lines;
    json!({
        "name": name, "type": kind, "path": c.path, "layout": layout, "time_zone": zone,
        "poll_interval": humantime::format_duration(c.poll_interval).to_string(),
        "default_region": l.default_region.map(|r| r.as_ref().to_string()),
        "extension_max_digits": l.extension_max_digits,
        "withheld": if l.exclude_withheld { "exclude" } else { "track" },
        "min_callback_seconds": l.min_callback_seconds, "outbound_prefix": l.outbound_prefix,
        "lines": l.lines.iter().map(|x| json!({
            "name": x.name, "match": x.matches, "language": x.language,
            "region": x.region.map(|r| r.as_ref().to_string()),
        })).collect::<Vec<_>>(),
    })
}

/// The `[contacts]` section: every number normalised to E.164 (a problem, with its key path, if
/// it cannot be, or if it is a withheld-number sentinel), every address checked.
pub(super) fn contacts(top: &mut Table, p: &mut Problems) -> ContactMap {
    let mut t = top.table("contacts", p);
    let answer_across_channels = t.bool("answer_across_channels", false, p);
    let default_region = t.string("default_region", p).and_then(|r| {
        region(&r).or_else(|| {
            p.push(
                t.path("default_region"),
                format!("`{r}` is not a region code such as ES, SA, AE"),
            );
            None
        })
    });
    let mut customers = Vec::new();
    match t.raw("customers") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let path = t.path(&format!("customers[{i}]"));
                let mut c = Table::at(&path, item);
                let email = c
                    .required_string("email", p)
                    .map(|e| e.trim().to_lowercase());
                if let Some(e) = &email
                    && (!e.contains('@') || e.starts_with('@') || e.ends_with('@'))
                {
                    p.push(c.path("email"), format!("`{e}` is not an email address"));
                }
                let raw_phones = c.string_list("phones", p);
                if raw_phones.is_empty() {
                    p.push(c.path("phones"), "list at least one phone number");
                }
                let mut phones = Vec::new();
                for (k, raw) in raw_phones.iter().enumerate() {
                    let number = slawatch_core::phone_number::normalize(raw, default_region);
                    match (&number.e164, number.is_withheld()) {
                        (Some(e164), false) => phones.push(e164.clone()),
                        _ => p.push(
                            c.path(&format!("phones[{k}]")),
                            format!(
                                "`{raw}` is not a phone number that can be called back{}",
                                if default_region.is_none() && !raw.trim().starts_with('+') {
                                    " (write it with +country code, or set contacts.default_region)"
                                } else {
                                    ""
                                }
                            ),
                        ),
                    }
                }
                c.finish(p);
                if let Some(email) = email {
                    customers.push((email, phones));
                }
            }
        }
        Some(_) => p.push(
            t.path("customers"),
            "must be a list of tables ([[contacts.customers]])",
        ),
    }
    if answer_across_channels && customers.is_empty() {
        p.push(
            t.path("answer_across_channels"),
            "is on, but no [[contacts.customers]] are listed: nothing could be answered across channels",
        );
    }
    t.finish(p);
    ContactMap::new(answer_across_channels, customers)
}

/// The contact map as `check-config` prints it (addresses and numbers are the desk's own
/// configuration, not secrets).
pub(super) fn effective_contacts(c: &ContactMap) -> Value {
    json!({
        "answer_across_channels": c.answers_across_channels(),
        "customers": c.customers(),
    })
}
