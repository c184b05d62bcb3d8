//! `[ingest]`: how telemetry payloads map onto tables — which JSON keys are tags.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Invalid;
use crate::ingest::TagKeys;

/// Telemetry decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// JSON keys that are tags, not fields, in every table (Telegraf's `tag_keys`): their
    /// values (strings, or numbers and booleans as text) join `device_id` in the series key.
    pub tag_keys: Vec<String>,
    /// Per-table settings, added to the ones above.
    pub tables: BTreeMap<String, TableIngest>,
}

/// One table's decoding settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableIngest {
    /// JSON keys that are tags in this table, besides `ingest.tag_keys`.
    pub tag_keys: Vec<String>,
}

impl IngestConfig {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        let lists = std::iter::once(("ingest.tag_keys".to_owned(), &self.tag_keys)).chain(
            self.tables
                .iter()
                .map(|(t, c)| (format!("ingest.tables.{t}.tag_keys"), &c.tag_keys)),
        );
        for (key, list) in lists {
            for k in list {
                if k.is_empty() || k == "device_id" || k == "time" || k == "ts" {
                    return Err(Invalid::new(
                        &key,
                        format!(
                            "{key}: {k:?} cannot be a tag key (device_id comes from the topic, \
                             time and ts are the timestamp)"
                        ),
                    ));
                }
            }
        }
        for t in self.tables.keys() {
            if crate::ingest::reserved_table(t) {
                return Err(Invalid::new(
                    "ingest.tables",
                    format!("ingest.tables.{t}: {t} is one of Mast's own tables"),
                ));
            }
        }
        Ok(())
    }

    /// The lookup the decoders use.
    pub fn tag_keys(&self) -> TagKeys {
        TagKeys::new(
            &self.tag_keys,
            self.tables
                .iter()
                .map(|(t, c)| (t.as_str(), c.tag_keys.as_slice())),
        )
    }
}
