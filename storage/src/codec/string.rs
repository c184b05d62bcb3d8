//! String columns: a dictionary of distinct values plus bit-packed indices, then zstd when that
//! is smaller.
//!
//! Layout: one flag byte: `0` = the body follows as is; `1` = `varint body_len` (at most
//! [`MAX_BODY`]) then one zstd frame that decompresses to exactly `body_len` bytes. The body:
//! `varint count`; for a non-empty block `varint dict_len` (1..=count), `dict_len` entries of
//! `varint byte_len` + UTF-8 bytes in first-seen order, one width byte, then `count` indices
//! packed at that width (LSB-first). Decompression is bounded by the declared length, so a
//! hostile frame cannot make the decoder allocate more than [`MAX_BODY`].

use std::collections::HashMap;

use super::bytes::{Cursor, bit_width, put_varint, varint_len};
use super::pack::{pack, packed_len, unpack};
use super::{CodecError, append_or_restore};

/// The largest decompressed body a decoder accepts (64 MiB).
pub const MAX_BODY: usize = 64 << 20;
const FLAG_PLAIN: u8 = 0;
const FLAG_ZSTD: u8 = 1;
const ZSTD_LEVEL: i32 = 3;

fn encode_body<S: AsRef<str>>(values: &[S], out: &mut Vec<u8>) {
    put_varint(out, values.len() as u64);
    if values.is_empty() {
        return;
    }
    let mut ids: HashMap<&str, u64> = HashMap::new();
    let mut dict: Vec<&str> = Vec::new();
    let mut indices = Vec::with_capacity(values.len());
    for v in values {
        let s = v.as_ref();
        let id = *ids.entry(s).or_insert_with(|| {
            dict.push(s);
            dict.len() as u64 - 1
        });
        indices.push(id);
    }
    put_varint(out, dict.len() as u64);
    for s in &dict {
        put_varint(out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    let width = bit_width(dict.len() as u64 - 1);
    out.push(width as u8);
    pack(indices, width, out);
}

/// Appends `values` encoded.
pub fn encode<S: AsRef<str>>(values: &[S], out: &mut Vec<u8>) {
    let mut body = Vec::new();
    encode_body(values, &mut body);
    if body.len() > 32
        && body.len() <= MAX_BODY
        && let Ok(frame) = zstd::bulk::compress(&body, ZSTD_LEVEL)
        && (frame.len() as u64 + varint_len(body.len() as u64)) < body.len() as u64
    {
        out.push(FLAG_ZSTD);
        put_varint(out, body.len() as u64);
        out.extend_from_slice(&frame);
        return;
    }
    out.push(FLAG_PLAIN);
    out.extend_from_slice(&body);
}

/// A decoded string block: its distinct values in first-seen order and one index per value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dictionary {
    /// The distinct values.
    pub values: Vec<String>,
    /// Per value, its position in `values` (every index is in range).
    pub keys: Vec<u32>,
}

/// Reads the dictionary of a non-empty body of `n` values at `cur`, calling `f` with each
/// entry in order until it returns false (then `cur` stops inside the dictionary); the number
/// of entries.
fn read_dictionary<'b>(
    cur: &mut Cursor<'b>,
    n: usize,
    mut f: impl FnMut(&'b str) -> bool,
) -> Result<usize, CodecError> {
    let dict_len = cur.varint("dictionary length")?;
    let dict_len = usize::try_from(dict_len)
        .ok()
        .filter(|&d| d >= 1 && d <= n && d <= cur.remaining() && d <= u32::MAX as usize)
        .ok_or(CodecError::Corrupt("dictionary length out of range"))?;
    for _ in 0..dict_len {
        let len = cur.varint("string length")?;
        let len = usize::try_from(len).map_err(|_| CodecError::Truncated { what: "string" })?;
        let bytes = cur.take(len, "string")?;
        let s = std::str::from_utf8(bytes).map_err(|_| CodecError::InvalidUtf8)?;
        if !f(s) {
            break;
        }
    }
    Ok(dict_len)
}

fn decode_body(body: &[u8], out: &mut Dictionary) -> Result<(), CodecError> {
    let mut cur = Cursor::new(body);
    let n = cur.count()?;
    if n == 0 {
        return cur.finish();
    }
    let dict_len = read_dictionary(&mut cur, n, |s| {
        out.values.push(s.to_owned());
        true
    })?;
    let width = cur.width()?;
    let packed = cur.take(packed_len(n, width), "dictionary indices")?;
    cur.finish()?;
    if width == 0 {
        // one distinct value (or every index 0): nothing to unpack
        out.keys.resize(n, 0);
        return Ok(());
    }
    out.keys.reserve(n);
    let mut bad = false;
    unpack(packed, n, width, |chunk| {
        for &i in chunk {
            bad |= i >= dict_len as u64;
            out.keys.push(i as u32);
        }
    });
    if bad {
        return Err(CodecError::Corrupt("dictionary index out of range"));
    }
    Ok(())
}

/// The body of an encoded block: borrowed when plain, decompressed when zstd.
fn body(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, CodecError> {
    let mut cur = Cursor::new(bytes);
    match cur.u8("string flag")? {
        FLAG_PLAIN => Ok(std::borrow::Cow::Borrowed(
            cur.take(cur.remaining(), "body")?,
        )),
        FLAG_ZSTD => {
            let len = cur.varint("body length")?;
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= MAX_BODY)
                .ok_or(CodecError::Corrupt("declared body length over 64 MiB"))?;
            let frame = cur.take(cur.remaining(), "zstd frame")?;
            let body =
                zstd::bulk::decompress(frame, len).map_err(|e| CodecError::Zstd(e.to_string()))?;
            if body.len() != len {
                return Err(CodecError::Corrupt("zstd body shorter than declared"));
            }
            Ok(std::borrow::Cow::Owned(body))
        }
        tag => Err(CodecError::BadTag(tag)),
    }
}

/// Decodes what [`encode`] wrote into its dictionary and indices, without a string per value.
pub fn decode_dictionary(bytes: &[u8]) -> Result<Dictionary, CodecError> {
    let mut out = Dictionary::default();
    decode_body(&body(bytes)?, &mut out)?;
    Ok(out)
}

/// Calls `f` with the distinct values of what [`encode`] wrote, in first-seen order, until it
/// returns false, without reading the indices (nor allocating, unless the block is zstd).
/// Returns how many distinct values the block has (0 for an empty block).
pub fn visit_distinct(bytes: &[u8], mut f: impl FnMut(&str) -> bool) -> Result<usize, CodecError> {
    let body = body(bytes)?;
    let mut cur = Cursor::new(&body);
    let n = cur.count()?;
    if n == 0 {
        return Ok(0);
    }
    read_dictionary(&mut cur, n, &mut f)
}

/// Decodes what [`encode`] wrote, appending the strings to `out`.
pub fn decode(bytes: &[u8], out: &mut Vec<String>) -> Result<(), CodecError> {
    append_or_restore(out, |out| {
        let d = decode_dictionary(bytes)?;
        out.reserve(d.keys.len());
        for k in d.keys {
            // in range: checked by the decoder
            out.push(d.values.get(k as usize).cloned().unwrap_or_default());
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    decode_never_panics_test!();

    fn round_trip(values: &[String]) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode(values, &mut bytes);
        let mut back = vec!["x".to_owned()];
        decode(&bytes, &mut back).unwrap();
        assert_eq!(back.get(1..), Some(values));
        bytes
    }

    proptest! {
        #[test]
        fn dictionary_holds_each_value_once(values in prop::collection::vec("[a-c]{0,2}", 0..300)) {
            let mut bytes = Vec::new();
            encode(&values, &mut bytes);
            let d = decode_dictionary(&bytes).unwrap();
            let mut seen = std::collections::HashSet::new();
            prop_assert!(d.values.iter().all(|v| seen.insert(v.clone())));
            let back: Vec<&str> = d.keys.iter().map(|&k| d.values[k as usize].as_str()).collect();
            prop_assert_eq!(back, values.iter().map(String::as_str).collect::<Vec<_>>());
        }

        #[test]
        fn visiting_sees_the_dictionary_in_order(
            values in prop::collection::vec("[a-d]{0,2}", 0..300),
            stop in 0usize..6,
            zstd in any::<bool>(),
        ) {
            let mut bytes = Vec::new();
            encode(&values, &mut bytes);
            if zstd && bytes[0] == FLAG_PLAIN {
                // the same body as a zstd frame
                let frame = zstd::bulk::compress(&bytes[1..], 3).unwrap();
                let mut z = vec![FLAG_ZSTD];
                put_varint(&mut z, bytes.len() as u64 - 1);
                z.extend_from_slice(&frame);
                bytes = z;
            }
            let d = decode_dictionary(&bytes).unwrap();
            let mut seen = Vec::new();
            let n = visit_distinct(&bytes, |s| {
                seen.push(s.to_owned());
                seen.len() <= stop
            })
            .unwrap();
            prop_assert_eq!(n, d.values.len());
            let upto = d.values.len().min(stop + 1);
            prop_assert_eq!(&seen[..], &d.values[..upto]);
        }

        #[test]
        fn visiting_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = visit_distinct(&bytes, |_| true);
        }

        #[test]
        fn strings_round_trip(values in prop::collection::vec(".{0,12}", 0..200)) {
            round_trip(&values);
        }

        #[test]
        fn few_distinct_round_trip(picks in prop::collection::vec(0usize..4, 0..2000)) {
            let states = ["idle", "running", "fault", ""];
            let values: Vec<String> = picks.iter().map(|&i| states[i].to_owned()).collect();
            round_trip(&values);
        }
    }

    #[test]
    fn repetitive_strings_compress() {
        assert_eq!(round_trip(&[]), vec![FLAG_PLAIN, 0]);
        let values: Vec<String> = (0..1024).map(|i| format!("state-{}", i % 3)).collect();
        let bytes = round_trip(&values);
        assert!(bytes.len() < 300, "{}", bytes.len());
    }

    #[test]
    fn a_zstd_bomb_is_refused() {
        let body = vec![0u8; 1 << 20];
        let frame = zstd::bulk::compress(&body, 3).unwrap();
        let mut bytes = vec![FLAG_ZSTD];
        put_varint(&mut bytes, 100);
        bytes.extend_from_slice(&frame);
        assert!(decode(&bytes, &mut Vec::new()).is_err());
    }
}
