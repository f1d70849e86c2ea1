-- The working set's archive and snapshots (derived data, never hashed; rebuilt by a replay).
-- The same tables as SQLite's 0007_working_set.sql: see there for what each holds.
CREATE TABLE archived_threads (
    thread_key BIGINT PRIMARY KEY,
    thread     TEXT   NOT NULL,
    seqs       TEXT   NOT NULL
);

CREATE TABLE archive_keys (
    key        BIGINT PRIMARY KEY,
    thread_key BIGINT NOT NULL
);

CREATE TABLE snapshots (
    seq       BIGINT PRIMARY KEY,
    head_hash TEXT   NOT NULL,
    taken_at  TEXT   NOT NULL,
    body      TEXT   NOT NULL
);
