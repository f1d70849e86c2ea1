//! IMAP source: watches a support mailbox's inbox and sent folders and turns every message into an
//! [`Observation`](slawatch_core::tracker::Observation).
//!
//! This module owns the network side only — connecting (TLS, STARTTLS or loopback plain),
//! finding the `\Sent` folders, reading headers plus a body prefix, following new mail with IDLE
//! (or polling), reconnecting with backoff, and the per-folder cursor
//! `{"uidvalidity": u32, "last_uid": u32}` stored with each committed batch. What a message
//! *means* is decided by the pure parser ([`slawatch_core::mail`]) and the tracker.
//!
//! Layout: [`connection`] (transport, TLS, login, timeouts), [`fetch`] (SEARCH/FETCH and pure
//! helpers), [`folder`] (one task per folder: sync, IDLE, reconnect), [`error`]; reconnect delays come
//! from [`crate::sources::backoff`].
//!
//! Guarantees:
//! - read-only: folders are opened with `EXAMINE` and read with `BODY.PEEK`, no flag is ever set;
//! - nothing lost, nothing counted twice: the cursor advances only after the engine committed the
//!   batch that carries it, and a reconnect resumes from the last committed cursor; folders are
//!   read concurrently, and the tracker's rules do not depend on the order messages arrive in;
//! - bounded: every network read and write, and every command, is bounded by `timeout`; IDLE is
//!   re-issued every `idle_timeout`; a hung server is a `timeout` error and a reconnect;
//! - a UIDVALIDITY change re-reads the folder (since `since`); the tracker drops the duplicates.
//! - honest health: the source is up (`slawatch_source_up`), and its last success moves, only
//!   while every folder is read; one folder that cannot be opened keeps it down.

mod connection;
mod error;
mod fetch;
mod folder;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use async_imap::types::NameAttribute;
use chrono::Utc;
use futures_util::TryStreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use error::Error;

use crate::config::ImapSettings;
use crate::sources::backoff::Backoff;
use crate::sources::{EngineSink, SourceBatch};
use crate::telemetry::SourceHealth;
use connection::{Connector, bounded};
use folder::{Cursor, FolderTask, Role};

/// What the folder tasks of one source share.
pub(crate) struct SourceCtx {
    name: String,
    connector: Connector,
    sink: EngineSink,
    health: Arc<dyn SourceHealth>,
    /// Folders that have not finished their first sync yet; the one that brings it to zero
    /// sends the source's `initial_sync_done` batch, after every other folder's backfill is
    /// committed.
    first_sync_remaining: AtomicUsize,
    /// Folders whose last attempt failed. The source is up, and a sync counts as its success
    /// (what `silent_after` watches), only while none is: an INBOX that cannot be read is not
    /// hidden by a Sent folder that can.
    failing: Mutex<BTreeSet<String>>,
}

impl SourceCtx {
    /// Counts and logs a failure (never with the password: no error carries it).
    fn report(&self, folder: Option<&str>, e: &Error) {
        let s = self.connector.settings();
        if let Some(folder) = folder {
            self.failing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(folder.to_string());
        }
        self.health.set_up(&self.name, false);
        self.health.error(&self.name, e.kind());
        if e.is_permanent() {
            error!(source = %self.name, host = %s.host, port = s.port, folder = folder.unwrap_or("-"), kind = e.kind(), error = %e, "IMAP source stopped.");
        } else {
            warn!(source = %self.name, host = %s.host, port = s.port, folder = folder.unwrap_or("-"), kind = e.kind(), error = %e, "IMAP source failed; reconnecting with backoff.");
        }
    }

    /// `folder` synced: the source is up, and has succeeded, if no other folder is failing.
    fn synced(&self, folder: &str) {
        let all_well = {
            let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
            failing.remove(folder);
            failing.is_empty()
        };
        if all_well {
            self.health.set_up(&self.name, true);
            self.health.succeeded(&self.name, Utc::now());
        }
    }
}

/// Runs the IMAP source `name` until `shutdown`.
///
/// `cursors` are the committed cursors of this source (key = folder name). Batches go to `sink`;
/// each `submit` returns once the engine committed the batch's events and cursor together.
/// Health (up/down, last success, errors by kind) goes to `health`. Never returns early except
/// for a configuration the source must refuse (unencrypted IMAP to a non-loopback host without
/// `allow_insecure`) or when the engine has stopped.
pub async fn run(
    name: String,
    settings: ImapSettings,
    cursors: Vec<(String, serde_json::Value)>,
    sink: EngineSink,
    health: Arc<dyn SourceHealth>,
    shutdown: CancellationToken,
) {
    let settings = Arc::new(settings);
    let mut backoff = Backoff::default();
    let (connector, folders) = loop {
        let attempt = async {
            let connector = Connector::new(settings.clone())?;
            let folders = discover_folders(&connector).await?;
            Ok::<_, Error>((connector, folders))
        };
        let result = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            r = attempt => r,
        };
        match result {
            Ok(found) => break found,
            Err(e) => {
                health.set_up(&name, false);
                health.error(&name, e.kind());
                let level_permanent = e.is_permanent();
                if level_permanent {
                    error!(source = %name, host = %settings.host, port = settings.port, kind = e.kind(), error = %e, "IMAP source stopped.");
                    return;
                }
                warn!(source = %name, host = %settings.host, port = settings.port, kind = e.kind(), error = %e, "IMAP source failed; reconnecting with backoff.");
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    };

    let cursors = parse_cursors(&name, cursors);
    info!(source = %name, host = %settings.host, folders = ?folders.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(), "Watching IMAP folders.");
    let ctx = Arc::new(SourceCtx {
        name: name.clone(),
        connector,
        sink: sink.clone(),
        health,
        first_sync_remaining: AtomicUsize::new(folders.len()),
        failing: Mutex::default(),
    });

    if folders.is_empty() {
        warn!(source = %name, "No folder to watch.");
        let _ = sink
            .submit(SourceBatch {
                source: name,
                observations: Vec::new(),
                cursors: Vec::new(),
                initial_sync_done: true,
            })
            .await;
        shutdown.cancelled().await;
        return;
    }

    let mut tasks = tokio::task::JoinSet::new();
    for (folder, role) in folders {
        let cursor = cursors.get(&folder).copied();
        tasks.spawn(FolderTask::new(ctx.clone(), folder, role, cursor).run(shutdown.clone()));
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            error!(source = %name, error = %e, "IMAP folder task failed.");
        }
    }
}

/// The configured inbox folders, and the configured sent folders or else every folder LIST marks
/// `\Sent` (RFC 6154). A folder listed as both is watched once, as an inbox.
async fn discover_folders(connector: &Connector) -> Result<Vec<(String, Role)>, Error> {
    let s = connector.settings();
    let sent = if s.sent_folders.is_empty() {
        let timeout = s.timeout;
        let (mut session, _) = connector.connect().await?;
        let names = bounded("listing folders", timeout, async {
            let list = session
                .list(Some(""), Some("*"))
                .await
                .map_err(|e| Error::from_imap("listing folders", timeout, e))?;
            list.try_collect::<Vec<_>>()
                .await
                .map_err(|e| Error::from_imap("listing folders", timeout, e))
        })
        .await?;
        let sent: Vec<String> = names
            .iter()
            .filter(|n| n.attributes().contains(&NameAttribute::Sent))
            .map(|n| n.name().to_string())
            .collect();
        let _ = tokio::time::timeout(timeout, session.logout()).await;
        if sent.is_empty() {
            warn!(host = %s.host, "No folder is marked \\Sent: replies cannot be seen; configure sent_folders.");
        }
        sent
    } else {
        s.sent_folders.clone()
    };
    let mut folders: Vec<(String, Role)> = Vec::new();
    for f in &s.inbox_folders {
        if !folders.iter().any(|(g, _)| g == f) {
            folders.push((f.clone(), Role::Inbox));
        }
    }
    for f in sent {
        if folders.iter().any(|(g, _)| *g == f) {
            warn!(folder = %f, "Folder is both an inbox and a sent folder; watching it as an inbox.");
        } else {
            folders.push((f, Role::Sent));
        }
    }
    Ok(folders)
}

fn parse_cursors(
    source: &str,
    cursors: Vec<(String, serde_json::Value)>,
) -> HashMap<String, Cursor> {
    let mut out = HashMap::new();
    for (key, value) in cursors {
        match serde_json::from_value::<Cursor>(value) {
            Ok(c) => {
                out.insert(key, c);
            }
            Err(e) => {
                warn!(source, folder = %key, error = %e, "Unreadable cursor; the folder is read again from `since`.");
            }
        }
    }
    out
}
