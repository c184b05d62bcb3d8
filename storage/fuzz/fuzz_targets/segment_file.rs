//! Fuzzes the segment file readers: the footer decoder on raw bytes (no CRC in the way), and the
//! whole-file path (magic, trailer, footer CRC, every block's chunks) on the same bytes, and on
//! a real segment image with the input spliced into its footer and data region. None may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mast_storage::fuzzing::segment_footer(data);
    mast_storage::fuzzing::segment_image(data);
    mast_storage::fuzzing::write_batch(data);
});
