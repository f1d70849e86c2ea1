//! A TCP fault proxy on 127.0.0.1 between the daemon and a real server (Dovecot, the SMTP sink,
//! a Twilio-compatible API): it passes bytes both ways until the test injects a fault.
//!
//! - [`Fault::Pass`]: every byte forwarded.
//! - [`Fault::Stall`]: a server that hangs — open connections stop moving in both directions
//!   (nothing is read, nothing forwarded), new ones are accepted and hear nothing. When the
//!   fault clears, whatever connection the client kept resumes.
//! - [`Fault::Reset`]: open and new connections are reset (`RST`, `SO_LINGER` 0).
//! - [`Fault::Truncate`]: the server dies half-way through a response — each connection
//!   forwards `after` more bytes of what the server sends, then both sides are closed.
//! - [`Fault::BlackHole`]: nothing behind the address at all — new connections are accepted
//!   (the kernel completes the handshake on loopback anyway) and what the client sends is read
//!   and dropped; no byte ever comes back and the connection is never closed, even after the
//!   fault clears. Open connections are black-holed too.
//!
//! The proxy runs on a runtime of its own, so synchronous tests use it as they use the other
//! servers; it counts connections and notes when each was accepted (reconnect backoff shows in
//! the gaps between them). Stopped on drop.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Pass,
    Stall,
    Reset,
    /// Forward this many more bytes of the server's side, then close.
    Truncate {
        after: usize,
    },
    BlackHole,
}

pub struct Proxy {
    /// Where clients connect.
    pub port: u16,
    fault: watch::Sender<Fault>,
    accepted: Arc<Mutex<Vec<Instant>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    /// A proxy to `127.0.0.1:upstream`, passing everything.
    pub fn start(upstream: u16) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let (fault, _) = watch::channel(Fault::Pass);
        let accepted: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let faults = fault.clone();
        let seen = accepted.clone();
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                seen.lock().unwrap().push(Instant::now());
                let _ = client.set_nodelay(true);
                tokio::spawn(connection(client, upstream, faults.subscribe()));
            }
        });
        Proxy {
            port,
            fault,
            accepted,
            runtime: Some(runtime),
        }
    }

    /// Applies `fault` to open and new connections.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    /// When each connection accepted at or after `since` came, in order.
    pub fn accepted_since(&self, since: Instant) -> Vec<Instant> {
        self.accepted
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|t| *t >= since)
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Reads and drops what `client` sends until it closes.
async fn swallow(mut client: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    while let Ok(n) = client.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

fn reset(client: TcpStream, server: Option<TcpStream>) {
    let _ = client.set_zero_linger();
    drop(client);
    if let Some(server) = server {
        let _ = server.set_zero_linger();
    }
}

async fn connection(mut client: TcpStream, upstream: u16, mut fault: watch::Receiver<Fault>) {
    // A new connection meets the fault in force.
    loop {
        let now = *fault.borrow_and_update();
        match now {
            Fault::BlackHole => return swallow(client).await,
            Fault::Reset => return reset(client, None),
            Fault::Stall => {
                // Nothing read, nothing said, until the fault clears.
                if fault.changed().await.is_err() {
                    return;
                }
            }
            Fault::Pass | Fault::Truncate { .. } => break,
        }
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
        // The real server is down: the client sees the connection close, as if refused.
        return;
    };
    let _ = server.set_nodelay(true);
    let mut from_client = vec![0u8; 16 * 1024];
    let mut from_server = vec![0u8; 16 * 1024];
    // Server bytes still to forward under `Truncate`.
    let mut left: Option<usize> = match *fault.borrow() {
        Fault::Truncate { after } => Some(after),
        _ => None,
    };
    loop {
        let now = *fault.borrow_and_update();
        match now {
            Fault::Reset => return reset(client, Some(server)),
            Fault::BlackHole => {
                drop(server);
                return swallow(client).await;
            }
            Fault::Stall => {
                if fault.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Fault::Pass | Fault::Truncate { .. } => {}
        }
        tokio::select! {
            n = client.read(&mut from_client) => match n {
                Ok(0) | Err(_) => {
                    let _ = server.shutdown().await;
                    return;
                }
                Ok(n) => {
                    if server.write_all(&from_client[..n]).await.is_err() {
                        return;
                    }
                }
            },
            n = server.read(&mut from_server) => match n {
                Ok(0) | Err(_) => {
                    let _ = client.shutdown().await;
                    return;
                }
                Ok(n) => {
                    let send = left.map_or(n, |l| l.min(n));
                    if client.write_all(&from_server[..send]).await.is_err() {
                        return;
                    }
                    if let Some(l) = left.as_mut() {
                        *l -= send;
                        if *l == 0 {
                            // Half-way through: the server is gone.
                            let _ = client.shutdown().await;
                            return;
                        }
                    }
                }
            },
            changed = fault.changed() => {
                if changed.is_err() {
                    return;
                }
                left = match *fault.borrow() {
                    Fault::Truncate { after } => Some(after),
                    _ => None,
                };
            }
        }
    }
}

/// Waits up to `within` for `cond`, polling every 50 ms; returns how long it took, or `None`.
pub fn within(within: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
