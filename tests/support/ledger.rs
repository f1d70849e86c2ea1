//! Ledger helpers for benchmarks that write a ledger flat out.

use slawatch::store::Store;

/// Copies the write-ahead log into the database file and empties it. Written flat out, the
/// daemon's background passive checkpoint falls behind and the log grows with the ledger
/// (gigabytes for millions of events): a bench calls this between its timed parts. Nothing to
/// do on PostgreSQL, whose server checkpoints by itself.
pub async fn checkpoint(store: &Store) {
    let Store::Sqlite(pool) = store else {
        return;
    };
    if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(pool)
        .await
    {
        eprintln!("checkpoint failed (the log keeps growing): {e}");
    }
}
