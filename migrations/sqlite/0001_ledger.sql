-- The ledger, source cursors and format metadata (SQLite).
--
-- The ledger is append-only and hash-chained: see the module documentation of `src/store/` for
-- the exact hash format. Every column used by the chain is TEXT holding the exact string that
-- was hashed, so an auditor can recompute a row's hash from the database alone.

CREATE TABLE ledger (
    seq         INTEGER PRIMARY KEY,  -- 1, 2, 3, ... without gaps; assigned by the writer
    recorded_at TEXT    NOT NULL,     -- RFC 3339 UTC, always %Y-%m-%dT%H:%M:%S%.6fZ
    kind        TEXT    NOT NULL,     -- the event's "type", e.g. inquiry_opened
    inquiry_id  TEXT,                 -- the inquiry the event is about, if any (not hashed: index)
    payload     TEXT    NOT NULL,     -- the event as JSON, exactly as hashed
    prev_hash   TEXT    NOT NULL,     -- hash of the row before (64 zeros for seq 1)
    hash        TEXT    NOT NULL      -- lower-case hex sha256, see the module documentation
);

CREATE INDEX ledger_inquiry ON ledger (inquiry_id, seq);

-- Guard rails against accidental edits. They do not make the file tamper-proof (whoever can
-- write the file can drop them); the hash chain is what makes tampering evident.
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only: rows cannot be updated');
END;

CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only: rows cannot be deleted');
END;

-- Durable source positions, written in the same transaction as the events they produced.
CREATE TABLE cursors (
    source     TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,  -- JSON
    updated_at TEXT NOT NULL,  -- RFC 3339 UTC, same format as ledger.recorded_at
    PRIMARY KEY (source, key)
);

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

INSERT INTO meta (key, value) VALUES
    ('ledger_format', '1'),
    ('hash', 'hex(sha256(prev_hash || seq || LF || recorded_at || LF || kind || LF || payload))'),
    ('genesis_prev_hash', '0000000000000000000000000000000000000000000000000000000000000000');
