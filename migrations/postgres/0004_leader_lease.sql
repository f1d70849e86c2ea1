-- The leader lease of a replicated pair (see src/store/lease.rs): one row. The active replica
-- holds it until `expires_at` and renews it; a standby takes it once it has expired, adding one
-- to `epoch`. Every write transaction checks, under a share lock on this row, that its replica
-- still holds the lease at its epoch, so a paused or cut-off old active can never commit.
CREATE TABLE leader_lease (
    id          SMALLINT    PRIMARY KEY CHECK (id = 1),
    holder      TEXT        NOT NULL,
    epoch       BIGINT      NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    acquired_at TIMESTAMPTZ
);

INSERT INTO leader_lease (id, holder, epoch, expires_at) VALUES (1, '', 0, '-infinity');
