//! Serving connections within limits, with graceful shutdown.
//!
//! axum's own `serve` reads headers for as long as a client likes and accepts every connection,
//! so a few hundred clients sending half a request would hold the daemon's sockets forever. This
//! loop serves HTTP/1.1 with hyper directly:
//!
//! - **Header time.** A connection that has not sent a request's headers within
//!   `http.header_timeout` (10 s) is closed by hyper.
//! - **Connections.** At most `http.max_connections` are served at once. At the limit, a new
//!   connection takes the place of an *idle* one: first the one that has been sending part of a
//!   request's head the longest (a slow client), else the one idle the longest (kept alive
//!   between requests, or connected and silent). A connection not yet read from is never closed
//!   (its head may be whole, waiting to be read), nor one running a request, so a request is
//!   answered once its headers are in; only when no slot can be taken does a new connection
//!   wait (each request is bounded by the request timeouts).
//!   `/healthz` and a Prometheus scrape send their whole head at once: they are never "part way
//!   through a head", so slow clients make room for them however many there are, and they are
//!   answered at once.
//! - **Shutdown.** No new connections; idle ones close, running requests finish (bounded by the
//!   header and report timeouts).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::HttpSettings;

/// What bounds the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// How long shutdown waits for running requests.
    pub drain: Duration,
}

impl Limits {
    pub fn from_settings(s: &HttpSettings) -> Limits {
        Limits {
            header_timeout: s.header_timeout,
            max_connections: s.max_connections.max(1),
            drain: s.header_timeout + s.report_timeout,
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: crate::config::DEFAULT_HEADER_TIMEOUT,
            max_connections: crate::config::DEFAULT_MAX_CONNECTIONS as usize,
            drain: crate::config::DEFAULT_HEADER_TIMEOUT + crate::config::DEFAULT_REPORT_TIMEOUT,
        }
    }
}

/// Not read from yet: its head may be whole in the socket; never evicted.
const FRESH: u8 = 0;
/// Read from, and nothing arrived since its last request began (or ever).
const SILENT: u8 = 1;
/// Part of a head arrived and no request began: a slow client, evicted first.
const PARTIAL: u8 = 2;

/// A new connection that has sent nothing yet is not taken for a slow client before this: its
/// request may still be on the way (a client connects, then writes). One that stays silent
/// longer makes room like any idle connection, and the header timeout drops it anyway.
const FIRST_BYTES_GRACE: Duration = Duration::from_secs(1);

/// How long an evicted connection may take to finish writing a response already handed over.
const EVICTED_DRAIN: Duration = Duration::from_secs(1);

/// How long the accept loop waits before looking for room again when every connection is
/// fresh or running a request (fresh ones are read within microseconds).
const RETRY_ADMIT: Duration = Duration::from_millis(5);

/// The connections being served.
struct Registry {
    inner: Mutex<Inner>,
    /// A slot was freed or a connection became idle (evictable).
    freed: Notify,
    limit: usize,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    connections: HashMap<u64, Connection>,
}

struct Connection {
    /// Requests running (a response body being sent counts).
    busy: usize,
    /// [`FRESH`], [`SILENT`] or [`PARTIAL`].
    reading: Arc<AtomicU8>,
    /// When it last became idle (or connected).
    idle_since: Instant,
    /// Whether a request ever began on it.
    served: bool,
    evict: CancellationToken,
}

impl Connection {
    /// Whether it may make room for a new connection: no request running, read from, and not
    /// a new connection whose first bytes may still be on the way.
    fn evictable(&self, now: Instant) -> bool {
        let reading = self.reading.load(Ordering::Relaxed);
        self.busy == 0
            && reading != FRESH
            && (self.served
                || reading == PARTIAL
                || now.duration_since(self.idle_since) >= FIRST_BYTES_GRACE)
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection, at the limit taking the place of an idle connection (part
    /// way through a head first, then idle the longest); `None` when every connection is fresh
    /// or running a request.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut inner = self.lock();
        if inner.connections.len() >= self.limit {
            let now = Instant::now();
            let victim = inner
                .connections
                .iter()
                .filter(|(_, c)| c.evictable(now))
                .min_by_key(|(_, c)| (c.reading.load(Ordering::Relaxed) != PARTIAL, c.idle_since))
                .map(|(id, _)| *id)?;
            if let Some(c) = inner.connections.remove(&victim) {
                c.evict.cancel();
            }
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let evict = CancellationToken::new();
        let reading = Arc::new(AtomicU8::new(FRESH));
        inner.connections.insert(
            id,
            Connection {
                busy: 0,
                reading: reading.clone(),
                idle_since: Instant::now(),
                served: false,
                evict: evict.clone(),
            },
        );
        Some(Slot {
            registry: self.clone(),
            id,
            evict,
            reading,
        })
    }

    fn begin(&self, id: u64) {
        if let Some(c) = self.lock().connections.get_mut(&id) {
            c.busy += 1;
            c.served = true;
            c.reading.store(SILENT, Ordering::Relaxed);
        }
    }

    fn end(&self, id: u64) {
        let idle = match self.lock().connections.get_mut(&id) {
            Some(c) => {
                c.busy = c.busy.saturating_sub(1);
                if c.busy == 0 {
                    c.idle_since = Instant::now();
                }
                c.busy == 0
            }
            None => false,
        };
        if idle {
            self.freed.notify_one();
        }
    }
}

/// A connection's place; freed on drop.
struct Slot {
    registry: Arc<Registry>,
    id: u64,
    evict: CancellationToken,
    reading: Arc<AtomicU8>,
}

/// The socket, noting when it is read and when bytes arrive (see [`Connection::reading`]).
struct Watched {
    stream: TcpStream,
    reading: Arc<AtomicU8>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.reading.store(PARTIAL, Ordering::Relaxed);
        } else {
            let _ =
                self.reading
                    .compare_exchange(FRESH, SILENT, Ordering::Relaxed, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registry.lock().connections.remove(&self.id);
        self.registry.freed.notify_one();
    }
}

/// Marks a request running until the response body is sent (or dropped).
struct Busy {
    registry: Arc<Registry>,
    id: u64,
}

impl Busy {
    fn new(registry: Arc<Registry>, id: u64) -> Busy {
        registry.begin(id);
        Busy { registry, id }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.registry.end(self.id);
    }
}

/// A response body that keeps its connection marked busy while it is sent.
struct Guarded {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` is cancelled, then lets
/// running requests finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry {
        inner: Mutex::new(Inner::default()),
        freed: Notify::new(),
        limit: limits.max_connections.max(1),
    });
    let tasks = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors or a connection reset before accept: wait a little
                // rather than spin.
                tracing::warn!(error = %e, "Accepting an HTTP connection failed.");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    () = shutdown.cancelled() => break,
                }
            }
        };
        let slot = loop {
            if let Some(slot) = registry.admit() {
                break Some(slot);
            }
            tokio::select! {
                () = registry.freed.notified() => {}
                () = tokio::time::sleep(RETRY_ADMIT) => {}
                () = shutdown.cancelled() => break None,
            }
        };
        let Some(slot) = slot else { break };
        tasks.spawn(connection(
            stream,
            slot,
            router.clone(),
            limits,
            shutdown.clone(),
        ));
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
    Ok(())
}

async fn connection(
    stream: TcpStream,
    slot: Slot,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (registry, id) = (slot.registry.clone(), slot.id);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let busy = Busy::new(registry.clone(), id);
        let mut router = router.clone();
        async move {
            let response = tower_service::Service::call(&mut router, request).await?;
            Ok::<_, std::convert::Infallible>(
                response.map(|body| Body::new(Guarded { body, _busy: busy })),
            )
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let watched = Watched {
        stream,
        reading: slot.reading.clone(),
    };
    let conn = builder.serve_connection(TokioIo::new(watched), service);
    tokio::pin!(conn);
    let mut draining = false;
    let drain = tokio::time::sleep(Duration::from_secs(365 * 24 * 3600));
    tokio::pin!(drain);
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "HTTP connection ended with an error.");
                }
                break;
            }
            // Evicted: it leaves the count at once and closes within `EVICTED_DRAIN`. A slow
            // client's half head is dropped then; a head read whole but not yet dispatched, or
            // a response still being flushed (its body was handed over, so the connection
            // counts as idle), is served or written out first.
            () = slot.evict.cancelled(), if !draining => {
                tracing::debug!("Idle HTTP connection closed to make room for a new one.");
                draining = true;
                conn.as_mut().graceful_shutdown();
                drain.as_mut().reset(tokio::time::Instant::now() + EVICTED_DRAIN);
            }
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
                drain.as_mut().reset(tokio::time::Instant::now() + limits.drain);
            }
            () = drain.as_mut(), if draining => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(limit: usize) -> Arc<Registry> {
        Arc::new(Registry {
            inner: Mutex::new(Inner::default()),
            freed: Notify::new(),
            limit,
        })
    }

    #[test]
    fn a_new_connection_whose_request_is_still_on_the_way_is_not_taken_for_a_slow_client() {
        let r = registry(1);
        let new = r.admit().unwrap();
        // Read once before its bytes arrived: silent, but only just connected.
        new.reading.store(SILENT, Ordering::Relaxed);
        assert!(r.admit().is_none());
        assert!(!new.evict.is_cancelled());
        // Silent past the grace, it makes room like any idle connection.
        if let Some(c) = r.lock().connections.get_mut(&new.id) {
            c.idle_since -= FIRST_BYTES_GRACE;
        }
        assert!(r.admit().is_some());
        assert!(new.evict.is_cancelled());
    }

    #[test]
    fn slow_clients_make_room_first_and_fresh_or_busy_connections_never() {
        let r = registry(3);
        let keep_alive = r.admit().unwrap();
        // It served a request and waits for the next one.
        r.begin(keep_alive.id);
        r.end(keep_alive.id);
        let slow = r.admit().unwrap();
        slow.reading.store(PARTIAL, Ordering::Relaxed);
        let running = r.admit().unwrap();
        r.begin(running.id);

        // The slow client goes first, although the kept-alive one is older.
        let fresh = r.admit().unwrap();
        assert!(slow.evict.is_cancelled());
        assert!(!keep_alive.evict.is_cancelled());
        // Then the one idle the longest.
        let _next = r.admit().unwrap();
        assert!(keep_alive.evict.is_cancelled());
        // Fresh (not read yet) and running connections stay: no room.
        assert!(r.admit().is_none());
        assert!(!fresh.evict.is_cancelled() && !running.evict.is_cancelled());
        // A finished request makes its connection idle, hence evictable.
        r.end(running.id);
        assert!(r.admit().is_some());
        assert!(running.evict.is_cancelled());
    }
}
