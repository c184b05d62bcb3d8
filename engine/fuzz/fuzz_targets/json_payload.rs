//! JSON telemetry payloads from devices: any bytes either decode into rows or are refused, and a
//! refusal adds nothing to the batch — with every value a field, and with declared tag keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mast_engine::ingest::json;
use mast_storage::WriteBatch;

fuzz_target!(|data: &[u8]| {
    let keys: [Box<str>; 2] = ["a".into(), "site".into()];
    for tag_keys in [&[][..], &keys[..]] {
        let mut batch = WriteBatch::new();
        match json::decode_tagged(data, "dev", "telemetry", 0, tag_keys, &mut batch) {
            Ok(n) => assert_eq!(batch.rows(), n),
            Err(_) => assert!(batch.is_empty()),
        }
    }
});
