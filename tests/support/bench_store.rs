//! The ledger a benchmark's daemon writes to, chosen by `SLAWATCH_BENCH_STORE`: `sqlite` (the
//! default), `postgres` (a private PostgreSQL 15 started for the run, with the server's default
//! durability), or `both` (each in turn in the same run, so their figures compare).

use super::daemon::Daemon;
use super::postgres::{PASSWORD, Postgres};

pub enum BenchStore {
    Sqlite,
    Postgres(Postgres),
}

/// The stores `SLAWATCH_BENCH_STORE` asks for, in order.
pub fn from_env() -> Vec<BenchStore> {
    let wanted = std::env::var("SLAWATCH_BENCH_STORE").unwrap_or_else(|_| "sqlite".into());
    match wanted.as_str() {
        "sqlite" => vec![BenchStore::Sqlite],
        "postgres" => vec![BenchStore::Postgres(Postgres::start_durable())],
        "both" => vec![
            BenchStore::Sqlite,
            BenchStore::Postgres(Postgres::start_durable()),
        ],
        other => panic!("SLAWATCH_BENCH_STORE={other}: expected sqlite, postgres or both"),
    }
}

/// One daemon's ledger on a [`BenchStore`].
pub struct Ledger {
    pub name: &'static str,
    /// The `[store]` table of the daemon's configuration (`{dir}` is the daemon's dir).
    pub toml: String,
    pub env: Vec<(&'static str, &'static str)>,
    database: Option<String>,
}

impl BenchStore {
    /// A fresh, empty ledger.
    pub fn ledger(&self) -> Ledger {
        match self {
            BenchStore::Sqlite => Ledger {
                name: "sqlite",
                toml: "[store]\nurl = \"sqlite://{dir}/ledger.db\"\n".into(),
                env: Vec::new(),
                database: None,
            },
            BenchStore::Postgres(pg) => {
                let db = pg.create_database();
                Ledger {
                    name: "postgres",
                    toml: format!(
                        "[store]\nurl = \"{}\"\nhead_file = \"{{dir}}/ledger.head\"\n",
                        pg.url_without_password(&db)
                    ),
                    env: vec![("SLAWATCH__STORE__PASSWORD", PASSWORD)],
                    database: Some(db),
                }
            }
        }
    }
}

impl Ledger {
    /// The URL the bench itself opens the ledger with (the password in it, for PostgreSQL);
    /// `sqlite_file` is the SQLite ledger's file.
    pub fn url(&self, store: &BenchStore, sqlite_file: &std::path::Path) -> String {
        match (store, &self.database) {
            (BenchStore::Postgres(pg), Some(db)) => pg.url(db),
            _ => format!("sqlite://{}", sqlite_file.display()),
        }
    }

    /// Runs a read query on the ledger (`sqlite3` on the daemon's file, `psql` on PostgreSQL).
    pub fn sql(&self, store: &BenchStore, daemon: &Daemon, query: &str) -> String {
        match (store, &self.database) {
            (BenchStore::Postgres(pg), Some(db)) => pg.psql(db, query),
            _ => daemon.sql(query),
        }
    }
}
