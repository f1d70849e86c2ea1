//! The cost of on-call routing: deciding an alert's recipients (on the alert path, whose budget
//! is 1 s from the alert's instant to the mail server) and scanning four weeks for gaps (what
//! `check-config` and the daemon's start-up do).
//!
//! The rotation is a realistic bad case: weekly turns of five people, a nightly layer with
//! restricted hours, weekend slots, and 50 overrides, in Europe/Madrid across a DST change.
//! Targets: ≤ 50 µs per decision, ≤ 2 s per four-week scan. Run with
//! `cargo bench --bench oncall`; it exits non-zero when a target is missed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use slawatch::notify::AlertKind;
use slawatch::notify::oncall::schedule::parse_local;
use slawatch::notify::oncall::{Layer, LayerKind, OnCall, Override, Person, Rotation, WeeklySpan};

const DECISIONS: usize = 100_000;
const DECISION_TARGET: Duration = Duration::from_micros(50);
const SCAN_TARGET: Duration = Duration::from_secs(2);

fn rotation() -> OnCall {
    let names = ["ana", "ben", "carla", "dana", "erin", "lead"];
    let people: BTreeMap<String, Person> = names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                Person {
                    name: n.to_string(),
                    email: format!("{n}@desk.example"),
                    handle: None,
                },
            )
        })
        .collect();
    let day = NaiveDate::from_ymd_opt(2027, 1, 4).unwrap();
    let overrides = (0..50u64)
        .map(|i| {
            let from = (day + chrono::Days::new(i * 3))
                .and_hms_opt(20, 0, 0)
                .unwrap();
            Override {
                person: "lead".into(),
                from,
                to: from + chrono::Duration::hours(12),
            }
        })
        .collect();
    let desk = Rotation {
        name: "desk".into(),
        time_zone: chrono_tz::Europe::Madrid,
        layers: vec![
            Layer {
                kind: LayerKind::Turns {
                    people: names[..5].iter().map(|s| s.to_string()).collect(),
                    shift_days: 7,
                    first_handoff: parse_local("2026-01-05 08:00").unwrap(),
                },
                hours: vec![],
            },
            Layer {
                kind: LayerKind::Turns {
                    people: vec!["dana".into(), "erin".into()],
                    shift_days: 1,
                    first_handoff: parse_local("2026-01-05 20:00").unwrap(),
                },
                hours: WeeklySpan::parse("Mon-Sun 20:00-08:00").unwrap(),
            },
            Layer {
                kind: LayerKind::Slots(vec![(
                    WeeklySpan::parse("Sat 00:00-Mon 00:00").unwrap()[0],
                    "carla".into(),
                )]),
                hours: vec![],
            },
        ],
        overrides,
        escalation: vec!["lead".into()],
        escalate_after: std::time::Duration::ZERO,
    };
    OnCall {
        people,
        rotations: [("desk".to_string(), desk)].into(),
        default_rotation: "desk".into(),
        routes: BTreeMap::new(),
    }
}

fn main() {
    let oncall = rotation();
    let start: DateTime<Utc> = DateTime::parse_from_rfc3339("2027-03-20T00:00:00Z")
        .unwrap()
        .to_utc();

    // Decisions at instants spread over two weeks (across the March DST change).
    let began = Instant::now();
    let mut addressed = 0usize;
    for i in 0..DECISIONS {
        let at = start + chrono::Duration::seconds(i as i64 * 12);
        let kind = if i % 2 == 0 {
            AlertKind::Warning
        } else {
            AlertKind::Breach
        };
        addressed += oncall.recipients(kind, Some("default@0000"), at, &[]).len();
    }
    let per_decision = began.elapsed() / DECISIONS as u32;

    let mut scans = Vec::new();
    for _ in 0..5 {
        let began = Instant::now();
        let gaps = oncall.gaps(start);
        scans.push(began.elapsed());
        assert!(gaps.is_empty(), "the bench rotation covers every minute");
    }
    scans.sort();
    let scan = scans[scans.len() / 2];

    println!(
        "recipients(): {per_decision:?} per decision over {DECISIONS} ({addressed} recipients); \
         four-week gap scan: median {scan:?} (target ≤ {DECISION_TARGET:?}, ≤ {SCAN_TARGET:?})"
    );
    if per_decision > DECISION_TARGET || scan > SCAN_TARGET {
        eprintln!("target missed");
        std::process::exit(1);
    }
}
