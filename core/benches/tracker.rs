//! The rules alone: how fast the tracker decides and applies a desk's mail, and how fast a
//! replay folds the resulting events back into a fresh tracker (what start-up does) — for a
//! desk read in time order, and for the same desk read with every reply 16 minutes late, so
//! the breaches fire first and three inquiries in four are revised (`inquiry_revised`).
//!
//! `cargo bench -p slawatch-core --bench tracker`; `SLAWATCH_BENCH_N` conversations (default
//! 200,000). Each conversation: a customer message; for one in three a follow-up before the
//! reply; the desk's reply within 5 minutes (half), after the warning (a quarter) or after the
//! breach (a quarter), with the scheduler's warning and breach instants observed in time order
//! between. Nothing here reads a clock but the stopwatch: `now` is each observation's instant.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use slawatch_core::desk::DeskSettings;
use slawatch_core::tracker::observation::{Address, Mail, Observation, Stage};
use slawatch_core::tracker::policy::{Policy, PolicySet};
use slawatch_core::tracker::{Event, Tracker, TrackerRules};

const SUPPORT: &str = "support@desk.example";

fn address(email: String) -> Address {
    Address { name: None, email }
}

fn customer_mail(n: usize, part: &str, at: DateTime<Utc>, in_reply_to: Option<String>) -> Mail {
    let message_id = format!("<c{n}{part}@customer.example>");
    Mail {
        source: "bench".into(),
        folder: "INBOX".into(),
        digest: format!("{:064x}", n * 4 + part.len()),
        message_id,
        delivered_at: at,
        seen_at: at,
        from: Some(address(format!("c{n}@customer.example"))),
        to: vec![address(SUPPORT.into())],
        subject: format!("Question {n} about my order"),
        in_reply_to: in_reply_to.into_iter().collect(),
        text_sample: "Hello, my order has not arrived yet. Could you tell me where it is?".into(),
        ..Mail::default()
    }
}

fn reply(n: usize, at: DateTime<Utc>) -> Mail {
    Mail {
        source: "bench".into(),
        folder: "Sent".into(),
        message_id: format!("<r{n}@desk.example>"),
        digest: format!("{:064x}", n * 4 + 3),
        delivered_at: at,
        seen_at: at,
        from: Some(address(SUPPORT.into())),
        to: vec![address(format!("c{n}@customer.example"))],
        subject: format!("Re: Question {n} about my order"),
        in_reply_to: vec![format!("<c{n}@customer.example>")],
        references: vec![format!("<c{n}@customer.example>")],
        ..Mail::default()
    }
}

/// Every observation of `n` conversations, in time order, with its instant.
fn desk(n: usize) -> Vec<(DateTime<Utc>, Observation)> {
    desk_read(n, TimeDelta::zero())
}

/// The same desk with every reply read `reply_delay` after it was sent, and the scheduler's
/// warning and breach of every inquiry observed at their instants (stale ones cause nothing).
fn desk_read(n: usize, reply_delay: TimeDelta) -> Vec<(DateTime<Utc>, Observation)> {
    let t0 = Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap();
    let mut timeline = Vec::with_capacity(n * 5);
    for i in 0..n {
        let received = t0 + TimeDelta::seconds(30 * i as i64);
        let first = customer_mail(i, "", received, None);
        let id = slawatch_core::domain::InquiryId::derive(
            slawatch_core::domain::Channel::Email,
            &first.message_id,
        );
        timeline.push((received, Observation::MessageReceived(first)));
        if i % 3 == 0 {
            let at = received + TimeDelta::seconds(90);
            let follow = customer_mail(i, "f", at, Some(format!("<c{i}@customer.example>")));
            timeline.push((at, Observation::MessageReceived(follow)));
        }
        let answer_after = match i % 4 {
            0 | 1 => TimeDelta::minutes(4),
            2 => TimeDelta::minutes(12),
            _ => TimeDelta::minutes(20),
        };
        let warn = received + TimeDelta::minutes(10);
        let breach = received + TimeDelta::minutes(15);
        for (at, stage) in [(warn, Stage::Warning(0)), (breach, Stage::Breach)] {
            if at < received + answer_after + reply_delay {
                let inquiry_id = id.clone();
                timeline.push((at, Observation::DeadlineReached { inquiry_id, stage }));
            }
        }
        let at = received + answer_after;
        timeline.push((at + reply_delay, Observation::MessageSent(reply(i, at))));
    }
    timeline.sort_by_key(|(at, _)| *at);
    timeline
}

fn tracker() -> Tracker {
    Tracker::new(Arc::new(TrackerRules {
        desk: DeskSettings::with_address(SUPPORT),
        policies: PolicySet::single(Policy::default()),
    }))
}

/// Decides and applies `timeline`, then replays its events into a fresh tracker; prints both
/// rates and returns the replay's events per second.
fn run(name: &str, timeline: &[(DateTime<Utc>, Observation)]) -> Replay {
    let mut live = tracker();
    let mut events: Vec<Event> = Vec::with_capacity(timeline.len() * 2);
    let started = Instant::now();
    for (now, observation) in timeline {
        let decided = live
            .decide(observation, *now)
            .expect("the bench desk has no manual acks");
        for event in &decided {
            live.apply(event);
        }
        events.extend(decided);
    }
    let decide = started.elapsed();

    let mut replayed = tracker();
    let started = Instant::now();
    for event in &events {
        replayed.apply(event);
    }
    let replay = started.elapsed();
    assert_eq!(replayed.len(), live.len());
    let revised = events
        .iter()
        .filter(|e| e.kind() == "inquiry_revised")
        .count();
    println!(
        "{name}: decide+apply {} observations → {} events ({revised} revisions), {} inquiries in {:.2} s ({:.0} observations/s); replay {:.2} s ({:.0} events/s)",
        timeline.len(),
        events.len(),
        live.len(),
        decide.as_secs_f64(),
        timeline.len() as f64 / decide.as_secs_f64(),
        replay.as_secs_f64(),
        events.len() as f64 / replay.as_secs_f64()
    );
    Replay {
        seconds: replay.as_secs_f64(),
        events: events.len(),
    }
}

/// How long a replay took, and of how many events.
struct Replay {
    seconds: f64,
    events: usize,
}

fn main() {
    let n: usize = std::env::var("SLAWATCH_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let in_order = desk(n);
    let late = desk_read(n, TimeDelta::minutes(16));
    // Interleaved, so a noisy machine slows both alike. Costs, with revisions over without:
    // the whole replay (what start-up waits for) and per event.
    let (mut whole, mut per_event) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let a = run("in time order  ", &in_order);
        let b = run("replies late   ", &late);
        whole.push(b.seconds / a.seconds);
        per_event.push((b.seconds / b.events as f64) / (a.seconds / a.events as f64));
    }
    whole.sort_by(f64::total_cmp);
    per_event.sort_by(f64::total_cmp);
    println!(
        "replay time of the ledger with revisions / without (median of 3): whole {:.2}, per event {:.2}",
        whole[1], per_event[1]
    );
}
