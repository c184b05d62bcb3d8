//! The fleet-provisioning requests devices publish (and the hook's answers): any bytes are read
//! or refused with an AWS error document, never a panic; a refusal is a 4xx with a code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mast_devices::certs::provision::{
    Refused, hook_answer, parse_create_from_csr, parse_create_keys, parse_register, parse_topic,
};

fn refusal(e: &Refused) {
    assert!((400..500).contains(&e.status), "{e:?}");
    assert!(!e.code.is_empty());
    let doc: serde_json::Value = serde_json::from_slice(&e.payload()).unwrap();
    assert_eq!(doc["statusCode"], e.status);
}

fuzz_target!(|data: &[u8]| {
    if let Err(e) = parse_create_keys(data) {
        refusal(&e);
    }
    if let Err(e) = parse_create_from_csr(data) {
        refusal(&e);
    }
    match parse_register(data) {
        Ok(r) => assert!(!r.token.is_empty()),
        Err(e) => refusal(&e),
    }
    if let Err(e) = hook_answer(data) {
        assert_eq!(e.status, 403);
    }
    if let Ok(t) = std::str::from_utf8(data) {
        let _ = parse_topic(t);
    }
});
