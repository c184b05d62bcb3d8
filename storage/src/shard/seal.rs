//! Sealing the head into segments, loading segments at start, and retention.
//!
//! Seal: rotate the WAL (so the sealed data ends exactly at a file boundary), write one segment per
//! (table, time partition) durably, publish the new segment set together with an empty head in one
//! version swap, then delete the WAL files the segments now cover. A crash between any two steps
//! leaves either the WAL or the segment holding every point (both, at worst, which reads resolve
//! as duplicates of equal value).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::worker::Worker;
use crate::block::Block;
use crate::error::StoreError;
use crate::head::{Head, SeriesTags};
use crate::schema::Catalog;
use crate::segment::writer::{SegmentInput, sync_dir, write};
use crate::segment::{SegSeries, Segment, SegmentError, parse_file_name};

/// Opens every segment of a shard in id order and registers its columns in the catalog, and
/// each distinct series once (into `series`, the shard's known series, and the table's count).
/// Segments that fail verification are renamed to `*.seg.corrupt` and listed in `quarantined`.
pub(super) fn load_segments(
    dir: &Path,
    catalog: &Catalog,
    quarantined: &mut Vec<std::path::PathBuf>,
    series: &mut super::resolve::KnownSeries,
) -> Result<Vec<Segment>, StoreError> {
    let mut ids = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| StoreError::io("read dir", dir, e))?;
    for e in entries {
        let e = e.map_err(|e| StoreError::io("read dir", dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            // an interrupted seal: its data is still in the WAL
            let p = e.path();
            std::fs::remove_file(&p).map_err(|e| StoreError::io("remove", &p, e))?;
        } else if let Some(id) = parse_file_name(&name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let path = dir.join(crate::segment::file_name(id));
        let seg = match Segment::open(&path) {
            Ok(s) => s,
            Err(e @ SegmentError::Io(_)) => {
                return Err(StoreError::Segment {
                    path: path.clone(),
                    source: e,
                });
            }
            Err(e) => {
                // Like ClickHouse's broken parts: set the file aside, keep the rest of the store up.
                let aside = path.with_extension("seg.corrupt");
                tracing::error!(segment = %path.display(), error = %e, moved_to = %aside.display(),
                    "segment fails verification; quarantined, its data is not served");
                std::fs::rename(&path, &aside)
                    .map_err(|e| StoreError::io("quarantine", &path, e))?;
                quarantined.push(aside);
                continue;
            }
        };
        let table = catalog
            .table(&seg.meta.table)
            .map_err(|e| StoreError::Config(format!("segment {}: {e}", path.display())))?;
        for c in &seg.meta.columns {
            if let Err(e) = catalog.column(table, &c.name, c.kind) {
                tracing::error!(segment = %path.display(), error = %e, "segment column conflicts with the catalog");
            }
        }
        let Some(schema) = catalog.schema(table) else {
            out.push(seg);
            continue;
        };
        for sr in &seg.meta.series {
            let mut ids: Vec<(crate::schema::ColumnId, Arc<str>)> = sr
                .tags
                .iter()
                .filter_map(|(c, v)| {
                    let name = &seg.meta.columns.get(*c as usize)?.name;
                    let (id, _) = schema.column(name)?;
                    Some((id, Arc::clone(v)))
                })
                .collect();
            ids.sort_by_key(|(c, _)| *c);
            if series.insert((table, crate::head::series_key(&ids))) {
                let _ = catalog.add_series(table);
            }
        }
        out.push(seg);
    }
    Ok(out)
}

impl Worker {
    /// Seals the whole head into segments.
    pub(super) fn seal(&mut self) -> Result<(), StoreError> {
        if self.head.rows() == 0 {
            return Ok(());
        }
        let started = Instant::now();
        let shard = self.id;
        let wal_err = |e: crate::wal::WalError| StoreError::Wal {
            shard,
            message: e.to_string(),
        };
        self.wal.rotate().map_err(wal_err)?;
        let sealed_lsn = self.head_lsn;
        let part_ns = self.cfg.partition_ns();
        let dir = self.seg_dir();
        let mut new_segments = Vec::new();
        let mut tables: Vec<_> = self.head.tables.keys().copied().collect();
        tables.sort();
        for tid in tables {
            let Some(schema) = self.catalog.schema(tid) else {
                continue;
            };
            let Some(th) = self.head.tables.get_mut(&tid) else {
                continue;
            };
            // partition start -> series -> blocks
            let mut parts: BTreeMap<i64, Vec<(SegSeries, Vec<Arc<Block>>)>> = BTreeMap::new();
            for s in &mut th.series {
                s.encode();
                let blocks = each_row_once(s.blocks.clone(), self.cfg.block_rows)?;
                if blocks.is_empty() {
                    continue;
                }
                for (p, bs) in split_by_partition(blocks, part_ns)? {
                    parts.entry(p).or_default().push((seg_series(&s.tags), bs));
                }
            }
            for (p, series) in parts {
                let id = self.next_segment;
                self.next_segment += 1;
                let input = SegmentInput {
                    table: Arc::clone(&schema.name),
                    shard: shard.0,
                    id,
                    partition: (p, p.saturating_add(part_ns)),
                    max_lsn: sealed_lsn.0,
                    columns: schema.columns.clone(),
                    series: series
                        .iter()
                        .map(|(s, b)| (s.clone(), b.iter().map(|x| &**x).collect()))
                        .collect(),
                };
                let path =
                    write(&dir, &input).map_err(|e| StoreError::io("write segment", &dir, e))?;
                let seg = Segment::open(&path).map_err(|source| StoreError::Segment {
                    path: path.clone(),
                    source,
                })?;
                new_segments.push(Arc::new(seg));
            }
        }
        let mut all: Vec<Arc<Segment>> = self.segments.iter().cloned().collect();
        all.extend(new_segments);
        self.segments = Arc::new(all);
        self.head = Head::new(self.cfg.block_rows);
        self.head_since = None;
        self.publish();
        self.wal.remove_through(sealed_lsn).map_err(wal_err)?;
        let stats = &self.shared.stats;
        stats.seals.fetch_add(1, Ordering::Relaxed);
        stats
            .seal_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats.head_bytes.store(0, Ordering::Relaxed);
        tracing::debug!(shard = shard.0, lsn = %sealed_lsn, "head sealed");
        Ok(())
    }

    /// Drops every segment whose newest point is older than its table's TTL as of `now` (ns).
    pub(super) fn enforce_retention(&mut self, now: i64) -> Result<usize, StoreError> {
        let retention = &self.cfg.retention;
        let (keep, drop): (Vec<Arc<Segment>>, Vec<Arc<Segment>>) = self
            .segments
            .iter()
            .cloned()
            .partition(|s| match retention.ttl(&s.meta.table) {
                None => true,
                Some(ttl) => {
                    let ttl = i64::try_from(ttl.as_nanos()).unwrap_or(i64::MAX);
                    s.meta.max_time >= now.saturating_sub(ttl)
                }
            });
        if drop.is_empty() {
            return Ok(0);
        }
        self.segments = Arc::new(keep);
        self.publish();
        for s in &drop {
            // readers holding an older version keep their mapping; unlinking does not disturb it
            std::fs::remove_file(&s.path)
                .map_err(|e| StoreError::io("remove segment", &s.path, e))?;
        }
        let dir = self.seg_dir();
        sync_dir(&dir).map_err(|e| StoreError::io("fsync dir", &dir, e))?;
        self.shared
            .stats
            .segments_dropped
            .fetch_add(drop.len() as u64, Ordering::Relaxed);
        tracing::info!(
            shard = self.id.0,
            dropped = drop.len(),
            "retention dropped segments"
        );
        Ok(drop.len())
    }
}

fn seg_series(tags: &SeriesTags) -> SegSeries {
    SegSeries {
        tags: tags.iter().map(|(c, v)| (c.0, Arc::clone(v))).collect(),
    }
}

/// A series' head blocks with every (time) row once: blocks that overlap in time (a point
/// written twice, a late row) are merged in write order, later writes winning, and re-encoded,
/// so a segment stores each row once and its row count is the rows a scan returns.
fn each_row_once(
    blocks: Vec<Arc<Block>>,
    block_rows: usize,
) -> Result<Vec<Arc<Block>>, StoreError> {
    let mut spans: Vec<(i64, i64)> = blocks.iter().map(|b| (b.min_time, b.max_time)).collect();
    spans.sort_unstable();
    if spans.windows(2).all(|w| w[0].1 < w[1].0) {
        return Ok(blocks);
    }
    let mut chunks = Vec::with_capacity(blocks.len());
    for b in &blocks {
        chunks.push(
            b.decode_all()
                .map_err(|e| StoreError::Config(format!("re-encoding a head block: {e}")))?,
        );
    }
    let merged = crate::chunk::Chunk::merge(chunks);
    let step = block_rows.max(1);
    let mut out = Vec::with_capacity(merged.len().div_ceil(step));
    let mut start = 0;
    while start < merged.len() {
        let end = (start + step).min(merged.len());
        let piece = merged.rows(start, end);
        out.push(Arc::new(Block::encode(&piece)));
        start = end;
    }
    Ok(out)
}

/// Groups a series' blocks by time partition, re-encoding blocks that straddle a boundary.
fn split_by_partition(
    blocks: Vec<Arc<Block>>,
    part_ns: i64,
) -> Result<Vec<(i64, Vec<Arc<Block>>)>, StoreError> {
    let part = |t: i64| t.div_euclid(part_ns) * part_ns;
    let mut out: BTreeMap<i64, Vec<Arc<Block>>> = BTreeMap::new();
    for b in blocks {
        let (lo, hi) = (part(b.min_time), part(b.max_time));
        if lo == hi {
            out.entry(lo).or_default().push(b);
            continue;
        }
        let chunk = b
            .decode_all()
            .map_err(|e| StoreError::Config(format!("re-encoding a head block: {e}")))?;
        let mut start = 0;
        while start < chunk.len() {
            let p = part(chunk.times[start]);
            let end = chunk
                .times
                .partition_point(|&t| t < p.saturating_add(part_ns));
            let piece = chunk.rows(start, end);
            out.entry(p)
                .or_default()
                .push(Arc::new(Block::encode(&piece)));
            start = end.max(start + 1);
        }
    }
    Ok(out.into_iter().collect())
}
