//! Publishing the ledger's head, so it leaves the host: a chain only proves itself consistent,
//! and whoever can write the file could cut its tail or rewrite it from some row on. A head
//! recorded elsewhere — a log shipped off the host, a Prometheus series, a report, a mail an
//! auditor keeps — shows both later: `slawatch audit verify --expect SEQ:HASH` fails when that
//! hash is no longer in the chain at its seq.
//!
//! Published: a log line `Ledger head.` with `seq`, `hash`, `signed` and `pin` (`SEQ:HASH`, the
//! form `--expect` takes) at start-up, every [`PUBLISH_EVERY`] and at shutdown; the gauge
//! `slawatch_ledger_head_seq`, set after every commit; the head in every report; and, with
//! `audit.head_recipients`, a daily mail.

use std::time::Duration;

use prometheus::IntGauge;
use tokio_util::sync::CancellationToken;

use super::Store;

/// How often the head is logged while the daemon runs.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(3600);

/// A published head: the last row's seq and hash, and whether that row is a signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
    pub signed: bool,
}

impl Head {
    /// `SEQ:HASH`, as `audit verify --expect` takes it.
    pub fn pin(&self) -> String {
        format!("{}:{}", self.seq, self.hash)
    }
}

/// `slawatch_ledger_head_seq`.
pub fn gauge() -> IntGauge {
    IntGauge::new(
        "slawatch_ledger_head_seq",
        "Seq of the ledger's last row (its hash is logged as `Ledger head.`).",
    )
    .expect("a valid metric definition")
}

/// The ledger's head now; `None` for an empty ledger.
pub async fn current(store: &Store) -> Result<Option<Head>, super::StoreError> {
    let Some((seq, hash)) = store.head().await? else {
        return Ok(None);
    };
    let signed =
        matches!(store.row_label(seq).await?, Some((kind, _)) if kind == "ledger_checkpoint");
    Ok(Some(Head { seq, hash, signed }))
}

/// Logs the head (and sets the gauge); returns it.
pub async fn publish(store: &Store, gauge: Option<&IntGauge>, message: &str) -> Option<Head> {
    match current(store).await {
        Ok(Some(head)) => {
            if let Some(gauge) = gauge {
                gauge.set(head.seq);
            }
            tracing::info!(
                seq = head.seq,
                hash = %head.hash,
                signed = head.signed,
                pin = %head.pin(),
                "{message}"
            );
            Some(head)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "Could not read the ledger head to publish it.");
            None
        }
    }
}

/// Logs the head every `every` until shutdown.
pub async fn publish_every(
    store: Store,
    gauge: IntGauge,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // The first tick is immediate; the start-up head is already logged.
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        publish(&store, Some(&gauge), "Ledger head.").await;
    }
}
