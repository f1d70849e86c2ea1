//! Alerts only from the replica that holds the leader lease: two replicas on one ledger never
//! both page.
//!
//! Every channel of a replica in a pair is wrapped in [`LeaseGated`]: just before a batch goes
//! out it checks the lease by this replica's own, conservative clock (see `store::lease`), and
//! refuses the batch once the lease has lapsed. That holds even when the ledger cannot be
//! written, when nothing else would stop a cut-off active. A refused alert is not lost: its
//! intent is in the ledger, and the replica that holds the lease now resumes it.

use std::sync::Arc;

use super::{Alert, Delivery, DeliveryError, Notifier};
use crate::store::lease::Lease;

/// A channel that delivers only while `lease` holds.
pub struct LeaseGated {
    pub inner: Arc<dyn Notifier>,
    pub lease: Arc<Lease>,
}

impl LeaseGated {
    fn refused(&self, alerts: &[Alert]) -> Vec<Result<(), DeliveryError>> {
        tracing::warn!(
            notifier = self.inner.name(),
            alerts = alerts.len(),
            "Not sent: this replica no longer holds the leader lease; the active replica sends them."
        );
        alerts
            .iter()
            .map(|_| {
                Err(DeliveryError {
                    notifier: self.inner.name().to_string(),
                    message: "not sent: this replica no longer holds the leader lease".to_string(),
                })
            })
            .collect()
    }
}

impl Notifier for LeaseGated {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn deliver<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        if !self.lease.is_valid() {
            let refused = self.refused(alerts);
            return Box::pin(async move { refused });
        }
        self.inner.deliver(alerts)
    }

    fn deliver_digest<'a>(&'a self, alerts: &'a [Alert]) -> Delivery<'a> {
        if !self.lease.is_valid() {
            let refused = self.refused(alerts);
            return Box::pin(async move { refused });
        }
        self.inner.deliver_digest(alerts)
    }

    fn records_own_metrics(&self) -> bool {
        self.inner.records_own_metrics()
    }

    fn budget(&self) -> std::time::Duration {
        self.inner.budget()
    }

    fn reaches_anyone(&self) -> bool {
        self.inner.reaches_anyone()
    }

    fn may_send(&self) -> bool {
        self.lease.is_valid()
    }

    fn still_firing(&self, alerts: &[Alert]) {
        if self.lease.is_valid() {
            self.inner.still_firing(alerts);
        }
    }
}
