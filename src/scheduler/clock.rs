//! The clock the engine reads and sleeps on.
//!
//! **Deadlines run on a monotonic clock.** In production ([`Clock::System`]) slawatch's "now" is
//! the wall-clock instant of the process start advanced by the boot-time clock
//! (`CLOCK_BOOTTIME`: monotonic, never stepped by NTP or an administrator, and counting time
//! spent suspended, when customers waited too). A wall-clock step therefore moves no deadline:
//! an inquiry with five minutes left still has five minutes left after the wall clock jumped
//! ten minutes forward (no burst of false breaches) or back (no missed one). The step itself is
//! seen by [`watch_wall_clock`]: a change of more than [`STEP`] in the wall clock's offset from
//! slawatch's clock is logged, counted (`slawatch_clock_steps_total`) and shown
//! (`slawatch_clock_offset_seconds`, `/readyz`). slawatch's own instants keep the start's
//! wall-clock base until the next restart, which takes the corrected wall clock.
//!
//! In tests the clock is anchored to a chosen UTC instant and advances with tokio's clock, so
//! `tokio::time::pause()`/`advance()` move slawatch's time too and a 15-minute deadline is
//! tested in milliseconds.

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longest single sleep: tokio's timers run on `CLOCK_MONOTONIC`, which stops while the
/// machine is suspended; after a resume a deadline is noticed within this.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);

/// A change in the wall clock's offset from slawatch's clock larger than this is a step (NTP
/// slews small differences; a jump of seconds is a step, a manual change or a resume).
pub const STEP: Duration = Duration::from_secs(2);

/// How often [`watch_wall_clock`] compares the two clocks.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    /// `utc` corresponds to tokio instant `at`.
    Anchored {
        utc: DateTime<Utc>,
        at: Instant,
    },
}

/// The wall-clock instant of the first reading, and the boot-time clock then.
static ORIGIN: OnceLock<(DateTime<Utc>, Duration)> = OnceLock::new();

/// `CLOCK_BOOTTIME` since boot (the monotonic clock where the platform has no boot-time clock).
pub(crate) fn boottime() -> Duration {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let t = rustix::time::clock_gettime_dynamic(rustix::time::DynamicClockId::Boottime)
        .unwrap_or_else(|_| rustix::time::clock_gettime(rustix::time::ClockId::Monotonic));
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

impl Clock {
    /// A clock whose "now" is `utc` at this tokio instant and advances with tokio time.
    pub fn anchored(utc: DateTime<Utc>) -> Clock {
        Clock::Anchored {
            utc,
            at: Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => {
                let (wall, boot) = *ORIGIN.get_or_init(|| (Utc::now(), boottime()));
                let elapsed = boottime().saturating_sub(boot);
                wall + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::zero())
            }
            Clock::Anchored { utc, at } => {
                *utc + chrono::Duration::from_std(at.elapsed()).unwrap_or(chrono::Duration::zero())
            }
        }
    }

    /// Sleeps until `deadline` (or at most [`MAX_SLEEP`] on the system clock; the caller loops).
    pub async fn sleep_until(&self, deadline: DateTime<Utc>) {
        let wait = (deadline - self.now()).to_std().unwrap_or(Duration::ZERO);
        let wait = match self {
            Clock::System => wait.min(MAX_SLEEP),
            Clock::Anchored { .. } => wait,
        };
        tokio::time::sleep(wait).await;
    }
}

/// What [`watch_wall_clock`] reports.
pub trait ClockReport: Send + Sync + 'static {
    /// The wall clock is `offset_seconds` ahead of slawatch's clock; `stepped` when that changed
    /// by more than [`STEP`] since the last look.
    fn clock(&self, offset_seconds: f64, stepped: bool);
}

impl ClockReport for crate::telemetry::Metrics {
    fn clock(&self, offset_seconds: f64, stepped: bool) {
        self.record_clock(offset_seconds, stepped);
    }
}

/// Compares `wall` (the wall clock; `Utc::now` in production) with `clock` every
/// [`WATCH_EVERY`] until `shutdown`, and reports every step of more than [`STEP`]. Deadlines
/// are not affected either way: they run on `clock`.
pub async fn watch_wall_clock(
    clock: Clock,
    wall: impl Fn() -> DateTime<Utc> + Send + 'static,
    report: std::sync::Arc<dyn ClockReport>,
    shutdown: CancellationToken,
) {
    let step = chrono::Duration::from_std(STEP).unwrap_or_default();
    let mut last = wall() - clock.now();
    report.clock(seconds(last), false);
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let offset = wall() - clock.now();
        let change = offset - last;
        let stepped = change.abs() > step;
        if stepped {
            tracing::warn!(
                step_seconds = seconds(change),
                offset_seconds = seconds(offset),
                "The wall clock stepped; deadlines keep running on the monotonic clock (no burst of breaches, none missed). slawatch's instants keep their base until the next restart."
            );
        }
        report.clock(seconds(offset), stepped);
        last = offset;
    }
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Seen(Mutex<Vec<(f64, bool)>>);

    impl ClockReport for Seen {
        fn clock(&self, offset: f64, stepped: bool) {
            self.0.lock().unwrap().push((offset, stepped));
        }
    }

    #[test]
    fn the_system_clock_is_monotonic_and_starts_at_the_wall_clock() {
        let a = Clock::System.now();
        let b = Clock::System.now();
        assert!(b >= a);
        assert!((Utc::now() - a).num_seconds().abs() < 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wall_clock_step_is_counted_once_and_slews_are_not() {
        let t0: DateTime<Utc> = "2026-03-01T09:00:00Z".parse().unwrap();
        let clock = Clock::anchored(t0);
        // The wall clock: slawatch's plus an offset the test moves.
        let offset = Arc::new(Mutex::new(chrono::Duration::zero()));
        let wall = {
            let offset = offset.clone();
            move || clock.now() + *offset.lock().unwrap()
        };
        let seen = Arc::new(Seen::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(watch_wall_clock(clock, wall, seen.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        // NTP slewing: half a second over a few seconds is no step.
        *offset.lock().unwrap() = chrono::Duration::milliseconds(500);
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Ten minutes forward at once.
        *offset.lock().unwrap() = chrono::Duration::minutes(10);
        tokio::time::sleep(Duration::from_secs(2)).await;
        // And back by an hour.
        *offset.lock().unwrap() = chrono::Duration::minutes(-50);
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.cancel();
        task.await.unwrap();
        let seen = seen.0.lock().unwrap();
        assert_eq!(seen.iter().filter(|(_, s)| *s).count(), 2, "{seen:?}");
        assert_eq!(seen.last().unwrap().0, -3000.0);
        // slawatch's own clock never moved with the wall clock.
        assert_eq!(clock.now(), t0 + chrono::Duration::milliseconds(8500));
    }
}
