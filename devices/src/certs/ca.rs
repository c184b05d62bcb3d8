//! The fleet certificate authority, sans IO: make or import a CA, issue device, claim and server
//! certificates, sign a device's CSR, and read what a certificate says (fingerprint, serial,
//! validity, device id, claim template). The caller keeps the PEM text (the engine under
//! `DATA/ca/`, the key readable by its owner only).
//!
//! Choices (docs/plans/issue-15.md):
//! - P-256 keys, ECDSA-SHA256 signatures; 128-bit random serials.
//! - The CA may issue leaves only (path length 0); it is valid for `days` from creation.
//! - A leaf is valid from an hour before issue (clocks of devices drift) for `days`.
//! - A device certificate names its device in the subject CN (the client id) and may
//!   authenticate clients only; a claim certificate names its template in a SAN URI
//!   `urn:mast:claim:{template}` (read without a lookup); a server certificate carries the
//!   DNS names and IP addresses it serves.
//! - A CSR's subject and extensions are the device's wish, not its right: the certificate
//!   gets the device id and Mast's own extensions; only the public key is taken.

use std::fmt;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::hex;

/// The SAN URI prefix that marks a claim certificate.
pub const CLAIM_URI_PREFIX: &str = "urn:mast:claim:";

/// Why a CA could not be made, read or used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaError(pub String);

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CaError {}

fn err(what: &str) -> impl Fn(rcgen::Error) -> CaError + '_ {
    move |e| CaError(format!("{what}: {e}"))
}

/// A certificate to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    /// A device's own certificate; the id is its client id.
    Device(String),
    /// A claim certificate for the provisioning template.
    Claim(String),
    /// The server's TLS certificate.
    Server { dns: Vec<String>, ips: Vec<IpAddr> },
}

/// An issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub cert_pem: String,
    /// The new key, when Mast made it (`None` for a CSR: the key never left the device).
    pub key_pem: Option<String>,
    pub info: CertInfo,
}

/// What a certificate says, as the registry records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// SHA-256 of the DER, lower-case hex: the certificate's id.
    pub fingerprint: String,
    /// The serial number, lower-case hex.
    pub serial: String,
    /// The subject CN, if any.
    pub common_name: Option<String>,
    /// The issuer CN, if any.
    pub issuer: Option<String>,
    /// Validity, epoch seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// The template of a claim certificate.
    pub claim_template: Option<String>,
    pub is_ca: bool,
    /// May authenticate a TLS client: no extended key usage, or one that allows client
    /// authentication (a server certificate does not).
    pub client_auth: bool,
}

/// A certificate authority: its certificate and the key that signs.
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// 128 random bits, the top bit clear and the first byte not zero (a positive INTEGER of
/// exactly 16 bytes).
fn serial() -> Result<SerialNumber, CaError> {
    let mut b = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .map_err(|_| CaError("no randomness for a serial number".into()))?;
    b[0] &= 0x7f;
    b[0] |= 0x01;
    Ok(SerialNumber::from_slice(&b))
}

fn new_key() -> Result<KeyPair, CaError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err("making a P-256 key"))
}

fn dn(cn: &str) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    d
}

fn validity(p: &mut CertificateParams, now: OffsetDateTime, days: u32) {
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(i64::from(days.max(1)));
}

impl Ca {
    /// A new CA named `name`, valid for `days`.
    pub fn create(name: &str, now: OffsetDateTime, days: u32) -> Result<Ca, CaError> {
        let key = new_key()?;
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(name);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.serial_number = Some(serial()?);
        validity(&mut p, now, days);
        let cert = p
            .self_signed(&key)
            .map_err(err("signing the CA certificate"))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(p, key),
        })
    }

    /// An existing CA: its certificate and key (PEM). Refused if the certificate is not a CA or
    /// the key is not its key.
    pub fn import(cert_pem: &str, key_pem: &str) -> Result<Ca, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(err("reading the CA key"))?;
        let der = pem_der(cert_pem, "CERTIFICATE")?;
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| CaError(format!("reading the CA certificate: {e}")))?;
        if !cert.is_ca() {
            return Err(CaError(
                "the certificate is not a CA (basic constraints)".into(),
            ));
        }
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CaError("the key is not the CA certificate's key".into()));
        }
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(err("reading the CA certificate"))?;
        Ok(Ca {
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA key (PEM): for the caller to store, readable by its owner only.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Issues `leaf` with a new key, valid for `days` from `now`.
    pub fn issue(&self, leaf: &Leaf, now: OffsetDateTime, days: u32) -> Result<Issued, CaError> {
        let key = new_key()?;
        let p = self.leaf_params(leaf, now, days)?;
        let cert = p
            .signed_by(&key, &self.issuer)
            .map_err(err("signing the certificate"))?;
        let cert_pem = cert.pem();
        Ok(Issued {
            info: info(&cert_pem)?,
            cert_pem,
            key_pem: Some(key.serialize_pem()),
        })
    }

    /// Signs a device's CSR (PEM) for `device_id`: its signature is checked and only its public
    /// key is taken.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        device_id: &str,
        now: OffsetDateTime,
        days: u32,
    ) -> Result<Issued, CaError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| CaError(format!("invalid CSR: {e}")))?;
        csr.params = self.leaf_params(&Leaf::Device(device_id.to_owned()), now, days)?;
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(err("signing the certificate"))?;
        let cert_pem = cert.pem();
        Ok(Issued {
            info: info(&cert_pem)?,
            cert_pem,
            key_pem: None,
        })
    }

    fn leaf_params(
        &self,
        leaf: &Leaf,
        now: OffsetDateTime,
        days: u32,
    ) -> Result<CertificateParams, CaError> {
        let mut p = CertificateParams::default();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(serial()?);
        validity(&mut p, now, days);
        let ia5 = |s: &str| {
            s.try_into()
                .map_err(|_| CaError(format!("not an ASCII name: {s:?}")))
        };
        match leaf {
            Leaf::Device(id) => {
                p.distinguished_name = dn(id);
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
            Leaf::Claim(template) => {
                p.distinguished_name = dn(&format!("claim-{template}"));
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                p.subject_alt_names =
                    vec![SanType::URI(ia5(&format!("{CLAIM_URI_PREFIX}{template}"))?)];
            }
            Leaf::Server { dns, ips } => {
                let cn = dns
                    .first()
                    .cloned()
                    .or_else(|| ips.first().map(ToString::to_string))
                    .ok_or_else(|| CaError("a server certificate needs a name".into()))?;
                p.distinguished_name = dn(&cn);
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                p.key_usages.push(KeyUsagePurpose::KeyEncipherment);
                for d in dns {
                    p.subject_alt_names.push(SanType::DnsName(ia5(d)?));
                }
                for ip in ips {
                    p.subject_alt_names.push(SanType::IpAddress(*ip));
                }
            }
        }
        Ok(p)
    }
}

/// The subject CN a CSR (PEM) asks for, if it has one; an error for text that is not a CSR
/// with a valid signature.
pub fn csr_common_name(csr_pem: &str) -> Result<Option<String>, CaError> {
    let csr = CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| CaError(format!("invalid CSR: {e}")))?;
    Ok(csr
        .params
        .distinguished_name
        .get(&DnType::CommonName)
        .and_then(|v| match v {
            rcgen::DnValue::PrintableString(s) => Some(s.as_str().to_owned()),
            rcgen::DnValue::Utf8String(s) => Some(s.clone()),
            rcgen::DnValue::Ia5String(s) => Some(s.as_str().to_owned()),
            _ => None,
        }))
}

/// The DER of the first PEM block labelled `label`.
fn pem_der(text: &str, label: &str) -> Result<Vec<u8>, CaError> {
    let blocks = pem::parse_many(text).map_err(|e| CaError(format!("reading PEM: {e}")))?;
    blocks
        .into_iter()
        .find(|b| b.tag() == label)
        .map(|b| b.into_contents())
        .ok_or_else(|| CaError(format!("no {label} in the PEM text")))
}

/// The SHA-256 fingerprint of a certificate's DER, lower-case hex (the registry's id).
pub fn fingerprint(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// What the certificate (PEM) says.
pub fn info(cert_pem: &str) -> Result<CertInfo, CaError> {
    info_der(&pem_der(cert_pem, "CERTIFICATE")?)
}

/// What the certificate (DER) says.
pub fn info_der(der: &[u8]) -> Result<CertInfo, CaError> {
    let (_, c) = X509Certificate::from_der(der)
        .map_err(|e| CaError(format!("reading a certificate: {e}")))?;
    let cn = |n: &x509_parser::x509::X509Name<'_>| {
        n.iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .map(str::to_owned)
    };
    let claim_template = c.subject_alternative_name().ok().flatten().and_then(|san| {
        san.value.general_names.iter().find_map(|g| match g {
            GeneralName::URI(u) => u
                .strip_prefix(CLAIM_URI_PREFIX)
                .filter(|t| super::check_template_name(t).is_ok())
                .map(str::to_owned),
            _ => None,
        })
    });
    Ok(CertInfo {
        fingerprint: fingerprint(der),
        serial: hex(c.raw_serial()),
        common_name: cn(c.subject()),
        issuer: cn(c.issuer()),
        not_before: c.validity().not_before.timestamp(),
        not_after: c.validity().not_after.timestamp(),
        claim_template,
        is_ca: c.is_ca(),
        client_auth: match c.extended_key_usage() {
            Ok(Some(eku)) => eku.value.client_auth || eku.value.any,
            Ok(None) => true,
            Err(_) => false,
        },
    })
}

#[cfg(test)]
mod tests;
