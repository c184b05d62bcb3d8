//! What devices publish to the jobs and streams topics, and what operators send as a job: any
//! bytes are read or refused with a code, never a panic; an accepted update applies or is
//! refused by the execution's rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mast_devices::ota::execution::{Execution, parse_update};
use mast_devices::ota::job::{JobSpec, Request, parse_ask};
use mast_devices::ota::stream::parse_get;

fuzz_target!(|data: &[u8]| {
    let e = Execution::queued("j", "t", 1, 0);
    match parse_update(data) {
        Ok(u) => {
            if let Err(r) = e.apply(&u, 1, Some(60_000_000_000)) {
                assert!(!r.code.is_empty());
            }
        }
        Err(r) => assert!(matches!(r.code, "InvalidJson" | "InvalidRequest"), "{r:?}"),
    }
    if let Err(r) = parse_ask(data) {
        assert!(matches!(r.code, "InvalidJson" | "InvalidRequest"), "{r:?}");
    }
    match parse_get(data, 1 << 20) {
        Ok(g) => assert!(g.blocks.iter().all(|&b| b * g.block_size < 1 << 20)),
        Err((r, _)) => assert!(!r.code.is_empty()),
    }
    if let Ok(spec) = serde_json::from_slice::<JobSpec>(data) {
        let _ = spec.job(None, "fuzz".into(), 0);
    }
    if let Ok(t) = std::str::from_utf8(data) {
        let _ = Request::parse(t);
        let _ = mast_devices::ota::stream::parse_topic(t);
        let _ = mast_devices::rfc3339_ns(t);
    }
});
