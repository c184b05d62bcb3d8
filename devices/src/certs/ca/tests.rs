use super::*;

use rcgen::{CertificateParams, KeyPair};
use x509_parser::prelude::{FromDer, X509Certificate};

/// 2026-12-07T12:00:00Z.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_796_644_800).unwrap()
}

fn der(pem_text: &str) -> Vec<u8> {
    pem_der(pem_text, "CERTIFICATE").unwrap()
}

/// Whether `leaf` is signed by the key of `ca` (both PEM).
fn signed_by(leaf: &str, ca: &str) -> bool {
    let (l, c) = (der(leaf), der(ca));
    let (_, l) = X509Certificate::from_der(&l).unwrap();
    let (_, c) = X509Certificate::from_der(&c).unwrap();
    l.issuer() == c.subject() && l.verify_signature(Some(c.public_key())).is_ok()
}

fn ca() -> Ca {
    Ca::create("Mast fleet CA", now(), 3650).unwrap()
}

#[test]
fn a_new_ca_is_a_self_signed_ca_that_issues_leaves_only() {
    let ca = ca();
    let i = info(ca.cert_pem()).unwrap();
    assert!(i.is_ca);
    assert_eq!(i.common_name.as_deref(), Some("Mast fleet CA"));
    assert_eq!(i.issuer, i.common_name);
    assert!(signed_by(ca.cert_pem(), ca.cert_pem()));
    let d = der(ca.cert_pem());
    let (_, c) = X509Certificate::from_der(&d).unwrap();
    let bc = c.basic_constraints().unwrap().unwrap().value;
    assert_eq!((bc.ca, bc.path_len_constraint), (true, Some(0)));
    let ku = c.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert_eq!(i.not_after - now().unix_timestamp(), 3650 * 86_400);
    assert!(ca.key_pem().contains("PRIVATE KEY"));
    assert!(
        !format!("{ca:?}").contains("PRIVATE"),
        "Debug never shows the key"
    );
}

#[test]
fn a_device_certificate_names_the_device_and_authenticates_clients_only() {
    let ca = ca();
    let d = ca
        .issue(&Leaf::Device("sensor-0042".into()), now(), 365)
        .unwrap();
    assert!(signed_by(&d.cert_pem, ca.cert_pem()));
    let i = &d.info;
    assert_eq!(i.common_name.as_deref(), Some("sensor-0042"));
    assert_eq!(i.issuer.as_deref(), Some("Mast fleet CA"));
    assert!(!i.is_ca);
    assert!(i.client_auth);
    assert_eq!(i.claim_template, None);
    assert_eq!(
        i.not_before,
        now().unix_timestamp() - 3600,
        "an hour of clock drift"
    );
    assert_eq!(i.not_after, now().unix_timestamp() + 365 * 86_400);
    assert_eq!(i.fingerprint, fingerprint(&der(&d.cert_pem)));
    assert_eq!(i.fingerprint.len(), 64);
    let bytes = der(&d.cert_pem);
    let (_, c) = X509Certificate::from_der(&bytes).unwrap();
    let eku = c.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    // The key is the certificate's.
    let key = KeyPair::from_pem(d.key_pem.as_deref().unwrap()).unwrap();
    assert_eq!(c.public_key().raw, key.subject_public_key_info().as_slice());
}

#[test]
fn serials_and_fingerprints_differ_between_certificates() {
    let ca = ca();
    let a = ca.issue(&Leaf::Device("a".into()), now(), 1).unwrap().info;
    let b = ca.issue(&Leaf::Device("a".into()), now(), 1).unwrap().info;
    assert_ne!(a.serial, b.serial);
    assert_ne!(a.fingerprint, b.fingerprint);
    assert_eq!(a.serial.len(), 32, "128 bits");
}

#[test]
fn a_claim_certificate_names_its_template() {
    let ca = ca();
    let c = ca
        .issue(&Leaf::Claim("factory-a".into()), now(), 30)
        .unwrap();
    assert!(signed_by(&c.cert_pem, ca.cert_pem()));
    assert_eq!(c.info.claim_template.as_deref(), Some("factory-a"));
    assert_eq!(c.info.common_name.as_deref(), Some("claim-factory-a"));
}

#[test]
fn a_server_certificate_carries_its_names_and_addresses() {
    let ca = ca();
    let s = ca
        .issue(
            &Leaf::Server {
                dns: vec!["localhost".into(), "mast.example".into()],
                ips: vec!["127.0.0.1".parse().unwrap()],
            },
            now(),
            365,
        )
        .unwrap();
    assert!(signed_by(&s.cert_pem, ca.cert_pem()));
    let bytes = der(&s.cert_pem);
    let (_, c) = X509Certificate::from_der(&bytes).unwrap();
    let san = c.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<String> = san.general_names.iter().map(|g| format!("{g:?}")).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().any(|n| n.contains("localhost")));
    assert!(names.iter().any(|n| n.contains("mast.example")));
    let eku = c.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    assert!(
        !s.info.client_auth,
        "a server certificate is not a client's"
    );
    let none = Leaf::Server {
        dns: vec![],
        ips: vec![],
    };
    assert!(ca.issue(&none, now(), 1).is_err());
}

#[test]
fn a_csr_gets_the_device_id_and_keeps_its_key_only() {
    let ca = ca();
    let device_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
    p.distinguished_name = dn("someone-else");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let csr = p.serialize_request(&device_key).unwrap().pem().unwrap();
    let c = ca.sign_csr(&csr, "sensor-7", now(), 365).unwrap();
    assert_eq!(c.key_pem, None, "the key never left the device");
    assert!(signed_by(&c.cert_pem, ca.cert_pem()));
    assert_eq!(c.info.common_name.as_deref(), Some("sensor-7"));
    assert!(!c.info.is_ca, "what the CSR asks for is not granted");
    let bytes = der(&c.cert_pem);
    let (_, x) = X509Certificate::from_der(&bytes).unwrap();
    assert!(x.subject_alternative_name().unwrap().is_none());
    assert_eq!(
        x.public_key().raw,
        device_key.subject_public_key_info().as_slice()
    );
}

#[test]
fn bad_csrs_are_refused() {
    let ca = ca();
    assert!(ca.sign_csr("junk", "d", now(), 1).is_err());
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    // One bit of the signed part flipped: the signature no longer matches.
    let mut der = csr.der().to_vec();
    let i = der.len() / 3;
    der[i] ^= 0x01;
    let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
    let e = ca.sign_csr(&tampered, "d", now(), 1).unwrap_err();
    assert!(e.0.starts_with("invalid CSR"), "{e}");
}

#[test]
fn an_imported_ca_issues_as_the_original() {
    let original = ca();
    let ca = Ca::import(original.cert_pem(), &original.key_pem()).unwrap();
    let d = ca.issue(&Leaf::Device("x".into()), now(), 1).unwrap();
    assert!(signed_by(&d.cert_pem, original.cert_pem()));
    assert_eq!(ca.cert_pem(), original.cert_pem());
}

#[test]
fn an_import_is_refused_when_the_key_or_the_certificate_is_wrong() {
    let a = ca();
    let b = ca();
    let e = Ca::import(a.cert_pem(), &b.key_pem()).unwrap_err();
    assert!(e.0.contains("not the CA certificate's key"), "{e}");
    let leaf = a.issue(&Leaf::Device("x".into()), now(), 1).unwrap();
    let e = Ca::import(&leaf.cert_pem, leaf.key_pem.as_deref().unwrap()).unwrap_err();
    assert!(e.0.contains("not a CA"), "{e}");
    assert!(Ca::import("junk", &a.key_pem()).is_err());
    assert!(Ca::import(a.cert_pem(), "junk").is_err());
}
