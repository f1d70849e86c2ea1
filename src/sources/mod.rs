//! Sources: thin I/O shells that read mailboxes and turn what they read into [`Observation`]s.
//!
//! A source sends [`SourceBatch`]es to the engine through an [`EngineSink`]. Each batch carries
//! the source's new durable cursor, which the engine writes in the same ledger transaction as the
//! batch's events: after a crash the source resumes exactly after the last committed batch, so
//! nothing is lost and nothing is counted twice. Parsing is in pure functions (`slawatch_core::mail`
//! for messages, the call-log parsers in [`calls`]); sources report their health through
//! [`crate::telemetry::SourceHealth`].

pub(crate) mod backoff;
pub mod calls;
pub mod imap;
pub mod maildir;

use tokio::sync::{mpsc, oneshot};

use slawatch_core::tracker::Observation;

/// What a source hands the engine in one go.
#[derive(Debug)]
pub struct SourceBatch {
    pub source: String,
    pub observations: Vec<Observation>,
    /// Cursors to persist atomically with the batch's events.
    pub cursors: Vec<CursorUpdate>,
    /// Set on the batch that completes the source's first full sync (backfill). The scheduler
    /// does not fire deadlines until every source has completed it, so a backfilled inquiry is
    /// not declared missed before its reply, further down the backfill, is read.
    pub initial_sync_done: bool,
}

/// A durable cursor value, e.g. `{"uidvalidity": 7, "last_uid": 1234}` under key `INBOX`;
/// `null` removes the key.
#[derive(Debug, Clone, PartialEq)]
pub struct CursorUpdate {
    pub key: String,
    pub value: serde_json::Value,
}

/// A batch with the channel on which the engine says whether it was committed.
#[derive(Debug)]
pub struct Submission {
    pub batch: SourceBatch,
    pub committed: oneshot::Sender<Result<(), String>>,
}

/// The sending end of the engine's input, cloned into every source.
#[derive(Debug, Clone)]
pub struct EngineSink {
    tx: mpsc::Sender<Submission>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("the engine has stopped")]
    EngineStopped,
    #[error("the engine could not commit the batch: {0}")]
    CommitFailed(String),
}

impl EngineSink {
    pub fn new(tx: mpsc::Sender<Submission>) -> EngineSink {
        EngineSink { tx }
    }

    /// Sends a batch and waits until its events and cursors are committed to the ledger.
    pub async fn submit(&self, batch: SourceBatch) -> Result<(), SinkError> {
        let (committed, done) = oneshot::channel();
        self.tx
            .send(Submission { batch, committed })
            .await
            .map_err(|_| SinkError::EngineStopped)?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(SinkError::CommitFailed(e)),
            Err(_) => Err(SinkError::EngineStopped),
        }
    }
}
