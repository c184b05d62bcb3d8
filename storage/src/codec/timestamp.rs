//! `i64` nanosecond timestamps: delta-of-delta with Gorilla's variable-length buckets.
//!
//! Layout: `varint count`; if count >= 1 the first timestamp as 8 raw little-endian bytes; if
//! count >= 2 the first delta as a zigzag varint and a mode byte: `0` = constant stride (every
//! delta equals the first; nothing follows — regular series cost 16 bytes), `1` = a bit stream of
//! delta-of-deltas follows, one code each (bits in stream order, payload two's complement):
//! `0` → 0; `10` + 7 bits; `110` + 9 bits; `1110` + 12 bits; `1111` + 64 bits.
//! Arithmetic wraps, so arbitrary `i64` sequences round-trip.

use super::bits::{BitReader, BitWriter, mask};
use super::bytes::{Cursor, put_varint, put_varint_i64};
use super::{CodecError, append_or_restore};

const MODE_CONSTANT: u8 = 0;
const MODE_DOD: u8 = 1;

/// Appends `values` encoded.
pub fn encode(values: &[i64], out: &mut Vec<u8>) {
    put_varint(out, values.len() as u64);
    let [first, rest @ ..] = values else { return };
    out.extend_from_slice(&first.to_le_bytes());
    let [second, ..] = rest else { return };
    let first_delta = second.wrapping_sub(*first);
    put_varint_i64(out, first_delta);
    if values
        .windows(2)
        .all(|w| w[1].wrapping_sub(w[0]) == first_delta)
    {
        out.push(MODE_CONSTANT);
        return;
    }
    out.push(MODE_DOD);
    let mut w = BitWriter::new(out);
    let mut prev_delta = first_delta;
    for pair in rest.windows(2) {
        let delta = pair[1].wrapping_sub(pair[0]);
        let dod = delta.wrapping_sub(prev_delta);
        prev_delta = delta;
        let d = dod as u64;
        match dod {
            0 => w.write(0, 1),
            -64..=63 => w.write(0b01 | ((d & mask(7)) << 2), 9),
            -256..=255 => w.write(0b011 | ((d & mask(9)) << 3), 12),
            -2048..=2047 => w.write(0b0111 | ((d & mask(12)) << 4), 16),
            _ => {
                w.write(0b1111, 4);
                w.write(d, 64);
            }
        }
    }
    w.finish();
}

/// Sign-extends the low `k` bits of `v`.
#[inline]
fn sign_extend(v: u64, k: u32) -> i64 {
    ((v << (64 - k)) as i64) >> (64 - k)
}

/// Decodes what [`encode`] wrote, appending the timestamps to `out`.
pub fn decode(bytes: &[u8], out: &mut Vec<i64>) -> Result<(), CodecError> {
    append_or_restore(out, |out| {
        let mut cur = Cursor::new(bytes);
        let n = cur.count()?;
        if n == 0 {
            return cur.finish();
        }
        let mut ts = cur.u64_le("first timestamp")? as i64;
        out.push(ts);
        if n == 1 {
            return cur.finish();
        }
        let mut delta = cur.varint_i64("first delta")?;
        match cur.u8("timestamp mode")? {
            MODE_CONSTANT => {
                out.reserve(n - 1);
                for _ in 1..n {
                    ts = ts.wrapping_add(delta);
                    out.push(ts);
                }
                cur.finish()
            }
            MODE_DOD => {
                let stream = cur.take(cur.remaining(), "bit stream")?;
                if n - 2 > stream.len() * 8 {
                    return Err(CodecError::TooManyValues(n as u64));
                }
                out.reserve(n - 1);
                ts = ts.wrapping_add(delta);
                out.push(ts);
                let mut r = BitReader::new(stream);
                for _ in 2..n {
                    let avail = r.fill();
                    let ctl = r.peek(4);
                    let ones = (!ctl).trailing_zeros().min(4);
                    let (code_len, payload) = match ones {
                        0 => (1, 0),
                        1 => (2, 7),
                        2 => (3, 9),
                        3 => (4, 12),
                        _ => (4, 64),
                    };
                    if avail < code_len {
                        return Err(CodecError::Truncated {
                            what: "timestamp bit stream",
                        });
                    }
                    r.consume(code_len);
                    let dod = match payload {
                        0 => 0,
                        64 => r.read_u64(64)? as i64,
                        k => sign_extend(r.read(k)?, k),
                    };
                    delta = delta.wrapping_add(dod);
                    ts = ts.wrapping_add(delta);
                    out.push(ts);
                }
                r.finish()
            }
            tag => Err(CodecError::BadTag(tag)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    decode_never_panics_test!();

    fn round_trip(values: &[i64]) -> usize {
        let mut bytes = Vec::new();
        encode(values, &mut bytes);
        let mut back = vec![-5];
        decode(&bytes, &mut back).unwrap();
        assert_eq!(back.get(1..), Some(values));
        bytes.len()
    }

    proptest! {
        #[test]
        fn arbitrary_values_round_trip(values in prop::collection::vec(any::<i64>(), 0..300)) {
            round_trip(&values);
        }

        #[test]
        fn jittered_series_round_trip(start in any::<i64>(), jitter in prop::collection::vec(-3000i64..3000, 0..2000)) {
            let values: Vec<i64> = jitter.iter().enumerate()
                .map(|(i, j)| start.wrapping_add(i as i64 * 10_000_000_000).wrapping_add(*j))
                .collect();
            round_trip(&values);
        }
    }

    #[test]
    fn edges_round_trip() {
        round_trip(&[]);
        round_trip(&[i64::MIN]);
        round_trip(&[i64::MIN, i64::MAX, i64::MIN, 0, i64::MAX]);
        round_trip(&[0, 64, 64 + 127, 64 + 127 + 63, 1000, -1000]);
    }

    #[test]
    fn a_regular_series_costs_well_under_a_bit_a_timestamp() {
        let start = 1_700_000_000_000_000_000i64;
        let values: Vec<i64> = (0..1024).map(|i| start + i * 10_000_000_000).collect();
        let len = round_trip(&values);
        assert!(len * 8 <= 1024 * 11 / 10, "{len} bytes");
        let mut jittered = values.clone();
        jittered[500] += 1;
        let len = round_trip(&jittered);
        assert!(len * 8 <= 1024 * 12 / 10, "{len} bytes");
    }
}
