//! The leader lease: two replicas on one PostgreSQL ledger, one of them writing and alerting.
//!
//! The lease is one row (`leader_lease`: holder, epoch, expiry; migration `0004`). The active
//! replica took it, adding one to the epoch, and renews it every quarter of `store.lease_ttl`;
//! a standby takes it once it has expired.
//!
//! **Fencing.** An advisory lock would not stop a paused or cut-off old active from committing
//! through a connection it already has. So every write transaction of a replica that holds the
//! lease ends by reading the lease row `FOR SHARE`, checking that it still names this replica
//! at its epoch and has not expired (by the server's clock), and only then commits
//! ([`Lease::fence`]). A takeover updates that row, so it waits for such a commit to end, and a
//! commit that comes after the takeover finds another holder and rolls back: no write of an old
//! epoch ever follows the new leader's first commit. A replica's write transactions ask the
//! server to end them once idle for 3 s, so a replica paused mid-commit cannot hold the row (or
//! the ledger's lock) past its lease.
//!
//! **Alerts.** The replica also keeps its own, conservative idea of how long the lease lasts: the
//! instant it sent the last successful renewal, plus the TTL, less an eighth of it for clocks
//! that drift ([`Lease::is_valid`]). The server extends the lease from a later instant, so the
//! local lease always ends first. Notifications go out only while it holds
//! (`notify::LeaseGated`), so two replicas never both page, even while the ledger cannot be
//! written. When it lapses, or a renewal finds another holder, the replica steps down to
//! standby.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, IntGauge};
use sqlx::PgConnection;

use super::StoreError;
use super::postgres::Pg;

/// The lease this replica holds: at which epoch, and until when by its own clock.
#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    valid_until: Instant,
}

/// What taking the lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    pub epoch: i64,
    /// The replica that held it before (none for the pair's first start).
    pub previous: Option<String>,
}

/// The outcome of a renewal.
#[derive(Debug)]
pub enum Renewal {
    Renewed,
    /// Another replica holds the lease now (or it lapsed here first): step down.
    Lost,
    /// The renewal did not reach the server or timed out; the lease holds until it lapses.
    Failed(StoreError),
}

/// This replica's side of the lease. Shared by the store (fencing), the notifiers (alerts only
/// while it holds) and the daemon (renewals, roles).
#[derive(Debug)]
pub struct Lease {
    replica: String,
    ttl: Duration,
    held: Mutex<Option<Held>>,
    /// `slawatch_store_fenced_writes_total`.
    pub fenced_writes: IntCounter,
    /// `slawatch_leader`: 1 while this replica is the active one.
    pub leader: IntGauge,
}

/// `slawatch_leader` and `slawatch_store_fenced_writes_total`, at 0: a lease's own, or (the
/// leader at 1) those of the only daemon on a SQLite ledger.
pub fn metrics() -> (IntGauge, IntCounter) {
    (
        IntGauge::new(
            "slawatch_leader",
            "1 while this replica is the active one (writes the ledger and alerts), 0 on a standby.",
        )
        .expect("valid metric"),
        IntCounter::new(
            "slawatch_store_fenced_writes_total",
            "Writes the store refused because this replica no longer held the leader lease.",
        )
        .expect("valid metric"),
    )
}

/// The replica holding the lease of the ledger at `pg` now (unexpired), with its epoch: what a
/// command that writes beside the daemon (`store rebuild-projection`) checks first.
pub async fn holder(pg: &Pg) -> Result<Option<(String, i64)>, StoreError> {
    sqlx::query_as(
        "SELECT holder, epoch FROM leader_lease WHERE id = 1 AND expires_at > clock_timestamp()",
    )
    .fetch_optional(&pg.pool)
    .await
    .map_err(StoreError::db("lease: read"))
}

impl Lease {
    /// A lease for `replica` (a name unique to this process: host, pid and start instant).
    pub fn new(replica: String, ttl: Duration) -> Lease {
        let (leader, fenced_writes) = metrics();
        Lease {
            replica,
            ttl,
            held: Mutex::new(None),
            fenced_writes,
            leader,
        }
    }

    /// The name of this process as a replica: host, pid and a start instant.
    pub fn replica_name() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown-host".to_string());
        format!(
            "{host}:{}:{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        )
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn held(&self) -> Option<Held> {
        *self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_held(&self, held: Option<Held>) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = held;
        self.leader.set(i64::from(held.is_some()));
    }

    /// The epoch held, if any.
    pub fn epoch(&self) -> Option<i64> {
        self.held().map(|h| h.epoch)
    }

    /// Whether the lease holds by this replica's own (conservative) clock.
    pub fn is_valid(&self) -> bool {
        self.held().is_some_and(|h| Instant::now() < h.valid_until)
    }

    /// Gives the lease up locally (it lapsed, or another replica took it).
    pub fn step_down(&self) {
        self.set_held(None);
    }

    fn valid_from(&self, sent: Instant) -> Instant {
        sent + self.ttl - self.ttl / 8
    }

    /// Takes the lease if it is free (expired, or never held): `None` while another replica
    /// holds it. Waits at most 2 s for a commit that holds the row.
    pub async fn try_acquire(&self, pg: &Pg) -> Result<Option<Takeover>, StoreError> {
        let sent = Instant::now();
        let attempt = async {
            // A plain read first: while the lease is held (nearly always), a standby's tries
            // take no lock that the active's commits would queue behind.
            let free: bool = sqlx::query_scalar(
                "SELECT expires_at <= clock_timestamp() FROM leader_lease WHERE id = 1",
            )
            .fetch_one(&pg.pool)
            .await
            .map_err(StoreError::db("lease: read"))?;
            if !free {
                return Ok(None);
            }
            let mut tx = pg
                .pool
                .begin()
                .await
                .map_err(StoreError::db("lease: begin"))?;
            sqlx::query("SET LOCAL lock_timeout = '2s'")
                .execute(&mut *tx)
                .await
                .map_err(StoreError::db("lease: lock_timeout"))?;
            let (holder, free): (String, bool) = sqlx::query_as(
                "SELECT holder, expires_at <= clock_timestamp() FROM leader_lease \
                 WHERE id = 1 FOR UPDATE",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db("lease: read"))?;
            if !free {
                return Ok(None);
            }
            let epoch: i64 = sqlx::query_scalar(
                "UPDATE leader_lease SET holder = $1, epoch = epoch + 1, \
                 expires_at = clock_timestamp() + make_interval(secs => $2), \
                 acquired_at = clock_timestamp() WHERE id = 1 RETURNING epoch",
            )
            .bind(&self.replica)
            .bind(self.ttl.as_secs_f64())
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::db("lease: take"))?;
            tx.commit().await.map_err(StoreError::db("lease: commit"))?;
            Ok(Some(Takeover {
                epoch,
                previous: (!holder.is_empty()).then_some(holder),
            }))
        };
        let taken = tokio::time::timeout(self.ttl / 2, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Timeout {
                    op: "lease: take",
                    after: self.ttl / 2,
                })
            })?;
        if let Some(t) = &taken {
            self.set_held(Some(Held {
                epoch: t.epoch,
                valid_until: self.valid_from(sent),
            }));
        }
        Ok(taken)
    }

    /// Extends the lease held: by the server's clock from now, by this replica's from the
    /// instant the request was sent.
    pub async fn renew(&self, pg: &Pg) -> Renewal {
        let Some(held) = self.held() else {
            return Renewal::Lost;
        };
        if Instant::now() >= held.valid_until {
            self.step_down();
            return Renewal::Lost;
        }
        let sent = Instant::now();
        let update = sqlx::query(
            "UPDATE leader_lease SET expires_at = clock_timestamp() + make_interval(secs => $3) \
             WHERE id = 1 AND holder = $1 AND epoch = $2",
        )
        .bind(&self.replica)
        .bind(held.epoch)
        .bind(self.ttl.as_secs_f64())
        .execute(&pg.pool);
        match tokio::time::timeout(self.ttl / 4, update).await {
            Ok(Ok(done)) if done.rows_affected() == 1 => {
                self.set_held(Some(Held {
                    epoch: held.epoch,
                    valid_until: self.valid_from(sent),
                }));
                Renewal::Renewed
            }
            Ok(Ok(_)) => {
                self.step_down();
                Renewal::Lost
            }
            Ok(Err(e)) => Renewal::Failed(StoreError::db("lease: renew")(e)),
            Err(_) => Renewal::Failed(StoreError::Timeout {
                op: "lease: renew",
                after: self.ttl / 4,
            }),
        }
    }

    /// Lets the lease go at a clean stop, so the standby takes over at once.
    pub async fn release(&self, pg: &Pg) {
        let Some(held) = self.held() else {
            return;
        };
        self.step_down();
        let release = sqlx::query(
            "UPDATE leader_lease SET expires_at = '-infinity' \
             WHERE id = 1 AND holder = $1 AND epoch = $2",
        )
        .bind(&self.replica)
        .bind(held.epoch)
        .execute(&pg.pool);
        match tokio::time::timeout(Duration::from_secs(2), release).await {
            Ok(Ok(_)) => tracing::info!(epoch = held.epoch, "Leader lease released."),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Could not release the leader lease; the standby takes over when it expires.")
            }
            Err(_) => tracing::warn!(
                "Releasing the leader lease timed out; the standby takes over when it expires."
            ),
        }
    }

    /// The last statement of every write transaction before its commit: refuses (and the
    /// transaction rolls back) unless this replica still holds the lease at its epoch, by its
    /// own clock and by the server's. The row stays share-locked until the commit ends, so a
    /// takeover cannot slip in between.
    pub async fn fence(&self, conn: &mut PgConnection) -> Result<(), StoreError> {
        let held = self.held().filter(|h| Instant::now() < h.valid_until);
        let holds = match held {
            None => false,
            // The idle limit is set in the same statement: from here to the commit the row is
            // locked, and a process paused in between must not keep it.
            Some(h) => sqlx::query_scalar::<_, i32>(
                "SELECT 1 FROM leader_lease WHERE id = 1 AND holder = $1 AND epoch = $2 \
                 AND expires_at > clock_timestamp() \
                 AND set_config('idle_in_transaction_session_timeout', '3s', true) IS NOT NULL \
                 FOR SHARE",
            )
            .bind(&self.replica)
            .bind(h.epoch)
            .fetch_optional(conn)
            .await
            .map_err(StoreError::db("lease: check"))?
            .is_some(),
        };
        if holds {
            return Ok(());
        }
        self.fenced_writes.inc();
        Err(StoreError::Fenced {
            replica: self.replica.clone(),
            epoch: held.map(|h| h.epoch),
        })
    }
}
