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
    /// Where devices reach the HTTP API, for the download URLs of job documents (such as
    /// `https://iot.example.com:8080`); empty: `http://` and `http.listen` (127.0.0.1 for an
    /// unspecified address).
    pub download_base_url: String,
    /// How long a download URL in a job document works, seconds (60 to 86,400).
    pub download_url_secs: u64,
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
            download_base_url: String::new(),
            download_url_secs: 3600,
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

    /// The base of download URLs, for a server listening for HTTP on `listen`.
    pub fn download_base(&self, listen: std::net::SocketAddr) -> String {
        if !self.download_base_url.is_empty() {
            return self.download_base_url.trim_end_matches('/').to_owned();
        }
        let mut a = listen;
        if a.ip().is_unspecified() {
            a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{a}")
    }

    pub(super) fn check(&self) -> Result<(), Invalid> {
        if !(60..=86_400).contains(&self.download_url_secs) {
            return Err(Invalid::new(
                "ota.download_url_secs",
                "ota.download_url_secs is 60 to 86400",
            ));
        }
        let b = &self.download_base_url;
        if !(b.is_empty() || b.starts_with("http://") || b.starts_with("https://")) {
            return Err(Invalid::new(
                "ota.download_base_url",
                "ota.download_base_url is an http:// or https:// URL",
            ));
        }
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
