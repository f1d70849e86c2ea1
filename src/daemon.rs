//! The daemon: builds every part from validated settings and runs them until shutdown.
//!
//! Order matters: the ledger is opened and replayed before anything listens, so the first
//! `/metrics` scrape and the first API answer already reflect every past event; sources start
//! last and resume from the cursors committed with their last batch.
//!
//! The daemon also keeps the monitor's own record in the ledger (see [`crate::monitor`]):
//! `monitor_started` after the replay, heartbeats and source transitions while it runs, and
//! `monitor_stopped` after a clean shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use slawatch_core::tracker::{Event, TrackerRules};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Settings, SourceKind};
use crate::engine::{Engine, EngineHandle, Shared, replay};
use crate::monitor::LedgerHealth;
use crate::notify::Notifier;
use crate::scheduler::Clock;
use crate::sources::EngineSink;
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::telemetry::SourceHealth;

/// Room for source batches waiting for the engine: enough to keep IMAP fetches flowing, small
/// enough that a stalled ledger slows sources down instead of filling memory.
const INPUT_QUEUE: usize = 16;

/// Runs the daemon until `shutdown` is cancelled. `bound` receives the HTTP address once it
/// listens (tests bind port 0).
pub async fn run(
    settings: Settings,
    clock: Clock,
    shutdown: CancellationToken,
    bound: Option<oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<()> {
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    let store = Store::open(&settings.store.url).await.with_context(|| {
        format!(
            "opening the ledger at {}",
            crate::store::redact_url(&settings.store.url)
        )
    })?;
    let rules = Arc::new(TrackerRules {
        desk: settings.desk.clone(),
        policies: settings.policies.clone(),
    });
    let started = std::time::Instant::now();
    let (mut tracker, deadlines) = replay(&store, rules)
        .await
        .context("replaying the ledger")?;
    tracker.set_contacts(settings.contacts.clone());
    tracing::info!(
        inquiries = tracker.len(),
        pending_deadlines = deadlines.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "Ledger replayed."
    );
    // Before the engine starts, so this is the only writer: the monitor's coverage begins here.
    store
        .append(
            clock.now(),
            &[Event::MonitorStarted {
                at: clock.now(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            }],
            &[],
        )
        .await
        .context("recording the start in the ledger")?;

    let source_names: Vec<String> = settings.sources.iter().map(|s| s.name.clone()).collect();
    let metrics = Arc::new(Metrics::new(env!("CARGO_PKG_VERSION"), &source_names));
    let shared = Arc::new(Shared {
        tracker: RwLock::new(tracker),
        metrics: metrics.clone(),
        store: store.clone(),
        pending_sources: Mutex::new(source_names.iter().cloned().collect()),
    });

    let (input_tx, input_rx) = mpsc::channel(INPUT_QUEUE);
    let (command_tx, command_rx) = mpsc::channel(16);
    let tasks = TaskTracker::new();
    let notifier: Arc<dyn Notifier> =
        crate::notify::dispatch::build(&settings.notify, settings.desk.time_zone, metrics.clone())
            .context("building the notifiers")?;
    if let Some(oncall) = &settings.notify.oncall {
        for (rotation, gaps) in oncall.gaps(clock.now()) {
            for gap in crate::notify::oncall::describe_gaps(rotation, &gaps) {
                tracing::warn!(rotation = %rotation.name, "On-call gap: {gap}; alerts then go to the escalation list or notify.smtp.to.");
            }
        }
    }
    let engine = Engine {
        shared: shared.clone(),
        clock,
        notifier,
        public_url: settings.http.public_url.clone(),
        oncall: settings.notify.oncall.clone().map(Arc::new),
        input: input_rx,
        commands: command_rx,
        shutdown: shutdown.clone(),
        sync_grace: crate::engine::SYNC_GRACE,
    };
    // Watched apart from the other tasks: if the engine ends, nothing is recorded any more, so
    // the daemon must stop (and be restarted) rather than serve frozen numbers.
    let mut engine_task = tokio::spawn(engine.run(deadlines));

    let listener = tokio::net::TcpListener::bind(settings.http.bind)
        .await
        .with_context(|| format!("binding the HTTP server to {}", settings.http.bind))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "HTTP listening (metrics, API, status page).");
    if let Some(bound) = bound {
        let _ = bound.send(addr);
    }
    let engine_handle = EngineHandle::new(command_tx);
    let state =
        crate::http::AppState::from_settings(shared.clone(), engine_handle.clone(), &settings.http);
    let limits = crate::http::Limits::from_settings(&settings.http);
    let http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        if let Err(e) = crate::http::serve_within(listener, state, limits, http_shutdown).await {
            tracing::error!(error = %e, "HTTP server failed.");
        }
    });

    let sink = EngineSink::new(input_tx);
    let (health, transitions) = LedgerHealth::new(metrics.clone(), clock);
    let health: Arc<dyn SourceHealth> = Arc::new(health);
    tasks.spawn(crate::monitor::run(
        engine_handle,
        clock,
        transitions,
        shutdown.clone(),
    ));
    for source in settings.sources {
        let cursors = store
            .cursors(&source.name)
            .await
            .context("reading source cursors")?;
        let (name, sink, health, stop) =
            (source.name, sink.clone(), health.clone(), shutdown.clone());
        match source.kind {
            SourceKind::Maildir(m) => {
                let cursors = cursors.into_iter().collect();
                tasks.spawn(crate::sources::maildir::run(
                    name, m, cursors, sink, health, stop,
                ));
            }
            SourceKind::Imap(i) => {
                tasks.spawn(crate::sources::imap::run(
                    name, i, cursors, sink, health, stop,
                ));
            }
            SourceKind::CallLog(c) => {
                let cursors = cursors.into_iter().collect();
                tasks.spawn(crate::sources::calls::tail::run(
                    name, c, cursors, sink, health, stop,
                ));
            }
            SourceKind::Twilio(t) => {
                let cursors = cursors.into_iter().collect();
                tasks.spawn(crate::sources::calls::poll::run(
                    name, t, cursors, sink, health, stop,
                ));
            }
        }
    }
    drop(sink);
    tasks.close();

    let engine_died = tokio::select! {
        biased;
        _ = shutdown.cancelled() => false,
        result = &mut engine_task => {
            // The engine also ends when shutdown was asked for; only otherwise is it a death.
            let died = !shutdown.is_cancelled();
            if died {
                tracing::error!(outcome = ?result.err(), "The engine stopped unexpectedly; shutting down.");
                shutdown.cancel();
            }
            died
        }
    };
    tracing::info!("Shutting down.");
    tasks.wait().await;
    if !engine_task.is_finished() {
        let _ = engine_task.await;
    }
    // Every task has stopped, so this is the only writer again.
    if let Err(e) = store
        .append(
            clock.now(),
            &[Event::MonitorStopped { at: clock.now() }],
            &[],
        )
        .await
    {
        tracing::error!(error = %e, "Could not record the stop in the ledger.");
    }
    store.close().await;
    if engine_died {
        anyhow::bail!("the engine stopped unexpectedly");
    }
    Ok(())
}
