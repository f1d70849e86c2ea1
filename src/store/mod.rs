//! Ledger store (placeholder until the store module lands).
#[derive(Clone)]
pub struct Store;
