//! `f64` columns with Gorilla XOR compression (Pelkonen et al., "Gorilla: A Fast, Scalable,
//! In-Memory Time Series Database", VLDB 2015, §4.1.2).
//!
//! Each value is XORed with the previous one. Control codes (bits in stream order):
//! `0` the value repeats; `10` the XOR's meaningful bits fit the previous window (same leading
//! and trailing zero counts) and follow; `11` a new window: 5 bits of leading zeros (capped at
//! 31), 6 bits of meaningful length (0 means 64), then the meaningful bits. The first value is
//! stored as 64 raw bits. Works on raw bit patterns, so NaN payloads, `-0.0`, infinities and
//! subnormals round-trip exactly. Layout: `varint count`, then the LSB-first bit stream.

use super::bits::{BitReader, BitWriter};
use super::bytes::{Cursor, put_varint};
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

fn decode_stream(stream: &[u8], n: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    const TRUNCATED: CodecError = CodecError::Truncated {
        what: "gorilla bit stream",
    };
    let mut r = BitReader::new(stream);
    let mut prev = r.read_u64(64)?;
    out.push(f64::from_bits(prev));
    let (mut sig, mut trail) = (0u32, 0u32);
    for _ in 1..n {
        let avail = r.fill();
        let ctl = r.peek(13);
        if ctl & 1 == 0 {
            if avail < 1 {
                return Err(TRUNCATED);
            }
            r.consume(1);
        } else {
            if ctl & 2 == 0 {
                if avail < 2 {
                    return Err(TRUNCATED);
                }
                if sig == 0 {
                    return Err(CodecError::Corrupt(
                        "gorilla window reused before it was set",
                    ));
                }
                r.consume(2);
            } else {
                if avail < 13 {
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
            prev ^= r.read_u64(sig)? << trail;
        }
        out.push(f64::from_bits(prev));
    }
    r.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(values: &[f64]) -> usize {
        let mut bytes = Vec::new();
        encode(values, &mut bytes);
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

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut out = Vec::new();
            if decode(&bytes, &mut out).is_err() {
                prop_assert!(out.is_empty());
            }
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
