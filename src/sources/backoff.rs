//! Retry delays of the network sources (IMAP reconnects, Calls API polls): exponential with
//! jitter, reset after a success.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// First retry after 1 s: a restarted server or a dropped NAT mapping is usually back by then.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// Never wait more than a minute: an outage must not leave the desk unwatched for long after the
/// server is back, and one login a minute is no burden on a server that refuses us.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Doubling delays between [`BACKOFF_START`] and [`BACKOFF_MAX`], each jittered by ±20 % so that
/// the folder tasks of a source (and several slawatch replicas) do not reconnect in lockstep.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    /// The delay to wait now; the following one doubles.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        base.mul_f64(0.8 + 0.4 * unit_random())
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }
}

/// A number in [0, 1) from the std hasher's per-process random keys: enough for jitter, without a
/// random-number crate.
fn unit_random() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::default();
        let mut base = BACKOFF_START;
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(
                d >= base.mul_f64(0.8) && d <= base.mul_f64(1.2),
                "{d:?} vs {base:?}"
            );
            base = (base * 2).min(BACKOFF_MAX);
        }
        assert!(b.next_delay() <= BACKOFF_MAX.mul_f64(1.2));
        b.reset();
        assert!(b.next_delay() <= BACKOFF_START.mul_f64(1.2));
    }
}
