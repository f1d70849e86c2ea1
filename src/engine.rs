//! The engine: the one writer of the ledger.
//!
//! It owns the order of everything: observations from sources, manual acks from the CLI/API and
//! instants from the scheduler all go through one task, which asks the tracker for events,
//! appends them (with the source cursors) to the ledger in one transaction, applies them to the
//! in-memory state, updates metrics and reschedules deadlines. Readers (HTTP, CLI) look at the
//! shared state under a read lock; they never write.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, oneshot};

use crate::store::Store;
use crate::telemetry::Metrics;
use crate::tracker::observation::ManualAck;
use crate::tracker::state::Rejected;
use crate::tracker::{Inquiry, Tracker};

/// What readers share with the engine.
pub struct Shared {
    pub tracker: RwLock<Tracker>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    /// Sources that have not finished their first sync yet (`/readyz` waits for none).
    pub pending_sources: Mutex<BTreeSet<String>>,
}

impl Shared {
    pub fn is_ready(&self) -> bool {
        self.pending_sources.lock().map(|p| p.is_empty()).unwrap_or(false)
    }
}

/// Why a manual acknowledgement failed.
#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error(transparent)]
    Rejected(#[from] Rejected),
    #[error("the ledger could not be written: {0}")]
    Store(String),
    #[error("the engine has stopped")]
    Stopped,
}

/// A request to the engine from the CLI or the API.
#[derive(Debug)]
pub enum Command {
    Ack { ack: ManualAck, reply: oneshot::Sender<Result<Inquiry, AckError>> },
}

/// Cheap handle for sending commands to the engine.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    commands: mpsc::Sender<Command>,
}

impl EngineHandle {
    pub fn new(commands: mpsc::Sender<Command>) -> EngineHandle {
        EngineHandle { commands }
    }

    /// Records a manual acknowledgement; returns the inquiry as it is afterwards.
    pub async fn ack(&self, ack: ManualAck) -> Result<Inquiry, AckError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Ack { ack, reply }).await.map_err(|_| AckError::Stopped)?;
        answer.await.map_err(|_| AckError::Stopped)?
    }
}
