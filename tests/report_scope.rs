//! A report that checks only the rows it reads (`ChainScope::Period`, the default) is the report
//! of the whole ledger: over generated histories — commits of random sizes, late answers days
//! after the period, calls backfilled long after they were received, daemon restarts, sources
//! down, a second policy, heartbeats — and random periods, its JSON, CSV and HTML are the same
//! bytes as a report that reads and checks every row, apart from its own account of what it
//! checked. And what it does check it checks: a changed row among those it reads breaks it,
//! while a change elsewhere is left to `audit verify` (the whole-chain report finds it).

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use slawatch::notify::AlertKind;
use slawatch::report::{self, ChainScope, ReportData, ReportParams};
use slawatch::store::Store;
use slawatch_core::desk::DeskSettings;
use slawatch_core::domain::{Channel, InquiryId, Language};
use slawatch_core::tracker::TrackerRules;
use slawatch_core::tracker::event::{
    Event, InquiryKind, InquiryOpened, InquiryResponded, LanguageSource, Outcome, ResponseKind,
};
use slawatch_core::tracker::policy::{Policy, PolicySet};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// A small deterministic generator, so that a failing case is reproduced from its seed.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

/// What the history holds, as events each with the instant it was recorded at.
fn history(seed: u64, inquiries: usize) -> Vec<(DateTime<Utc>, Event)> {
    let mut dice = Dice(seed);
    let policy = Policy::default();
    let later = Policy {
        target: std::time::Duration::from_secs(20 * 60),
        ..Policy::default()
    };
    let mut out = vec![
        (
            t0(),
            Event::MonitorStarted {
                at: t0(),
                version: "test".into(),
            },
        ),
        (
            t0(),
            Event::PolicyActivated {
                at: t0(),
                policy: policy.record(),
            },
        ),
    ];
    let mut now = t0();
    let mut version = policy.version();
    for i in 0..inquiries {
        let step = Duration::minutes(1 + dice.below(240) as i64);
        // Heartbeats every five minutes while the daemon runs; now and then it is down an hour
        // or a day, or a source is.
        let mut beat = now + Duration::minutes(5);
        while beat < now + step {
            out.push((beat, Event::MonitorHeartbeat { at: beat }));
            beat += Duration::minutes(5);
        }
        now += step;
        match dice.below(40) {
            0 => {
                now += Duration::hours(1 + dice.below(30) as i64);
                out.push((
                    now,
                    Event::MonitorStarted {
                        at: now,
                        version: "test".into(),
                    },
                ));
            }
            1 => {
                let back = now + Duration::minutes(dice.below(90) as i64);
                out.push((
                    now,
                    Event::SourceDown {
                        source: "mail".into(),
                        at: now,
                        error_kind: "connect".into(),
                    },
                ));
                out.push((
                    back,
                    Event::SourceUp {
                        source: "mail".into(),
                        at: back,
                    },
                ));
            }
            2 if version == policy.version() => {
                version = later.version();
                out.push((
                    now,
                    Event::PolicyActivated {
                        at: now,
                        policy: later.record(),
                    },
                ));
            }
            _ => {}
        }
        let id = format!("q{i}");
        let received = now;
        // One in eight is a call backfilled days later, with its received instant.
        let seen = if dice.below(8) == 0 {
            now + Duration::hours(1 + dice.below(24 * 20) as i64)
        } else {
            now + Duration::seconds(2)
        };
        out.push((seen, opened(&id, received, seen, &version, i)));
        match dice.below(10) {
            0..=6 => {
                let after = 30 + dice.below(850) as i64;
                let at = (received + Duration::seconds(after)).max(seen);
                out.push((at, responded(&id, received, after, Outcome::Met)));
            }
            7 | 8 => {
                let due = received + Duration::minutes(15);
                let at = due.max(seen);
                out.push((
                    at,
                    Event::InquiryBreached {
                        inquiry_id: InquiryId(id.as_str().into()),
                        at: due,
                    },
                ));
                out.push((
                    at + Duration::seconds(1),
                    Event::AlertDelivered {
                        inquiry_id: InquiryId(id.as_str().into()),
                        kind: AlertKind::Breach,
                        due_at: due,
                        notifiers: vec!["smtp".into()],
                        recipients: vec!["oncall@desk.example".into()],
                        at: at + Duration::seconds(1),
                    },
                ));
                // Answered hours or weeks late, or never.
                if dice.below(3) > 0 {
                    let after = 3_600 * (1 + dice.below(24 * 40) as i64);
                    let at = (received + Duration::seconds(after)).max(at);
                    out.push((at, responded(&id, received, after, Outcome::Missed)));
                }
            }
            _ => {}
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out
}

fn opened(id: &str, received: DateTime<Utc>, seen: DateTime<Utc>, policy: &str, i: usize) -> Event {
    let channel = if i.is_multiple_of(3) {
        Channel::Phone
    } else {
        Channel::Email
    };
    Event::InquiryOpened(Box::new(InquiryOpened {
        inquiry_id: InquiryId(id.into()),
        channel,
        source: "mail".into(),
        external_id: format!("<{id}@customer.example>"),
        thread_id: format!("<{id}@customer.example>"),
        digest: Some(format!("digest-{id}")),
        customer: format!("c{}@customer.example", i % 7),
        customer_name: None,
        subject: "Consulta".into(),
        language: Language::ALL[i % 3],
        language_source: LanguageSource::Text,
        reply_to: Vec::new(),
        received_at: received,
        first_seen_at: seen,
        date_header: None,
        deadline_at: received + Duration::minutes(15),
        warn_at: vec![received + Duration::minutes(10)],
        policy: policy.into(),
        kind: InquiryKind::First,
        call: None,
    }))
}

fn responded(id: &str, received: DateTime<Utc>, after: i64, outcome: Outcome) -> Event {
    Event::InquiryResponded(Box::new(InquiryResponded {
        inquiry_id: InquiryId(id.into()),
        at: received + Duration::seconds(after),
        response_seconds: after,
        kind: ResponseKind::Email,
        responder: "support@desk.example".into(),
        external_id: Some(format!("<reply-{id}@desk.example>")),
        outcome,
        via: None,
        note: None,
    }))
}

fn rules() -> std::sync::Arc<TrackerRules> {
    std::sync::Arc::new(TrackerRules {
        desk: DeskSettings::with_address("support@desk.example"),
        policies: PolicySet::single(Policy::default()),
    })
}

/// Writes `history` in commits of up to `batch` events, each stamped with its last event's
/// instant, then builds the projection from the ledger.
async fn ledger(
    dir: &tempfile::TempDir,
    history: &[(DateTime<Utc>, Event)],
    batch: usize,
) -> Store {
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let store = Store::open(&url).await.expect("open ledger");
    for chunk in history.chunks(batch.max(1)) {
        let stamp = chunk.last().expect("a row").0;
        let events: Vec<Event> = chunk.iter().map(|(_, e)| e.clone()).collect();
        store.append(stamp, &events, &[]).await.expect("append");
    }
    slawatch::store::projection::rebuild(&store, rules(), &store)
        .await
        .expect("projection");
    store
}

fn params(from: DateTime<Utc>, to: DateTime<Utc>, chain: ChainScope) -> ReportParams {
    ReportParams {
        from,
        to,
        time_zone: "America/Mexico_City".parse().expect("tz"),
        mask: false,
        title: "review".into(),
        chain,
    }
}

async fn build(store: &Store, params: &ReportParams) -> ReportData {
    report::build(store, rules(), params, &mut |_| {})
        .await
        .expect("report")
}

fn rendered(mut data: ReportData) -> [Vec<u8>; 3] {
    data.generated_at = t0();
    let mut out = [Vec::new(), Vec::new(), Vec::new()];
    report::json::render(&data, &mut out[0]).expect("json");
    report::csv::render(&data, &mut out[1]).expect("csv");
    report::html::render(&data, &mut out[2]).expect("html");
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_report_that_checks_its_rows_is_the_report_of_the_whole_ledger(
        seed in any::<u64>(),
        inquiries in 20usize..220,
        batch in 1usize..60,
        start in 0.0f64..1.0,
        length_hours in prop_oneof![1i64..24, 24i64..(24 * 31)],
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("temp dir");
            let history = history(seed, inquiries);
            let store = ledger(&dir, &history, batch).await;
            // A period starting anywhere in the history.
            let span = history.last().expect("rows").0 - t0();
            let from = t0() + Duration::seconds((span.num_seconds() as f64 * start) as i64);
            let to = from + Duration::hours(length_hours);
            let whole = build(&store, &params(from, to, ChainScope::Whole)).await;
            let mut scoped = build(&store, &params(from, to, ChainScope::Period)).await;
            assert!(whole.ledger.intact && scoped.ledger.intact);
            assert_eq!(whole.ledger.scope, ChainScope::Whole);
            assert_eq!(scoped.ledger.scope, ChainScope::Period);
            assert!(scoped.ledger.linked.is_some() || whole.totals.received == 0);
            assert!(scoped.ledger.events <= whole.ledger.events);
            scoped.ledger = whole.ledger.clone();
            let (scoped, whole) = (rendered(scoped), rendered(whole));
            for (format, (got, expected)) in ["json", "csv", "html"]
                .iter()
                .zip(scoped.iter().zip(&whole))
            {
                assert!(
                    got == expected,
                    "{format}, {from}..{to}:\n{}\n--- whole ledger ---\n{}",
                    String::from_utf8_lossy(got),
                    String::from_utf8_lossy(expected)
                );
            }
            store.close().await;
        });
    }
}

/// Changes row `seq`'s payload in place, as an intruder would (the append-only guards dropped
/// first), without touching its hash.
async fn tamper(store: &Store, seq: i64) {
    let Store::Sqlite(pool) = store else {
        panic!("an SQLite ledger");
    };
    sqlx::query("DROP TRIGGER IF EXISTS ledger_no_update")
        .execute(pool)
        .await
        .expect("drop the guard");
    // A space after the JSON: the event reads the same, the hash no longer matches.
    let changed = sqlx::query("UPDATE ledger SET payload = payload || ' ' WHERE seq = ?")
        .bind(seq)
        .execute(pool)
        .await
        .expect("tamper");
    assert_eq!(changed.rows_affected(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_checks_every_row_it_reads_and_names_the_first_break() {
    let history = history(7, 400);
    // Ten days in the middle of the history.
    let (from, to) = (t0() + Duration::days(10), t0() + Duration::days(20));
    let seq_of = |rows: &[slawatch::store::LedgerEntry], what: &dyn Fn(&Event) -> bool| {
        rows.iter()
            .find(|r| what(&r.event))
            .map(|r| r.seq)
            .expect("such a row")
    };
    /// What is changed, which row it is, and whether the report reads it.
    type Case<'a> = (&'a str, &'a dyn Fn(&Event) -> bool, bool);
    let cases: [Case; 4] = [
        (
            "an inquiry of the period",
            &|e| matches!(e, Event::InquiryOpened(o) if o.received_at >= from && o.received_at < to),
            true,
        ),
        (
            "the policy, activated before the period",
            &|e| matches!(e, Event::PolicyActivated { .. }),
            true,
        ),
        (
            "an inquiry before the period",
            &|e| matches!(e, Event::InquiryOpened(_)),
            false,
        ),
        (
            "a heartbeat days before the period",
            &|e| matches!(e, Event::MonitorHeartbeat { .. }),
            false,
        ),
    ];
    for (case, what, read) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = ledger(&dir, &history, 25).await;
        let rows = store.events().await.expect("events");
        let seq = seq_of(&rows, what);
        let before = build(&store, &params(from, to, ChainScope::Period)).await;
        let (linked_from, linked_to) = before.ledger.linked.expect("the period's rows");
        assert!(before.ledger.intact);
        assert_eq!(
            (linked_from..=linked_to).contains(&seq),
            case == "an inquiry of the period",
            "{case}: seq {seq}, linked {linked_from}..={linked_to}"
        );
        tamper(&store, seq).await;
        let scoped = build(&store, &params(from, to, ChainScope::Period)).await;
        let whole = build(&store, &params(from, to, ChainScope::Whole)).await;
        // The whole-chain report always finds it, at that row.
        assert!(!whole.ledger.intact);
        assert!(
            whole
                .ledger
                .verification
                .starts_with(&format!("BROKEN at event {seq}:")),
            "{case}: {}",
            whole.ledger.verification
        );
        if read {
            // A row it reads: the report says the chain is broken, at that row (it then reads
            // everything, so the first break is the whole chain's first).
            assert!(!scoped.ledger.intact, "{case}");
            assert_eq!(
                scoped.ledger.verification, whole.ledger.verification,
                "{case}"
            );
        } else {
            // Not a row of this report: its figures do not depend on it, and it says what it
            // checked and how to check the rest.
            assert!(scoped.ledger.intact, "{case}");
            assert!(scoped.ledger.checked().contains("audit verify"));
        }
        store.close().await;
    }
}
