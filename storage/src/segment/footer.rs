//! Encoding and validation of a segment footer (see `docs/formats/segment.md`).

use std::sync::Arc;

use super::{ByteRange, SegBlock, SegColumn, SegSeries, SegmentError, SegmentMeta};
use crate::block::StatValue;
use crate::schema::{ColumnDef, ColumnKind, FieldType};
use crate::varint::{Reader, put_bytes, put_i64, put_u64};

pub(super) fn put_range(out: &mut Vec<u8>, r: ByteRange) {
    put_u64(out, r.offset);
    put_u64(out, u64::from(r.len));
    out.extend_from_slice(&r.crc.to_le_bytes());
}

fn put_stat(out: &mut Vec<u8>, s: Option<StatValue>) {
    match s {
        None => out.push(0),
        Some(StatValue::F64(v)) => {
            out.push(1);
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
        Some(StatValue::I64(v)) => {
            out.push(2);
            put_i64(out, v);
        }
        Some(StatValue::Bool(v)) => out.extend_from_slice(&[3, u8::from(v)]),
    }
}

pub(super) fn encode(meta: &SegmentMeta, out: &mut Vec<u8>) {
    put_bytes(out, meta.table.as_bytes());
    put_u64(out, u64::from(meta.shard));
    put_u64(out, meta.id);
    put_i64(out, meta.partition.0);
    put_i64(out, meta.partition.1);
    put_i64(out, meta.min_time);
    put_i64(out, meta.max_time);
    put_u64(out, meta.max_lsn);
    put_u64(out, meta.rows);
    put_u64(out, meta.columns.len() as u64);
    for c in &meta.columns {
        put_bytes(out, c.name.as_bytes());
        out.push(match c.kind {
            ColumnKind::Tag => 0,
            ColumnKind::Field(t) => t.code(),
        });
    }
    put_u64(out, meta.series.len() as u64);
    for s in &meta.series {
        put_u64(out, s.tags.len() as u64);
        for (col, v) in &s.tags {
            put_u64(out, u64::from(*col));
            put_bytes(out, v.as_bytes());
        }
    }
    put_u64(out, meta.blocks.len() as u64);
    for b in &meta.blocks {
        put_u64(out, u64::from(b.series));
        put_u64(out, u64::from(b.rows));
        put_i64(out, b.min_time);
        put_i64(out, b.max_time);
        put_range(out, b.times);
        put_u64(out, b.columns.len() as u64);
        for c in &b.columns {
            put_u64(out, u64::from(c.column));
            put_u64(out, u64::from(c.nulls));
            put_range(out, c.validity);
            put_range(out, c.data);
            put_stat(out, c.min);
            put_stat(out, c.max);
        }
    }
}

struct Decoder<'a> {
    r: Reader<'a>,
    data_end: u64,
}

impl<'a> Decoder<'a> {
    fn bad(&self, what: &'static str) -> SegmentError {
        SegmentError::Footer {
            offset: self.r.position(),
            what,
        }
    }

    fn len(&mut self, max: usize, what: &'static str) -> Result<usize, SegmentError> {
        self.r.var_len(max).ok_or_else(|| self.bad(what))
    }

    fn i64(&mut self, what: &'static str) -> Result<i64, SegmentError> {
        self.r.var_i64().ok_or_else(|| self.bad(what))
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, SegmentError> {
        self.r.str().ok_or_else(|| self.bad(what))
    }

    fn range(&mut self) -> Result<ByteRange, SegmentError> {
        let offset = self.r.var_u64().ok_or_else(|| self.bad("range offset"))?;
        let len = self.len(u32::MAX as usize, "range length")? as u32;
        let crc = self.r.u32_le().ok_or_else(|| self.bad("range crc"))?;
        let end = offset.checked_add(u64::from(len));
        if offset < super::HEADER_LEN as u64 || end.is_none_or(|e| e > self.data_end) {
            return Err(self.bad("range outside the data region"));
        }
        Ok(ByteRange { offset, len, crc })
    }

    fn stat(&mut self, ty: FieldType) -> Result<Option<StatValue>, SegmentError> {
        let v = match (self.r.u8(), ty) {
            (Some(0), _) => None,
            (Some(1), FieldType::Float) => Some(StatValue::F64(f64::from_bits(
                self.r.u64_le().ok_or_else(|| self.bad("f64 stat"))?,
            ))),
            (Some(2), FieldType::Integer) => Some(StatValue::I64(self.i64("i64 stat")?)),
            (Some(3), FieldType::Boolean) => match self.r.u8() {
                Some(b @ (0 | 1)) => Some(StatValue::Bool(b == 1)),
                _ => return Err(self.bad("bool stat")),
            },
            _ => return Err(self.bad("stat kind")),
        };
        Ok(v)
    }
}

pub(super) fn decode(bytes: &[u8], data_end: u64) -> Result<SegmentMeta, SegmentError> {
    let mut d = Decoder {
        r: Reader::new(bytes),
        data_end,
    };
    let table: Arc<str> = d.str("table name")?.into();
    let shard = d.len(u32::MAX as usize, "shard")? as u32;
    let id = d.r.var_u64().ok_or_else(|| d.bad("segment id"))?;
    let partition = (d.i64("partition start")?, d.i64("partition end")?);
    let (min_time, max_time) = (d.i64("min time")?, d.i64("max time")?);
    let max_lsn = d.r.var_u64().ok_or_else(|| d.bad("max lsn"))?;
    let rows = d.r.var_u64().ok_or_else(|| d.bad("rows"))?;
    let ncols = d.len(d.r.remaining(), "column count")?;
    let mut columns = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        let name: Arc<str> = d.str("column name")?.into();
        let kind = match d.r.u8() {
            Some(0) => ColumnKind::Tag,
            Some(c) => {
                ColumnKind::Field(FieldType::from_code(c).ok_or_else(|| d.bad("column type"))?)
            }
            None => return Err(d.bad("column type")),
        };
        columns.push(ColumnDef { name, kind });
    }
    let nseries = d.len(d.r.remaining(), "series count")?;
    let mut series = Vec::with_capacity(nseries);
    for _ in 0..nseries {
        let ntags = d.len(d.r.remaining(), "tag count")?;
        let mut tags = Vec::with_capacity(ntags);
        for _ in 0..ntags {
            let col = d.len(ncols.saturating_sub(1), "tag column")? as u32;
            if columns.get(col as usize).map(|c| c.kind) != Some(ColumnKind::Tag) {
                return Err(d.bad("tag column is not a tag"));
            }
            let v: Arc<str> = d.str("tag value")?.into();
            tags.push((col, v));
        }
        series.push(SegSeries { tags });
    }
    let nblocks = d.len(d.r.remaining(), "block count")?;
    let mut blocks = Vec::with_capacity(nblocks);
    for _ in 0..nblocks {
        let s = d.len(nseries.saturating_sub(1), "block series")? as u32;
        if nseries == 0 {
            return Err(d.bad("block without series"));
        }
        let brows = d.len(u32::MAX as usize, "block rows")? as u32;
        let (bmin, bmax) = (d.i64("block min time")?, d.i64("block max time")?);
        let times = d.range()?;
        let nc = d.len(ncols, "block column count")?;
        let mut cols = Vec::with_capacity(nc);
        for _ in 0..nc {
            let column = d.len(ncols.saturating_sub(1), "block column")? as u32;
            let ty = match columns.get(column as usize).map(|c| c.kind) {
                Some(ColumnKind::Field(t)) => t,
                _ => return Err(d.bad("block column is not a field")),
            };
            let nulls = d.len(brows as usize, "null count")? as u32;
            let validity = d.range()?;
            let data = d.range()?;
            let min = d.stat(ty)?;
            let max = d.stat(ty)?;
            cols.push(SegColumn {
                column,
                ty,
                nulls,
                validity,
                data,
                min,
                max,
            });
        }
        blocks.push(SegBlock {
            series: s,
            rows: brows,
            min_time: bmin,
            max_time: bmax,
            times,
            columns: cols,
        });
    }
    if d.r.remaining() != 0 {
        return Err(d.bad("trailing bytes"));
    }
    Ok(SegmentMeta {
        table,
        shard,
        id,
        partition,
        min_time,
        max_time,
        max_lsn,
        rows,
        columns,
        series,
        blocks,
    })
}
