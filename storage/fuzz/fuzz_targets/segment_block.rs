//! Fuzzes the decoders a segment block feeds — timestamps, validity bitmaps and the float, int,
//! bool and string codecs — with bytes that no checksum has vetted. None may panic, hang or
//! allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mast_storage::fuzzing::segment_block(data);
});
