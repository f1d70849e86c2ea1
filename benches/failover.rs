//! Failover time of an active/standby pair (issue 23): two real daemons (release build) on a
//! private PostgreSQL 15 with the default lease TTL (`SLAWATCH_BENCH_LEASE_TTL` to change it),
//! the active killed with `kill -9` `SLAWATCH_BENCH_KILLS` times in a row (default 10; replica a,
//! then b, then a…, the killed one restarted as the standby each time).
//!
//! Before each kill a customer mail whose deadline falls about 3 s later is committed by the
//! active, so the new active has a breach to send as soon as it can. Measured from the kill:
//!
//! - **first commit**: the new active's `leader_changed` row (its `recorded_at`; the instant
//!   `psql` first saw it is printed beside it);
//! - **first alert**: the webhook receiver reading that breach from the new active.
//!
//! Prints each kill and the median and maximum of both. Goal: ≤ 15 s with the default TTL.
//! `cargo bench --bench failover`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::pair::{Hooks, NAMES, Pair, Setup, deliver, median_max, unix_now};

const GOAL: f64 = 15.0;

fn kills() -> usize {
    std::env::var("SLAWATCH_BENCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(10)
}

const BODY: &str = r#"
[desk]
support_addresses = ["support@example.com"]
internal_domains = ["example.com"]
[policy]
target = "30s"
warn = []
[sources.mail]
type = "maildir"
path = "{shared}/maildir"
scan_interval = "1s"
[notify]
primary = ["webhook"]
retry_for = "1h"
digest_over = 1000
[notify.webhook]
format = "json"
timeout = "5s"
"#;

fn main() {
    let kills = kills();
    let ttl = std::env::var("SLAWATCH_BENCH_LEASE_TTL").ok();
    let hooks = Hooks::start();
    let mut pair = Pair::configure(Setup {
        body: BODY,
        lease_ttl: ttl.as_deref(),
        store_ports: [None, None],
        hooks: Some(&hooks),
    });
    let start = Duration::from_secs(120);
    pair.start_both(start);
    let maildir = pair.shared_dir().join("maildir");
    let mut commit = Vec::new();
    let mut commit_seen = Vec::new();
    let mut alert = Vec::new();
    let mut active = 0;
    for round in 0..kills {
        let next = 1 - active;
        // A breach due about 3 s after the kill, committed (opened) by the active first.
        let key = format!("due-{round:02}");
        let received = support::daemon::unix_now() + 4 - 30;
        deliver(&maildir, received, &key);
        let id = wait(&pair, "the mail committed", || {
            let id = pair.sql(&format!(
                "SELECT inquiry_id FROM ledger WHERE kind = 'inquiry_opened' \
                 AND payload::json->>'subject' = '{key}'"
            ));
            (!id.is_empty()).then_some(id)
        });
        let before = pair.max_seq();
        let killed_at = unix_now();
        pair.replicas[active].kill9();
        let (change, seen) = pair.wait_leader_change_after(before, Duration::from_secs(120));
        let first_alert = wait(&pair, "the breach from the new active", || {
            hooks
                .breaches()
                .get(&id)?
                .iter()
                .find(|(r, _)| r == NAMES[next])
                .map(|(_, at)| *at)
        });
        let (c, s, a) = (
            change.unix() - killed_at,
            seen - killed_at,
            first_alert - killed_at,
        );
        eprintln!(
            "kill {:>2} (replica {} → {}, epoch {}): first commit {c:5.2} s (seen {s:5.2} s), \
             first alert {a:5.2} s (due {:.2} s after the kill)",
            round + 1,
            NAMES[active],
            NAMES[next],
            change.epoch,
            (received + 30) as f64 - killed_at
        );
        commit.push(c);
        commit_seen.push(s);
        alert.push(a);
        pair.start(active, "standby", start);
        active = next;
    }
    let twice = pair.recorded_twice();
    assert!(twice.is_empty(), "recorded twice: {twice:#?}");
    pair.assert_epochs();
    let (cm, cx) = median_max(&mut commit);
    let (sm, sx) = median_max(&mut commit_seen);
    let (am, ax) = median_max(&mut alert);
    let verdict = |x: f64| if x <= GOAL { "met" } else { "MISSED" };
    println!(
        "failover over {kills} kills (lease TTL {}): kill → first commit by the new active \
         median {cm:.2} s, max {cx:.2} s (seen by psql: median {sm:.2} s, max {sx:.2} s); kill → \
         first alert it sends median {am:.2} s, max {ax:.2} s; goal ≤ {GOAL} s: {} / {}",
        ttl.as_deref().unwrap_or("8s, the default"),
        verdict(cx),
        verdict(ax)
    );
}

/// Polls `f` every 50 ms for up to two minutes.
fn wait<T>(pair: &Pair, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}:\n{}",
            pair.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
