//! The one place Mast maps files into memory. Everything `unsafe` in the storage engine is here.
//!
//! Only sealed segment files are mapped. They are written once (tmp file → fsync → rename), never
//! modified afterwards, and deleted only by unlinking, which keeps an existing mapping valid on
//! Unix. Every byte range read through a mapping is checksum-verified by the segment reader before
//! it is decoded, so a file damaged on disk yields an error, not undefined values.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Deref;

/// A read-only mapping of a whole sealed segment file.
#[derive(Debug)]
pub(crate) struct ReadOnlyMap(memmap2::Mmap);

impl ReadOnlyMap {
    /// Maps `file` read-only. The file must be a sealed segment (see the module docs).
    pub(crate) fn new(file: &File) -> io::Result<ReadOnlyMap> {
        // SAFETY: memmap2 requires that the mapped file is not modified or truncated while mapped,
        // or reads through the map may see changing bytes or fault. Segment files are immutable
        // once renamed into place: the engine never opens them for writing again, and retention
        // removes them with `unlink`, which leaves the inode and this mapping intact until it is
        // dropped. Another process writing into the data directory is outside our contract, and
        // even then checksums are verified before bytes are decoded.
        let map = unsafe { memmap2::MmapOptions::new().map(file)? };
        Ok(ReadOnlyMap(map))
    }
}

impl Deref for ReadOnlyMap {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}
