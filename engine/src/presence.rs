//! Presence as a client-event listener: the device registry of `mast-devices` decides what a
//! connect or a disconnect writes (an `iot.device_events` row, the `devices` record); this
//! adapter carries it out — the row into the reactor's per-shard batches (beside the turn's
//! telemetry), the record through the broker's metadata queue — and reads records for SQL.

use mast_broker::hooks::{ClientEvent, ClientInfo, HookCx};
use mast_broker::message::{Message, now_ns, protocol_name};
use mast_devices::registry::{self, Change, Client};
use mast_devices::{Effects, Row, Value};
use mast_meta::tables::DEVICES;
use mast_meta::{MetaStore, Writer};
use mast_protocol::connect::QoS;
use mast_storage::batch::DEVICE_TAG;
use mast_storage::{Durability, Store, WriteBatch};

pub(crate) use mast_devices::registry::DeviceRecord;

use crate::telemetry::batches::{Batches, Part};

/// Appends a domain row to `batch`.
fn append(batch: &mut WriteBatch, row: &Row) {
    let series = batch.series(row.table, &[(DEVICE_TAG, &row.device_id)]);
    let mut w = batch.row(series, row.time_ns);
    for (name, v) in &row.fields {
        match v {
            Value::Str(s) => w.str(name, s),
            Value::Bool(b) => w.bool(name, *b),
            Value::I64(i) => w.i64(name, *i),
        };
    }
}

/// The record of `device_id`, if there is a readable one (an unreadable one is reported).
pub(crate) fn record(
    meta: &MetaStore,
    device_id: &str,
) -> Result<Option<DeviceRecord>, mast_meta::MetaError> {
    let v = meta.get(DEVICES, device_id.as_bytes())?;
    Ok(v.and_then(|v| decode_or_report(meta, device_id.as_bytes(), &v)))
}

/// The record stored under `key`, or `None` after reporting it unreadable.
fn decode_or_report(meta: &MetaStore, key: &[u8], value: &[u8]) -> Option<DeviceRecord> {
    DeviceRecord::decode(value)
        .map_err(|e| meta.report_unreadable(DEVICES, key, e))
        .ok()
}

/// Every readable device record; an unreadable one is reported to the store and left out.
pub(crate) fn records(meta: &MetaStore) -> Result<Vec<DeviceRecord>, mast_meta::MetaError> {
    let rows = meta.scan_prefix(DEVICES, b"")?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, v)| decode_or_report(meta, &k, &v))
        .collect())
}

/// At start: records the devices a crash left "connected" as disconnected by the restart —
/// the rows durably in the store, then the records committed.
pub(crate) fn close_stale(store: &Store, meta: &Writer, now_ns: i64) -> anyhow::Result<usize> {
    let Effects { rows, writes } = registry::close_stale(records(meta.store())?, now_ns);
    if rows.is_empty() {
        return Ok(0);
    }
    let mut batch = WriteBatch::new();
    for row in &rows {
        append(&mut batch, row);
    }
    store.submit(batch, Durability::Durable)?.wait()?;
    let seq = meta.submit(writes);
    if !meta.wait(seq, std::time::Duration::from_secs(60)) {
        anyhow::bail!("the device records were not committed");
    }
    Ok(rows.len())
}

/// Adds a presence row of `c` to the reactor's batches, beside the turn's telemetry.
fn add_row(batches: &mut Batches, c: &ClientInfo<'_>, row: &Row) {
    let part = Part {
        conn: c.conn,
        hold: None,
        report: None,
        rows: 0..0,
    };
    let _ = batches.add(c.client_id, false, part, |b| {
        append(b, row);
        Ok(1)
    });
}

/// One reactor's presence listener.
#[derive(Debug, Default)]
pub(crate) struct Presence {
    registry: registry::Presence,
}

impl Presence {
    /// A device registered just in time by this connect: its `registered` event row, and the
    /// AWS event `$aws/events/certificates/registered/{caCertificateId}` for whoever listens.
    pub(crate) fn registered(
        &mut self,
        batches: &mut Batches,
        cx: &mut HookCx<'_>,
        c: &ClientInfo<'_>,
        certificate_id: &str,
        ca_id: &str,
    ) {
        let now = now_ns();
        let row = self
            .registry
            .registered(c.client_id, certificate_id, ca_id, now);
        add_row(batches, c, &row);
        let event = serde_json::json!({
            "certificateId": certificate_id,
            "caCertificateId": ca_id,
            "timestamp": now / 1_000_000_000,
            "certificateStatus": "ACTIVE",
            "certificateRegistrationTimestamp": (now / 1_000_000).to_string(),
            "thingName": c.client_id,
        });
        cx.publish(Message::new(
            &format!("$aws/events/certificates/registered/{ca_id}"),
            event.to_string().into_bytes(),
            QoS::AtLeastOnce,
        ));
    }

    /// Writes what `ev` leads to: its row into `batches`, the device record through the
    /// broker's metadata queue.
    pub(crate) fn on_client(
        &mut self,
        batches: &mut Batches,
        cx: &mut HookCx<'_>,
        c: &ClientInfo<'_>,
        ev: ClientEvent<'_>,
    ) {
        let change = match ev {
            ClientEvent::Connected {
                clean_start,
                keep_alive_secs,
            } => Change::Connected {
                clean_start,
                keep_alive_secs,
            },
            ClientEvent::Disconnected { reason, superseded } => Change::Disconnected {
                reason: reason.as_str(),
                superseded,
            },
            ClientEvent::Subscribed { .. } => return,
        };
        let address = c.addr.to_string();
        let client = Client {
            device_id: c.client_id,
            address: &address,
            protocol: protocol_name(c.version),
            username: c.username,
            identity: c.identity.as_str(),
            connected_at_ns: c.connected_at_ns,
        };
        let Effects { rows, writes } = self.registry.change(&client, change, now_ns());
        for row in &rows {
            add_row(batches, c, row);
        }
        cx.persist(writes);
    }
}
