//! `bool` columns: a bitmap or run lengths, whichever is smaller.
//!
//! Layout: `varint count`; for a non-empty block one tag byte: `0` = bitmap (`ceil(count/8)`
//! bytes, value `i` in bit `i % 8` of byte `i / 8`, padding bits zero), `1` = runs (one byte
//! holding the first value, 0 or 1, then varint run lengths, each >= 1, alternating values,
//! summing to count).

use super::bytes::{Cursor, put_varint, varint_len};
use super::{CodecError, append_or_restore};

const TAG_BITMAP: u8 = 0;
const TAG_RUNS: u8 = 1;

/// Run lengths of `values` (non-empty), first run first.
fn runs(values: &[bool]) -> impl Iterator<Item = u64> + '_ {
    values.chunk_by(|a, b| a == b).map(|run| run.len() as u64)
}

/// Appends `values` encoded.
pub fn encode(values: &[bool], out: &mut Vec<u8>) {
    put_varint(out, values.len() as u64);
    let Some(&first) = values.first() else { return };
    let bitmap_len = values.len().div_ceil(8) as u64;
    let mut runs_len = 1u64;
    for r in runs(values) {
        runs_len += varint_len(r);
        if runs_len >= bitmap_len {
            break;
        }
    }
    if runs_len < bitmap_len {
        out.push(TAG_RUNS);
        out.push(u8::from(first));
        for r in runs(values) {
            put_varint(out, r);
        }
    } else {
        out.push(TAG_BITMAP);
        out.extend(values.chunks(8).map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |b, (i, &v)| b | (u8::from(v) << i))
        }));
    }
}

/// Decodes what [`encode`] wrote, appending the values to `out`.
pub fn decode(bytes: &[u8], out: &mut Vec<bool>) -> Result<(), CodecError> {
    append_or_restore(out, |out| {
        let mut cur = Cursor::new(bytes);
        let n = cur.count()?;
        if n == 0 {
            return cur.finish();
        }
        match cur.u8("boolean tag")? {
            TAG_BITMAP => {
                let bitmap = cur.take(n.div_ceil(8), "bitmap")?;
                out.reserve(n);
                for i in 0..n {
                    let byte = bitmap.get(i / 8).copied().unwrap_or(0);
                    out.push(byte >> (i % 8) & 1 == 1);
                }
            }
            TAG_RUNS => {
                let mut value = match cur.u8("first value")? {
                    0 => false,
                    1 => true,
                    _ => return Err(CodecError::Corrupt("first run value is not 0 or 1")),
                };
                out.reserve(n);
                let mut left = n;
                while left > 0 {
                    let run = cur.varint("run length")?;
                    let run = usize::try_from(run)
                        .ok()
                        .filter(|&r| r >= 1 && r <= left)
                        .ok_or(CodecError::Corrupt("run lengths do not sum to the count"))?;
                    out.extend(std::iter::repeat_n(value, run));
                    left -= run;
                    value = !value;
                }
            }
            tag => return Err(CodecError::BadTag(tag)),
        }
        cur.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    decode_never_panics_test!();

    fn round_trip(values: &[bool]) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode(values, &mut bytes);
        let mut back = vec![true];
        decode(&bytes, &mut back).unwrap();
        assert_eq!(back.get(1..), Some(values));
        bytes
    }

    proptest! {
        #[test]
        fn random_bits_round_trip(values in prop::collection::vec(any::<bool>(), 0..500)) {
            round_trip(&values);
        }

        #[test]
        fn runs_round_trip(runs in prop::collection::vec((any::<bool>(), 1usize..400), 0..20)) {
            let values: Vec<bool> = runs.iter().flat_map(|&(v, n)| std::iter::repeat_n(v, n)).collect();
            round_trip(&values);
        }
    }

    #[test]
    fn the_smaller_form_wins() {
        assert_eq!(round_trip(&[]), vec![0]);
        let long_runs: Vec<bool> = (0..1024).map(|i| i >= 700).collect();
        assert_eq!(round_trip(&long_runs).get(2), Some(&TAG_RUNS));
        let alternating: Vec<bool> = (0..1024).map(|i| i % 2 == 0).collect();
        assert_eq!(round_trip(&alternating).get(2), Some(&TAG_BITMAP));
    }
}
