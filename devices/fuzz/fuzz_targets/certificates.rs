//! Certificates and CSRs from outside (a device's CSR, a client certificate, a CA to enrol): any
//! bytes are read or refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mast_devices::certs::ca::{csr_common_name, info, info_der};
use mast_devices::certs::enrolled::{Enrol, EnrolledCa, issuer_key_of_ca, subject_parameters};

fuzz_target!(|data: &[u8]| {
    if let Ok(i) = info_der(data) {
        assert_eq!(i.fingerprint.len(), 64);
    }
    let _ = subject_parameters(data);
    if let Ok(k) = issuer_key_of_ca(data) {
        let _ = mast_devices::certs::enrolled::issued_by(data, &k);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = info(text);
        let _ = csr_common_name(text);
        let req = Enrol {
            certificate: text.to_owned(),
            device_id: None,
            enrolment: None,
        };
        let _ = EnrolledCa::enrol(&req, 0);
    }
});
