//! The daemon's side of systemd's notify protocol (`Type=notify`, see `sd_notify(3)`).
//!
//! This module owns what the service manager hears from the daemon:
//!
//! - `READY=1` once the ledger is replayed, the engine runs and HTTP listens; never after the
//!   first sync of the sources, which can take a long backfill and must not trip the start
//!   timeout (`/readyz` is where that wait shows);
//! - `STATUS=` lines with the sources' first-sync progress and the health of sources and
//!   notifiers (`systemctl status slawatch` shows the last one);
//! - `WATCHDOG=1` every half watchdog interval while the engine loop is alive, and `STOPPING=1`
//!   at shutdown.
//!
//! The protocol is a datagram per message to the Unix socket named by `$NOTIFY_SOCKET` (a path,
//! or `@name` for the abstract namespace); without that variable, as when run by hand or in
//! tests, nothing is sent. It is small enough that a crate would add more than it saves.
//!
//! The watchdog is fed from a task of its own that looks at the engine's [`Pulse`], not from the
//! engine loop itself: a ledger write that is slow or retried for minutes holds the engine loop,
//! and restarting the daemon would not make the disk faster while it would cost a replay. So a
//! stuck engine (a turn of its loop running past the limit while no ledger write is under way)
//! stops the feed, and systemd restarts the daemon; a stuck ledger keeps it fed and is paged
//! through the monitor's own alerts instead.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::engine::Shared;

/// How often the `STATUS=` line is refreshed when no watchdog asks for more often.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={0}: not a socket path or @abstract name")]
    Address(String),
    #[error("sending to NOTIFY_SOCKET {socket}: {source}")]
    Send { socket: String, source: io::Error },
}

/// The service manager's notification socket (`$NOTIFY_SOCKET`).
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    target: String,
}

impl NotifySocket {
    /// The socket named by `$NOTIFY_SOCKET`; `Ok(None)` when the daemon does not run under a
    /// service manager that listens.
    pub fn from_env() -> Result<Option<NotifySocket>, NotifyError> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(target) if !target.is_empty() => NotifySocket::new(target).map(Some),
            _ => Ok(None),
        }
    }

    fn new(target: String) -> Result<NotifySocket, NotifyError> {
        if !(target.starts_with('/') || (target.starts_with('@') && target.len() > 1)) {
            return Err(NotifyError::Address(target));
        }
        let socket = UnixDatagram::unbound().map_err(|source| NotifyError::Send {
            socket: target.clone(),
            source,
        })?;
        // Never block the runtime on a full socket buffer: a lost status line is harmless.
        let _ = socket.set_nonblocking(true);
        Ok(NotifySocket { socket, target })
    }

    /// Sends one message: newline-separated `KEY=value` assignments.
    pub fn send(&self, message: &str) -> Result<(), NotifyError> {
        let sent = match self.target.strip_prefix('@') {
            Some(name) => send_abstract(&self.socket, name, message.as_bytes()),
            None => self.socket.send_to(message.as_bytes(), &self.target),
        };
        sent.map(drop).map_err(|source| NotifyError::Send {
            socket: self.target.clone(),
            source,
        })
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &str, message: &[u8]) -> io::Result<usize> {
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message, &address)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &str, _: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist on Linux only",
    ))
}

/// The watchdog interval asked for by the service manager (`$WATCHDOG_USEC`, for this process
/// when `$WATCHDOG_PID` is set); `None` without a watchdog.
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// The engine loop's sign of life, read by the watchdog feeder.
///
/// Process-wide because the service manager watches the process, which runs one engine; test
/// processes that run several engines share it harmlessly, since only the daemon's feeder reads
/// it.
#[derive(Debug)]
pub struct Pulse {
    /// Origin of the millisecond instants below (monotonic).
    origin: Instant,
    /// When the engine's current turn began, in ms after `origin` plus one; 0 while it waits.
    turn_started: AtomicU64,
    /// Ledger writes under way (the engine may be waiting on one).
    ledger_writes: AtomicUsize,
}

/// The engine's [`Pulse`].
pub static ENGINE: LazyLock<Pulse> = LazyLock::new(Pulse::new);

impl Pulse {
    pub fn new() -> Pulse {
        Pulse {
            origin: Instant::now(),
            turn_started: AtomicU64::new(0),
            ledger_writes: AtomicUsize::new(0),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_millis() as u64 + 1
    }

    /// Marks the start of a turn of the engine loop (it woke up and works); the turn ends when
    /// the guard is dropped (it waits again).
    pub fn turn(&self) -> Turn<'_> {
        self.turn_started
            .store(self.millis(Instant::now()), Ordering::Relaxed);
        Turn(self)
    }

    /// Marks a ledger write under way until the guard is dropped.
    pub fn ledger_write(&self) -> LedgerWrite<'_> {
        self.ledger_writes.fetch_add(1, Ordering::Relaxed);
        LedgerWrite(self)
    }

    /// Whether the engine is stuck at `now`: in one turn for longer than `limit` with no ledger
    /// write under way. Waiting for work, or for the ledger, is not stuck.
    pub fn is_stuck(&self, now: Instant, limit: Duration) -> bool {
        let started = self.turn_started.load(Ordering::Relaxed);
        if started == 0 || self.ledger_writes.load(Ordering::Relaxed) > 0 {
            return false;
        }
        self.millis(now).saturating_sub(started) > limit.as_millis() as u64
    }
}

impl Default for Pulse {
    fn default() -> Pulse {
        Pulse::new()
    }
}

/// A turn of the engine loop (see [`Pulse::turn`]).
#[must_use]
pub struct Turn<'a>(&'a Pulse);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.turn_started.store(0, Ordering::Relaxed);
    }
}

/// A ledger write under way (see [`Pulse::ledger_write`]).
#[must_use]
pub struct LedgerWrite<'a>(&'a Pulse);

impl Drop for LedgerWrite<'_> {
    fn drop(&mut self) {
        self.0.ledger_writes.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Tells the service manager the daemon is ready, then keeps its status line current and feeds
/// its watchdog until `shutdown`; returns at once when no service manager listens. Called once
/// the engine runs and HTTP listens.
pub async fn run(shared: Arc<Shared>, shutdown: CancellationToken) {
    let socket = match NotifySocket::from_env() {
        Ok(Some(socket)) => socket,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot tell the service manager about readiness.");
            return;
        }
    };
    let watchdog = watchdog_interval();
    // Logged once per run of failures: the status is sent every few seconds.
    let failing = std::sync::atomic::AtomicBool::new(false);
    let send = |message: &str| match socket.send(message) {
        Ok(()) => failing.store(false, Ordering::Relaxed),
        Err(e) if !failing.swap(true, Ordering::Relaxed) => {
            tracing::warn!(error = %e, "Notification to the service manager failed.");
        }
        Err(_) => {}
    };
    send(&format!("READY=1\nSTATUS={}", status_line(&shared)));
    tracing::info!(
        watchdog_ms = watchdog.map(|w| w.as_millis() as u64),
        "Told the service manager the daemon is ready."
    );
    let every = watchdog.map_or(STATUS_EVERY, |w| (w / 2).min(STATUS_EVERY));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stuck_logged = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let mut message = format!("STATUS={}", status_line(&shared));
        if let Some(interval) = watchdog {
            if ENGINE.is_stuck(Instant::now(), interval / 2) {
                if !stuck_logged {
                    tracing::error!(
                        "The engine loop has been stuck for over half the watchdog interval; no longer feeding the watchdog, so the service manager restarts the daemon."
                    );
                    stuck_logged = true;
                }
            } else {
                message.push_str("\nWATCHDOG=1");
                stuck_logged = false;
            }
        }
        send(&message);
    }
    send("STOPPING=1\nSTATUS=Shutting down.");
}

/// One line for `systemctl status`: first-sync progress, then sources and notifiers that are
/// down (from their `_up` gauges).
fn status_line(shared: &Shared) -> String {
    let mut down_sources = Vec::new();
    let mut sources = 0usize;
    let mut down_notifiers = Vec::new();
    let mut notifiers = 0usize;
    for family in shared.metrics.registry().gather() {
        let (label, total, down) = match family.name() {
            "slawatch_source_up" => ("source", &mut sources, &mut down_sources),
            "slawatch_notifier_up" => ("notifier", &mut notifiers, &mut down_notifiers),
            _ => continue,
        };
        for metric in family.get_metric() {
            *total += 1;
            if metric.get_gauge().get_value() < 1.0
                && let Some(name) = metric.get_label().iter().find(|l| l.name() == label)
            {
                down.push(name.value().to_string());
            }
        }
    }
    let pending: Vec<String> = shared
        .pending_sources
        .lock()
        .map(|p| p.iter().cloned().collect())
        .unwrap_or_default();
    let synced = sources.saturating_sub(pending.len());
    let mut parts = vec![if pending.is_empty() {
        format!("first sync {synced}/{sources} sources")
    } else {
        format!(
            "first sync {synced}/{sources} sources (waiting: {})",
            pending.join(", ")
        )
    }];
    parts.push(health("sources", sources, &down_sources));
    parts.push(health("notifiers", notifiers, &down_notifiers));
    parts.join("; ")
}

fn health(what: &str, total: usize, down: &[String]) -> String {
    if down.is_empty() {
        format!("{what} up {total}/{total}")
    } else {
        format!(
            "{what} up {}/{total} (down: {})",
            total - down.len(),
            down.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let socket = NotifySocket::new(path.display().to_string()).unwrap();
        socket.send("READY=1").unwrap();
        assert_eq!(receive(&listener), "READY=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("slawatch-notify-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        let socket = NotifySocket::new(format!("@{name}")).unwrap();
        socket.send("WATCHDOG=1").unwrap();
        assert_eq!(receive(&listener), "WATCHDOG=1");
    }

    #[test]
    fn refuses_an_address_that_is_neither() {
        for bad in ["relative/path", "@", "vsock:2:1234"] {
            assert!(
                matches!(NotifySocket::new(bad.into()), Err(NotifyError::Address(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_long_turn_is_stuck_but_waiting_or_writing_is_not() {
        let pulse = Pulse::new();
        let limit = Duration::from_secs(10);
        let later = |secs| Instant::now() + Duration::from_secs(secs);
        // Waiting for work, however long.
        assert!(!pulse.is_stuck(later(3600), limit));
        let turn = pulse.turn();
        assert!(!pulse.is_stuck(later(5), limit));
        assert!(pulse.is_stuck(later(11), limit));
        // The same turn waiting on a slow ledger write.
        let write = pulse.ledger_write();
        assert!(!pulse.is_stuck(later(600), limit));
        drop(write);
        assert!(pulse.is_stuck(later(600), limit));
        drop(turn);
        assert!(!pulse.is_stuck(later(600), limit));
    }
}
