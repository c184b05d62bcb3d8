//! `f64` columns with Gorilla XOR compression (Pelkonen et al., "Gorilla: A Fast, Scalable,
//! In-Memory Time Series Database", VLDB 2015, §4.1.2).
//!
//! Each value is XORed with the previous one. Control codes (bits in stream order):
//! `0` the value repeats; `10` the XOR's meaningful bits fit the previous window (same leading
//! and trailing zero counts) and follow; `11` a new window: 5 bits of leading zeros (capped at
//! 31), 6 bits of meaningful length (0 means 64), then the meaningful bits. The first value is
//! stored as 64 raw bits. Works on raw bit patterns, so NaN payloads, `-0.0`, infinities and
//! subnormals round-trip exactly. Layout: `varint count`, then the LSB-first bit stream.

use super::bits::{BitWriter, mask};
use super::bytes::{Cursor, put_varint, varint_len};
use super::{CodecError, append_or_restore};

/// Appends `values` encoded.
pub fn encode(values: &[f64], out: &mut Vec<u8>) {
    put_varint(out, values.len() as u64);
    let Some((first, rest)) = values.split_first() else {
        return;
    };
    out.reserve(values.len() * 2 + 8);
    let mut w = BitWriter::new(out);
    let mut prev = first.to_bits();
    w.write(prev, 64);
    // No window yet: 64 leading zeros can never be matched by a non-zero XOR.
    let (mut lead, mut trail) = (64u32, 0u32);
    for v in rest {
        let bits = v.to_bits();
        let x = bits ^ prev;
        prev = bits;
        if x == 0 {
            w.write(0, 1);
            continue;
        }
        let l = x.leading_zeros().min(31);
        let t = x.trailing_zeros();
        if l >= lead && t >= trail {
            let sig = 64 - lead - trail;
            if sig <= 62 {
                w.write(0b01 | ((x >> trail) << 2), sig + 2);
            } else {
                w.write(0b01, 2);
                w.write(x >> trail, sig);
            }
        } else {
            let sig = 64 - l - t;
            w.write(0b11 | (u64::from(l) << 2) | (u64::from(sig & 63) << 7), 13);
            w.write(x >> t, sig);
            lead = l;
            trail = t;
        }
    }
    w.finish();
}

/// Decodes what [`encode`] wrote, appending the values to `out`.
pub fn decode(bytes: &[u8], out: &mut Vec<f64>) -> Result<(), CodecError> {
    append_or_restore(out, |out| {
        let mut cur = Cursor::new(bytes);
        let n = cur.count()?;
        if n == 0 {
            return cur.finish();
        }
        let stream = cur.take(cur.remaining(), "bit stream")?;
        // Every value after the first takes at least one bit.
        let max_n = (stream.len() * 8).saturating_sub(63);
        if n > max_n {
            return Err(CodecError::TooManyValues(n as u64));
        }
        out.reserve(n);
        decode_stream(stream, n, out)
    })
}

/// The exact number of bytes [`encode`] appends for `values`, without writing any bits: the
/// same control decisions, summed. [`super::encode_f64`] uses it to run the Gorilla encoder
/// only when Gorilla wins.
pub fn encoded_len(values: &[f64]) -> usize {
    let header = varint_len(values.len() as u64) as usize;
    let Some((first, rest)) = values.split_first() else {
        return header;
    };
    let mut bits = 64u64;
    let mut prev = first.to_bits();
    let (mut lead, mut trail) = (64u32, 0u32);
    for v in rest {
        let cur = v.to_bits();
        let x = cur ^ prev;
        prev = cur;
        let l = x.leading_zeros().min(31);
        let t = x.trailing_zeros().min(63);
        let reuse = l >= lead && t >= trail;
        // Branch-free on the common paths: a repeat costs 1 bit, a reused window `2 + sig`, a
        // new window `13 + sig` (and moves the window).
        let cost = if x == 0 {
            1
        } else if reuse {
            66 - lead - trail
        } else {
            77 - l - t
        };
        let new_window = x != 0 && !reuse;
        lead = if new_window { l } else { lead };
        trail = if new_window { t } else { trail };
        bits += u64::from(cost);
    }
    header + bits.div_ceil(8) as usize
}

/// Whether [`encode`] would append at least `limit` bytes for `values`, decided as cheaply as
/// possible and always exactly.
///
/// First a lower bound in which no value's cost depends on the window the ones before it left:
/// a value costs at least 1 bit if it repeats, else 2 control bits and the meaningful bits of
/// its own XOR (a reused window is at least that wide; a new one costs 13 control bits and
/// hides at most 31 leading zeros). It is summed 64 values at a time, counting 1 bit for each
/// value not yet looked at, and stops as soon as it reaches `limit`; only if it never does is
/// the exact size counted with [`encoded_len`].
pub fn encoded_len_at_least(values: &[f64], limit: usize) -> bool {
    let header = varint_len(values.len() as u64) as usize;
    let Some((first, rest)) = values.split_first() else {
        return header >= limit;
    };
    let limit_bits = (limit.saturating_sub(header) as u64).saturating_sub(1) * 8 + 1;
    // Bits certainly written: the first value and one bit for every later one.
    let mut bits = 64 + rest.len() as u64;
    let mut prev = first.to_bits();
    for chunk in rest.chunks(64) {
        if bits >= limit_bits {
            return true;
        }
        let mut extra = 0u64;
        for v in chunk {
            let cur = v.to_bits();
            let x = cur ^ prev;
            prev = cur;
            // Beyond the bit counted already: 65 - leading - trailing zeros for a change, 0 for
            // a repeat (whose zeros add up to 128).
            extra += u64::from(65u32.saturating_sub(x.leading_zeros() + x.trailing_zeros()));
        }
        bits += extra;
    }
    bits >= limit_bits || encoded_len(values) >= limit
}

/// A bit reader over the Gorilla stream whose state lives in locals of the decode loop.
struct Bits<'a> {
    bytes: &'a [u8],
    pos: usize,
    buf: u64,
    avail: u32,
}

impl Bits<'_> {
    /// Tops `buf` up to at least 56 bits, or to the end of the input.
    #[inline(always)]
    fn refill(&mut self) {
        if let Some(Ok(word)) = self
            .bytes
            .get(self.pos..self.pos.wrapping_add(8))
            .map(<[u8; 8]>::try_from)
        {
            // `avail` <= 63, so the shift is in range; bits loaded beyond the counted bytes
            // are the same stream bits the next load ORs in again.
            self.buf |= u64::from_le_bytes(word) << self.avail;
            self.pos += ((63 - self.avail) >> 3) as usize;
            self.avail |= 56;
        } else {
            self.refill_tail();
        }
    }

    /// Byte by byte near the end of the input; leaves `avail` in 57..=64 unless the input ends.
    #[cold]
    fn refill_tail(&mut self) {
        while self.avail <= 56 {
            let Some(&b) = self.bytes.get(self.pos) else {
                break;
            };
            self.buf |= u64::from(b) << self.avail;
            self.pos += 1;
            self.avail += 8;
        }
    }

    /// Drops `n` <= `avail` bits.
    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.buf = self.buf.checked_shr(n).unwrap_or(0);
        self.avail -= n;
    }

    /// Reads `n` bits (1..=64).
    #[inline(always)]
    fn read(&mut self, n: u32) -> Result<u64, CodecError> {
        if n > self.avail {
            self.refill();
        }
        if n <= self.avail {
            let v = self.buf & mask(n);
            self.consume(n);
            return Ok(v);
        }
        self.read_slow(n)
    }

    /// `n` bits when more than the buffer holds: over 56, or past the end of the input.
    #[cold]
    fn read_slow(&mut self, n: u32) -> Result<u64, CodecError> {
        if self.avail < 32 {
            return Err(TRUNCATED);
        }
        let lo = self.buf & mask(32);
        self.consume(32);
        self.refill();
        let rest = n - 32;
        if rest > self.avail {
            return Err(TRUNCATED);
        }
        let hi = self.buf & mask(rest);
        self.consume(rest);
        Ok(lo | (hi << 32))
    }

    /// Succeeds if fewer than 8 bits (the padding) remain unread.
    fn finish(&self) -> Result<(), CodecError> {
        let unread_bits = (self.bytes.len() - self.pos) * 8 + self.avail as usize;
        if unread_bits >= 8 {
            Err(CodecError::TrailingBytes(unread_bits / 8))
        } else {
            Ok(())
        }
    }
}

const TRUNCATED: CodecError = CodecError::Truncated {
    what: "gorilla bit stream",
};

fn decode_stream(stream: &[u8], n: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    let mut r = Bits {
        bytes: stream,
        pos: 0,
        buf: 0,
        avail: 0,
    };
    let mut prev = r.read(64)?;
    out.push(f64::from_bits(prev));
    let (mut sig, mut trail) = (0u32, 0u32);
    for _ in 1..n {
        if r.avail < 13 {
            r.refill();
        }
        let ctl = r.buf;
        if ctl & 1 == 0 {
            if r.avail < 1 {
                return Err(TRUNCATED);
            }
            r.consume(1);
        } else {
            if ctl & 2 == 0 {
                if r.avail < 2 {
                    return Err(TRUNCATED);
                }
                if sig == 0 {
                    return Err(CodecError::Corrupt(
                        "gorilla window reused before it was set",
                    ));
                }
                r.consume(2);
            } else {
                if r.avail < 13 {
                    return Err(TRUNCATED);
                }
                r.consume(13);
                let lead = ((ctl >> 2) & 31) as u32;
                sig = match ((ctl >> 7) & 63) as u32 {
                    0 => 64,
                    s => s,
                };
                trail = 64u32
                    .checked_sub(lead + sig)
                    .ok_or(CodecError::Corrupt("gorilla window wider than 64 bits"))?;
            }
            prev ^= r.read(sig)? << trail;
        }
        out.push(f64::from_bits(prev));
    }
    r.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    decode_never_panics_test!();

    fn round_trip(values: &[f64]) -> usize {
        let mut bytes = Vec::new();
        encode(values, &mut bytes);
        assert_eq!(encoded_len(values), bytes.len());
        for slack in [0, 1, 2] {
            assert!(encoded_len_at_least(
                values,
                bytes.len().saturating_sub(slack)
            ));
        }
        assert!(!encoded_len_at_least(values, bytes.len() + 1));
        let mut back = vec![0.25];
        decode(&bytes, &mut back).unwrap();
        let want: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
        let got: Vec<u64> = back.iter().skip(1).map(|v| v.to_bits()).collect();
        assert_eq!(got, want);
        bytes.len()
    }

    fn edgy() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            Just(f64::NAN),
            Just(-0.0),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::from_bits(1)),
            (-1000i32..1000).prop_map(|n| f64::from(n) / 10.0),
        ]
    }

    proptest! {
        #[test]
        fn round_trips_bit_exactly(values in prop::collection::vec(edgy(), 0..300)) {
            round_trip(&values);
        }

        #[test]
        fn round_trips_runs(v in edgy(), n in 1usize..3000) {
            round_trip(&vec![v; n]);
        }
    }

    #[test]
    fn a_constant_series_takes_a_bit_a_value() {
        assert_eq!(round_trip(&[]), 1);
        assert_eq!(round_trip(&[1.5]), 9);
        let len = round_trip(&[21.5; 1024]);
        assert!(len <= 2 + 8 + 128, "{len}");
    }
}
