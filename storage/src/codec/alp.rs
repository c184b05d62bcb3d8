//! `f64` columns, decimal-aware, in the spirit of ALP (Afroozeh, Kuffó, Boncz, "ALP: Adaptive
//! Lossless floating-Point Compression", SIGMOD 2024).
//!
//! Sensor values are mostly decimals with a fixed number of digits. Per block the encoder picks
//! an exponent `e` and factor `f` (`f <= e <= 18`) on a sample, turns each value into the integer
//! `n = round(v · 10^e · 10^-f)`, and keeps `n` only if `n · 10^f · 10^-e` gives back exactly the
//! same bits; other values (NaN, ±inf, -0.0, too many digits) are *exceptions* stored raw with
//! their position, and their slot repeats the previous integer. The integers go through the
//! shared FOR/DELTA patched bit-packing (`pfor`), which unpacks 64 values per width-specialised
//! kernel call. Layout: `varint count`; if non-empty `u8 e`, `u8 f`, the integer block, then
//! `varint k` exceptions: `k` varint position gaps and `k` raw little-endian `u64` bit patterns.
//!
//! Data that is not decimal (a quick look at the sample finds no scale that pays) is written
//! as every value an exception: 72 bits a value, without searching every scale or planning the
//! integer block. The decoder unpacks the integers, scales them straight into the output 64 at
//! a time, and patches the exceptions in one pass over positions and raw values.

use super::bytes::{Cursor, bit_width, put_varint, varint_len};
use super::{CodecError, append_or_restore, pfor};

/// The largest exponent the encoder tries.
pub const MAX_EXPONENT: u8 = 18;
/// `10^i`, exact for every `i` in the table.
const EXP10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];
/// `10^-i`, correctly rounded.
const FRAC10: [f64; 23] = [
    1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10, 1e-11, 1e-12, 1e-13, 1e-14,
    1e-15, 1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22,
];
/// Adding and subtracting `2^52 + 2^51` rounds to an integer for `|x| < 2^51`.
const MAGIC: f64 = 6_755_399_441_055_744.0;
const SAMPLE: usize = 32;
/// The estimated cost of one exception in bits: raw value plus position.
const EXCEPTION_BITS: u64 = 64 + 16;

/// Scale factors for one `(e, f)` choice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scale {
    e: u8,
    f: u8,
    enc_e: f64,
    enc_f: f64,
    dec_f: f64,
    dec_e: f64,
}

impl Scale {
    fn new(e: u8, f: u8) -> Self {
        let (ei, fi) = (usize::from(e), usize::from(f));
        Scale {
            e,
            f,
            enc_e: EXP10[ei],
            enc_f: FRAC10[fi],
            dec_f: EXP10[fi],
            dec_e: FRAC10[ei],
        }
    }

    /// The integer for `v`, and whether it decodes to exactly `v`.
    #[inline(always)]
    fn encode(self, v: f64) -> (i64, bool) {
        let x = v * self.enc_e * self.enc_f;
        let n = ((x + MAGIC) - MAGIC) as i64;
        (n, self.decode(n).to_bits() == v.to_bits())
    }

    #[inline(always)]
    fn decode(self, n: i64) -> f64 {
        n as f64 * self.dec_f * self.dec_e
    }
}

/// Picks `(e, f)` minimising the estimated size of a sample of `values` (non-empty).
///
/// `n` depends on `e - f` (its magnitude) far more than on `e` and `f` apart, which only change
/// which values round-trip. So the search walks `k = e - f` upwards, tries the factors for each
/// `k`, abandons a combination once its exceptions alone cost more than the best so far, and stops
/// after the first `k` that fits every sampled value: a larger `k` only widens the integers.
fn choose_scale(values: &[f64]) -> Option<Scale> {
    let step = values.len().div_ceil(SAMPLE).max(1);
    let mut sample = [0f64; SAMPLE];
    let mut len = 0;
    for (s, &v) in sample.iter_mut().zip(values.iter().step_by(step)) {
        *s = v;
        len += 1;
    }
    let sample = sample.get(..len).unwrap_or(&[]);
    // Most combinations fail on nearly every value, so first abandon them after a few
    // exceptions; only if nothing survives that, and the sample does not show scaling losing
    // to storing every value as an exception (`None`), is every combination measured in full.
    if let Some(scale) = choose_scale_with(sample, 3) {
        return Some(scale);
    }
    if all_exceptions_is_no_larger(sample) {
        return None;
    }
    Some(choose_scale_with(sample, SAMPLE as u64 + 1).unwrap_or(Scale::new(0, 0)))
}

/// Whether a quick look at `sample` says a scaled encoding would take at least the 72 bits a
/// value of making every value an exception (64 raw bits and a one-byte position gap). Tries
/// every exponent with `f = 0` and counts what the encoder would really write: every value
/// takes a slot as wide as the fitted integers' range, and an exception 72 bits more.
fn all_exceptions_is_no_larger(sample: &[f64]) -> bool {
    let len = sample.len() as u64;
    (0..=MAX_EXPONENT).all(|e| {
        let scale = Scale::new(e, 0);
        let (mut misses, mut min, mut max) = (0u64, i64::MAX, i64::MIN);
        for &v in sample {
            let (n, ok) = scale.encode(v);
            if ok {
                min = min.min(n);
                max = max.max(n);
            } else {
                misses += 1;
            }
        }
        let width = if misses < len {
            u64::from(bit_width(max.wrapping_sub(min) as u64))
        } else {
            0
        };
        misses * (64 + 8) + len * width >= len * (64 + 8)
    })
}

fn choose_scale_with(sample: &[f64], give_up: u64) -> Option<Scale> {
    let len = sample.len();
    let mut best = (u64::MAX, None);
    for k in 0..=MAX_EXPONENT {
        let mut all_fit = false;
        for f in 0..=(MAX_EXPONENT - k) {
            let scale = Scale::new(k + f, f);
            let (mut exceptions, mut min, mut max) = (0u64, i64::MAX, i64::MIN);
            for &v in sample {
                let (n, ok) = scale.encode(v);
                if ok {
                    min = min.min(n);
                    max = max.max(n);
                } else {
                    exceptions += 1;
                    if exceptions >= give_up || exceptions * EXCEPTION_BITS >= best.0 {
                        break;
                    }
                }
            }
            if exceptions >= give_up || exceptions * EXCEPTION_BITS >= best.0 {
                continue;
            }
            let fitted = len as u64 - exceptions;
            let width = if fitted > 0 {
                u64::from(bit_width(max.wrapping_sub(min) as u64))
            } else {
                0
            };
            let cost = fitted * width + exceptions * EXCEPTION_BITS;
            if cost < best.0 {
                best = (cost, Some(scale));
            }
            if exceptions == 0 {
                all_fit = true;
                break;
            }
        }
        if all_fit {
            break;
        }
    }
    best.1
}

/// Appends `values` encoded as one block.
/// The scale [`encode`] would use for `values` (`None`: store every value as an exception, or
/// `values` is empty). Search once, then hand it to [`encode_with`].
pub(crate) fn plan(values: &[f64]) -> Option<Scale> {
    if values.is_empty() {
        None
    } else {
        choose_scale(values)
    }
}

/// The exact size [`encode_with`] writes for `values` when `scale` is `None` (every value an
/// exception); `None` otherwise. Lets the chooser skip writing an encoding that can only lose.
pub(crate) fn all_exceptions_len(values: &[f64], scale: Option<Scale>) -> Option<usize> {
    if values.is_empty() || scale.is_some() {
        return None;
    }
    let mut zeros = Vec::new();
    pfor::encode_zeros(&mut zeros);
    let n = values.len() as u64;
    // count, e and f, the empty integer block, exception count, one-byte gaps, raw values
    Some((2 * varint_len(n) + 2) as usize + zeros.len() + 9 * values.len())
}

pub fn encode(values: &[f64], out: &mut Vec<u8>) {
    encode_with(values, plan(values), out);
}

/// [`encode`] with the scale already chosen by [`plan`].
pub(crate) fn encode_with(values: &[f64], scale: Option<Scale>, out: &mut Vec<u8>) {
    put_varint(out, values.len() as u64);
    if values.is_empty() {
        return;
    }
    let Some(scale) = scale else {
        // Every value an exception (`e = f = 0`, all integers 0): 72 bits a value, written
        // without planning the integer block.
        out.extend_from_slice(&[0, 0]);
        pfor::encode_zeros(out);
        put_varint(out, values.len() as u64);
        out.resize(out.len() + values.len(), 0);
        out.reserve(values.len() * 8);
        for v in values {
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        return;
    };
    out.push(scale.e);
    out.push(scale.f);
    let mut ints = Vec::with_capacity(values.len());
    let mut exceptions = Vec::new();
    let mut last = None;
    for (i, &v) in values.iter().enumerate() {
        let (n, ok) = scale.encode(v);
        if ok {
            ints.push(n);
            last = Some(n);
        } else {
            ints.push(last.unwrap_or(0));
            exceptions.push(i);
        }
    }
    // Leading exceptions repeat the first fitted integer instead of 0.
    let leading = exceptions
        .iter()
        .enumerate()
        .take_while(|&(k, &p)| k == p)
        .count();
    if let Some(&fill) = ints.get(leading) {
        ints.iter_mut().take(leading).for_each(|n| *n = fill);
    }
    pfor::encode(&ints, out);
    put_varint(out, exceptions.len() as u64);
    let mut next = 0;
    for &p in &exceptions {
        put_varint(out, (p - next) as u64);
        next = p + 1;
    }
    for &p in &exceptions {
        let bits = values.get(p).map_or(0, |v| v.to_bits());
        out.extend_from_slice(&bits.to_le_bytes());
    }
}

/// Decodes what [`encode`] wrote, appending the values to `out`.
pub fn decode(bytes: &[u8], out: &mut Vec<f64>) -> Result<(), CodecError> {
    append_or_restore(out, |out| {
        let mut cur = Cursor::new(bytes);
        let n = cur.count()?;
        if n == 0 {
            return cur.finish();
        }
        let e = cur.u8("exponent")?;
        let f = cur.u8("factor")?;
        if usize::from(e) >= EXP10.len() || f > e {
            return Err(CodecError::Corrupt("ALP exponent or factor out of range"));
        }
        let scale = Scale::new(e, f);
        let start = out.len();
        out.reserve(n);
        pfor::decode_chunks(&mut cur, n, |c| {
            out.extend(c.iter().map(|&i| scale.decode(i)));
        })?;
        let k = cur.varint("exception count")?;
        let k = usize::try_from(k)
            .ok()
            .filter(|&k| k <= n && k.saturating_mul(9) <= cur.remaining())
            .ok_or(CodecError::Corrupt("exception count out of range"))?;
        if k == 0 {
            return cur.finish();
        }
        // The `k` raw values end the block (nothing may trail them), so the position gaps are
        // exactly the bytes before them and both lists are read in one pass.
        let rest = cur.take(cur.remaining(), "exceptions")?;
        let (gap_bytes, raw_bytes) = rest.split_at(rest.len() - 8 * k);
        let mut gaps = Cursor::new(gap_bytes);
        let mut pos = 0u64;
        let written = out.get_mut(start..).unwrap_or(&mut []);
        for raw in raw_bytes.chunks_exact(8) {
            pos = pos.saturating_add(gaps.varint("exception position")?);
            let bits = <[u8; 8]>::try_from(raw).map_or(0, u64::from_le_bytes);
            let slot = usize::try_from(pos)
                .ok()
                .and_then(|p| written.get_mut(p))
                .ok_or(CodecError::Corrupt("exception position out of range"))?;
            *slot = f64::from_bits(bits);
            pos = pos.saturating_add(1);
        }
        gaps.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    decode_never_panics_test!();

    fn round_trip(values: &[f64]) -> usize {
        let mut bytes = Vec::new();
        encode(values, &mut bytes);
        let mut back = vec![0.5];
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
            Just(f64::from_bits(0x7ff0_0000_0000_0001)),
            Just(-0.0),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MIN_POSITIVE / 4.0),
            Just(f64::MAX),
            Just(9.007_199_254_740_993e15),
            (-100_000i32..100_000).prop_map(|n| f64::from(n) / 100.0),
            (-1000i32..1000).prop_map(|n| f64::from(n) / 10.0),
        ]
    }

    proptest! {
        #[test]
        fn round_trips_bit_exactly(values in prop::collection::vec(edgy(), 0..400)) {
            round_trip(&values);
        }

        #[test]
        fn round_trips_decimal_walks(start in -1_000_000i64..1_000_000, steps in prop::collection::vec(-50i64..50, 1..1500), digits in 0u32..6) {
            let scale = 10f64.powi(digits as i32);
            let values: Vec<f64> = steps.iter()
                .scan(start, |acc, s| { *acc += s; Some(*acc as f64 / scale) })
                .collect();
            round_trip(&values);
        }

        #[test]
        fn round_trips_runs(v in edgy(), n in 1usize..2000) {
            round_trip(&vec![v; n]);
        }
    }

    #[test]
    fn two_decimal_values_pack_into_few_bits() {
        assert_eq!(round_trip(&[]), 1);
        round_trip(&[f64::NAN]);
        round_trip(&[-0.0, 1.5, f64::NAN, 2.25]);
        let values: Vec<f64> = (0..1024)
            .map(|i| 20.0 + f64::from(i % 100) / 100.0)
            .collect();
        let len = round_trip(&values);
        assert!(len * 8 <= 1024 * 8, "{len} bytes");
    }

    #[test]
    fn bad_exponent_is_refused() {
        let mut bytes = Vec::new();
        encode(&[1.5, 2.5], &mut bytes);
        bytes[1] = 40;
        assert!(decode(&bytes, &mut Vec::new()).is_err());
    }
}
