//! Resolving a batch against the catalog and the shard's series: names become ids (each distinct
//! name once per batch), points of the wrong type are rejected, and what remains is a list of rows
//! ready to be applied to the head.

use std::collections::HashMap;
use std::sync::Arc;

use crate::batch::{Value, WriteBatch};
use crate::error::PointError;
use crate::head::{Head, HeadValue, SeriesTags, series_key};
use crate::schema::{Catalog, ColumnId, ColumnKind, FieldType, TableId};
use crate::ticket::Rejected;

/// A row ready for the head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResolvedRow {
    pub(crate) table: TableId,
    pub(crate) series: u32,
    pub(crate) time: i64,
    pub(crate) fields: (u32, u32),
}

/// A batch after resolution.
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    pub(crate) rows: Vec<ResolvedRow>,
    pub(crate) fields: Vec<(ColumnId, HeadValue)>,
    pub(crate) rejected: Vec<Rejected>,
    pub(crate) points: u64,
}

impl Resolved {
    pub(crate) fn row_fields(&self, r: &ResolvedRow) -> &[(ColumnId, HeadValue)] {
        self.fields
            .get(r.fields.0 as usize..r.fields.1 as usize)
            .unwrap_or(&[])
    }
}

/// Every series a shard holds (in segments or head), by table and series key: a series counts
/// against the table's limit once, not again each time a new head takes it up after a seal.
pub(crate) type KnownSeries = std::collections::HashSet<(TableId, Vec<u8>), ahash::RandomState>;

/// Per-shard caches of catalog ids, so the catalog lock is taken only for names new to the shard,
/// and the shard's known series.
#[derive(Debug, Default)]
pub(crate) struct NameCache {
    tables: HashMap<Box<str>, TableId, ahash::RandomState>,
    columns: HashMap<(TableId, Box<str>), (ColumnId, ColumnKind), ahash::RandomState>,
    pub(crate) series: KnownSeries,
}

impl NameCache {
    pub(crate) fn table(&mut self, catalog: &Catalog, name: &str) -> Result<TableId, PointError> {
        if let Some(t) = self.tables.get(name) {
            return Ok(*t);
        }
        let t = catalog.table(name)?;
        self.tables.insert(name.into(), t);
        Ok(t)
    }

    pub(crate) fn column(
        &mut self,
        catalog: &Catalog,
        table: TableId,
        name: &str,
        kind: ColumnKind,
    ) -> Result<ColumnId, PointError> {
        if let Some((id, k)) = self.columns.get(&(table, name.into()))
            && *k == kind
        {
            return Ok(*id);
        }
        // the catalog reports the conflict with both types
        let id = catalog.column(table, name, kind)?;
        self.columns.insert((table, name.into()), (id, kind));
        Ok(id)
    }

    /// Finds or creates the head series for `tags` (counting a new one against the table limit).
    pub(crate) fn series(
        &mut self,
        catalog: &Catalog,
        head: &mut Head,
        table: TableId,
        tags: &[(&str, &str)],
    ) -> Result<u32, PointError> {
        let mut ids: Vec<(ColumnId, Arc<str>)> = Vec::with_capacity(tags.len());
        for (k, v) in tags {
            let c = self.column(catalog, table, k, ColumnKind::Tag)?;
            ids.push((c, Arc::from(*v)));
        }
        ids.sort_by_key(|(c, _)| *c);
        let key = series_key(&ids);
        let th = head.table_mut(table);
        if let Some(s) = th.find(&key) {
            return Ok(s);
        }
        let known = (table, key);
        if !self.series.contains(&known) {
            catalog.add_series(table)?;
            self.series.insert(known.clone());
        }
        let (_, key) = known;
        let tags: SeriesTags = ids.into();
        Ok(head.table_mut(table).insert(key, tags))
    }
}

fn value_type(v: &Value) -> FieldType {
    match v {
        Value::F64(_) => FieldType::Float,
        Value::I64(_) => FieldType::Integer,
        Value::Bool(_) => FieldType::Boolean,
        Value::Str(_) => FieldType::String,
    }
}

/// Resolves every row of `batch`.
pub(crate) fn resolve(
    batch: &WriteBatch,
    catalog: &Catalog,
    cache: &mut NameCache,
    head: &mut Head,
) -> Resolved {
    let mut out = Resolved {
        rows: Vec::with_capacity(batch.rows.len()),
        fields: Vec::with_capacity(batch.fields.len()),
        ..Resolved::default()
    };
    // per batch series: (table, head series) or the error that refuses its rows
    let mut series: Vec<Option<Result<(TableId, u32), PointError>>> =
        vec![None; batch.series.len()];
    // per field-name symbol: [(table, type) -> column or error]
    type FieldMemo = Vec<((TableId, FieldType), Result<ColumnId, PointError>)>;
    let mut field_memo: Vec<FieldMemo> = vec![Vec::new(); batch.strings.len()];
    let mut str_memo: Vec<Option<Arc<str>>> = vec![None; batch.strings.len()];
    for (ri, row) in batch.rows.iter().enumerate() {
        let si = row.series as usize;
        let Some(bs) = batch.series.get(si) else {
            continue;
        };
        let resolved = series[si].get_or_insert_with(|| {
            let table = cache.table(catalog, batch.str(bs.table))?;
            let tags: Vec<(&str, &str)> = bs
                .tags
                .iter()
                .map(|(k, v)| (batch.str(*k), batch.str(*v)))
                .collect();
            let s = cache.series(catalog, head, table, &tags)?;
            Ok((table, s))
        });
        let (table, sid) = match resolved {
            Ok(x) => *x,
            Err(e) => {
                out.rejected.push(Rejected {
                    row: ri as u32,
                    field: None,
                    error: e.clone(),
                });
                continue;
            }
        };
        let start = out.fields.len() as u32;
        for (name, v) in batch.row_fields(row) {
            let ty = value_type(v);
            let memo = &mut field_memo[*name as usize];
            let col = match memo.iter().find(|(k, _)| *k == (table, ty)) {
                Some((_, r)) => r.clone(),
                None => {
                    let r = cache.column(catalog, table, batch.str(*name), ColumnKind::Field(ty));
                    memo.push(((table, ty), r.clone()));
                    r
                }
            };
            match col {
                Ok(c) => {
                    let hv = match *v {
                        Value::F64(x) => HeadValue::F64(x),
                        Value::I64(x) => HeadValue::I64(x),
                        Value::Bool(x) => HeadValue::Bool(x),
                        Value::Str(s) => HeadValue::Str(Arc::clone(
                            str_memo[s as usize].get_or_insert_with(|| Arc::from(batch.str(s))),
                        )),
                    };
                    out.fields.push((c, hv));
                }
                Err(e) => out.rejected.push(Rejected {
                    row: ri as u32,
                    field: Some(Arc::from(batch.str(*name))),
                    error: e,
                }),
            }
        }
        let end = out.fields.len() as u32;
        if end > start || batch.row_fields(row).is_empty() {
            out.points += u64::from(end - start);
            out.rows.push(ResolvedRow {
                table,
                series: sid,
                time: row.time,
                fields: (start, end),
            });
        }
    }
    out
}

/// The batch restricted to what `resolved` accepted (for the WAL), when anything was rejected.
pub(crate) fn accepted_only(batch: &WriteBatch, resolved: &Resolved) -> Option<WriteBatch> {
    if resolved.rejected.is_empty() {
        return None;
    }
    let mut refused_rows = vec![false; batch.rows.len()];
    let mut refused_fields: Vec<(u32, &str)> = Vec::new();
    for r in &resolved.rejected {
        match &r.field {
            None => {
                if let Some(x) = refused_rows.get_mut(r.row as usize) {
                    *x = true;
                }
            }
            Some(f) => refused_fields.push((r.row, f)),
        }
    }
    let mut out = WriteBatch::new();
    let mut smap: HashMap<u32, crate::batch::SeriesRef> = HashMap::new();
    for (ri, row) in batch.rows.iter().enumerate() {
        if refused_rows[ri] {
            continue;
        }
        let Some(bs) = batch.series.get(row.series as usize) else {
            continue;
        };
        let sref = *smap.entry(row.series).or_insert_with(|| {
            let tags: Vec<(&str, &str)> = bs
                .tags
                .iter()
                .map(|(k, v)| (batch.str(*k), batch.str(*v)))
                .collect();
            out.series(batch.str(bs.table), &tags)
        });
        let fields: Vec<(&str, crate::batch::FieldValue<'_>)> = batch
            .row_fields(row)
            .iter()
            .filter(|(name, _)| {
                !refused_fields
                    .iter()
                    .any(|(r, f)| *r == ri as u32 && *f == batch.str(*name))
            })
            .map(|(name, v)| {
                let fv = match *v {
                    Value::F64(x) => crate::batch::FieldValue::F64(x),
                    Value::I64(x) => crate::batch::FieldValue::I64(x),
                    Value::Bool(x) => crate::batch::FieldValue::Bool(x),
                    Value::Str(s) => crate::batch::FieldValue::Str(batch.str(s)),
                };
                (batch.str(*name), fv)
            })
            .collect();
        if fields.is_empty() && !batch.row_fields(row).is_empty() {
            continue;
        }
        let mut w = out.row(sref, row.time);
        for (n, v) in fields {
            w.field(n, v);
        }
    }
    Some(out)
}
