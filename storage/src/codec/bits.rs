//! Word-based bit streams: [`BitWriter`] and [`BitReader`].
//!
//! Bit order is LSB-first: the first bit written is bit 0 of the first byte, and a field of `n`
//! bits is stored with its least significant bit first. The writer gathers bits in a `u64` and
//! flushes whole little-endian words; the reader refills a `u64` buffer with one unaligned
//! 8-byte load, so no loop ever runs per bit. The final partial byte is padded with zeros.

use super::CodecError;

/// Low `n` bits set (`n` in 0..=64).
#[inline]
pub(crate) fn mask(n: u32) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// Appends bit fields to a byte vector.
#[derive(Debug)]
pub struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    filled: u32,
}

impl<'a> BitWriter<'a> {
    /// A writer appending to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter {
            out,
            acc: 0,
            filled: 0,
        }
    }

    /// Writes the low `n` bits of `value` (`n` in 0..=64; higher bits of `value` are ignored).
    #[inline]
    pub fn write(&mut self, value: u64, n: u32) {
        if n == 0 {
            return;
        }
        let v = value & mask(n);
        self.acc |= v << self.filled;
        let total = self.filled + n;
        if total >= 64 {
            self.out.extend_from_slice(&self.acc.to_le_bytes());
            // The bits of `v` that did not fit; `filled` is below 64, so the shift is in range
            // whenever it is non-zero.
            self.acc = if self.filled == 0 {
                0
            } else {
                v >> (64 - self.filled)
            };
            self.filled = total - 64;
        } else {
            self.filled = total;
        }
    }

    /// Writes one bit.
    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        self.write(u64::from(bit), 1);
    }

    /// Flushes the last partial word, padding the last byte with zero bits.
    pub fn finish(self) {
        let bytes = self.filled.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_le_bytes()[..bytes]);
    }
}

/// Reads bit fields written by [`BitWriter`] from untrusted bytes.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next byte to load into `buf`.
    pos: usize,
    /// Unread bits, LSB first; bits at `avail` and above may hold stream bits loaded early.
    buf: u64,
    avail: u32,
}

impl<'a> BitReader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            pos: 0,
            buf: 0,
            avail: 0,
        }
    }

    /// Tops the buffer up to at least 57 bits, or to the end of the input.
    #[inline]
    fn refill(&mut self) {
        let end = self.pos.wrapping_add(8);
        if let Some(Ok(word)) = self.bytes.get(self.pos..end).map(<[u8; 8]>::try_from) {
            // `avail` <= 63 here, so the shift is in range. Bits loaded beyond the counted
            // bytes are the same stream bits the next load ORs in again.
            self.buf |= u64::from_le_bytes(word) << self.avail;
            let take = (63 - self.avail) >> 3;
            self.pos += take as usize;
            self.avail += take * 8;
        } else {
            while self.avail <= 56 {
                let Some(&b) = self.bytes.get(self.pos) else {
                    break;
                };
                self.buf |= u64::from(b) << self.avail;
                self.pos += 1;
                self.avail += 8;
            }
        }
    }

    /// Tops the buffer up as far as the input allows and returns the bits available (>= 57
    /// unless the input is nearly exhausted).
    #[inline]
    pub fn fill(&mut self) -> u32 {
        if self.avail < 57 {
            self.refill();
        }
        self.avail
    }

    /// Makes at least `n` bits (n <= 56) available, or fails.
    #[inline]
    pub fn ensure(&mut self, n: u32) -> Result<(), CodecError> {
        if self.avail < n {
            self.refill();
            if self.avail < n {
                return Err(CodecError::Truncated { what: "bit stream" });
            }
        }
        Ok(())
    }

    /// The next `n` bits (n <= 56) without consuming them; call [`ensure`](Self::ensure) first.
    #[inline]
    pub fn peek(&self, n: u32) -> u64 {
        self.buf & mask(n)
    }

    /// Drops `n` bits that [`ensure`](Self::ensure) made available.
    #[inline]
    pub fn consume(&mut self, n: u32) {
        let n = n.min(self.avail);
        self.buf = if n >= 64 { 0 } else { self.buf >> n };
        self.avail -= n;
    }

    /// Reads `n` bits, `n` in 0..=56.
    #[inline]
    pub fn read(&mut self, n: u32) -> Result<u64, CodecError> {
        debug_assert!(n <= 56);
        self.ensure(n)?;
        let v = self.peek(n);
        self.consume(n);
        Ok(v)
    }

    /// Reads `n` bits, `n` in 0..=64.
    #[inline]
    pub fn read_u64(&mut self, n: u32) -> Result<u64, CodecError> {
        if n <= 56 {
            self.read(n)
        } else {
            let lo = self.read(32)?;
            let hi = self.read(n.min(64) - 32)?;
            Ok(lo | (hi << 32))
        }
    }

    /// Reads one bit.
    #[inline]
    pub fn read_bit(&mut self) -> Result<bool, CodecError> {
        Ok(self.read(1)? == 1)
    }

    /// Succeeds if fewer than 8 bits (the padding) remain unread.
    pub fn finish(&self) -> Result<(), CodecError> {
        let unread_bytes = self.bytes.len() - self.pos;
        let unread_bits = unread_bytes * 8 + self.avail as usize;
        if unread_bits >= 8 {
            Err(CodecError::TrailingBytes(unread_bits / 8))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fields_round_trip(fields in prop::collection::vec((any::<u64>(), 0u32..=64), 0..200)) {
            let mut bytes = Vec::new();
            let mut w = BitWriter::new(&mut bytes);
            for &(v, n) in &fields {
                w.write(v, n);
            }
            w.finish();
            let total: u32 = fields.iter().map(|f| f.1).sum();
            prop_assert_eq!(bytes.len(), total.div_ceil(8) as usize);
            let mut r = BitReader::new(&bytes);
            for &(v, n) in &fields {
                prop_assert_eq!(r.read_u64(n).unwrap(), v & mask(n));
            }
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn reads_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..40), widths in prop::collection::vec(0u32..=64, 0..40)) {
            let mut r = BitReader::new(&bytes);
            for n in widths {
                if r.read_u64(n).is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn reading_past_the_end_is_truncated() {
        let mut r = BitReader::new(&[0xff]);
        assert_eq!(r.read(8), Ok(0xff));
        assert!(r.read(1).is_err());
    }
}
