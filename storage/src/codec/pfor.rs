//! Integer sequences as patched frame-of-reference, optionally over deltas: the shared back end
//! of [`super::integer`] and [`super::alp`].
//!
//! A *PFOR block* of `n` items stores a base `b` and width `w`; every item in `[b, b + 2^w)` is
//! bit-packed as `item - b`, and the few that fall outside (outliers, sentinel values such as
//! -99) are *patches*: their slot holds 0 and a patch list gives position and `zigzag(item - b)`.
//! The encoder picks the window from a sorted sample, then counts patches exactly. The sequence
//! is either the values (mode FOR) or their wrapping deltas after the first value (mode DELTA),
//! whichever is smaller. All arithmetic wraps, so every `i64` round-trips.

use super::CodecError;
use super::bytes::{Cursor, bit_width, put_varint, put_varint_i64, unzigzag, varint_len, zigzag};
use super::pack::{pack, packed_len, unpack};

const MODE_FOR: u8 = 0;
const MODE_DELTA: u8 = 1;
/// Blocks shorter than this are never patched.
const MIN_PATCHED: usize = 64;
/// The outlier histogram has at most `2^HIST_BITS` buckets.
const HIST_BITS: u32 = 8;
/// The narrowest patched width tried is this many bits below the full width.
const MAX_NARROWING: u32 = 7;
/// A mode this many bits wider than the other is not searched for patches.
const LOSER_MARGIN: u32 = 2;

/// How one PFOR block will be written.
#[derive(Debug, Clone, Copy)]
struct Plan {
    base: i64,
    width: u32,
    patches: usize,
    patch_width: u32,
    bits: u64,
}

/// The cost of packing `seq` in `[base, base + 2^width)`, patching the rest.
fn plan_for(seq: &[i64], base: i64, width: u32) -> Plan {
    let (mut patches, mut max_zz) = (0usize, 0u64);
    let limit = if width >= 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    for &v in seq {
        let off = v.wrapping_sub(base) as u64;
        if off > limit {
            patches += 1;
            max_zz = max_zz.max(zigzag(v.wrapping_sub(base)));
        }
    }
    let patch_width = bit_width(max_zz);
    let pos_bits = u64::from(bit_width(seq.len().saturating_sub(1) as u64));
    let bits = seq.len() as u64 * u64::from(width)
        + patches as u64 * (pos_bits + u64::from(patch_width))
        + if patches > 0 { 8 + 16 } else { 0 };
    Plan {
        base,
        width,
        patches,
        patch_width,
        bits,
    }
}

/// The cheapest plan for `seq` (non-empty).
fn best_plan(seq: &[i64], (min, max): (i64, i64), search: bool) -> Plan {
    let full_width = bit_width(max.wrapping_sub(min) as u64);
    let n = seq.len() as u64;
    let full = Plan {
        base: min,
        width: full_width,
        patches: 0,
        patch_width: 0,
        bits: n * u64::from(full_width),
    };
    if !search || seq.len() < MIN_PATCHED || full_width < 2 {
        return full;
    }
    // Histogram with at most 2^HIST_BITS buckets aligned at `min`; a window of `2^w` then spans
    // whole buckets, so its coverage is exact for every bucket-aligned base.
    let shift = full_width.saturating_sub(HIST_BITS);
    let range = max.wrapping_sub(min) as u64;
    let mut hist = [0u32; (1 << HIST_BITS) + 2];
    let last = hist.len() - 1;
    for &v in seq {
        // `min(last)` keeps the index provably in range (it never binds: range >> shift < 256).
        hist[((v.wrapping_sub(min) as u64 >> shift) as usize + 1).min(last)] += 1;
    }
    // Prefix sums: hist[j] = items in buckets before j.
    let used = ((range >> shift) as usize + 2).min(hist.len());
    let mut acc = 0;
    for h in hist.iter_mut().take(used) {
        acc += *h;
        *h = acc;
    }
    let hist = hist.get(..used).unwrap_or(&[]);
    let pos_bits = u64::from(bit_width(n - 1));
    let mut best_estimate = (full.bits, None);
    for width in (full_width.saturating_sub(MAX_NARROWING).max(shift + 1)..full_width).rev() {
        let span = 1usize << (width - shift);
        let ahead = hist.get(span.min(used - 1)..).unwrap_or(&[]);
        // Branch-free maximum first (it vectorises); the argmax only when it is worth it.
        let covered = hist
            .iter()
            .zip(ahead)
            .map(|(lo, hi)| hi - lo)
            .max()
            .unwrap_or(0);
        let missed = n - u64::from(covered);
        let estimate = n * u64::from(width) + missed * (pos_bits + u64::from(full_width) + 1) + 24;
        if estimate < best_estimate.0 {
            let j = hist
                .iter()
                .zip(ahead)
                .position(|(lo, hi)| hi - lo == covered)
                .unwrap_or(0);
            best_estimate = (
                estimate,
                Some((min.wrapping_add(((j as u64) << shift) as i64), width)),
            );
        }
    }
    match best_estimate.1 {
        Some((base, width)) => {
            let plan = plan_for(seq, base, width);
            if plan.bits < full.bits { plan } else { full }
        }
        None => full,
    }
}

fn write_block(seq: &[i64], plan: Plan, out: &mut Vec<u8>) {
    put_varint_i64(out, plan.base);
    out.push(plan.width as u8);
    let limit = if plan.width >= 64 {
        u64::MAX
    } else {
        (1u64 << plan.width) - 1
    };
    let slot = |v: i64| {
        let off = v.wrapping_sub(plan.base) as u64;
        if off > limit { 0 } else { off }
    };
    pack(seq.iter().map(|&v| slot(v)), plan.width, out);
    put_varint(out, plan.patches as u64);
    if plan.patches == 0 {
        return;
    }
    out.push(plan.patch_width as u8);
    let pos_bits = bit_width(seq.len().saturating_sub(1) as u64);
    let outside = || {
        seq.iter()
            .enumerate()
            .filter(move |&(_, &v)| v.wrapping_sub(plan.base) as u64 > limit)
    };
    pack(outside().map(|(i, _)| i as u64), pos_bits, out);
    pack(
        outside().map(|(_, &v)| zigzag(v.wrapping_sub(plan.base))),
        plan.patch_width,
        out,
    );
}

/// Appends `values` (non-empty; the caller stores the count) as FOR or DELTA, whichever is smaller.
pub(crate) fn encode(values: &[i64], out: &mut Vec<u8>) {
    // One pass for the ranges of the values and of their deltas.
    let first = values.first().copied().unwrap_or(0);
    let (mut vmin, mut vmax, mut dmin, mut dmax, mut prev) =
        (first, first, i64::MAX, i64::MIN, first);
    for &v in values.iter().skip(1) {
        vmin = vmin.min(v);
        vmax = vmax.max(v);
        let d = v.wrapping_sub(prev);
        dmin = dmin.min(d);
        dmax = dmax.max(d);
        prev = v;
    }
    let for_width = bit_width(vmax.wrapping_sub(vmin) as u64);
    let delta_width = bit_width(dmax.wrapping_sub(dmin) as u64);
    // Patching narrows a block by a few bits at most in practice: look for patches only in a
    // mode that is the narrower one or close to it.
    let for_plan = best_plan(
        values,
        (vmin, vmax),
        for_width <= delta_width + LOSER_MARGIN,
    );
    if values.len() > 1 && delta_width <= for_width + LOSER_MARGIN {
        let deltas: Vec<i64> = values.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        let delta_plan = best_plan(&deltas, (dmin, dmax), true);
        let first_bits = 8 * varint_len(zigzag(first));
        if delta_plan.bits + first_bits < for_plan.bits {
            out.push(MODE_DELTA);
            put_varint_i64(out, first);
            write_block(&deltas, delta_plan, out);
            return;
        }
    }
    out.push(MODE_FOR);
    write_block(values, for_plan, out);
}

/// Appends what [`encode`] writes for any number of items that are all 0: FOR, base 0, width 0,
/// no patches.
pub(crate) fn encode_zeros(out: &mut Vec<u8>) {
    out.extend_from_slice(&[MODE_FOR, 0, 0, 0]);
}

/// Decodes one PFOR block of `m` items, handing them to `sink` in chunks of up to 64. With
/// `delta = Some(acc)` the items are deltas and `sink` sees their running sum after `acc`.
///
/// Patches are read before the slots are unpacked (their bytes follow the slots) and applied
/// to each chunk as it goes by, so nothing is decoded twice; positions that are not strictly
/// ascending (no encoder writes them) take the slower path of [`read_block_unordered`].
/// [`read_block`] is the same for a caller that wants the integers themselves.
fn read_block_chunks(
    cur: &mut Cursor<'_>,
    m: usize,
    delta: Option<i64>,
    sink: &mut impl FnMut(&[i64]),
) -> Result<(), CodecError> {
    let base = cur.varint_i64("frame base")?;
    let width = cur.width()?;
    let packed = cur.take(packed_len(m, width), "packed values")?;
    let patches = cur.varint("patch count")?;
    let mut positions = Vec::new();
    let mut values = Vec::new();
    if patches > 0 {
        let patches = usize::try_from(patches)
            .ok()
            .filter(|&k| k <= m)
            .ok_or(CodecError::Corrupt("more patches than values"))?;
        let patch_width = cur.width()?;
        let pos_bits = bit_width(m.saturating_sub(1) as u64);
        let pos_bytes = cur.take(packed_len(patches, pos_bits), "patch positions")?;
        let val_bytes = cur.take(packed_len(patches, patch_width), "patch values")?;
        positions.reserve_exact(patches);
        unpack(pos_bytes, patches, pos_bits, |c| {
            positions.extend_from_slice(c)
        });
        if positions.iter().any(|&p| p >= m as u64) {
            return Err(CodecError::Corrupt("patch position out of range"));
        }
        values.reserve_exact(patches);
        unpack(val_bytes, patches, patch_width, |c| {
            values.extend(c.iter().map(|&zz| base.wrapping_add(unzigzag(zz))))
        });
        if positions.windows(2).any(|w| w[0] >= w[1]) {
            return read_block_unordered(packed, m, width, base, &positions, &values, delta, sink);
        }
    }
    let mut acc = delta.unwrap_or(0);
    let mut done = 0u64;
    let mut next = 0;
    let mut chunk = [0i64; 64];
    unpack(packed, m, width, |slots| {
        let chunk = &mut chunk[..slots.len()];
        for (c, &u) in chunk.iter_mut().zip(slots) {
            *c = base.wrapping_add(u as i64);
        }
        let end = done + slots.len() as u64;
        while let (Some(&p), Some(&v)) = (positions.get(next), values.get(next)) {
            if p >= end {
                break;
            }
            if let Some(c) = chunk.get_mut((p - done) as usize) {
                *c = v;
            }
            next += 1;
        }
        done = end;
        if delta.is_some() {
            // A local running sum: through the captured `acc` every step would be a store and
            // a reload.
            let mut sum = acc;
            for c in chunk.iter_mut() {
                sum = sum.wrapping_add(*c);
                *c = sum;
            }
            acc = sum;
        }
        sink(chunk);
    });
    Ok(())
}

/// [`read_block_chunks`] for patch positions in any order: all slots first, then the patches in list
/// order, then the running sum.
#[allow(clippy::too_many_arguments)]
fn read_block_unordered(
    packed: &[u8],
    m: usize,
    width: u32,
    base: i64,
    positions: &[u64],
    values: &[i64],
    delta: Option<i64>,
    sink: &mut impl FnMut(&[i64]),
) -> Result<(), CodecError> {
    let mut items = Vec::with_capacity(m);
    unpack(packed, m, width, |c| {
        items.extend(c.iter().map(|&u| base.wrapping_add(u as i64)))
    });
    for (&p, &v) in positions.iter().zip(values) {
        if let Some(slot) = items.get_mut(p as usize) {
            *slot = v;
        }
    }
    if let Some(mut acc) = delta {
        for v in &mut items {
            acc = acc.wrapping_add(*v);
            *v = acc;
        }
    }
    for c in items.chunks(64) {
        sink(c);
    }
    Ok(())
}

/// Decodes one PFOR block of `n` items, appending them to `out`.
fn read_block(cur: &mut Cursor<'_>, n: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    let start = out.len();
    let base = cur.varint_i64("frame base")?;
    let width = cur.width()?;
    let packed = cur.take(packed_len(n, width), "packed values")?;
    out.reserve(n);
    unpack(packed, n, width, |chunk| {
        out.extend(chunk.iter().map(|&u| base.wrapping_add(u as i64)));
    });
    let patches = cur.varint("patch count")?;
    if patches == 0 {
        return Ok(());
    }
    let patches = usize::try_from(patches)
        .ok()
        .filter(|&k| k <= n)
        .ok_or(CodecError::Corrupt("more patches than values"))?;
    let patch_width = cur.width()?;
    let pos_bits = bit_width(n.saturating_sub(1) as u64);
    let pos_bytes = cur.take(packed_len(patches, pos_bits), "patch positions")?;
    let val_bytes = cur.take(packed_len(patches, patch_width), "patch values")?;
    let mut positions = Vec::with_capacity(patches);
    unpack(pos_bytes, patches, pos_bits, |c| {
        positions.extend_from_slice(c)
    });
    let mut err = None;
    let mut i = 0;
    unpack(val_bytes, patches, patch_width, |c| {
        for &zz in c {
            let pos = positions.get(i).copied().unwrap_or(u64::MAX);
            i += 1;
            let slot = usize::try_from(pos)
                .ok()
                .filter(|&p| p < n)
                .and_then(|p| out.get_mut(start + p));
            match slot {
                Some(s) => *s = base.wrapping_add(unzigzag(zz)),
                None => err = Some(CodecError::Corrupt("patch position out of range")),
            }
        }
    });
    err.map_or(Ok(()), Err)
}

/// Decodes `n` (>= 1) values written by [`encode`], handing them to `sink` in order, in chunks
/// of up to 64. On error `sink` may have seen some values.
pub(crate) fn decode_chunks(
    cur: &mut Cursor<'_>,
    n: usize,
    mut sink: impl FnMut(&[i64]),
) -> Result<(), CodecError> {
    match cur.u8("integer mode")? {
        MODE_FOR => read_block_chunks(cur, n, None, &mut sink),
        MODE_DELTA => {
            let first = cur.varint_i64("first value")?;
            sink(&[first]);
            read_block_chunks(cur, n.saturating_sub(1), Some(first), &mut sink)
        }
        tag => Err(CodecError::BadTag(tag)),
    }
}

/// Decodes `n` (>= 1) values written by [`encode`], appending them to `out`.
pub(crate) fn decode(cur: &mut Cursor<'_>, n: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    match cur.u8("integer mode")? {
        MODE_FOR => read_block(cur, n, out),
        MODE_DELTA => {
            let start = out.len();
            out.push(cur.varint_i64("first value")?);
            read_block(cur, n.saturating_sub(1), out)?;
            let mut acc = 0i64;
            for v in out.iter_mut().skip(start) {
                acc = acc.wrapping_add(*v);
                *v = acc;
            }
            Ok(())
        }
        tag => Err(CodecError::BadTag(tag)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(values: &[i64]) -> usize {
        let mut bytes = Vec::new();
        encode(values, &mut bytes);
        let mut back = Vec::new();
        let mut cur = Cursor::new(&bytes);
        decode(&mut cur, values.len(), &mut back).unwrap();
        cur.finish().unwrap();
        assert_eq!(back, values);
        bytes.len()
    }

    #[test]
    fn outliers_become_patches() {
        let mut values: Vec<i64> = (0..1024).map(|i| 400 + (i * 37) % 400).collect();
        for i in [3, 500, 900] {
            values[i] = -990;
        }
        let len = round_trip(&values);
        assert!(len * 8 < 1024 * 10, "{len} bytes");
    }

    /// `decode` and `decode_chunks` on the same bytes: both results, values and bytes left.
    fn both_decoders(bytes: &[u8], n: usize) -> [(bool, Vec<i64>, usize); 2] {
        let (mut plain, mut chunked) = (Vec::new(), Vec::new());
        let mut cur = Cursor::new(bytes);
        let ok = decode(&mut cur, n, &mut plain).is_ok();
        let a = (ok, plain, cur.remaining());
        let mut cur = Cursor::new(bytes);
        let ok = decode_chunks(&mut cur, n, |c| chunked.extend_from_slice(c)).is_ok();
        let b = (ok, chunked, cur.remaining());
        [a, b]
    }

    proptest::proptest! {
        #[test]
        fn chunked_decode_matches_plain_decode(values in proptest::collection::vec(-5000i64..5000, 1..400), outliers in proptest::collection::vec((0usize..400, proptest::prelude::any::<i64>()), 0..8)) {
            let mut values = values;
            for (i, v) in outliers {
                let len = values.len();
                values[i % len] = v;
            }
            let mut bytes = Vec::new();
            encode(&values, &mut bytes);
            let [plain, chunked] = both_decoders(&bytes, values.len());
            proptest::prop_assert!(plain.0);
            proptest::prop_assert_eq!(&plain.1, &values);
            proptest::prop_assert_eq!(plain, chunked);
        }

        #[test]
        fn chunked_decode_agrees_on_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120), n in 1usize..200) {
            let [plain, chunked] = both_decoders(&bytes, n);
            proptest::prop_assert_eq!(plain.0, chunked.0);
            if plain.0 {
                proptest::prop_assert_eq!(plain, chunked);
            }
        }
    }

    #[test]
    fn encode_zeros_matches_the_planned_encoding() {
        for n in [1, 2, 64, 1024] {
            let (mut planned, mut direct) = (Vec::new(), Vec::new());
            encode(&vec![0; n], &mut planned);
            encode_zeros(&mut direct);
            assert_eq!(planned, direct);
        }
    }

    #[test]
    fn extremes_round_trip() {
        round_trip(&[i64::MIN, i64::MAX, 0, -1, i64::MIN, 1]);
        round_trip(&[i64::MAX]);
        let mut wide: Vec<i64> = (0..300).map(|i| i * 1_000_003).collect();
        wide[7] = i64::MIN;
        wide[200] = i64::MAX;
        round_trip(&wide);
    }
}
