//! Presence: every CONNECT and every end of a connection is written as a row of the
//! `iot.device_events` time series (through the same per-shard batches as telemetry), and each
//! client's current state is kept in the metadata store's `devices` table (for `iot.devices`).
//!
//! Row: tag `device_id` (the client id); fields `event` ("connected" / "disconnected"),
//! `address`, `protocol` ("3.1.1" / "5.0"), `username` (when given), `clean_start`,
//! `keep_alive_secs`, and `reason` (why it ended, on "disconnected").

use mast_meta::tables::DEVICES;
use mast_meta::{MetaStore, Writer};
use mast_storage::batch::DEVICE_TAG;
use mast_storage::{Durability, Store, WriteBatch};
use serde::{Deserialize, Serialize};

use crate::ingest::DEVICE_EVENTS_TABLE;
use crate::telemetry::batches::{Batches, Part};
use mast_broker::hooks::{ClientEvent, ClientInfo, HookCx};
use mast_broker::message::{now_ns, protocol_name};
use mast_meta::Op;

/// The version of the device record this build writes (see docs/formats/meta.md).
const RECORD_VERSION: u8 = 1;

/// A client's current presence, as stored in `devices`: a JSON object with `"v": 1` (a record
/// without `v` was written before versions, in the same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DeviceRecord {
    pub(crate) device_id: String,
    pub(crate) connected: bool,
    pub(crate) address: String,
    pub(crate) protocol: String,
    pub(crate) username: Option<String>,
    /// ns since the epoch.
    pub(crate) connected_at: i64,
    pub(crate) disconnected_at: Option<i64>,
    pub(crate) disconnect_reason: Option<String>,
}

#[derive(Serialize)]
struct Versioned<'a> {
    v: u8,
    #[serde(flatten)]
    rec: &'a DeviceRecord,
}

#[derive(Deserialize)]
struct Stored {
    #[serde(default = "first_version")]
    v: u8,
    #[serde(flatten)]
    rec: DeviceRecord,
}

fn first_version() -> u8 {
    1
}

impl DeviceRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let v = Versioned {
            v: RECORD_VERSION,
            rec: self,
        };
        serde_json::to_vec(&v).unwrap_or_default()
    }

    /// Decodes what [`DeviceRecord::encode`] wrote (or a record from before versions).
    pub(crate) fn decode(bytes: &[u8]) -> Result<DeviceRecord, String> {
        let s: Stored =
            serde_json::from_slice(bytes).map_err(|e| format!("not a device record: {e}"))?;
        if s.v != RECORD_VERSION {
            return Err(format!(
                "device record version {} (this build reads {RECORD_VERSION})",
                s.v
            ));
        }
        Ok(s.rec)
    }
}

/// The record of `device_id`, if there is a readable one (an unreadable one is reported).
pub(crate) fn record(
    meta: &MetaStore,
    device_id: &str,
) -> Result<Option<DeviceRecord>, mast_meta::MetaError> {
    let Some(v) = meta.get(DEVICES, device_id.as_bytes())? else {
        return Ok(None);
    };
    match DeviceRecord::decode(&v) {
        Ok(r) => Ok(Some(r)),
        Err(e) => {
            meta.report_unreadable(DEVICES, device_id.as_bytes(), e);
            Ok(None)
        }
    }
}

/// Every readable device record; an unreadable one is reported to the store and left out.
pub(crate) fn records(meta: &MetaStore) -> Result<Vec<DeviceRecord>, mast_meta::MetaError> {
    let rows = meta.scan_prefix(DEVICES, b"")?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, v)| match DeviceRecord::decode(&v) {
            Ok(r) => Some(r),
            Err(e) => {
                meta.report_unreadable(DEVICES, &k, e);
                None
            }
        })
        .collect())
}

/// One presence event.
#[derive(Debug)]
pub(crate) struct Event<'a> {
    pub(crate) time: i64,
    pub(crate) client_id: &'a str,
    pub(crate) connected: bool,
    pub(crate) address: &'a str,
    pub(crate) protocol: &'a str,
    pub(crate) username: Option<&'a str>,
    pub(crate) clean_start: Option<bool>,
    pub(crate) keep_alive_secs: Option<u16>,
    pub(crate) reason: Option<&'a str>,
}

impl Event<'_> {
    /// Adds the event's row to `batch`.
    pub(crate) fn write(&self, batch: &mut WriteBatch) {
        let series = batch.series(DEVICE_EVENTS_TABLE, &[(DEVICE_TAG, self.client_id)]);
        let mut w = batch.row(series, self.time);
        w.str(
            "event",
            if self.connected {
                "connected"
            } else {
                "disconnected"
            },
        )
        .str("address", self.address)
        .str("protocol", self.protocol);
        if let Some(u) = self.username {
            w.str("username", u);
        }
        if let Some(c) = self.clean_start {
            w.bool("clean_start", c);
        }
        if let Some(k) = self.keep_alive_secs {
            w.i64("keep_alive_secs", i64::from(k));
        }
        if let Some(r) = self.reason {
            w.str("reason", r);
        }
    }
}

/// At start: clients the metadata store still shows as connected lost their connection when
/// the previous process stopped (a crash leaves them so). Records them as disconnected now.
pub(crate) fn close_stale(store: &Store, meta: &Writer, now_ns: i64) -> anyhow::Result<usize> {
    let mut stale = Vec::new();
    for mut rec in records(meta.store())? {
        if rec.connected {
            rec.connected = false;
            rec.disconnected_at = Some(now_ns);
            rec.disconnect_reason = Some("server restart".into());
            stale.push(rec);
        }
    }
    if stale.is_empty() {
        return Ok(0);
    }
    let mut batch = WriteBatch::new();
    for rec in &stale {
        Event {
            time: now_ns,
            client_id: &rec.device_id,
            connected: false,
            address: &rec.address,
            protocol: &rec.protocol,
            username: rec.username.as_deref(),
            clean_start: None,
            keep_alive_secs: None,
            reason: Some("server restart"),
        }
        .write(&mut batch);
    }
    store.submit(batch, Durability::Durable)?.wait()?;
    let ops = stale
        .iter()
        .map(|rec| Op::Put {
            table: DEVICES,
            key: rec.device_id.as_bytes().to_vec(),
            value: rec.encode(),
        })
        .collect();
    let seq = meta.submit(ops);
    if !meta.wait(seq, std::time::Duration::from_secs(60)) {
        anyhow::bail!("the device records were not committed");
    }
    Ok(stale.len())
}

/// One reactor's presence listener: a row per connect and disconnect, and the device record.
#[derive(Debug, Default)]
pub(crate) struct Presence {
    /// Last presence timestamp written (kept strictly increasing).
    last_ns: i64,
}

impl Presence {
    /// Writes the row of `ev` into `batches` (beside the telemetry of the same turn) and the
    /// device record through the broker's metadata queue.
    pub(crate) fn on_client(
        &mut self,
        batches: &mut Batches,
        cx: &mut HookCx<'_>,
        c: &ClientInfo<'_>,
        ev: ClientEvent<'_>,
    ) {
        let (connected, clean_start, keep_alive, reason, superseded) = match ev {
            ClientEvent::Connected {
                clean_start,
                keep_alive_secs,
            } => (true, Some(clean_start), Some(keep_alive_secs), None, false),
            ClientEvent::Disconnected { reason, superseded } => {
                (false, None, None, Some(reason.as_str()), superseded)
            }
            ClientEvent::Subscribed { .. } => return,
        };
        let now = now_ns().max(self.last_ns + 1);
        self.last_ns = now;
        let address = c.addr.to_string();
        let protocol = protocol_name(c.version);
        let event = Event {
            time: now,
            client_id: c.client_id,
            connected,
            address: &address,
            protocol,
            username: c.username,
            clean_start,
            keep_alive_secs: keep_alive,
            reason,
        };
        let part = Part {
            conn: c.conn,
            hold: None,
            report: None,
            rows: 0..0,
        };
        let _ = batches.add(c.client_id, false, part, |b| {
            event.write(b);
            Ok(1)
        });
        if superseded {
            // A newer connection of this client owns the record now.
            return;
        }
        let rec = DeviceRecord {
            device_id: c.client_id.to_string(),
            connected,
            address,
            protocol: protocol.to_owned(),
            username: c.username.map(str::to_owned),
            connected_at: c.connected_at_ns,
            disconnected_at: (!connected).then_some(now),
            disconnect_reason: reason.map(str::to_owned),
        };
        cx.persist(vec![Op::Put {
            table: DEVICES,
            key: c.client_id.as_bytes().to_vec(),
            value: rec.encode(),
        }]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> DeviceRecord {
        DeviceRecord {
            device_id: "fx-dev".into(),
            connected: false,
            address: "127.0.0.1:5000".into(),
            protocol: "3.1.1".into(),
            username: None,
            connected_at: 1_700_000_000_000_000_000,
            disconnected_at: Some(1_700_000_060_000_000_000),
            disconnect_reason: Some("client disconnected".into()),
        }
    }

    /// The bytes of a device record as this version writes it (docs/formats/meta.md), and the
    /// records it reads: its own, one from before versions, not one from a later version.
    #[test]
    fn device_records_are_pinned_and_versioned() {
        let written = r#"{"v":1,"device_id":"fx-dev","connected":false,"address":"127.0.0.1:5000","protocol":"3.1.1","username":null,"connected_at":1700000000000000000,"disconnected_at":1700000060000000000,"disconnect_reason":"client disconnected"}"#;
        assert_eq!(String::from_utf8(rec().encode()).unwrap(), written);
        assert_eq!(DeviceRecord::decode(written.as_bytes()), Ok(rec()));
        let before_versions = written.replace(r#""v":1,"#, "");
        assert_eq!(DeviceRecord::decode(before_versions.as_bytes()), Ok(rec()));
        let later = written.replace(r#""v":1"#, r#""v":2"#);
        assert!(
            DeviceRecord::decode(later.as_bytes())
                .unwrap_err()
                .contains("version 2")
        );
        assert!(DeviceRecord::decode(b"\x01garbage").is_err());
    }
}
