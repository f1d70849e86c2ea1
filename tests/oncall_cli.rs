//! `slawatch check-config` and `slawatch oncall` run as the binary on rotation configurations:
//! uncovered time named with the rotation's key path (exit 1), an invalid rotation rejected with
//! its keys, and who is on call when, from the configuration alone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BASE: &str = r#"
[desk]
support_addresses = ["support@desk.example"]
[sources.mail]
type = "maildir"
path = "maildir"

[notify.oncall.people.ana]
email = "ana@desk.example"
[notify.oncall.people.ben]
email = "ben@desk.example"
[notify.oncall.people.carla]
email = "carla@desk.example"
"#;

fn write(dir: &Path, rotation: &str) -> PathBuf {
    let path = dir.join("slawatch.toml");
    std::fs::write(&path, format!("{BASE}\n{rotation}")).unwrap();
    path
}

fn run(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slawatch"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the slawatch binary runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn check_config_names_the_rotation_and_its_weekend_gap_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    // Weekdays are covered around the clock; Friday 20:00 to Monday 08:00 is nobody's.
    let config = write(
        dir.path(),
        r#"
[notify.oncall.rotations.desk]
time_zone = "Europe/Madrid"
[[notify.oncall.rotations.desk.layers]]
slots = [
  { when = "Mon-Fri 08:00-20:00", person = "ana" },
  { when = "Mon-Thu 20:00-08:00", person = "ben" },
]
"#,
    );
    let out = run(&config, &["check-config"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "notify.oncall.rotations.desk: nobody is on call Fri 20:00-Mon 08:00 Europe/Madrid"
        ),
        "{err}"
    );
    assert!(!err.contains("configuration OK"), "{err}");
}

#[test]
fn check_config_passes_a_rotation_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        r#"
[notify.oncall.rotations.desk]
time_zone = "Europe/Madrid"
[[notify.oncall.rotations.desk.layers]]
people = ["ana", "ben"]
shift = "weekly"
handoff = "2026-01-05 08:00"
"#,
    );
    let out = run(&config, &["check-config"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("configuration OK"), "{err}");
    assert!(
        text(&out.stdout).contains("\"time_zone\": \"Europe/Madrid\""),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn check_config_rejects_an_invalid_rotation_naming_each_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        r#"
[notify.oncall.rotations.desk]
time_zone = "Europe/Narnia"
[[notify.oncall.rotations.desk.layers]]
people = ["ana", "dave"]
handoff = "Monday 8am"
[[notify.oncall.rotations.desk.layers]]
slots = [
  { when = "Mon-Fri 08:00-20:00", person = "ana" },
  { when = "Wed 12:00-14:00", person = "ben" },
]
"#,
    );
    let out = run(&config, &["check-config"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for key in [
        "notify.oncall.rotations.desk.time_zone",
        "notify.oncall.rotations.desk.layers[0].people[1]: `dave` is not a person",
        "notify.oncall.rotations.desk.layers[0].handoff",
        "notify.oncall.rotations.desk.layers[1].slots[1].when: Wed 12:00-Wed 14:00 overlaps",
    ] {
        assert!(err.contains(key), "{key} missing in:\n{err}");
    }
}

#[test]
fn oncall_prints_who_is_on_call_and_the_week_of_handoffs_in_local_time_and_utc() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        r#"
[notify.oncall.rotations.desk]
time_zone = "Europe/Madrid"
escalation = ["carla"]
escalate_after = "10m"
[[notify.oncall.rotations.desk.layers]]
people = ["ana", "ben"]
shift = "weekly"
handoff = "2026-11-23 08:00"
[[notify.oncall.rotations.desk.overrides]]
person = "carla"
from = "2026-11-26 20:00"
to = "2026-11-27 08:00"
"#,
    );
    let out = run(&config, &["oncall", "--at", "2026-11-24T12:00:00Z"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains("at Tue 2026-11-24 13:00 CET (Tue 12:00 UTC): ana <ana@desk.example>"),
        "{stdout}"
    );
    assert!(
        stdout.contains("escalation (breaches): carla <carla@desk.example>"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "chain: warning → whoever is on call; breach → on call; after 10m with nobody \
             taking or answering it → carla <carla@desk.example>"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("next 7 days"), "{stdout}");

    let out = run(
        &config,
        &["oncall", "--week", "--at", "2026-11-24T12:00:00Z"],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for shift in [
        "Thu 2026-11-26 20:00 CET (Thu 19:00 UTC) → Fri 2026-11-27 08:00 CET (Fri 07:00 UTC)  carla <carla@desk.example>",
        "Fri 2026-11-27 08:00 CET (Fri 07:00 UTC) → Mon 2026-11-30 08:00 CET (Mon 07:00 UTC)  ana <ana@desk.example>",
        "Mon 2026-11-30 08:00 CET (Mon 07:00 UTC) → Tue 2026-12-01 13:00 CET (Tue 12:00 UTC)  ben <ben@desk.example>",
    ] {
        assert!(stdout.contains(shift), "{shift} missing in:\n{stdout}");
    }
}

#[test]
fn oncall_without_a_rotation_says_so_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slawatch.toml");
    std::fs::write(
        &path,
        "[desk]\nsupport_addresses = [\"support@desk.example\"]\n[sources.mail]\ntype = \"maildir\"\npath = \"maildir\"\n",
    )
    .unwrap();
    let out = run(&path, &["oncall"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no on-call rotation is configured"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_gulf_work_week_rotation_is_accepted_and_its_weekend_gap_named() {
    let dir = tempfile::tempdir().unwrap();
    // Sunday to Thursday, day and night: Thursday 20:00 to Sunday 08:00 is nobody's.
    let config = write(
        dir.path(),
        r#"
[notify.oncall.rotations.riyadh]
time_zone = "Asia/Riyadh"
[[notify.oncall.rotations.riyadh.layers]]
slots = [
  { when = "Sun-Thu 08:00-20:00", person = "ana" },
  { when = "Sun-Wed 20:00-08:00", person = "ben" },
]
"#,
    );
    let out = run(&config, &["check-config"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("not a weekly time"), "{err}");
    // The chain of each rotation is shown (here: no escalation list).
    assert!(
        err.contains("note: notify.oncall.rotations.riyadh: warning, breach and re-notifications → whoever is on call"),
        "{err}"
    );
    assert!(
        err.contains(
            "notify.oncall.rotations.riyadh: nobody is on call Thu 20:00-Sun 08:00 Asia/Riyadh"
        ),
        "{err}"
    );
}
