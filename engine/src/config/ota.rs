//! `[ota]`: the firmware registry — how large an artifact may be, and the keys its signatures
//! are checked with.

use mast_devices::ota::firmware::SigningKey;
use serde::{Deserialize, Serialize};

use super::Invalid;

/// Over-the-air updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtaConfig {
    /// The largest artifact an upload may carry, bytes (refused while it streams in).
    pub max_artifact_bytes: u64,
    /// Refuse unsigned uploads.
    pub require_signature: bool,
    /// Public keys (PEM, Ed25519 or ECDSA P-256) that sign artifacts' SHA-256 digests.
    pub signing_keys: Vec<SigningKeyConfig>,
}

/// One signing key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    /// Its name, given with a signature (`key_id`).
    pub id: String,
    /// The public key, PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_key: String,
}

impl Default for OtaConfig {
    fn default() -> Self {
        OtaConfig {
            max_artifact_bytes: 2 << 30,
            require_signature: false,
            signing_keys: Vec::new(),
        }
    }
}

impl OtaConfig {
    /// The signing keys, parsed.
    pub fn keys(&self) -> Result<Vec<SigningKey>, String> {
        self.signing_keys
            .iter()
            .map(|k| SigningKey::from_pem(&k.id, &k.public_key))
            .collect()
    }

    pub(super) fn check(&self) -> Result<(), Invalid> {
        if self.max_artifact_bytes == 0 {
            return Err(Invalid::new(
                "ota.max_artifact_bytes",
                "ota.max_artifact_bytes must be at least 1",
            ));
        }
        self.keys()
            .map_err(|e| Invalid::new("ota.signing_keys", format!("ota.signing_keys: {e}")))?;
        if self.require_signature && self.signing_keys.is_empty() {
            return Err(Invalid::new(
                "ota.require_signature",
                "ota.require_signature needs ota.signing_keys",
            ));
        }
        Ok(())
    }
}
