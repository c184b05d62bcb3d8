//! The special tables the engine crate supplies to SQL: `system.connections` (from the broker),
//! `iot.devices` (from the metadata store's device records), `iot.shadows` (its shadow
//! records), `iot.certificates` (its certificate records) and `system.unreadable_records`
//! (metadata records that did not decode). `iot.device_events` is a telemetry table and needs
//! nothing here.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use mast_meta::MetaStore;
use mast_query::QueryEngine;
use mast_query::datafusion::common::{DataFusionError, Result};
use mast_query::special::Scan;
use mast_query::system::ts_type;
use mast_query::{SpecialTable, async_trait};

use crate::mqtt::Broker;
use crate::registry::{Device, Registry};

/// Registers the engine's special tables.
pub fn register(engine: &QueryEngine, broker: &Arc<Broker>, meta: &Arc<MetaStore>) {
    engine.add_system_table(
        "connections",
        Connections::new(Arc::clone(broker), Arc::clone(meta)),
    );
    engine.add_iot_table("devices", Devices::new(Arc::clone(meta)));
    engine.add_iot_table("shadows", Shadows::new(Arc::clone(meta)));
    engine.add_iot_table("certificates", Certificates::new(Arc::clone(meta)));
    engine.add_iot_table("firmware", FirmwareTable::new(Arc::clone(meta)));
    engine.add_iot_table("ota_jobs", OtaJobs::new(Arc::clone(meta)));
    engine.add_iot_table("ota_executions", OtaExecutions::new(Arc::clone(meta)));
    engine.add_system_table("unreadable_records", Unreadable::new(Arc::clone(meta)));
}

fn external(e: mast_meta::MetaError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// `system.connections`: one row per connected MQTT client.
#[derive(Debug)]
pub struct Connections {
    broker: Arc<Broker>,
    meta: Arc<MetaStore>,
    schema: SchemaRef,
}

impl Connections {
    fn new(broker: Arc<Broker>, meta: Arc<MetaStore>) -> Connections {
        let schema = Arc::new(Schema::new(vec![
            Field::new("client_id", DataType::Utf8, false),
            Field::new("address", DataType::Utf8, true),
            Field::new("protocol", DataType::Utf8, false),
            Field::new("username", DataType::Utf8, true),
            Field::new("connected_at", ts_type(), true),
            Field::new("subscriptions", DataType::UInt64, false),
            Field::new("queued_messages", DataType::UInt64, false),
            Field::new("queued_bytes", DataType::UInt64, false),
            Field::new("inflight", DataType::UInt64, false),
            Field::new("session_expiry_secs", DataType::UInt32, false),
            Field::new("identity", DataType::Utf8, false),
            Field::new("certificate_id", DataType::Utf8, true),
        ]));
        Connections {
            broker,
            meta,
            schema,
        }
    }
}

#[async_trait]
impl SpecialTable for Connections {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn scan(&self, scan: &Scan) -> Result<RecordBatch> {
        let wanted = scan.values_of("client_id");
        let mut rows = scan.rows(&self.schema);
        for c in self.broker.connections() {
            if wanted.as_ref().is_some_and(|w| !w.contains(&c.client_id)) {
                continue;
            }
            let rec = crate::presence::record(&self.meta, &c.client_id)
                .map_err(external)?
                .filter(|r| r.connected);
            rows.row()
                .str(&c.client_id)
                .opt_str(rec.as_ref().map(|r| r.address.as_str()))
                .str(c.protocol)
                .opt_str(rec.as_ref().and_then(|r| r.username.as_deref()))
                .opt_ts(rec.as_ref().map(|r| r.connected_at))
                .u64(c.subscriptions as u64)
                .u64(c.queued as u64)
                .u64(c.queued_bytes as u64)
                .u64(c.inflight as u64)
                .u32(c.expiry_secs)
                .str(c.identity)
                .opt_str(c.certificate.map(|f| f.to_string()).as_deref());
        }
        rows.finish()
    }
}

/// `iot.devices`: every device Mast knows — seen on MQTT or created through the API — with
/// its presence, its profile (type, hardware revision, tags as JSON text, static groups) and
/// the firmware version its classic shadow reports. A condition on `device_id` (`=`, `IN`)
/// reads only those devices; the shadows are read only when `firmware_version` is.
#[derive(Debug)]
pub struct Devices {
    registry: Registry,
    schema: SchemaRef,
    /// Devices read so far (for tests: a lookup by id must not read every device).
    read: Arc<AtomicU64>,
}

impl Devices {
    fn new(meta: Arc<MetaStore>) -> Devices {
        let item = Arc::new(Field::new("item", DataType::Utf8, true));
        let schema = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new("connected", DataType::Boolean, false),
            Field::new("address", DataType::Utf8, true),
            Field::new("protocol", DataType::Utf8, true),
            Field::new("username", DataType::Utf8, true),
            Field::new("connected_at", ts_type(), true),
            Field::new("disconnected_at", ts_type(), true),
            Field::new("disconnect_reason", DataType::Utf8, true),
            Field::new("device_type", DataType::Utf8, true),
            Field::new("hardware_revision", DataType::Utf8, true),
            Field::new("firmware_version", DataType::Utf8, true),
            Field::new("tags", DataType::Utf8, false),
            Field::new("groups", DataType::List(item), false),
            Field::new("created_at", ts_type(), true),
            Field::new("last_seen", ts_type(), true),
        ]));
        Devices {
            registry: Registry::new(meta, None),
            schema,
            read: Arc::new(AtomicU64::new(0)),
        }
    }
}

fn registry_error(e: mast_devices::profile::RegistryError) -> DataFusionError {
    DataFusionError::Execution(e.message)
}

#[async_trait]
impl SpecialTable for Devices {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn scan(&self, scan: &Scan) -> Result<RecordBatch> {
        let firmware = scan.reads(&self.schema, "firmware_version");
        let devices = match scan.values_of("device_id") {
            Some(mut ids) => {
                ids.sort();
                ids.dedup();
                let mut out = Vec::new();
                for id in ids {
                    out.extend(
                        self.registry
                            .device(&id, firmware)
                            .map_err(registry_error)?,
                    );
                }
                out
            }
            None => self.registry.all(firmware).map_err(registry_error)?,
        };
        self.read.fetch_add(devices.len() as u64, Ordering::Relaxed);
        let tags = scan.reads(&self.schema, "tags");
        let mut rows = scan.rows(&self.schema);
        for d in &devices {
            device_row(&mut rows, d, tags);
        }
        rows.finish()
    }
}

fn device_row(rows: &mut mast_query::special::Rows, d: &Device, tags: bool) {
    let r = d.record.as_ref();
    let p = d.profile.as_ref();
    let tags = if tags {
        d.tags().to_string()
    } else {
        String::new()
    };
    rows.row()
        .str(&d.id)
        .bool(d.connected())
        .opt_str(r.map(|r| r.address.as_str()))
        .opt_str(r.map(|r| r.protocol.as_str()))
        .opt_str(r.and_then(|r| r.username.as_deref()))
        .opt_ts(r.map(|r| r.connected_at))
        .opt_ts(r.and_then(|r| r.disconnected_at))
        .opt_str(r.and_then(|r| r.disconnect_reason.as_deref()))
        .opt_str(d.device_type())
        .opt_str(p.and_then(|p| p.hardware_revision.as_deref()))
        .opt_str(d.firmware.as_deref())
        .str(&tags)
        .str_list(d.groups())
        .opt_ts(d.created_at())
        .opt_ts(d.last_seen());
}

/// `iot.shadows`: one row per live device shadow, as durable in the metadata store; the
/// documents are JSON text. A condition on `device_id` reads only that device's shadows.
#[derive(Debug)]
pub struct Shadows {
    meta: Arc<MetaStore>,
    schema: SchemaRef,
}

impl Shadows {
    fn new(meta: Arc<MetaStore>) -> Shadows {
        let schema = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new("shadow_name", DataType::Utf8, false),
            Field::new("version", DataType::UInt64, false),
            Field::new("desired", DataType::Utf8, true),
            Field::new("reported", DataType::Utf8, true),
            Field::new("delta", DataType::Utf8, true),
            Field::new("metadata", DataType::Utf8, false),
            Field::new("updated_at", ts_type(), false),
            Field::new("in_sync", DataType::Boolean, false),
        ]));
        Shadows { meta, schema }
    }
}

#[async_trait]
impl SpecialTable for Shadows {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn scan(&self, scan: &Scan) -> Result<RecordBatch> {
        use mast_devices::shadow::topic;
        use mast_meta::tables::SHADOWS;
        let entries = match scan.values_of("device_id") {
            Some(mut ids) => {
                ids.sort();
                ids.dedup();
                let mut out = Vec::new();
                for id in ids {
                    let prefix = topic::key(&id, "");
                    out.extend(self.meta.scan_prefix(SHADOWS, &prefix).map_err(external)?);
                }
                out
            }
            None => self.meta.scan_prefix(SHADOWS, b"").map_err(external)?,
        };
        let json = |o: &Option<serde_json::Map<String, serde_json::Value>>| {
            o.as_ref().and_then(|o| serde_json::to_string(o).ok())
        };
        let mut rows = scan.rows(&self.schema);
        for (k, v) in &entries {
            let Some((device, name)) = topic::split_key(k) else {
                self.meta.report_unreadable(SHADOWS, k, "not a shadow key");
                continue;
            };
            let Some(s) = crate::shadows::decode_or_report(&self.meta, k, v) else {
                continue;
            };
            if !s.exists() {
                continue;
            }
            let delta = s.delta();
            let in_sync = delta.is_empty();
            let delta = (!in_sync).then(|| serde_json::Value::Object(delta).to_string());
            let secs = i64::try_from(s.updated_at).unwrap_or(i64::MAX / 1_000_000_000);
            rows.row()
                .str(device)
                .str(name)
                .u64(s.version)
                .opt_str(json(&s.desired).as_deref())
                .opt_str(json(&s.reported).as_deref())
                .opt_str(delta.as_deref())
                .str(&s.metadata().to_string())
                .ts(secs.saturating_mul(1_000_000_000))
                .bool(in_sync);
        }
        rows.finish()
    }
}

/// `iot.certificates`: one row per client certificate Mast knows, as durable in the metadata
/// store. A condition on `id` reads only those records.
#[derive(Debug)]
pub struct Certificates {
    meta: Arc<MetaStore>,
    schema: SchemaRef,
}

impl Certificates {
    fn new(meta: Arc<MetaStore>) -> Certificates {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("device_id", DataType::Utf8, true),
            Field::new("template", DataType::Utf8, true),
            Field::new("status", DataType::Utf8, false),
            Field::new("made", DataType::Utf8, false),
            Field::new("serial", DataType::Utf8, false),
            Field::new("common_name", DataType::Utf8, true),
            Field::new("issuer", DataType::Utf8, true),
            Field::new("not_before", ts_type(), false),
            Field::new("not_after", ts_type(), false),
            Field::new("created_at", ts_type(), false),
            Field::new("last_used_at", ts_type(), true),
            Field::new("revoked_at", ts_type(), true),
            Field::new("replaces", DataType::Utf8, true),
            Field::new("replaced_by", DataType::Utf8, true),
            Field::new("ca_id", DataType::Utf8, true),
        ]));
        Certificates { meta, schema }
    }
}

#[async_trait]
impl SpecialTable for Certificates {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn scan(&self, scan: &Scan) -> Result<RecordBatch> {
        use mast_devices::certs::registry::CertRecord;
        use mast_meta::tables::CERTIFICATES;
        let entries = match scan.values_of("id") {
            Some(mut ids) => {
                ids.sort();
                ids.dedup();
                let mut out = Vec::new();
                for id in ids {
                    let key = id.to_ascii_lowercase().into_bytes();
                    if let Some(v) = self.meta.get(CERTIFICATES, &key).map_err(external)? {
                        out.push((key, v));
                    }
                }
                out
            }
            None => self.meta.scan_prefix(CERTIFICATES, b"").map_err(external)?,
        };
        let mut rows = scan.rows(&self.schema);
        for (k, v) in &entries {
            let r = match CertRecord::decode(v) {
                Ok(r) => r,
                Err(e) => {
                    self.meta.report_unreadable(CERTIFICATES, k, e);
                    continue;
                }
            };
            rows.row()
                .str(&r.id)
                .opt_str(r.device_id.as_deref())
                .opt_str(r.template.as_deref())
                .str(r.status.as_str())
                .str(r.made.as_str())
                .str(&r.serial)
                .opt_str(r.common_name.as_deref())
                .opt_str(r.issuer.as_deref())
                .ts(r.not_before)
                .ts(r.not_after)
                .ts(r.created_at)
                .opt_ts(r.last_used_at)
                .opt_ts(r.revoked_at)
                .opt_str(r.replaces.as_deref())
                .opt_str(r.replaced_by.as_deref())
                .opt_str(r.ca.as_deref());
        }
        rows.finish()
    }
}

/// `iot.firmware`: the firmware registry, deleted firmware included (`deleted_at` set).
#[derive(Debug)]
pub struct FirmwareTable {
    meta: Arc<MetaStore>,
    schema: SchemaRef,
}

impl FirmwareTable {
    fn new(meta: Arc<MetaStore>) -> FirmwareTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("version", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("device_type", DataType::Utf8, true),
            Field::new("hardware_revision", DataType::Utf8, true),
            Field::new("size", DataType::UInt64, false),
            Field::new("sha256", DataType::Utf8, false),
            Field::new("signing_key", DataType::Utf8, true),
            Field::new("created_at", ts_type(), false),
            Field::new("deleted_at", ts_type(), true),
        ]));
        FirmwareTable { meta, schema }
    }
}

#[async_trait]
impl SpecialTable for FirmwareTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn scan(&self, scan: &Scan) -> Result<RecordBatch> {
        use mast_devices::ota::firmware::Firmware;
        use mast_meta::tables::FIRMWARE;
        let entries = self.meta.scan_prefix(FIRMWARE, b"").map_err(external)?;
        let mut rows = scan.rows(&self.schema);
        for (k, v) in &entries {
            let f = match Firmware::decode(v) {
                Ok(f) => f,
                Err(e) => {
                    self.meta.report_unreadable(FIRMWARE, k, e);
                    continue;
                }
            };
            rows.row()
                .str(&f.id)
                .str(&f.name)
                .str(&f.version)
                .str(f.kind.as_str())
                .opt_str(f.device_type.as_deref())
                .opt_str(f.hardware_revision.as_deref())
                .u64(f.size)
                .str(&f.sha256)
                .opt_str(f.signature.as_ref().map(|s| s.key_id.as_str()))
                .ts(f.created_at)
                .opt_ts(f.deleted_at);
        }
        rows.finish()
    }
}

/// Every readable job execution (the latest attempt of each job on each device).
fn executions(meta: &MetaStore) -> Result<Vec<mast_devices::ota::execution::Execution>> {
    use mast_meta::tables::OTA_EXECUTIONS;
    let entries = meta.scan_prefix(OTA_EXECUTIONS, b"").map_err(external)?;
    Ok(entries
        .iter()
        .filter_map(|(k, v)| match mast_devices::ota::job::decode_execution(v) {
            Ok(e) => Some(e),
            Err(e) => {
                meta.report_unreadable(OTA_EXECUTIONS, k, e);
                None
            }
        })
        .collect())
}

/// `iot.ota_jobs`: one row per job — its definition, state, and how many of its executions
/// are in each state.
#[derive(Debug)]
pub struct OtaJobs {
    meta: Arc<MetaStore>,
    schema: SchemaRef,
}

impl OtaJobs {
    fn new(meta: Arc<MetaStore>) -> OtaJobs {
        let mut fields = vec![
            Field::new("job_id", DataType::Utf8, false),
            Field::new("description", DataType::Utf8, true),
            Field::new("status", DataType::Utf8, false),
            Field::new("firmware_id", DataType::Utf8, true),
            Field::new("target_selection", DataType::Utf8, false),
            Field::new("targets", DataType::Utf8, false),
            Field::new("document", DataType::Utf8, false),
            Field::new("in_progress_timeout_secs", DataType::Int64, true),
            Field::new("created_at", ts_type(), false),
            Field::new("updated_at", ts_type(), false),
            Field::new("completed_at", ts_type(), true),
            Field::new("targeted", DataType::UInt64, false),
            Field::new("incompatible", DataType::UInt64, false),
        ];
        for s in mast_devices::ota::execution::ALL {
            fields.push(Field::new(
                s.as_str().to_ascii_lowercase(),
                DataType::UInt64,
                false,
            ));
        }
        OtaJobs {
            meta,
            schema: Arc::new(Schema::new(fields)),
        }
    }
}

#[async_trait]
impl SpecialTable for OtaJobs {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn scan(&self, scan: &Scan) -> Result<RecordBatch> {
        use mast_devices::ota::execution::ALL;
        use mast_devices::ota::job::Job;
        use mast_meta::tables::OTA_JOBS;
        let entries = self.meta.scan_prefix(OTA_JOBS, b"").map_err(external)?;
        let mut counts: HashMap<String, [u64; 8]> = HashMap::new();
        for e in executions(&self.meta)? {
            let i = ALL.iter().position(|s| *s == e.status).unwrap_or(0);
            counts.entry(e.job_id).or_default()[i] += 1;
        }
        let mut rows = scan.rows(&self.schema);
        for (k, v) in &entries {
            let j = match Job::decode(v) {
                Ok(j) => j,
                Err(e) => {
                    self.meta.report_unreadable(OTA_JOBS, k, e);
                    continue;
                }
            };
            let c = counts.get(&j.job_id).copied().unwrap_or_default();
            let mut r = rows
                .row()
                .str(&j.job_id)
                .opt_str(j.description.as_deref())
                .str(j.status.as_str())
                .opt_str(j.firmware.as_deref())
                .str(match j.target_selection {
                    mast_devices::ota::job::Selection::Snapshot => "snapshot",
                    mast_devices::ota::job::Selection::Continuous => "continuous",
                })
                .str(&serde_json::to_string(&j.targets).unwrap_or_default())
                .str(&j.document.to_string())
                .opt_i64(j.in_progress_timeout_ns().map(|ns| ns / 1_000_000_000))
                .ts(j.created_at)
                .ts(j.updated_at)
                .opt_ts(j.completed_at)
                .u64(c.iter().sum())
                .u64(j.incompatible);
            for n in c {
                r = r.u64(n);
            }
        }
        rows.finish()
    }
}

/// `iot.ota_executions`: one row per job and device — the latest attempt's state.
#[derive(Debug)]
pub struct OtaExecutions {
    meta: Arc<MetaStore>,
    schema: SchemaRef,
}

impl OtaExecutions {
    fn new(meta: Arc<MetaStore>) -> OtaExecutions {
        let schema = Arc::new(Schema::new(vec![
            Field::new("job_id", DataType::Utf8, false),
            Field::new("device_id", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("status_details", DataType::Utf8, false),
            Field::new("result_code", DataType::Utf8, true),
            Field::new("running_version", DataType::Utf8, true),
            Field::new("version_number", DataType::UInt64, false),
            Field::new("execution_number", DataType::UInt64, false),
            Field::new("retries", DataType::UInt64, false),
            Field::new("queued_at", ts_type(), false),
            Field::new("started_at", ts_type(), true),
            Field::new("last_updated_at", ts_type(), false),
        ]));
        OtaExecutions { meta, schema }
    }
}

#[async_trait]
impl SpecialTable for OtaExecutions {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn scan(&self, scan: &Scan) -> Result<RecordBatch> {
        let mut rows = scan.rows(&self.schema);
        for e in executions(&self.meta)? {
            rows.row()
                .str(&e.job_id)
                .str(&e.thing)
                .str(e.status.as_str())
                .str(&serde_json::to_string(&e.status_details).unwrap_or_default())
                .opt_str(e.status_details.get("result_code").map(String::as_str))
                .opt_str(e.status_details.get("running_version").map(String::as_str))
                .u64(e.version_number)
                .u64(e.execution_number)
                .u64(e.execution_number.saturating_sub(1))
                .ts(e.queued_at)
                .opt_ts(e.started_at)
                .ts(e.last_updated_at);
        }
        rows.finish()
    }
}

/// `system.unreadable_records`: metadata records that did not decode since the server started
/// (they are left as they are on disk, and counted in `mast_meta_unreadable_records_total`).
#[derive(Debug)]
pub struct Unreadable {
    meta: Arc<MetaStore>,
    schema: SchemaRef,
}

impl Unreadable {
    fn new(meta: Arc<MetaStore>) -> Unreadable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("table_name", DataType::Utf8, false),
            Field::new("about", DataType::Utf8, false),
            Field::new("key", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, false),
            Field::new("found_at", ts_type(), false),
        ]));
        Unreadable { meta, schema }
    }
}

#[async_trait]
impl SpecialTable for Unreadable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn scan(&self, scan: &Scan) -> Result<RecordBatch> {
        let mut rows = scan.rows(&self.schema);
        for u in self.meta.unreadable() {
            let found_ns = i64::try_from(u.found_at_ms)
                .unwrap_or(i64::MAX)
                .saturating_mul(1_000_000);
            rows.row()
                .str(u.table.name())
                .str(u.table.about())
                .str(&String::from_utf8_lossy(&u.key))
                .str(&u.reason)
                .ts(found_ns);
        }
        rows.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::DeviceRecord;
    use futures::StreamExt;
    use mast_meta::{Op, Writer, tables};
    use mast_query::QueryLimits;

    async fn count_rows(engine: &QueryEngine, sql: &str) -> usize {
        let mut s = engine.run(sql).await.unwrap();
        let mut n = 0;
        while let Some(b) = s.next().await {
            n += b.unwrap().num_rows();
        }
        n
    }

    /// `iot.devices WHERE device_id = 'x'` reads that record, not every device.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_device_by_id_reads_one_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            mast_storage::Store::open(mast_storage::StoreConfig::new(dir.path())).unwrap(),
        );
        let meta = Arc::new(MetaStore::open(&dir.path().join(mast_meta::FILE)).unwrap());
        let writer = Writer::start(Arc::clone(&meta));
        let ops = (0..1000)
            .map(|i| Op::Put {
                table: tables::DEVICES,
                key: format!("d-{i:04}").into_bytes(),
                value: DeviceRecord {
                    device_id: format!("d-{i:04}"),
                    connected: i % 2 == 0,
                    address: "127.0.0.1:1".into(),
                    protocol: "5.0".into(),
                    username: None,
                    connected_at: i,
                    disconnected_at: None,
                    disconnect_reason: None,
                }
                .encode(),
            })
            .collect();
        let seq = writer.submit(ops);
        assert!(writer.wait(seq, std::time::Duration::from_secs(10)));
        let engine = QueryEngine::new(store, QueryLimits::default()).unwrap();
        let devices = Devices::new(Arc::clone(&meta));
        let read = Arc::clone(&devices.read);
        engine.add_iot_table("devices", devices);

        let one = "SELECT device_id, connected FROM iot.devices WHERE device_id = 'd-0007'";
        assert_eq!(count_rows(&engine, one).await, 1);
        assert_eq!(read.load(Ordering::Relaxed), 1, "one record read");
        let two = "SELECT * FROM iot.devices WHERE device_id IN ('d-0001', 'd-0002', 'nope')";
        assert_eq!(count_rows(&engine, two).await, 2);
        assert_eq!(read.load(Ordering::Relaxed), 3);
        let none = "SELECT * FROM iot.devices WHERE device_id = 'nope'";
        assert_eq!(count_rows(&engine, none).await, 0);
        assert_eq!(read.load(Ordering::Relaxed), 3);
        // Other conditions read everything, and still answer right.
        let half = "SELECT device_id FROM iot.devices WHERE connected";
        assert_eq!(count_rows(&engine, half).await, 500);
        assert_eq!(read.load(Ordering::Relaxed), 1003);
        let mut s = engine
            .run("SELECT count(*) AS n FROM iot.devices")
            .await
            .unwrap();
        let b = s.next().await.unwrap().unwrap();
        let n = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0);
        assert_eq!(n, 1000, "count(*) reads no column but every row");
    }
}
