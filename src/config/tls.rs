//! `ca_file` and `tls_fingerprint`, the same two keys in every table whose client speaks TLS
//! (`[sources.NAME]` of type imap or twilio, `[notify.smtp]`, `[notify.webhook]`,
//! `[notify.alertmanager]`):
//!
//! ```toml
//! ca_file = "certs/mail.pem"   # a private CA, or the server's own self-signed certificate
//! # tls_fingerprint = "sha256:AB:CD:…"   # or pin exactly one certificate
//! ```
//!
//! A server presenting exactly a certificate of `ca_file`, or the certificate of
//! `tls_fingerprint`, is pinned: trusted for what it is, so a host name it does not carry or an
//! expired or not yet valid certificate is logged as a warning, not refused. What trust means
//! is in [`crate::tls`].

use std::path::Path;

use serde_json::{Value, json};

use super::reader::{Problems, Table};
use crate::tls::{Fingerprint, TlsTrust};

/// Reads and checks the table's TLS trust keys: the CA file must hold certificates, the
/// fingerprint must be a SHA-256 one, and only one of the two may be set.
pub(super) fn trust(t: &mut Table, base: &Path, p: &mut Problems) -> TlsTrust {
    let ca_file = t.string("ca_file", p).map(|f| base.join(f));
    if let Some(path) = &ca_file
        && let Err(e) = crate::tls::read_certificates(path)
    {
        p.push(t.path("ca_file"), format!("{}: {e}", path.display()));
    }
    let fingerprint = t.string("tls_fingerprint", p).and_then(|f| {
        Fingerprint::parse(&f)
            .map_err(|e| p.push(t.path("tls_fingerprint"), e))
            .ok()
    });
    if ca_file.is_some() && fingerprint.is_some() {
        p.push(
            t.path("tls_fingerprint"),
            "set either ca_file or tls_fingerprint: a pinned fingerprint trusts that one certificate and nothing in ca_file",
        );
    }
    let setting = t.path("ca_file");
    TlsTrust {
        ca_file,
        fingerprint,
        setting: setting
            .strip_suffix(".ca_file")
            .unwrap_or_default()
            .to_string(),
    }
}

/// `table` (a client's settings as `check-config` prints them) with the TLS trust keys added.
pub(super) fn with_effective(mut table: Value, t: &TlsTrust) -> Value {
    if let Value::Object(map) = &mut table {
        map.insert("ca_file".into(), json!(t.ca_file));
        map.insert(
            "tls_fingerprint".into(),
            json!(t.fingerprint.map(|f| f.to_string())),
        );
    }
    table
}
