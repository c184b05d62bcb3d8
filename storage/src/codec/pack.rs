//! Fixed-width bit-packing of `u64` arrays, the inner loop of [`super::alp`] and
//! [`super::integer`].
//!
//! `n` values of width `w` (0..=64) occupy exactly `ceil(n·w / 8)` bytes, laid out as if each
//! value were written in turn by [`BitWriter`] (LSB-first, little-endian). Unpacking works on
//! groups of 64 values, which span exactly `w` little-endian words; the group kernel is
//! instantiated once per width (const generic), so every shift in it is a constant and the loop
//! unrolls without branches.

use super::bits::{BitWriter, mask};

/// The number of bytes `n` values of width `w` occupy.
pub(crate) fn packed_len(n: usize, w: u32) -> usize {
    (n as u128 * u128::from(w)).div_ceil(8) as usize
}

/// Appends `values` packed at width `w`; bits of a value above `w` are dropped.
pub(crate) fn pack(values: impl IntoIterator<Item = u64>, w: u32, out: &mut Vec<u8>) {
    if w == 0 {
        return;
    }
    let mut bw = BitWriter::new(out);
    for v in values {
        bw.write(v, w);
    }
    bw.finish();
}

/// Unpacks one group of 64 values of width `W` from `words` (only `words[..W]` are used).
#[inline(always)]
fn unpack64<const W: usize>(words: &[u64; 65], out: &mut [u64; 64]) {
    let m = mask(W as u32);
    for (i, o) in out.iter_mut().enumerate() {
        let bit = i * W;
        let idx = bit / 64;
        let s = bit % 64;
        let lo = words[idx] >> s;
        let hi = if s + W > 64 {
            words[idx + 1] << (64 - s)
        } else {
            0
        };
        *o = (lo | hi) & m;
    }
}

/// Loads up to 65 little-endian words from `bytes`, zero-filling past its end.
#[inline(always)]
fn load_words(bytes: &[u8], words: &mut [u64; 65]) {
    let mut chunks = bytes.chunks_exact(8);
    for (w, c) in words.iter_mut().zip(&mut chunks) {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        *w = u64::from_le_bytes(b);
    }
    let done = bytes.len() / 8;
    let tail = chunks.remainder();
    if let Some(w) = words.get_mut(done) {
        let mut b = [0u8; 8];
        if let Some(dst) = b.get_mut(..tail.len()) {
            dst.copy_from_slice(tail);
        }
        *w = u64::from_le_bytes(b);
    }
}

fn unpack_width<const W: usize>(bytes: &[u8], n: usize, sink: &mut impl FnMut(&[u64])) {
    let mut words = [0u64; 65];
    let mut buf = [0u64; 64];
    let group_bytes = W * 8;
    let mut left = n;
    let mut groups = bytes.chunks(group_bytes.max(1));
    while left > 0 {
        let take = left.min(64);
        if W > 0 {
            let chunk = groups.next().unwrap_or(&[]);
            if chunk.len() == group_bytes {
                for (w, c) in words.iter_mut().zip(chunk.chunks_exact(8)) {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    *w = u64::from_le_bytes(b);
                }
            } else {
                words = [0u64; 65];
                load_words(chunk, &mut words);
            }
            unpack64::<W>(&words, &mut buf);
        }
        sink(buf.get(..take).unwrap_or(&[]));
        left -= take;
    }
}

macro_rules! dispatch {
    ($w:expr, $bytes:expr, $n:expr, $sink:expr; $($width:literal)*) => {
        match $w {
            $($width => unpack_width::<$width>($bytes, $n, $sink),)*
            _ => unpack_width::<64>($bytes, $n, $sink),
        }
    };
}

/// Unpacks `n` values of width `w` (<= 64) from `bytes` (at least [`packed_len`] long; missing
/// bytes read as zero), handing them to `sink` in chunks of up to 64.
pub(crate) fn unpack(bytes: &[u8], n: usize, w: u32, mut sink: impl FnMut(&[u64])) {
    dispatch!(w, bytes, n, &mut sink;
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32
        33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62
        63 64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pack_unpack_round_trips(values in prop::collection::vec(any::<u64>(), 0..300), w in 0u32..=64) {
            let mut bytes = Vec::new();
            pack(values.iter().copied(), w, &mut bytes);
            prop_assert_eq!(bytes.len(), packed_len(values.len(), w));
            let mut back = Vec::new();
            unpack(&bytes, values.len(), w, |c| back.extend_from_slice(c));
            let want: Vec<u64> = values.iter().map(|v| v & mask(w)).collect();
            prop_assert_eq!(back, want);
        }
    }
}
