//! The framing of one WAL record: encoding into the append buffer and decoding from bytes read
//! back from disk.
//!
//! ```text
//! offset  size  field
//! 0       4     len   u32 LE, payload length in bytes
//! 4       4     crc   u32 LE, CRC32C over (lsn bytes ‖ payload)
//! 8       8     lsn   u64 LE
//! 16      len   payload (opaque bytes)
//! ```
//!
//! Durability contract: none here — this module only turns records into bytes and back. Decoding
//! never panics and never trusts a byte before the length bound and the checksum have been checked:
//! a `len` above the limit is corruption ([`RecordError::BadLength`]) even when the rest of the
//! record is missing, a CRC mismatch is [`RecordError::ChecksumMismatch`], and a record cut short
//! is "incomplete" (`Ok(None)`), which recovery reports as a torn tail.

use crate::types::Lsn;

/// Bytes of framing before each payload: `len`, `crc`, `lsn`.
pub const RECORD_HEADER_LEN: usize = 16;

/// Default (and documented) upper bound on one record's payload: 64 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 64 << 20;

/// A decoded record: its LSN, its payload (borrowed from the input), and the bytes it occupied.
pub type DecodedRecord<'a> = (Lsn, &'a [u8], usize);

/// Why bytes do not decode as a WAL record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The `len` field exceeds the payload limit: the framing is corrupt.
    #[error("WAL record length {len} exceeds the limit of {max} bytes")]
    BadLength {
        /// The `len` field as read.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// The stored CRC32C does not match the LSN and payload bytes.
    #[error(
        "WAL record checksum mismatch (record claims lsn {lsn}): stored {stored:#010x}, computed {computed:#010x}"
    )]
    ChecksumMismatch {
        /// The LSN field as read (not trustworthy: the checksum covers it).
        lsn: Lsn,
        /// The CRC field as read.
        stored: u32,
        /// The CRC computed over the bytes read.
        computed: u32,
    },
    /// A payload too large for the 32-bit length field was given to [`encode_record`].
    #[error("WAL record payload of {len} bytes does not fit the 32-bit length field")]
    PayloadTooLarge {
        /// The payload length.
        len: usize,
    },
}

/// The fixed 16-byte prefix of a record, parsed but not yet verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) len: u32,
    pub(crate) crc: u32,
    pub(crate) lsn: Lsn,
}

impl RecordHeader {
    /// Parses the framing prefix; `max` bounds the payload length.
    pub(crate) fn parse(bytes: &[u8; RECORD_HEADER_LEN], max: usize) -> Result<Self, RecordError> {
        let [
            l0,
            l1,
            l2,
            l3,
            c0,
            c1,
            c2,
            c3,
            s0,
            s1,
            s2,
            s3,
            s4,
            s5,
            s6,
            s7,
        ] = *bytes;
        let len = u32::from_le_bytes([l0, l1, l2, l3]);
        if usize::try_from(len).map_or(true, |l| l > max) {
            return Err(RecordError::BadLength {
                len: u64::from(len),
                max,
            });
        }
        Ok(RecordHeader {
            len,
            crc: u32::from_le_bytes([c0, c1, c2, c3]),
            lsn: Lsn(u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7])),
        })
    }

    /// Payload length as `usize` (lossless: `parse` bounded it by a `usize` limit).
    pub(crate) fn payload_len(&self) -> usize {
        usize::try_from(self.len).unwrap_or(usize::MAX)
    }

    /// Checks the CRC against `payload`.
    pub(crate) fn verify(&self, payload: &[u8]) -> Result<(), RecordError> {
        let computed = record_crc(self.lsn, payload);
        if computed == self.crc {
            Ok(())
        } else {
            Err(RecordError::ChecksumMismatch {
                lsn: self.lsn,
                stored: self.crc,
                computed,
            })
        }
    }
}

/// CRC32C over the little-endian LSN followed by the payload.
fn record_crc(lsn: Lsn, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&lsn.0.to_le_bytes()), payload)
}

/// Appends the framed record to `out`. Allocates nothing beyond growing `out`.
///
/// Fails only when the payload does not fit the 32-bit length field; the WAL's own (smaller)
/// limit is enforced by [`Wal::append`](super::Wal::append).
pub fn encode_record(lsn: Lsn, payload: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
    let len = u32::try_from(payload.len())
        .map_err(|_| RecordError::PayloadTooLarge { len: payload.len() })?;
    out.reserve(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record_crc(lsn, payload).to_le_bytes());
    out.extend_from_slice(&lsn.0.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Decodes the record at the start of `bytes` with the default 64 MiB payload limit.
///
/// `Ok(Some((lsn, payload, consumed)))` for a complete, checksummed record; `Ok(None)` when
/// `bytes` ends before the record does (incomplete — a torn tail if nothing follows on disk).
pub fn decode_record(bytes: &[u8]) -> Result<Option<DecodedRecord<'_>>, RecordError> {
    decode_record_with_limit(bytes, DEFAULT_MAX_RECORD_BYTES)
}

/// [`decode_record`] with an explicit payload limit.
pub fn decode_record_with_limit(
    bytes: &[u8],
    max: usize,
) -> Result<Option<DecodedRecord<'_>>, RecordError> {
    let Some((prefix, rest)) = bytes.split_first_chunk::<RECORD_HEADER_LEN>() else {
        // A length field that is already readable and out of bounds is corruption, not a tear.
        if let Some((len, _)) = bytes.split_first_chunk::<4>() {
            let len = u32::from_le_bytes(*len);
            if usize::try_from(len).map_or(true, |l| l > max) {
                return Err(RecordError::BadLength {
                    len: u64::from(len),
                    max,
                });
            }
        }
        return Ok(None);
    };
    let header = RecordHeader::parse(prefix, max)?;
    let Some(payload) = rest.get(..header.payload_len()) else {
        return Ok(None);
    };
    header.verify(payload)?;
    Ok(Some((
        header.lsn,
        payload,
        RECORD_HEADER_LEN + payload.len(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(lsn: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(Lsn(lsn), payload, &mut out).unwrap();
        out
    }

    #[test]
    fn layout_matches_the_spec() {
        let bytes = encoded(7, b"abc");
        assert_eq!(bytes.len(), 19);
        assert_eq!(&bytes[0..4], &3u32.to_le_bytes());
        let mut covered = 7u64.to_le_bytes().to_vec();
        covered.extend_from_slice(b"abc");
        assert_eq!(&bytes[4..8], &crc32c::crc32c(&covered).to_le_bytes());
        assert_eq!(&bytes[8..16], &7u64.to_le_bytes());
        assert_eq!(&bytes[16..], b"abc");
    }

    #[test]
    fn record_bytes_match_the_documented_example() {
        // docs/formats/wal.md, "Records": LSN 1, payload "hi".
        let expected = [
            0x02, 0x00, 0x00, 0x00, 0xde, 0x25, 0x77, 0x2c, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x68, 0x69,
        ];
        assert_eq!(encoded(1, b"hi"), expected);
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let bytes = encoded(3, b"hello wal");
        for cut in 0..bytes.len() {
            assert_eq!(decode_record(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(
            decode_record(&bytes),
            Ok(Some((Lsn(3), &b"hello wal"[..], bytes.len())))
        );
    }

    #[test]
    fn oversized_length_is_corruption_even_when_truncated() {
        let mut bytes = encoded(1, b"x");
        bytes[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_record(&bytes[..6]),
            Err(RecordError::BadLength { .. })
        ));
        assert!(matches!(
            decode_record_with_limit(&encoded(1, b"12345"), 4),
            Err(RecordError::BadLength { len: 5, max: 4 })
        ));
    }

    #[test]
    fn flipped_bit_anywhere_after_len_is_a_checksum_mismatch() {
        let bytes = encoded(42, b"payload bytes");
        for i in 4..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(
                matches!(
                    decode_record(&bad),
                    Err(RecordError::ChecksumMismatch { .. })
                ),
                "byte {i}"
            );
        }
    }

    proptest! {
        #[test]
        fn round_trip(records in proptest::collection::vec(
            (1u64..u64::MAX, proptest::collection::vec(any::<u8>(), 0..300)), 0..20)) {
            let mut buf = Vec::new();
            for (lsn, p) in &records {
                encode_record(Lsn(*lsn), p, &mut buf).unwrap();
            }
            let mut rest = &buf[..];
            for (lsn, p) in &records {
                let (got_lsn, got, used) = decode_record(rest).unwrap().unwrap();
                prop_assert_eq!(got_lsn, Lsn(*lsn));
                prop_assert_eq!(got, &p[..]);
                rest = &rest[used..];
            }
            prop_assert!(rest.is_empty());
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), max in 0usize..100) {
            let mut rest = &bytes[..];
            while let Ok(Some((_, payload, used))) = decode_record_with_limit(rest, max) {
                prop_assert!(payload.len() <= max);
                prop_assert_eq!(used, RECORD_HEADER_LEN + payload.len());
                rest = &rest[used..];
            }
        }
    }
}
