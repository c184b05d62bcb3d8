//! The head: a shard's not-yet-sealed data, owned by the shard's worker thread.
//!
//! Each series collects rows in an open chunk; at `block_rows` rows the series' unencoded rows are
//! merged (sorted, duplicates resolved) and encoded into an immutable [`Block`]. Readers never touch
//! the mutable parts: when a reader asks, the worker freezes each changed series' open rows into an
//! immutable chunk and publishes a [`HeadView`] of `Arc`s — so a view costs the new rows since the
//! last view, not a copy of the head, and a reader sees whole groups of writes only.

use std::collections::HashMap;
use std::sync::Arc;

use crate::block::{Block, StringSummaries, string_signature};
use crate::chunk::Chunk;
use crate::schema::{ColumnId, FieldType, TableId};

/// A series' tag values by column id, sorted by id.
pub(crate) type SeriesTags = Arc<[(ColumnId, Arc<str>)]>;

/// An immutable view of one series' head data, in write order: blocks, then frozen chunks.
#[derive(Debug)]
pub(crate) struct SeriesView {
    pub(crate) tags: SeriesTags,
    pub(crate) blocks: Vec<Arc<Block>>,
    pub(crate) frozen: Vec<Arc<Chunk>>,
    /// What its string columns hold over all of it, built on first use (a view never changes).
    strings: std::sync::OnceLock<StringSummaries>,
}

impl SeriesView {
    /// Per string column (by column id), what the series' head rows hold.
    pub(crate) fn strings(&self) -> &StringSummaries {
        self.strings.get_or_init(|| {
            let mut all = StringSummaries::default();
            for b in &self.blocks {
                let strings = b.columns.iter().filter(|c| c.ty == FieldType::String);
                all.add(
                    u64::from(b.rows),
                    strings.map(|c| (c.key, u64::from(c.nulls), c.signature)),
                );
            }
            for c in &self.frozen {
                let strings = c.columns.iter().filter_map(|(key, col)| match &col.values {
                    crate::chunk::Values::Str(v) => Some((
                        *key,
                        col.null_count() as u64,
                        string_signature(v.dict().iter().map(|s| &**s)),
                    )),
                    _ => None,
                });
                all.add(c.len() as u64, strings);
            }
            all
        })
    }
}

/// An immutable view of one table's head data.
#[derive(Debug)]
pub(crate) struct TableHeadView {
    pub(crate) series: Vec<Arc<SeriesView>>,
}

/// An immutable view of a shard's head.
#[derive(Debug, Default)]
pub(crate) struct HeadView {
    pub(crate) tables: HashMap<TableId, Arc<TableHeadView>>,
}

#[derive(Debug)]
pub(crate) struct SeriesHead {
    pub(crate) tags: SeriesTags,
    pub(crate) blocks: Vec<Arc<Block>>,
    pub(crate) frozen: Vec<Arc<Chunk>>,
    open: Chunk,
    unencoded: usize,
    view: Option<Arc<SeriesView>>,
}

impl SeriesHead {
    fn new(tags: SeriesTags) -> Self {
        SeriesHead {
            tags,
            blocks: Vec::new(),
            frozen: Vec::new(),
            open: Chunk::default(),
            unencoded: 0,
            view: None,
        }
    }

    /// Moves the open rows into an immutable frozen chunk.
    fn freeze(&mut self) {
        if !self.open.is_empty() {
            let open = std::mem::take(&mut self.open).normalize();
            self.frozen.push(Arc::new(open));
        }
    }

    /// Merges every unencoded row into one chunk (in write order) and returns it.
    pub(crate) fn take_unencoded(&mut self) -> Chunk {
        self.freeze();
        let pieces: Vec<Chunk> = self
            .frozen
            .drain(..)
            .map(|c| Arc::try_unwrap(c).unwrap_or_else(|a| (*a).clone()))
            .collect();
        self.unencoded = 0;
        self.view = None;
        Chunk::merge(pieces)
    }

    /// Encodes the unencoded rows into a block; returns (raw bytes freed, block bytes added).
    pub(crate) fn encode(&mut self) -> (usize, usize) {
        let rows = self.unencoded;
        let merged = self.take_unencoded();
        if merged.is_empty() {
            return (0, 0);
        }
        let block = Block::encode(&merged);
        let bytes = block.bytes();
        self.blocks.push(Arc::new(block));
        (raw_bytes(rows, merged.columns.len()), bytes)
    }

    fn view(&mut self) -> Arc<SeriesView> {
        if let Some(v) = &self.view {
            return Arc::clone(v);
        }
        self.freeze();
        let v = Arc::new(SeriesView {
            tags: Arc::clone(&self.tags),
            blocks: self.blocks.clone(),
            frozen: self.frozen.clone(),
            strings: std::sync::OnceLock::new(),
        });
        self.view = Some(Arc::clone(&v));
        v
    }
}

fn raw_bytes(rows: usize, columns: usize) -> usize {
    rows * (8 + 10 * columns.max(1))
}

/// One table's head in one shard.
#[derive(Debug, Default)]
pub(crate) struct TableHead {
    pub(crate) series: Vec<SeriesHead>,
    index: HashMap<Vec<u8>, u32>,
    view: Option<Arc<TableHeadView>>,
}

impl TableHead {
    /// Finds a series by its key bytes (see [`series_key`]).
    pub(crate) fn find(&self, key: &[u8]) -> Option<u32> {
        self.index.get(key).copied()
    }

    pub(crate) fn insert(&mut self, key: Vec<u8>, tags: SeriesTags) -> u32 {
        let id = self.series.len() as u32;
        self.series.push(SeriesHead::new(tags));
        self.index.insert(key, id);
        id
    }
}

/// The canonical key bytes of a tag set (sorted by column id).
pub(crate) fn series_key(tags: &[(ColumnId, Arc<str>)]) -> Vec<u8> {
    let mut k = Vec::with_capacity(tags.len() * 16);
    for (c, v) in tags {
        k.extend_from_slice(&c.0.to_le_bytes());
        k.extend_from_slice(&(v.len() as u32).to_le_bytes());
        k.extend_from_slice(v.as_bytes());
    }
    k
}

/// A field value being applied to the head.
#[derive(Debug, Clone)]
pub(crate) enum HeadValue {
    F64(f64),
    I64(i64),
    Bool(bool),
    Str(Arc<str>),
}

impl HeadValue {
    pub(crate) fn field_type(&self) -> FieldType {
        match self {
            HeadValue::F64(_) => FieldType::Float,
            HeadValue::I64(_) => FieldType::Integer,
            HeadValue::Bool(_) => FieldType::Boolean,
            HeadValue::Str(_) => FieldType::String,
        }
    }
}

/// A shard's head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) tables: HashMap<TableId, TableHead>,
    block_rows: usize,
    raw_bytes: usize,
    block_bytes: usize,
    rows: u64,
}

impl Head {
    pub(crate) fn new(block_rows: usize) -> Self {
        Head {
            tables: HashMap::new(),
            block_rows: block_rows.max(1),
            raw_bytes: 0,
            block_bytes: 0,
            rows: 0,
        }
    }

    /// Approximate memory held.
    pub(crate) fn bytes(&self) -> usize {
        self.raw_bytes + self.block_bytes
    }

    /// Rows applied since the head was last emptied.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    pub(crate) fn table_mut(&mut self, table: TableId) -> &mut TableHead {
        self.tables.entry(table).or_default()
    }

    /// Appends one row to a series. `fields` may name a column twice; the last value wins.
    pub(crate) fn push_row(
        &mut self,
        table: TableId,
        series: u32,
        time: i64,
        fields: &[(ColumnId, HeadValue)],
    ) {
        let block_rows = self.block_rows;
        let Some(t) = self.tables.get_mut(&table) else {
            return;
        };
        let Some(s) = t.series.get_mut(series as usize) else {
            return;
        };
        t.view = None;
        s.view = None;
        s.open.times.push(time);
        let n = s.open.times.len();
        for (col, v) in fields {
            let c = s.open.column_mut(col.0, v.field_type());
            if c.values.len() == n {
                // the same field twice in one row: keep the later value
                c.truncate_last();
            }
            c.pad_to(n - 1);
            match v {
                HeadValue::F64(x) => c.push_f64(*x),
                HeadValue::I64(x) => c.push_i64(*x),
                HeadValue::Bool(x) => c.push_bool(*x),
                HeadValue::Str(x) => c.push_str(Arc::clone(x)),
            }
        }
        s.unencoded += 1;
        self.rows += 1;
        self.raw_bytes += raw_bytes(1, fields.len());
        if s.unencoded >= block_rows {
            let (freed, added) = s.encode();
            self.raw_bytes = self.raw_bytes.saturating_sub(freed);
            self.block_bytes += added;
        }
    }

    /// An immutable view; unchanged tables and series reuse their previous views.
    pub(crate) fn view(&mut self) -> HeadView {
        let mut tables = HashMap::with_capacity(self.tables.len());
        for (id, t) in &mut self.tables {
            let v = match &t.view {
                Some(v) => Arc::clone(v),
                None => {
                    let v = Arc::new(TableHeadView {
                        series: t.series.iter_mut().map(SeriesHead::view).collect(),
                    });
                    t.view = Some(Arc::clone(&v));
                    v
                }
            };
            tables.insert(*id, v);
        }
        HeadView { tables }
    }
}
