//! Gathering, pruning and decoding the pieces (segment blocks, head blocks, frozen head chunks)
//! of each series that a scan touches.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::filter::Filters;
use super::output::Output;
use super::probe::{Constant, Held};
use super::{ScanRequest, Slot, StringSet};
use crate::block::{self, StatValue};
use crate::chunk::{Chunk, Column};
use crate::error::ScanError;
use crate::schema::{ColumnKind, FieldType, TableId, TableSchema};
use crate::shard::ShardVersion;

/// How much a scan pruned and decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanMetrics {
    /// Segments of the table whose time range overlapped the scan.
    pub segments_scanned: u64,
    /// Segments of the table skipped by time range.
    pub segments_pruned: u64,
    /// Blocks and head chunks decoded.
    pub blocks_decoded: u64,
    /// Blocks skipped by time range or statistics.
    pub blocks_pruned: u64,
    /// Rows decoded.
    pub rows_decoded: u64,
    /// Encoded bytes read by decoding (times, values, validity); head chunks not yet encoded
    /// count nothing.
    pub bytes_decoded: u64,
    /// Time spent decoding pieces, ns.
    pub decode_nanos: u64,
    /// Series that matched the tag filters.
    pub series: u64,
    /// Rows decoded in range that the request's exact conditions dropped.
    pub rows_filtered: u64,
    /// Pieces whose filtered columns no row passed, so the other columns were not decoded.
    pub blocks_filtered: u64,
}

/// A series identity across segments and head: (tag name, value) sorted by name.
pub(super) type Key = Vec<(Arc<str>, Arc<str>)>;

#[derive(Debug, Clone, Copy)]
enum Src {
    /// (segment index in the version, block index)
    Seg(usize, usize),
    /// (series index in the head table view, block index)
    HeadBlock(usize, usize),
    /// (series index in the head table view, frozen chunk index)
    Raw(usize, usize),
}

#[derive(Debug, Clone, Copy)]
struct Piece {
    src: Src,
    min: i64,
    max: i64,
    /// Rows it holds (before any pruning of rows): its share of a split scan's work.
    rows: u32,
}

/// Whether a series passes the request's tag filters: `cols` holds each filter's tag column
/// (`None`: no such tag, which no series passes), `value_of` the series' value of a column.
/// Tested before the series' key is built: most series fail it.
fn tags_pass<'v>(
    req: &ScanRequest,
    cols: &[Option<u32>],
    value_of: impl Fn(u32) -> Option<&'v str>,
) -> bool {
    req.tags.iter().zip(cols).all(|((_, values), col)| {
        col.and_then(&value_of)
            .is_some_and(|v| values.iter().any(|x| x == v))
    })
}

/// The kind of a string field column.
const STRING: ColumnKind = ColumnKind::Field(FieldType::String);

/// Segment `meta`'s column index of the column `name` of kind `kind`.
fn seg_column(meta: &crate::segment::SegmentMeta, name: &str, kind: ColumnKind) -> Option<u32> {
    meta.columns
        .iter()
        .position(|c| *c.name == *name && c.kind == kind)
        .map(|p| p as u32)
}

/// The table's column id of the column `name`, if it is of kind `kind`.
fn schema_column(schema: &TableSchema, name: &str, kind: ColumnKind) -> Option<u32> {
    schema
        .column(name)
        .filter(|(_, c)| c.kind == kind)
        .map(|(id, _)| id.0)
}

/// The columns of the request's string sets and of its tag filters, found by `column`.
fn filter_columns(
    req: &ScanRequest,
    column: impl Fn(&str, ColumnKind) -> Option<u32>,
) -> (Vec<Option<u32>>, Vec<Option<u32>>) {
    let sets = req
        .string_sets
        .iter()
        .map(|set| column(&set.column, STRING));
    let tags = req
        .tags
        .iter()
        .map(|(name, _)| column(name, ColumnKind::Tag));
    (sets.collect(), tags.collect())
}

fn overlaps(req: &ScanRequest, min: i64, max: i64) -> bool {
    max >= req.time.0 && min < req.time.1
}

fn stat_le(a: StatValue, b: StatValue) -> bool {
    match (a, b) {
        (StatValue::F64(x), StatValue::F64(y)) => x <= y,
        (StatValue::I64(x), StatValue::I64(y)) => x <= y,
        (StatValue::F64(x), StatValue::I64(y)) => x <= y as f64,
        (StatValue::I64(x), StatValue::F64(y)) => (x as f64) <= y,
        (StatValue::Bool(x), StatValue::Bool(y)) => x <= y,
        _ => true,
    }
}

/// False when statistics prove no value in [smin, smax] lies within the wanted range.
fn may_match(smin: Option<StatValue>, smax: Option<StatValue>, want: &super::FieldRange) -> bool {
    let (Some(smin), Some(smax)) = (smin, smax) else {
        return true;
    };
    let above = want.min.is_some_and(|lo| !stat_le(lo, smax));
    let below = want.max.is_some_and(|hi| !stat_le(smin, hi));
    !(above || below)
}

/// A series a string summary rules out in one source (a segment, the head), set aside without
/// its key. No row of it there can pass, but a row of it may be rewritten field by field in
/// another source at the same time, and the merged row (which may pass) needs both: so it is
/// taken back when the same series (by [`identity`]) has a piece in another source over
/// overlapping times. Sources sealed in order never overlap, so "one truck of a thousand"
/// keys one series, not a thousand.
struct Aside {
    identity: u64,
    of: AsideOf,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AsideOf {
    /// (segment index, series index in it)
    Seg(usize, usize),
    /// series index in the head view
    Head(usize),
}

impl AsideOf {
    /// Its source, as [`source`] names a piece's.
    fn source(self) -> Option<usize> {
        match self {
            AsideOf::Seg(si, _) => Some(si),
            AsideOf::Head(_) => None,
        }
    }
}

/// A series' identity from its (tag name, value) pairs in any order: equal for equal keys,
/// cheap enough to take for every set-aside series.
fn identity<'t>(tags: impl Iterator<Item = (&'t Arc<str>, &'t Arc<str>)>) -> u64 {
    let state = ahash::RandomState::with_seeds(1, 2, 3, 4);
    tags.map(|(k, v)| state.hash_one((&**k, &**v)))
        .fold(0u64, u64::wrapping_add)
}

/// Which source a piece is in: `Some(segment index)`, or `None` for the head.
fn source(p: &Piece) -> Option<usize> {
    match p.src {
        Src::Seg(si, _) => Some(si),
        Src::HeadBlock(..) | Src::Raw(..) => None,
    }
}

/// Takes back into `series` every set-aside series with a piece in another source whose
/// times overlap one of its own (see [`Aside`]); the rest are pruned.
fn take_back(
    series: &mut BTreeMap<Key, Vec<Piece>>,
    mut aside: Vec<Aside>,
    sources: &Sources,
    version: &ShardVersion,
    schema: &TableSchema,
    head: Option<&Arc<crate::head::TableHeadView>>,
    m: &mut ScanMetrics,
) {
    // what no other source overlaps in time cannot merge with anything: pruned unhashed
    aside.retain(|a| {
        let lo = a.pieces.iter().map(|p| p.min).min().unwrap_or(i64::MAX);
        let hi = a.pieces.iter().map(|p| p.max).max().unwrap_or(i64::MIN);
        let alone = sources.alone(a.of.source(), lo, hi);
        if alone {
            m.blocks_pruned += a.pieces.len() as u64;
        }
        !alone
    });
    if aside.is_empty() {
        return;
    }
    // per identity: (source, min, max) of every piece, kept or set aside
    let mut spans: std::collections::HashMap<u64, Vec<(Option<usize>, i64, i64)>> =
        std::collections::HashMap::new();
    let wanted: std::collections::HashSet<u64> = aside.iter().map(|a| a.identity).collect();
    for (key, pieces) in series.iter() {
        let id = identity(key.iter().map(|(k, v)| (k, v)));
        if wanted.contains(&id) {
            let e = spans.entry(id).or_default();
            e.extend(pieces.iter().map(|p| (source(p), p.min, p.max)));
        }
    }
    for a in &aside {
        let e = spans.entry(a.identity).or_default();
        e.extend(a.pieces.iter().map(|p| (source(p), p.min, p.max)));
    }
    for a in aside {
        let spans = spans
            .get(&a.identity)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let back = a.pieces.iter().any(|p| {
            spans
                .iter()
                .any(|&(src, lo, hi)| src != source(p) && hi >= p.min && lo <= p.max)
        });
        let key = match (back, a.of) {
            (false, _) => None,
            (true, AsideOf::Seg(si, i)) => version.segments.get(si).map(|s| seg_key(&s.meta, i)),
            (true, AsideOf::Head(vi)) => head
                .and_then(|h| h.series.get(vi))
                .map(|sv| head_key(schema, sv)),
        };
        match key {
            Some(key) => {
                // back in write order, which decides between rows of equal times
                let pieces = series.entry(key).or_default();
                pieces.extend(a.pieces);
                pieces.sort_by_key(written);
            }
            None => m.blocks_pruned += a.pieces.len() as u64,
        }
    }
}

/// Where a piece stands in the order a series' pieces are gathered, which is the order they
/// were written in: segments oldest first, each in block order, then the head's blocks, then
/// its frozen chunks.
fn written(p: &Piece) -> (u8, usize, usize) {
    match p.src {
        Src::Seg(si, bi) => (0, si, bi),
        Src::HeadBlock(_, bi) => (1, 0, bi),
        Src::Raw(_, ci) => (2, 0, ci),
    }
}

/// The (tag name, value) pairs of series `i` of a segment, in stored order.
fn seg_tags(
    meta: &crate::segment::SegmentMeta,
    i: usize,
) -> impl Iterator<Item = (&Arc<str>, &Arc<str>)> {
    let tags = meta.series.get(i).map(|s| s.tags.as_slice());
    tags.unwrap_or_default()
        .iter()
        .filter_map(|(c, v)| Some((&meta.columns.get(*c as usize)?.name, v)))
}

/// The (tag name, value) pairs of a head series, in stored order.
fn head_tags<'v>(
    schema: &'v TableSchema,
    sv: &'v crate::head::SeriesView,
) -> impl Iterator<Item = (&'v Arc<str>, &'v Arc<str>)> {
    sv.tags
        .iter()
        .filter_map(|(c, v)| Some((&schema.columns.get(c.0 as usize)?.name, v)))
}

/// A series' key from its (tag name, value) pairs.
fn key_of<'t>(tags: impl Iterator<Item = (&'t Arc<str>, &'t Arc<str>)>) -> Key {
    let mut key: Key = tags.map(|(k, v)| (Arc::clone(k), Arc::clone(v))).collect();
    key.sort();
    key
}

/// The key of series `i` of a segment.
fn seg_key(meta: &crate::segment::SegmentMeta, i: usize) -> Key {
    key_of(seg_tags(meta, i))
}

/// The key of a head series.
fn head_key(schema: &TableSchema, sv: &crate::head::SeriesView) -> Key {
    key_of(head_tags(schema, sv))
}

/// The time ranges of a shard's sources of one table's rows (each segment the request's time
/// range reaches, the head), for telling whether rows of one may merge with rows of another.
struct Sources {
    ranges: Vec<(Option<usize>, i64, i64)>,
}

impl Sources {
    /// Found only when the request can skip something for what a source holds (a segment
    /// list, string sets); otherwise every source counts as isolated, and nothing asks.
    fn of(
        version: &ShardVersion,
        req: &ScanRequest,
        head: Option<&Arc<crate::head::TableHeadView>>,
    ) -> Sources {
        let mut ranges: Vec<(Option<usize>, i64, i64)> = Vec::new();
        if req.segments.is_some() || !req.string_sets.is_empty() {
            for (si, seg) in version.segments.iter().enumerate() {
                let meta = &seg.meta;
                if *meta.table == *req.table && overlaps(req, meta.min_time, meta.max_time) {
                    ranges.push((Some(si), meta.min_time, meta.max_time));
                }
            }
            let mut hull: Option<(i64, i64)> = None;
            let mut widen = |lo: i64, hi: i64| {
                hull = Some(hull.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
            };
            for sv in head.map(|h| h.series.as_slice()).unwrap_or_default() {
                for b in &sv.blocks {
                    widen(b.min_time, b.max_time);
                }
                for c in &sv.frozen {
                    // a frozen chunk is in time order (as gathering pieces reads it)
                    if let (Some(lo), Some(hi)) = (c.times.first(), c.times.last()) {
                        widen(*lo, *hi);
                    }
                }
            }
            if let Some((lo, hi)) = hull {
                ranges.push((None, lo, hi));
            }
        }
        Sources { ranges }
    }

    /// Whether no other source holds a time within `[lo, hi]` (`source`: `Some(segment
    /// index)`, or `None` for the head).
    fn alone(&self, source: Option<usize>, lo: i64, hi: i64) -> bool {
        self.ranges
            .iter()
            .all(|&(other, a, b)| other == source || b < lo || a > hi)
    }

    /// Whether a source holds only times no other source holds.
    fn isolated(&self, source: Option<usize>) -> bool {
        match self.ranges.iter().find(|r| r.0 == source) {
            Some(&(_, lo, hi)) => self.alone(source, lo, hi),
            None => true,
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn scan_shard(
    version: &ShardVersion,
    table: TableId,
    schema: &TableSchema,
    slots: &[Slot],
    req: &ScanRequest,
    out: &mut Output,
    m: &mut ScanMetrics,
) -> Result<(), ScanError> {
    let segments = &version.segments;
    let mut series: BTreeMap<Key, Vec<Piece>> = BTreeMap::new();
    let set_bits: Vec<u64> = req
        .string_sets
        .iter()
        .map(|s| block::string_signature(s.values.iter().map(String::as_str)))
        .collect();
    // Whether a series' string summary (per set, the set's column in it, if any) shows that
    // none of its rows matches: then it is skipped before its key is built.
    let excluded = |strings: &block::StringSummaries, cols: &[Option<u32>]| {
        req.string_sets
            .iter()
            .zip(cols)
            .zip(&set_bits)
            .any(|((set, col), bits)| match col {
                Some(c) => strings.get(*c).excludes(*bits, set.null),
                None => !set.null,
            })
    };
    let head = version.head.tables.get(&table);
    // A segment left out by the request may be skipped only when no other source's time
    // range overlaps it: otherwise one of its rows may be a field-by-field rewrite of a row
    // elsewhere, and the merged row needs both.
    let sources = Sources::of(version, req, head);
    // Series a string summary rules out in one source, set aside unkeyed: taken back if the
    // same series has rows in another source over the same times (see `Aside`).
    let mut aside: Vec<Aside> = Vec::new();
    // segments of this shard read (the head is the other source)
    let mut seg_sources = 0usize;
    // per segment: slot -> segment column index
    let mut seg_cols: Vec<Vec<Option<u32>>> = vec![Vec::new(); segments.len()];
    for (si, seg) in segments.iter().enumerate() {
        let meta = &seg.meta;
        if *meta.table != *req.table {
            continue;
        }
        // A segment left out of the request's list is skipped only when that cannot change
        // a merged row (see `isolated`); its other rows are filtered out anyway.
        if !overlaps(req, meta.min_time, meta.max_time)
            || (req
                .segments
                .as_ref()
                .is_some_and(|keep| !keep.contains(&(meta.shard, meta.id)))
                && sources.isolated(Some(si)))
        {
            m.segments_pruned += 1;
            continue;
        }
        m.segments_scanned += 1;
        seg_sources += 1;
        seg_cols[si] = slots
            .iter()
            .map(|s| match s {
                Slot::Field(name, ty) => seg_column(meta, name, ColumnKind::Field(*ty)),
                _ => None,
            })
            .collect();
        let (set_cols, tag_cols) = filter_columns(req, |n, k| seg_column(meta, n, k));
        // per series: its key; `None` when its tags fail the filters or it is set aside
        let mut skipped = vec![false; meta.series.len()];
        let keys: Vec<Option<Key>> = meta
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let value_of = |c| s.tags.iter().find(|(k, _)| *k == c).map(|(_, v)| &**v);
                if !tags_pass(req, &tag_cols, value_of) {
                    return None;
                }
                if !set_cols.is_empty()
                    && seg
                        .series_strings(i)
                        .is_some_and(|strings| excluded(strings, &set_cols))
                {
                    skipped[i] = true;
                    return None;
                }
                Some(seg_key(meta, i))
            })
            .collect();
        // Blocks grouped by series within the segment first, so the map across segments is
        // touched once per (segment, series) rather than once per block.
        let mut local: Vec<Vec<Piece>> = vec![Vec::new(); keys.len()];
        for (bi, b) in meta.blocks.iter().enumerate() {
            let i = b.series as usize;
            if keys.get(i).is_none_or(Option::is_none) && skipped.get(i) != Some(&true) {
                continue;
            }
            if !overlaps(req, b.min_time, b.max_time) {
                m.blocks_pruned += 1;
                continue;
            }
            if let Some(v) = local.get_mut(b.series as usize) {
                v.push(Piece {
                    src: Src::Seg(si, bi),
                    min: b.min_time,
                    max: b.max_time,
                    rows: b.rows,
                });
            }
        }
        for (i, (key, pieces)) in keys.into_iter().zip(local).enumerate() {
            match (key, pieces.is_empty()) {
                (_, true) => {}
                (Some(key), false) => series.entry(key).or_default().extend(pieces),
                (None, false) => aside.push(Aside {
                    identity: identity(seg_tags(meta, i)),
                    of: AsideOf::Seg(si, i),
                    pieces,
                }),
            }
        }
    }
    let head_cols: Vec<Option<u32>> = slots
        .iter()
        .map(|s| match s {
            Slot::Field(name, ty) => schema_column(schema, name, ColumnKind::Field(*ty)),
            _ => None,
        })
        .collect();
    let (head_set_cols, head_tag_cols) = filter_columns(req, |n, k| schema_column(schema, n, k));
    if let Some(th) = head {
        for (vi, sv) in th.series.iter().enumerate() {
            let value_of = |c| sv.tags.iter().find(|(k, _)| k.0 == c).map(|(_, v)| &**v);
            if !tags_pass(req, &head_tag_cols, value_of) {
                continue;
            }
            let set_aside = !head_set_cols.is_empty() && excluded(sv.strings(), &head_set_cols);
            if set_aside && seg_sources == 0 {
                // the head is the only source: nothing to take it back for
                m.blocks_pruned += (sv.blocks.len() + sv.frozen.len()) as u64;
                continue;
            }
            let mut entry = Vec::new();
            for (bi, b) in sv.blocks.iter().enumerate() {
                if overlaps(req, b.min_time, b.max_time) {
                    entry.push(Piece {
                        src: Src::HeadBlock(vi, bi),
                        min: b.min_time,
                        max: b.max_time,
                        rows: b.rows,
                    });
                } else {
                    m.blocks_pruned += 1;
                }
            }
            for (ci, c) in sv.frozen.iter().enumerate() {
                let (Some(min), Some(max)) = (c.times.first(), c.times.last()) else {
                    continue;
                };
                if overlaps(req, *min, *max) {
                    entry.push(Piece {
                        src: Src::Raw(vi, ci),
                        min: *min,
                        max: *max,
                        rows: u32::try_from(c.len()).unwrap_or(u32::MAX),
                    });
                } else {
                    m.blocks_pruned += 1;
                }
            }
            if entry.is_empty() {
                continue;
            }
            if set_aside {
                aside.push(Aside {
                    identity: identity(head_tags(schema, sv)),
                    of: AsideOf::Head(vi),
                    pieces: entry,
                });
            } else {
                series
                    .entry(head_key(schema, sv))
                    .or_default()
                    .extend(entry);
            }
        }
    }
    take_back(&mut series, aside, &sources, version, schema, head, m);
    let slot_of = |name: &str| {
        slots
            .iter()
            .position(|s| matches!(s, Slot::Field(n, _) if **n == *name))
    };
    let range_slots: Vec<Option<usize>> = req
        .field_ranges
        .iter()
        .map(|r| slot_of(&r.column))
        .collect();
    let set_slots: Vec<Option<usize>> =
        req.string_sets.iter().map(|s| slot_of(&s.column)).collect();
    let visible = out.width();
    let ctx = Ctx {
        version,
        head,
        seg_cols: &seg_cols,
        head_cols: &head_cols,
        slots,
        req,
        range_slots: &range_slots,
        set_slots: &set_slots,
        set_bits: &set_bits,
        filters: Filters::new(req, slot_of),
        visible,
    };
    let (part, parts) = req.split;
    for (key, pieces, first) in share(series, req.latest, part, parts) {
        if first {
            m.series += 1;
        }
        ctx.series(&key, pieces, out, m)?;
        if out.full() {
            break;
        }
    }
    Ok(())
}

/// The pieces' indices in time order if no piece overlaps the next (no row to merge across
/// pieces), else `None`.
fn disjoint_order(pieces: &[Piece]) -> Option<Vec<usize>> {
    let mut by_time: Vec<usize> = (0..pieces.len()).collect();
    by_time.sort_by_key(|&i| (pieces[i].min, i));
    by_time
        .windows(2)
        .all(|w| pieces[w[0]].max < pieces[w[1]].min)
        .then_some(by_time)
}

/// Part `part` of `parts` of a shard's series, in key order: each series, with whether this
/// part holds its first piece. The work is cut into units, a series whose pieces must be read
/// together (they overlap, or only its latest rows are wanted) or one piece of a series whose
/// pieces are disjoint, weighed by rows; each part takes a contiguous run of units of about
/// equal weight, so every part's rows stay in (series, time) order.
fn share(
    series: BTreeMap<Key, Vec<Piece>>,
    whole: bool,
    part: usize,
    parts: usize,
) -> Vec<(Key, Vec<Piece>, bool)> {
    let mut entries: Vec<(Key, Vec<Piece>)> =
        series.into_iter().filter(|(_, p)| !p.is_empty()).collect();
    if parts <= 1 {
        return entries.into_iter().map(|(k, p)| (k, p, true)).collect();
    }
    let weight = |ps: &[Piece]| ps.iter().map(|p| u64::from(p.rows)).sum::<u64>().max(1);
    // (series index, pieces, weight)
    let mut units: Vec<(usize, Vec<Piece>, u64)> = Vec::new();
    for (si, (_, pieces)) in entries.iter().enumerate() {
        match (!whole).then(|| disjoint_order(pieces)).flatten() {
            Some(order) => {
                units.extend(
                    order
                        .into_iter()
                        .map(|i| (si, vec![pieces[i]], weight(&pieces[i..=i]))),
                );
            }
            None => units.push((si, pieces.clone(), weight(pieces))),
        }
    }
    let total = units.iter().map(|u| u.2).sum::<u64>().max(1);
    let mut at = 0u64;
    let mut prev = usize::MAX;
    let mut out: Vec<(usize, Vec<Piece>, bool)> = Vec::new();
    for (si, pieces, w) in units {
        // the part of the unit's midpoint: non-decreasing, so each part's units are contiguous
        let mid = at + w / 2;
        at += w;
        let owner = (u128::from(mid) * parts as u128 / u128::from(total)) as usize;
        let first = si != prev;
        prev = si;
        if owner.min(parts - 1) != part {
            continue;
        }
        match out.last_mut() {
            Some((last, v, _)) if *last == si => v.extend(pieces),
            _ => out.push((si, pieces, first)),
        }
    }
    out.into_iter()
        .map(|(si, pieces, first)| (std::mem::take(&mut entries[si].0), pieces, first))
        .collect()
}

struct Ctx<'a> {
    version: &'a ShardVersion,
    head: Option<&'a Arc<crate::head::TableHeadView>>,
    seg_cols: &'a [Vec<Option<u32>>],
    head_cols: &'a [Option<u32>],
    slots: &'a [Slot],
    req: &'a ScanRequest,
    /// The output slot of each field range's and string set's column (`None`: unprojected).
    range_slots: &'a [Option<usize>],
    set_slots: &'a [Option<usize>],
    /// Per string set, the signature bits of its values.
    set_bits: &'a [u64],
    /// The request's exact conditions on fields.
    filters: Filters<'a>,
    /// Output slots returned (those after them are read by conditions only).
    visible: usize,
}

impl<'a> Ctx<'a> {
    fn series(
        &self,
        key: &Key,
        mut pieces: Vec<Piece>,
        out: &mut Output,
        m: &mut ScanMetrics,
    ) -> Result<(), ScanError> {
        // No row of a series can match when no piece of it may: a merged row's values each
        // come from some piece.
        let hints = !self.req.field_ranges.is_empty() || !self.req.string_sets.is_empty();
        if hints && !pieces.iter().any(|p| self.may_match(*p)) {
            m.blocks_pruned += pieces.len() as u64;
            return Ok(());
        }
        if self.req.latest && self.constant_over(&pieces) {
            return self.latest(key, pieces, out, m);
        }
        // Pieces are in write order. If, sorted by time, none overlaps the next, there are no
        // duplicates to resolve and statistics may prune; otherwise merge everything.
        if let Some(by_time) = disjoint_order(&pieces) {
            let ordered: Vec<Piece> = by_time.iter().map(|&i| pieces[i]).collect();
            for p in ordered {
                if hints && !self.may_match(p) {
                    m.blocks_pruned += 1;
                    continue;
                }
                let c = self.decode_filtered(p, m)?;
                out.push(key, c)?;
                if out.full() {
                    return Ok(());
                }
            }
            return Ok(());
        }
        let mut chunks = Vec::with_capacity(pieces.len());
        for p in pieces.drain(..) {
            chunks.push(self.decode(p, m)?);
        }
        let merged = Chunk::merge(chunks).slice_time(self.req.time.0, self.req.time.1);
        out.push(key, self.filter(merged, m))
    }

    /// A chunk's rows that pass the request's exact conditions.
    fn filter(&self, chunk: Chunk, m: &mut ScanMetrics) -> Chunk {
        if self.filters.is_empty() {
            return chunk;
        }
        let mut keep = vec![true; chunk.len()];
        self.filters
            .apply(&mut keep, |slot| chunk.column(slot as u32));
        let passed = keep.iter().filter(|k| **k).count();
        m.rows_filtered += (chunk.len() - passed) as u64;
        chunk.filter(&keep)
    }

    /// A piece's rows in the time range that pass the request's exact conditions: the columns
    /// those read are decoded first, the others only if some row passes.
    fn decode_filtered(&self, p: Piece, m: &mut ScanMetrics) -> Result<Chunk, ScanError> {
        let (lo, hi) = self.req.time;
        if self.filters.is_empty() {
            return Ok(self.decode(p, m)?.slice_time(lo, hi));
        }
        let started = std::time::Instant::now();
        let result = (|| {
            let times = self.decode_times(p, m)?;
            let mut columns = self.decode_columns(p, &|s| self.filters.reads(s), m)?;
            for (_, c) in &mut columns {
                c.pad_to(times.len());
            }
            let first = times.partition_point(|&t| t < lo);
            let last = times.partition_point(|&t| t < hi);
            let mut keep: Vec<bool> = (0..times.len()).map(|i| i >= first && i < last).collect();
            let column = |slot: usize| {
                columns
                    .iter()
                    .find(|(k, _)| *k as usize == slot)
                    .map(|(_, c)| c)
            };
            self.filters.apply(&mut keep, column);
            let passed = keep.iter().filter(|k| **k).count();
            m.rows_filtered += (last - first - passed.min(last - first)) as u64;
            if passed == 0 {
                m.blocks_filtered += 1;
                return Ok(Chunk::default());
            }
            columns.extend(self.decode_columns(p, &|s| !self.filters.reads(s), m)?);
            // columns only the conditions read are not returned: not worth filtering
            columns.retain(|(k, _)| (*k as usize) < self.visible);
            columns.sort_by_key(|(k, _)| *k);
            let mut chunk = Chunk { times, columns };
            chunk.finish();
            Ok(chunk.filter(&keep))
        })();
        m.decode_nanos += u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        result
    }

    /// The series' latest `latest_rows` rows in the time range: decodes the pieces that reach
    /// furthest until every other piece ends before the oldest of those rows (a piece reaching
    /// as far may hold a later write of one of them), not the history before.
    fn latest(
        &self,
        key: &Key,
        pieces: Vec<Piece>,
        out: &mut Output,
        m: &mut ScanMetrics,
    ) -> Result<(), ScanError> {
        let want = self.req.latest_rows.max(1);
        let mut order: Vec<usize> = (0..pieces.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(pieces[i].max));
        let mut take = 1.min(pieces.len());
        let merged = loop {
            // the taken pieces merged in write order, which decides between equal timestamps
            let mut taken = order[..take].to_vec();
            taken.sort_unstable();
            let mut chunks = Vec::with_capacity(taken.len());
            for &i in &taken {
                chunks.push(self.decode(pieces[i], m)?);
            }
            let merged = Chunk::merge(chunks).slice_time(self.req.time.0, self.req.time.1);
            let merged = self.filter(merged, m);
            if take == pieces.len() {
                break merged;
            }
            let n = merged.len();
            if n >= want {
                // pieces ending before the oldest wanted row hold only older rows
                let cutoff = merged.times[n - want];
                let reach = order[take..]
                    .iter()
                    .take_while(|&&i| pieces[i].max >= cutoff)
                    .count();
                if reach == 0 {
                    break merged;
                }
                take += reach;
            } else {
                // too few rows in range so far: look further back, doubling
                take = (take * 2).min(pieces.len());
            }
        };
        m.blocks_pruned += (pieces.len() - take) as u64;
        let n = merged.len();
        if n == 0 {
            return Ok(());
        }
        out.push(key, merged.slice_rows(n.saturating_sub(want), n))
    }

    fn head_series(&self, vi: usize) -> Option<&'a crate::head::SeriesView> {
        self.head.and_then(|h| h.series.get(vi)).map(|s| &**s)
    }

    /// Segment `si`'s column id for output slot `slot` (`None`: the segment lacks it).
    fn seg_col(&self, si: usize, slot: usize) -> Option<u32> {
        self.seg_cols
            .get(si)
            .and_then(|c| c.get(slot))
            .copied()
            .flatten()
    }

    /// A piece's column in output slot `slot`, read without decoding the block.
    fn held(&self, p: Piece, slot: usize) -> Held<'a> {
        let absent = Held::Absent;
        match p.src {
            Src::Seg(si, bi) => {
                let col = self.seg_col(si, slot);
                let Some(seg) = self.version.segments.get(si) else {
                    return absent;
                };
                let (Some(col), Some(b)) = (col, seg.meta.blocks.get(bi)) else {
                    return absent;
                };
                let Some(c) = b.columns.iter().find(|c| c.column == col) else {
                    return absent;
                };
                match seg.column_ref(c) {
                    Ok(r) => Held::Encoded {
                        col: r,
                        rows: b.rows,
                        min: c.min,
                        max: c.max,
                    },
                    // unreadable: claim nothing (no pruning, no constant); decode reports it
                    Err(_) => Held::Unknown,
                }
            }
            Src::HeadBlock(vi, bi) => {
                let col = self.head_cols.get(slot).copied().flatten();
                let b = self.head_series(vi).and_then(|s| s.blocks.get(bi));
                let (Some(col), Some(b)) = (col, b) else {
                    return absent;
                };
                match (b.column(col), b.columns.iter().find(|c| c.key == col)) {
                    (Some(r), Some(c)) => Held::Encoded {
                        col: r,
                        rows: b.rows,
                        min: c.min,
                        max: c.max,
                    },
                    _ => absent,
                }
            }
            Src::Raw(vi, ci) => {
                let col = self.head_cols.get(slot).copied().flatten();
                let c = self.head_series(vi).and_then(|s| s.frozen.get(ci));
                match (col, c) {
                    (Some(col), Some(c)) => c.column(col).map_or(absent, Held::Raw),
                    _ => absent,
                }
            }
        }
    }

    /// False when statistics or dictionaries prove no row of `p` matches the request's hints.
    fn may_match(&self, p: Piece) -> bool {
        // hints on unprojected fields cannot be checked: keep the piece
        let ranges = self
            .req
            .field_ranges
            .iter()
            .zip(self.range_slots)
            .all(|(want, slot)| match slot.map(|s| self.held(p, s)) {
                Some(Held::Encoded { min, max, .. }) => may_match(min, max, want),
                _ => true,
            });
        ranges
            && self
                .req
                .string_sets
                .iter()
                .zip(self.set_slots)
                .zip(self.set_bits)
                .all(|((set, slot), bits)| {
                    slot.is_none_or(|s| {
                        !self.signature_excludes(p, s, set, *bits) && self.held(p, s).may_hold(set)
                    })
                })
    }

    /// True when a block's string signature shows that its column `slot` holds none of `set`'s
    /// values (whose bits are `bits`) and no null it asks for: no bytes are read.
    fn signature_excludes(&self, p: Piece, slot: usize, set: &StringSet, bits: u64) -> bool {
        // (nulls, rows, signature) of the piece's column
        let held = match p.src {
            Src::Seg(si, bi) => (|| {
                let seg = self.version.segments.get(si)?;
                let col = self.seg_col(si, slot)?;
                let b = seg.meta.blocks.get(bi)?;
                let pos = b.columns.iter().position(|c| c.column == col)?;
                let c = &b.columns[pos];
                Some((c.nulls, b.rows, seg.signature(bi, pos)?))
            })(),
            Src::HeadBlock(vi, bi) => (|| {
                let col = self.head_cols.get(slot).copied().flatten()?;
                let b = self.head_series(vi)?.blocks.get(bi)?;
                let c = b.columns.iter().find(|c| c.key == col)?;
                Some((c.nulls, b.rows, c.signature))
            })(),
            Src::Raw(..) => None,
        };
        let Some((nulls, rows, sig)) = held else {
            return false;
        };
        let piece = block::StringSummary {
            rows: u64::from(rows),
            nulls: u64::from(nulls),
            signature: sig,
        };
        piece.excludes(bits, set.null)
    }

    /// Whether every `latest_by` column holds one value over all of a series' pieces.
    fn constant_over(&self, pieces: &[Piece]) -> bool {
        self.req.latest_by.iter().all(|name| {
            if self
                .slots
                .iter()
                .any(|s| matches!(s, Slot::Tag(n) if **n == **name))
            {
                return true;
            }
            let Some(slot) = self.slot_of(name) else {
                return false;
            };
            let mut first: Option<Constant> = None;
            pieces.iter().all(|p| match self.held(*p, slot).constant() {
                None => false,
                Some(c) => match &first {
                    None => {
                        first = Some(c);
                        true
                    }
                    Some(f) => *f == c,
                },
            })
        })
    }

    /// The output slot of a projected field (statistics prune only projected fields).
    fn slot_of(&self, name: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| matches!(s, Slot::Field(n, _) if **n == *name))
    }

    /// Decodes a piece into a chunk keyed by output slot (field slots only).
    fn decode(&self, p: Piece, m: &mut ScanMetrics) -> Result<Chunk, ScanError> {
        let started = std::time::Instant::now();
        let chunk = (|| {
            let times = self.decode_times(p, m)?;
            let columns = self.decode_columns(p, &|_| true, m)?;
            Ok(Chunk { times, columns })
        })();
        m.decode_nanos += u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        chunk
    }

    /// A piece's timestamps (one decode per piece: counted as the piece's decode).
    fn decode_times(&self, p: Piece, m: &mut ScanMetrics) -> Result<Vec<i64>, ScanError> {
        m.blocks_decoded += 1;
        let times = match p.src {
            Src::Seg(si, bi) => {
                let (seg, b) = self.seg_block(si, bi)?;
                let tb = seg.bytes(b.times).map_err(|e| seg_corrupt(seg, e))?;
                m.bytes_decoded += tb.len() as u64;
                block::decode_times(tb, b.rows).map_err(|e| seg_corrupt(seg, e))?
            }
            Src::HeadBlock(vi, bi) => {
                let b = self.head_block(vi, bi)?;
                m.bytes_decoded += b.times.len() as u64;
                block::decode_times(&b.times, b.rows).map_err(head_corrupt)?
            }
            Src::Raw(vi, ci) => self.head_chunk(vi, ci)?.times.clone(),
        };
        m.rows_decoded += times.len() as u64;
        Ok(times)
    }

    /// A piece's columns of the output slots `want` accepts, keyed by slot, in slot order.
    fn decode_columns(
        &self,
        p: Piece,
        want: &dyn Fn(usize) -> bool,
        m: &mut ScanMetrics,
    ) -> Result<Vec<(u32, Column)>, ScanError> {
        let mut columns = Vec::new();
        match p.src {
            Src::Seg(si, bi) => {
                let (seg, b) = self.seg_block(si, bi)?;
                for (slot, col) in self.seg_cols.get(si).into_iter().flatten().enumerate() {
                    let Some(col) = col.filter(|_| want(slot)) else {
                        continue;
                    };
                    let Some(c) = b.columns.iter().find(|c| c.column == col) else {
                        continue;
                    };
                    let r = seg.column_ref(c).map_err(|e| seg_corrupt(seg, e))?;
                    m.bytes_decoded += (r.data.len() + r.validity.len()) as u64;
                    let d = block::decode_column(r, b.rows).map_err(|e| seg_corrupt(seg, e))?;
                    columns.push((slot as u32, d));
                }
            }
            Src::HeadBlock(vi, bi) => {
                let b = self.head_block(vi, bi)?;
                for (slot, col) in self.head_cols.iter().enumerate() {
                    let Some(r) = col.filter(|_| want(slot)).and_then(|c| b.column(c)) else {
                        continue;
                    };
                    m.bytes_decoded += (r.data.len() + r.validity.len()) as u64;
                    let d = block::decode_column(r, b.rows).map_err(head_corrupt)?;
                    columns.push((slot as u32, d));
                }
            }
            Src::Raw(vi, ci) => {
                let c = self.head_chunk(vi, ci)?;
                for (slot, col) in self.head_cols.iter().enumerate() {
                    if let Some(src) = col.filter(|_| want(slot)).and_then(|k| c.column(k)) {
                        columns.push((slot as u32, src.clone()));
                    }
                }
            }
        }
        Ok(columns)
    }

    fn seg_block(
        &self,
        si: usize,
        bi: usize,
    ) -> Result<(&'a crate::segment::Segment, &'a crate::segment::SegBlock), ScanError> {
        let seg = self
            .version
            .segments
            .get(si)
            .ok_or_else(|| ScanError::Corrupt {
                source_name: "segment".into(),
                message: "missing".into(),
            })?;
        let b = seg.meta.blocks.get(bi).ok_or_else(|| ScanError::Corrupt {
            source_name: seg.path.display().to_string(),
            message: "missing block".into(),
        })?;
        Ok((seg, b))
    }

    fn head_block(&self, vi: usize, bi: usize) -> Result<&'a block::Block, ScanError> {
        self.head_series(vi)
            .and_then(|s| s.blocks.get(bi))
            .map(|b| &**b)
            .ok_or_else(|| head_corrupt("missing block"))
    }

    fn head_chunk(&self, vi: usize, ci: usize) -> Result<&'a Chunk, ScanError> {
        self.head_series(vi)
            .and_then(|s| s.frozen.get(ci))
            .map(|c| &**c)
            .ok_or_else(|| head_corrupt("missing chunk"))
    }
}

fn seg_corrupt(seg: &crate::segment::Segment, e: impl ToString) -> ScanError {
    ScanError::Corrupt {
        source_name: seg.path.display().to_string(),
        message: e.to_string(),
    }
}

fn head_corrupt(e: impl ToString) -> ScanError {
    ScanError::Corrupt {
        source_name: "head".into(),
        message: e.to_string(),
    }
}
