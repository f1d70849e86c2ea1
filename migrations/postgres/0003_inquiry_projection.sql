-- The inquiry projection (PostgreSQL): one row per inquiry with its current outcome, derived
-- from the ledger and written in the same transaction as the events that changed it. Never
-- hashed: it can be dropped and rebuilt from the ledger (`slawatch store rebuild-projection`).
--
-- The same table and indexes as SQLite's 0003_inquiry_projection.sql (see there for why the
-- key is the seq of the inquiry's first event and why the id index is led by a bucket).
-- Columns that are compared or sorted use the "C" collation (byte order), as SQLite does, so
-- the API's order and cursors (newest first by received_at, then id) are the same on both
-- backends, whatever the database's locale. `json` is TEXT, not jsonb: jsonb would reorder the
-- keys and drop the spacing, and the API serves these bytes as the tracker wrote them (the
-- projection check compares them byte for byte with a rebuild).
CREATE TABLE inquiries (
    open_seq    BIGINT PRIMARY KEY,        -- ledger seq of its first event
    last_seq    BIGINT NOT NULL,           -- ledger seq of its last event
    id          TEXT COLLATE "C" NOT NULL,
    id_bucket   BIGINT NOT NULL,           -- open_seq >> 16: the id index's first column
    received_at TEXT COLLATE "C" NOT NULL, -- RFC 3339 UTC, always %Y-%m-%dT%H:%M:%S%.9fZ (sorts as time)
    channel     TEXT COLLATE "C" NOT NULL, -- email | phone
    language    TEXT COLLATE "C" NOT NULL, -- en | es | ar
    state       TEXT COLLATE "C" NOT NULL, -- open | responded | excluded | merged
    sla         TEXT COLLATE "C" NOT NULL, -- pending | met | missed | excluded
    json        TEXT NOT NULL              -- the inquiry as the API shows it
);

-- The API's order and cursor, and the reports' periods.
CREATE INDEX inquiries_received ON inquiries (received_at, id);

-- The API's state filter (`state=open` on a wallboard).
CREATE INDEX inquiries_state ON inquiries (state, received_at, id);

-- `GET /api/v1/inquiries/{id}` and the inquiry page for inquiries no longer in memory: one
-- seek per bucket (PostgreSQL 15 has no skip scan, so the lookup walks the buckets itself).
CREATE INDEX inquiries_id ON inquiries (id_bucket, id);
