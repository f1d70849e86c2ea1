-- The desk's own record among the ledger's rows: policies, the monitor's starts and stops, leader
-- changes, sources down and up, its own alerts, contradictions. A report over one period needs
-- all of them (a policy activated years before, the last start before the period) but only the
-- rows recorded around its period otherwise: with this partial index it finds the record
-- without walking the ledger. The index holds a few rows a day, not one per inquiry event, so
-- appends barely touch it; heartbeats (one every five minutes) are left out, as a report reads
-- those of its period with the period's rows. Nothing hashed changes.
CREATE INDEX ledger_record ON ledger (seq) WHERE kind IN (
    'policy_activated', 'monitor_started', 'leader_changed', 'monitor_stopped',
    'source_down', 'source_up', 'evidence_contradicted', 'monitor_alert_raised',
    'monitor_alert_resolved', 'monitor_alert_escalated', 'monitor_alert_delivered',
    'monitor_alert_failed'
);

-- A report's period names its inquiries by received time, with the seqs of each one's first and
-- last event (where its rows are). With the seqs carried by the index, that read is an
-- index-only scan: a year of a busy desk is a million index entries, not a million row
-- lookups. The API's order and cursor use the same key as before.
DROP INDEX inquiries_received;
CREATE INDEX inquiries_received ON inquiries (received_at, id) INCLUDE (open_seq, last_seq);
