//! The certificate registry, sans IO: one record per client certificate Mast knows (the
//! `certificates` table, `iot.certificates`), and the rules of its status.
//!
//! ```text
//!   PENDING_ACTIVATION ──register──▶ ACTIVE ──renewal used──▶ INACTIVE
//!          │                           │                          │
//!          └───────────revoke──────────┴──────────revoke──────────┴──▶ REVOKED (final)
//! ```
//!
//! A PENDING_ACTIVATION certificate (made by CreateKeysAndCertificate or
//! CreateCertificateFromCsr, not yet registered) is removed when its ownership token expires.
//! Only an ACTIVE certificate connects; INACTIVE and REVOKED are refused in the TLS handshake.

use std::fmt;

use mast_meta::Op;
use mast_meta::tables::CERTIFICATES;
use serde::{Deserialize, Serialize};

use super::ca::CertInfo;
use crate::profile::{RegistryError, decode_versioned, encode_versioned};

/// The version of the certificate record this build writes (docs/formats/meta.md).
const RECORD_VERSION: u64 = 1;

/// How often, at most, a certificate's `last_used_at` is written (ns): a reconnect storm
/// must not become a write storm. `last_used_at` is exact to this much.
pub const LAST_USED_GRANULARITY_NS: i64 = 60_000_000_000;

/// A certificate's status, as AWS IoT names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Made for a device that has not registered yet.
    PendingActivation,
    /// In use: connects.
    Active,
    /// Replaced by a renewal that has been used.
    Inactive,
    /// Refused for good by an operator.
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::PendingActivation => "PENDING_ACTIVATION",
            Status::Active => "ACTIVE",
            Status::Inactive => "INACTIVE",
            Status::Revoked => "REVOKED",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::PendingActivation,
            Status::Active,
            Status::Inactive,
            Status::Revoked,
        ]
        .into_iter()
        .find(|x| x.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether a connection with it is accepted.
    pub fn connects(self) -> bool {
        self == Status::Active
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the certificate came to be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Made {
    /// `mast ca issue` (a device certificate).
    Issued,
    /// `mast ca claim` (a claim certificate for fleet provisioning).
    Claim,
    /// CreateKeysAndCertificate: the key made by Mast.
    Create,
    /// CreateCertificateFromCsr: the key never left the device.
    Csr,
    /// A renewal by CSR from a device with a valid certificate.
    Renewal,
    /// Just-in-time registration: signed by an enrolled CA Mast did not issue from.
    Jitr,
    /// First seen on a connection, from a configured `client_ca`.
    Seen,
}

impl Made {
    pub fn as_str(self) -> &'static str {
        match self {
            Made::Issued => "issued",
            Made::Claim => "claim",
            Made::Create => "create",
            Made::Csr => "csr",
            Made::Renewal => "renewal",
            Made::Jitr => "jitr",
            Made::Seen => "seen",
        }
    }
}

/// A certificate's record, as stored in `certificates` (a JSON object with `"v": 1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// SHA-256 of the DER, lower-case hex (also the key).
    pub id: String,
    /// The device it acts for; `None` for a claim certificate and a pending one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The template a claim certificate provisions with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    pub status: Status,
    pub made: Made,
    /// Serial number, lower-case hex.
    pub serial: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// The issuer's common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Validity, ns since the epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// ns since the epoch.
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// The certificate this one renews.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
    /// The renewal that replaced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    /// The enrolled CA that issued it (just-in-time registration): its devices are refused
    /// while that CA's enrolment is disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

const NS: i64 = 1_000_000_000;

impl CertRecord {
    /// A record of the certificate `info` describes. A claim certificate names its template
    /// and acts for no device; any other names its device by CN (for `Seen` and `Issued`
    /// certificates; a pending one gets its device when it registers).
    pub fn new(info: &CertInfo, made: Made, status: Status, now_ns: i64) -> CertRecord {
        let device_id = match (&info.claim_template, made, status) {
            (Some(_), _, _) | (None, _, Status::PendingActivation) => None,
            (None, _, _) => info.common_name.clone(),
        };
        CertRecord {
            id: info.fingerprint.clone(),
            device_id,
            template: info.claim_template.clone(),
            status,
            made: if info.claim_template.is_some() && made == Made::Issued {
                Made::Claim
            } else {
                made
            },
            serial: info.serial.clone(),
            common_name: info.common_name.clone(),
            issuer: info.issuer.clone(),
            not_before: info.not_before.saturating_mul(NS),
            not_after: info.not_after.saturating_mul(NS),
            created_at: now_ns,
            last_used_at: None,
            revoked_at: None,
            replaces: None,
            replaced_by: None,
            ca: None,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self, RECORD_VERSION)
    }

    pub fn decode(bytes: &[u8]) -> Result<CertRecord, String> {
        decode_versioned(bytes, RECORD_VERSION, "certificate record")
    }

    /// The write that stores it.
    pub fn put(&self) -> Op {
        Op::Put {
            table: CERTIFICATES,
            key: self.id.as_bytes().to_vec(),
            value: self.encode(),
        }
    }

    /// The write that removes it (a pending certificate never registered).
    pub fn remove(&self) -> Op {
        Op::Del {
            table: CERTIFICATES,
            key: self.id.as_bytes().to_vec(),
        }
    }

    /// Whether a claim certificate (it may only provision).
    pub fn is_claim(&self) -> bool {
        self.template.is_some()
    }

    /// Revoked by an operator at `now_ns`. Revoking a revoked certificate changes nothing.
    pub fn revoke(&self, now_ns: i64) -> CertRecord {
        if self.status == Status::Revoked {
            return self.clone();
        }
        CertRecord {
            status: Status::Revoked,
            revoked_at: Some(now_ns),
            ..self.clone()
        }
    }

    /// Registered for `device_id` (RegisterThing): PENDING_ACTIVATION → ACTIVE.
    pub fn activate(&self, device_id: &str) -> Result<CertRecord, RegistryError> {
        match self.status {
            Status::PendingActivation => Ok(CertRecord {
                status: Status::Active,
                device_id: Some(device_id.to_owned()),
                ..self.clone()
            }),
            s => Err(RegistryError::conflict(format!(
                "certificate {} is {s}, not PENDING_ACTIVATION",
                self.id
            ))),
        }
    }

    /// Its renewal `by` has been used: ACTIVE → INACTIVE. Anything else stays as it is.
    pub fn replaced(&self, by: &str) -> CertRecord {
        if self.status != Status::Active {
            return self.clone();
        }
        CertRecord {
            status: Status::Inactive,
            replaced_by: Some(by.to_owned()),
            ..self.clone()
        }
    }

    /// The record after a connection with it at `now_ns`, if `last_used_at` is due to be
    /// written (see [`LAST_USED_GRANULARITY_NS`]).
    pub fn used(&self, now_ns: i64) -> Option<CertRecord> {
        let due = self
            .last_used_at
            .is_none_or(|t| now_ns.saturating_sub(t) >= LAST_USED_GRANULARITY_NS);
        due.then(|| CertRecord {
            last_used_at: Some(now_ns),
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests;
