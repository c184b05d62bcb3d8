//! Refused telemetry end to end: each MQTT 5 reason code (0x99 bad payload or type conflict,
//! 0x97 column limit, 0x87 another device's id, 0x90 bad telemetry topic) with its report on
//! `devices/{id}/errors`, the plain 3.1.1 PUBACK, and what storage holds afterwards: the good
//! messages before and after a bad one on the same connection, and the good points of a
//! partly refused message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod ingest_support;
mod mqtt_support;

use common::{Server, http};
use ingest_support::{SEC, Stored, T0, f, publish_ok, publish_refused, row, s, t};
use mast_storage::now_ns;
use mqtt_support::raw::{self, Got, Raw};
use mqtt_support::{QUIET, WAIT, v5, v311};
use rumqttc::v5::mqttbytes::v5::PubAckReason;

/// A separate client watching every device's error topic.
fn error_watcher(port: u16) -> v5::Client {
    let mut w = v5::Client::connect(port, "error-watcher");
    w.subscribe("devices/+/errors", v5::QoS::AtLeastOnce);
    w
}

/// What an error report must say.
struct Expect<'a> {
    /// Topic the report arrives on.
    on: &'a str,
    /// The refused message's topic.
    topic: &'a str,
    packet_id: Option<u16>,
    code: u8,
    reason: &'a str,
    /// A piece of the error text.
    mentions: &'a str,
}

/// The next report on the watcher, checked against `e`; it was made between `since_ms` and now.
fn assert_report(w: &mut v5::Client, e: &Expect<'_>, since_ms: i64) {
    let p = w.recv();
    assert_eq!(p.qos, v5::QoS::AtLeastOnce, "error reports are QoS 1");
    let body: serde_json::Value = serde_json::from_slice(&p.payload).expect("report is JSON");
    assert_eq!(v5::topic(&p), e.on, "report {body}");
    assert_eq!(body["topic"], e.topic, "{body}");
    assert_eq!(
        body["packet_id"],
        e.packet_id.map_or(serde_json::Value::Null, |id| id.into()),
        "{body}"
    );
    assert_eq!(body["code"], e.code, "{body}");
    assert_eq!(body["reason"], e.reason, "{body}");
    let error = body["error"].as_str().expect("error text");
    assert!(
        error.contains(e.mentions),
        "{error:?} names {:?}",
        e.mentions
    );
    let when = body["time"].as_i64().expect("time in ms");
    assert!(
        (since_ms..=now_ns() / 1_000_000).contains(&when),
        "report time {when} not after {since_ms}"
    );
}

fn now_ms() -> i64 {
    now_ns() / 1_000_000
}

#[test]
fn bad_payloads_get_0x99_and_an_error_report_and_the_connection_goes_on_v5() {
    let mut server = Server::start();
    let mut w = error_watcher(server.port);
    let mut c = v5::Client::connect(server.port, "bad-json");
    let topic = "devices/bad-json/telemetry";
    publish_ok(
        &mut c,
        topic,
        br#"{"ts": 1700000000000, "values": {"v": 1}}"#,
    );
    for (bad, mentions) in [
        (&br#"{"ts": 1700000000001, "values": {"v": }"#[..], "JSON"),
        (br#"{"v": {"nested": 1}}"#, "nested"),
        (br#"{"ts": "yesterday", "values": {"v": 2}}"#, "RFC 3339"),
        (b"m v= 1700000000000000003", "line 1"),
    ] {
        let since = now_ms();
        let id = publish_refused(&mut c, topic, bad, PubAckReason::PayloadFormatInvalid);
        let e = Expect {
            on: "devices/bad-json/errors",
            topic,
            packet_id: Some(id),
            code: 0x99,
            reason: "payload format invalid",
            mentions,
        };
        assert_report(&mut w, &e, since);
    }
    publish_ok(
        &mut c,
        topic,
        br#"{"ts": 1700000000002, "values": {"v": 3}}"#,
    );
    c.disconnect();
    w.assert_silent(QUIET);
    assert_eq!(server.stop(), Some(0));
    let stored = Stored::open(&server.data_dir());
    assert_eq!(
        stored.rows("telemetry"),
        [
            row(&[("time", t(T0)), ("device_id", s("bad-json")), ("v", f(1.0))]),
            row(&[
                ("time", t(T0 + 2_000_000)),
                ("device_id", s("bad-json")),
                ("v", f(3.0)),
            ]),
        ]
    );
}

/// Every refused message counts once in `/metrics` (`mast_ingest_refused_total`); accepted
/// ones do not.
#[test]
fn refusals_are_counted_in_the_metrics_v5() {
    let server = Server::start();
    let mut c = v5::Client::connect(server.port, "counted");
    let topic = "devices/counted/telemetry";
    publish_ok(
        &mut c,
        topic,
        br#"{"ts": 1700000000000, "values": {"v": 1}}"#,
    );
    for bad in [&br#"{"v": {"nested": 1}}"#[..], b"not json"] {
        publish_refused(&mut c, topic, bad, PubAckReason::PayloadFormatInvalid);
    }
    let (status, _, body) = http(server.http_port, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("mast_ingest_refused_total"))
        .unwrap_or_else(|| panic!("no mast_ingest_refused_total in\n{text}"));
    assert_eq!(line.split_whitespace().last(), Some("2"), "{line}");
    c.disconnect();
}

#[test]
fn a_type_conflict_gets_0x99_and_the_other_points_of_the_message_are_stored_v5() {
    let mut server = Server::start();
    let mut w = error_watcher(server.port);
    let mut c = v5::Client::connect(server.port, "conflict");
    let topic = "devices/conflict/telemetry";
    publish_ok(
        &mut c,
        topic,
        br#"{"ts": 1700000000000, "values": {"temp": 20.5, "state": "ok"}}"#,
    );
    let since = now_ms();
    let id = publish_refused(
        &mut c,
        topic,
        br#"[{"ts": 1700000001000, "values": {"temp": "hot", "hum": 40}},
             {"ts": 1700000002000, "values": {"temp": 22.5, "state": true}}]"#,
        PubAckReason::PayloadFormatInvalid,
    );
    let e = Expect {
        on: "devices/conflict/errors",
        topic,
        packet_id: Some(id),
        code: 0x99,
        reason: "payload format invalid",
        mentions: "2 points refused",
    };
    assert_report(&mut w, &e, since);
    publish_ok(
        &mut c,
        topic,
        br#"{"ts": 1700000003000, "values": {"temp": 23.5}}"#,
    );
    c.disconnect();
    assert_eq!(server.stop(), Some(0));
    let stored = Stored::open(&server.data_dir());
    let d = || ("device_id", s("conflict"));
    assert_eq!(
        stored.rows("telemetry"),
        [
            row(&[("time", t(T0)), d(), ("temp", f(20.5)), ("state", s("ok"))]),
            row(&[("time", t(T0 + SEC)), d(), ("hum", f(40.0))]),
            row(&[("time", t(T0 + 2 * SEC)), d(), ("temp", f(22.5))]),
            row(&[("time", t(T0 + 3 * SEC)), d(), ("temp", f(23.5))]),
        ]
    );
}

#[test]
fn the_column_limit_gets_0x97_and_the_points_within_it_are_stored_v5() {
    // The smallest limit the config allows.
    let mut server = Server::start_with("", "[storage]\nmax_columns_per_table = 16\n");
    let mut w = error_watcher(server.port);
    let mut c = v5::Client::connect(server.port, "quota");
    let topic = "devices/quota/telemetry";
    // device_id, a, b and f0..f12: sixteen columns.
    let fill: String = (0..13).map(|i| format!(", \"f{i}\": 0")).collect();
    publish_ok(
        &mut c,
        topic,
        format!(r#"{{"ts": 1700000000000, "values": {{"a": 1, "b": 2{fill}}}}}"#).as_bytes(),
    );
    let since = now_ms();
    let id = publish_refused(
        &mut c,
        topic,
        br#"{"ts": 1700000001000, "values": {"a": 3, "c": 4}}"#,
        PubAckReason::QuotaExceeded,
    );
    let e = Expect {
        on: "devices/quota/errors",
        topic,
        packet_id: Some(id),
        code: 0x97,
        reason: "quota exceeded",
        mentions: "1 point refused",
    };
    assert_report(&mut w, &e, since);
    publish_ok(
        &mut c,
        topic,
        br#"{"ts": 1700000002000, "values": {"b": 5}}"#,
    );
    c.disconnect();
    assert_eq!(server.stop(), Some(0));
    let stored = Stored::open(&server.data_dir());
    let d = || ("device_id", s("quota"));
    let names: Vec<String> = (0..13).map(|i| format!("f{i}")).collect();
    let mut first = vec![("time", t(T0)), d(), ("a", f(1.0)), ("b", f(2.0))];
    first.extend(names.iter().map(|n| (n.as_str(), f(0.0))));
    assert_eq!(
        stored.rows("telemetry"),
        [
            row(&first),
            row(&[("time", t(T0 + SEC)), d(), ("a", f(3.0))]),
            row(&[("time", t(T0 + 2 * SEC)), d(), ("b", f(5.0))]),
        ]
    );
}

#[test]
fn publishing_for_another_device_gets_0x87_is_not_routed_and_stores_nothing_v5() {
    let mut server = Server::start();
    let mut w = error_watcher(server.port);
    let mut victim_sub = v311::Client::connect(server.port, "dashboard");
    victim_sub.subscribe("devices/dev-b/telemetry", v311::QoS::AtLeastOnce);
    let mut c = v5::Client::connect(server.port, "dev-a");
    let since = now_ms();
    let topic = "devices/dev-b/telemetry";
    let id = publish_refused(
        &mut c,
        topic,
        br#"{"ts": 1700000000000, "values": {"v": 1}}"#,
        PubAckReason::NotAuthorized,
    );
    // A refused PUBLISH is dropped (as for any PUBLISH an ACL denies): it reaches nobody.
    victim_sub.assert_silent(QUIET);
    // The report goes to the client that sent the message: it cannot be expected to watch
    // another device's topics, and no client may put reports into another device's.
    let e = Expect {
        on: "devices/dev-a/errors",
        topic,
        packet_id: Some(id),
        code: 0x87,
        reason: "not authorized",
        mentions: "dev-b",
    };
    assert_report(&mut w, &e, since);
    publish_ok(
        &mut c,
        "devices/dev-a/telemetry",
        br#"{"ts": 1700000001000, "values": {"v": 2}}"#,
    );
    c.disconnect();
    assert_eq!(server.stop(), Some(0));
    let stored = Stored::open(&server.data_dir());
    assert_eq!(
        stored.rows("telemetry"),
        [row(&[
            ("time", t(T0 + SEC)),
            ("device_id", s("dev-a")),
            ("v", f(2.0))
        ])]
    );
}

#[test]
fn invalid_telemetry_topics_get_0x90_and_store_nothing_v5() {
    let mut server = Server::start();
    let mut w = error_watcher(server.port);
    let mut c = v5::Client::connect(server.port, "bad-topic");
    for (topic, mentions) in [
        (
            "devices/bad-topic/telemetry/a/b",
            "devices/bad-topic/telemetry/a/b",
        ),
        ("devices/bad-topic/telemetry/iot.devices", "reserved"),
        ("devices/bad-topic/telemetry/SYSTEM.tables", "reserved"),
        (
            "devices/bad-topic/telemetry/",
            "devices/bad-topic/telemetry/",
        ),
        ("devices//telemetry", "device id"),
    ] {
        let since = now_ms();
        let id = publish_refused(
            &mut c,
            topic,
            br#"{"ts": 1700000000000, "values": {"v": 1}}"#,
            PubAckReason::TopicNameInvalid,
        );
        let e = Expect {
            on: "devices/bad-topic/errors",
            topic,
            packet_id: Some(id),
            code: 0x90,
            reason: "topic name invalid",
            mentions,
        };
        assert_report(&mut w, &e, since);
    }
    publish_ok(
        &mut c,
        "devices/bad-topic/telemetry/good",
        br#"{"ts": 1700000000000, "values": {"v": 2}}"#,
    );
    c.disconnect();
    assert_eq!(server.stop(), Some(0));
    let stored = Stored::open(&server.data_dir());
    let tables: Vec<String> = stored
        .store()
        .snapshot()
        .tables()
        .iter()
        .map(|t| t.name.to_string())
        .filter(|n| n != "iot.device_events")
        .collect();
    assert_eq!(tables, ["good"]);
    assert_eq!(
        stored.rows("good"),
        [row(&[
            ("time", t(T0)),
            ("device_id", s("bad-topic")),
            ("v", f(2.0))
        ])]
    );
}

/// PUBLISH QoS 1 on a raw 3.1.1 connection; asserts the plain PUBACK (exactly the packet id).
fn raw_publish_v311(r: &mut Raw, id: u16, topic: &str, payload: &[u8]) {
    r.send(&raw::publish(false, 1, id, topic.as_bytes(), &[], payload));
    assert_eq!(
        r.read(WAIT),
        Got::Packet(0x40, id.to_be_bytes().to_vec()),
        "plain PUBACK for {topic} {}",
        String::from_utf8_lossy(payload)
    );
}

#[test]
fn v311_refusals_get_a_plain_puback_and_an_error_report() {
    let mut server = Server::start();
    let mut w = error_watcher(server.port);
    let mut r = Raw::connected(server.port, 4, "old-dev", 30);
    let own = "devices/old-dev/telemetry";
    raw_publish_v311(
        &mut r,
        1,
        own,
        br#"{"ts": 1700000000000, "values": {"v": 1}}"#,
    );
    let refusals = [
        (
            2,
            own,
            &br#"{"v": [1]}"#[..],
            0x99,
            "payload format invalid",
            "nested",
        ),
        (
            3,
            "devices/other/telemetry",
            br#"{"v": 1}"#,
            0x87,
            "not authorized",
            "other",
        ),
        (
            4,
            "devices/old-dev/telemetry/x/y",
            br#"{"v": 1}"#,
            0x90,
            "topic name invalid",
            "telemetry",
        ),
    ];
    for (id, topic, payload, code, reason, mentions) in refusals {
        let since = now_ms();
        raw_publish_v311(&mut r, id, topic, payload);
        let e = Expect {
            on: "devices/old-dev/errors",
            topic,
            packet_id: Some(id),
            code,
            reason,
            mentions,
        };
        assert_report(&mut w, &e, since);
    }
    // A QoS 0 refusal is reported too (without a packet id).
    let since = now_ms();
    r.send(&raw::publish(
        false,
        0,
        0,
        own.as_bytes(),
        &[],
        b"not json {",
    ));
    let e = Expect {
        on: "devices/old-dev/errors",
        topic: own,
        packet_id: None,
        code: 0x99,
        reason: "payload format invalid",
        mentions: "line 1",
    };
    assert_report(&mut w, &e, since);
    raw_publish_v311(
        &mut r,
        5,
        own,
        br#"{"ts": 1700000001000, "values": {"v": 5}}"#,
    );
    r.send(&[0xC0, 0x00]);
    assert_eq!(
        r.read(WAIT),
        Got::Packet(0xD0, Vec::new()),
        "still connected"
    );
    r.send(&[0xE0, 0x00]);
    assert_eq!(server.stop(), Some(0));
    let stored = Stored::open(&server.data_dir());
    assert_eq!(
        stored.rows("telemetry"),
        [
            row(&[("time", t(T0)), ("device_id", s("old-dev")), ("v", f(1.0))]),
            row(&[
                ("time", t(T0 + SEC)),
                ("device_id", s("old-dev")),
                ("v", f(5.0))
            ]),
        ]
    );
}
