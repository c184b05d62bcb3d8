//! Sealed segments: immutable, memory-mapped columnar files holding one table's blocks for one
//! time partition of one shard. Layout in `docs/formats/segment.md`.
//!
//! A segment is written once by [`writer::write`] (tmp file → fsync → rename → fsync directory),
//! then opened with [`Segment::open`], which maps it read-only and verifies the header, trailer and
//! footer checksum. Each column chunk carries its own CRC32C, checked by [`Segment::bytes`] every
//! time the chunk is handed to a decoder, so no byte from disk is decoded unverified.

mod footer;
pub(crate) mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::block::{ColumnRef, StatValue};
use crate::mmap::ReadOnlyMap;
use crate::schema::{ColumnDef, FieldType};

pub(crate) const MAGIC: &[u8; 8] = b"MASTSEG\0";
pub(crate) const VERSION: u16 = 1;
pub(crate) const HEADER_LEN: usize = 16;
pub(crate) const TRAILER_LEN: usize = 24;

/// What is wrong with a segment file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The file is shorter than a header and a trailer.
    #[error("file too short ({0} bytes)")]
    TooShort(u64),
    /// Magic bytes missing at the start or end.
    #[error("bad magic bytes")]
    BadMagic,
    /// Written by a format version this build does not read.
    #[error("unsupported segment version {0}")]
    Version(u16),
    /// The footer's checksum does not match.
    #[error("footer checksum mismatch")]
    FooterChecksum,
    /// The footer does not decode or contradicts itself.
    #[error("corrupt footer at byte {offset}: {what}")]
    Footer {
        /// Offset inside the footer.
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// A column chunk's checksum does not match.
    #[error("checksum mismatch in chunk at offset {offset} ({len} bytes)")]
    ChunkChecksum {
        /// File offset.
        offset: u64,
        /// Length.
        len: u32,
    },
    /// Reading or mapping the file failed.
    #[error("{0}")]
    Io(String),
}

/// A byte range of the data region with its CRC32C.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ByteRange {
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) crc: u32,
}

/// A series of a segment: its tag values by column index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegSeries {
    pub(crate) tags: Vec<(u32, Arc<str>)>,
}

/// A field column of a block.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SegColumn {
    pub(crate) column: u32,
    pub(crate) ty: FieldType,
    pub(crate) nulls: u32,
    pub(crate) validity: ByteRange,
    pub(crate) data: ByteRange,
    pub(crate) min: Option<StatValue>,
    pub(crate) max: Option<StatValue>,
}

/// A block of a segment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SegBlock {
    pub(crate) series: u32,
    pub(crate) rows: u32,
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    pub(crate) times: ByteRange,
    pub(crate) columns: Vec<SegColumn>,
}

/// The decoded footer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SegmentMeta {
    pub(crate) table: Arc<str>,
    pub(crate) shard: u32,
    pub(crate) id: u64,
    /// [start, end) of the time partition, ns.
    pub(crate) partition: (i64, i64),
    pub(crate) min_time: i64,
    pub(crate) max_time: i64,
    /// Highest WAL LSN whose data this segment holds.
    pub(crate) max_lsn: u64,
    pub(crate) rows: u64,
    pub(crate) columns: Vec<ColumnDef>,
    pub(crate) series: Vec<SegSeries>,
    pub(crate) blocks: Vec<SegBlock>,
}

/// An open, mapped, verified segment.
#[derive(Debug)]
pub struct Segment {
    pub(crate) path: PathBuf,
    pub(crate) meta: SegmentMeta,
    map: ReadOnlyMap,
    /// Its statistics for pruning, summarised once (a segment never changes).
    stats: std::sync::OnceLock<Arc<crate::scan::SegmentStats>>,
    /// Per block, per entry of its `columns`: the signature ([`crate::block::string_bit`]s) of a
    /// string column's distinct values (0 for other columns, `u64::MAX` for one that cannot be
    /// read), built on first use.
    signatures: std::sync::OnceLock<Vec<Vec<u64>>>,
    /// Per series, what its string columns hold over all its blocks (built from `signatures`).
    series_strings: std::sync::OnceLock<Vec<crate::block::StringSummaries>>,
}

/// Public facts about a segment (for `system.segments`).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentInfo {
    /// File path.
    pub path: PathBuf,
    /// Table name.
    pub table: Arc<str>,
    /// Shard.
    pub shard: u32,
    /// Segment id (unique per shard, increasing).
    pub id: u64,
    /// Time partition [start, end), ns.
    pub partition: (i64, i64),
    /// Smallest timestamp.
    pub min_time: i64,
    /// Largest timestamp.
    pub max_time: i64,
    /// Rows stored.
    pub rows: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// Number of series.
    pub series: usize,
    /// Number of blocks.
    pub blocks: usize,
    /// Float columns per codec: (gorilla, alp).
    pub float_codecs: (u64, u64),
}

impl Segment {
    /// Opens and verifies a segment file.
    pub(crate) fn open(path: &Path) -> Result<Segment, SegmentError> {
        let file = File::open(path).map_err(|e| SegmentError::Io(e.to_string()))?;
        let len = file
            .metadata()
            .map_err(|e| SegmentError::Io(e.to_string()))?
            .len();
        if len < (HEADER_LEN + TRAILER_LEN) as u64 {
            return Err(SegmentError::TooShort(len));
        }
        let map = ReadOnlyMap::new(&file).map_err(|e| SegmentError::Io(e.to_string()))?;
        let meta = Self::verify(&map)?;
        Ok(Segment {
            path: path.to_path_buf(),
            meta,
            map,
            stats: std::sync::OnceLock::new(),
            signatures: std::sync::OnceLock::new(),
            series_strings: std::sync::OnceLock::new(),
        })
    }

    /// The signature of entry `column` of block `block` (see `signatures`); `None` out of
    /// range.
    pub(crate) fn signature(&self, block: usize, column: usize) -> Option<u64> {
        let all = self.signatures.get_or_init(|| {
            self.meta
                .blocks
                .iter()
                .map(|b| {
                    b.columns
                        .iter()
                        .map(|c| {
                            if c.ty != FieldType::String {
                                return 0;
                            }
                            let mut sig = 0u64;
                            let read = self.bytes(c.data).ok().and_then(|d| {
                                crate::codec::visit_distinct_strings(d, |v| {
                                    sig |= crate::block::string_bit(v);
                                    true
                                })
                                .ok()
                            });
                            if read.is_some() { sig } else { u64::MAX }
                        })
                        .collect()
                })
                .collect()
        });
        all.get(block)?.get(column).copied()
    }

    /// Per string column (by segment column index), what series `series` holds over its
    /// blocks; `None` out of range.
    pub(crate) fn series_strings(&self, series: usize) -> Option<&crate::block::StringSummaries> {
        let all = self.series_strings.get_or_init(|| {
            let mut all = vec![crate::block::StringSummaries::default(); self.meta.series.len()];
            for (bi, b) in self.meta.blocks.iter().enumerate() {
                let Some(s) = all.get_mut(b.series as usize) else {
                    continue;
                };
                let strings = b
                    .columns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.ty == FieldType::String)
                    .map(|(pos, c)| {
                        let sig = self.signature(bi, pos).unwrap_or(u64::MAX);
                        (c.column, u64::from(c.nulls), sig)
                    });
                s.add(u64::from(b.rows), strings);
            }
            all
        });
        all.get(series)
    }

    /// The segment's statistics (see [`crate::scan::SegmentStats`]), computed on first use.
    pub(crate) fn stats(&self) -> Arc<crate::scan::SegmentStats> {
        Arc::clone(
            self.stats
                .get_or_init(|| Arc::new(crate::scan::stats_of(&self.meta))),
        )
    }

    /// Checks header, trailer and footer of a whole file image and decodes the footer.
    pub(crate) fn verify(bytes: &[u8]) -> Result<SegmentMeta, SegmentError> {
        let len = bytes.len();
        if len < HEADER_LEN + TRAILER_LEN {
            return Err(SegmentError::TooShort(len as u64));
        }
        if bytes.get(..8) != Some(&MAGIC[..]) || bytes.get(len - 8..) != Some(&MAGIC[..]) {
            return Err(SegmentError::BadMagic);
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != VERSION {
            return Err(SegmentError::Version(version));
        }
        let t = &bytes[len - TRAILER_LEN..];
        let footer_off = u64::from_le_bytes(t[0..8].try_into().unwrap_or_default());
        let footer_len = u32::from_le_bytes(t[8..12].try_into().unwrap_or_default());
        let footer_crc = u32::from_le_bytes(t[12..16].try_into().unwrap_or_default());
        let start = usize::try_from(footer_off).map_err(|_| SegmentError::FooterChecksum)?;
        let end = start
            .checked_add(footer_len as usize)
            .filter(|e| *e == len - TRAILER_LEN && start >= HEADER_LEN)
            .ok_or(SegmentError::Footer {
                offset: 0,
                what: "footer position",
            })?;
        let footer = &bytes[start..end];
        if crc32c::crc32c(footer) != footer_crc {
            return Err(SegmentError::FooterChecksum);
        }
        footer::decode(footer, footer_off)
    }

    /// The verified bytes of a chunk.
    pub(crate) fn bytes(&self, r: ByteRange) -> Result<&[u8], SegmentError> {
        chunk_bytes(&self.map, r)
    }

    pub(crate) fn column_ref(&self, c: &SegColumn) -> Result<ColumnRef<'_>, SegmentError> {
        Ok(ColumnRef {
            ty: c.ty,
            nulls: c.nulls,
            validity: if c.nulls > 0 {
                self.bytes(c.validity)?
            } else {
                &[]
            },
            data: self.bytes(c.data)?,
        })
    }

    /// Public facts about this segment.
    pub fn info(&self) -> SegmentInfo {
        let mut codecs = (0, 0);
        for b in &self.meta.blocks {
            for c in &b.columns {
                if c.ty == FieldType::Float {
                    match self.bytes(c.data).ok().and_then(|d| d.first().copied()) {
                        Some(1) => codecs.0 += 1,
                        Some(2) => codecs.1 += 1,
                        _ => {}
                    }
                }
            }
        }
        SegmentInfo {
            path: self.path.clone(),
            table: Arc::clone(&self.meta.table),
            shard: self.meta.shard,
            id: self.meta.id,
            partition: self.meta.partition,
            min_time: self.meta.min_time,
            max_time: self.meta.max_time,
            rows: self.meta.rows,
            bytes: self.map.len() as u64,
            series: self.meta.series.len(),
            blocks: self.meta.blocks.len(),
            float_codecs: codecs,
        }
    }
}

/// The bytes of `r` in a file image, after checking the range and its CRC32C.
pub(crate) fn chunk_bytes(file: &[u8], r: ByteRange) -> Result<&[u8], SegmentError> {
    let bad = SegmentError::ChunkChecksum {
        offset: r.offset,
        len: r.len,
    };
    let start = usize::try_from(r.offset).map_err(|_| bad.clone())?;
    let b = start
        .checked_add(r.len as usize)
        .and_then(|end| file.get(start..end))
        .ok_or_else(|| bad.clone())?;
    if crc32c::crc32c(b) != r.crc {
        return Err(bad);
    }
    Ok(b)
}

/// Decodes a footer without the trailer and CRC in front of it (fuzzing).
pub(crate) fn fuzz_decode_footer(bytes: &[u8]) -> Result<SegmentMeta, SegmentError> {
    footer::decode(bytes, u64::MAX)
}

/// File name of segment `id`.
pub(crate) fn file_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// Parses a segment file name back to its id.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    name.strip_suffix(".seg")?.parse().ok()
}
