//! The ledger's signing key: Ed25519 (RFC 8032), through *ring*.
//!
//! The daemon holds the private key (`store.signing_key_file`) and signs a checkpoint at the end
//! of every commit ([`Event::LedgerCheckpoint`]); an auditor holds only the public key and checks
//! every signature with `slawatch audit verify --public-key FILE`, or with openssl alone (see the
//! parent module's docs for the exact bytes).
//!
//! Files are PEM, as openssl writes and reads them: the private key is PKCS#8
//! (`-----BEGIN PRIVATE KEY-----`, from `slawatch audit keygen` or `openssl genpkey -algorithm
//! ed25519`), the public key SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`, from `openssl
//! pkey -pubout`).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};
use slawatch_core::tracker::event::{Event, checkpoint_message};

/// File names written by [`generate`].
pub const PRIVATE_KEY_FILE: &str = "ledger-signing.key";
pub const PUBLIC_KEY_FILE: &str = "ledger-signing.pub";

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The DER prefix of an Ed25519 PKCS#8 v1 private key (RFC 8410, as `openssl genpkey` writes
/// it): the 32-byte seed follows.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why a key could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is not {what}: {problem}")]
    Invalid {
        path: PathBuf,
        what: &'static str,
        problem: String,
    },
}

/// The private key, able to sign checkpoints.
pub struct Signer {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Reads a PKCS#8 PEM (or DER) Ed25519 private key.
    pub fn from_file(path: &Path) -> Result<Signer, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            error: source,
        })?;
        let der = pem_or_der(&bytes, "PRIVATE KEY");
        let invalid = |problem: String| KeyError::Invalid {
            path: path.to_path_buf(),
            what: "an Ed25519 private key (PKCS#8 PEM)",
            problem,
        };
        let der = der.map_err(invalid)?;
        let pair =
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).map_err(|e| invalid(e.to_string()))?;
        Ok(Signer::new(pair))
    }

    fn new(pair: Ed25519KeyPair) -> Signer {
        let key_id = key_id(pair.public_key().as_ref());
        Signer { pair, key_id }
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_raw(self.pair.public_key().as_ref()).expect("an Ed25519 key is 32 bytes")
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The checkpoint that seals a ledger whose last row is `head_seq` with `head_hash`.
    pub fn checkpoint(&self, head_seq: i64, head_hash: &str, at: DateTime<Utc>) -> Event {
        let signature = self
            .pair
            .sign(checkpoint_message(head_seq, head_hash).as_bytes());
        Event::LedgerCheckpoint {
            head_seq,
            head_hash: head_hash.to_string(),
            key_id: self.key_id.clone(),
            signature: hex::encode(signature.as_ref()),
            at,
        }
    }
}

/// A public key, for checking checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    raw: [u8; 32],
    key_id: String,
}

impl PublicKey {
    fn from_raw(raw: &[u8]) -> Option<PublicKey> {
        let raw: [u8; 32] = raw.try_into().ok()?;
        Some(PublicKey {
            key_id: key_id(&raw),
            raw,
        })
    }

    /// Reads a SubjectPublicKeyInfo PEM (or DER) Ed25519 public key.
    pub fn from_file(path: &Path) -> Result<PublicKey, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            error: source,
        })?;
        let invalid = |problem: String| KeyError::Invalid {
            path: path.to_path_buf(),
            what: "an Ed25519 public key (PEM, BEGIN PUBLIC KEY)",
            problem,
        };
        let der = pem_or_der(&bytes, "PUBLIC KEY").map_err(invalid)?;
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(raw) if raw.len() == 32 => Ok(PublicKey::from_raw(raw).expect("32 bytes")),
            _ => Err(invalid(
                "not an Ed25519 SubjectPublicKeyInfo (44 bytes, OID 1.3.101.112)".to_string(),
            )),
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key as PEM (SubjectPublicKeyInfo), as openssl writes it.
    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        pem("PUBLIC KEY", &der)
    }

    /// Whether `signature_hex` is this key's signature of the checkpoint of `head_seq`,
    /// `head_hash`.
    pub fn verifies(&self, head_seq: i64, head_hash: &str, signature_hex: &str) -> bool {
        let Ok(signature) = hex::decode(signature_hex) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.raw)
            .verify(
                checkpoint_message(head_seq, head_hash).as_bytes(),
                &signature,
            )
            .is_ok()
    }
}

/// Writes a new key pair into `dir` ([`PRIVATE_KEY_FILE`], readable by the owner only, and
/// [`PUBLIC_KEY_FILE`]); refuses to replace existing files. Returns both paths.
pub fn generate(dir: &Path) -> Result<(PathBuf, PathBuf, PublicKey), KeyError> {
    // A random 32-byte seed in the PKCS#8 v1 form openssl writes and reads (ring's own
    // generated documents are v2 in an encoding openssl refuses).
    use ring::rand::SecureRandom as _;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|e| KeyError::Write {
            path: dir.to_path_buf(),
            error: std::io::Error::other(format!("no random seed: {e}")),
        })?;
    let mut v1 = PKCS8_V1_PREFIX.to_vec();
    v1.extend_from_slice(&seed);
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&v1).expect("a key just generated");
    let public = Signer::new(pair).public_key();
    std::fs::create_dir_all(dir).map_err(|source| KeyError::Write {
        path: dir.to_path_buf(),
        error: source,
    })?;
    let private_path = dir.join(PRIVATE_KEY_FILE);
    let public_path = dir.join(PUBLIC_KEY_FILE);
    write_new(&private_path, &pem("PRIVATE KEY", &v1), 0o600)?;
    write_new(&public_path, &public.to_pem(), 0o644)?;
    Ok((private_path, public_path, public))
}

fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), KeyError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let write_err = |source| KeyError::Write {
        path: path.to_path_buf(),
        error: source,
    };
    let mut file = options.open(path).map_err(write_err)?;
    file.write_all(text.as_bytes()).map_err(write_err)?;
    file.sync_all().map_err(write_err)
}

/// The first 16 hex digits of SHA-256 of the raw public key.
fn key_id(raw: &[u8]) -> String {
    hex::encode(&Sha256::digest(raw)[..8])
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER inside a PEM block labelled `label`, or the bytes themselves if they are not PEM.
fn pem_or_der(bytes: &[u8], label: &str) -> Result<Vec<u8>, String> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Ok(bytes.to_vec());
    };
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let Some(start) = text.find(&begin) else {
        return Err(format!("no `{begin}` block"));
    };
    let rest = &text[start + begin.len()..];
    let Some(stop) = rest.find(&end) else {
        return Err(format!("no `{end}` line"));
    };
    let body: String = rest[..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| format!("bad base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_signs_and_its_public_half_verifies() {
        let dir = std::env::temp_dir().join(format!("slawatch-keygen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (private, public, _) = generate(&dir).unwrap();
        let signer = Signer::from_file(&private).unwrap();
        let key = PublicKey::from_file(&public).unwrap();
        assert_eq!(signer.key_id(), key.key_id());
        let hash = "ab".repeat(32);
        let Event::LedgerCheckpoint { signature, .. } = signer.checkpoint(41, &hash, Utc::now())
        else {
            unreachable!()
        };
        assert!(key.verifies(41, &hash, &signature));
        assert!(!key.verifies(42, &hash, &signature));
        assert!(!key.verifies(41, &"cd".repeat(32), &signature));
        assert!(generate(&dir).is_err(), "an existing key is never replaced");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
