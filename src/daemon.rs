//! The daemon: builds every part from validated settings and runs them until shutdown.
//!
//! Order matters: the ledger is opened and replayed before anything listens, so the first
//! `/metrics` scrape and the first API answer already reflect every past event; sources start
//! last and resume from the cursors committed with their last batch.
//!
//! The daemon also keeps the monitor's own record in the ledger (see [`crate::monitor`]):
//! `monitor_started` after the replay, heartbeats and source transitions while it runs, and
//! `monitor_stopped` after a clean shutdown.
//!
//! On PostgreSQL the daemon is one replica of an active/standby pair ([`crate::replica`]): it
//! is the standby until it holds the leader lease, the active one while it does, and the
//! standby again if it loses it. The HTTP socket stays bound across these roles, so a request
//! made during a change waits in its backlog instead of being refused.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use slawatch_core::tracker::{Event, TrackerRules};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Settings, SourceKind};
use crate::engine::{Engine, EngineHandle, LedgerOptions, Shared};
use crate::monitor::LedgerHealth;
use crate::notify::Notifier;
use crate::replica::{Position, Role};
use crate::scheduler::Clock;
use crate::sources::EngineSink;
use crate::store::lease::{Lease, Takeover};
use crate::store::{PublicKey, Sealing, Signer, Store, Verification};
use crate::telemetry::Metrics;
use crate::telemetry::SourceHealth;

/// Room for source batches waiting for the engine: enough to keep IMAP fetches flowing, small
/// enough that a stalled ledger slows sources down instead of filling memory.
const INPUT_QUEUE: usize = 16;

/// Room for API commands (pushed calls, acks) waiting for the engine: pushes queued together are
/// written in one durable commit, so the queue is what lets one disk sync serve many requests.
const COMMAND_QUEUE: usize = 1024;

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
    // One writer per ledger: taken before the database is even opened, held until the end.
    let _writer_lock = match Store::sqlite_file(&settings.store.url) {
        Some(file) => Some(crate::store::lock::WriterLock::acquire(&file)?),
        None => None,
    };
    let signer = match &settings.store.signing_key_file {
        Some(file) => Some(Arc::new(
            Signer::from_file(file).context("reading store.signing_key_file")?,
        )),
        None => {
            tracing::warn!(
                "No store.signing_key_file: the ledger is hash-linked but not signed; whoever can write its file can rewrite it unnoticed (see `slawatch audit keygen`)."
            );
            None
        }
    };
    let store = Store::open_with(
        &settings.store.url,
        settings.store.password.as_ref().map(|p| p.expose()),
    )
    .await
    .with_context(|| {
        format!(
            "opening the ledger at {}",
            crate::store::redact_url(&settings.store.url)
        )
    })?;
    // On PostgreSQL, a ledger that lost rows this daemon wrote (a failover to a standby that
    // lacked them) is never written on again: the daemon still starts, to keep alerting, and
    // every write it tries is refused, which pages through the `monitor-ledger` alert.
    let mut went_backwards = false;
    match store.keep_published_head(&settings.store.head_file).await {
        Ok(()) => {}
        Err(e @ crate::store::StoreError::WentBackwards { .. }) => {
            tracing::error!(error = %e, "The ledger went backwards; nothing is written to it.");
            went_backwards = true;
        }
        Err(e) => return Err(e).context("checking the ledger's head against the one published"),
    }
    let daemon = Daemon {
        settings,
        store: store.clone(),
        signer,
        clock,
        shutdown,
        http: HttpSocket {
            socket: None,
            bound,
        },
        went_backwards,
    };
    let outcome = daemon.run().await;
    store.close().await;
    outcome
}

/// What every role of the daemon shares: settings, the open store, the HTTP socket.
struct Daemon {
    settings: Settings,
    store: Store,
    signer: Option<Arc<Signer>>,
    clock: Clock,
    shutdown: CancellationToken,
    http: HttpSocket,
    went_backwards: bool,
}

/// The HTTP socket, bound once for the daemon's life: each role serves it through a handle of
/// its own.
struct HttpSocket {
    socket: Option<std::net::TcpListener>,
    bound: Option<oneshot::Sender<SocketAddr>>,
}

impl HttpSocket {
    /// A handle on the socket, bound at the first call (after the state is restored, so the
    /// first answer already reflects the ledger).
    async fn handle(&mut self, bind: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
        if self.socket.is_none() {
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("binding the HTTP server to {bind}"))?;
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "HTTP listening (metrics, API, status page).");
            if let Some(bound) = self.bound.take() {
                let _ = bound.send(addr);
            }
            self.socket = Some(listener.into_std()?);
        }
        let socket = self.socket.as_ref().expect("bound above").try_clone()?;
        Ok(tokio::net::TcpListener::from_std(socket)?)
    }
}

/// How a role ended.
enum Ended {
    Shutdown,
    /// The active lost the leader lease.
    SteppedDown,
}

/// The state a standby hands to itself as it becomes the active one: already restored and
/// caught up with every row the old active committed.
struct Handover {
    tracker: slawatch_core::tracker::Tracker,
    at: Position,
    snapshot_seq: Option<i64>,
    archived: bool,
}

impl Daemon {
    async fn run(mut self) -> anyhow::Result<()> {
        if !matches!(self.store, Store::Postgres(_)) {
            self.active(None, None).await?;
            return Ok(());
        }
        let lease = Arc::new(Lease::new(
            Lease::replica_name(),
            self.settings.store.lease_ttl,
        ));
        self.store.write_under(lease.clone());
        tracing::info!(
            replica = lease.replica(),
            lease_ttl_s = lease.ttl().as_secs(),
            "PostgreSQL store: this daemon is one replica of an active/standby pair; the one holding the leader lease writes and alerts."
        );
        // After a step-down the store may be out of reach (the very reason the lease lapsed):
        // the standby then waits for it instead of ending the daemon.
        let mut stepped_down = false;
        loop {
            let (takeover, handover) = match crate::replica::try_take(&lease, &self.store).await {
                Some(taken) => (taken, None),
                None => match self.standby(&lease, stepped_down).await? {
                    Some((taken, handover)) => (taken, handover),
                    None => return Ok(()),
                },
            };
            tracing::info!(
                epoch = takeover.epoch,
                previous = takeover.previous.as_deref().unwrap_or("none"),
                "This replica holds the leader lease: it is the active one now."
            );
            match self
                .active(Some((lease.clone(), takeover)), handover)
                .await?
            {
                Ended::Shutdown => return Ok(()),
                Ended::SteppedDown => {
                    stepped_down = true;
                    tracing::warn!("Stepped down: this replica is the standby now.");
                }
            }
        }
    }

    fn rules(&self) -> Arc<TrackerRules> {
        Arc::new(TrackerRules {
            desk: self.settings.desk.clone(),
            policies: self.settings.policies.clone(),
        })
    }

    fn key(&self) -> Option<PublicKey> {
        self.signer.as_ref().map(|s| s.public_key())
    }

    fn source_names(&self) -> Vec<String> {
        self.settings
            .sources
            .iter()
            .map(|s| s.name.clone())
            .collect()
    }

    /// The standby: restores the state, serves reads and follows the ledger until it takes the
    /// lease (the takeover, and the state caught up to the last row, when that worked) or the
    /// daemon stops (`None`). With `wait_for_store` (after a step-down) a store out of reach is
    /// waited for; at start-up it ends the daemon.
    async fn standby(
        &mut self,
        lease: &Arc<Lease>,
        wait_for_store: bool,
    ) -> anyhow::Result<Option<(Takeover, Option<Handover>)>> {
        let settings = &self.settings;
        let store = &self.store;
        let key = self.key();
        let rules = self.rules();
        let started = loop {
            // A database that hangs must not keep the daemon from stopping.
            let attempt = tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(None),
                attempt = crate::working_set::start_following(store, rules.clone(), key.clone()) => attempt,
            };
            match attempt {
                Ok(started) => break started,
                Err(e) if wait_for_store => {
                    tracing::warn!(error = %e, "Standby: cannot restore the state from the ledger; trying again.");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(crate::replica::FOLLOW_EVERY) => {}
                    }
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context("restoring the state from the ledger (standby)"));
                }
            }
        };
        let mut at = match (started.position(), &started.verification) {
            (Some(at), _) => at,
            (None, Verification::Broken { seq, problem, .. }) => anyhow::bail!(
                "the ledger is broken at seq {seq}: {problem}; the standby does not follow it"
            ),
            (None, Verification::Intact { .. }) => unreachable!("an intact ledger has a position"),
        };
        let mut snapshot_seq = started.snapshot_seq;
        let mut archived = started.archived;
        let mut tracker = started.tracker;
        tracker.set_contacts(settings.contacts.clone());
        let source_names = self.source_names();
        let metrics = Arc::new(Metrics::new(env!("CARGO_PKG_VERSION"), &source_names));
        let shared = Arc::new(Shared::new(
            tracker,
            metrics,
            store.clone(),
            Default::default(),
        ));
        let following = crate::replica::StandbyMetrics::new(lease)
            .context("registering the standby's metrics")?;
        following.caught_up(&at);
        let _ = shared.standby_metrics.set(following.registry.clone());
        let standing = |at: &Position, problem: Option<String>| Role::Standby {
            seq: at.seq,
            at: problem.is_none().then(chrono::Utc::now),
            problem,
        };
        shared.set_role(standing(&at, None));
        tracing::info!(
            seq = at.seq,
            inquiries = shared.tracker.read().map(|t| t.len()).unwrap_or(0),
            "Standby: state restored; following the ledger and serving reads until the active replica lets the lease go."
        );
        let stop = self.shutdown.child_token();
        let tasks = TaskTracker::new();
        let listener = self.http.handle(settings.http.bind).await?;
        let state = crate::http::AppState {
            take_for: settings.notify.take_for,
            ..crate::http::AppState::from_settings(
                shared.clone(),
                EngineHandle::standby(),
                &settings.http,
            )
        };
        let limits = crate::http::Limits::from_settings(&settings.http);
        let http_stop = stop.clone();
        tasks.spawn(async move {
            if let Err(e) = crate::http::serve_within(listener, state, limits, http_stop).await {
                tracing::error!(error = %e, "HTTP server failed.");
            }
        });
        tasks.spawn(crate::service::run(shared.clone(), stop.clone()));
        tasks.close();
        let mut last_reload = std::time::Instant::now();
        let taken = loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => break None,
                _ = tokio::time::sleep(crate::replica::FOLLOW_EVERY) => {}
            }
            // A database that hangs must not keep the daemon from stopping.
            let taken = tokio::select! {
                _ = self.shutdown.cancelled() => break None,
                taken = crate::replica::try_take(lease, store) => taken,
            };
            if let Some(taken) = taken {
                break Some(taken);
            }
            if !archived {
                archived = store.has_archive().await.unwrap_or(false);
            }
            let followed = tokio::select! {
                _ = self.shutdown.cancelled() => break None,
                followed = crate::replica::catch_up(store, &shared, key.clone(), &mut at, archived) => followed,
            };
            match followed {
                Ok(_) => {
                    following.caught_up(&at);
                    shared.set_role(standing(&at, None));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Standby: cannot follow the ledger; trying again.");
                    shared.set_role(standing(&at, Some(e.to_string())));
                }
            }
            // The active files what it evicts and snapshots the rest: a newer snapshot lets the
            // standby's memory go back to the working set.
            if last_reload.elapsed() >= settings.store.snapshot_every {
                last_reload = std::time::Instant::now();
                let newest = store
                    .snapshots()
                    .await
                    .ok()
                    .and_then(|s| s.first().map(|s| s.seq));
                if newest > snapshot_seq {
                    match crate::working_set::start_following(store, rules.clone(), key.clone())
                        .await
                    {
                        Ok(fresh) => {
                            if let Some(fresh_at) = fresh.position() {
                                let mut tracker = fresh.tracker;
                                tracker.set_contacts(settings.contacts.clone());
                                at = fresh_at;
                                snapshot_seq = fresh.snapshot_seq;
                                archived |= fresh.archived;
                                *shared.tracker.write().unwrap_or_else(|e| e.into_inner()) =
                                    tracker;
                                tracing::info!(
                                    seq = at.seq,
                                    "Standby: reloaded from the active's newer snapshot."
                                );
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "Standby: could not reload from the newer snapshot.")
                        }
                    }
                }
            }
        };
        stop.cancel();
        tasks.wait().await;
        let Some(taken) = taken else {
            return Ok(None);
        };
        // Every commit of the old active ended before the lease changed hands (the fence): one
        // last catch-up and the state is the ledger's. If it fails, the active starts afresh.
        let handover = match crate::replica::catch_up(store, &shared, key, &mut at, archived).await
        {
            Ok(_) => {
                let mut tracker = shared.tracker.write().unwrap_or_else(|e| e.into_inner());
                Some(Handover {
                    tracker: std::mem::replace(
                        &mut *tracker,
                        slawatch_core::tracker::Tracker::new(rules),
                    ),
                    at,
                    snapshot_seq,
                    archived,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "The standby's state could not catch up; restoring it afresh.");
                None
            }
        };
        Ok(Some((taken, handover)))
    }

    /// The active one (the only one, on SQLite): restores the state (or takes the standby's),
    /// runs sources, scheduler, notifiers and the engine until shutdown, or until the lease is
    /// lost.
    async fn active(
        &mut self,
        lease: Option<(Arc<Lease>, Takeover)>,
        handover: Option<Handover>,
    ) -> anyhow::Result<Ended> {
        let settings = self.settings.clone();
        let store = self.store.clone();
        let signer = self.signer.clone();
        let clock = self.clock;
        let went_backwards = self.went_backwards;
        // This role's own stop: the daemon's shutdown, or the lease lost.
        let shutdown = self.shutdown.child_token();
        // Renewed from the first moment (a long restore must not let the lease lapse) to the
        // last (the stop is recorded and deliveries finish under it).
        let renewal = CancellationToken::new();
        let renewing = lease.as_ref().map(|(lease, _)| {
            tokio::spawn(crate::replica::keep_lease(
                lease.clone(),
                store.clone(),
                renewal.clone(),
                shutdown.clone(),
            ))
        });
        let _stop_renewing = renewal.clone().drop_guard();
        let rules = self.rules();
        let started = std::time::Instant::now();
        let key = self.key();
        let window = chrono::Duration::from_std(settings.store.working_window)
            .context("store.working_window is out of range")?;
        let snapshot_every = chrono::Duration::from_std(settings.store.snapshot_every)
            .context("store.snapshot_every is out of range")?;
        let handed_over = handover.is_some();
        let crate::working_set::Started {
            mut tracker,
            deadlines,
            verification,
            seals,
            snapshot_seq,
            replayed,
            archived,
        } = match handover {
            // The standby followed the ledger link by link up to its head.
            Some(h) => crate::working_set::Started {
                deadlines: crate::scheduler::Deadlines::of_open(&h.tracker),
                tracker: h.tracker,
                verification: Verification::Intact {
                    events: 0,
                    head_hash: h.at.hash,
                },
                seals: Default::default(),
                snapshot_seq: h.snapshot_seq,
                replayed: (h.at.seq - h.snapshot_seq.unwrap_or(0)).max(0) as u64,
                archived: h.archived,
            },
            None => crate::working_set::start(&store, rules.clone(), key, window)
                .await
                .context("restoring the state from the ledger")?,
        };
        let elapsed = started.elapsed();
        if lease.as_ref().is_some_and(|(l, _)| !l.is_valid()) {
            tracing::warn!("The leader lease was lost while the state was restored.");
            return Ok(Ended::SteppedDown);
        }
        // A ledger written before the inquiry projection existed gets it now, once.
        if store.keeps_projection()
            && store
                .projection_missing()
                .await
                .context("reading the inquiry projection")?
        {
            let started = std::time::Instant::now();
            let rebuilt = crate::store::projection::rebuild(&store, rules, &store)
                .await
                .context("building the inquiry projection from the ledger")?;
            tracing::info!(
                inquiries = rebuilt.inquiries,
                events = rebuilt.events,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "Inquiry projection built from the ledger (a ledger written by an older version)."
            );
        }
        tracker.set_contacts(settings.contacts.clone());
        let accepted_break = match verification {
            Verification::Intact { events, .. } => {
                tracing::info!(
                    events,
                    checkpoints = seals.checkpoints,
                    signatures_checked = seals.signatures_checked,
                    inquiries = tracker.len(),
                    threads = tracker.threads_held(),
                    pending_deadlines = deadlines.len(),
                    elapsed_ms = elapsed.as_millis() as u64,
                    "{}",
                    match (handed_over, snapshot_seq) {
                        (true, _) => format!(
                            "State taken over from this replica's standby role, which followed and verified the ledger up to seq {}.",
                            snapshot_seq.unwrap_or(0) + replayed as i64
                        ),
                        (false, Some(seq)) => format!(
                            "State restored from the snapshot at seq {seq}; the {replayed} rows after it verified and replayed."
                        ),
                        (false, None) => "Ledger verified (every row) and replayed.".to_string(),
                    }
                );
                None
            }
            Verification::Broken { seq, problem, .. } => {
                if !settings.store.accept_broken_ledger {
                    anyhow::bail!(
                        "the ledger is broken at seq {seq}: {problem}; refusing to run on it (`slawatch audit verify` shows the break; `slawatch run --accept-broken-ledger` runs anyway and records that in the ledger)"
                    );
                }
                tracing::error!(seq, %problem, "The ledger is broken; running anyway as --accept-broken-ledger says (recorded in the ledger).");
                Some(slawatch_core::tracker::event::AcceptedBreak { seq, problem })
            }
        };
        let (head_seq, head_hash) = store
            .head()
            .await?
            .unwrap_or_else(|| (0, crate::store::GENESIS.to_string()));
        // Before the engine starts, so this is the only writer: the monitor's coverage begins here.
        let leader_changed = lease.as_ref().map(|(lease, taken)| Event::LeaderChanged {
            at: clock.now(),
            epoch: taken.epoch,
            replica: lease.replica().to_string(),
            previous: taken.previous.clone(),
        });
        let start = store
            .commit_sealed(
                clock.now(),
                &leader_changed
                    .into_iter()
                    .chain([
                        Event::LedgerVerified {
                            at: clock.now(),
                            scope: match snapshot_seq {
                                Some(_) => {
                                    slawatch_core::tracker::event::VerifyScope::SinceSnapshot
                                }
                                None => slawatch_core::tracker::event::VerifyScope::Full,
                            },
                            from_seq: snapshot_seq.map_or(1, |seq| seq + 1),
                            head_seq,
                            head_hash,
                            elapsed_ms: elapsed.as_millis() as u64,
                            checkpoints: seals.checkpoints,
                            accepted_break,
                        },
                        Event::MonitorStarted {
                            at: clock.now(),
                            version: env!("CARGO_PKG_VERSION").to_string(),
                        },
                    ])
                    .collect::<Vec<_>>(),
                &[],
                Sealing {
                    signer: signer.as_deref(),
                    durable: false,
                },
            )
            .await;
        match start {
            Ok(_) => {}
            // Already logged with what to do; the engine's writes page about it.
            Err(crate::store::StoreError::WentBackwards { .. }) if went_backwards => {}
            // Lost the lease already (a long restore, a pause): the standby again.
            Err(e @ crate::store::StoreError::Fenced { .. }) => {
                tracing::warn!(error = %e, "The lease was lost before the start was recorded.");
                if let Some((lease, _)) = &lease {
                    lease.step_down();
                }
                return Ok(Ended::SteppedDown);
            }
            Err(e) => return Err(e).context("recording the start in the ledger"),
        }

        let source_names = self.source_names();
        let metrics = Arc::new(Metrics::new(env!("CARGO_PKG_VERSION"), &source_names));
        register_lease_metrics(&metrics, lease.as_ref().map(|(l, _)| l))?;
        let head_gauge = crate::store::head::gauge();
        metrics
            .register(Box::new(head_gauge.clone()))
            .context("registering the ledger head gauge")?;
        crate::store::head::publish(&store, Some(&head_gauge), "Ledger head at start-up.").await;
        let shared = Arc::new(Shared::new(
            tracker,
            metrics.clone(),
            store.clone(),
            source_names.iter().cloned().collect(),
        ));
        shared.set_role(match &lease {
            Some((_, taken)) => Role::Active { epoch: taken.epoch },
            None => Role::Single,
        });

        let (input_tx, input_rx) = mpsc::channel(INPUT_QUEUE);
        let (command_tx, command_rx) = mpsc::channel(COMMAND_QUEUE);
        let (signals_tx, signals_rx) = mpsc::unbounded_channel::<crate::monitor::Signal>();
        let tasks = TaskTracker::new();
        let notifier: Arc<dyn Notifier> = crate::notify::dispatch::build(
            &settings.notify,
            settings.desk.time_zone,
            metrics.clone(),
            Some(signals_tx.clone()),
            lease.as_ref().map(|(l, _)| l.clone()),
        )
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
            signals: signals_rx,
            shutdown: shutdown.clone(),
            sync_grace: crate::engine::SYNC_GRACE,
            ledger: LedgerOptions {
                signer: signer.clone(),
                head_seq: Some(head_gauge.clone()),
                working_set: Some(crate::working_set::WorkingSetOptions {
                    window,
                    snapshot_every,
                    archived,
                    evict_every: crate::working_set::EVICT_EVERY,
                }),
            },
            actions: crate::engine::ActionOptions {
                links: crate::http::links::LinkKey::from_settings(&settings.http).map(Arc::new),
                take_for: settings.notify.take_for,
            },
        };
        // Watched apart from the other tasks: if the engine ends, nothing is recorded any more, so
        // the daemon must stop (and be restarted) rather than serve frozen numbers.
        let mut engine_task = tokio::spawn(engine.run(deadlines));

        let listener = self.http.handle(settings.http.bind).await?;
        let engine_handle = EngineHandle::new(command_tx);
        let state = crate::http::AppState {
            take_for: settings.notify.take_for,
            ..crate::http::AppState::from_settings(
                shared.clone(),
                engine_handle.clone(),
                &settings.http,
            )
        };
        let limits = crate::http::Limits::from_settings(&settings.http);
        let http_shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Err(e) = crate::http::serve_within(listener, state, limits, http_shutdown).await
            {
                tracing::error!(error = %e, "HTTP server failed.");
            }
        });

        // The engine runs and HTTP listens: ready for systemd (sources sync after this).
        tasks.spawn(crate::service::run(shared.clone(), shutdown.clone()));

        let sink = EngineSink::new(input_tx);
        let (health, transitions) = LedgerHealth::new(metrics.clone(), clock);
        let health = Arc::new(health);
        // The monitor's own blindness pages someone: a source silent past its limit (a notifier
        // giving up signals through the dispatch, the ledger through the engine).
        tasks.spawn(crate::monitor::watch_sources(
            health.clone(),
            shared.clone(),
            settings
                .sources
                .iter()
                .map(|s| (s.name.clone(), s.silent_after))
                .collect(),
            clock,
            signals_tx,
            shutdown.clone(),
        ));
        // Deadlines run on the monotonic clock; wall-clock steps are reported.
        tasks.spawn(crate::scheduler::clock::watch_wall_clock(
            clock,
            chrono::Utc::now,
            metrics.clone(),
            shutdown.clone(),
        ));
        // The dead-man's switch: what the daemon cannot report itself (its own death).
        if let Some(heartbeat) = settings.notify.heartbeat.clone() {
            tasks.spawn(crate::monitor::heartbeat(heartbeat, shutdown.clone()));
        }
        let health: Arc<dyn SourceHealth> = health;
        tasks.spawn(crate::store::head::publish_every(
            store.clone(),
            head_gauge.clone(),
            crate::store::head::PUBLISH_EVERY,
            shutdown.clone(),
        ));
        if !settings.audit.head_recipients.is_empty()
            && let Some(smtp) = &settings.notify.smtp
        {
            let mailer = crate::notify::smtp::SmtpNotifier::new(
                smtp,
                settings.desk.time_zone,
                settings.notify.digest_over,
            )
            .context("building the mailer of the ledger head")?;
            tasks.spawn(crate::store::head::mail_every(
                store.clone(),
                mailer,
                settings.audit.head_recipients.clone(),
                crate::store::head::MAIL_EVERY,
                shutdown.clone(),
            ));
        }
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
        let stepped_down = lease.as_ref().is_some_and(|(l, _)| !l.is_valid());
        if stepped_down {
            tracing::warn!("Stopping the active role: the leader lease is lost.");
        } else {
            tracing::info!("Shutting down.");
        }
        tasks.wait().await;
        if !engine_task.is_finished() {
            let _ = engine_task.await;
        }
        if stepped_down {
            return Ok(Ended::SteppedDown);
        }
        // Every task has stopped, so this is the only writer again.
        if let Err(e) = store
            .commit_sealed(
                clock.now(),
                &[Event::MonitorStopped { at: clock.now() }],
                &[],
                Sealing {
                    signer: signer.as_deref(),
                    durable: true,
                },
            )
            .await
        {
            tracing::error!(error = %e, "Could not record the stop in the ledger.");
        }
        crate::store::head::publish(&store, Some(&head_gauge), "Ledger head at shutdown.").await;
        renewal.cancel();
        if let Some(renewing) = renewing {
            let _ = renewing.await;
        }
        if let (Some((lease, _)), Store::Postgres(pg)) = (&lease, &store) {
            lease.release(pg).await;
        }
        if engine_died {
            anyhow::bail!("the engine stopped unexpectedly");
        }
        Ok(Ended::Shutdown)
    }
}

/// `slawatch_leader` and `slawatch_store_fenced_writes_total` on this role's registry: the
/// lease's own, or a constant 1 for the only daemon on a SQLite ledger.
fn register_lease_metrics(metrics: &Metrics, lease: Option<&Arc<Lease>>) -> anyhow::Result<()> {
    let (leader, fenced) = match lease {
        Some(lease) => (lease.leader.clone(), lease.fenced_writes.clone()),
        None => {
            let (leader, fenced) = crate::store::lease::metrics();
            leader.set(1);
            (leader, fenced)
        }
    };
    metrics
        .register(Box::new(leader))
        .context("registering slawatch_leader")?;
    metrics
        .register(Box::new(fenced))
        .context("registering slawatch_store_fenced_writes_total")?;
    Ok(())
}
