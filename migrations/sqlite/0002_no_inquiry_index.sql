-- The ledger keeps no index on inquiry_id.
--
-- Inquiry ids are hashes, so the index took every new row at a random place: each append
-- rewrote index pages all over the file, two thirds of the cost of a backfill. An inquiry's
-- history is now read by seq range (the daemon knows the seqs of each inquiry's first and last
-- event) with the primary key. Nothing hashed changes.
DROP INDEX IF EXISTS ledger_inquiry;
