//! Evidence order (DESIGN.md "Evidence order"): the outcome of every inquiry is a function of
//! the evidence, never of the order in which it is read.
//!
//! Each case generates a small desk of email conversations (first messages, follow-ups before
//! and after replies, replies threaded by `In-Reply-To` or `References` only, auto-
//! acknowledgements, out-of-office replies, messages delivered twice) and evaluates it twice:
//!
//! - the **reference**: every message in its own time order (ties: a message before anything
//!   that references it, then by folder and Message-ID), the scheduler firing each warning and
//!   breach at its instant, between the messages;
//! - a **reading**: the same messages in a random order, with the clock advancing between
//!   arrivals (so warnings and breaches fire before the evidence that answers them), and the
//!   tracker rebuilt from its own events at a random point (a restart replaying the ledger).
//!
//! Both must end with the same outcomes: per inquiry its messages, state, `sla`, received and
//! responded times, response kind and exclusion reason.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::event::Event;

use super::observation::{Address, Call, CallDirection, CallOutcome, Mail, Observation, Stage};
use super::policy::{Policy, PolicySet};
use super::state::{Tracker, TrackerRules};
use super::working_set::Snapshot;
use crate::desk::DeskSettings;
use crate::domain::InquiryId;
use crate::phone_number::{normalize, region};

const SUPPORT: &str = "support@example.com";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap()
}

fn addr(email: &str) -> Address {
    Address {
        name: None,
        email: email.into(),
    }
}

fn tracker() -> Tracker {
    Tracker::new(Arc::new(TrackerRules {
        desk: DeskSettings {
            auto_ack_subjects: vec!["auto:".into()],
            ..DeskSettings::with_address(SUPPORT)
        },
        policies: PolicySet::single(Policy::default()),
    }))
}

/// How a message refers to its parent.
#[derive(Debug, Clone, Copy)]
enum Threading {
    InReplyTo,
    ReferencesOnly,
}

/// One conversation's shape; times are seconds after the conversation starts.
#[derive(Debug, Clone)]
struct Conversation {
    start: i64,
    /// A second customer message, its delay and whether it has a Message-ID.
    follow_up: Option<(i64, Threading, bool)>,
    /// The desk's reply: its delay, threading, and whether it answers the follow-up.
    reply: Option<(i64, Threading, bool)>,
    /// The desk's automatic acknowledgement, seconds after the first message.
    auto_ack: Option<i64>,
    /// The customer's out-of-office answer to the reply, seconds after it.
    out_of_office: Option<i64>,
    /// A next customer message after the reply, and the desk's answer to it.
    next: Option<(i64, Option<i64>)>,
    /// The first message is delivered twice (another alias, a redelivery).
    delivered_twice: bool,
}

fn threading() -> impl Strategy<Value = Threading> {
    prop_oneof![Just(Threading::InReplyTo), Just(Threading::ReferencesOnly)]
}

/// Delays in whole minutes or minutes and seconds, so ties between conversations happen.
fn delay(max_minutes: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        (1..=max_minutes).prop_map(|m| m * 60),
        (1..=max_minutes * 60),
    ]
}

fn conversation() -> impl Strategy<Value = Conversation> {
    (
        0..40i64,
        proptest::option::of((delay(12), threading(), any::<bool>())),
        proptest::option::weighted(0.85, (delay(25), threading(), any::<bool>())),
        proptest::option::weighted(0.25, 1..30i64),
        proptest::option::weighted(0.2, delay(5)),
        proptest::option::weighted(0.3, (delay(20), proptest::option::of(delay(25)))),
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            |(start, follow_up, reply, auto_ack, out_of_office, next, delivered_twice)| {
                Conversation {
                    start: start * 60,
                    follow_up,
                    reply,
                    auto_ack,
                    out_of_office,
                    next,
                    delivered_twice,
                }
            },
        )
}

/// One message, as the source would hand it over, and where it was read.
#[derive(Debug, Clone)]
struct Evidence {
    /// Its own time: delivery, call start, pickup, hangup or callback connection.
    at: DateTime<Utc>,
    /// The written-down order at the same second: a message after those it references (its
    /// depth in the thread), a customer's message before the desk's, then by folder and id.
    tie: (usize, String),
    observation: Observation,
}

impl Evidence {
    fn mail(inbound: bool, mail: Mail) -> Evidence {
        Evidence {
            at: mail.delivered_at,
            tie: (
                mail.references.len(),
                format!("{}{}", mail.folder, mail.message_id),
            ),
            observation: if inbound {
                Observation::MessageReceived(mail)
            } else {
                Observation::MessageSent(mail)
            },
        }
    }

    fn call(at: DateTime<Utc>, observation: Observation) -> Evidence {
        let key = match &observation {
            Observation::CallStarted(c)
            | Observation::CallAnswered(c)
            | Observation::CallEnded(c) => {
                format!("{}{}", c.call_id, c.record_id)
            }
            _ => unreachable!("call evidence"),
        };
        Evidence {
            at,
            tie: (0, key),
            observation,
        }
    }

    /// The observation as read at `seen_at`.
    fn observation(&self, seen_at: DateTime<Utc>) -> Observation {
        let mut observation = self.observation.clone();
        match &mut observation {
            Observation::MessageReceived(m) | Observation::MessageSent(m) => m.seen_at = seen_at,
            Observation::CallStarted(c)
            | Observation::CallAnswered(c)
            | Observation::CallEnded(c) => c.seen_at = seen_at,
            _ => {}
        }
        observation
    }
}

fn customer_mail(
    c: usize,
    name: &str,
    at: DateTime<Utc>,
    parent: Option<(&Mail, Threading)>,
) -> Mail {
    let mut mail = Mail {
        source: "imap".into(),
        folder: "INBOX".into(),
        message_id: format!("<{name}.{c}@customer.test>"),
        digest: format!("digest-{name}-{c}"),
        delivered_at: at,
        from: Some(addr(&format!("c{c}@customer.test"))),
        to: vec![addr(SUPPORT)],
        subject: format!("Question {c}"),
        text_sample: "I need help with my invoice, it shows the wrong amount for November.".into(),
        ..Mail::default()
    };
    thread(&mut mail, parent);
    mail
}

fn desk_mail(c: usize, name: &str, at: DateTime<Utc>, parent: (&Mail, Threading)) -> Mail {
    let mut mail = Mail {
        source: "imap".into(),
        folder: "Sent".into(),
        message_id: format!("<{name}.{c}@example.com>"),
        digest: format!("digest-{name}-{c}"),
        delivered_at: at,
        from: Some(addr(SUPPORT)),
        to: vec![addr(&format!("c{c}@customer.test"))],
        subject: format!("Re: Question {c}"),
        ..Mail::default()
    };
    thread(&mut mail, Some(parent));
    mail
}

/// `References` carry the whole chain (the parent's references, then the parent), as RFC 5322
/// asks and mail clients do; `In-Reply-To` the parent, unless only `References` are written.
fn thread(mail: &mut Mail, parent: Option<(&Mail, Threading)>) {
    if let Some((parent, how)) = parent {
        mail.references = parent.references.clone();
        mail.references.push(parent.message_id.clone());
        if let Threading::InReplyTo = how {
            mail.in_reply_to = vec![parent.message_id.clone()];
        }
    }
}

/// Every message of the desk.
fn evidence(conversations: &[Conversation]) -> Vec<Evidence> {
    let mut out = Vec::new();
    let mut push = |inbound: bool, mail: &Mail| out.push(Evidence::mail(inbound, mail.clone()));
    for (c, conv) in conversations.iter().enumerate() {
        let start = t0() + Duration::seconds(conv.start);
        let first = customer_mail(c, "first", start, None);
        push(true, &first);
        if conv.delivered_twice {
            push(true, &first);
        }
        let mut follow = None;
        if let Some((after, how, has_id)) = conv.follow_up {
            let at = start + Duration::seconds(after);
            let mut m = customer_mail(c, "follow", at, Some((&first, how)));
            if !has_id {
                m.message_id = format!("<synthetic-follow.{c}@synthetic.slawatch.invalid>");
                m.message_id_synthetic = true;
            }
            push(true, &m);
            follow = Some(m);
        }
        if let Some(after) = conv.auto_ack {
            let at = start + Duration::seconds(after);
            let mut m = desk_mail(c, "ack", at, (&first, Threading::InReplyTo));
            m.subject = format!("auto: we got your message {c}");
            m.signals.auto_submitted = Some("auto-replied".into());
            push(false, &m);
        }
        let Some((after, how, to_follow)) = conv.reply else {
            continue;
        };
        let reply_at = start + Duration::seconds(after);
        let parent = match (&follow, to_follow) {
            (Some(f), true) => f,
            _ => &first,
        };
        let reply = desk_mail(c, "reply", reply_at, (parent, how));
        push(false, &reply);
        if let Some(after) = conv.out_of_office {
            let at = reply_at + Duration::seconds(after);
            let mut m = customer_mail(c, "ooo", at, Some((&reply, Threading::InReplyTo)));
            m.subject = format!("Out of office: Re: Question {c}");
            m.signals.auto_submitted = Some("auto-replied".into());
            push(true, &m);
        }
        if let Some((after, answer)) = conv.next {
            let next_at = reply_at + Duration::seconds(after);
            let next = customer_mail(c, "next", next_at, Some((&reply, Threading::InReplyTo)));
            push(true, &next);
            if let Some(after) = answer {
                let at = next_at + Duration::seconds(after);
                push(
                    false,
                    &desk_mail(c, "reply2", at, (&next, Threading::InReplyTo)),
                );
            }
        }
    }
    out
}

/// The written-down order of evidence: by its own time; at the same second a message before
/// anything that references it, then by folder and Message-ID.
fn time_order(evidence: &mut [Evidence]) {
    evidence.sort_by(|a, b| (a.at, &a.tie).cmp(&(b.at, &b.tie)));
}

/// The scheduler: fires every warning and breach due at `now` (strictly before it when
/// `strictly_before`), in instant order, with `now` as the clock; records the events.
fn fire_due(
    tracker: &mut Tracker,
    now: DateTime<Utc>,
    strictly_before: bool,
    log: &mut Vec<Event>,
) {
    let mut tried = BTreeSet::new();
    loop {
        let mut due: Vec<(DateTime<Utc>, InquiryId, Stage)> = Vec::new();
        for inquiry in tracker.open().filter(|i| i.breached_at.is_none()) {
            for (i, at) in inquiry.warn_at.iter().enumerate() {
                let index = i as u8;
                if !inquiry.alerts.iter().any(|a| a.index == Some(index)) {
                    due.push((*at, inquiry.id.clone(), Stage::Warning(index)));
                }
            }
            if let Some(at) = inquiry.deadline_at {
                due.push((at, inquiry.id.clone(), Stage::Breach));
            }
        }
        due.retain(|(at, id, stage)| {
            (if strictly_before {
                *at < now
            } else {
                *at <= now
            }) && !tried.contains(&(id.clone(), *stage))
        });
        due.sort_by_key(|(at, id, _)| (*at, id.clone()));
        let Some((at, inquiry_id, stage)) = due.into_iter().next() else {
            return;
        };
        tried.insert((inquiry_id.clone(), stage));
        let clock = if strictly_before { at } else { now };
        let reached = Observation::DeadlineReached { inquiry_id, stage };
        log.extend(
            tracker
                .observe(&reached, clock)
                .expect("deadlines are never refused"),
        );
    }
}

/// What the outcome of an inquiry is, independent of how it was read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Outcome {
    messages: Vec<String>,
    state: &'static str,
    sla: &'static str,
    received_at: DateTime<Utc>,
    responded_at: Option<DateTime<Utc>>,
    response_kind: Option<String>,
    excluded_reason: Option<String>,
    kind: Option<String>,
}

fn outcomes(tracker: &Tracker) -> Vec<Outcome> {
    let mut out: Vec<Outcome> = tracker
        .newest_first()
        .map(|i| {
            let mut messages: Vec<String> = std::iter::once(i.external_id.to_string())
                .chain(i.follow_up_messages.iter().map(|f| f.external_id.clone()))
                .collect();
            messages.sort();
            Outcome {
                messages,
                state: i.state.as_str(),
                sla: i.sla.as_str(),
                received_at: i.received_at,
                responded_at: i.responded_at,
                response_kind: i.response_kind.map(|k| format!("{k:?}")),
                excluded_reason: i.excluded_reason.map(|r| r.as_str().to_string()),
                kind: i.kind.map(|k| format!("{k:?}")),
            }
        })
        .collect();
    out.sort();
    out
}

/// The reference evaluation: time order, deadlines between the messages.
fn reference(evidence: &[Evidence], end: DateTime<Utc>) -> Vec<Outcome> {
    let mut ordered = evidence.to_vec();
    time_order(&mut ordered);
    let mut tracker = tracker();
    let mut log = Vec::new();
    for e in &ordered {
        let at = e.at;
        fire_due(&mut tracker, at, true, &mut log);
        log.extend(
            tracker
                .observe(&e.observation(at), at)
                .expect("evidence is never refused"),
        );
    }
    fire_due(&mut tracker, end, false, &mut log);
    outcomes(&tracker)
}

/// How a reading keeps and rebuilds its state.
#[derive(Debug, Clone, Copy)]
struct Keeping {
    /// Threads with no evidence this long before the clock leave memory (`None`: all stay).
    window: Option<Duration>,
    /// A snapshot taken before arrival `n`; the restart loads it and replays the rest.
    snapshot_at: Option<usize>,
}

const EVERYTHING: Keeping = Keeping {
    window: None,
    snapshot_at: None,
};

/// The daemon's part, in memory: the ledger (seq = index + 1, with the clock each event was
/// written at) and the store's archive of evicted threads (key → the thread's seqs), used as
/// the engine uses them (`working_set.rs`).
struct Desk {
    tracker: Tracker,
    ledger: Vec<(DateTime<Utc>, Event)>,
    archive_keys: HashMap<u64, usize>,
    archive: Vec<(String, Vec<i64>)>,
    archive_index: HashMap<String, usize>,
    window: Option<Duration>,
    evicted: usize,
    restored: usize,
}

impl Desk {
    fn new(window: Option<Duration>) -> Desk {
        Desk {
            tracker: tracker(),
            ledger: Vec::new(),
            archive_keys: HashMap::new(),
            archive: Vec::new(),
            archive_index: HashMap::new(),
            window,
            evicted: 0,
            restored: 0,
        }
    }

    /// Brings back the evicted threads `keys` lead to, as they were before `before` (a seq).
    fn restore(&mut self, keys: &[u64], before: i64) {
        for key in keys {
            let Some(&n) = self.archive_keys.get(key) else {
                continue;
            };
            let (thread, seqs) = &self.archive[n];
            if self.tracker.holds_thread(thread) {
                continue;
            }
            let events: Vec<(i64, &Event)> = seqs
                .iter()
                .filter(|s| **s < before)
                .map(|s| (*s, &self.ledger[*s as usize - 1].1))
                .collect();
            if !events.is_empty() {
                self.restored += 1;
                self.tracker.restore(events);
            }
        }
    }

    /// Writes events to the ledger and notes their seqs.
    fn commit(&mut self, events: Vec<Event>, now: DateTime<Utc>) {
        for e in events {
            self.ledger.push((now, e));
            let seq = self.ledger.len() as i64;
            self.tracker
                .note_ledger_seq(&self.ledger[seq as usize - 1].1, seq);
        }
    }

    fn evict(&mut self, now: DateTime<Utc>) {
        let Some(window) = self.window else {
            return;
        };
        for thread in self.tracker.evict(now - window) {
            self.evicted += 1;
            let n = *self
                .archive_index
                .entry(thread.thread.clone())
                .or_insert_with(|| {
                    self.archive.push((thread.thread.clone(), Vec::new()));
                    self.archive.len() - 1
                });
            let seqs = &mut self.archive[n].1;
            seqs.extend(thread.seqs);
            seqs.sort_unstable();
            seqs.dedup();
            for key in thread.keys {
                self.archive_keys.insert(key, n);
            }
        }
    }

    fn observe(&mut self, observation: &Observation, now: DateTime<Utc>) {
        let wanted = self.tracker.wanted_for(observation);
        self.restore(&wanted, i64::MAX);
        let events = self
            .tracker
            .observe(observation, now)
            .expect("evidence is never refused");
        self.commit(events, now);
        self.evict(now);
    }

    /// The scheduler's turn (see [`fire_due`]), committed.
    fn fire_due(&mut self, now: DateTime<Utc>) {
        let mut log = Vec::new();
        fire_due(&mut self.tracker, now, false, &mut log);
        self.commit(log, now);
    }

    /// A restart: from `snapshot` (taken at `seq`) or from nothing, the ledger after it
    /// replayed with evicted threads restored as the engine does.
    fn restart(&mut self, snapshot: Option<&(i64, Snapshot)>) {
        self.tracker = tracker();
        let mut from = 0;
        if let Some((seq, snapshot)) = snapshot {
            assert_eq!(snapshot.key_check, super::working_set::key_check());
            self.tracker.load_snapshot(snapshot);
            let mut seqs: Vec<i64> = snapshot.threads.iter().flatten().copied().collect();
            seqs.sort_unstable();
            let events: Vec<(i64, &Event)> = seqs
                .iter()
                .map(|s| (*s, &self.ledger[*s as usize - 1].1))
                .collect();
            self.tracker.restore(events);
            from = *seq as usize;
        }
        for n in from..self.ledger.len() {
            let seq = n as i64 + 1;
            let wanted = self.tracker.wanted_for_event(&self.ledger[n].1);
            self.restore(&wanted, seq);
            let (at, event) = &self.ledger[n];
            let at = *at;
            self.tracker.apply(event);
            let event = self.ledger[n].1.clone();
            self.tracker.note_ledger_seq(&event, seq);
            self.evict(at);
        }
    }
}

/// A reading: `order` (a permutation), the clock advancing by `delays` (seconds) between
/// arrivals, and a restart (the tracker rebuilt from the ledger, or from a snapshot and the
/// ledger after it) before arrival `restart_at`; the working set kept as `keeping` says.
/// Returns the outcomes (every inquiry of the ledger), the number of revisions and merges, of
/// reclassifications, and of threads evicted and restored.
fn reading(
    evidence: &[Evidence],
    order: &[usize],
    delays: &[i64],
    restart_at: usize,
    end: DateTime<Utc>,
    keeping: Keeping,
) -> (Vec<Outcome>, usize, usize, (usize, usize)) {
    let mut desk = Desk::new(keeping.window);
    let mut snapshot: Option<(i64, Snapshot)> = None;
    let mut now = t0();
    for (n, &i) in order.iter().enumerate() {
        if keeping.snapshot_at == Some(n) {
            assert!(desk.tracker.all_noted());
            snapshot = Some((desk.ledger.len() as i64, desk.tracker.snapshot()));
        }
        if n == restart_at {
            desk.restart(snapshot.as_ref().filter(|_| keeping.snapshot_at.is_some()));
        }
        let e = &evidence[i];
        now = now.max(e.at) + Duration::seconds(delays[n % delays.len()]);
        desk.fire_due(now);
        desk.observe(&e.observation(now), now);
    }
    desk.fire_due(end.max(now));
    // Every inquiry, whether in memory or not: the whole ledger applied.
    let mut all = tracker();
    for (_, e) in &desk.ledger {
        all.apply(e);
    }
    let count = |kinds: &[&str]| {
        desk.ledger
            .iter()
            .filter(|(_, e)| kinds.contains(&e.kind()))
            .count()
    };
    (
        outcomes(&all),
        count(&["inquiry_revised", "inquiry_merged"]),
        count(&["inquiry_reclassified"]),
        (desk.evicted, desk.restored),
    )
}

/// What a run of [`prove_order_independence`] exercised: the share of cases with a revision or
/// a merge, and (with a working set) with a thread restored from the archive.
struct Exercised {
    revised: f64,
    restored: f64,
}

/// Runs `cases` generated desks (`SLAWATCH_ORDER_CASES` overrides it), each read in a random
/// order with random clock advances and a restart at a random point, against the reference.
/// With `working_set`, threads leave memory an hour after their last evidence and the restart
/// loads a snapshot taken at a random earlier point (or none: a full replay).
fn prove_order_independence<D: std::fmt::Debug + Clone>(
    desks: impl Strategy<Value = D>,
    evidence_of: fn(&D) -> Vec<Evidence>,
    working_set: bool,
) -> Exercised {
    let cases: u32 = std::env::var("SLAWATCH_ORDER_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let revised = std::cell::Cell::new(0u32);
    let reclassified = std::cell::Cell::new(0u32);
    let restored = std::cell::Cell::new(0u32);
    let readings = desks.prop_flat_map(move |desk| {
        let n = evidence_of(&desk).len();
        (
            Just(desk),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            // With a working set, evidence is also read hours late: after its thread left.
            proptest::collection::vec(
                prop_oneof![
                    0..60i64,
                    0..1800i64,
                    0..if working_set { 7200i64 } else { 1800 }
                ],
                1..=6,
            ),
            (0..=n).prop_flat_map(|restart| (Just(restart), proptest::option::of(0..=restart))),
        )
    });
    runner
        .run(&readings, |(desk, order, delays, (restart_at, snapshot_at))| {
            let all = evidence_of(&desk);
            let end = t0() + Duration::hours(6);
            let expected = reference(&all, end);
            let keeping = if working_set {
                Keeping {
                    window: Some(Duration::hours(1)),
                    snapshot_at,
                }
            } else {
                EVERYTHING
            };
            let (got, revisions, reclassifications, (_, restores)) =
                reading(&all, &order, &delays, restart_at, end, keeping);
            if revisions > 0 {
                revised.set(revised.get() + 1);
            }
            if reclassifications > 0 {
                reclassified.set(reclassified.get() + 1);
            }
            if restores > 0 {
                restored.set(restored.get() + 1);
            }
            if got != expected {
                return Err(TestCaseError::fail(format!(
                    "read in order {order:?} (delays {delays:?}, restart before {restart_at}, {keeping:?}):\n got      {got:#?}\n expected {expected:#?}"
                )));
            }
            Ok(())
        })
        .unwrap();
    let share = |n: u32| f64::from(n) / f64::from(cases);
    println!(
        "{cases} cases, {:.1} % with a revision or a merge, {:.1} % with a reclassification, {:.1} % with a thread restored",
        share(revised.get()) * 100.0,
        share(reclassified.get()) * 100.0,
        share(restored.get()) * 100.0,
    );
    Exercised {
        revised: share(revised.get()),
        restored: share(restored.get()),
    }
}

#[test]
fn email_outcomes_do_not_depend_on_read_order_clock_or_restart_point() {
    let share = prove_order_independence(
        proptest::collection::vec(conversation(), 1..=3),
        |convs: &Vec<Conversation>| evidence(convs),
        false,
    )
    .revised;
    assert!(
        share >= 0.2,
        "only {share} of the cases exercised a revision"
    );
}

// ---- phone ------------------------------------------------------------------------------------

/// Which feeds record a call: the CDR (one row at hangup), queue_log (entry, then connect or
/// abandon, each when it happens), or both.
#[derive(Debug, Clone, Copy)]
enum Feeds {
    Cdr,
    QueueLog,
    Both,
}

/// One inbound call: when it came in (seconds), when a person picked up (delay) or how it
/// ended, how long it lasted, and which feeds record it.
#[derive(Debug, Clone)]
struct PhoneCall {
    start: i64,
    pickup: Option<i64>,
    unanswered: CallOutcome,
    length: i64,
    feeds: Feeds,
}

/// Calls from one number and the desk's callbacks to it (seconds, connected or not).
#[derive(Debug, Clone)]
struct Caller {
    calls: Vec<PhoneCall>,
    callbacks: Vec<(i64, bool)>,
}

fn caller() -> impl Strategy<Value = Caller> {
    let call = (
        0..3000i64,
        proptest::option::weighted(0.4, 5..1500i64),
        prop_oneof![
            Just(CallOutcome::NoAnswer),
            Just(CallOutcome::Abandoned),
            Just(CallOutcome::Voicemail)
        ],
        10..400i64,
        prop_oneof![Just(Feeds::Cdr), Just(Feeds::QueueLog), Just(Feeds::Both)],
    )
        .prop_map(|(start, pickup, unanswered, length, feeds)| PhoneCall {
            start,
            pickup,
            unanswered,
            length,
            feeds,
        });
    (
        proptest::collection::vec(call, 1..=3),
        proptest::collection::vec((0..4000i64, proptest::bool::weighted(0.7)), 0..=2),
    )
        .prop_map(|(calls, callbacks)| Caller { calls, callbacks })
}

fn phone_call(n: usize, k: usize, record: &str, at: DateTime<Utc>) -> Call {
    Call {
        source: "pbx".into(),
        call_id: format!("n{n}c{k}"),
        // Record ids are unique, as uniqueid+sequence, file lines and Twilio sids are.
        record_id: format!("n{n}c{k}-{record}"),
        direction: CallDirection::Inbound,
        number: normalize(&format!("+3460012340{n}"), region("ES")),
        name: None,
        line: Some("soporte".into()),
        language: Some(crate::domain::Language::Es),
        started_at: at,
        queue_entered_at: None,
        answered_at: None,
        ended_at: None,
        agent: None,
        outcome: CallOutcome::InProgress,
        seen_at: at,
        ignore: None,
    }
}

/// Every call record and callback of the callers.
fn phone_evidence(callers: &[Caller]) -> Vec<Evidence> {
    let mut out = Vec::new();
    for (n, caller) in callers.iter().enumerate() {
        for (k, c) in caller.calls.iter().enumerate() {
            let start = t0() + Duration::seconds(c.start);
            let pickup = c.pickup.map(|d| start + Duration::seconds(d));
            let end = pickup.unwrap_or(start) + Duration::seconds(c.length);
            if matches!(c.feeds, Feeds::Cdr | Feeds::Both) {
                // One row at hangup, with the whole call.
                let mut row = phone_call(n, k, "cdr", start);
                row.ended_at = Some(end);
                let observation = match pickup {
                    Some(at) => {
                        row.answered_at = Some(at);
                        row.agent = Some("agent-1".into());
                        row.outcome = CallOutcome::Answered;
                        Observation::CallAnswered(row)
                    }
                    None => {
                        row.outcome = c.unanswered;
                        Observation::CallEnded(row)
                    }
                };
                out.push(Evidence::call(end, observation));
            }
            if matches!(c.feeds, Feeds::QueueLog | Feeds::Both) {
                let mut enter = phone_call(n, k, "ql-enter", start);
                enter.queue_entered_at = Some(start);
                out.push(Evidence::call(start, Observation::CallStarted(enter)));
                match pickup {
                    Some(at) => {
                        let mut connect = phone_call(n, k, "ql-connect", start);
                        connect.answered_at = Some(at);
                        connect.agent = Some("agent-1".into());
                        connect.outcome = CallOutcome::Answered;
                        out.push(Evidence::call(at, Observation::CallAnswered(connect)));
                    }
                    None => {
                        let mut abandon = phone_call(n, k, "ql-abandon", start);
                        abandon.ended_at = Some(end);
                        abandon.outcome = CallOutcome::Abandoned;
                        out.push(Evidence::call(end, Observation::CallEnded(abandon)));
                    }
                }
            }
        }
        for (j, (at, connected)) in caller.callbacks.iter().enumerate() {
            let at = t0() + Duration::seconds(*at);
            let mut cb = phone_call(n, 100 + j, "cb", at);
            cb.direction = CallDirection::Outbound;
            cb.agent = Some("agent-2".into());
            cb.ended_at = Some(at + Duration::seconds(60));
            let observation = if *connected {
                cb.answered_at = Some(at + Duration::seconds(5));
                cb.outcome = CallOutcome::Answered;
                Observation::CallAnswered(cb)
            } else {
                cb.outcome = CallOutcome::NoAnswer;
                Observation::CallEnded(cb)
            };
            // A callback is logged at hangup too.
            out.push(Evidence::call(at + Duration::seconds(60), observation));
        }
    }
    out
}

#[test]
fn phone_outcomes_do_not_depend_on_feed_order_clock_or_restart_point() {
    let share = prove_order_independence(
        proptest::collection::vec(caller(), 1..=2),
        |callers: &Vec<Caller>| phone_evidence(callers),
        false,
    )
    .revised;
    assert!(
        share >= 0.2,
        "only {share} of the cases exercised a revision"
    );
}

/// "Years of history": threads leave memory an hour after their last evidence and come back
/// from the archive when evidence refers to them; restarts load a snapshot. Same outcomes.
#[test]
fn email_outcomes_hold_with_a_one_hour_working_set_and_snapshots() {
    let exercised = prove_order_independence(
        proptest::collection::vec(conversation(), 1..=3),
        |convs: &Vec<Conversation>| evidence(convs),
        true,
    );
    assert!(
        exercised.restored >= 0.05,
        "only {} of the cases restored a thread",
        exercised.restored
    );
}

#[test]
fn phone_outcomes_hold_with_a_one_hour_working_set_and_snapshots() {
    let exercised = prove_order_independence(
        proptest::collection::vec(caller(), 1..=2),
        |callers: &Vec<Caller>| phone_evidence(callers),
        true,
    );
    assert!(
        exercised.restored >= 0.05,
        "only {} of the cases restored a thread",
        exercised.restored
    );
}

/// A conversation with only the fields a regression case sets.
fn conv(
    follow_up: Option<(i64, Threading, bool)>,
    reply: Option<(i64, Threading, bool)>,
    out_of_office: Option<i64>,
    next: Option<(i64, Option<i64>)>,
) -> Conversation {
    Conversation {
        start: 0,
        follow_up,
        reply,
        auto_ack: None,
        out_of_office,
        next,
        delivered_twice: false,
    }
}

/// The cases the property test found, shrunk, each once a failure of the rules: read in the
/// given order, they must end as the reference does.
#[test]
fn regressions_found_by_the_property_test_end_as_in_time_order() {
    use Threading::{InReplyTo, ReferencesOnly};
    let cases: Vec<(&str, Vec<Conversation>, Vec<usize>, i64)> = vec![
        (
            "the breach fired before the reply delivered in time was read",
            vec![Conversation {
                auto_ack: Some(2),
                ..conv(None, Some((1, InReplyTo, false)), None, Some((300, None)))
            }],
            vec![0, 1, 2, 3],
            300,
        ),
        (
            "a follow-up read before the message it follows",
            vec![conv(Some((60, InReplyTo, false)), None, None, None)],
            vec![1, 0],
            0,
        ),
        (
            "a follow-up delivered after the reply but read before it",
            vec![conv(
                Some((180, InReplyTo, false)),
                Some((60, InReplyTo, false)),
                None,
                Some((201, None)),
            )],
            vec![0, 1, 2, 3],
            0,
        ),
        (
            "a reply read before the first message, a later follow-up read first",
            vec![conv(
                Some((360, InReplyTo, false)),
                Some((1, InReplyTo, false)),
                None,
                None,
            )],
            vec![1, 2, 0],
            0,
        ),
        (
            "a reply to a follow-up delivered after it (contradictory evidence)",
            vec![conv(
                Some((124, InReplyTo, false)),
                Some((120, ReferencesOnly, true)),
                None,
                Some((1080, None)),
            )],
            vec![0, 1, 2, 3],
            0,
        ),
        (
            "the reply to the next message read before the first reply",
            vec![conv(
                None,
                Some((60, InReplyTo, false)),
                None,
                Some((60, Some(60))),
            )],
            vec![0, 2, 3, 1],
            0,
        ),
        (
            "a follow-up and the reply in the same second, the first message read last",
            vec![conv(
                Some((60, InReplyTo, false)),
                Some((60, InReplyTo, false)),
                None,
                Some((60, None)),
            )],
            vec![2, 1, 3, 0],
            0,
        ),
        (
            "an out-of-office and a next message threaded to a reply read late",
            vec![conv(
                Some((240, ReferencesOnly, false)),
                Some((120, ReferencesOnly, false)),
                Some(112),
                Some((1140, Some(323))),
            )],
            vec![4, 1, 3, 2, 5, 0],
            0,
        ),
        (
            "an out-of-office and the reply read before the message they answer: still a first",
            vec![conv(
                None,
                Some((60, InReplyTo, false)),
                Some(60),
                Some((60, None)),
            )],
            vec![2, 1, 0, 3],
            0,
        ),
        (
            "the next message read first, then a follow-up without Message-ID: still a first",
            vec![Conversation {
                auto_ack: Some(22),
                ..conv(
                    Some((60, InReplyTo, false)),
                    Some((1020, InReplyTo, false)),
                    Some(240),
                    Some((1140, None)),
                )
            }],
            vec![4, 3, 5, 1, 2, 0],
            0,
        ),
        (
            "a next message read after the reply to it, both before a later follow-up's clock",
            vec![conv(
                Some((546, InReplyTo, true)),
                Some((75, InReplyTo, false)),
                None,
                Some((226, Some(238))),
            )],
            vec![0, 1, 2, 4, 3],
            0,
        ),
    ];
    for (name, convs, order, delay) in cases {
        let all = evidence(&convs);
        let end = t0() + Duration::hours(6);
        let expected = reference(&all, end);
        for restart_at in 0..=order.len() {
            let (got, ..) = reading(&all, &order, &[delay], restart_at, end, EVERYTHING);
            assert_eq!(got, expected, "{name} (restart before {restart_at})");
        }
    }
}

/// Cases the working-set property test found, shrunk: read as given with a one-hour working
/// set, they must end as the reference does.
#[test]
fn working_set_regressions_end_as_in_time_order() {
    let callers = vec![Caller {
        calls: vec![
            PhoneCall {
                start: 1685,
                pickup: Some(1360),
                unanswered: CallOutcome::Abandoned,
                length: 270,
                feeds: Feeds::Cdr,
            },
            PhoneCall {
                start: 1544,
                pickup: Some(508),
                unanswered: CallOutcome::Abandoned,
                length: 185,
                feeds: Feeds::Cdr,
            },
            PhoneCall {
                start: 2774,
                pickup: Some(283),
                unanswered: CallOutcome::Voicemail,
                length: 390,
                feeds: Feeds::Cdr,
            },
        ],
        callbacks: vec![(1787, false), (3428, true)],
    }];
    let all = phone_evidence(&callers);
    let end = t0() + Duration::hours(6);
    let keeping = Keeping {
        window: Some(Duration::hours(1)),
        snapshot_at: None,
    };
    let (got, ..) = reading(&all, &[4, 2, 0, 3, 1], &[0, 0, 0, 3601], 0, end, keeping);
    assert_eq!(
        got,
        reference(&all, end),
        "a callback read before the calls, one thread evicted"
    );
}
