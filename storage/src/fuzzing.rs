//! Entry points for the fuzz targets in `storage/fuzz/` — every decoder of bytes from outside the
//! process, reachable without checksums in the way. Not a stable API.

use crate::block::{self, ColumnRef};
use crate::schema::FieldType;

/// Decodes `bytes` as a segment footer (no CRC check) and, when that succeeds, checks it against a
/// file of `bytes.len()` data bytes.
pub fn segment_footer(bytes: &[u8]) {
    let _ = crate::segment::fuzz_decode_footer(bytes);
}

/// Decodes a whole segment file image (magic, trailer, footer CRC, then every block's chunks).
pub fn segment_image(bytes: &[u8]) {
    if let Ok(meta) = crate::segment::Segment::verify(bytes) {
        for b in &meta.blocks {
            if let Ok(t) = crate::segment::chunk_bytes(bytes, b.times) {
                let _ = block::decode_times(t, b.rows);
            }
            for c in &b.columns {
                let (Ok(v), Ok(d)) = (
                    crate::segment::chunk_bytes(bytes, c.validity),
                    crate::segment::chunk_bytes(bytes, c.data),
                ) else {
                    continue;
                };
                let r = ColumnRef {
                    ty: c.ty,
                    nulls: c.nulls,
                    validity: v,
                    data: d,
                };
                let _ = block::decode_column(r, b.rows);
            }
        }
    }
}

/// Decodes a block column from raw bytes: byte 0 picks the type, bytes 1..3 the row and null
/// counts, then the validity length, validity and data — the decoders a segment block feeds.
pub fn segment_block(bytes: &[u8]) {
    let [ty, rows, nulls, vlen, rest @ ..] = bytes else {
        return;
    };
    let ty = match ty % 4 {
        0 => FieldType::Float,
        1 => FieldType::Integer,
        2 => FieldType::Boolean,
        _ => FieldType::String,
    };
    let split = (*vlen as usize).min(rest.len());
    let (validity, data) = rest.split_at(split);
    let rows = u32::from(*rows) * 8;
    let _ = block::decode_times(data, rows);
    let r = ColumnRef {
        ty,
        nulls: u32::from(*nulls).min(rows),
        validity,
        data,
    };
    let _ = block::decode_column(r, rows);
}

/// Decodes a WAL record payload as a write batch.
pub fn write_batch(bytes: &[u8]) {
    let _ = crate::batch::codec::decode(bytes);
}
