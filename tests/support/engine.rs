//! The engine in-process over a real ledger, its clock anchored at a chosen instant (advancing in
//! real time), driven through its source sink and command handle: the harness of the engine,
//! alert-resume and on-call routing tests.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use slawatch::engine::{Engine, EngineHandle, Shared, replay};
use slawatch::notify::Notifier;
use slawatch::notify::oncall::OnCall;
use slawatch::scheduler::Clock;
use slawatch::sources::EngineSink;
use slawatch::store::Store;
use slawatch::telemetry::Metrics;
use slawatch_core::tracker::TrackerRules;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the engine starts with besides its ledger, rules and notifier.
pub struct Setup {
    /// The clock's instant at start.
    pub now: DateTime<Utc>,
    pub oncall: Option<Arc<OnCall>>,
    /// Sources known to the metrics; `pending` ones are still in their first sync.
    pub sources: Vec<String>,
    pub pending: bool,
    pub sync_grace: Duration,
    /// How long "I'm on it" holds (`notify.take_for`).
    pub take_for: Duration,
    /// `store.working_window`: with one, the state comes from the daemon's start-up path
    /// (snapshot, replay with evictions) and threads leave memory; none: all stay.
    pub working_window: Option<chrono::Duration>,
}

impl Setup {
    /// One source `s`, already synced, and a 1 s sync grace.
    pub fn at(now: DateTime<Utc>) -> Setup {
        Setup {
            now,
            oncall: None,
            sources: vec!["s".to_string()],
            pending: false,
            sync_grace: Duration::from_secs(1),
            take_for: slawatch::config::DEFAULT_TAKE_FOR,
            working_window: None,
        }
    }
}

pub struct Running {
    pub engine: EngineHandle,
    /// What the monitor can no longer see or tell, as the daemon's watchers report it.
    pub signals: mpsc::UnboundedSender<slawatch::monitor::Signal>,
    pub shared: Arc<Shared>,
    pub sink: EngineSink,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

/// Replays `store` under `rules` and runs the engine on it.
pub async fn start(
    store: Store,
    rules: Arc<TrackerRules>,
    notifier: Arc<dyn Notifier>,
    setup: Setup,
) -> Running {
    let (tracker, deadlines, working_set) = match setup.working_window {
        None => {
            let (tracker, deadlines) = replay(&store, rules).await.unwrap();
            (tracker, deadlines, None)
        }
        Some(window) => {
            let started = slawatch::working_set::start(&store, rules, None, window)
                .await
                .unwrap();
            let options = slawatch::working_set::WorkingSetOptions {
                window,
                snapshot_every: chrono::Duration::minutes(10),
                archived: started.archived,
                // Every turn: tests read a few batches in well under a minute.
                evict_every: chrono::Duration::zero(),
            };
            (started.tracker, started.deadlines, Some(options))
        }
    };
    let pending: BTreeSet<String> = if setup.pending {
        setup.sources.iter().cloned().collect()
    } else {
        BTreeSet::new()
    };
    let shared = Arc::new(Shared::new(
        tracker,
        Arc::new(Metrics::new("test", &setup.sources)),
        store,
        pending,
    ));
    let (input_tx, input_rx) = mpsc::channel(4);
    let (commands_tx, commands_rx) = mpsc::channel(1);
    let (signals, signals_rx) = mpsc::unbounded_channel();
    let shutdown = CancellationToken::new();
    let engine = Engine {
        shared: shared.clone(),
        clock: Clock::anchored(setup.now),
        notifier,
        public_url: "http://127.0.0.1:9750".into(),
        oncall: setup.oncall,
        input: input_rx,
        commands: commands_rx,
        signals: signals_rx,
        shutdown: shutdown.clone(),
        sync_grace: setup.sync_grace,
        ledger: slawatch::engine::LedgerOptions {
            working_set,
            ..Default::default()
        },
        actions: slawatch::engine::ActionOptions {
            links: None,
            take_for: setup.take_for,
        },
    };
    let task = tokio::spawn(engine.run(deadlines));
    Running {
        engine: EngineHandle::new(commands_tx),
        signals,
        shared,
        sink: EngineSink::new(input_tx),
        shutdown,
        task,
    }
}

/// Stops the engine and waits for it to finish its last commit.
pub async fn stop(r: Running) {
    r.shutdown.cancel();
    r.task.await.unwrap();
    drop(r.sink);
}
