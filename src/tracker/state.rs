//! Tracker state and the decide/apply pair.

/// Placeholder until the state lands.
pub struct Tracker;
pub struct TrackerRules;
pub struct Inquiry;
pub enum InquiryState {}
pub enum SlaStatus {}
