-- The inquiry projection: one row per inquiry with its current outcome, derived from the
-- ledger and written in the same transaction as the events that changed it. Never hashed: it
-- can be dropped and rebuilt from the ledger (`slawatch store rebuild-projection`).
--
-- The key is the seq of the inquiry's first event, so new inquiries go in at the end of the
-- table (an id key would be a hash: every new row at a random place). An inquiry's history is
-- the ledger's rows about it from `open_seq` to `last_seq`.
CREATE TABLE inquiries (
    open_seq    INTEGER PRIMARY KEY,  -- ledger seq of its first event
    last_seq    INTEGER NOT NULL,     -- ledger seq of its last event
    id          TEXT    NOT NULL,
    id_bucket   INTEGER NOT NULL,     -- open_seq / 65536: the id index's first column
    received_at TEXT    NOT NULL,     -- RFC 3339 UTC, always %Y-%m-%dT%H:%M:%S%.9fZ (sorts as time)
    channel     TEXT    NOT NULL,     -- email | phone
    language    TEXT    NOT NULL,     -- en | es | ar
    state       TEXT    NOT NULL,     -- open | responded | excluded | merged
    sla         TEXT    NOT NULL,     -- pending | met | missed | excluded
    json        TEXT    NOT NULL      -- the inquiry as the API shows it
);

-- The API's order and cursor (newest first by received_at, then id) and the reports' periods.
-- Received times mostly grow, so this index too takes new rows near its end.
CREATE INDEX inquiries_received ON inquiries (received_at, id);

-- The API's state filter (`state=open` on a wallboard): the few open inquiries are found without
-- walking the whole history. An inquiry's state changes once or twice; its entry moves to the
-- end of its state's range.
CREATE INDEX inquiries_state ON inquiries (state, received_at, id);

-- `GET /api/v1/inquiries/{id}` and the inquiry page for inquiries no longer in memory. Ids are
-- hashes: indexed alone, every new id would go in at a random place and each commit would
-- rewrite index pages all over the file (what made the ledger drop its index on inquiry_id).
-- Led by the bucket of the row's seq, new ids go into the last bucket only; a lookup seeks
-- the id in each bucket (a few hundred seeks for five million inquiries).
CREATE INDEX inquiries_id ON inquiries (id_bucket, id);
