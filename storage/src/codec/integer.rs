//! `i64` columns: delta (when it pays) + zigzag + patched frame-of-reference bit-packing.
//!
//! Layout: `varint count`, then for a non-empty block one mode byte and a PFOR block (see
//! `docs/formats/codecs.md`). Counters and gauges stored as integers usually take a few bits a
//! value; any `i64`, `i64::MIN` and `i64::MAX` included, round-trips (all arithmetic wraps).

use super::bytes::{Cursor, put_varint};
use super::{CodecError, append_or_restore, pfor};

/// Appends `values` encoded.
pub fn encode(values: &[i64], out: &mut Vec<u8>) {
    put_varint(out, values.len() as u64);
    if !values.is_empty() {
        pfor::encode(values, out);
    }
}

/// Decodes what [`encode`] wrote, appending the values to `out`.
pub fn decode(bytes: &[u8], out: &mut Vec<i64>) -> Result<(), CodecError> {
    append_or_restore(out, |out| {
        let mut cur = Cursor::new(bytes);
        let n = cur.count()?;
        if n > 0 {
            pfor::decode(&mut cur, n, out)?;
        }
        cur.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    decode_never_panics_test!();

    fn round_trip(values: &[i64]) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode(values, &mut bytes);
        let mut back = vec![42];
        decode(&bytes, &mut back).unwrap();
        assert_eq!(back.get(1..), Some(values));
        bytes
    }

    fn edgy() -> impl Strategy<Value = i64> {
        prop_oneof![
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0i64),
            -1000i64..1000,
        ]
    }

    proptest! {
        #[test]
        fn round_trips(values in prop::collection::vec(edgy(), 0..400)) {
            round_trip(&values);
        }

        #[test]
        fn round_trips_counters(start in any::<i64>(), steps in prop::collection::vec(0i64..50, 0..2000)) {
            let values: Vec<i64> = steps.iter().scan(start, |acc, s| { *acc = acc.wrapping_add(*s); Some(*acc) }).collect();
            round_trip(&values);
        }
    }

    #[test]
    fn small_cases_round_trip() {
        assert_eq!(round_trip(&[]), vec![0]);
        round_trip(&[7]);
        round_trip(&[i64::MIN, i64::MAX]);
        round_trip(&vec![5; 5000]);
    }

    #[test]
    fn a_counter_packs_tightly() {
        let values: Vec<i64> = (0..1024).map(|i| 1_000_000 + i * 3).collect();
        let bytes = round_trip(&values);
        assert!(bytes.len() < 16, "{} bytes", bytes.len());
    }

    #[test]
    fn oversized_counts_are_refused() {
        let mut bytes = Vec::new();
        put_varint(&mut bytes, u64::MAX);
        assert_eq!(
            decode(&bytes, &mut Vec::new()),
            Err(CodecError::TooManyValues(u64::MAX))
        );
    }
}
