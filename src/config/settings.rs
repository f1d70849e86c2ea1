//! Validated settings: what every part of slawatch is built from.
//!
//! These are produced only by `config::load` (file + `SLAWATCH__SECTION__KEY` environment, then
//! one validating pass), so by the time anything starts every duration is a `Duration`, every
//! time zone a `Tz`, every secret read from its file or the environment. `check-config` prints
//! exactly these, secrets redacted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use slawatch_core::tracker::policy::PolicySet;

#[derive(Debug, Clone)]
pub struct Settings {
    pub store: StoreSettings,
    pub audit: AuditSettings,
    pub http: HttpSettings,
    pub desk: slawatch_core::desk::DeskSettings,
    pub policies: PolicySet,
    pub sources: Vec<SourceSettings>,
    pub notify: super::notify::NotifySettings,
    /// Customer email ↔ phone numbers, for answers across channels (`[contacts]`).
    pub contacts: std::sync::Arc<slawatch_core::tracker::contacts::ContactMap>,
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `sqlite://path/to/file.db` (created if missing) or `postgres://user@host/db`.
    pub url: String,
    /// Database password, from `password_file` or the environment; never logged.
    pub password: Option<Secret>,
    /// The ledger's Ed25519 signing key (PKCS#8 PEM): every commit is then sealed with a signed
    /// checkpoint. Relative to the configuration file's directory.
    pub signing_key_file: Option<PathBuf>,
    /// PostgreSQL: where the daemon keeps the ledger head it published, so that after a restart
    /// it still refuses to write on a ledger that lost rows it wrote (a failover to a standby
    /// that lacked them). Relative to the configuration file's directory; default
    /// `slawatch-ledger.head` in the working directory (the state directory under systemd).
    pub head_file: PathBuf,
    /// Run on a ledger whose chain is broken (recorded in the ledger). Set by `slawatch run
    /// --accept-broken-ledger`, never by the configuration file.
    pub accept_broken_ledger: bool,
    /// How long a conversation with nothing open stays in memory after its last evidence
    /// (`working_window`, default 30 days): older ones are read back from the store when new
    /// evidence refers to them.
    pub working_window: std::time::Duration,
    /// How often the working set is written to the store for a fast start (`snapshot_every`,
    /// default 10 minutes; also at shutdown).
    pub snapshot_every: std::time::Duration,
    /// PostgreSQL: how long the active replica's leader lease lasts without a renewal
    /// (`lease_ttl`, default 8 s, 3–60 s). A standby takes over this long after the active died;
    /// the active renews every quarter of it and stops writing and alerting once it lapses.
    pub lease_ttl: std::time::Duration,
}

/// [`StoreSettings::working_window`]'s default.
pub const WORKING_WINDOW: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);
/// [`StoreSettings::lease_ttl`]'s default.
pub const LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(8);
/// [`StoreSettings::snapshot_every`]'s default.
pub const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// `[audit]`: where the ledger's signed head goes besides the log and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct AuditSettings {
    /// Addresses mailed the signed head once a day (through `[notify.smtp]`); empty: no mail.
    pub head_recipients: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub bind: SocketAddr,
    /// The write token: acknowledgements and pushed calls need it once any token is set; it
    /// also reads.
    pub token: Option<Secret>,
    /// Read-only bearer token of the status page and `GET /api/v1/inquiries…` (wallboards,
    /// Grafana viewers).
    pub read_token: Option<Secret>,
    /// Read-only bearer token for `GET /api/v1/report` (auditors). A separate role: the write
    /// token is not accepted there. Reports over HTTP are disabled when unset.
    pub report_token: Option<Secret>,
    /// Bearer token of `GET /metrics` (Prometheus); `/metrics` is open when unset.
    pub metrics_token: Option<Secret>,
    /// Permits a bind beyond loopback without any token (anyone who reaches it reads customer
    /// data and writes acks).
    pub allow_anonymous: bool,
    /// Base URL of the status page as the desk reaches it (links in alerts).
    pub public_url: String,
    /// `Host` names accepted besides loopback names, the bind address and `public_url`'s host.
    pub allowed_hosts: Vec<String>,
    /// The key signing the action links in alerts (`http.link_key_file`); required with an
    /// explicit `public_url`. Without it alerts link to the page, which needs the read token.
    pub link_key: Option<Secret>,
    /// How long a signed link lasts (`http.link_ttl`, default [`DEFAULT_LINK_TTL`]).
    pub link_ttl: Duration,
    /// A client that has not sent a request's headers within this is dropped.
    pub header_timeout: Duration,
    /// Bound on a request from its headers to the response's head (the report has its own).
    pub request_timeout: Duration,
    /// Bound on `GET /api/v1/report` up to the response's head (a year's ledger is replayed
    /// first).
    pub report_timeout: Duration,
    /// Connections served at once; at the limit, the connection idle the longest makes room.
    pub max_connections: usize,
}

impl HttpSettings {
    /// Whether any token is configured (then every route but health needs one).
    pub fn any_token(&self) -> bool {
        self.tokens().iter().any(|(_, t)| t.is_some())
    }

    /// The tokens with their keys.
    pub fn tokens(&self) -> [(&'static str, &Option<Secret>); 4] {
        [
            ("http.token", &self.token),
            ("http.read_token", &self.read_token),
            ("http.report_token", &self.report_token),
            ("http.metrics_token", &self.metrics_token),
        ]
    }
}

#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// The source's name: its key under `[sources]`, used in metrics and the ledger.
    pub name: String,
    pub kind: SourceKind,
    /// Without a successful check (an IDLE round, a poll, a scan) for this long, the source is
    /// silent: the monitor pages (`sources.X.silent_after`, default [`SourceKind::silent_after`]).
    pub silent_after: Duration,
}

impl SourceKind {
    /// The longest a working source goes between two successful checks: an IDLE round ends at
    /// `idle_timeout` at the latest, a poll or a scan comes every interval.
    pub fn check_interval(&self) -> Duration {
        match self {
            SourceKind::Imap(i) => i.idle_timeout.max(i.poll_interval) + i.timeout,
            SourceKind::Maildir(m) => m.scan_interval,
            SourceKind::CallLog(c) => c.poll_interval,
            SourceKind::Twilio(t) => t.poll_interval + t.timeout,
        }
    }

    /// The default `silent_after`: the check interval plus two minutes for a slow round (a
    /// backfill chunk, a reconnect), so a working source never pages, and a dead one pages well
    /// inside one 15-minute deadline (7.5 minutes for IMAP with its 5-minute IDLE, 2 for a
    /// Maildir or a call log).
    pub fn silent_after(&self) -> Duration {
        self.check_interval() + Duration::from_secs(120)
    }
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    Imap(ImapSettings),
    Maildir(MaildirSettings),
    /// An Asterisk `cdr_csv` or `queue_log` file, tailed.
    CallLog(crate::sources::calls::lines::CallLogSettings),
    /// A Twilio-compatible Calls API, polled.
    Twilio(crate::sources::calls::poll::TwilioSettings),
}

#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub security: ImapSecurity,
    /// Permits `security = "plain"` to a host that is not loopback (passwords cross the network
    /// in clear: for lab setups only).
    pub allow_insecure: bool,
    /// `ca_file` / `tls_fingerprint`: private CAs and pinned certificates.
    pub tls: crate::tls::TlsTrust,
    pub username: String,
    pub auth: ImapAuth,
    /// Folders whose messages are inquiries.
    pub inbox_folders: Vec<String>,
    /// Folders holding the desk's replies; empty = the SPECIAL-USE `\Sent` folder(s).
    pub sent_folders: Vec<String>,
    /// Backfill messages delivered on or after this instant (first run only).
    pub since: Option<DateTime<Utc>>,
    /// IDLE is re-issued at least this often (≤ 5 minutes finds dead connections in time).
    pub idle_timeout: Duration,
    /// Poll interval when the server has no IDLE.
    pub poll_interval: Duration,
    /// Bytes of body text fetched after the headers (language detection, previews).
    pub body_prefix_bytes: u32,
    /// Bound on every network round trip.
    pub timeout: Duration,
}

/// How an IMAP source logs in.
#[derive(Debug, Clone)]
pub enum ImapAuth {
    /// `LOGIN` with `password`.
    Password(Secret),
    /// `AUTHENTICATE XOAUTH2` or `OAUTHBEARER` with an access token from `[….oauth2]`.
    OAuth2 {
        mechanism: crate::oauth2::Mechanism,
        oauth2: crate::oauth2::OAuth2Settings,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapSecurity {
    /// Implicit TLS (port 993).
    Tls,
    /// Plain connect then STARTTLS (port 143); refused if the server does not offer it.
    Starttls,
    /// No TLS: loopback only, unless `allow_insecure = true`.
    Plain,
}

#[derive(Debug, Clone)]
pub struct MaildirSettings {
    /// The Maildir root (its `cur`/`new` are the INBOX; subfolders are `.Name`).
    pub path: PathBuf,
    /// Folder names (`INBOX` = the root) whose messages are inquiries.
    pub inbox_folders: Vec<String>,
    /// Folder names holding the desk's replies.
    pub sent_folders: Vec<String>,
    /// How often the folders are rescanned (inotify is not used: it misses NFS and renames
    /// across mounts; a scan of `new`/`cur` names is cheap).
    pub scan_interval: Duration,
}

/// A secret value: printed as `<redacted>`, never in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}
