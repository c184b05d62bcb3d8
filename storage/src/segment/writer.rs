//! Writes a sealed segment: data chunks, footer, trailer; then fsync, rename, fsync the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{
    ByteRange, HEADER_LEN, MAGIC, SegBlock, SegColumn, SegSeries, SegmentMeta, VERSION, footer,
};
use crate::block::Block;
use crate::schema::ColumnDef;

/// What a segment is made of: blocks of series (column keys are indices into `columns`).
#[derive(Debug)]
pub(crate) struct SegmentInput<'a> {
    pub(crate) table: Arc<str>,
    pub(crate) shard: u32,
    pub(crate) id: u64,
    pub(crate) partition: (i64, i64),
    pub(crate) max_lsn: u64,
    pub(crate) columns: Vec<ColumnDef>,
    /// Each series with its blocks (in write order).
    pub(crate) series: Vec<(SegSeries, Vec<&'a Block>)>,
}

struct Out {
    w: BufWriter<File>,
    pos: u64,
}

impl Out {
    fn chunk(&mut self, bytes: &[u8]) -> std::io::Result<ByteRange> {
        if bytes.is_empty() {
            return Ok(ByteRange {
                offset: self.pos,
                len: 0,
                crc: crc32c::crc32c(&[]),
            });
        }
        let r = ByteRange {
            offset: self.pos,
            len: bytes.len() as u32,
            crc: crc32c::crc32c(bytes),
        };
        self.w.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(r)
    }
}

/// Writes `input` as `dir/{id}.seg` durably and returns the final path.
pub(crate) fn write(dir: &Path, input: &SegmentInput<'_>) -> std::io::Result<PathBuf> {
    let final_path = dir.join(super::file_name(input.id));
    let tmp = dir.join(format!("{}.tmp", super::file_name(input.id)));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    let mut out = Out {
        w: BufWriter::with_capacity(1 << 20, file),
        pos: 0,
    };
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..10].copy_from_slice(&VERSION.to_le_bytes());
    out.w.write_all(&header)?;
    out.pos = HEADER_LEN as u64;

    let mut meta = SegmentMeta {
        table: Arc::clone(&input.table),
        shard: input.shard,
        id: input.id,
        partition: input.partition,
        min_time: i64::MAX,
        max_time: i64::MIN,
        max_lsn: input.max_lsn,
        rows: 0,
        columns: input.columns.clone(),
        series: Vec::with_capacity(input.series.len()),
        blocks: Vec::new(),
    };
    for (s, blocks) in &input.series {
        let sidx = meta.series.len() as u32;
        meta.series.push(s.clone());
        for b in blocks {
            let times = out.chunk(&b.times)?;
            let mut columns = Vec::with_capacity(b.columns.len());
            for c in &b.columns {
                let validity = out.chunk(&c.validity)?;
                let data = out.chunk(&c.data)?;
                columns.push(SegColumn {
                    column: c.key,
                    ty: c.ty,
                    nulls: c.nulls,
                    validity,
                    data,
                    min: c.min,
                    max: c.max,
                });
            }
            meta.min_time = meta.min_time.min(b.min_time);
            meta.max_time = meta.max_time.max(b.max_time);
            meta.rows += u64::from(b.rows);
            meta.blocks.push(SegBlock {
                series: sidx,
                rows: b.rows,
                min_time: b.min_time,
                max_time: b.max_time,
                times,
                columns,
            });
        }
    }
    if meta.rows == 0 {
        meta.min_time = 0;
        meta.max_time = 0;
    }
    let mut f = Vec::new();
    footer::encode(&meta, &mut f);
    let footer_off = out.pos;
    out.w.write_all(&f)?;
    let mut trailer = Vec::with_capacity(super::TRAILER_LEN);
    trailer.extend_from_slice(&footer_off.to_le_bytes());
    trailer.extend_from_slice(&(f.len() as u32).to_le_bytes());
    trailer.extend_from_slice(&crc32c::crc32c(&f).to_le_bytes());
    trailer.extend_from_slice(MAGIC);
    out.w.write_all(&trailer)?;
    let file = out.w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &final_path)?;
    sync_dir(dir)?;
    Ok(final_path)
}

/// fsyncs a directory so renames and unlinks in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
