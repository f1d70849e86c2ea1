//! [`StoreError`]: what went wrong in the store, and where (URL, operation, seq, cursor key).
//!
//! URLs are always shown through [`redact_url`], so a password in a `postgres://` URL never
//! reaches a log line or an error message.

/// Everything the store can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names a backend this build cannot open (yet).
    #[error("store {url}: {reason}")]
    Unsupported { url: String, reason: String },
    /// The URL could not be understood.
    #[error("store URL {url} is invalid: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The database could not be created or opened.
    #[error("cannot open store {url}: {source}")]
    Open {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    /// The file's parent directory could not be created.
    #[error("cannot create the directory for store {url}: {source}")]
    CreateDir {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// The embedded schema migrations failed.
    #[error("cannot migrate store {url}: {source}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The database was written by a newer ledger format than this build knows.
    #[error("store {url} has ledger format {found}, this build understands format {supported}")]
    Format {
        url: String,
        found: String,
        supported: String,
    },
    /// No server of a (multi-host) PostgreSQL URL could be used; `reasons` says why, per host.
    #[error("store {url}: no usable PostgreSQL server: {reasons}")]
    NoServer { url: String, reasons: String },
    /// The ledger no longer holds the head this daemon published: rows it wrote were lost (a
    /// PostgreSQL failover to an asynchronous standby that lacked them, a restore from an older
    /// backup). Nothing is written on top of that: it would fork the chain.
    #[error(
        "the ledger went backwards: this daemon published seq {published_seq} (hash {published_hash}) but the ledger's head is seq {head_seq} (hash {head_hash}); nothing is written on top of it, which would fork the chain. What to do: find the lost rows (the old primary, its WAL archive or a backup) and restore them so that seq {published_seq} is back with that hash; `slawatch audit verify --expect {published_seq}:{published_hash}` checks it. Or, to carry on without them, stop slawatch, give the auditors both pins (the lost one above and the head now), delete the published-head file (store.head_file) and start slawatch again"
    )]
    WentBackwards {
        published_seq: i64,
        published_hash: String,
        head_seq: i64,
        head_hash: String,
    },
    /// This replica no longer holds the leader lease of a shared ledger (it lapsed, or another
    /// replica took it): the write was rolled back. Another replica writes the ledger now.
    #[error(
        "replica {replica} no longer holds the ledger's leader lease{}; another replica writes the ledger now, so nothing was written",
        epoch.map(|e| format!(" (epoch {e})")).unwrap_or_default()
    )]
    Fenced { replica: String, epoch: Option<i64> },
    /// The file keeping the published head cannot be read.
    #[error("the published ledger head in {} is unreadable: {problem}", path.display())]
    HeadFile {
        path: std::path::PathBuf,
        problem: String,
    },
    /// A query failed; `op` says which store operation ran it.
    #[error("store {op} failed: {source}")]
    Database {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// An event or cursor value could not be turned into JSON.
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A stored ledger row cannot be read back (bad JSON, unknown event, bad timestamp).
    #[error("ledger row seq {seq} is unreadable: {problem}")]
    CorruptRow { seq: i64, problem: String },
    /// A store call did not finish in time.
    #[error("{op}: no answer after {after:?}")]
    Timeout {
        op: &'static str,
        after: std::time::Duration,
    },
    /// The working set's archive does not read back (`archive.rs`): derived data, rebuilt by a
    /// full replay.
    #[error("the archive of thread {thread:?} is unreadable: {problem}")]
    CorruptArchive { thread: String, problem: String },
    /// A row of the inquiry projection cannot be read back (`store rebuild-projection` writes
    /// it again from the ledger).
    #[error("inquiry projection row {open_seq} is unreadable: {problem}")]
    CorruptProjection { open_seq: i64, problem: String },
    /// A read-only command was pointed at a ledger that does not exist (it is never created
    /// for a read).
    #[error("no ledger at {}", path.display())]
    Missing { path: std::path::PathBuf },
    /// A stored cursor cannot be read back.
    #[error("cursor {source_name}/{key} is unreadable: {problem}")]
    CorruptCursor {
        source_name: String,
        key: String,
        problem: String,
    },
}

impl StoreError {
    pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Database { op, source }
    }
}

/// The URL with any password replaced by `***`: the `user:password@` part of the authority and
/// `password=`/`sslpassword=` query parameters.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let pw_start = rest_start + colon + 1;
                let pw_end = rest_start + at;
                out.replace_range(pw_start..pw_end, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _))
                    if k.eq_ignore_ascii_case("password")
                        || k.eq_ignore_ascii_case("sslpassword") =>
                {
                    format!("{k}=***")
                }
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://slawatch:s3cr3t@db.example:5432/sla"),
            "postgres://slawatch:***@db.example:5432/sla"
        );
        assert_eq!(
            redact_url("postgres://u:p%40ss@h/db?sslmode=require&password=x"),
            "postgres://u:***@h/db?sslmode=require&password=***"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("sqlite://data/ledger.db"),
            "sqlite://data/ledger.db"
        );
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }
}
