//! Per-source health: how a source reports that it is up or down, that a sync completed, or
//! that something went wrong ([`SourceHealth`]), and the metrics behind it (`source_up`,
//! `source_last_success_timestamp_seconds`, `source_errors_total`). Defined here, beside the
//! metrics that implement it, so sources reach telemetry and never the other way.

use chrono::{DateTime, Utc};

use super::{Metrics, timestamp_seconds};

/// How a source reports its health (implemented by the metrics registry; tests may record it).
/// `kind` values are short snake_case codes such as `connect`, `tls`, `auth`, `timeout`,
/// `protocol`, `io`, or a [`slawatch_core::tracker::observation::ParseProblem`] code.
pub trait SourceHealth: Send + Sync + 'static {
    /// The source reached its server (or folder) and is working (`true`), or lost it (`false`).
    fn set_up(&self, source: &str, up: bool);
    /// A sync round completed at `at`.
    fn succeeded(&self, source: &str, at: DateTime<Utc>);
    /// Something went wrong; counted per kind.
    fn error(&self, source: &str, kind: &str);
}

impl SourceHealth for Metrics {
    fn set_up(&self, source: &str, up: bool) {
        self.source_up
            .with_label_values(&[source])
            .set(i64::from(up));
    }

    fn succeeded(&self, source: &str, at: DateTime<Utc>) {
        self.source_last_success
            .with_label_values(&[source])
            .set(timestamp_seconds(at));
    }

    fn error(&self, source: &str, kind: &str) {
        self.source_errors.with_label_values(&[source, kind]).inc();
    }
}
