//! Telemetry ingest end to end: the real `mast` binary, rumqttc 5.0 and 3.1.1 clients (a raw
//! socket where the exact bytes matter), and every assertion made on what storage holds after
//! the server stopped: JSON shapes and line protocol with their types and timestamps, routing
//! beside storage, gateway rights, QoS 0 and QoS 2 guarantees. Refusals are in
//! `ingest_refusals.rs`, presence in `ingest_presence.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod ingest_support;
mod mqtt_support;

use arrow::datatypes::{DataType, TimeUnit};
use common::Server;
use ingest_support::{
    Row, SEC, Stored, T0, T0_MS, Value, b, batch_rows, f, int, publish_ok, publish_refused, row, s,
    sort_rows, t, time, without,
};
use mast_storage::now_ns;
use mqtt_support::raw::{self, Got, Raw};
use mqtt_support::{WAIT, v5, v311};
use rumqttc::v5::mqttbytes::v5::PubAckReason;

/// The JSON messages of [`every_json_shape_is_stored_with_its_types_and_timestamps`], in order.
const JSON_SHAPES: [&str; 6] = [
    r#"{"temp": 21.5, "ok": true, "state": "idle", "gone": null}"#,
    r#"{"ts": 1700000000000, "values": {"temp": 1.5, "count": 3}}"#,
    r#"{"ts": "2023-11-14T23:13:20.123456789+01:00", "values": {"temp": 2.5}}"#,
    r#"{"ts": "2023-11-14T16:43:21.5-05:30", "values": {"temp": 3.5}}"#,
    r#"[{"ts": 1700000002000, "values": {"temp": 4.5}},
        {"ts": "2023-11-14T22:13:23.25Z", "values": {"temp": 5.5, "state": "busy", "note": null}}]"#,
    r#"[{"ts": 1700000004000, "values": {"temp": 6.5}}, {"humidity": 40, "ok": false}]"#,
];

/// Checks one device's rows of [`JSON_SHAPES`]: receive-time rows lie in `[before, after]`.
fn assert_json_rows(rows: &[Row], device: &str, before: i64, after: i64) {
    let d = s(device);
    let expected = [
        row(&[
            ("time", t(T0)),
            ("device_id", d.clone()),
            ("temp", f(1.5)),
            ("count", f(3.0)),
        ]),
        row(&[
            ("time", t(T0 + 123_456_789)),
            ("device_id", d.clone()),
            ("temp", f(2.5)),
        ]),
        row(&[
            ("time", t(T0 + SEC + SEC / 2)),
            ("device_id", d.clone()),
            ("temp", f(3.5)),
        ]),
        row(&[
            ("time", t(T0 + 2 * SEC)),
            ("device_id", d.clone()),
            ("temp", f(4.5)),
        ]),
        row(&[
            ("time", t(T0 + 3 * SEC + SEC / 4)),
            ("device_id", d.clone()),
            ("temp", f(5.5)),
            ("state", s("busy")),
        ]),
        row(&[
            ("time", t(T0 + 4 * SEC)),
            ("device_id", d.clone()),
            ("temp", f(6.5)),
        ]),
    ];
    assert_eq!(rows.len(), 8, "{device}: {rows:#?}");
    assert_eq!(&rows[..6], &expected[..], "{device}");
    // The two receive-time rows, in publishing order.
    assert_eq!(
        without(&rows[6], &["time"]),
        row(&[
            ("device_id", d.clone()),
            ("temp", f(21.5)),
            ("ok", b(true)),
            ("state", s("idle")),
        ])
    );
    assert_eq!(
        without(&rows[7], &["time"]),
        row(&[("device_id", d), ("humidity", f(40.0)), ("ok", b(false))])
    );
    let (r1, r2) = (time(&rows[6]), time(&rows[7]));
    assert!(
        before <= r1 && r1 < r2 && r2 <= after,
        "receive times {r1}, {r2} not within [{before}, {after}]"
    );
}

#[test]
fn every_json_shape_is_stored_with_its_types_and_timestamps() {
    let mut server = Server::start();
    let before = now_ns();
    let mut c5 = v5::Client::connect(server.port, "json-v5");
    for m in JSON_SHAPES {
        publish_ok(&mut c5, "devices/json-v5/telemetry", m.as_bytes());
    }
    let mut c3 = v311::Client::connect(server.port, "json-v311");
    for m in JSON_SHAPES {
        c3.publish(
            "devices/json-v311/telemetry",
            v311::QoS::AtLeastOnce,
            false,
            m.as_bytes(),
        );
    }
    let after = now_ns();
    c5.disconnect();
    c3.disconnect();
    assert_eq!(server.stop(), Some(0));

    let stored = Stored::open(&server.data_dir());
    assert_json_rows(
        &stored.device_rows("telemetry", "json-v5"),
        "json-v5",
        before,
        after,
    );
    assert_json_rows(
        &stored.device_rows("telemetry", "json-v311"),
        "json-v311",
        before,
        after,
    );
    // JSON numbers are floats; null fields make no column.
    let mut cols = stored.columns("telemetry").expect("table telemetry");
    cols.sort_by(|a, b| a.0.cmp(&b.0));
    let cols: Vec<(&str, DataType)> = cols
        .iter()
        .map(|(n, ty)| (n.as_str(), ty.clone()))
        .collect();
    assert_eq!(
        cols,
        [
            ("count", DataType::Float64),
            ("device_id", tag_type()),
            ("humidity", DataType::Float64),
            ("ok", DataType::Boolean),
            ("state", tag_type()),
            ("temp", DataType::Float64),
            (
                "time",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
            ),
        ]
    );
}

/// How scans return tags and string fields.
fn tag_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

#[test]
fn telemetry_is_routed_to_subscribers_as_well_as_stored() {
    let mut server = Server::start();
    let mut sub = v311::Client::connect(server.port, "dashboard");
    sub.subscribe("devices/+/telemetry/#", v311::QoS::AtLeastOnce);
    let mut dev = v5::Client::connect(server.port, "routed");
    let payloads = [
        &br#"{"ts": 1700000000000, "values": {"v": 1}}"#[..],
        b"readings,site=a v=2 1700000001000000000",
    ];
    publish_ok(&mut dev, "devices/routed/telemetry", payloads[0]);
    publish_ok(&mut dev, "devices/routed/telemetry/readings", payloads[1]);
    for (topic, payload) in [
        ("devices/routed/telemetry", payloads[0]),
        ("devices/routed/telemetry/readings", payloads[1]),
    ] {
        let p = sub.recv();
        assert_eq!((&p.topic[..], &p.payload[..]), (topic, payload));
    }
    assert_eq!(server.stop(), Some(0));
    let stored = Stored::open(&server.data_dir());
    assert_eq!(
        stored.rows("telemetry"),
        [row(&[
            ("time", t(T0)),
            ("device_id", s("routed")),
            ("v", f(1.0))
        ])]
    );
    assert_eq!(
        stored.rows("readings"),
        [row(&[
            ("time", t(T0 + SEC)),
            ("device_id", s("routed")),
            ("site", s("a")),
            ("v", f(2.0)),
        ])]
    );
}

/// A Telegraf-style batch: comments, a blank line, escapes, every field type, a spoofed
/// `device_id` tag, explicit ns timestamps and one line without.
const TELEGRAF: &str = "# telegraf outputs.mqtt, batch of 5\n\
cpu,cpu=cpu-total,host=edge\\ 1 usage_user=12.5,usage_idle=80i,cores=8u,throttled=false,governor=\"perf \\\"max\\\"\" 1700000000000000000\n\
cpu,cpu=cpu0,host=edge\\ 1 usage_user=3.25,usage_idle=95i,cores=4u,throttled=T,governor=\"powersave\" 1700000000000000000\n\
\n\
mem,host=edge\\ 1,device_id=spoofed used=1024i,free=2048u,ok=true 1700000000500000000\n\
cpu,cpu=cpu-total,host=edge\\ 1 usage_user=13.5,usage_idle=-79i,cores=8u,throttled=FALSE,governor=\"perf\" 1700000001000000000\n\
# no timestamp: receive time\n\
disk,path=/ used_percent=42.5\n";

#[test]
fn telegraf_line_protocol_batch_is_stored_per_measurement_with_tags_types_and_timestamps() {
    let mut server = Server::start();
    let mut c = v5::Client::connect(server.port, "lp-1");
    let before = now_ns();
    publish_ok(&mut c, "devices/lp-1/telemetry", TELEGRAF.as_bytes());
    let after = now_ns();
    c.disconnect();
    assert_eq!(server.stop(), Some(0));

    let stored = Stored::open(&server.data_dir());
    let cpu = |time: i64, cpu: &str, user: f64, idle: i64, cores: i64, thr: bool, gov: &str| {
        row(&[
            ("time", t(time)),
            ("device_id", s("lp-1")),
            ("cpu", s(cpu)),
            ("host", s("edge 1")),
            ("usage_user", f(user)),
            ("usage_idle", int(idle)),
            ("cores", int(cores)),
            ("throttled", b(thr)),
            ("governor", s(gov)),
        ])
    };
    let mut expected = vec![
        cpu(T0, "cpu-total", 12.5, 80, 8, false, "perf \"max\""),
        cpu(T0, "cpu0", 3.25, 95, 4, true, "powersave"),
        cpu(T0 + SEC, "cpu-total", 13.5, -79, 8, false, "perf"),
    ];
    sort_rows(&mut expected);
    assert_eq!(stored.rows("cpu"), expected);
    assert_eq!(
        stored.rows("mem"),
        [row(&[
            ("time", t(T0 + SEC / 2)),
            ("device_id", s("lp-1")),
            ("host", s("edge 1")),
            ("used", int(1024)),
            ("free", int(2048)),
            ("ok", b(true)),
        ])],
        "the topic's device id replaces the payload's device_id tag"
    );
    let disk = stored.rows("disk");
    assert_eq!(disk.len(), 1);
    assert_eq!(
        without(&disk[0], &["time"]),
        row(&[
            ("device_id", s("lp-1")),
            ("path", s("/")),
            ("used_percent", f(42.5)),
        ])
    );
    assert!((before..=after).contains(&time(&disk[0])));
    assert_eq!(stored.count("telemetry"), 0, "measurements name the tables");
    let types = stored.columns("cpu").unwrap();
    let ty = |n: &str| types.iter().find(|(c, _)| c == n).map(|(_, t)| t.clone());
    assert_eq!(ty("usage_user"), Some(DataType::Float64));
    assert_eq!(ty("usage_idle"), Some(DataType::Int64));
    assert_eq!(ty("cores"), Some(DataType::Int64));
    assert_eq!(ty("throttled"), Some(DataType::Boolean));
    assert_eq!(ty("governor"), Some(tag_type()));
    assert_eq!(ty("host"), Some(tag_type()));
}

#[test]
fn the_topics_table_overrides_the_line_protocol_measurement() {
    let mut server = Server::start();
    let mut c = v311::Client::connect(server.port, "lp-2");
    c.publish(
        "devices/lp-2/telemetry/readings",
        v311::QoS::AtLeastOnce,
        false,
        b"cpu,host=h usage=1.5 1700000000000000000\nmem,host=h used=2i 1700000000000000001",
    );
    c.disconnect();
    assert_eq!(server.stop(), Some(0));
    let stored = Stored::open(&server.data_dir());
    assert_eq!(
        stored.rows("readings"),
        [
            row(&[
                ("time", t(T0)),
                ("device_id", s("lp-2")),
                ("host", s("h")),
                ("usage", f(1.5)),
            ]),
            row(&[
                ("time", t(T0 + 1)),
                ("device_id", s("lp-2")),
                ("host", s("h")),
                ("used", int(2)),
            ]),
        ]
    );
    assert_eq!(stored.columns("cpu"), None);
    assert_eq!(stored.columns("mem"), None);
}

#[test]
fn a_v5_line_protocol_content_type_decides_over_the_first_byte() {
    let mut server = Server::start();
    let mut c = v5::Client::connect(server.port, "lp-3");
    // Looks like JSON, is line protocol (a measurement may start with '[').
    let payload = b"[probe],room=r1 temp=20.5 1700000000000000000";
    let props = v5::PublishProperties {
        content_type: Some("text/plain; format=line".into()),
        ..Default::default()
    };
    let reason = c.publish_with(
        "devices/lp-3/telemetry/lab",
        v5::QoS::AtLeastOnce,
        false,
        payload,
        Some(props),
    );
    assert_eq!(reason, Some(PubAckReason::Success));
    // Without the content type the same bytes are (bad) JSON.
    publish_refused(
        &mut c,
        "devices/lp-3/telemetry/lab",
        payload,
        PubAckReason::PayloadFormatInvalid,
    );
    c.disconnect();
    assert_eq!(server.stop(), Some(0));
    let stored = Stored::open(&server.data_dir());
    assert_eq!(
        stored.rows("lab"),
        [row(&[
            ("time", t(T0)),
            ("device_id", s("lp-3")),
            ("room", s("r1")),
            ("temp", f(20.5)),
        ])]
    );
}

const GATEWAY_ACL: &str =
    "[[mqtt.acl]]\nuser = \"*\"\npublish = [\"#\"]\nsubscribe = [\"#\"]\ngateway = true\n";
const PLAIN_ACL: &str = "[[mqtt.acl]]\nuser = \"*\"\npublish = [\"#\"]\nsubscribe = [\"#\"]\n";

#[test]
fn a_gateway_stores_telemetry_under_each_devices_own_id() {
    let mut server = Server::start_with("", GATEWAY_ACL);
    let mut gw = v5::Client::connect(server.port, "gw");
    for (n, dev) in ["s1", "s2", "s3"].iter().enumerate() {
        let payload = format!(r#"{{"ts": 1700000000000, "values": {{"v": {n}}}}}"#);
        publish_ok(
            &mut gw,
            &format!("devices/{dev}/telemetry"),
            payload.as_bytes(),
        );
    }
    // Line protocol for a device: the topic's device id wins over the tag.
    publish_ok(
        &mut gw,
        "devices/s3/telemetry/readings",
        b"m,device_id=gw v=9 1700000000000000000",
    );
    gw.disconnect();
    assert_eq!(server.stop(), Some(0));
    let stored = Stored::open(&server.data_dir());
    let r = |dev: &str, v: f64| row(&[("time", t(T0)), ("device_id", s(dev)), ("v", f(v))]);
    assert_eq!(
        stored.rows("telemetry"),
        [r("s1", 0.0), r("s2", 1.0), r("s3", 2.0)]
    );
    assert_eq!(stored.rows("readings"), [r("s3", 9.0)]);
}

#[test]
fn without_gateway_rights_other_device_ids_get_0x87_and_nothing_is_stored() {
    let mut server = Server::start_with("", PLAIN_ACL);
    let mut gw = v5::Client::connect(server.port, "gw");
    for dev in ["s1", "s2", "s3"] {
        publish_refused(
            &mut gw,
            &format!("devices/{dev}/telemetry"),
            br#"{"ts": 1700000000000, "values": {"v": 1}}"#,
            PubAckReason::NotAuthorized,
        );
    }
    gw.disconnect();
    assert_eq!(server.stop(), Some(0));
    let stored = Stored::open(&server.data_dir());
    assert_eq!(stored.count("telemetry"), 0);
}

#[test]
fn qos0_telemetry_is_stored_after_a_clean_sigterm_stop() {
    const N: i64 = 300;
    let mut server = Server::start();
    let mut c3 = v311::Client::connect(server.port, "q0-v311");
    let mut c5 = v5::Client::connect(server.port, "q0-v5");
    for i in 0..N {
        let p = format!(r#"{{"ts": {}, "values": {{"i": {i}}}}}"#, T0_MS + i);
        c3.publish(
            "devices/q0-v311/telemetry",
            v311::QoS::AtMostOnce,
            false,
            p.as_bytes(),
        );
        c5.publish(
            "devices/q0-v5/telemetry",
            v5::QoS::AtMostOnce,
            false,
            format!("m i={i}i {}", T0 + i).as_bytes(),
        );
    }
    // A QoS 1 round trip on each connection: the server has read every QoS 0 message before.
    c3.publish("sync/x", v311::QoS::AtLeastOnce, false, b"");
    c5.publish("sync/x", v5::QoS::AtLeastOnce, false, b"");
    assert_eq!(server.stop(), Some(0));
    let stored = Stored::open(&server.data_dir());
    let json: Vec<Row> = (0..N)
        .map(|i| {
            let time = t(T0 + i * 1_000_000);
            row(&[
                ("time", time),
                ("device_id", s("q0-v311")),
                ("i", f(i as f64)),
            ])
        })
        .collect();
    assert_eq!(stored.rows("telemetry"), json);
    let line: Vec<Row> = (0..N)
        .map(|i| {
            row(&[
                ("time", t(T0 + i)),
                ("device_id", s("q0-v5")),
                ("i", int(i)),
            ])
        })
        .collect();
    assert_eq!(stored.rows("m"), line);
}

#[test]
fn qos2_telemetry_is_stored_exactly_once() {
    const N: usize = 20;
    let mut server = Server::start();
    let mut c5 = v5::Client::connect(server.port, "q2-v5");
    let mut c3 = v311::Client::connect(server.port, "q2-v311");
    // Receive-time rows: a second copy of a message would be a second row.
    for n in 0..N {
        let p = format!(r#"{{"n": {n}}}"#);
        c5.publish(
            "devices/q2-v5/telemetry",
            v5::QoS::ExactlyOnce,
            false,
            p.as_bytes(),
        );
        c3.publish(
            "devices/q2-v311/telemetry",
            v311::QoS::ExactlyOnce,
            false,
            p.as_bytes(),
        );
    }
    // A raw client resends its PUBLISH (DUP) before and after the PUBREC, as after a lost
    // packet; each message is still stored once.
    let mut r = Raw::connected(server.port, 5, "q2-raw", 30);
    let topic = b"devices/q2-raw/telemetry";
    for (id, early) in [(7u16, true), (8, false)] {
        let publish = raw::publish(
            true,
            2,
            id,
            topic,
            &[],
            format!(r#"{{"id": {id}}}"#).as_bytes(),
        );
        let mut again = publish.clone();
        again[0] |= 0x08;
        r.send(&publish);
        if early {
            r.send(&again);
        }
        let pubrec = Got::Packet(0x50, id.to_be_bytes().to_vec());
        assert_eq!(r.read(WAIT), pubrec, "PUBREC for {id}");
        if !early {
            r.send(&again);
        }
        assert_eq!(r.read(WAIT), pubrec, "second PUBREC for {id}");
        r.send(&raw::packet(0x62, &id.to_be_bytes()));
        assert_eq!(
            r.read(WAIT),
            Got::Packet(0x70, id.to_be_bytes().to_vec()),
            "PUBCOMP for {id}"
        );
    }
    r.send(&[0xE0, 0x00]);
    c5.disconnect();
    c3.disconnect();
    assert_eq!(server.stop(), Some(0));
    let stored = Stored::open(&server.data_dir());
    for dev in ["q2-v5", "q2-v311"] {
        let ns: Vec<Value> = stored
            .device_rows("telemetry", dev)
            .iter()
            .map(|r| r["n"].clone())
            .collect();
        let want: Vec<Value> = (0..N).map(|n| f(n as f64)).collect();
        assert_eq!(ns, want, "{dev}: each QoS 2 message once, in order");
    }
    let ids: Vec<Value> = stored
        .device_rows("telemetry", "q2-raw")
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, [f(7.0), f(8.0)]);
}

/// A persistent session's QoS 2 packet id outlives `kill -9`: after the restart, the resend of a
/// message whose PUBREC had been sent is known as a duplicate and answered without storing it
/// again. The payload has no timestamp, so a second copy would be a second row.
#[test]
fn a_qos2_resend_after_kill_9_is_not_stored_twice() {
    let mut server = Server::start();
    let expiry = [0x11, 0, 0, 0x0e, 0x10]; // Session Expiry Interval 3600 s
    let connect = raw::connect_flags(5, 0x00, "q2-crash", 30, &expiry);
    let publish = raw::publish(
        true,
        2,
        9,
        b"devices/q2-crash/telemetry",
        &[],
        br#"{"n": 1}"#,
    );
    let pubrec = Got::Packet(0x50, 9u16.to_be_bytes().to_vec());
    let mut r = Raw::open(server.port);
    r.send(&connect);
    assert!(matches!(r.read(WAIT), Got::Packet(0x20, _)));
    r.send(&publish);
    assert_eq!(r.read(WAIT), pubrec);
    // The PUBREC says the point and the id are durable; the server dies before PUBREL.
    server.restart_after_kill();
    let mut r = Raw::open(server.port);
    r.send(&connect);
    match r.read(WAIT) {
        Got::Packet(0x20, body) => assert_eq!(body[..2], [1, 0], "session present, success"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let mut again = publish;
    again[0] |= 0x08;
    r.send(&again);
    assert_eq!(r.read(WAIT), pubrec, "the resend is acknowledged");
    r.send(&raw::packet(0x62, &9u16.to_be_bytes()));
    assert_eq!(r.read(WAIT), Got::Packet(0x70, 9u16.to_be_bytes().to_vec()));
    r.send(&[0xE0, 0x00]);
    assert_eq!(server.stop(), Some(0));
    let stored = Stored::open(&server.data_dir());
    let ns: Vec<Value> = stored
        .device_rows("telemetry", "q2-crash")
        .iter()
        .map(|r| r["n"].clone())
        .collect();
    assert_eq!(ns, [f(1.0)], "stored once");
}

/// The kind (tag or field) of each of `table`'s columns.
fn kinds(stored: &Stored, table: &str) -> Vec<(String, mast_storage::ColumnKind)> {
    let schema = stored
        .store()
        .snapshot()
        .tables()
        .into_iter()
        .find(|t| &*t.name == table)
        .unwrap_or_else(|| panic!("no table {table}"));
    let mut kinds: Vec<_> = schema
        .columns
        .iter()
        .map(|c| (c.name.to_string(), c.kind))
        .collect();
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    kinds
}

#[test]
fn declared_json_tag_keys_become_series_tags() {
    use mast_storage::{ColumnKind::Tag, FieldType::Float};
    let field = mast_storage::ColumnKind::Field;
    let mut server = Server::start_with(
        "",
        "[ingest]\ntag_keys = [\"site\"]\n\
         [ingest.tables.readings]\ntag_keys = [\"name\", \"fleet\", \"model\"]\n",
    );
    let mut c = v5::Client::connect(server.port, "truck-1");
    let batch = format!(
        r#"[{{"ts": {T0_MS}, "values": {{"name": "truck_1", "fleet": "West", "model": 7,
              "lat": 52.5, "site": "a", "status": "idle"}}}},
            {{"ts": {}, "values": {{"name": "truck_1", "fleet": "East", "model": null,
              "lat": 52.25}}}}]"#,
        T0_MS + 1000
    );
    publish_ok(
        &mut c,
        "devices/truck-1/telemetry/readings",
        batch.as_bytes(),
    );
    // `site` is a tag in every table; `name` is one only in `readings`
    publish_ok(
        &mut c,
        "devices/truck-1/telemetry/other",
        br#"{"site": "b", "name": "n", "v": 1}"#,
    );
    // a row of tags alone has nothing to store: refused whole (0x99), nothing written
    publish_refused(
        &mut c,
        "devices/truck-1/telemetry/readings",
        format!(r#"[{{"ts": {T0_MS}, "values": {{"lat": 1}}}}, {{"name": "x", "fleet": "y"}}]"#)
            .as_bytes(),
        PubAckReason::PayloadFormatInvalid,
    );
    c.disconnect();
    assert_eq!(server.stop(), Some(0));

    let stored = Stored::open(&server.data_dir());
    let float = mast_storage::ColumnKind::Field(Float);
    let string = field(mast_storage::FieldType::String);
    assert_eq!(
        kinds(&stored, "readings"),
        [
            ("device_id".to_string(), Tag),
            ("fleet".to_string(), Tag),
            ("lat".to_string(), float),
            ("model".to_string(), Tag),
            ("name".to_string(), Tag),
            ("site".to_string(), Tag),
            ("status".to_string(), string),
        ]
    );
    assert_eq!(
        stored.rows("readings"),
        [
            row(&[
                ("time", t(T0)),
                ("device_id", s("truck-1")),
                ("name", s("truck_1")),
                ("fleet", s("West")),
                ("model", s("7")),
                ("site", s("a")),
                ("lat", f(52.5)),
                ("status", s("idle")),
            ]),
            row(&[
                ("time", t(T0 + SEC)),
                ("device_id", s("truck-1")),
                ("name", s("truck_1")),
                ("fleet", s("East")),
                ("lat", f(52.25)),
            ]),
        ]
    );
    assert_eq!(
        kinds(&stored, "other"),
        [
            ("device_id".to_string(), Tag),
            ("name".to_string(), string),
            ("site".to_string(), Tag),
            ("v".to_string(), float),
        ]
    );
    // one series per tag set: a latest-row scan gives each its newest row
    let mut req = mast_storage::ScanRequest::table("readings");
    req.latest = true;
    let latest: Vec<_> = stored.scan(&req).iter().flat_map(batch_rows).collect();
    assert_eq!(latest.len(), 2, "{latest:?}");
    req.latest = false;
    req.tags = vec![("fleet".into(), vec!["East".into()])];
    let east: Vec<_> = stored.scan(&req).iter().flat_map(batch_rows).collect();
    assert_eq!(east.len(), 1, "{east:?}");
}
