//! Metrics (placeholder until the telemetry module lands).
pub struct Metrics;
