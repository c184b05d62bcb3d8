use mast_devices::certs::ca::{Ca, Leaf};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use mast_protocol::ProtocolVersion;

use super::*;
use crate::config::MqttConfig;

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

struct Fixture {
    _dir: tempfile::TempDir,
    meta: Arc<MetaStore>,
    writer: Arc<Writer>,
    ca: CaDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(MetaStore::open(&dir.path().join(mast_meta::FILE)).unwrap());
        let writer = Arc::new(Writer::start(Arc::clone(&meta)));
        let ca = CaDir::new(dir.path());
        ca.init("Fleet", 30, None).unwrap();
        Fixture {
            _dir: dir,
            meta,
            writer,
            ca,
        }
    }

    fn load(&self) -> Certificates {
        Certificates::load(&self.meta, Arc::clone(&self.writer), self.ca.clone()).unwrap()
    }

    /// The record as durable in the store, once everything submitted is committed.
    fn stored(&self, id: &str) -> Option<CertRecord> {
        let seq = self.writer.submit(vec![mast_meta::Op::Put {
            table: mast_meta::tables::CERTIFICATES,
            key: b"~barrier".to_vec(),
            value: b"{}".to_vec(),
        }]);
        assert!(self.writer.wait(seq, COMMIT_TIMEOUT));
        self.meta
            .get(CERTIFICATES, id.as_bytes())
            .unwrap()
            .map(|v| CertRecord::decode(&v).unwrap())
    }
}

fn other_ca_cert(cn: &str) -> Vec<u8> {
    let ca = Ca::create("Customer CA", time::OffsetDateTime::now_utc(), 30).unwrap();
    let issued = ca
        .issue(
            &Leaf::Device(cn.into()),
            time::OffsetDateTime::now_utc(),
            30,
        )
        .unwrap();
    der(&issued.cert_pem)
}

#[test]
fn issued_certificates_are_imported_at_start_and_server_ones_are_not() {
    let f = Fixture::new();
    let dev = f.ca.issue(&Leaf::Device("dev-1".into()), 30).unwrap();
    let claim = f.ca.issue(&Leaf::Claim("factory".into()), 30).unwrap();
    let server =
        f.ca.issue(
            &Leaf::Server {
                dns: vec!["localhost".into()],
                ips: vec![],
            },
            30,
        )
        .unwrap();
    let certs = f.load();
    let d = certs.get(&dev.info.fingerprint).unwrap();
    assert_eq!(d.status, Status::Active);
    assert_eq!(d.made, Made::Issued);
    assert_eq!(d.device_id.as_deref(), Some("dev-1"));
    assert_eq!(d.last_used_at, None);
    let c = certs.get(&claim.info.fingerprint).unwrap();
    assert_eq!(c.made, Made::Claim);
    assert_eq!(c.template.as_deref(), Some("factory"));
    assert_eq!(c.device_id, None);
    assert!(certs.get(&server.info.fingerprint).is_none());
    assert_eq!(certs.list(&Filter::default()).len(), 2);
    assert_eq!(f.stored(&dev.info.fingerprint), Some(d.clone()), "durable");

    // A second start finds them in the store and writes nothing new.
    let again = f.load();
    assert_eq!(again.get(&dev.info.fingerprint), Some(d));
}

#[test]
fn a_connection_records_its_certificate_and_revocation_refuses_it() {
    let f = Fixture::new();
    let certs = f.load();
    // Issued while the server runs: recorded as issued on first connect.
    let dev = f.ca.issue(&Leaf::Device("dev-2".into()), 30).unwrap();
    let dev_der = der(&dev.cert_pem);
    let dev_cert = PeerCert::new(&dev_der);
    assert_eq!(certs.refuses(&dev_cert), None, "unknown");
    let r = certs.connected(&dev_cert).unwrap();
    assert_eq!(r.made, Made::Issued);
    assert_eq!(r.status, Status::Active);
    assert_eq!(r.device_id.as_deref(), Some("dev-2"));
    let used = r.last_used_at.unwrap();
    assert_eq!(r.created_at, used);
    // A reconnect within the minute writes nothing.
    assert_eq!(certs.connected(&dev_cert).unwrap().last_used_at, Some(used));
    assert_eq!(f.stored(&r.id), Some(r.clone()));

    // Signed by a configured client CA Mast did not issue from: seen.
    let seen_der = other_ca_cert("dev-3");
    let seen = certs.connected(&PeerCert::new(&seen_der)).unwrap();
    assert_eq!(seen.made, Made::Seen);
    assert_eq!(seen.issuer.as_deref(), Some("Customer CA"));

    let filter = |device: Option<&str>, status| Filter {
        device: device.map(str::to_owned),
        status,
    };
    assert_eq!(certs.list(&filter(Some("dev-2"), None)), vec![r.clone()]);

    let revoked = certs.revoke(&r.id.to_ascii_uppercase()).unwrap();
    assert_eq!(revoked.status, Status::Revoked);
    assert!(revoked.revoked_at.is_some());
    assert_eq!(
        f.stored(&r.id),
        Some(revoked.clone()),
        "durable when it returns"
    );
    assert_eq!(certs.refuses(&dev_cert), Some(CertRefusal::Revoked));
    let denied = certs.connected(&dev_cert).unwrap_err();
    assert_eq!(denied.code, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(denied.why, "certificate revoked");
    assert_eq!(certs.revoke(&r.id).unwrap(), revoked, "idempotent");
    assert_eq!(
        certs.list(&filter(None, Some(Status::Revoked))),
        vec![revoked]
    );
    assert_eq!(certs.list(&filter(None, Some(Status::Active))), vec![seen]);
    assert_eq!(certs.revoke("00").unwrap_err().status, 404);

    // Revocation outlives a restart.
    assert_eq!(f.load().refuses(&dev_cert), Some(CertRefusal::Revoked));
}

fn request<'a>(client_id: &'a str, cert: PeerCert<'a>) -> ConnectRequest<'a> {
    ConnectRequest {
        client_id,
        username: Some("?SDK=Python&Version=1.24.0"),
        password: None,
        cert: Some(cert),
        version: ProtocolVersion::V311,
        clean_start: true,
    }
}

#[test]
fn a_claim_certificate_connects_with_any_client_id_and_a_device_one_with_its_own() {
    let f = Fixture::new();
    let certs = Arc::new(f.load());
    let creds = EngineCredentials::new(
        ConfigCredentials::new(&MqttConfig::default()),
        Arc::clone(&certs),
    );
    let claim = f.ca.issue(&Leaf::Claim("factory".into()), 30).unwrap();
    let claim_der = der(&claim.cert_pem);
    for id in ["serial-001", "serial-002"] {
        let got = creds
            .authenticate(&request(id, PeerCert::new(&claim_der)))
            .unwrap();
        assert_eq!(got.client_id.as_deref(), Some(id));
        assert_eq!(
            got.cert.unwrap().fingerprint,
            PeerCert::new(&claim_der).fingerprint()
        );
    }
    let dev = f.ca.issue(&Leaf::Device("dev-4".into()), 30).unwrap();
    let dev_der = der(&dev.cert_pem);
    assert_eq!(
        creds
            .authenticate(&request("", PeerCert::new(&dev_der)))
            .unwrap()
            .client_id
            .as_deref(),
        Some("dev-4")
    );
    assert_eq!(
        creds
            .authenticate(&request("dev-5", PeerCert::new(&dev_der)))
            .unwrap_err()
            .code,
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
    );
    certs.revoke(&claim.info.fingerprint).unwrap();
    assert_eq!(
        creds.refuses_certificate(&PeerCert::new(&claim_der)),
        Some(CertRefusal::Revoked)
    );
    assert!(
        creds
            .authenticate(&request("serial-003", PeerCert::new(&claim_der)))
            .is_err()
    );
}

#[test]
fn fingerprints_parse_from_hex() {
    let fp = Fingerprint::of(b"x");
    assert_eq!(parse_fingerprint(&fp.to_string()), Some(fp));
    assert_eq!(parse_fingerprint("zz"), None);
    assert_eq!(parse_fingerprint(&"g".repeat(64)), None);
}

#[test]
fn only_the_fleet_ca_makes_claims_and_its_unknown_leaves_are_refused() {
    let f = Fixture::new();
    let certs = f.load();
    // A claim marker from another CA is not a claim.
    let other = Ca::create("Customer CA", time::OffsetDateTime::now_utc(), 30).unwrap();
    let forged = other
        .issue(
            &Leaf::Claim("factory".into()),
            time::OffsetDateTime::now_utc(),
            30,
        )
        .unwrap();
    let forged_der = der(&forged.cert_pem);
    let r = certs.connected(&PeerCert::new(&forged_der)).unwrap();
    assert_eq!((r.made, r.template), (Made::Seen, None));
    assert_eq!(
        r.device_id.as_deref(),
        Some("claim-factory"),
        "a device by its CN"
    );

    // A leaf of the fleet CA that is neither in issued/ nor recorded (provisioning made it and
    // it was removed unregistered) is refused in the handshake and at CONNECT.
    let fleet = f.ca.open().unwrap();
    let stray = fleet
        .issue(
            &Leaf::Device("victim".into()),
            time::OffsetDateTime::now_utc(),
            30,
        )
        .unwrap();
    let stray_der = der(&stray.cert_pem);
    let stray_cert = PeerCert::new(&stray_der);
    assert_eq!(certs.refuses(&stray_cert), Some(CertRefusal::Revoked));
    assert_eq!(
        certs.connected(&stray_cert).unwrap_err().code,
        ReasonCode::NOT_AUTHORIZED
    );
    // One `mast ca issue` made while the server runs is let in.
    let issued = f.ca.issue(&Leaf::Device("late".into()), 30).unwrap();
    let issued_der = der(&issued.cert_pem);
    assert_eq!(certs.refuses(&PeerCert::new(&issued_der)), None);
    assert_eq!(
        certs.connected(&PeerCert::new(&issued_der)).unwrap().made,
        Made::Issued
    );
}

#[test]
fn revoking_a_certificate_revokes_its_unused_renewals() {
    let f = Fixture::new();
    let certs = f.load();
    let old = f.ca.issue(&Leaf::Device("dev-r".into()), 30).unwrap();
    let old_der = der(&old.cert_pem);
    let old_rec = certs.connected(&PeerCert::new(&old_der)).unwrap();
    let fleet = f.ca.open().unwrap();
    let new = fleet
        .issue(
            &Leaf::Device("dev-r".into()),
            time::OffsetDateTime::now_utc(),
            30,
        )
        .unwrap();
    let mut renewal = CertRecord::new(&new.info, Made::Renewal, Status::Active, 1);
    renewal.device_id = Some("dev-r".into());
    renewal.replaces = Some(old_rec.id.clone());
    let seq = certs.add(renewal.clone(), vec![]).unwrap();
    assert!(f.writer.wait(Some(seq), COMMIT_TIMEOUT));
    certs.revoke(&old_rec.id).unwrap();
    assert_eq!(certs.get(&renewal.id).unwrap().status, Status::Revoked);
    assert_eq!(f.stored(&renewal.id).unwrap().status, Status::Revoked);
}
