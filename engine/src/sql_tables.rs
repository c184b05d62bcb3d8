//! The special tables the engine crate supplies to SQL: `system.connections` (from the broker),
//! `iot.devices` (from the metadata store's device records) and `system.unreadable_records`
//! (metadata records that did not decode). `iot.device_events` is a telemetry table and needs
//! nothing here.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, StringBuilder, TimestampNanosecondBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use mast_meta::MetaStore;
use mast_query::QueryEngine;
use mast_query::SpecialTable;
use mast_query::datafusion::common::{DataFusionError, Result};
use mast_query::system::ts_type;

use crate::mqtt::Broker;
use crate::presence::DeviceRecord;

/// Registers the engine's special tables.
pub fn register(engine: &QueryEngine, broker: &Arc<Broker>, meta: &Arc<MetaStore>) {
    engine.add_system_table(
        "connections",
        Connections::new(Arc::clone(broker), Arc::clone(meta)),
    );
    engine.add_iot_table("devices", Devices::new(Arc::clone(meta)));
    engine.add_system_table("unreadable_records", Unreadable::new(Arc::clone(meta)));
}

fn records(meta: &MetaStore) -> Result<Vec<DeviceRecord>> {
    crate::presence::records(meta).map_err(|e| DataFusionError::External(Box::new(e)))
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
        ]));
        Connections {
            broker,
            meta,
            schema,
        }
    }
}

impl SpecialTable for Connections {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn rows(&self) -> Result<RecordBatch> {
        let conns = self.broker.connections();
        let recs: std::collections::HashMap<String, DeviceRecord> = records(&self.meta)?
            .into_iter()
            .map(|r| (r.device_id.clone(), r))
            .collect();
        let (mut id, mut addr, mut proto, mut user) = (
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let mut at = TimestampNanosecondBuilder::new().with_timezone("UTC");
        let mut u: [UInt64Builder; 4] = Default::default();
        let mut expiry = UInt32Builder::new();
        for c in &conns {
            let rec = recs.get(&c.client_id).filter(|r| r.connected);
            id.append_value(&c.client_id);
            addr.append_option(rec.map(|r| r.address.as_str()));
            proto.append_value(c.protocol);
            user.append_option(rec.and_then(|r| r.username.as_deref()));
            at.append_option(rec.map(|r| r.connected_at));
            for (b, v) in u
                .iter_mut()
                .zip([c.subscriptions, c.queued, c.queued_bytes, c.inflight])
            {
                b.append_value(v as u64);
            }
            expiry.append_value(c.expiry_secs);
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(addr.finish()),
            Arc::new(proto.finish()),
            Arc::new(user.finish()),
            Arc::new(at.finish()),
        ];
        cols.extend(u.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        cols.push(Arc::new(expiry.finish()));
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), cols)?)
    }
}

/// `iot.devices`: every device (MQTT client) Mast has seen, with its presence.
#[derive(Debug)]
pub struct Devices {
    meta: Arc<MetaStore>,
    schema: SchemaRef,
}

impl Devices {
    fn new(meta: Arc<MetaStore>) -> Devices {
        let schema = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new("connected", DataType::Boolean, false),
            Field::new("address", DataType::Utf8, false),
            Field::new("protocol", DataType::Utf8, false),
            Field::new("username", DataType::Utf8, true),
            Field::new("connected_at", ts_type(), false),
            Field::new("disconnected_at", ts_type(), true),
            Field::new("disconnect_reason", DataType::Utf8, true),
        ]));
        Devices { meta, schema }
    }
}

impl SpecialTable for Devices {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn rows(&self) -> Result<RecordBatch> {
        let mut recs = records(&self.meta)?;
        recs.sort_by(|a, b| a.device_id.cmp(&b.device_id));
        let (mut id, mut conn, mut addr, mut proto, mut user) = (
            StringBuilder::new(),
            BooleanBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        );
        let ts = || TimestampNanosecondBuilder::new().with_timezone("UTC");
        let (mut on, mut off, mut why) = (ts(), ts(), StringBuilder::new());
        for r in &recs {
            id.append_value(&r.device_id);
            conn.append_value(r.connected);
            addr.append_value(&r.address);
            proto.append_value(&r.protocol);
            user.append_option(r.username.as_deref());
            on.append_value(r.connected_at);
            off.append_option(r.disconnected_at);
            why.append_option(r.disconnect_reason.as_deref());
        }
        Ok(RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![
                Arc::new(id.finish()),
                Arc::new(conn.finish()),
                Arc::new(addr.finish()),
                Arc::new(proto.finish()),
                Arc::new(user.finish()),
                Arc::new(on.finish()),
                Arc::new(off.finish()),
                Arc::new(why.finish()),
            ],
        )?)
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

impl SpecialTable for Unreadable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn rows(&self) -> Result<RecordBatch> {
        let list = self.meta.unreadable();
        let mut cols: [StringBuilder; 4] = Default::default();
        let mut at = TimestampNanosecondBuilder::new().with_timezone("UTC");
        for u in &list {
            cols[0].append_value(u.table.name());
            cols[1].append_value(u.table.about());
            cols[2].append_value(String::from_utf8_lossy(&u.key));
            cols[3].append_value(&u.reason);
            at.append_value(
                i64::try_from(u.found_at_ms).unwrap_or(i64::MAX / 1_000_000) * 1_000_000,
            );
        }
        let mut out: Vec<ArrayRef> = cols
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        out.push(Arc::new(at.finish()));
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), out)?)
    }
}
