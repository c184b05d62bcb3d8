//! The device registry: each device's record in the metadata store's `devices` table (what
//! `iot.devices` shows), and presence: every connect and every end of a connection is a row of
//! the `iot.device_events` time series.
//!
//! Row: tag `device_id` (the client id); fields `event` ("connected" / "disconnected"),
//! `address`, `protocol` ("3.1.1" / "5.0"), `username` (when given), `clean_start`,
//! `keep_alive_secs`, and `reason` (why it ended, on "disconnected").

use mast_meta::Op;
use mast_meta::tables::DEVICES;
use serde::{Deserialize, Serialize};

use crate::{Effects, Row, Value};

/// The telemetry table of presence events.
pub const DEVICE_EVENTS_TABLE: &str = "iot.device_events";

/// Why the previous process's connections ended, as a restart records it.
pub const SERVER_RESTART: &str = "server restart";

/// The version of the device record this build writes (docs/formats/meta.md).
const RECORD_VERSION: u8 = 1;

/// A device's record, as stored in `devices`: a JSON object with `"v": 1` (a record without
/// `v` was written before versions, in the same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub device_id: String,
    pub connected: bool,
    pub address: String,
    pub protocol: String,
    pub username: Option<String>,
    /// ns since the epoch.
    pub connected_at: i64,
    pub disconnected_at: Option<i64>,
    pub disconnect_reason: Option<String>,
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
    pub fn encode(&self) -> Vec<u8> {
        let v = Versioned {
            v: RECORD_VERSION,
            rec: self,
        };
        serde_json::to_vec(&v).unwrap_or_default()
    }

    /// Decodes what [`DeviceRecord::encode`] wrote (or a record from before versions).
    pub fn decode(bytes: &[u8]) -> Result<DeviceRecord, String> {
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

    /// The write that stores it.
    pub fn put(&self) -> Op {
        Op::Put {
            table: DEVICES,
            key: self.device_id.as_bytes().to_vec(),
            value: self.encode(),
        }
    }
}

/// A connection as presence sees it.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub device_id: &'a str,
    /// Peer `ip:port`.
    pub address: &'a str,
    /// "3.1.1" or "5.0".
    pub protocol: &'a str,
    pub username: Option<&'a str>,
    /// How it authenticated: `certificate`, `claim`, `password`, `anonymous`.
    pub identity: &'a str,
    /// When its CONNECT was accepted (ns since the epoch).
    pub connected_at_ns: i64,
}

/// What happened to a connection.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    Connected {
        clean_start: bool,
        keep_alive_secs: u16,
    },
    Disconnected {
        reason: &'a str,
        /// A newer connection of the same client owns the device now: its record is not
        /// touched.
        superseded: bool,
    },
}

fn event_row(
    time_ns: i64,
    device_id: &str,
    connected: bool,
    c: (&str, &str, Option<&str>, &str),
    clean_start: Option<bool>,
    keep_alive_secs: Option<u16>,
    reason: Option<&str>,
) -> Row {
    let (address, protocol, username, identity) = c;
    let event = if connected {
        "connected"
    } else {
        "disconnected"
    };
    let mut fields = vec![
        ("event", Value::Str(event.into())),
        ("address", Value::Str(address.into())),
        ("protocol", Value::Str(protocol.into())),
    ];
    if let Some(u) = username {
        fields.push(("username", Value::Str(u.into())));
    }
    if connected {
        fields.push(("identity", Value::Str(identity.into())));
    }
    if let Some(c) = clean_start {
        fields.push(("clean_start", Value::Bool(c)));
    }
    if let Some(k) = keep_alive_secs {
        fields.push(("keep_alive_secs", Value::I64(i64::from(k))));
    }
    if let Some(r) = reason {
        fields.push(("reason", Value::Str(r.into())));
    }
    Row {
        table: DEVICE_EVENTS_TABLE,
        device_id: device_id.to_owned(),
        time_ns,
        fields,
    }
}

/// Presence for the connections of one thread (a reactor): their events get strictly
/// increasing times, so two events of one device never share a timestamp.
#[derive(Debug, Default)]
pub struct Presence {
    last_ns: i64,
}

impl Presence {
    /// The time of the next event: `now_ns`, or just after the last one.
    fn tick(&mut self, now_ns: i64) -> i64 {
        let now = now_ns.max(self.last_ns + 1);
        self.last_ns = now;
        now
    }

    /// The `registered` event of a device whose certificate was registered just in time (on
    /// this connect) at `now_ns`: `certificate_id`, issued by the enrolled CA `ca_id`.
    pub fn registered(
        &mut self,
        device_id: &str,
        certificate_id: &str,
        ca_id: &str,
        now_ns: i64,
    ) -> Row {
        let now = self.tick(now_ns);
        Row {
            table: DEVICE_EVENTS_TABLE,
            device_id: device_id.to_owned(),
            time_ns: now,
            fields: vec![
                ("event", Value::Str("registered".into())),
                ("certificate_id", Value::Str(certificate_id.into())),
                ("ca_id", Value::Str(ca_id.into())),
            ],
        }
    }

    /// `c` changed at `now_ns`: the event row, and the device record unless a newer connection
    /// of the same client has taken it over.
    pub fn change(&mut self, c: &Client<'_>, change: Change<'_>, now_ns: i64) -> Effects {
        let now = self.tick(now_ns);
        let (connected, clean_start, keep_alive, reason, superseded) = match change {
            Change::Connected {
                clean_start,
                keep_alive_secs,
            } => (true, Some(clean_start), Some(keep_alive_secs), None, false),
            Change::Disconnected { reason, superseded } => {
                (false, None, None, Some(reason), superseded)
            }
        };
        let row = event_row(
            now,
            c.device_id,
            connected,
            (c.address, c.protocol, c.username, c.identity),
            clean_start,
            keep_alive,
            reason,
        );
        let mut out = Effects {
            rows: vec![row],
            writes: Vec::new(),
        };
        if !superseded {
            let rec = DeviceRecord {
                device_id: c.device_id.to_owned(),
                connected,
                address: c.address.to_owned(),
                protocol: c.protocol.to_owned(),
                username: c.username.map(str::to_owned),
                connected_at: c.connected_at_ns,
                disconnected_at: (!connected).then_some(now),
                disconnect_reason: reason.map(str::to_owned),
            };
            out.writes.push(rec.put());
            if connected {
                out.writes
                    .push(crate::profile::DeviceProfile::first_seen(c.device_id, now));
            }
        }
        out
    }
}

/// At start: devices the store still shows as connected lost their connection when the
/// previous process stopped (a crash leaves them so). Records them as disconnected at `now_ns`
/// by a server restart: one event row each and the updated records.
pub fn close_stale(records: impl IntoIterator<Item = DeviceRecord>, now_ns: i64) -> Effects {
    let mut out = Effects::default();
    for mut rec in records.into_iter().filter(|r| r.connected) {
        rec.connected = false;
        rec.disconnected_at = Some(now_ns);
        rec.disconnect_reason = Some(SERVER_RESTART.into());
        out.rows.push(event_row(
            now_ns,
            &rec.device_id,
            false,
            (&rec.address, &rec.protocol, rec.username.as_deref(), ""),
            None,
            None,
            Some(SERVER_RESTART),
        ));
        out.writes.push(rec.put());
    }
    out
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

    fn client() -> Client<'static> {
        Client {
            device_id: "d1",
            address: "10.0.0.1:4000",
            protocol: "5.0",
            username: Some("fleet"),
            identity: "password",
            connected_at_ns: 100,
        }
    }

    fn decoded(op: &Op) -> DeviceRecord {
        let Op::Put { table, key, value } = op else {
            panic!("a put: {op:?}");
        };
        assert_eq!(*table, DEVICES);
        assert_eq!(key, b"d1");
        DeviceRecord::decode(value).unwrap()
    }

    #[test]
    fn a_registration_comes_before_its_connect_in_time() {
        let mut p = Presence::default();
        let reg = p.registered("d1", "cert", "ca", 100);
        let on = p.change(
            &client(),
            Change::Connected {
                clean_start: true,
                keep_alive_secs: 30,
            },
            100,
        );
        assert_eq!((reg.table, reg.time_ns), (DEVICE_EVENTS_TABLE, 100));
        assert_eq!(reg.fields[0], ("event", Value::Str("registered".into())));
        assert_eq!(on.rows[0].time_ns, 101, "strictly after");
    }

    #[test]
    fn a_connect_and_a_disconnect_write_a_row_and_the_record_each() {
        let mut p = Presence::default();
        let on = p.change(
            &client(),
            Change::Connected {
                clean_start: true,
                keep_alive_secs: 30,
            },
            100,
        );
        assert_eq!(on.rows.len(), 1);
        let row = &on.rows[0];
        assert_eq!(
            (row.table, row.device_id.as_str(), row.time_ns),
            (DEVICE_EVENTS_TABLE, "d1", 100)
        );
        assert_eq!(
            row.fields,
            vec![
                ("event", Value::Str("connected".into())),
                ("address", Value::Str("10.0.0.1:4000".into())),
                ("protocol", Value::Str("5.0".into())),
                ("username", Value::Str("fleet".into())),
                ("identity", Value::Str("password".into())),
                ("clean_start", Value::Bool(true)),
                ("keep_alive_secs", Value::I64(30)),
            ]
        );
        let r = decoded(&on.writes[0]);
        assert!(r.connected && r.disconnected_at.is_none());
        assert_eq!(r.connected_at, 100);
        assert_eq!(
            on.writes[1],
            crate::profile::DeviceProfile::first_seen("d1", 100),
            "a device seen for the first time is created"
        );

        // The clock did not move: the next event still gets a later time.
        let off = p.change(
            &client(),
            Change::Disconnected {
                reason: "keep alive timeout",
                superseded: false,
            },
            100,
        );
        assert_eq!(off.rows[0].time_ns, 101);
        assert_eq!(
            off.rows[0].fields.last(),
            Some(&("reason", Value::Str("keep alive timeout".into())))
        );
        assert_eq!(off.writes.len(), 1, "a disconnect creates nothing");
        let r = decoded(&off.writes[0]);
        assert!(!r.connected);
        assert_eq!(r.disconnected_at, Some(101));
        assert_eq!(r.disconnect_reason.as_deref(), Some("keep alive timeout"));
    }

    #[test]
    fn a_superseded_connection_leaves_the_record_to_its_successor() {
        let mut p = Presence::default();
        let e = p.change(
            &client(),
            Change::Disconnected {
                reason: "session taken over",
                superseded: true,
            },
            5,
        );
        assert_eq!(e.rows.len(), 1, "the event is still recorded");
        assert!(e.writes.is_empty());
    }

    #[test]
    fn a_restart_closes_the_devices_left_connected() {
        let mut live = rec();
        live.device_id = "left-on".into();
        live.connected = true;
        live.disconnected_at = None;
        live.disconnect_reason = None;
        let e = close_stale([rec(), live], 7);
        assert_eq!(e.rows.len(), 1);
        assert_eq!(e.rows[0].device_id, "left-on");
        assert_eq!(e.rows[0].time_ns, 7);
        let Op::Put { value, .. } = &e.writes[0] else {
            panic!("a put");
        };
        let r = DeviceRecord::decode(value).unwrap();
        assert!(!r.connected);
        assert_eq!(r.disconnected_at, Some(7));
        assert_eq!(r.disconnect_reason.as_deref(), Some(SERVER_RESTART));
        assert!(close_stale([rec()], 8).is_empty());
    }
}
