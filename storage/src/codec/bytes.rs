//! Byte-level helpers shared by the codecs: LEB128 varints, zigzag, and a bounds-checked cursor
//! over untrusted bytes whose every read returns [`CodecError::Truncated`] past the end.

use super::{CodecError, MAX_VALUES};

/// Maps a signed value to an unsigned one so small magnitudes get small codes.
#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends `v` as an unsigned LEB128 varint (7 bits a byte, low group first, high bit = more).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zigzag-encoded as a varint.
pub(crate) fn put_varint_i64(out: &mut Vec<u8>, v: i64) {
    put_varint(out, zigzag(v));
}

/// The number of bytes [`put_varint`] writes for `v`.
pub(crate) fn varint_len(v: u64) -> u64 {
    u64::from(bit_width(v).max(1).div_ceil(7))
}

/// The number of bits needed to hold `v` (0 for 0).
#[inline]
pub(crate) fn bit_width(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// A cursor over untrusted bytes.
#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { rest: bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        let (&b, rest) = self
            .rest
            .split_first()
            .ok_or(CodecError::Truncated { what })?;
        self.rest = rest;
        Ok(b)
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        if n > self.rest.len() {
            return Err(CodecError::Truncated { what });
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    pub(crate) fn u64_le(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let b: [u8; 8] = self
            .take(8, what)?
            .try_into()
            .map_err(|_| CodecError::Truncated { what })?;
        Ok(u64::from_le_bytes(b))
    }

    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8(what)?;
            if shift == 63 && b > 1 {
                return Err(CodecError::Corrupt("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(CodecError::Corrupt("varint longer than 10 bytes"))
    }

    pub(crate) fn varint_i64(&mut self, what: &'static str) -> Result<i64, CodecError> {
        self.varint(what).map(unzigzag)
    }

    /// Reads a value count and checks it against [`MAX_VALUES`].
    pub(crate) fn count(&mut self) -> Result<usize, CodecError> {
        let n = self.varint("value count")?;
        match usize::try_from(n) {
            Ok(n) if n <= MAX_VALUES => Ok(n),
            _ => Err(CodecError::TooManyValues(n)),
        }
    }

    /// Reads a bit width byte (0..=64).
    pub(crate) fn width(&mut self) -> Result<u32, CodecError> {
        let w = self.u8("bit width")?;
        if w > 64 {
            return Err(CodecError::BadWidth(w));
        }
        Ok(u32::from(w))
    }

    /// Succeeds only if every byte was consumed.
    pub(crate) fn finish(self) -> Result<(), CodecError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(CodecError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip(v in any::<u64>(), s in any::<i64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            put_varint_i64(&mut out, s);
            let mut c = Cursor::new(&out);
            prop_assert_eq!(c.varint("v").unwrap(), v);
            prop_assert_eq!(c.varint_i64("s").unwrap(), s);
            prop_assert!(c.finish().is_ok());
        }

        #[test]
        fn varint_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..16)) {
            let _ = Cursor::new(&bytes).varint("v");
        }
    }

    #[test]
    fn zigzag_maps_extremes() {
        for v in [0, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(bit_width(0), 0);
        assert_eq!(bit_width(u64::MAX), 64);
    }
}
