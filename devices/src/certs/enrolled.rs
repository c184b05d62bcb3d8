//! CAs enrolled for just-in-time registration, sans IO: a device presenting a certificate
//! signed by an enrolled CA, one Mast did not issue, is registered on its first connect — its
//! device id made from the certificate's subject by the CA's rule (default `{CommonName}`).
//! Disabling a CA's enrolment refuses its devices, registered or not (revocation by
//! hierarchy, as Azure DPS's enrollment groups).
//!
//! The parameters a rule may use are the subject's attributes as AWS JITP names them
//! (`CommonName`, `SerialNumber`, `Organization`, `OrganizationalUnit`, `Country`,
//! `StateName`, `Locality`, `DistinguishedNameQualifier`, each also as
//! `AWS::IoT::Certificate::{Name}`) and `CertificateId`.

use std::collections::BTreeMap;

use mast_meta::Op;
use mast_meta::tables::ENROLLED_CAS;
use serde::{Deserialize, Serialize};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use super::ca::{CaError, fingerprint};
use super::provision::{Refused, check_pattern, expand};
use crate::profile::{RegistryError, check_device_id, decode_versioned, encode_versioned};

const RECORD_VERSION: u64 = 1;

/// The device id rule when the enrolment does not give one.
pub const DEFAULT_DEVICE_ID: &str = "{CommonName}";

/// Whether a CA's devices are registered and let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enrolment {
    Enabled,
    Disabled,
}

impl Enrolment {
    pub fn as_str(self) -> &'static str {
        match self {
            Enrolment::Enabled => "enabled",
            Enrolment::Disabled => "disabled",
        }
    }
}

/// An enrolled CA (`enrolled_cas`, key = the SHA-256 fingerprint of its certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolledCa {
    pub id: String,
    pub certificate_pem: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    pub enrolment: Enrolment,
    /// The device id rule: a pattern of the subject's parameters.
    pub device_id: String,
    /// Validity of the CA certificate, ns.
    pub not_after: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What `POST /api/v1/cas` sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrol {
    /// The CA certificate, PEM.
    pub certificate: String,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub enrolment: Option<Enrolment>,
}

/// What `PATCH /api/v1/cas/{id}` sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub enrolment: Option<Enrolment>,
}

fn check_rule(rule: &str) -> Result<(), RegistryError> {
    if rule.is_empty() {
        return Err(RegistryError::bad("device_id: a rule such as {CommonName}"));
    }
    check_pattern(rule).map_err(RegistryError::bad)
}

impl EnrolledCa {
    /// A CA enrolled from `req` at `now_ns`: its certificate must be a CA's.
    pub fn enrol(req: &Enrol, now_ns: i64) -> Result<EnrolledCa, RegistryError> {
        if req.certificate.matches("-----BEGIN").count() != 1 {
            return Err(RegistryError::bad(
                "certificate: exactly one PEM certificate, the CA's (each CA of a chain is enrolled on its own)",
            ));
        }
        let info = super::ca::info(&req.certificate)
            .map_err(|e| RegistryError::bad(format!("certificate: {}", e.0)))?;
        if !info.is_ca {
            return Err(RegistryError::bad(
                "certificate: not a CA certificate (basic constraints cA is not set)",
            ));
        }
        let rule = req.device_id.as_deref().unwrap_or(DEFAULT_DEVICE_ID);
        check_rule(rule)?;
        Ok(EnrolledCa {
            id: info.fingerprint,
            certificate_pem: req.certificate.trim().to_owned() + "\n",
            common_name: info.common_name,
            enrolment: req.enrolment.unwrap_or(Enrolment::Enabled),
            device_id: rule.to_owned(),
            not_after: info.not_after.saturating_mul(1_000_000_000),
            created_at: now_ns,
            updated_at: now_ns,
        })
    }

    /// With `change` applied at `now_ns`.
    pub fn changed(&self, change: &Change, now_ns: i64) -> Result<EnrolledCa, RegistryError> {
        let mut next = self.clone();
        if let Some(rule) = &change.device_id {
            check_rule(rule)?;
            next.device_id.clone_from(rule);
        }
        if let Some(e) = change.enrolment {
            next.enrolment = e;
        }
        if next != *self {
            next.updated_at = now_ns;
        }
        Ok(next)
    }

    pub fn enabled(&self) -> bool {
        self.enrolment == Enrolment::Enabled
    }

    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self, RECORD_VERSION)
    }

    pub fn decode(bytes: &[u8]) -> Result<EnrolledCa, String> {
        decode_versioned(bytes, RECORD_VERSION, "enrolled CA")
    }

    pub fn put(&self) -> Op {
        Op::Put {
            table: ENROLLED_CAS,
            key: self.id.as_bytes().to_vec(),
            value: self.encode(),
        }
    }

    pub fn remove(&self) -> Op {
        Op::Del {
            table: ENROLLED_CAS,
            key: self.id.as_bytes().to_vec(),
        }
    }

    /// The device id its rule makes of a device certificate's `params`.
    pub fn device_id_of(&self, params: &BTreeMap<String, String>) -> Result<String, Refused> {
        let id = expand(&self.device_id, params)?;
        check_device_id(&id).map_err(|e| {
            Refused::new(
                400,
                "InvalidParameters",
                format!("device id {id:?}: {}", e.message),
            )
        })?;
        Ok(id)
    }
}

/// What identifies an issuer: its subject (DER) and subject key identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerKey {
    subject: Vec<u8>,
    key_id: Option<Vec<u8>>,
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CaError> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| CaError(format!("reading a certificate: {e}")))
}

/// A CA certificate (DER) as the issuer its leaves name.
pub fn issuer_key_of_ca(ca_der: &[u8]) -> Result<IssuerKey, CaError> {
    let c = parse(ca_der)?;
    let key_id = c
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        });
    Ok(IssuerKey {
        subject: c.subject().as_raw().to_vec(),
        key_id,
    })
}

/// Whether the leaf certificate `leaf_der` names `issuer` as its issuer (subject, and key
/// identifier when both have one). The chain itself was verified by the TLS layer.
pub fn issued_by(leaf_der: &[u8], issuer: &IssuerKey) -> bool {
    let Ok(c) = parse(leaf_der) else {
        return false;
    };
    if c.issuer().as_raw() != issuer.subject.as_slice() {
        return false;
    }
    let aki = c
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
    match (aki, &issuer.key_id) {
        (Some(a), Some(k)) => a == *k,
        _ => true,
    }
}

/// The subject's attributes of a device certificate, as JITP parameters, and its id.
pub fn subject_parameters(leaf_der: &[u8]) -> Result<BTreeMap<String, String>, CaError> {
    use x509_parser::oid_registry as oids;
    let c = parse(leaf_der)?;
    let names = [
        (oids::OID_X509_COMMON_NAME, "CommonName"),
        (oids::OID_X509_SERIALNUMBER, "SerialNumber"),
        (oids::OID_X509_ORGANIZATION_NAME, "Organization"),
        (oids::OID_X509_ORGANIZATIONAL_UNIT, "OrganizationalUnit"),
        (oids::OID_X509_COUNTRY_NAME, "Country"),
        (oids::OID_X509_STATE_OR_PROVINCE_NAME, "StateName"),
        (oids::OID_X509_LOCALITY_NAME, "Locality"),
        (oids::OID_X509_DN_QUALIFIER, "DistinguishedNameQualifier"),
    ];
    let mut out = BTreeMap::new();
    for attr in c.subject().iter_attributes() {
        let Some((_, name)) = names.iter().find(|(oid, _)| attr.attr_type() == oid) else {
            continue;
        };
        let Ok(v) = attr.as_str() else {
            continue;
        };
        out.entry((*name).to_owned())
            .or_insert_with(|| v.to_owned());
    }
    let aws: Vec<(String, String)> = out
        .iter()
        .map(|(k, v)| (format!("AWS::IoT::Certificate::{k}"), v.clone()))
        .collect();
    out.extend(aws);
    let id = fingerprint(leaf_der);
    out.insert("AWS::IoT::Certificate::Id".into(), id.clone());
    out.insert("CertificateId".into(), id);
    Ok(out)
}

#[cfg(test)]
mod tests;
