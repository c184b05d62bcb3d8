//! The firmware registry, sans IO: what an uploaded artifact is (`firmware` in the metadata
//! store, `iot.firmware`), how its version is read and ordered (Semantic Versioning 2.0), and how
//! its signature is checked against the configured signing keys.
//!
//! Choices:
//! - A firmware's id is `fw-` and the first 16 hex digits of the SHA-256 of `name`, a NUL and
//!   `version`: the same name and version always have the same id, so a second upload of them
//!   is a conflict, not a second firmware.
//! - A signature signs the artifact's SHA-256 digest: the signed message is those 32 bytes
//!   (`openssl dgst -sha256 -binary fw.bin > fw.sha256`, then sign `fw.sha256`). Ed25519 signs
//!   it as it is; ECDSA P-256 signs it with SHA-256 (ASN.1 DER signature), as
//!   `openssl dgst -sha256 -sign key.pem fw.sha256` does. A device checks the same way.
//! - Signing keys are public keys in PEM (SubjectPublicKeyInfo), named by an id.

use std::cmp::Ordering;
use std::fmt;

use mast_meta::Op;
use mast_meta::tables::FIRMWARE;
use ring::signature::{ECDSA_P256_SHA256_ASN1, ED25519, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::profile::{RegistryError, decode_versioned, encode_versioned};

const RECORD_VERSION: u64 = 1;

/// The longest firmware name.
pub const MAX_NAME: usize = 128;
/// The longest release notes.
pub const MAX_NOTES: usize = 16 * 1024;

/// What an artifact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Firmware,
    Software,
    Config,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Firmware => "firmware",
            Kind::Software => "software",
            Kind::Config => "config",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::Firmware, Kind::Software, Kind::Config]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Alg {
    Ed25519,
    EcdsaP256,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Ed25519 => "ed25519",
            Alg::EcdsaP256 => "ecdsa-p256",
        }
    }
}

/// A configured signing key: its id and public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub id: String,
    pub alg: Alg,
    /// The raw public key ring verifies with (Ed25519: 32 bytes; P-256: the uncompressed point).
    key: Vec<u8>,
}

/// The OIDs of the key algorithms (`id-Ed25519`, `id-ecPublicKey` with `prime256v1`).
const OID_ED25519: &str = "1.3.101.112";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";

impl SigningKey {
    /// A key from its PEM SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`): Ed25519 or
    /// ECDSA P-256.
    pub fn from_pem(id: &str, pem_text: &str) -> Result<SigningKey, String> {
        let block = pem::parse(pem_text.trim()).map_err(|e| format!("key {id:?}: {e}"))?;
        if block.tag() != "PUBLIC KEY" {
            return Err(format!(
                "key {id:?}: a PEM PUBLIC KEY (SubjectPublicKeyInfo), not {}",
                block.tag()
            ));
        }
        let (_, spki) = SubjectPublicKeyInfo::from_der(block.contents())
            .map_err(|e| format!("key {id:?}: {e}"))?;
        let oid = spki.algorithm.algorithm.to_id_string();
        let alg = match oid.as_str() {
            OID_ED25519 => Alg::Ed25519,
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string());
                if curve.as_deref() != Some(OID_P256) {
                    return Err(format!("key {id:?}: an EC key on P-256 only"));
                }
                Alg::EcdsaP256
            }
            other => return Err(format!("key {id:?}: Ed25519 or ECDSA P-256, not {other}")),
        };
        Ok(SigningKey {
            id: id.to_owned(),
            alg,
            key: spki.subject_public_key.data.to_vec(),
        })
    }

    /// Whether `signature` signs `sha256` (the artifact's digest) with this key.
    pub fn verifies(&self, sha256: &[u8; 32], signature: &[u8]) -> bool {
        let alg: &dyn ring::signature::VerificationAlgorithm = match self.alg {
            Alg::Ed25519 => &ED25519,
            Alg::EcdsaP256 => &ECDSA_P256_SHA256_ASN1,
        };
        UnparsedPublicKey::new(alg, &self.key)
            .verify(sha256, signature)
            .is_ok()
    }
}

/// An artifact's signature, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub alg: Alg,
    pub key_id: String,
    /// The signature, base64 (standard alphabet, padded).
    pub value: String,
}

/// A version: Semantic Versioning 2.0.0 (`1.4.0`, `2.0.0-rc.1+build.5`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(semver::Version);

impl Version {
    pub fn parse(s: &str) -> Result<Version, String> {
        semver::Version::parse(s.trim_start_matches('v'))
            .map(Version)
            .map_err(|e| format!("version {s:?} is not a semantic version (such as 1.4.0): {e}"))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    /// SemVer precedence (build metadata does not order; it breaks ties so the order is total).
    fn cmp(&self, other: &Version) -> Ordering {
        self.0
            .cmp_precedence(&other.0)
            .then_with(|| self.0.cmp(&other.0))
    }
}

/// A firmware record (`firmware`, key = its id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firmware {
    pub id: String,
    pub name: String,
    /// As given, checked to be a semantic version.
    pub version: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_revision: Option<String>,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_notes: Option<String>,
    pub created_at: i64,
    /// Soft delete: kept for the history of the jobs that used it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<i64>,
}

/// What an upload says about itself (the query string of `POST /api/v1/firmware`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub device_type: Option<String>,
    #[serde(default)]
    pub hardware_revision: Option<String>,
    /// Base64 signature of the artifact's SHA-256.
    #[serde(default)]
    pub signature: Option<String>,
    /// The signing key it was made with (needed with a signature).
    #[serde(default)]
    pub key_id: Option<String>,
    #[serde(default)]
    pub release_notes: Option<String>,
}

/// The id of the firmware `name` at `version`.
pub fn firmware_id(name: &str, version: &str) -> String {
    let mut m = Vec::with_capacity(name.len() + version.len() + 1);
    m.extend_from_slice(name.as_bytes());
    m.push(0);
    m.extend_from_slice(version.as_bytes());
    let d = ring::digest::digest(&ring::digest::SHA256, &m);
    format!("fw-{}", crate::hex(&d.as_ref()[..8]))
}

fn check_label(what: &str, s: &str, max: usize) -> Result<(), RegistryError> {
    if s.is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(RegistryError::bad(format!(
            "{what}: 1 to {max} bytes, no control characters"
        )));
    }
    Ok(())
}

impl Upload {
    /// Checks what can be checked before the bytes arrive.
    pub fn check(&self) -> Result<(), RegistryError> {
        check_label("name", &self.name, MAX_NAME)?;
        Version::parse(&self.version).map_err(RegistryError::bad)?;
        if let Some(k) = &self.kind
            && Kind::parse(k).is_none()
        {
            return Err(RegistryError::bad(format!(
                "kind {k:?}: firmware, software or config"
            )));
        }
        for (what, v) in [
            ("device_type", &self.device_type),
            ("hardware_revision", &self.hardware_revision),
        ] {
            if let Some(v) = v {
                check_label(what, v, MAX_NAME)?;
            }
        }
        if self
            .release_notes
            .as_ref()
            .is_some_and(|n| n.len() > MAX_NOTES)
        {
            return Err(RegistryError::bad(format!(
                "release_notes: at most {MAX_NOTES} bytes"
            )));
        }
        if self.signature.is_some() != self.key_id.is_some() {
            return Err(RegistryError::bad(
                "signature and key_id go together: the signature and the key that made it",
            ));
        }
        Ok(())
    }

    /// The record of this upload, once its bytes arrived (`size`, `sha256`) at `now_ns`; the
    /// signature, if any, checked against `keys` (a bad one is refused: 422).
    pub fn record(
        &self,
        size: u64,
        sha256: &[u8; 32],
        keys: &[SigningKey],
        now_ns: i64,
    ) -> Result<Firmware, RegistryError> {
        self.check()?;
        let signature = match (&self.signature, &self.key_id) {
            (Some(sig), Some(key_id)) => {
                let key = keys.iter().find(|k| &k.id == key_id).ok_or_else(|| {
                    RegistryError::bad(format!("no signing key {key_id:?} is configured"))
                })?;
                let raw = base64_decode(sig)
                    .ok_or_else(|| RegistryError::bad("signature: not base64"))?;
                if !key.verifies(sha256, &raw) {
                    return Err(RegistryError {
                        status: 422,
                        code: "bad_signature",
                        message: format!(
                            "the signature does not verify with key {key_id:?} over the artifact's SHA-256"
                        ),
                    });
                }
                Some(Signature {
                    alg: key.alg,
                    key_id: key_id.clone(),
                    value: sig.clone(),
                })
            }
            _ => None,
        };
        Ok(Firmware {
            id: firmware_id(&self.name, &self.version),
            name: self.name.clone(),
            version: self.version.clone(),
            kind: self
                .kind
                .as_deref()
                .and_then(Kind::parse)
                .unwrap_or(Kind::Firmware),
            device_type: self.device_type.clone(),
            hardware_revision: self.hardware_revision.clone(),
            size,
            sha256: crate::hex(sha256),
            signature,
            release_notes: self.release_notes.clone(),
            created_at: now_ns,
            deleted_at: None,
        })
    }
}

impl Firmware {
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self, RECORD_VERSION)
    }

    pub fn decode(bytes: &[u8]) -> Result<Firmware, String> {
        decode_versioned(bytes, RECORD_VERSION, "firmware record")
    }

    pub fn put(&self) -> Op {
        Op::Put {
            table: FIRMWARE,
            key: self.id.as_bytes().to_vec(),
            value: self.encode(),
        }
    }

    pub fn version(&self) -> Option<Version> {
        Version::parse(&self.version).ok()
    }

    /// Whether a device of `device_type` and `hardware_revision` may take it: each the
    /// firmware names must match (one it does not name matches anything).
    pub fn compatible(&self, device_type: Option<&str>, hardware_revision: Option<&str>) -> bool {
        let fits = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        fits(&self.device_type, device_type) && fits(&self.hardware_revision, hardware_revision)
    }
}

/// Standard base64 (padding optional), or `None`.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let s = s.trim().trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding (at most 4 of them).
    (bits < 6 && acc == 0).then_some(out)
}

#[cfg(test)]
mod tests;
