//! From events to counters: what the engine reports after each event is in the ledger and
//! applied (`received`, `excluded`, `deadlines`, the first-response and detection histograms).

use chrono::{DateTime, Utc};
use slawatch_core::tracker::event::{ExclusionReason, Outcome};
use slawatch_core::tracker::{Event, Inquiry, SlaStatus, Tracker};

use super::{Metrics, seconds};

impl Metrics {
    /// Counts one event. Called by the engine for each event after it is appended to the ledger
    /// *and applied* to `tracker`, so the inquiry it concerns is there with its channel, language
    /// and state.
    ///
    /// `slawatch_deadlines_total` counts each inquiry once: `met` at an in-time response;
    /// `missed` at `InquiryBreached`, or at a late `InquiryResponded` only if no breach was
    /// counted before (e.g. a manual ack after the deadline, before the scheduler fired). When
    /// later evidence changes a counted outcome (`InquiryRevised`, `InquiryMerged`), the change
    /// is counted in `slawatch_deadline_revisions_total{from,to}`: counters never go down, so
    /// the compliance rules add those revisions to the first count.
    pub fn record(&self, event: &Event, tracker: &Tracker) {
        self.ledger_events.inc();
        match event {
            Event::InquiryOpened(e) => {
                self.received
                    .with_label_values(&[e.channel.as_str(), e.language.as_str()])
                    .inc();
                self.observe_detection(e.received_at, e.first_seen_at);
                if e.call.as_ref().is_some_and(|c| c.withheld) {
                    self.withheld_calls
                        .with_label_values(&[e.language.as_str(), "open"])
                        .inc();
                }
            }
            Event::InquiryExcluded(e) => {
                self.excluded
                    .with_label_values(&[e.channel.as_str(), e.reason.as_str()])
                    .inc();
                if e.reason == ExclusionReason::WithheldNumber {
                    self.withheld_calls
                        .with_label_values(&[e.language.as_str(), "excluded"])
                        .inc();
                }
                self.observe_detection(e.received_at, e.first_seen_at);
            }
            Event::InquiryResponded(e) => {
                let Some(inquiry) = tracker.get(&e.inquiry_id) else {
                    return;
                };
                let labels = [inquiry.channel.as_str(), inquiry.language.as_str()];
                self.first_response
                    .with_label_values(&labels)
                    .observe(e.response_seconds.max(0) as f64);
                // After a breach the deadline was counted missed; a response in time after all
                // comes with its `InquiryRevised`, which counts the change.
                let counted_at_breach = inquiry.breached_at.is_some();
                if !counted_at_breach {
                    self.deadlines
                        .with_label_values(&[labels[0], labels[1], e.outcome.as_str()])
                        .inc();
                }
            }
            Event::InquiryRevised {
                inquiry_id,
                from,
                to,
                ..
            } if from != to => {
                if let Some(inquiry) = tracker.get(inquiry_id) {
                    self.count_revision(inquiry, from.as_str(), to.as_str());
                }
            }
            // Counted with the source's other errors, by kind (`reply_before_message`, …).
            Event::EvidenceContradicted { source, kind, .. } => {
                self.source_errors
                    .with_label_values(&[source.as_str(), kind.as_str()])
                    .inc();
            }
            Event::InquiryMerged { inquiry_id, .. } => {
                let Some(inquiry) = tracker.get(inquiry_id) else {
                    return;
                };
                let counted = match (inquiry.responded_at, inquiry.breached_at) {
                    (Some(_), _) if inquiry.sla == SlaStatus::Met => Some(Outcome::Met),
                    (Some(_), _) | (None, Some(_)) => Some(Outcome::Missed),
                    (None, None) => None,
                };
                if let Some(from) = counted {
                    self.count_revision(inquiry, from.as_str(), "merged");
                }
            }
            Event::InquiryBreached { inquiry_id, .. } => {
                if let Some(inquiry) = tracker.get(inquiry_id) {
                    self.deadlines
                        .with_label_values(&[
                            inquiry.channel.as_str(),
                            inquiry.language.as_str(),
                            Outcome::Missed.as_str(),
                        ])
                        .inc();
                }
            }
            Event::ReplyUnmatched { reason, .. } => {
                self.replies_unmatched
                    .with_label_values(&[reason.as_str()])
                    .inc();
            }
            Event::InquiryRevised { .. }
            | Event::InquiryReclassified { .. }
            | Event::ReplyAwaiting { .. }
            | Event::PolicyActivated { .. }
            | Event::FollowUpAttached { .. }
            | Event::MessageLinked { .. }
            | Event::InquiryWarned { .. }
            | Event::MonitorStarted { .. }
            | Event::LeaderChanged { .. }
            | Event::MonitorHeartbeat { .. }
            | Event::MonitorStopped { .. }
            | Event::SourceDown { .. }
            | Event::SourceUp { .. }
            | Event::InquiryRenotified { .. }
            | Event::InquiryTaken { .. }
            | Event::InquiryEscalated { .. }
            | Event::AlertDelivered { .. }
            | Event::AlertFailed { .. }
            | Event::MonitorAlertRaised { .. }
            | Event::MonitorAlertResolved { .. }
            | Event::MonitorAlertEscalated { .. }
            | Event::MonitorAlertDelivered { .. }
            | Event::MonitorAlertFailed { .. }
            | Event::LedgerCheckpoint { .. }
            | Event::LedgerVerified { .. } => {}
        }
    }

    fn count_revision(&self, inquiry: &Inquiry, from: &str, to: &str) {
        self.deadline_revisions
            .with_label_values(&[
                inquiry.channel.as_str(),
                inquiry.language.as_str(),
                from,
                to,
            ])
            .inc();
    }

    fn observe_detection(&self, received_at: DateTime<Utc>, first_seen_at: DateTime<Utc>) {
        self.detection_latency
            .observe(seconds(first_seen_at - received_at).max(0.0));
    }
}
