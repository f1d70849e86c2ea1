//! The rotation maths on fixed instants: handoffs, layers, overrides, daylight saving, gaps, and
//! who receives each kind of alert.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Europe::Madrid;

use super::schedule::{local_clock, parse_local};
use super::*;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn local(text: &str) -> NaiveDateTime {
    parse_local(text).unwrap()
}

fn spans(text: &str) -> Vec<WeeklySpan> {
    WeeklySpan::parse(text).unwrap()
}

/// Weekly turns ana → ben handing off Mondays 08:00 Madrid time, from Monday 2026-11-23.
fn weekly() -> Layer {
    Layer {
        kind: LayerKind::Turns {
            people: vec!["ana".into(), "ben".into()],
            shift_days: 7,
            first_handoff: local("2026-11-23 08:00"),
        },
        hours: vec![],
    }
}

fn rotation(layers: Vec<Layer>, overrides: Vec<Override>) -> Rotation {
    Rotation {
        name: "desk".into(),
        time_zone: Madrid,
        layers,
        overrides,
        escalation: vec!["carla".into()],
        escalate_after: std::time::Duration::ZERO,
    }
}

fn people() -> BTreeMap<String, Person> {
    ["ana", "ben", "carla", "dana"]
        .into_iter()
        .map(|n| {
            (
                n.to_string(),
                Person {
                    name: n.into(),
                    email: format!("{n}@desk.example"),
                    handle: None,
                },
            )
        })
        .collect()
}

#[test]
fn weekly_turns_hand_off_at_the_local_time() {
    let r = rotation(vec![weekly()], vec![]);
    // Madrid is UTC+1 in November: the 08:00 handoff is 07:00 UTC.
    assert_eq!(
        r.on_call(utc("2026-11-23T06:59:00Z")),
        None,
        "before the start"
    );
    assert_eq!(r.on_call(utc("2026-11-23T07:00:00Z")), Some("ana"));
    assert_eq!(r.on_call(utc("2026-11-30T06:59:59Z")), Some("ana"));
    assert_eq!(r.on_call(utc("2026-11-30T07:00:00Z")), Some("ben"));
    assert_eq!(r.on_call(utc("2026-12-07T07:00:00Z")), Some("ana"));
}

#[test]
fn a_later_layer_wins_where_it_covers() {
    let nights = Layer {
        kind: LayerKind::Turns {
            people: vec!["dana".into()],
            shift_days: 1,
            first_handoff: local("2026-11-01 00:00"),
        },
        hours: spans("Mon-Sun 20:00-08:00"),
    };
    let r = rotation(vec![weekly(), nights], vec![]);
    assert_eq!(r.on_call(utc("2026-11-24T12:00:00Z")), Some("ana"));
    // 21:00 Madrid.
    assert_eq!(r.on_call(utc("2026-11-24T20:00:00Z")), Some("dana"));
    // 07:59 Madrid, the next morning.
    assert_eq!(r.on_call(utc("2026-11-25T06:59:00Z")), Some("dana"));
    assert_eq!(r.on_call(utc("2026-11-25T07:00:00Z")), Some("ana"));
}

#[test]
fn slots_cover_their_weekly_spans_and_wrap_over_the_weekend() {
    let r = rotation(
        vec![Layer {
            kind: LayerKind::Slots(vec![
                (spans("Mon-Fri 08:00-20:00")[0], "ana".into()),
                (spans("Fri 20:00-Mon 08:00")[0], "ben".into()),
            ]),
            hours: vec![],
        }],
        vec![],
    );
    // Monday 2026-11-23 09:00 Madrid.
    assert_eq!(r.on_call(utc("2026-11-23T08:00:00Z")), Some("ana"));
    // Monday 07:00 Madrid: still the weekend slot.
    assert_eq!(r.on_call(utc("2026-11-23T06:00:00Z")), Some("ben"));
    // Saturday noon.
    assert_eq!(r.on_call(utc("2026-11-28T11:00:00Z")), Some("ben"));
    // Tuesday 22:00 Madrid: only Monday's day slot was listed.
    assert_eq!(r.on_call(utc("2026-11-24T21:00:00Z")), None);
}

#[test]
fn an_override_wins_over_every_layer_for_its_range_only() {
    let r = rotation(
        vec![weekly()],
        vec![Override {
            person: "carla".into(),
            from: local("2026-12-24 20:00"),
            to: local("2026-12-26 08:00"),
        }],
    );
    assert_eq!(r.on_call(utc("2026-12-24T18:59:00Z")), Some("ana"));
    assert_eq!(r.on_call(utc("2026-12-24T19:00:00Z")), Some("carla"));
    assert_eq!(r.on_call(utc("2026-12-26T06:59:00Z")), Some("carla"));
    assert_eq!(r.on_call(utc("2026-12-26T07:00:00Z")), Some("ana"));
}

#[test]
fn a_handoff_in_the_skipped_spring_hour_happens_when_the_clock_jumps() {
    // Madrid: 2027-03-28 02:00 CET jumps to 03:00 CEST (01:00 UTC). Handoff daily at 02:30.
    let r = rotation(
        vec![Layer {
            kind: LayerKind::Turns {
                people: vec!["ana".into(), "ben".into()],
                shift_days: 1,
                first_handoff: local("2027-03-27 02:30"),
            },
            hours: vec![],
        }],
        vec![],
    );
    // 01:59:59 CET on the day: still Saturday's turn (ana).
    assert_eq!(r.on_call(utc("2027-03-28T00:59:59Z")), Some("ana"));
    // The next instant is 03:00 CEST: 02:30 has passed, ben's turn.
    assert_eq!(r.on_call(utc("2027-03-28T01:00:00Z")), Some("ben"));
    let shifts = r.shifts(utc("2027-03-27T12:00:00Z"), utc("2027-03-29T12:00:00Z"));
    let starts: Vec<_> = shifts.iter().map(|s| s.start).collect();
    assert_eq!(
        starts,
        [
            utc("2027-03-27T12:00:00Z"),
            utc("2027-03-28T01:00:00Z"),
            // The day after, 02:30 CEST is 00:30 UTC.
            utc("2027-03-29T00:30:00Z"),
        ]
    );
}

#[test]
fn a_handoff_in_the_repeated_autumn_hour_happens_once_at_its_first_pass() {
    // Madrid: 2026-10-25 03:00 CEST goes back to 02:00 CET (01:00 UTC). Handoff daily at 02:30.
    let r = rotation(
        vec![Layer {
            kind: LayerKind::Turns {
                people: vec!["ana".into(), "ben".into()],
                shift_days: 1,
                first_handoff: local("2026-10-24 02:30"),
            },
            hours: vec![],
        }],
        vec![],
    );
    // First pass 02:29 CEST = 00:29 UTC: ana; 02:30 CEST = 00:30 UTC: ben.
    assert_eq!(r.on_call(utc("2026-10-25T00:29:00Z")), Some("ana"));
    assert_eq!(r.on_call(utc("2026-10-25T00:30:00Z")), Some("ben"));
    // Second pass 02:15 CET = 01:15 UTC: still ben, no flip back.
    assert_eq!(r.on_call(utc("2026-10-25T01:15:00Z")), Some("ben"));
    assert_eq!(
        local_clock(Madrid, utc("2026-10-25T01:15:00Z")),
        local("2026-10-25 02:59") + chrono::Duration::seconds(59)
    );
    let shifts = r.shifts(utc("2026-10-24T12:00:00Z"), utc("2026-10-26T12:00:00Z"));
    assert_eq!(shifts.len(), 3, "{shifts:?}");
    assert_eq!(shifts[1].start, utc("2026-10-25T00:30:00Z"));
    // Ben's turn is an hour longer: to 02:30 CET on the 26th = 01:30 UTC.
    assert_eq!(shifts[2].start, utc("2026-10-26T01:30:00Z"));
}

#[test]
fn gaps_are_every_uncovered_stretch() {
    let r = rotation(
        vec![Layer {
            kind: LayerKind::Slots(vec![(spans("Mon-Fri 08:00-20:00")[0], "ana".into())]),
            hours: vec![],
        }],
        vec![],
    );
    // From Monday 2026-11-23 08:00 Madrid for one day: uncovered 20:00 to 08:00 the next day
    // (Tuesday has no slot at all).
    let gaps = r.gaps(utc("2026-11-23T07:00:00Z"), utc("2026-11-24T07:00:00Z"));
    assert_eq!(
        gaps,
        [Shift {
            start: utc("2026-11-23T19:00:00Z"),
            end: utc("2026-11-24T07:00:00Z"),
            person: None
        }]
    );
    let full = rotation(vec![weekly()], vec![]);
    assert!(
        full.gaps(utc("2026-11-23T07:00:00Z"), utc("2026-12-23T07:00:00Z"))
            .is_empty()
    );
}

#[test]
fn a_weekend_gap_is_described_as_a_weekly_range_in_the_rotation_zone() {
    let r = rotation(
        vec![Layer {
            kind: LayerKind::Slots(
                spans("Mon-Fri 08:00-20:00")
                    .into_iter()
                    .chain(spans("Mon-Thu 20:00-08:00"))
                    .map(|s| (s, "ana".to_string()))
                    .collect(),
            ),
            hours: vec![],
        }],
        vec![],
    );
    let from = utc("2026-11-23T07:00:00Z");
    let gaps = r.gaps(from, from + GAP_HORIZON);
    assert_eq!(gaps.len(), 4, "{gaps:?}");
    let text = describe_gaps(&r, &gaps);
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(
        text[0].contains("Fri 20:00-Mon 08:00 Europe/Madrid"),
        "{text:?}"
    );
}

#[test]
fn weekly_spans_parse_the_documented_forms() {
    assert_eq!(
        spans("Mon 08:00-20:00"),
        [WeeklySpan {
            start: 8 * 60,
            end: 20 * 60
        }]
    );
    assert_eq!(spans("Mon-Fri 08:00-20:00").len(), 5);
    // Ends the next morning.
    assert_eq!(
        spans("Sun 20:00-08:00"),
        [WeeklySpan {
            start: 6 * 1440 + 20 * 60,
            end: 8 * 60
        }]
    );
    assert_eq!(
        spans("Sat 20:00-Mon 08:00")[0].describe(),
        "Sat 20:00-Mon 08:00"
    );
    assert_eq!(spans("friday 00:00-24:00")[0].end, 5 * 1440);
    // The Gulf's work week and others across the week's end.
    let starts = |text: &str| -> Vec<u32> { spans(text).iter().map(|s| s.start / 1440).collect() };
    assert_eq!(starts("Sun-Thu 08:00-20:00"), [6, 0, 1, 2, 3]);
    assert_eq!(starts("Sat-Wed 08:00-17:00"), [5, 6, 0, 1, 2]);
    assert_eq!(starts("Fri-Mon 08:00-09:00"), [4, 5, 6, 0]);
    assert_eq!(spans("Sun-Thu 20:00-08:00")[0].end, 8 * 60);
    for bad in [
        "Mon",
        "Mon 8-20",
        "Funday 08:00-10:00",
        "Mon 25:00-26:00",
        "Fri-Mon Sat 08:00-09:00",
    ] {
        assert!(WeeklySpan::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn warnings_go_to_the_person_on_call_and_breaches_also_to_the_escalation_list() {
    let on_call = OnCall {
        people: people(),
        rotations: [("desk".to_string(), rotation(vec![weekly()], vec![]))].into(),
        default_rotation: "desk".into(),
        routes: BTreeMap::new(),
    };
    let at = utc("2026-11-24T12:00:00Z");
    let names = |r: Vec<Recipient>| r.into_iter().map(|r| r.person).collect::<Vec<_>>();
    assert_eq!(
        names(on_call.recipients(AlertKind::Warning, None, at, &[])),
        ["ana"]
    );
    assert_eq!(
        names(on_call.recipients(AlertKind::Breach, None, at, &[])),
        ["ana", "carla"]
    );
    assert_eq!(
        names(on_call.recipients(AlertKind::Renotify, None, at, &[])),
        ["ana", "carla"]
    );
    // Nobody on call yet (before the first handoff): a warning goes to the escalation list.
    assert_eq!(
        names(on_call.recipients(AlertKind::Warning, None, utc("2026-11-01T00:00:00Z"), &[])),
        ["carla"]
    );
    // Resolved goes to exactly those alerted, whoever is on call now.
    assert_eq!(
        names(on_call.recipients(
            AlertKind::Resolved,
            None,
            at,
            &["ben".into(), "carla".into(), "ben".into()]
        )),
        ["ben", "carla"]
    );
}

#[test]
fn with_escalate_after_a_breach_waits_for_its_escalation_and_the_chain_says_so() {
    let mut desk = rotation(vec![weekly()], vec![]);
    desk.escalate_after = std::time::Duration::from_secs(600);
    let on_call = OnCall {
        people: people(),
        rotations: [("desk".to_string(), desk)].into(),
        default_rotation: "desk".into(),
        routes: BTreeMap::new(),
    };
    let at = utc("2026-11-24T12:00:00Z");
    let names = |r: Vec<Recipient>| r.into_iter().map(|r| r.person).collect::<Vec<_>>();
    assert_eq!(
        names(on_call.recipients(AlertKind::Breach, None, at, &[])),
        ["ana"]
    );
    assert_eq!(
        names(on_call.recipients(AlertKind::Renotify, None, at, &["ana".into()])),
        ["ana"]
    );
    // Once escalated, reminders reach the list too; the breach itself is not sent again.
    let escalated = ["ana".to_string(), "carla".to_string()];
    assert_eq!(
        names(on_call.recipients(AlertKind::Renotify, None, at, &escalated)),
        ["ana", "carla"]
    );
    assert_eq!(
        names(on_call.recipients(AlertKind::Breach, None, at, &escalated)),
        ["ana"]
    );
    // The monitor's own alerts, and a breach with nobody on call, escalate at once.
    assert_eq!(
        names(on_call.recipients_at_once(AlertKind::Breach, None, at, &[])),
        ["ana", "carla"]
    );
    assert_eq!(
        names(on_call.recipients(AlertKind::Breach, None, utc("2026-11-01T00:00:00Z"), &[])),
        ["carla"]
    );
    assert_eq!(
        on_call.escalate_after(None),
        Some(chrono::Duration::minutes(10))
    );
    assert_eq!(names(on_call.escalation_for(None, &[])), ["carla"]);
    assert!(on_call.escalation_for(None, &escalated).is_empty());
    let chain = on_call.chain(&on_call.rotations["desk"]);
    assert!(chain.contains("breach → on call; after 10m"), "{chain}");
    assert!(chain.contains("carla <carla@"), "{chain}");
}

#[test]
fn a_routed_policy_uses_its_own_rotation() {
    let mut vip = rotation(
        vec![Layer {
            kind: LayerKind::Slots(vec![(spans("Mon 00:00-Mon 00:00")[0], "dana".into())]),
            hours: vec![],
        }],
        vec![],
    );
    vip.name = "vip".into();
    vip.escalation = vec![];
    let on_call = OnCall {
        people: people(),
        rotations: [
            ("desk".to_string(), rotation(vec![weekly()], vec![])),
            ("vip".to_string(), vip),
        ]
        .into(),
        default_rotation: "desk".into(),
        routes: [("vip".to_string(), "vip".to_string())].into(),
    };
    let at = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
    let first = |p: Option<&str>| {
        on_call.recipients(AlertKind::Breach, p, at, &[])[0]
            .person
            .clone()
    };
    assert_eq!(first(Some("vip@1a2b3c4d")), "dana");
    assert_eq!(first(Some("vip")), "dana");
    assert_eq!(first(Some("default@99aa")), "ana");
    assert_eq!(first(None), "ana");
}
