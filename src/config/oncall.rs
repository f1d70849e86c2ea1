//! `[notify.oncall]`: people, rotations and routes, validated into [`OnCall`].
//!
//! ```toml
//! [notify.oncall]
//! rotation = "desk"              # the rotation alerts go to (optional with one rotation)
//! routes = { vip = "vip-desk" }  # policy name → rotation, for inquiries under that policy
//!
//! [notify.oncall.people.ana]
//! email = "ana@desk.example"
//! handle = "@ana"                # optional: named in webhook / Slack messages
//!
//! [notify.oncall.rotations.desk]
//! time_zone = "Europe/Madrid"    # handoffs, slots and overrides are local times here
//! escalation = ["carla"]         # also receive breaches and re-notifications
//! escalate_after = "10m"          # …once nobody took or answered the breach for this long
//!
//! [[notify.oncall.rotations.desk.layers]]   # people take turns
//! people = ["ana", "ben"]
//! shift = "weekly"               # daily | weekly | 3d (whole days)
//! handoff = "2026-11-23 08:00"   # people[0] starts here; handoffs at 08:00 local
//! hours = ["Mon-Fri 08:00-20:00"]  # optional: the layer covers only these hours
//!
//! [[notify.oncall.rotations.desk.layers]]   # explicit weekly slots; a later layer wins
//! slots = [{ when = "Fri 20:00-Mon 08:00", person = "dana" }]
//!
//! [[notify.oncall.rotations.desk.overrides]]  # wins over every layer
//! person = "carla"
//! from = "2026-12-24 20:00"
//! to = "2026-12-26 08:00"
//! ```
//!
//! Every problem names its key path. Gaps in coverage are not load errors (a daemon must still
//! start and alert the escalation list); `check-config` reports them via [`OnCall::gaps`].

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::reader::{Problems, Table};
use crate::notify::oncall::schedule::parse_local;
use crate::notify::oncall::{Layer, LayerKind, OnCall, Override, Person, Rotation, WeeklySpan};

/// Parses `[notify.oncall]` from the `notify` table, if present.
pub(super) fn oncall(notify: &mut Table, p: &mut Problems) -> Option<OnCall> {
    notify.raw("oncall")?;
    let mut t = notify.table("oncall", p);

    let mut people = BTreeMap::new();
    let mut pt = t.table("people", p);
    for name in pt.keys() {
        let mut person = pt.table(&name, p);
        let email = person.required_string("email", p).unwrap_or_default();
        if !email.is_empty() && email.parse::<lettre::Address>().is_err() {
            p.push(
                person.path("email"),
                format!("`{email}` is not an email address"),
            );
        }
        let handle = person.string("handle", p);
        person.finish(p);
        people.insert(
            name.clone(),
            Person {
                name,
                email,
                handle,
            },
        );
    }
    pt.finish(p);
    if people.is_empty() {
        p.push(t.path("people"), "at least one person is required");
    }
    let known = |key: String, name: &str, p: &mut Problems| {
        if !people.contains_key(name) {
            p.push(
                key,
                format!("`{name}` is not a person under [notify.oncall.people]"),
            );
        }
    };

    let mut rotations = BTreeMap::new();
    let mut rt = t.table("rotations", p);
    for name in rt.keys() {
        let mut r = rt.table(&name, p);
        let rotation = rotation(&mut r, &name, &known, p);
        r.finish(p);
        rotations.insert(name, rotation);
    }
    rt.finish(p);
    if rotations.is_empty() {
        p.push(t.path("rotations"), "at least one rotation is required");
    }

    let default_rotation = match t.string("rotation", p) {
        Some(r) => r,
        None if rotations.len() == 1 => rotations.keys().next().cloned().unwrap_or_default(),
        None => {
            if rotations.len() > 1 {
                p.push(
                    t.path("rotation"),
                    "is required with more than one rotation: it names the one alerts go to",
                );
            }
            String::new()
        }
    };
    if !default_rotation.is_empty() && !rotations.contains_key(&default_rotation) {
        p.push(
            t.path("rotation"),
            format!("`{default_rotation}` is not a rotation under [notify.oncall.rotations]"),
        );
    }
    let mut routes = BTreeMap::new();
    let mut routes_table = t.table("routes", p);
    for policy in routes_table.keys() {
        let Some(target) = routes_table.string(&policy, p) else {
            continue;
        };
        if !rotations.contains_key(&target) {
            p.push(
                routes_table.path(&policy),
                format!("`{target}` is not a rotation under [notify.oncall.rotations]"),
            );
        }
        routes.insert(policy, target);
    }
    routes_table.finish(p);
    t.finish(p);
    Some(OnCall {
        people,
        rotations,
        default_rotation,
        routes,
    })
}

type Known<'a> = dyn Fn(String, &str, &mut Problems) + 'a;

fn rotation(r: &mut Table, name: &str, known: &Known<'_>, p: &mut Problems) -> Rotation {
    let time_zone = match r.string("time_zone", p) {
        None => {
            p.push(
                r.path("time_zone"),
                "is required (an IANA time zone such as Europe/Madrid: handoffs are local times)",
            );
            chrono_tz::UTC
        }
        Some(s) => s.parse().unwrap_or_else(|_| {
            p.push(
                r.path("time_zone"),
                format!("`{s}` is not an IANA time zone such as Europe/Madrid"),
            );
            chrono_tz::UTC
        }),
    };
    let escalation = r.string_list("escalation", p);
    let escalate_after = r.duration("escalate_after", std::time::Duration::ZERO, p);
    if !escalate_after.is_zero() && escalation.is_empty() {
        p.push(
            r.path("escalate_after"),
            "has nobody to escalate to: set `escalation`",
        );
    }
    for (i, person) in escalation.iter().enumerate() {
        known(format!("{}[{i}]", r.path("escalation")), person, p);
    }
    let layers: Vec<Layer> = list(r, "layers", p)
        .into_iter()
        .filter_map(|(path, item)| {
            let mut l = Table::at(&path, item);
            let layer = layer(&mut l, known, p);
            l.finish(p);
            layer
        })
        .collect();
    if layers.is_empty() && r.raw("layers").is_none() {
        p.push(
            r.path("layers"),
            "at least one layer ([[...layers]] with people or slots) is required",
        );
    }
    let mut overrides: Vec<(String, Override)> = Vec::new();
    for (path, item) in list(r, "overrides", p) {
        let mut o = Table::at(&path, item);
        let person = o.required_string("person", p).unwrap_or_default();
        if !person.is_empty() {
            known(o.path("person"), &person, p);
        }
        let at = |key: &str, o: &mut Table, p: &mut Problems| {
            let text = o.required_string(key, p)?;
            parse_local(&text).map_err(|e| p.push(o.path(key), e)).ok()
        };
        let (from, to) = (at("from", &mut o, p), at("to", &mut o, p));
        o.finish(p);
        let (Some(from), Some(to)) = (from, to) else {
            continue;
        };
        if to <= from {
            p.push(format!("{path}.to"), "must be after `from`");
            continue;
        }
        if let Some((other, _)) = overrides.iter().find(|(_, o)| o.from < to && from < o.to) {
            p.push(
                path.clone(),
                format!("overlaps {other}: two people cannot override the same time"),
            );
        }
        overrides.push((path, Override { person, from, to }));
    }
    Rotation {
        name: name.to_string(),
        time_zone,
        layers,
        overrides: overrides.into_iter().map(|(_, o)| o).collect(),
        escalation,
        escalate_after,
    }
}

/// The items of a list of tables, with their key paths.
fn list<'a>(t: &mut Table<'a>, key: &str, p: &mut Problems) -> Vec<(String, &'a Value)> {
    match t.raw(key) {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{}[{i}]", t.path(key)), v))
            .collect(),
        Some(_) => {
            p.push(t.path(key), "must be a list of tables ([[...]])");
            Vec::new()
        }
    }
}

fn spans(t: &mut Table, key: &str, p: &mut Problems) -> Vec<WeeklySpan> {
    let single = matches!(t.raw(key), Some(Value::String(_)));
    let mut out = Vec::new();
    for (i, text) in t.string_list(key, p).into_iter().enumerate() {
        match WeeklySpan::parse(&text) {
            Ok(s) => out.extend(s),
            Err(e) if single => p.push(t.path(key), e),
            Err(e) => p.push(format!("{}[{i}]", t.path(key)), e),
        }
    }
    out
}

fn layer(l: &mut Table, known: &Known<'_>, p: &mut Problems) -> Option<Layer> {
    let hours = spans(l, "hours", p);
    let has_people = l.raw("people").is_some();
    let has_slots = l.raw("slots").is_some();
    let kind = match (has_people, has_slots) {
        (true, false) => {
            let people = l.string_list("people", p);
            if people.is_empty() {
                p.push(l.path("people"), "at least one person is required");
            }
            for (i, person) in people.iter().enumerate() {
                known(format!("{}[{i}]", l.path("people")), person, p);
            }
            let shift_days = match l.string("shift", p).as_deref() {
                None | Some("weekly") => 7,
                Some("daily") => 1,
                Some(other) => match other.strip_suffix('d').map(str::parse::<u32>) {
                    Some(Ok(n)) if n > 0 => n,
                    _ => {
                        p.push(
                            l.path("shift"),
                            format!("`{other}` is not daily, weekly or a number of days like 3d"),
                        );
                        7
                    }
                },
            };
            let first_handoff = match l.required_string("handoff", p) {
                Some(text) => parse_local(&text)
                    .map_err(|e| p.push(l.path("handoff"), e))
                    .ok()?,
                None => return None,
            };
            LayerKind::Turns {
                people,
                shift_days,
                first_handoff,
            }
        }
        (false, true) => {
            let mut slots: Vec<(WeeklySpan, String)> = Vec::new();
            let mut paths: Vec<String> = Vec::new();
            for (path, item) in list(l, "slots", p) {
                let mut s = Table::at(&path, item);
                let person = s.required_string("person", p).unwrap_or_default();
                if !person.is_empty() {
                    known(s.path("person"), &person, p);
                }
                let when = spans(&mut s, "when", p);
                if when.is_empty() && s.raw("when").is_none() {
                    p.push(s.path("when"), "is required, e.g. \"Mon-Fri 08:00-20:00\"");
                }
                s.finish(p);
                for span in when {
                    if let Some(k) = slots.iter().position(|(other, _)| other.overlaps(&span)) {
                        p.push(
                            format!("{path}.when"),
                            format!(
                                "{} overlaps {} ({}): slots of one layer must not overlap",
                                span.describe(),
                                slots[k].0.describe(),
                                paths[k]
                            ),
                        );
                    }
                    slots.push((span, person.clone()));
                    paths.push(path.clone());
                }
            }
            LayerKind::Slots(slots)
        }
        _ => {
            p.push(
                l.path("people"),
                "a layer has either `people` (turns) or `slots` (weekly slots)",
            );
            return None;
        }
    };
    Some(Layer { kind, hours })
}

/// As `check-config` prints it.
pub(super) fn effective(o: &OnCall) -> Value {
    let people: BTreeMap<&str, Value> = o
        .people
        .values()
        .map(|p| {
            (
                p.name.as_str(),
                json!({"email": p.email, "handle": p.handle}),
            )
        })
        .collect();
    let rotations: BTreeMap<&str, Value> = o
        .rotations
        .values()
        .map(|r| {
            let layers: Vec<Value> = r
                .layers
                .iter()
                .map(|l| {
                    let hours: Vec<String> = l.hours.iter().map(WeeklySpan::describe).collect();
                    match &l.kind {
                        LayerKind::Turns {
                            people,
                            shift_days,
                            first_handoff,
                        } => json!({
                            "people": people, "shift_days": shift_days,
                            "handoff": first_handoff.format("%Y-%m-%d %H:%M").to_string(),
                            "hours": hours,
                        }),
                        LayerKind::Slots(slots) => json!({
                            "slots": slots.iter().map(|(s, p)| json!({"when": s.describe(), "person": p})).collect::<Vec<_>>(),
                            "hours": hours,
                        }),
                    }
                })
                .collect();
            let overrides: Vec<Value> = r
                .overrides
                .iter()
                .map(|o| {
                    json!({
                        "person": o.person,
                        "from": o.from.format("%Y-%m-%d %H:%M").to_string(),
                        "to": o.to.format("%Y-%m-%d %H:%M").to_string(),
                    })
                })
                .collect();
            (
                r.name.as_str(),
                json!({
                    "time_zone": r.time_zone.name(), "escalation": r.escalation,
                    "escalate_after": humantime::format_duration(r.escalate_after).to_string(),
                    "layers": layers, "overrides": overrides,
                }),
            )
        })
        .collect();
    json!({
        "rotation": o.default_rotation, "routes": o.routes,
        "people": people, "rotations": rotations,
    })
}

/// Route keys must name a configured policy (checked once policies are read).
pub(super) fn check_routes(o: &OnCall, policy_names: &[&str], p: &mut Problems) {
    for policy in o.routes.keys() {
        if !policy_names.contains(&policy.as_str()) {
            p.push(
                format!("notify.oncall.routes.{policy}"),
                format!(
                    "`{policy}` is not a policy name (known: {})",
                    policy_names.join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{ConfigError, Settings, load_with_env};

    const BASE: &str = r#"
[desk]
support_addresses = ["support@example.com"]
[sources.mail]
type = "maildir"
path = "maildir"
[[policy.rules]]
name = "vip"
senders = ["@vip.example"]
"#;

    fn load(dir: &Path, extra: &str) -> Result<Settings, ConfigError> {
        let path = dir.join("slawatch.toml");
        std::fs::write(&path, format!("{BASE}\n{extra}")).unwrap();
        load_with_env(&path, vec![])
    }

    #[test]
    fn a_rotation_is_read_into_layers_overrides_and_routes() {
        let dir = tempfile::tempdir().unwrap();
        let s = load(
            dir.path(),
            r#"
[notify.oncall]
rotation = "desk"
routes = { vip = "vip" }
[notify.oncall.people.ana]
email = "ana@desk.example"
handle = "@ana"
[notify.oncall.people.ben]
email = "ben@desk.example"
[notify.oncall.rotations.desk]
time_zone = "Europe/Madrid"
escalation = ["ben"]
[[notify.oncall.rotations.desk.layers]]
people = ["ana", "ben"]
shift = "daily"
handoff = "2026-11-23 08:00"
[[notify.oncall.rotations.desk.overrides]]
person = "ben"
from = "2026-12-24 20:00"
to = "2026-12-26T08:00"
[notify.oncall.rotations.vip]
time_zone = "UTC"
[[notify.oncall.rotations.vip.layers]]
slots = [{ when = "Mon 00:00-Mon 00:00", person = "ana" }]
"#,
        )
        .unwrap();
        let oncall = s.notify.oncall.as_ref().unwrap();
        assert_eq!(oncall.default_rotation, "desk");
        assert_eq!(oncall.routes["vip"], "vip");
        let desk = &oncall.rotations["desk"];
        assert_eq!(desk.time_zone, chrono_tz::Europe::Madrid);
        assert_eq!(desk.overrides.len(), 1);
        assert_eq!(oncall.people["ana"].handle.as_deref(), Some("@ana"));
        let shown = s.effective().to_string();
        assert!(shown.contains("\"shift_days\":1"), "{shown}");
        // No smtp.to is needed with a rotation.
        assert!(s.notify.smtp.is_none());
    }

    #[test]
    fn every_rotation_problem_names_its_key_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(
            dir.path(),
            r#"
[notify.oncall]
rotation = "nights"
routes = { gold = "desk", vip = "nowhere" }
[notify.oncall.people.ana]
email = "not an address"
[notify.oncall.rotations.desk]
time_zone = "Europe/Atlantis"
escalation = ["zoe"]
[[notify.oncall.rotations.desk.layers]]
people = ["ana", "bob"]
shift = "fortnightly"
handoff = "Monday at eight"
[[notify.oncall.rotations.desk.layers]]
slots = [
  { when = "Mon-Fri 08:00-20:00", person = "ana" },
  { when = "Fri 12:00-Mon 08:00", person = "carl" },
  { when = "Someday 08:00-09:00", person = "ana" },
]
[[notify.oncall.rotations.desk.overrides]]
person = "ana"
from = "2026-12-24 20:00"
to = "2026-12-26 08:00"
[[notify.oncall.rotations.desk.overrides]]
person = "ana"
from = "2026-12-25 20:00"
to = "2026-12-25 08:00"
[[notify.oncall.rotations.desk.overrides]]
person = "ana"
from = "2026-12-25 10:00"
to = "2026-12-25 12:00"
colour = "red"
"#,
        )
        .unwrap_err()
        .to_string();
        for key in [
            "notify.oncall.rotation: `nights` is not a rotation",
            "notify.oncall.routes.gold: `gold` is not a policy name",
            "notify.oncall.routes.vip: `nowhere` is not a rotation",
            "notify.oncall.people.ana.email",
            "notify.oncall.rotations.desk.time_zone: `Europe/Atlantis`",
            "notify.oncall.rotations.desk.escalation[0]: `zoe` is not a person",
            "notify.oncall.rotations.desk.layers[0].people[1]: `bob` is not a person",
            "notify.oncall.rotations.desk.layers[0].shift",
            "notify.oncall.rotations.desk.layers[0].handoff",
            "notify.oncall.rotations.desk.layers[1].slots[1].person: `carl`",
            "notify.oncall.rotations.desk.layers[1].slots[1].when: Fri 12:00-Mon 08:00 overlaps",
            "notify.oncall.rotations.desk.layers[1].slots[2].when: `Someday 08:00-09:00`",
            "notify.oncall.rotations.desk.overrides[1].to: must be after `from`",
            "notify.oncall.rotations.desk.overrides[2]: overlaps notify.oncall.rotations.desk.overrides[0]",
            "notify.oncall.rotations.desk.overrides[2].colour: unknown key",
        ] {
            assert!(err.contains(key), "{key} missing in:\n{err}");
        }
    }
}

#[cfg(test)]
mod example {
    use std::path::Path;

    /// The commented-out rotation at the end of the bundled configuration, uncommented: it must
    /// load and cover every minute (it is what people copy).
    #[test]
    fn the_documented_example_rotation_is_valid_and_has_no_gaps() {
        let bundled = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("config/slawatch.toml"),
        )
        .unwrap();
        let start = bundled
            .find("# [notify.oncall]\n")
            .expect("the example is there");
        let example: String = bundled[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(""))
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slawatch.toml");
        std::fs::write(
            &path,
            format!(
                "[desk]\nsupport_addresses = [\"support@example.com\"]\n[sources.mail]\ntype = \"maildir\"\npath = \"m\"\n{example}\n"
            ),
        )
        .unwrap();
        let settings = crate::config::load_with_env(&path, vec![]).unwrap();
        let oncall = settings.notify.oncall.unwrap();
        assert_eq!(oncall.rotations["desk"].layers.len(), 2);
        let from = chrono::DateTime::parse_from_rfc3339("2026-11-23T07:00:00Z")
            .unwrap()
            .to_utc();
        assert!(oncall.gaps(from).is_empty());
    }
}
