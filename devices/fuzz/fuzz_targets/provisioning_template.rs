//! Provisioning templates sent over REST, and the parameters devices register with: a template
//! is accepted or refused with 400; an accepted one provisions or refuses, never panics, and a
//! device id it makes is a valid one.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use mast_devices::certs::provision::Template;
use mast_devices::profile::check_device_id;

fuzz_target!(|data: &[u8]| {
    let (body, params) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let t = match Template::parse(body) {
        Ok(t) => t,
        Err(e) => {
            assert_eq!(e.status, 400);
            return;
        }
    };
    let mut p = BTreeMap::new();
    for pair in String::from_utf8_lossy(params).split('\n') {
        if let Some((k, v)) = pair.split_once('=') {
            p.insert(k.to_owned(), v.to_owned());
        }
    }
    if let Ok(d) = t.provision(&p) {
        assert!(check_device_id(&d.device_id).is_ok());
    }
});
