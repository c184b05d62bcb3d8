//! The SQL catalog: the default schema (`public`) lists the store's telemetry tables, `iot` and
//! `system` hold special tables (and, for `iot`, the store's `iot.*` tables). Tables are looked
//! up in the store at planning time, so a table or column that appeared a moment ago is there.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::SchemaProvider;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::TableProvider;
use mast_storage::Store;

use crate::table::MastTable;

/// Prefixes of store table names that are not telemetry tables of the default schema.
pub const RESERVED_PREFIXES: [&str; 3] = ["iot.", "system.", "information_schema."];

/// One schema: store tables under a prefix plus registered special tables.
#[derive(Debug)]
pub struct MastSchema {
    store: Arc<Store>,
    /// `None`: the default schema (store tables without a reserved prefix); `Some("iot.")`:
    /// store tables named `iot.{name}`, seen as `{name}`.
    prefix: Option<&'static str>,
    /// Store tables are not looked up at all (the `system` schema).
    specials_only: bool,
    specials: RwLock<BTreeMap<String, Arc<dyn TableProvider>>>,
}

impl MastSchema {
    /// The default schema: every telemetry table.
    pub fn telemetry(store: Arc<Store>) -> MastSchema {
        MastSchema {
            store,
            prefix: None,
            specials_only: false,
            specials: RwLock::default(),
        }
    }

    /// A schema of special tables plus the store's tables named `{prefix}{name}`.
    pub fn prefixed(store: Arc<Store>, prefix: &'static str) -> MastSchema {
        MastSchema {
            store,
            prefix: Some(prefix),
            specials_only: false,
            specials: RwLock::default(),
        }
    }

    /// A schema of special tables only.
    pub fn specials(store: Arc<Store>) -> MastSchema {
        MastSchema {
            store,
            prefix: None,
            specials_only: true,
            specials: RwLock::default(),
        }
    }

    /// Adds (or replaces) a special table.
    pub fn add(&self, name: &str, table: Arc<dyn TableProvider>) {
        self.specials
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), table);
    }

    fn store_name(&self, name: &str) -> Option<String> {
        if self.specials_only {
            return None;
        }
        match self.prefix {
            Some(p) => Some(format!("{p}{name}")),
            None if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) => None,
            None => Some(name.to_string()),
        }
    }

    fn special(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        self.specials
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }
}

#[async_trait]
impl SchemaProvider for MastSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .specials
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        if !self.specials_only {
            for t in self.store.catalog().tables() {
                let n = &*t.name;
                match self.prefix {
                    Some(p) => {
                        if let Some(rest) = n.strip_prefix(p) {
                            names.push(rest.to_string());
                        }
                    }
                    None if RESERVED_PREFIXES.iter().any(|p| n.starts_with(p)) => {}
                    None => names.push(n.to_string()),
                }
            }
        }
        names.sort();
        names.dedup();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if let Some(t) = self.special(name) {
            return Ok(Some(t));
        }
        Ok(self
            .store_name(name)
            .and_then(|n| MastTable::open(&self.store, &n))
            .map(|t| Arc::new(t) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.special(name).is_some()
            || self
                .store_name(name)
                .is_some_and(|n| self.store.catalog().lookup(&n).is_some())
    }
}
