//! Which TLS servers slawatch trusts: one rustls client configuration for every outgoing
//! connection (IMAP sources, the SMTP notifier, the webhook, Alertmanager and Twilio-compatible
//! clients), and error texts that say what went wrong and which setting fixes it.
//!
//! A server is trusted when its certificate chains to the compiled-in webpki roots, the system
//! store or a certificate in `ca_file`, with the host name checked, as usual. Two ways pin one
//! certificate instead, for private mail servers with self-signed certificates:
//!
//! - `ca_file` holding the server's own certificate: a server presenting exactly a certificate of
//!   that file is trusted, whether or not it is marked as a CA (`openssl req -x509` marks it a CA,
//!   which plain webpki verification refuses as `CaUsedAsEndEntity`). This is what mbsync's
//!   `CertificateFile` does.
//! - `tls_fingerprint = "sha256:…"`: only the certificate with that SHA-256 fingerprint (of its
//!   DER bytes, as `openssl x509 -noout -fingerprint -sha256` prints it) is trusted.
//!
//! A pinned certificate is trusted for what it is, not for what it says: a host name it does not
//! carry, or a validity period that has ended or not begun, is logged as a warning (once per
//! distinct problem), never a failure. The handshake's signature is still checked against the
//! pinned certificate's key, so only the holder of its private key passes.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, SignatureScheme};
use sha2::Digest as _;

/// How one client decides whom to trust (`ca_file`, `tls_fingerprint` of its settings table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsTrust {
    /// PEM certificates trusted besides the system and webpki roots; a server presenting one of
    /// them exactly is pinned to it.
    pub ca_file: Option<PathBuf>,
    /// Only the certificate with this fingerprint is trusted.
    pub fingerprint: Option<Fingerprint>,
    /// The settings table these keys are in (`sources.support`, `notify.smtp`): error texts
    /// name `{setting}.ca_file` and `{setting}.tls_fingerprint`.
    pub setting: String,
}

impl TlsTrust {
    /// Trusts the certificates of `path` besides the usual roots.
    pub fn with_ca_file(path: PathBuf) -> TlsTrust {
        TlsTrust {
            ca_file: Some(path),
            ..TlsTrust::default()
        }
    }

    /// The full key path of `key` in this client's settings table.
    fn key(&self, key: &str) -> String {
        if self.setting.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.setting)
        }
    }
}

/// The SHA-256 fingerprint of a certificate's DER bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of(cert: &CertificateDer<'_>) -> Fingerprint {
        Fingerprint(sha2::Sha256::digest(cert.as_ref()).into())
    }

    /// `sha256:` then 64 hex digits, colons and case as anyone prints them
    /// (`sha256:AB:CD:…`, `SHA256:abcd…`).
    pub fn parse(text: &str) -> Result<Fingerprint, String> {
        let t = text.trim();
        let hex_part = t
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("sha256:"))
            .map(|_| &t[7..])
            .ok_or_else(|| {
                format!("`{t}` must start with sha256: (only SHA-256 fingerprints are accepted)")
            })?;
        let digits: String = hex_part.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(&digits).ok().filter(|b| b.len() == 32).ok_or_else(|| {
            format!(
                "`{t}` is not sha256: followed by 64 hex digits (print it with `openssl x509 -noout -fingerprint -sha256 -in CERT`)"
            )
        })?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        Ok(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot use {}: {message}", path.display())]
    CaFile {
        key: String,
        path: PathBuf,
        message: String,
    },
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// The certificates of a PEM file, refused when it holds none.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("not a readable PEM file: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

/// The client configuration for `trust`, with the process's crypto provider (ring).
pub fn client_config(trust: &TlsTrust) -> Result<rustls::ClientConfig, TlsError> {
    // The process-wide provider when the binary installed one, else ring explicitly: never
    // rustls's panic on an ambiguous provider.
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // System store: unreadable entries are skipped, the compiled-in roots still apply.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let mut pinned = Vec::new();
    if let Some(path) = &trust.ca_file {
        let ca_error = |message: String| TlsError::CaFile {
            key: trust.key("ca_file"),
            path: path.clone(),
            message,
        };
        for cert in read_certificates(path).map_err(ca_error)? {
            pinned.push(Fingerprint::of(&cert));
            roots
                .add(cert)
                .map_err(|e| ca_error(format!("a certificate cannot be used: {e}")))?;
        }
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let verifier = TrustVerifier {
        webpki,
        pinned,
        fingerprint: trust.fingerprint,
        ca_file_key: trust.key("ca_file"),
        fingerprint_key: trust.key("tls_fingerprint"),
        provider: provider.clone(),
        warned: Mutex::default(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// Trust as described in the module doc: a pin first, else webpki with the extra roots.
#[derive(Debug)]
struct TrustVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// Fingerprints of the certificates in `ca_file`.
    pinned: Vec<Fingerprint>,
    fingerprint: Option<Fingerprint>,
    ca_file_key: String,
    fingerprint_key: String,
    provider: Arc<CryptoProvider>,
    /// Warnings about pinned certificates already logged.
    warned: Mutex<HashSet<String>>,
}

/// A refused certificate, with the explanation and the fix; [`describe`] shows it alone.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CertificateRefused(String);

impl TrustVerifier {
    fn refuse(&self, message: String) -> rustls::Error {
        rustls::Error::Other(rustls::OtherError(Arc::new(CertificateRefused(message))))
    }

    /// Logs what a pinned certificate would have failed on, once per distinct problem.
    fn warn_pinned(&self, cert: &CertificateDer<'_>, server: &ServerName<'_>, now: UnixTime) {
        let seen = Fingerprint::of(cert);
        let mut problems = Vec::new();
        let name_ok = rustls::server::ParsedCertificate::try_from(cert)
            .and_then(|parsed| rustls::client::verify_server_name(&parsed, server))
            .is_ok();
        if !name_ok {
            problems.push(format!(
                "the pinned certificate {seen} is not valid for the name {}",
                server.to_str()
            ));
        }
        if let Some((not_before, not_after)) = validity(cert.as_ref()) {
            let now = now.as_secs() as i64;
            let day = |t: i64| {
                chrono::DateTime::from_timestamp(t, 0)
                    .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default()
            };
            if now > not_after {
                problems.push(format!(
                    "the pinned certificate {seen} expired on {}",
                    day(not_after)
                ));
            } else if now < not_before {
                problems.push(format!(
                    "the pinned certificate {seen} is not valid before {}",
                    day(not_before)
                ));
            }
        }
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        for problem in problems {
            if warned.insert(problem.clone()) {
                tracing::warn!(server = %server.to_str(), "{problem}; trusted anyway because it is pinned (a pinned certificate's name and dates are not checked).");
            }
        }
    }

    /// Says what a webpki refusal means and which setting fixes it.
    fn explain(&self, e: &rustls::Error, seen: Fingerprint, server: &ServerName<'_>) -> String {
        let pin = format!(
            "set {} to the server's certificate (PEM), or {} = \"{seen}\" after checking that this is the server's certificate",
            self.ca_file_key, self.fingerprint_key
        );
        let rustls::Error::InvalidCertificate(ce) = e else {
            return format!("the server's certificate {seen} was refused: {e}; {pin}");
        };
        match ce {
            CertificateError::UnknownIssuer => format!(
                "the server's certificate {seen} is not signed by an authority this system trusts; for a private CA, set {} to the CA's certificate (PEM); for a self-signed certificate, {pin}",
                self.ca_file_key
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the server's certificate {seen} is not valid for the name {} ({ce}); connect with a name the certificate carries (the host setting), or pin it: {pin}",
                    server.to_str()
                )
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => format!(
                "the server's certificate {seen} is outside its validity period ({ce}); renew it on the server or check this machine's clock, or pin it (then its dates only warn): {pin}"
            ),
            CertificateError::Other(other) if other.to_string().contains("CaUsedAsEndEntity") => {
                format!(
                    "the server presents a CA certificate as its own (as `openssl req -x509` makes), which is trusted only when pinned: {pin}"
                )
            }
            _ => format!("the server's certificate {seen} was refused ({ce}); {pin}"),
        }
    }
}

impl ServerCertVerifier for TrustVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = Fingerprint::of(end_entity);
        if let Some(pin) = self.fingerprint {
            if seen != pin {
                return Err(self.refuse(format!(
                    "the server's certificate {seen} is not the one pinned by {} ({pin}); if the server's certificate was replaced, check the new one and set {} to its fingerprint",
                    self.fingerprint_key, self.fingerprint_key
                )));
            }
            self.warn_pinned(end_entity, server_name, now);
            return Ok(ServerCertVerified::assertion());
        }
        if self.pinned.contains(&seen) {
            self.warn_pinned(end_entity, server_name, now);
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|e| self.refuse(self.explain(&e, seen, server_name)))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One line for a failed connection: a certificate refusal as the verifier worded it, a TLS
/// handshake failure with what it usually means, else the error and its causes. `setting` is the
/// client's settings table (`notify.webhook`).
pub fn describe(error: &(dyn std::error::Error + 'static), setting: &str) -> String {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|i| i as &(dyn std::error::Error + 'static));
        for candidate in [Some(e), inner].into_iter().flatten() {
            if let Some(refused) = candidate.downcast_ref::<CertificateRefused>() {
                return refused.0.clone();
            }
            if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                return explain_handshake(tls, setting);
            }
        }
        current = inner.and_then(|i| i.source()).or_else(|| e.source());
    }
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// An HTTP client trusting servers as `trust` says, bounded in connect and total time (a rustls
/// crypto provider must be installed).
pub fn http_client(
    timeout: std::time::Duration,
    trust: &TlsTrust,
) -> Result<reqwest::Client, TlsError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(trust)?)
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("slawatch/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| TlsError::Setup(e.without_url().to_string()))
}

fn explain_handshake(e: &rustls::Error, setting: &str) -> String {
    if let rustls::Error::Other(other) = e
        && let Some(refused) = other.0.downcast_ref::<CertificateRefused>()
    {
        return refused.0.clone();
    }
    let key = |k: &str| {
        if setting.is_empty() {
            k.to_string()
        } else {
            format!("{setting}.{k}")
        }
    };
    match e {
        rustls::Error::InvalidMessage(_) => format!(
            "the server did not answer with TLS ({e}): check {} and {} (implicit TLS and STARTTLS use different ports)",
            key("port"),
            key("security")
        ),
        rustls::Error::AlertReceived(_) | rustls::Error::PeerIncompatible(_) => format!(
            "the server ended the TLS handshake ({e}): it supports no TLS 1.2/1.3 cipher suite slawatch offers, or wants a client certificate"
        ),
        _ => format!("TLS failed: {e}"),
    }
}

/// `notBefore` and `notAfter` (Unix seconds) of a DER certificate, read from its
/// `TBSCertificate` (RFC 5280 §4.1): version, serial, signature, issuer, then validity.
fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (cert, _) = der_item(der, 0x30)?;
    let (tbs, _) = der_item(cert, 0x30)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xA0) {
        rest = der_item(rest, 0xA0)?.1;
    }
    rest = der_item(rest, 0x02)?.1; // serialNumber
    rest = der_item(rest, 0x30)?.1; // signature
    rest = der_item(rest, 0x30)?.1; // issuer
    let (validity, _) = der_item(rest, 0x30)?;
    let (not_before, after) = der_time(validity)?;
    let (not_after, _) = der_time(after)?;
    Some((not_before, not_after))
}

/// The contents of the DER item of tag `tag` at the start of `input`, and what follows it.
fn der_item(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let len = input
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((input.get(header..end)?, input.get(end..)?))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn der_time(input: &[u8]) -> Option<(i64, &[u8])> {
    let tag = *input.first()?;
    let (body, rest) = der_item(input, tag)?;
    let text = std::str::from_utf8(body).ok()?;
    let full = match tag {
        0x17 => {
            let yy: i32 = text.get(..2)?.parse().ok()?;
            format!("{}{text}", if yy >= 50 { "19" } else { "20" })
        }
        0x18 => text.to_string(),
        _ => return None,
    };
    let t =
        chrono::NaiveDateTime::parse_from_str(full.trim_end_matches('Z'), "%Y%m%d%H%M%S").ok()?;
    Some((t.and_utc().timestamp(), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_as_openssl_and_people_print_them() {
        let hex = "ab".repeat(32);
        let a = Fingerprint::parse(&format!("sha256:{hex}")).unwrap();
        let colons = a.to_string();
        assert!(colons.starts_with("sha256:AB:AB:"), "{colons}");
        assert_eq!(Fingerprint::parse(&colons).unwrap(), a);
        assert_eq!(
            Fingerprint::parse(&format!("SHA256:{}", hex.to_uppercase())).unwrap(),
            a
        );
        assert!(Fingerprint::parse(&hex).unwrap_err().contains("sha256:"));
        assert!(
            Fingerprint::parse("sha256:abcd")
                .unwrap_err()
                .contains("64 hex digits")
        );
    }

    #[test]
    fn der_times_are_read_in_both_encodings() {
        // UTCTime 2601020304Z and GeneralizedTime 20500101000000Z.
        let utc = [&[0x17, 13][..], b"260102030405Z"].concat();
        let generalized = [&[0x18, 15][..], b"20500101000000Z"].concat();
        let (t, rest) = der_time(&utc).unwrap();
        assert!(rest.is_empty());
        assert_eq!(
            chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339(),
            "2026-01-02T03:04:05+00:00"
        );
        let (t, _) = der_time(&generalized).unwrap();
        assert_eq!(
            chrono::DateTime::from_timestamp(t, 0).unwrap().to_rfc3339(),
            "2050-01-01T00:00:00+00:00"
        );
        assert!(der_time(&[0x17, 40, b'1']).is_none());
        assert!(validity(b"\x30\x03\x02\x01\x00").is_none());
    }
}
