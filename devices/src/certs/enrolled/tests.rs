use time::OffsetDateTime;

use super::*;
use crate::certs::ca::{Ca, Leaf};

fn der(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).unwrap().into_contents()
}

fn enrol(ca: &Ca, rule: Option<&str>) -> Result<EnrolledCa, RegistryError> {
    EnrolledCa::enrol(
        &Enrol {
            certificate: ca.cert_pem().to_owned(),
            device_id: rule.map(str::to_owned),
            enrolment: None,
        },
        7,
    )
}

#[test]
fn a_ca_is_enrolled_and_its_leaves_are_recognised() {
    let now = OffsetDateTime::now_utc();
    let ca = Ca::create("Customer CA", now, 30).unwrap();
    let other = Ca::create("Customer CA", now, 30).unwrap();
    let e = enrol(&ca, None).unwrap();
    assert_eq!(e.device_id, "{CommonName}");
    assert!(e.enabled());
    assert_eq!(e.common_name.as_deref(), Some("Customer CA"));
    assert_eq!(EnrolledCa::decode(&e.encode()), Ok(e.clone()));

    let leaf = ca.issue(&Leaf::Device("meter-9".into()), now, 30).unwrap();
    let key = issuer_key_of_ca(&der(ca.cert_pem())).unwrap();
    let other_key = issuer_key_of_ca(&der(other.cert_pem())).unwrap();
    let leaf_der = der(&leaf.cert_pem);
    assert!(issued_by(&leaf_der, &key));
    assert!(
        !issued_by(&leaf_der, &other_key),
        "same name, another key: told apart by the key identifier"
    );

    let params = subject_parameters(&leaf_der).unwrap();
    assert_eq!(params["CommonName"], "meter-9");
    assert_eq!(params["AWS::IoT::Certificate::CommonName"], "meter-9");
    assert_eq!(params["CertificateId"], leaf.info.fingerprint);
    assert_eq!(e.device_id_of(&params).unwrap(), "meter-9");
    let prefixed = enrol(&ca, Some("plant-{CommonName}")).unwrap();
    assert_eq!(prefixed.device_id_of(&params).unwrap(), "plant-meter-9");
    let missing = enrol(&ca, Some("{SerialNumber}")).unwrap();
    assert_eq!(
        missing.device_id_of(&params).unwrap_err().code,
        "InvalidParameters"
    );

    let off = e
        .changed(
            &Change {
                device_id: None,
                enrolment: Some(Enrolment::Disabled),
            },
            9,
        )
        .unwrap();
    assert!(!off.enabled());
    assert_eq!(off.updated_at, 9);
    let same = Change {
        device_id: None,
        enrolment: None,
    };
    assert_eq!(
        e.changed(&same, 9).unwrap(),
        e,
        "nothing changed, nothing written"
    );
}

#[test]
fn bad_enrolments_are_refused() {
    let now = OffsetDateTime::now_utc();
    let ca = Ca::create("Customer CA", now, 30).unwrap();
    let leaf = ca.issue(&Leaf::Device("d".into()), now, 30).unwrap();
    let not_ca = EnrolledCa::enrol(
        &Enrol {
            certificate: leaf.cert_pem,
            device_id: None,
            enrolment: None,
        },
        0,
    )
    .unwrap_err();
    assert!(not_ca.message.contains("not a CA"), "{}", not_ca.message);
    assert_eq!(enrol(&ca, Some("")).unwrap_err().status, 400);
    assert_eq!(enrol(&ca, Some("a-{")).unwrap_err().status, 400);
    let garbage = EnrolledCa::enrol(
        &Enrol {
            certificate: "hello".into(),
            device_id: None,
            enrolment: None,
        },
        0,
    )
    .unwrap_err();
    assert_eq!(garbage.status, 400);
    let key = issuer_key_of_ca(&der(ca.cert_pem())).unwrap();
    assert!(!issued_by(b"not der", &key));
    assert!(subject_parameters(b"not der").is_err());
}
