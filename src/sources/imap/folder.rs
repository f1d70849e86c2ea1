//! One watched folder: its own connection, cursor, backfill, IDLE (or polling) and reconnects.
//!
//! IDLE watches only the selected mailbox, so every folder has its own connection and task; a
//! broken folder (deleted, UIDVALIDITY reset, slow) never stalls the others. The folder is opened
//! with `EXAMINE` (read-only) and read with `BODY.PEEK`, so slawatch never changes the mailbox.

use std::sync::Arc;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{Response, Status};
use async_imap::types::UnsolicitedResponse;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use slawatch_core::mail::{Envelope, parse_message};
use slawatch_core::tracker::Observation;
use slawatch_core::tracker::observation::ParseProblem;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::SourceCtx;
use super::connection::{ImapSession, bounded};
use super::error::Error;
use super::fetch::{self, FETCH_CHUNK, Fetched, Unsolicited};
use crate::sources::backoff::Backoff;
use crate::sources::{CursorUpdate, SourceBatch};

/// Whether a folder's messages are inquiries or the desk's replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Inbox,
    Sent,
}

/// The durable position in one folder, stored under the folder's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub uidvalidity: u32,
    pub last_uid: u32,
}

impl Cursor {
    fn update(self, folder: &str) -> CursorUpdate {
        CursorUpdate {
            key: folder.to_string(),
            value: serde_json::json!({"uidvalidity": self.uidvalidity, "last_uid": self.last_uid}),
        }
    }
}

pub struct FolderTask {
    ctx: Arc<SourceCtx>,
    folder: String,
    role: Role,
    /// The last committed cursor: what the ledger holds, so a reconnect resumes exactly there.
    cursor: Option<Cursor>,
    /// This folder's first sync has been counted towards the source's.
    first_sync_counted: bool,
    /// This folder finished the source's first sync last and still owes the engine the
    /// `initial_sync_done` batch.
    must_announce: bool,
}

impl FolderTask {
    pub fn new(ctx: Arc<SourceCtx>, folder: String, role: Role, cursor: Option<Cursor>) -> Self {
        FolderTask {
            ctx,
            folder,
            role,
            cursor,
            first_sync_counted: false,
            must_announce: false,
        }
    }

    /// Watches the folder until `shutdown`, reconnecting with backoff after every failure.
    /// Shutdown drops the connection wherever it is (IDLE included): nothing is half-committed,
    /// because the cursor only moves with a committed batch.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::default();
        loop {
            let result = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                r = self.session(&mut backoff) => r,
            };
            let Err(e) = result else {
                // The session ended to log in again with a renewed token: at once, no failure.
                continue;
            };
            self.ctx.report(Some(&self.folder), &e);
            if e.is_permanent() {
                return;
            }
            let delay = backoff.next_delay();
            debug!(source = %self.ctx.name, folder = %self.folder, delay_ms = delay.as_millis() as u64, "Reconnecting after a delay.");
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One connection's life: open the folder, then sync and wait until an error, or (`Ok`)
    /// until an OAuth2 login's token is due for renewal and the session must log in again.
    async fn session(&mut self, backoff: &mut Backoff) -> Result<(), Error> {
        let ctx = self.ctx.clone();
        let settings = ctx.connector.settings();
        let timeout = settings.timeout;
        let (mut session, relogin_at) = self.ctx.connector.connect().await?;
        let caps = bounded("reading capabilities", timeout, async {
            session
                .capabilities()
                .await
                .map_err(|e| Error::from_imap("reading capabilities", timeout, e))
        })
        .await?;
        let idle = caps.has_str("IDLE");
        let mailbox = bounded("opening the folder", timeout, async {
            session
                .examine(&self.folder)
                .await
                .map_err(|e| Error::from_imap("opening the folder", timeout, e))
        })
        .await?;
        let uidvalidity = mailbox
            .uid_validity
            .ok_or_else(|| Error::Protocol("EXAMINE returned no UIDVALIDITY".into()))?;
        debug!(source = %self.ctx.name, folder = %self.folder, uidvalidity, exists = mailbox.exists, idle, "Folder opened.");

        loop {
            let mut unsolicited = Unsolicited::default();
            self.sync(&mut session, uidvalidity, &mut unsolicited)
                .await?;
            self.ctx.synced(&self.folder);
            backoff.reset();

            drain_unsolicited(&mut session, &mut unsolicited)?;
            if unsolicited.new_mail {
                // Mail arrived while we were fetching: read it before waiting.
                continue;
            }
            // Until the next login, or forever.
            let left = relogin_at.map(|t| t.saturating_duration_since(tokio::time::Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                let _ = tokio::time::timeout(timeout, session.logout()).await;
                debug!(source = %self.ctx.name, folder = %self.folder, "Logging in again with a renewed token.");
                return Ok(());
            }
            if idle {
                let wait = left.map_or(settings.idle_timeout, |l| l.min(settings.idle_timeout));
                session = self.idle(session, wait).await?;
            } else {
                let wait = settings.poll_interval.max(MIN_POLL);
                tokio::time::sleep(left.map_or(wait, |l| l.clamp(MIN_POLL, wait))).await;
                bounded("polling (NOOP)", timeout, async {
                    session
                        .noop()
                        .await
                        .map_err(|e| Error::from_imap("polling (NOOP)", timeout, e))
                })
                .await?;
            }
        }
    }

    /// Reads every message after the cursor (or, without a usable cursor, since `since`) in
    /// chunks, committing each chunk with its cursor before moving on.
    async fn sync(
        &mut self,
        session: &mut ImapSession,
        uidvalidity: u32,
        unsolicited: &mut Unsolicited,
    ) -> Result<(), Error> {
        let ctx = self.ctx.clone();
        let settings = ctx.connector.settings();
        let timeout = settings.timeout;
        let (query, after) = match self.cursor {
            Some(c) if c.uidvalidity == uidvalidity => (
                format!("UID {}:*", c.last_uid.saturating_add(1)),
                c.last_uid,
            ),
            Some(c) => {
                warn!(
                    source = %self.ctx.name, host = %settings.host, folder = %self.folder,
                    old = c.uidvalidity, new = uidvalidity,
                    "UIDVALIDITY changed: re-reading the folder from scratch; re-read messages are \
                     dropped as duplicates by the tracker."
                );
                (fetch::search_since(settings.since), 0)
            }
            None => (fetch::search_since(settings.since), 0),
        };
        let uids: Vec<u32> = bounded(
            "searching",
            timeout,
            fetch::uid_search(session, &query, timeout),
        )
        .await?
        .into_iter()
        // `UID n:*` always includes the highest UID, even when it is below n.
        .filter(|&u| u > after)
        .collect();
        if !uids.is_empty() {
            info!(source = %self.ctx.name, folder = %self.folder, messages = uids.len(), "Reading new messages.");
        }

        let start = Cursor {
            uidvalidity,
            last_uid: after,
        };
        if uids.is_empty() && self.cursor != Some(start) {
            // Empty (or emptied) folder: still record the UIDVALIDITY we have read.
            self.submit(Vec::new(), Some(start), false).await?;
        }

        let items = fetch::fetch_items(settings.body_prefix_bytes);
        // One chunk's commit runs while the next chunk is fetched (at most one in flight, so
        // batches stay in order); the cursor moves only once its chunk is committed. If the
        // fetch fails meanwhile, the reconnect re-reads from the last cursor known committed
        // and the tracker drops whatever of it was committed already.
        let mut in_flight: Option<InFlight> = None;
        for chunk in uids.chunks(FETCH_CHUNK) {
            let set = fetch::uid_set(chunk);
            let msgs = fetch::uid_fetch(
                session,
                &set,
                &items,
                timeout,
                |u| chunk.binary_search(&u).is_ok(),
                unsolicited,
            )
            .await?;
            let seen_at = Utc::now();
            let mut problems = Vec::new();
            let observations = msgs
                .into_iter()
                .map(|m| self.observe(m, seen_at, &mut problems))
                .collect();
            // The chunk's highest UID, even if some vanished between SEARCH and FETCH.
            let last_uid = chunk.last().copied().unwrap_or(after);
            let cursor = Cursor {
                uidvalidity,
                last_uid,
            };
            if let Some(previous) = in_flight.take() {
                self.finish(previous).await?;
            }
            in_flight = Some(self.start_submit(observations, cursor, problems));
        }
        if let Some(previous) = in_flight.take() {
            self.finish(previous).await?;
        }

        if !self.first_sync_counted {
            self.first_sync_counted = true;
            if self
                .ctx
                .first_sync_remaining
                .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
                == 1
            {
                self.must_announce = true;
            }
        }
        if self.must_announce {
            self.submit(Vec::new(), None, true).await?;
            self.must_announce = false;
            info!(source = %self.ctx.name, "Initial sync of every folder complete.");
        }
        Ok(())
    }

    fn observe(
        &self,
        m: Fetched,
        seen_at: chrono::DateTime<Utc>,
        problems: &mut Vec<ParseProblem>,
    ) -> Observation {
        let delivered_at = match m
            .internal_date
            .as_deref()
            .and_then(fetch::parse_internal_date)
        {
            Some(t) => t,
            None => {
                warn!(
                    source = %self.ctx.name, folder = %self.folder, uid = m.uid,
                    internal_date = ?m.internal_date,
                    "Unusable INTERNALDATE; using the time it was read instead."
                );
                self.ctx.health.error(&self.ctx.name, "protocol");
                seen_at
            }
        };
        let envelope = Envelope {
            source: self.ctx.name.clone(),
            folder: self.folder.clone(),
            delivered_at,
            seen_at,
        };
        let mail = parse_message(&m.raw, &envelope);
        problems.extend(mail.problems.iter().copied());
        match self.role {
            Role::Inbox => Observation::MessageReceived(mail),
            Role::Sent => Observation::MessageSent(mail),
        }
    }

    /// Hands a chunk to the engine in the background (see [`FolderTask::finish`]).
    fn start_submit(
        &self,
        observations: Vec<Observation>,
        cursor: Cursor,
        problems: Vec<ParseProblem>,
    ) -> InFlight {
        let batch = SourceBatch {
            source: self.ctx.name.clone(),
            observations,
            cursors: vec![cursor.update(&self.folder)],
            initial_sync_done: false,
        };
        let sink = self.ctx.sink.clone();
        InFlight {
            commit: tokio::spawn(async move { sink.submit(batch).await }),
            cursor,
            problems,
        }
    }

    /// Waits until a chunk handed over by [`FolderTask::start_submit`] is committed, then moves the
    /// cursor and counts its parse problems.
    async fn finish(&mut self, chunk: InFlight) -> Result<(), Error> {
        chunk.commit.await.map_err(|_| Error::EngineStopped)??;
        self.cursor = Some(chunk.cursor);
        for p in chunk.problems {
            self.ctx.health.error(&self.ctx.name, p.as_str());
        }
        Ok(())
    }

    /// Hands a batch to the engine and, once it is committed, moves the cursor.
    async fn submit(
        &mut self,
        observations: Vec<Observation>,
        cursor: Option<Cursor>,
        initial_sync_done: bool,
    ) -> Result<(), Error> {
        let batch = SourceBatch {
            source: self.ctx.name.clone(),
            observations,
            cursors: cursor.iter().map(|c| c.update(&self.folder)).collect(),
            initial_sync_done,
        };
        self.ctx.sink.submit(batch).await?;
        if cursor.is_some() {
            self.cursor = cursor;
        }
        Ok(())
    }

    /// Waits in IDLE until the server reports a change or `idle_timeout` (at most) passes, then
    /// ends IDLE.
    ///
    /// The socket read timeout is off while waiting (the server may rightly be silent for
    /// minutes); the wait itself is bounded by `idle_timeout`, and DONE by `timeout`, so a dead
    /// connection is found within `idle_timeout + timeout`.
    async fn idle(
        &self,
        mut session: ImapSession,
        idle_timeout: Duration,
    ) -> Result<ImapSession, Error> {
        let settings = self.ctx.connector.settings();
        let timeout = settings.timeout;
        session.as_mut().set_read_timeout(None);
        let mut handle = session.idle();
        bounded("starting IDLE", timeout, async {
            handle
                .init()
                .await
                .map_err(|e| Error::from_imap("starting IDLE", timeout, e))
        })
        .await?;
        let outcome = {
            let (wait, _stop) = handle.wait_with_timeout(idle_timeout);
            // Keepalives (`* OK Still here`) restart async-imap's own timeout, so the total wait
            // is bounded here.
            tokio::select! {
                r = wait => r.map_err(|e| Error::from_imap("waiting in IDLE", timeout, e))?,
                _ = tokio::time::sleep(idle_timeout) => IdleResponse::Timeout,
            }
        };
        match outcome {
            // We never interrupt (shutdown drops the whole connection), so this is EOF.
            IdleResponse::ManualInterrupt => {
                return Err(Error::Io("connection closed during IDLE".into()));
            }
            IdleResponse::NewData(data) => {
                if let Response::Data {
                    status: Status::Bye,
                    outcome,
                } = data.parsed()
                {
                    return Err(Error::Io(format!(
                        "server said BYE during IDLE: {}",
                        outcome.information.as_deref().unwrap_or("")
                    )));
                }
                debug!(source = %self.ctx.name, folder = %self.folder, "IDLE woke up.");
            }
            IdleResponse::Timeout => {
                debug!(source = %self.ctx.name, folder = %self.folder, "IDLE re-issued.");
            }
        }
        handle.as_mut().set_read_timeout(Some(timeout));
        bounded("ending IDLE", timeout, async {
            handle
                .done()
                .await
                .map_err(|e| Error::from_imap("ending IDLE", timeout, e))
        })
        .await
    }
}

/// Empties async-imap's bounded channel of unsolicited responses (it silently drops what does
/// not fit) and notes whether new mail was announced.
fn drain_unsolicited(session: &mut ImapSession, u: &mut Unsolicited) -> Result<(), Error> {
    while let Ok(r) = session.unsolicited_responses.try_recv() {
        match r {
            UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_) => u.new_mail = true,
            UnsolicitedResponse::Other(data) => fetch::note_unsolicited(data.parsed(), u)?,
            _ => {}
        }
    }
    Ok(())
}

/// Polling (no IDLE) waits this long between rounds at least, whatever is configured, so a
/// zero interval cannot spin.
const MIN_POLL: Duration = Duration::from_millis(100);

/// A chunk being committed while the next one is fetched.
struct InFlight {
    commit: tokio::task::JoinHandle<Result<(), crate::sources::SinkError>>,
    cursor: Cursor,
    problems: Vec<ParseProblem>,
}
