//! Column codecs: how one block of one column becomes bytes and back.
//!
//! Each value type has its own encoding, chosen for what sensor telemetry looks like:
//!
//! | type | module | idea |
//! | --- | --- | --- |
//! | `i64` ns timestamps | [`timestamp`] | delta-of-delta with Gorilla's buckets; constant stride in 16 bytes |
//! | `f64` | [`gorilla`] | Gorilla XOR with leading/trailing-zero window reuse |
//! | `f64` | [`alp`] | ALP-style: scale decimals to integers by `10^e`, patched FOR/delta bit-packing |
//! | `i64` | [`integer`] | delta (or not) + patched frame-of-reference bit-packing |
//! | `bool` | [`boolean`] | bitmap or run lengths, whichever is smaller |
//! | `String` | [`string`] | dictionary + bit-packed indices, then zstd when smaller |
//!
//! What this module is not: a container format. Checksums, block headers and column framing
//! belong to the segment layer; a codec sees exactly the bytes it wrote. The byte layouts are
//! specified in `docs/formats/codecs.md`.
//!
//! Every decoder takes untrusted bytes: it returns [`CodecError`] on malformed input, never
//! panics, and allocates at most [`MAX_VALUES`] values per call. Decoders append to `out`; on
//! error `out` is left as it was.
//!
//! ```
//! use mast_storage::codec;
//!
//! let temps = [21.5, 21.5, 21.6, 21.4, f64::NAN];
//! let mut bytes = Vec::new();
//! let chosen = codec::encode_f64(&temps, &mut bytes);
//! let mut back = Vec::new();
//! codec::decode_f64(&bytes, &mut back)?;
//! assert_eq!(back.len(), temps.len());
//! assert!(back.iter().zip(&temps).all(|(a, b)| a.to_bits() == b.to_bits()));
//! println!("{} took {} bytes", chosen.name(), bytes.len());
//! # Ok::<(), codec::CodecError>(())
//! ```

/// The property every decoder of outside bytes must have, as one proptest per codec module: on
/// arbitrary bytes it returns (never panics), and an error leaves the output as it was.
#[cfg(test)]
macro_rules! decode_never_panics_test {
    () => {
        proptest::proptest! {
            #[test]
            fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
                let mut out = Vec::new();
                if decode(&bytes, &mut out).is_err() {
                    proptest::prop_assert!(out.is_empty());
                }
            }
        }
    };
}

pub mod alp;
pub mod bits;
pub mod boolean;
pub(crate) mod bytes;
pub mod gorilla;
pub mod integer;
mod pack;
mod pfor;
pub mod string;
pub mod timestamp;

/// The most values one encoded block may declare; decoders reject larger counts.
pub const MAX_VALUES: usize = 1 << 20;

/// Why a decoder refused its input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodecError {
    /// The input ended before the encoding did.
    #[error("encoded block truncated while reading {what}")]
    Truncated {
        /// The part of the encoding being read.
        what: &'static str,
    },
    /// A tag or mode byte had a value no encoder writes.
    #[error("unknown tag byte {0:#04x}")]
    BadTag(u8),
    /// The block declares more values than [`MAX_VALUES`] (or than its bytes can hold).
    #[error("encoded block declares {0} values, over the limit")]
    TooManyValues(u64),
    /// A bit width was over 64.
    #[error("bit width {0} is over 64")]
    BadWidth(u8),
    /// The bytes are self-inconsistent.
    #[error("corrupt encoded block: {0}")]
    Corrupt(&'static str),
    /// Whole bytes were left over after the last value.
    #[error("{0} trailing bytes after the encoded block")]
    TrailingBytes(usize),
    /// A dictionary string was not UTF-8.
    #[error("dictionary string is not valid UTF-8")]
    InvalidUtf8,
    /// zstd refused the compressed payload.
    #[error("zstd payload: {0}")]
    Zstd(String),
}

/// Which float codec encoded a block (stored as the first byte of an encoded float column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FloatCodec {
    /// Gorilla XOR ([`gorilla`]).
    Gorilla = 1,
    /// Decimal-aware, ALP-style ([`alp`]).
    Alp = 2,
}

impl FloatCodec {
    /// Every float codec, in tag order.
    pub const ALL: [FloatCodec; 2] = [FloatCodec::Gorilla, FloatCodec::Alp];

    /// The codec's lower-case name: `"gorilla"` or `"alp"`.
    pub fn name(self) -> &'static str {
        match self {
            FloatCodec::Gorilla => "gorilla",
            FloatCodec::Alp => "alp",
        }
    }

    /// The codec a tag byte names.
    pub fn from_tag(tag: u8) -> Result<Self, CodecError> {
        match tag {
            1 => Ok(FloatCodec::Gorilla),
            2 => Ok(FloatCodec::Alp),
            other => Err(CodecError::BadTag(other)),
        }
    }

    /// Appends `values` encoded with this codec alone (no tag byte).
    pub fn encode(self, values: &[f64], out: &mut Vec<u8>) {
        match self {
            FloatCodec::Gorilla => gorilla::encode(values, out),
            FloatCodec::Alp => alp::encode(values, out),
        }
    }

    /// Decodes bytes this codec wrote (no tag byte), appending to `out`.
    pub fn decode(self, bytes: &[u8], out: &mut Vec<f64>) -> Result<(), CodecError> {
        match self {
            FloatCodec::Gorilla => gorilla::decode(bytes, out),
            FloatCodec::Alp => alp::decode(bytes, out),
        }
    }
}

/// Encodes with the float codec that takes fewer bytes (ties → Alp). Appends to `out`: one tag
/// byte ([`FloatCodec`]) then that codec's bytes. Returns the codec chosen.
///
/// The choice is exact, but the Gorilla encoder runs only when it wins: ALP is encoded first;
/// then [`gorilla::encoded_len_at_least`] settles whether Gorilla would take at least as many
/// bytes, usually from a lower bound on part of the block, else by counting Gorilla's exact
/// size without emitting bits; Gorilla is encoded, replacing ALP, only when strictly smaller.
pub fn encode_f64(values: &[f64], out: &mut Vec<u8>) -> FloatCodec {
    let start = out.len();
    let scale = alp::plan(values);
    if let Some(alp_len) = alp::all_exceptions_len(values, scale) {
        // Not decimal data: ALP could only store raw values. Encode Gorilla and keep it unless it
        // is larger than ALP's known size (ties still go to ALP).
        out.push(FloatCodec::Gorilla as u8);
        gorilla::encode(values, out);
        if out.len() - start - 1 < alp_len {
            return FloatCodec::Gorilla;
        }
        out.truncate(start);
        out.push(FloatCodec::Alp as u8);
        alp::encode_with(values, scale, out);
        return FloatCodec::Alp;
    }
    out.push(FloatCodec::Alp as u8);
    alp::encode_with(values, scale, out);
    let alp_len = out.len() - start - 1;
    if !gorilla::encoded_len_at_least(values, alp_len) {
        out.truncate(start);
        out.push(FloatCodec::Gorilla as u8);
        gorilla::encode(values, out);
        FloatCodec::Gorilla
    } else {
        FloatCodec::Alp
    }
}

/// Decodes what [`encode_f64`] wrote, appending to `out`.
pub fn decode_f64(bytes: &[u8], out: &mut Vec<f64>) -> Result<(), CodecError> {
    let (&tag, rest) = bytes.split_first().ok_or(CodecError::Truncated {
        what: "float codec tag",
    })?;
    FloatCodec::from_tag(tag)?.decode(rest, out)
}

/// Appends `values` encoded with [`integer`].
pub fn encode_i64(values: &[i64], out: &mut Vec<u8>) {
    integer::encode(values, out);
}

/// Decodes what [`encode_i64`] wrote, appending to `out`.
pub fn decode_i64(bytes: &[u8], out: &mut Vec<i64>) -> Result<(), CodecError> {
    integer::decode(bytes, out)
}

/// Appends nanosecond timestamps encoded with [`timestamp`].
pub fn encode_timestamps(values: &[i64], out: &mut Vec<u8>) {
    timestamp::encode(values, out);
}

/// Decodes what [`encode_timestamps`] wrote, appending to `out`.
pub fn decode_timestamps(bytes: &[u8], out: &mut Vec<i64>) -> Result<(), CodecError> {
    timestamp::decode(bytes, out)
}

/// Appends `values` encoded with [`boolean`].
pub fn encode_bools(values: &[bool], out: &mut Vec<u8>) {
    boolean::encode(values, out);
}

/// Decodes what [`encode_bools`] wrote, appending to `out`.
pub fn decode_bools(bytes: &[u8], out: &mut Vec<bool>) -> Result<(), CodecError> {
    boolean::decode(bytes, out)
}

/// Appends `values` encoded with [`string`].
pub fn encode_strings<S: AsRef<str>>(values: &[S], out: &mut Vec<u8>) {
    string::encode(values, out);
}

/// Decodes what [`encode_strings`] wrote, appending to `out`.
pub fn decode_strings(bytes: &[u8], out: &mut Vec<String>) -> Result<(), CodecError> {
    string::decode(bytes, out)
}

/// Decodes what [`encode_strings`] wrote as its dictionary and one index per value.
pub fn decode_string_dictionary(bytes: &[u8]) -> Result<string::Dictionary, CodecError> {
    string::decode_dictionary(bytes)
}

/// Calls `f` with each distinct value of what [`encode_strings`] wrote until it returns false,
/// without decoding the per-value indices; the number of distinct values.
pub fn visit_distinct_strings(
    bytes: &[u8],
    f: impl FnMut(&str) -> bool,
) -> Result<usize, CodecError> {
    string::visit_distinct(bytes, f)
}

/// Runs a decoder that appends to `out`, and restores `out` to its length before the call if
/// the decoder fails, so callers never see half a block.
fn append_or_restore<T>(
    out: &mut Vec<T>,
    decode: impl FnOnce(&mut Vec<T>) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    let start = out.len();
    let result = decode(out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    proptest! {
        #[test]
        fn encode_f64_round_trips_bit_exactly(raw in prop::collection::vec(any::<u64>(), 0..300)) {
            let values: Vec<f64> = raw.iter().map(|&b| f64::from_bits(b)).collect();
            let mut bytes = Vec::new();
            let codec = encode_f64(&values, &mut bytes);
            prop_assert_eq!(bytes.first().copied(), Some(codec as u8));
            let mut back = vec![1.0];
            decode_f64(&bytes, &mut back).unwrap();
            prop_assert_eq!(bits(&back[1..]), raw);
        }

        #[test]
        fn encode_f64_keeps_the_smaller_encoding(raw in prop::collection::vec(-3000i64..3000, 0..300), noisy in any::<bool>()) {
            let values: Vec<f64> = raw.iter().map(|&n| if noisy { (n as f64).sin() } else { n as f64 / 100.0 }).collect();
            let (mut alp_bytes, mut gorilla_bytes, mut chosen) = (Vec::new(), Vec::new(), Vec::new());
            alp::encode(&values, &mut alp_bytes);
            gorilla::encode(&values, &mut gorilla_bytes);
            let codec = encode_f64(&values, &mut chosen);
            if let Some(len) = alp::all_exceptions_len(&values, alp::plan(&values)) {
                prop_assert_eq!(len, alp_bytes.len());
            }
            let want = if gorilla_bytes.len() < alp_bytes.len() { FloatCodec::Gorilla } else { FloatCodec::Alp };
            prop_assert_eq!(codec, want);
            prop_assert_eq!(chosen.len(), 1 + alp_bytes.len().min(gorilla_bytes.len()));
        }

        #[test]
        fn encode_f64_round_trips_decimals(raw in prop::collection::vec(-100_000i64..100_000, 0..300)) {
            let values: Vec<f64> = raw.iter().map(|&n| n as f64 / 100.0).collect();
            let mut bytes = Vec::new();
            encode_f64(&values, &mut bytes);
            let mut back = Vec::new();
            decode_f64(&bytes, &mut back).unwrap();
            prop_assert_eq!(bits(&back), bits(&values));
        }

        #[test]
        fn decode_f64_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut out = vec![0.5];
            if decode_f64(&bytes, &mut out).is_err() {
                prop_assert_eq!(out.len(), 1);
            }
        }
    }

    #[test]
    fn decimals_choose_alp_and_noise_chooses_gorilla() {
        let decimals: Vec<f64> = (0..1024).map(|i| f64::from(i % 300) / 10.0).collect();
        assert_eq!(encode_f64(&decimals, &mut Vec::new()), FloatCodec::Alp);
        assert_eq!(
            alp::all_exceptions_len(&decimals, alp::plan(&decimals)),
            None
        );
        let noise: Vec<f64> = (0..1024).map(|i| f64::from(i).sin()).collect();
        assert_eq!(encode_f64(&noise, &mut Vec::new()), FloatCodec::Gorilla);
        // the all-exception form's size is known without writing it
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let raw: Vec<f64> = (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                f64::from_bits(x)
            })
            .collect();
        let mut alp_bytes = Vec::new();
        alp::encode_with(&raw, None, &mut alp_bytes);
        assert_eq!(alp::all_exceptions_len(&raw, None), Some(alp_bytes.len()));
        let mut back = Vec::new();
        alp::decode(&alp_bytes, &mut back).unwrap();
        assert!(
            back.iter()
                .zip(&raw)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        assert_eq!(encode_f64(&raw, &mut Vec::new()), FloatCodec::Gorilla);
    }

    #[test]
    fn empty_input_round_trips_and_empty_bytes_fail() {
        let mut bytes = Vec::new();
        encode_f64(&[], &mut bytes);
        let mut out = Vec::new();
        decode_f64(&bytes, &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(
            decode_f64(&[], &mut out),
            Err(CodecError::Truncated {
                what: "float codec tag"
            })
        );
        assert_eq!(decode_f64(&[9], &mut out), Err(CodecError::BadTag(9)));
    }
}
