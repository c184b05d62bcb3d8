//! InfluxDB line-protocol payloads from devices: any bytes either decode into rows or are
//! refused, and a refusal adds nothing to the batch.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mast_engine::ingest::line_protocol;
use mast_storage::WriteBatch;

fuzz_target!(|data: &[u8]| {
    let mut batch = WriteBatch::new();
    match line_protocol::decode(data, "dev", None, 0, &mut batch) {
        Ok(n) => assert_eq!(batch.rows(), n),
        Err(_) => assert!(batch.is_empty()),
    }
});
