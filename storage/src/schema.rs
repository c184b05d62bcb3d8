//! The catalog: tables, their columns and types, shared by every shard.
//!
//! Tables and columns appear on first write. A column keeps the type it was first written with; a
//! later point of another type is rejected ([`PointError::TypeConflict`]) and the rest of its batch
//! is kept. Limits (columns and series per table) are checked here, once per new name, never per
//! point. Shards keep their own caches of the ids, so the mutex below is taken only when a name is
//! new to a shard, and by readers asking for schemas.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::batch::DEVICE_TAG;
use crate::error::PointError;

/// The name of the timestamp column every table has.
pub const TIME_COLUMN: &str = "time";

/// Type of a field column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FieldType {
    /// 64-bit float.
    Float,
    /// 64-bit signed integer.
    Integer,
    /// Boolean.
    Boolean,
    /// UTF-8 string.
    String,
}

impl FieldType {
    /// The name used in errors and in `system.columns`.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Float => "float64",
            FieldType::Integer => "int64",
            FieldType::Boolean => "bool",
            FieldType::String => "string",
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            FieldType::Float => 1,
            FieldType::Integer => 2,
            FieldType::Boolean => 3,
            FieldType::String => 4,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<FieldType> {
        Some(match c {
            1 => FieldType::Float,
            2 => FieldType::Integer,
            3 => FieldType::Boolean,
            4 => FieldType::String,
            _ => return None,
        })
    }

    /// The Arrow type of this field in scans.
    pub fn arrow_type(self) -> DataType {
        match self {
            FieldType::Float => DataType::Float64,
            FieldType::Integer => DataType::Int64,
            FieldType::Boolean => DataType::Boolean,
            // Dictionary-encoded, as blocks store them: IoT strings are mostly a few distinct
            // values (status, mode, site, model).
            FieldType::String => {
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
            }
        }
    }
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ColumnKind {
    /// A tag: part of the series key, a string.
    Tag,
    /// A field of the given type.
    Field(FieldType),
}

/// A column of a table (the `time` column is implicit and not listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// Column name.
    pub name: Arc<str>,
    /// Tag or typed field.
    pub kind: ColumnKind,
}

/// Id of a table in this process's catalog (not persisted: files carry names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableId(pub u32);

/// Index of a column in its table's [`TableSchema::columns`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ColumnId(pub u32);

/// A table's columns at one moment. Columns are only ever appended, so a [`ColumnId`] stays valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// Table name.
    pub name: Arc<str>,
    /// Columns in first-seen order; a column's index is its [`ColumnId`].
    pub columns: Vec<ColumnDef>,
}

impl TableSchema {
    /// Finds a column by name.
    pub fn column(&self, name: &str) -> Option<(ColumnId, &ColumnDef)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, c)| &*c.name == name)
            .map(|(i, c)| (ColumnId(i as u32), c))
    }

    /// Column names in the order of the external contract: `time`, `device_id`, other tags, fields.
    pub fn output_columns(&self) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = vec![TIME_COLUMN.into()];
        let tags = self.columns.iter().filter(|c| c.kind == ColumnKind::Tag);
        let (dev, others): (Vec<_>, Vec<_>) = tags.partition(|c| &*c.name == DEVICE_TAG);
        out.extend(dev.into_iter().chain(others).map(|c| Arc::clone(&c.name)));
        out.extend(
            self.columns
                .iter()
                .filter(|c| c.kind != ColumnKind::Tag)
                .map(|c| Arc::clone(&c.name)),
        );
        out
    }

    /// The Arrow field of a column name (`time` included), as scans return it.
    pub fn arrow_field(&self, name: &str) -> Option<Field> {
        if name == TIME_COLUMN {
            return Some(Field::new(
                TIME_COLUMN,
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ));
        }
        let (_, c) = self.column(name)?;
        Some(match c.kind {
            ColumnKind::Tag => Field::new(
                name,
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            ColumnKind::Field(t) => Field::new(name, t.arrow_type(), true),
        })
    }

    /// The Arrow schema of the whole table, in [`Self::output_columns`] order.
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .output_columns()
            .iter()
            .filter_map(|c| self.arrow_field(c))
            .collect();
        Arc::new(Schema::new(fields))
    }
}

/// Limits the catalog enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most series (distinct tag sets) one table may hold.
    pub max_series_per_table: u64,
    /// Most columns (tags + fields, `time` excluded) one table may hold.
    pub max_columns_per_table: usize,
    /// Most bytes in a table, column or tag name.
    pub max_name_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_series_per_table: 1_000_000,
            max_columns_per_table: 1_024,
            max_name_bytes: 255,
        }
    }
}

#[derive(Debug)]
struct TableState {
    schema: Arc<TableSchema>,
    by_name: HashMap<Arc<str>, ColumnId>,
    series: Arc<AtomicU64>,
}

#[derive(Debug, Default)]
struct Inner {
    tables: Vec<TableState>,
    by_name: HashMap<Arc<str>, TableId>,
}

/// Every table and column the store knows, shared by all shards.
#[derive(Debug, Default)]
pub struct Catalog {
    inner: Mutex<Inner>,
    limits: Limits,
}

impl Catalog {
    /// An empty catalog with the given limits.
    pub fn new(limits: Limits) -> Self {
        Catalog {
            inner: Mutex::default(),
            limits,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // a panic while holding this lock leaves the maps consistent (every update is one insert)
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_name(&self, what: &'static str, name: &str) -> Result<(), PointError> {
        let ok = !name.is_empty()
            && name.len() <= self.limits.max_name_bytes
            && !name.chars().any(char::is_control);
        if ok {
            Ok(())
        } else {
            Err(PointError::InvalidName {
                what,
                name: name.chars().take(64).collect(),
            })
        }
    }

    /// Finds or creates a table.
    pub fn table(&self, name: &str) -> Result<TableId, PointError> {
        let mut inner = self.lock();
        if let Some(id) = inner.by_name.get(name) {
            return Ok(*id);
        }
        self.check_name("table", name)?;
        let id = TableId(inner.tables.len() as u32);
        let name: Arc<str> = name.into();
        inner.tables.push(TableState {
            schema: Arc::new(TableSchema {
                name: Arc::clone(&name),
                columns: Vec::new(),
            }),
            by_name: HashMap::new(),
            series: Arc::new(AtomicU64::new(0)),
        });
        inner.by_name.insert(name, id);
        Ok(id)
    }

    /// Finds or creates a column; rejects a kind or type other than the one first seen.
    pub fn column(
        &self,
        table: TableId,
        name: &str,
        kind: ColumnKind,
    ) -> Result<ColumnId, PointError> {
        let mut inner = self.lock();
        let Some(t) = inner.tables.get_mut(table.0 as usize) else {
            return Err(PointError::InvalidName {
                what: "table id",
                name: table.0.to_string(),
            });
        };
        if let Some(id) = t.by_name.get(name) {
            let existing = t.schema.columns[id.0 as usize].kind;
            if existing == kind {
                return Ok(*id);
            }
            let table = t.schema.name.to_string();
            let column = name.to_string();
            return Err(match (existing, kind) {
                (ColumnKind::Field(existing), ColumnKind::Field(got)) => PointError::TypeConflict {
                    table,
                    column,
                    existing,
                    got,
                },
                (ColumnKind::Tag, _) => PointError::KindConflict {
                    table,
                    column,
                    existing: "tag",
                },
                (ColumnKind::Field(_), _) => PointError::KindConflict {
                    table,
                    column,
                    existing: "field",
                },
            });
        }
        if name == TIME_COLUMN {
            return Err(PointError::ReservedName {
                name: name.to_string(),
            });
        }
        self.check_name("column", name)?;
        if t.schema.columns.len() >= self.limits.max_columns_per_table {
            return Err(PointError::TooManyColumns {
                table: t.schema.name.to_string(),
                limit: self.limits.max_columns_per_table,
            });
        }
        let id = ColumnId(t.schema.columns.len() as u32);
        let name: Arc<str> = name.into();
        let mut schema = (*t.schema).clone();
        schema.columns.push(ColumnDef {
            name: Arc::clone(&name),
            kind,
        });
        t.schema = Arc::new(schema);
        t.by_name.insert(name, id);
        Ok(id)
    }

    /// Counts one more series in `table`, or refuses past the limit.
    pub(crate) fn add_series(&self, table: TableId) -> Result<(), PointError> {
        let (counter, name) = {
            let inner = self.lock();
            let Some(t) = inner.tables.get(table.0 as usize) else {
                return Ok(());
            };
            (Arc::clone(&t.series), Arc::clone(&t.schema.name))
        };
        let limit = self.limits.max_series_per_table;
        // Relaxed: the counter is only a limit check; no other memory is published through it.
        counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| PointError::TooManySeries {
                table: name.to_string(),
                limit,
            })
    }

    /// The schema of a table by id.
    pub fn schema(&self, table: TableId) -> Option<Arc<TableSchema>> {
        let inner = self.lock();
        inner
            .tables
            .get(table.0 as usize)
            .map(|t| Arc::clone(&t.schema))
    }

    /// Looks a table up by name.
    pub fn lookup(&self, name: &str) -> Option<(TableId, Arc<TableSchema>)> {
        let inner = self.lock();
        let id = *inner.by_name.get(name)?;
        let t = inner.tables.get(id.0 as usize)?;
        Some((id, Arc::clone(&t.schema)))
    }

    /// Every table's schema, in creation order.
    pub fn tables(&self) -> Vec<Arc<TableSchema>> {
        let inner = self.lock();
        inner.tables.iter().map(|t| Arc::clone(&t.schema)).collect()
    }

    /// Number of series in a table.
    pub fn series_count(&self, table: TableId) -> u64 {
        let inner = self.lock();
        inner
            .tables
            .get(table.0 as usize)
            .map_or(0, |t| t.series.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_conflict_is_reported_with_both_types() {
        let c = Catalog::default();
        let t = c.table("m").unwrap();
        let a = c
            .column(t, "temp", ColumnKind::Field(FieldType::Float))
            .unwrap();
        assert_eq!(
            c.column(t, "temp", ColumnKind::Field(FieldType::Float))
                .unwrap(),
            a
        );
        let err = c
            .column(t, "temp", ColumnKind::Field(FieldType::String))
            .unwrap_err();
        assert_eq!(
            err,
            PointError::TypeConflict {
                table: "m".into(),
                column: "temp".into(),
                existing: FieldType::Float,
                got: FieldType::String
            }
        );
        assert!(matches!(
            c.column(t, "temp", ColumnKind::Tag),
            Err(PointError::KindConflict { .. })
        ));
        assert!(matches!(
            c.column(t, "time", ColumnKind::Tag),
            Err(PointError::ReservedName { .. })
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let c = Catalog::new(Limits {
            max_series_per_table: 2,
            max_columns_per_table: 2,
            ..Limits::default()
        });
        let t = c.table("m").unwrap();
        c.column(t, "a", ColumnKind::Tag).unwrap();
        c.column(t, "b", ColumnKind::Field(FieldType::Integer))
            .unwrap();
        assert_eq!(
            c.column(t, "c", ColumnKind::Tag),
            Err(PointError::TooManyColumns {
                table: "m".into(),
                limit: 2
            })
        );
        c.add_series(t).unwrap();
        c.add_series(t).unwrap();
        assert!(matches!(
            c.add_series(t),
            Err(PointError::TooManySeries { limit: 2, .. })
        ));
        assert!(matches!(c.table(""), Err(PointError::InvalidName { .. })));
    }

    #[test]
    fn output_order_is_time_device_tags_fields() {
        let c = Catalog::default();
        let t = c.table("m").unwrap();
        c.column(t, "v", ColumnKind::Field(FieldType::Float))
            .unwrap();
        c.column(t, "fleet", ColumnKind::Tag).unwrap();
        c.column(t, "device_id", ColumnKind::Tag).unwrap();
        let cols = c.schema(t).unwrap().output_columns();
        let cols: Vec<&str> = cols.iter().map(|c| &**c).collect();
        assert_eq!(cols, ["time", "device_id", "fleet", "v"]);
    }
}
