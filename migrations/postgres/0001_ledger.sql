-- The ledger, source cursors and format metadata (PostgreSQL).
--
-- The same tables as the SQLite schema, column for column: every column used by the hash chain
-- is TEXT holding the exact string that was hashed, so a ledger copied from one backend to the
-- other keeps the same bytes and verifies with the same hashes. Text columns compared or sorted
-- by slawatch use the "C" collation (byte order), as SQLite does. No index on inquiry_id (see
-- migration 0002 of the SQLite schema: ids are hashes, an index on them slows every append).

CREATE TABLE ledger (
    seq         BIGINT PRIMARY KEY,  -- 1, 2, 3, ... without gaps; assigned by the writer
    recorded_at TEXT   NOT NULL,     -- RFC 3339 UTC, always %Y-%m-%dT%H:%M:%S%.6fZ
    kind        TEXT   NOT NULL,     -- the event's "type", e.g. inquiry_opened
    inquiry_id  TEXT COLLATE "C",    -- the inquiry the event is about, if any (not hashed)
    payload     TEXT   NOT NULL,     -- the event as JSON, exactly as hashed
    prev_hash   TEXT   NOT NULL,     -- hash of the row before (64 zeros for seq 1)
    hash        TEXT   NOT NULL      -- lower-case hex sha256, see the store's documentation
);

-- Guard rails against accidental edits (UPDATE, DELETE, TRUNCATE). They do not make the table
-- tamper-proof (its owner can drop them); the hash chain is what makes tampering evident.
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'ledger is append-only: rows cannot be updated';
    ELSIF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger is append-only: rows cannot be deleted';
    ELSE
        RAISE EXCEPTION 'ledger is append-only: it cannot be truncated';
    END IF;
END
$$;

CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- Durable source positions, written in the same transaction as the events they produced.
CREATE TABLE cursors (
    source     TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    value      TEXT NOT NULL,  -- JSON
    updated_at TEXT NOT NULL,  -- RFC 3339 UTC, same format as ledger.recorded_at
    PRIMARY KEY (source, key)
);

CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);

INSERT INTO meta (key, value) VALUES
    ('ledger_format', '1'),
    ('hash', 'hex(sha256(prev_hash || seq || LF || recorded_at || LF || kind || LF || payload))'),
    ('genesis_prev_hash', '0000000000000000000000000000000000000000000000000000000000000000');
