-- The desk's own record among the ledger's rows: policies, the monitor's starts, heartbeats and
-- stops, leader changes, sources down and up, its own alerts, contradictions, verifications.
-- A report over one period needs all of them (a policy activated years before, the last start
-- before the period) but only the inquiry rows of its period: with this partial index it finds
-- the record without walking the ledger, and reads its inquiries' rows by seq range. The index
-- holds a few rows an hour (a heartbeat every five minutes), not one per inquiry event, so
-- appends barely touch it. Nothing hashed changes.
CREATE INDEX ledger_record ON ledger (seq) WHERE kind IN (
    'policy_activated', 'monitor_started', 'leader_changed', 'monitor_heartbeat',
    'monitor_stopped', 'source_down', 'source_up', 'evidence_contradicted',
    'monitor_alert_raised', 'monitor_alert_resolved', 'monitor_alert_escalated',
    'monitor_alert_delivered', 'monitor_alert_failed', 'ledger_verified'
);
