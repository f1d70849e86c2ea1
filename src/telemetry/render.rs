//! Rendering `/metrics`: the gauges that describe *now* (open inquiries by state, oldest age,
//! next deadline) are computed from the tracker at each scrape, then every metric is encoded.

use chrono::{DateTime, Utc};
use prometheus::TextEncoder;
use slawatch_core::domain::{Channel, Language};
use slawatch_core::tracker::{OpenStatus, Tracker};

use super::{
    Metrics, TelemetryError, channel_index, language_index, seconds, status_index,
    timestamp_seconds,
};

impl Metrics {
    /// Sets the gauges that describe the open inquiries at `now`, then encodes every metric in
    /// the text format ([`Metrics::CONTENT_TYPE`]). One pass over the open inquiries.
    pub fn render(&self, tracker: &Tracker, now: DateTime<Utc>) -> Result<String, TelemetryError> {
        let _serial = self
            .render_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);

        let mut open = [[[0i64; OpenStatus::ALL.len()]; Language::ALL.len()]; Channel::ALL.len()];
        let mut oldest: [Option<DateTime<Utc>>; Channel::ALL.len()] = [None; Channel::ALL.len()];
        let mut next: [Option<DateTime<Utc>>; Channel::ALL.len()] = [None; Channel::ALL.len()];
        for inquiry in tracker.open_summaries() {
            let status = inquiry.status_at(now);
            let c = channel_index(inquiry.channel);
            open[c][language_index(inquiry.language)][status_index(status)] += 1;
            if oldest[c].is_none_or(|o| inquiry.received_at < o) {
                oldest[c] = Some(inquiry.received_at);
            }
            if !inquiry.breached && next[c].is_none_or(|n| inquiry.deadline_at < n) {
                next[c] = Some(inquiry.deadline_at);
            }
        }
        for (ci, channel) in Channel::ALL.into_iter().enumerate() {
            let c = channel.as_str();
            for (li, language) in Language::ALL.into_iter().enumerate() {
                for (si, state) in OpenStatus::ALL.into_iter().enumerate() {
                    self.open
                        .with_label_values(&[c, language.as_str(), state.as_str()])
                        .set(open[ci][li][si]);
                }
            }
            let age = oldest[ci].map_or(0.0, |o| seconds(now - o).max(0.0));
            self.oldest_open_age.with_label_values(&[c]).set(age);
            let next_at = next[ci].map_or(0.0, timestamp_seconds);
            self.next_deadline.with_label_values(&[c]).set(next_at);
        }

        for problem in slawatch_core::tracker::event::MonitorProblem::ALL {
            let active = tracker
                .monitor_alerts()
                .filter(|m| m.problem == problem)
                .count();
            self.monitor_alerts
                .with_label_values(&[problem.as_str()])
                .set(active as i64);
        }

        Ok(TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }
}
