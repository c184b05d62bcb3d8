//! A bounds-checked byte reader for Mast's own binary encodings (write batches, segment footers),
//! and the codecs' varint writers re-exported for them. Reads of outside bytes never panic: every
//! read returns `None` past the end.

// One varint writer for the whole crate: the codecs' (same LEB128 and zigzag as the readers below).
pub(crate) use crate::codec::bytes::{put_varint as put_u64, put_varint_i64 as put_i64};

/// Appends a length-prefixed byte string.
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A cursor over untrusted bytes.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub(crate) fn u32_le(&mut self) -> Option<u32> {
        let b: [u8; 4] = self.take(4)?.try_into().ok()?;
        Some(u32::from_le_bytes(b))
    }

    pub(crate) fn u64_le(&mut self) -> Option<u64> {
        let b: [u8; 8] = self.take(8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    }

    pub(crate) fn var_u64(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    pub(crate) fn var_i64(&mut self) -> Option<i64> {
        let u = self.var_u64()?;
        Some(crate::codec::bytes::unzigzag(u))
    }

    /// A varint used as a count or index, bounded by `max`.
    pub(crate) fn var_len(&mut self, max: usize) -> Option<usize> {
        let v = usize::try_from(self.var_u64()?).ok()?;
        (v <= max).then_some(v)
    }

    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.var_len(self.remaining())?;
        self.take(n)
    }

    pub(crate) fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip(u in any::<u64>(), i in any::<i64>(), b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut out = Vec::new();
            put_u64(&mut out, u);
            put_i64(&mut out, i);
            put_bytes(&mut out, &b);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.var_u64(), Some(u));
            prop_assert_eq!(r.var_i64(), Some(i));
            prop_assert_eq!(r.bytes(), Some(&b[..]));
            prop_assert_eq!(r.remaining(), 0);
        }

        #[test]
        fn reader_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&b);
            while r.var_u64().is_some() {}
            let mut r = Reader::new(&b);
            let _ = r.bytes();
            let _ = r.u64_le();
        }
    }
}
