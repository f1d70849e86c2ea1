//! Two replicas, one voice: the standby's side of an active/standby pair on a PostgreSQL
//! ledger, and the active's lease keeping.
//!
//! Two daemons with the same configuration and a PostgreSQL store form a pair by themselves:
//! whichever takes the leader lease first (`store::lease`) is the active one and runs as a
//! single daemon does (sources, scheduler, notifiers, writes); the other is the standby:
//!
//! - it restores the state as a start-up does ([`crate::working_set::start_following`]), then
//!   follows the ledger, applying the active's rows as they are committed (checked link by
//!   link from where it stands), about every [`FOLLOW_EVERY`];
//! - it serves reads (API, wallboard, `/metrics` with `slawatch_leader 0`) and refuses writes
//!   (acks, takes, pushed calls answer 503: they go to the active);
//! - it loads the active's newer snapshots now and then, so its memory holds the working set
//!   and not everything it ever followed;
//! - it tries to take the lease at every step, and takes it once the active let it go (a clean
//!   stop) or let it expire (death, pause, cut off). It then starts as the active one does after
//!   a restart: sources from the committed cursors, deadlines and re-notifications from the
//!   ledger, deliveries from their intents.
//!
//! The active renews the lease ([`keep_lease`]); when a renewal finds another holder, or the
//! lease lapses by its own clock, it steps down: it stops as at a shutdown (its writes are
//! refused by the fence, its alerts by the lease gate) and becomes the standby.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::engine::Shared;
use crate::store::lease::{Lease, Renewal, Takeover};
use crate::store::{PublicKey, Store, StoreError, Verification};

/// How often a standby reads the rows the active committed, and tries the lease.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// What this replica is, as `/readyz` and the wallboard say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Role {
    /// The only daemon on its ledger (SQLite: one writer by its file lock).
    #[default]
    Single,
    /// Holds the leader lease at `epoch`: writes the ledger and alerts.
    Active { epoch: i64 },
    /// Follows the ledger; `seq` is the last row applied, `at` when it last caught up.
    Standby {
        seq: i64,
        at: Option<DateTime<Utc>>,
        problem: Option<String>,
    },
}

impl Role {
    /// One line: `role: active` / `role: standby`, and how far it stands.
    pub fn describe(&self, now: DateTime<Utc>) -> String {
        match self {
            Role::Single => "role: active (the only daemon on this ledger)".to_string(),
            Role::Active { epoch } => format!("role: active (leader lease epoch {epoch})"),
            Role::Standby { seq, at, problem } => {
                let mut line = format!("role: standby (follows the ledger at seq {seq}");
                if let Some(at) = at {
                    let lag = (now - *at).num_milliseconds().max(0) as f64 / 1000.0;
                    line.push_str(&format!(", caught up {lag:.1} s ago"));
                }
                line.push_str("; writes go to the active replica)");
                if let Some(problem) = problem {
                    line.push_str(&format!("\nstandby cannot follow the ledger: {problem}"));
                }
                line
            }
        }
    }

    pub fn is_standby(&self) -> bool {
        matches!(self, Role::Standby { .. })
    }
}

/// Renews the lease every quarter of its TTL until `until`; when it is lost (another holder, or
/// lapsed by this replica's clock while renewals failed), steps down and cancels `role`.
pub async fn keep_lease(
    lease: Arc<Lease>,
    store: Store,
    until: CancellationToken,
    role: CancellationToken,
) {
    let Store::Postgres(pg) = &store else {
        return;
    };
    let every = lease.ttl() / 4;
    loop {
        tokio::select! {
            _ = until.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match lease.renew(pg).await {
            Renewal::Renewed => {}
            Renewal::Lost => {
                tracing::error!(
                    replica = lease.replica(),
                    "The leader lease is lost (another replica holds it, or it lapsed); stepping down to standby: nothing more is written or sent from here."
                );
                role.cancel();
                return;
            }
            Renewal::Failed(e) => {
                if lease.is_valid() {
                    tracing::warn!(error = %e, "Could not renew the leader lease; trying again.");
                } else {
                    lease.step_down();
                    tracing::error!(error = %e, "The leader lease lapsed while it could not be renewed; stepping down to standby: nothing more is written or sent from here.");
                    role.cancel();
                    return;
                }
            }
        }
    }
}

/// What a standby's `/metrics` says: that it is the standby (`slawatch_leader 0`), how far it
/// follows, and the process itself; nothing about the desk, which the active reports (a sum
/// over both replicas then counts each inquiry once).
pub struct StandbyMetrics {
    pub registry: prometheus::Registry,
    seq: prometheus::IntGauge,
    caught_up: prometheus::Gauge,
}

impl StandbyMetrics {
    pub fn new(lease: &Lease) -> Result<StandbyMetrics, prometheus::Error> {
        let registry = prometheus::Registry::new();
        let seq = prometheus::IntGauge::new(
            "slawatch_standby_ledger_seq",
            "The last ledger row the standby applied.",
        )?;
        let caught_up = prometheus::Gauge::new(
            "slawatch_standby_caught_up_timestamp_seconds",
            "When the standby last read the ledger up to its head (Unix time).",
        )?;
        let build_info = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "slawatch_build_info",
                "Always 1; the version is in the label.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(lease.leader.clone()))?;
        registry.register(Box::new(lease.fenced_writes.clone()))?;
        registry.register(Box::new(seq.clone()))?;
        registry.register(Box::new(caught_up.clone()))?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(StandbyMetrics {
            registry,
            seq,
            caught_up,
        })
    }

    pub fn caught_up(&self, at: &Position) {
        self.seq.set(at.seq);
        self.caught_up
            .set(Utc::now().timestamp_millis() as f64 / 1000.0);
    }
}

/// Where the standby stands in the ledger: the last row applied and its hash.
#[derive(Debug, Clone)]
pub struct Position {
    pub seq: i64,
    pub hash: String,
}

/// Applies the rows committed after `at` to the shared state, checking each link from `at`'s
/// hash; returns how many. Archived threads the rows refer to are read first, so the state's
/// lock is held only while applying.
pub async fn catch_up(
    store: &Store,
    shared: &Shared,
    key: Option<PublicKey>,
    at: &mut Position,
    archived: bool,
) -> Result<u64, FollowError> {
    let mut pages = store.checked_pages(key, Some((at.seq, at.hash.clone())));
    let mut applied = 0u64;
    let mut last = at.seq;
    while let Some(page) = pages.next().await? {
        let events = page.events().collect::<Result<Vec<_>, _>>()?;
        let back = if archived {
            let keys: Vec<u64> = {
                let tracker = shared.tracker.read().unwrap_or_else(|e| e.into_inner());
                events
                    .iter()
                    .flat_map(|(_, e)| tracker.wanted_for_event(e))
                    .collect()
            };
            crate::working_set::BroughtBack::fetch(store, keys).await?
        } else {
            crate::working_set::BroughtBack::default()
        };
        {
            let mut tracker = shared.tracker.write().unwrap_or_else(|e| e.into_inner());
            crate::working_set::replay(&mut tracker, &events, &back);
        }
        applied += events.len() as u64;
        if let Some((seq, _)) = events.last() {
            last = *seq;
        }
    }
    match pages.finish().0 {
        Verification::Intact { head_hash, .. } => {
            at.seq = last;
            at.hash = head_hash;
            Ok(applied)
        }
        Verification::Broken { seq, problem, .. } => Err(FollowError::Broken { seq, problem }),
    }
}

/// Why the standby could not follow.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the ledger is broken at seq {seq}: {problem}")]
    Broken { seq: i64, problem: String },
}

/// Tries the lease once; errors are logged and count as "not taken" (the standby tries again).
pub async fn try_take(lease: &Lease, store: &Store) -> Option<Takeover> {
    let Store::Postgres(pg) = store else {
        return None;
    };
    match lease.try_acquire(pg).await {
        Ok(taken) => taken,
        Err(e) => {
            tracing::warn!(error = %e, "Could not try the leader lease; trying again.");
            None
        }
    }
}
