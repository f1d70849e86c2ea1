//! Time-window digests: no flood when alerts keep falling due one after another.
//!
//! Alerts that fall due *together* already go out as one digest (the notifiers digest any batch
//! larger than `digest_over`). A storm that trickles in — one alert every few seconds — would
//! still be one mail each. This window, per recipient, works like Alertmanager's grouping
//! without delaying the normal case: the first `digest_over` alerts within `digest_window` go out
//! at once; further ones are held and sent as one digest at the end of the window (the window
//! runs from the oldest alert counted in it). While a storm lasts that is one digest per window;
//! once it ends, alerts go out at once again.
//!
//! Pure bookkeeping over instants the caller passes in (the dispatch worker uses tokio's clock,
//! so tests can pause and advance it).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// Held and sent counts per recipient (`""`: the notifiers' fixed destinations).
#[derive(Debug)]
pub struct DigestWindow<T> {
    window: Duration,
    over: usize,
    recipients: BTreeMap<String, Recipient<T>>,
}

#[derive(Debug)]
struct Recipient<T> {
    /// When each alert counted in the current window went out.
    sent: VecDeque<Instant>,
    /// Alerts waiting for the digest at `flush_at`.
    held: Vec<T>,
    flush_at: Option<Instant>,
}

impl<T> DigestWindow<T> {
    /// A window of `window` (zero: off, everything goes out at once) allowing `over` alerts per
    /// recipient before holding.
    pub fn new(window: Duration, over: usize) -> DigestWindow<T> {
        DigestWindow {
            window,
            over: over.max(1),
            recipients: BTreeMap::new(),
        }
    }

    /// Takes the alerts for `recipient` falling due at `now`; returns those to send now and
    /// holds the others for the digest.
    pub fn admit(&mut self, recipient: &str, mut items: Vec<T>, now: Instant) -> Vec<T> {
        if self.window.is_zero() || items.is_empty() {
            return items;
        }
        let window = self.window;
        let over = self.over;
        let r = self
            .recipients
            .entry(recipient.to_string())
            .or_insert_with(|| Recipient {
                sent: VecDeque::new(),
                held: Vec::new(),
                flush_at: None,
            });
        while r.sent.front().is_some_and(|t| *t + window <= now) {
            r.sent.pop_front();
        }
        if r.flush_at.is_some() {
            r.held.extend(items);
            return Vec::new();
        }
        let room = over.saturating_sub(r.sent.len());
        // Everything fits; or a pile arriving at once into a quiet window, which the notifier
        // sends as one digest right away.
        if items.len() <= room || r.sent.is_empty() {
            r.sent.extend(std::iter::repeat_n(now, items.len()));
            return items;
        }
        let held = items.split_off(room);
        r.sent.extend(std::iter::repeat_n(now, items.len()));
        r.held = held;
        r.flush_at = Some(r.sent.front().map_or(now, |t| *t + window));
        items
    }

    /// The earliest instant a held digest is due.
    pub fn next_flush(&self) -> Option<Instant> {
        self.recipients.values().filter_map(|r| r.flush_at).min()
    }

    /// The digests due at `now`, per recipient. Each counts as sent: alerts still coming within
    /// the next window are held for the next digest.
    pub fn due(&mut self, now: Instant) -> Vec<(String, Vec<T>)> {
        let mut out = Vec::new();
        for (key, r) in &mut self.recipients {
            if r.flush_at.is_some_and(|t| t <= now) {
                r.flush_at = None;
                let held = std::mem::take(&mut r.held);
                r.sent.clear();
                r.sent
                    .extend(std::iter::repeat_n(now, held.len().max(self.over)));
                out.push((key.clone(), held));
            }
        }
        out
    }

    /// Every held digest, at once (shutdown: nothing is left behind).
    pub fn drain(&mut self) -> Vec<(String, Vec<T>)> {
        let mut out = Vec::new();
        for (key, r) in &mut self.recipients {
            r.flush_at = None;
            let held = std::mem::take(&mut r.held);
            if !held.is_empty() {
                out.push((key.clone(), held));
            }
        }
        out
    }

    pub fn is_holding(&self) -> bool {
        self.recipients.values().any(|r| !r.held.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_first_alerts_of_a_window_go_out_at_once_and_the_rest_as_one_digest_at_its_end() {
        let t0 = Instant::now();
        let mut w = DigestWindow::new(secs(60), 3);
        for i in 0..3u32 {
            assert_eq!(w.admit("ana", vec![i], t0 + secs(u64::from(i))), [i]);
        }
        // The 4th and 5th within the minute are held until 60 s after the first.
        assert!(w.admit("ana", vec![3], t0 + secs(10)).is_empty());
        assert!(w.admit("ana", vec![4], t0 + secs(20)).is_empty());
        assert_eq!(w.next_flush(), Some(t0 + secs(60)));
        assert!(w.due(t0 + secs(59)).is_empty());
        assert_eq!(w.due(t0 + secs(60)), [("ana".to_string(), vec![3, 4])]);
        // The storm goes on: the next alert waits for the next digest.
        assert!(w.admit("ana", vec![5], t0 + secs(70)).is_empty());
        assert_eq!(w.due(t0 + secs(130)), [("ana".to_string(), vec![5])]);
        // It ended: a minute later alerts go out at once again.
        assert_eq!(w.admit("ana", vec![6], t0 + secs(200)), [6]);
    }

    #[test]
    fn each_recipient_has_its_own_window() {
        let t0 = Instant::now();
        let mut w = DigestWindow::new(secs(60), 1);
        assert_eq!(w.admit("ana", vec![1], t0), [1]);
        assert!(w.admit("ana", vec![2], t0 + secs(1)).is_empty());
        assert_eq!(w.admit("ben", vec![3], t0 + secs(1)), [3]);
    }

    #[test]
    fn a_pile_falling_due_at_once_goes_out_at_once_and_a_zero_window_holds_nothing() {
        let t0 = Instant::now();
        let mut w = DigestWindow::new(secs(60), 3);
        assert_eq!(w.admit("", (0..50).collect(), t0).len(), 50);
        assert!(w.admit("", vec![50], t0 + secs(1)).is_empty());
        let mut off = DigestWindow::new(Duration::ZERO, 3);
        assert_eq!(off.admit("", (0..50).collect(), t0).len(), 50);
        assert_eq!(off.admit("", vec![50], t0).len(), 1);
        assert_eq!(off.next_flush(), None);
    }

    #[test]
    fn a_batch_larger_than_the_room_left_sends_what_fits_and_holds_the_rest() {
        let t0 = Instant::now();
        let mut w = DigestWindow::new(secs(60), 3);
        assert_eq!(w.admit("ana", vec![0, 1], t0), [0, 1]);
        assert_eq!(w.admit("ana", vec![2, 3, 4], t0 + secs(5)), [2]);
        assert_eq!(w.drain(), [("ana".to_string(), vec![3, 4])]);
        assert!(!w.is_holding());
    }
}
