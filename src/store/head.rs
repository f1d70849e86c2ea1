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

/// How often the head is mailed to `audit.head_recipients` (the first mail goes at start-up).
pub const MAIL_EVERY: Duration = Duration::from_secs(24 * 3600);

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

/// The mail auditors keep: subject and body naming the head and how to check it later.
pub fn mail_text(head: &Head, host: &str) -> (String, String) {
    let subject = format!("slawatch ledger head on {host}: seq {}", head.seq);
    let body = format!(
        "The ledger of slawatch on {host} had this head at {now}:\n\n         seq:    {seq}\n         hash:   {hash}\n         signed: {signed}\n\n         Keep this mail. Later, check that the ledger still holds this head (nothing was\n         removed or rewritten since) with:\n\n         slawatch audit verify --public-key ledger-signing.pub --expect {pin}\n",
        now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        seq = head.seq,
        hash = head.hash,
        signed = if head.signed {
            "yes (the last row is a signed checkpoint)"
        } else {
            "no (no signing key is configured)"
        },
        pin = head.pin(),
    );
    (subject, body)
}

/// Mails the head to `recipients` at start-up and every `every` until shutdown; a failed
/// mail is logged and tried again at the next turn.
pub async fn mail_every(
    store: Store,
    smtp: crate::notify::smtp::SmtpNotifier,
    recipients: Vec<String>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_string());
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let head = match current(&store).await {
            Ok(Some(head)) => head,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "Could not read the ledger head to mail it.");
                continue;
            }
        };
        let (subject, body) = mail_text(&head, &host);
        let id = format!(
            "ledger-head-{}-{}",
            head.seq,
            chrono::Utc::now().timestamp()
        );
        match smtp.send_text(&recipients, &subject, &body, &id).await {
            Ok(()) => tracing::info!(
                seq = head.seq,
                recipients = recipients.len(),
                "Ledger head mailed."
            ),
            Err(e) => {
                tracing::warn!(error = %e, "Could not mail the ledger head; trying again at the next turn.")
            }
        }
    }
}
