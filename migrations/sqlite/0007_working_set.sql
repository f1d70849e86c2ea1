-- The working set's archive and snapshots (derived data, never hashed; rebuilt by a replay).
--
-- A thread (a mail conversation, a caller's number) with nothing open leaves the daemon's memory
-- after `store.working_window`; `archived_threads` says which ledger rows rebuild it, and
-- `archive_keys` which thread a Message-ID, digest, call id or inquiry id leads to. Keys are
-- 64-bit SipHash values of the text (signed in SQLite), so lookups and inserts stay small.
CREATE TABLE archived_threads (
    thread_key INTEGER PRIMARY KEY,  -- the key of the thread id
    thread     TEXT    NOT NULL,
    seqs       TEXT    NOT NULL      -- the thread's ledger seqs, ascending, comma-separated
);

CREATE TABLE archive_keys (
    key        INTEGER PRIMARY KEY,
    thread_key INTEGER NOT NULL
) WITHOUT ROWID;

-- The working set as it stood at ledger row `seq` (whose hash was `head_hash`): start-up loads
-- the latest one that matches the chain and replays only the rows after it.
CREATE TABLE snapshots (
    seq       INTEGER PRIMARY KEY,
    head_hash TEXT    NOT NULL,
    taken_at  TEXT    NOT NULL,
    body      TEXT    NOT NULL       -- the snapshot as JSON
);
