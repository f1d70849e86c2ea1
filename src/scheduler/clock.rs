//! The clock the engine reads and sleeps on.
//!
//! In production it is the system's UTC clock; sleeps are capped so that a wall-clock step (NTP)
//! delays a deadline by at most [`MAX_SLEEP`]. In tests it is anchored to a chosen UTC instant and
//! advances with tokio's clock, so `tokio::time::pause()`/`advance()` move slawatch's time too and
//! a 15-minute deadline is tested in milliseconds.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// Longest single sleep: bounds how late a deadline can fire after a wall-clock step.
pub const MAX_SLEEP: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    /// `utc` corresponds to tokio instant `at`.
    Anchored {
        utc: DateTime<Utc>,
        at: Instant,
    },
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
            Clock::System => Utc::now(),
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
