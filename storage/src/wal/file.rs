//! WAL files: the 26-byte file header, the `{first_lsn:020}.wal` naming, and the creation of a new
//! file.
//!
//! ```text
//! offset  size  field
//! 0       8     magic      b"MASTWAL\0"
//! 8       2     version    u16 LE, = 1
//! 10      4     shard      u32 LE
//! 14      8     first_lsn  u64 LE, LSN of the file's first record (= the number in its name)
//! 22      4     crc        u32 LE, CRC32C over bytes 0..22
//! ```
//!
//! Durability contract: [`create`] returns only once the new file, with its header, is durable
//! under its final name: it writes `{name}.tmp`, fsyncs it, renames it to `{name}` (atomically
//! replacing an empty file of that name, if any) and fsyncs the directory. A crash at any point
//! leaves either no new file or a complete one, never a torn header under a `.wal` name.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::FaultHook;
use super::error::WalError;
use crate::types::Lsn;

/// The file magic.
pub(crate) const MAGIC: [u8; 8] = *b"MASTWAL\0";
/// The format version this build writes and reads.
pub(crate) const VERSION: u16 = 1;
/// Bytes in the file header.
pub(crate) const HEADER_LEN: usize = 26;
/// Suffix of WAL files.
const SUFFIX: &str = ".wal";
/// Suffix of files being created.
pub(crate) const TMP_SUFFIX: &str = ".wal.tmp";

/// A decoded, checksum-verified file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileHeader {
    pub(crate) version: u16,
    pub(crate) shard: u32,
    pub(crate) first_lsn: Lsn,
}

/// Encodes a version-1 header.
pub(crate) fn encode_header(shard: u32, first_lsn: Lsn) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let mut body = Vec::with_capacity(HEADER_LEN);
    body.extend_from_slice(&MAGIC);
    body.extend_from_slice(&VERSION.to_le_bytes());
    body.extend_from_slice(&shard.to_le_bytes());
    body.extend_from_slice(&first_lsn.0.to_le_bytes());
    body.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    for (dst, src) in h.iter_mut().zip(body) {
        *dst = src;
    }
    h
}

/// Why a header cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderDefect {
    /// Fewer than [`HEADER_LEN`] bytes.
    Torn,
    /// Wrong magic or checksum.
    Corrupt,
}

/// Decodes and verifies a header (version and shard are the caller's to check).
pub(crate) fn decode_header(bytes: &[u8]) -> Result<FileHeader, HeaderDefect> {
    let Some((h, _)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(HeaderDefect::Torn);
    };
    let [
        m0,
        m1,
        m2,
        m3,
        m4,
        m5,
        m6,
        m7,
        v0,
        v1,
        s0,
        s1,
        s2,
        s3,
        f0,
        f1,
        f2,
        f3,
        f4,
        f5,
        f6,
        f7,
        c0,
        c1,
        c2,
        c3,
    ] = *h;
    if [m0, m1, m2, m3, m4, m5, m6, m7] != MAGIC {
        return Err(HeaderDefect::Corrupt);
    }
    let (body, _) = h.split_at(HEADER_LEN - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes([c0, c1, c2, c3]) {
        return Err(HeaderDefect::Corrupt);
    }
    Ok(FileHeader {
        version: u16::from_le_bytes([v0, v1]),
        shard: u32::from_le_bytes([s0, s1, s2, s3]),
        first_lsn: Lsn(u64::from_le_bytes([f0, f1, f2, f3, f4, f5, f6, f7])),
    })
}

/// `{first_lsn:020}.wal`
pub(crate) fn file_name(first_lsn: Lsn) -> String {
    format!("{:020}{SUFFIX}", first_lsn.0)
}

/// The LSN in a WAL file name, or `None` for any other name.
pub(crate) fn parse_file_name(name: &OsStr) -> Option<Lsn> {
    let digits = name.to_str()?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

/// Creates `dir/{first_lsn:020}.wal` holding only its header, durably (see the module doc).
/// The returned handle is positioned at the end of the header, ready for appends.
pub(crate) fn create(
    dir: &Path,
    shard: u32,
    first_lsn: Lsn,
    fault: Option<&dyn FaultHook>,
) -> Result<(File, PathBuf), WalError> {
    let name = file_name(first_lsn);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|source| WalError::Open {
            path: tmp.clone(),
            source,
        })?;
    let header = encode_header(shard, first_lsn);
    fault
        .map_or(Ok(()), |f| f.before_write(header.len()))
        .and_then(|()| file.write_all(&header))
        .map_err(|source| WalError::Write {
            path: tmp.clone(),
            offset: 0,
            len: header.len(),
            source,
        })?;
    fault
        .map_or(Ok(()), |f| f.before_sync())
        .and_then(|()| file.sync_all())
        .map_err(|source| WalError::Sync {
            path: tmp.clone(),
            source,
        })?;
    std::fs::rename(&tmp, &path).map_err(|source| WalError::Rename {
        from: tmp,
        to: path.clone(),
        source,
    })?;
    sync_dir(dir, fault)?;
    Ok((file, path))
}

/// fsyncs a directory so that creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path, fault: Option<&dyn FaultHook>) -> Result<(), WalError> {
    fault
        .map_or(Ok(()), |f| f.before_sync())
        .and_then(|()| File::open(dir)?.sync_all())
        .map_err(|source| WalError::SyncDir {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = encode_header(3, Lsn(99));
        assert_eq!(&h[..8], b"MASTWAL\0");
        assert_eq!(
            decode_header(&h),
            Ok(FileHeader {
                version: 1,
                shard: 3,
                first_lsn: Lsn(99)
            })
        );
        for cut in 0..HEADER_LEN {
            assert_eq!(decode_header(&h[..cut]), Err(HeaderDefect::Torn));
        }
        for i in 0..HEADER_LEN {
            let mut bad = h;
            bad[i] ^= 1;
            assert_eq!(decode_header(&bad), Err(HeaderDefect::Corrupt), "byte {i}");
        }
    }

    #[test]
    fn header_bytes_match_the_documented_example() {
        // docs/formats/wal.md, "File header": shard 3, first LSN 1.
        let expected = [
            0x4d, 0x41, 0x53, 0x54, 0x57, 0x41, 0x4c, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00,
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x42, 0x28, 0x06, 0x16,
        ];
        assert_eq!(encode_header(3, Lsn(1)), expected);
    }

    #[test]
    fn names_round_trip_and_others_are_ignored() {
        let n = file_name(Lsn(42));
        assert_eq!(n, "00000000000000000042.wal");
        assert_eq!(parse_file_name(OsStr::new(&n)), Some(Lsn(42)));
        assert_eq!(
            parse_file_name(OsStr::new("18446744073709551615.wal")),
            Some(Lsn(u64::MAX))
        );
        for other in [
            "42.wal",
            "0000000000000000004x.wal",
            "00000000000000000042.wal.tmp",
            "99999999999999999999.wal",
            "00000000000000000042",
        ] {
            assert_eq!(parse_file_name(OsStr::new(other)), None, "{other}");
        }
    }
}
