//! Device shadows over MQTT against the real binary, with 3.1.1 and 5.0 clients (rumqttc):
//! the AWS IoT Device Shadow topics and documents, versions, the delta, who may ask, and
//! durability across `kill -9`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod mqtt_support;

use std::collections::HashMap;

use common::Server;
use mqtt_support::QUIET;
use mqtt_support::any::{self, Version};
use serde_json::{Value, json};

const REPLIES: [&str; 7] = [
    "get/accepted",
    "get/rejected",
    "update/accepted",
    "update/rejected",
    "update/delta",
    "update/documents",
    "delete/accepted",
];

/// A device subscribed to every reply topic of its classic shadow (or of `name`).
fn device(v: Version, port: u16, thing: &str, name: Option<&str>) -> (any::Client, String) {
    let mut c = any::Client::connect(v, port, thing);
    let prefix = match name {
        Some(n) => format!("$aws/things/{thing}/shadow/name/{n}"),
        None => format!("$aws/things/{thing}/shadow"),
    };
    for r in REPLIES {
        assert_eq!(c.subscribe(&format!("{prefix}/{r}"), 1), Some(1));
    }
    (c, prefix)
}

/// The next `n` replies, by reply topic (the suffix after the prefix).
fn replies(c: &mut any::Client, prefix: &str, n: usize) -> HashMap<String, Value> {
    (0..n)
        .map(|_| {
            let m = c.recv();
            let suffix = m
                .topic
                .strip_prefix(&format!("{prefix}/"))
                .unwrap()
                .to_owned();
            (suffix, serde_json::from_slice(&m.payload).unwrap())
        })
        .collect()
}

/// The rows of a SQL query over HTTP, as JSON.
fn query(http_port: u16, sql: &str) -> Value {
    let (status, _, body) = common::http(http_port, "POST", "/api/v1/sql", &[], sql.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn send(c: &mut any::Client, prefix: &str, op: &str, doc: &Value) {
    c.publish(
        &format!("{prefix}/{op}"),
        1,
        false,
        doc.to_string().as_bytes(),
    );
}

#[test]
fn a_device_reports_gets_its_delta_and_converges_on_both_versions() {
    let server = Server::start();
    for v in Version::ALL {
        let thing = format!("lamp-{v:?}");
        let (mut c, p) = device(v, server.port, &thing, None);
        // No shadow yet: get is refused with 404 and the token echoed.
        send(&mut c, &p, "get", &json!({"clientToken": "g0"}));
        let r = replies(&mut c, &p, 1);
        let e = &r["get/rejected"];
        assert_eq!(
            (&e["code"], &e["clientToken"]),
            (&json!(404), &json!("g0")),
            "{e}"
        );
        assert_eq!(
            e["message"],
            format!("No shadow exists with name: '{thing}'")
        );

        send(
            &mut c,
            &p,
            "update",
            &json!({"state": {"reported": {"led": "off"}}, "clientToken": "u1"}),
        );
        let r = replies(&mut c, &p, 2);
        let a = &r["update/accepted"];
        assert_eq!(
            (&a["version"], &a["clientToken"]),
            (&json!(1), &json!("u1"))
        );
        assert_eq!(a["state"], json!({"reported": {"led": "off"}}));
        let ts = a["timestamp"].as_u64().unwrap();
        assert!(
            ts > 1_700_000_000 && ts < 10_000_000_000,
            "epoch seconds, not ms: {ts}"
        );
        assert_eq!(r["update/documents"]["current"]["version"], json!(1));

        // An operator's desired change (here over MQTT by the device itself) opens a delta.
        send(
            &mut c,
            &p,
            "update",
            &json!({"state": {"desired": {"led": "on", "level": 3}}}),
        );
        let r = replies(&mut c, &p, 3);
        assert_eq!(r["update/accepted"]["version"], json!(2));
        assert_eq!(r["update/delta"]["state"], json!({"led": "on", "level": 3}));
        assert_eq!(r["update/delta"]["version"], json!(2));
        assert_eq!(r["update/documents"]["previous"]["version"], json!(1));

        send(&mut c, &p, "get", &json!({}));
        let g = &replies(&mut c, &p, 1)["get/accepted"];
        assert_eq!(g["state"]["delta"], json!({"led": "on", "level": 3}));
        assert_eq!(g["version"], json!(2));

        // A stale version is refused; the right one is taken; catching up ends the delta.
        send(
            &mut c,
            &p,
            "update",
            &json!({"state": {"reported": {"led": "on"}}, "version": 1, "clientToken": "old"}),
        );
        let e = &replies(&mut c, &p, 1)["update/rejected"];
        assert_eq!(
            (&e["code"], &e["message"], &e["clientToken"]),
            (&json!(409), &json!("Version conflict"), &json!("old"))
        );
        send(
            &mut c,
            &p,
            "update",
            &json!({"state": {"reported": {"led": "on", "level": 3}}, "version": 2}),
        );
        let r = replies(&mut c, &p, 2);
        assert_eq!(r["update/accepted"]["version"], json!(3));
        assert!(!r.contains_key("update/delta"), "in sync: no delta");
        c.assert_silent(QUIET);
        send(&mut c, &p, "get", &json!({}));
        let g = &replies(&mut c, &p, 1)["get/accepted"];
        assert!(g["state"].get("delta").is_none(), "{g}");

        // Delete answers with the version it had; get is refused again.
        send(&mut c, &p, "delete", &json!({"clientToken": "d"}));
        let d = &replies(&mut c, &p, 1)["delete/accepted"];
        assert_eq!((&d["version"], &d["clientToken"]), (&json!(3), &json!("d")));
        c.publish(&format!("{p}/get"), 1, false, b"");
        assert_eq!(replies(&mut c, &p, 1)["get/rejected"]["code"], json!(404));
    }
}

#[test]
fn named_shadows_are_separate_from_the_classic_one() {
    let server = Server::start();
    let (mut c, p) = device(Version::V5, server.port, "pump", Some("config"));
    send(
        &mut c,
        &p,
        "update",
        &json!({"state": {"reported": {"rpm": 1200}}}),
    );
    let r = replies(&mut c, &p, 2);
    assert_eq!(r["update/accepted"]["version"], json!(1));
    // The classic shadow of the same thing does not exist.
    let (mut classic, cp) = device(Version::V311, server.port, "pump", None);
    drop(c);
    send(&mut classic, &cp, "get", &json!({}));
    assert_eq!(
        replies(&mut classic, &cp, 1)["get/rejected"]["code"],
        json!(404)
    );
}

#[test]
fn bad_documents_get_aws_error_documents() {
    let server = Server::start();
    let (mut c, p) = device(Version::V5, server.port, "dev", None);
    for (payload, code, message) in [
        (&b"{not json"[..], 400, "Invalid JSON"),
        (
            br#"{"clientToken":"x"}"#,
            400,
            "Missing required node: state",
        ),
        (
            br#"{"state":{"desired":[1]}}"#,
            400,
            "Desired node must be an object",
        ),
    ] {
        c.publish(&format!("{p}/update"), 1, false, payload);
        let e = &replies(&mut c, &p, 1)["update/rejected"];
        assert_eq!(
            (&e["code"], &e["message"]),
            (&json!(code), &json!(message)),
            "{e}"
        );
    }
    let big = "x".repeat(9000);
    send(
        &mut c,
        &p,
        "update",
        &json!({"state": {"reported": {"blob": big}}}),
    );
    assert_eq!(
        replies(&mut c, &p, 1)["update/rejected"]["code"],
        json!(413)
    );
    c.assert_silent(QUIET);
}

#[test]
fn another_clients_request_is_refused_to_it_alone() {
    let server = Server::start();
    let (mut owner, p) = device(Version::V5, server.port, "cam", None);
    send(
        &mut owner,
        &p,
        "update",
        &json!({"state": {"reported": {"on": true}}}),
    );
    replies(&mut owner, &p, 2);
    let mut intruder = any::Client::connect(Version::V311, server.port, "intruder");
    intruder.subscribe(&format!("{p}/update/rejected"), 1);
    intruder.publish(
        &format!("{p}/update"),
        1,
        false,
        br#"{"state":{"reported":{"on":false}},"clientToken":"i"}"#,
    );
    let m = intruder.recv();
    let e: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!((&e["code"], &e["clientToken"]), (&json!(403), &json!("i")));
    owner.assert_silent(QUIET);
    send(&mut owner, &p, "get", &json!({}));
    let g = &replies(&mut owner, &p, 1)["get/accepted"];
    assert_eq!(
        (&g["state"]["reported"], &g["version"]),
        (&json!({"on": true}), &json!(1))
    );
}

#[test]
fn an_accepted_change_survives_kill_9() {
    let mut server = Server::start();
    let (mut c, p) = device(Version::V5, server.port, "meter", None);
    send(
        &mut c,
        &p,
        "update",
        &json!({"state": {"desired": {"rate": 5}, "reported": {"rate": 1}}}),
    );
    assert_eq!(
        replies(&mut c, &p, 3)["update/accepted"]["version"],
        json!(1)
    );
    drop(c);
    server.restart_after_kill();
    let (mut c, p) = device(Version::V5, server.port, "meter", None);
    send(&mut c, &p, "get", &json!({}));
    let g = &replies(&mut c, &p, 1)["get/accepted"];
    assert_eq!(g["version"], json!(1));
    assert_eq!(g["state"]["delta"], json!({"rate": 5}));
    // And SQL sees it: one row, the documents as JSON text.
    let sql = "SELECT device_id, shadow_name, version, desired, reported, delta, in_sync \
               FROM iot.shadows WHERE device_id = 'meter'";
    let rows = query(server.http_port, sql);
    assert_eq!(
        rows,
        json!([{
            "device_id": "meter", "shadow_name": "", "version": 1,
            "desired": "{\"rate\":5}", "reported": "{\"rate\":1}", "delta": "{\"rate\":5}",
            "in_sync": false
        }])
    );
    // The change is in the history, a telemetry table.
    let sql = "SELECT device_id, shadow_name, operation, version, source, previous, current \
               FROM iot.shadow_history WHERE device_id = 'meter'";
    let rows = query(server.http_port, sql);
    assert_eq!(
        rows,
        json!([{
            "device_id": "meter", "shadow_name": "", "operation": "update", "version": 1,
            "source": "device", "previous": "{}",
            "current": "{\"desired\":{\"rate\":5},\"reported\":{\"rate\":1}}"
        }])
    );
}

#[test]
fn an_operator_sets_desired_over_rest_and_the_device_gets_its_delta() {
    let server = Server::start();
    let (mut c, p) = device(Version::V311, server.port, "valve", None);
    let rest = |method: &str, query: &str, body: &Value| {
        let path = format!("/api/v1/devices/valve/shadow{query}");
        let (status, _, b) = common::http(
            server.http_port,
            method,
            &path,
            &[],
            body.to_string().as_bytes(),
        );
        (
            status,
            serde_json::from_slice::<Value>(&b).unwrap_or(Value::Null),
        )
    };
    let (status, e) = rest("GET", "", &Value::Null);
    assert_eq!((status, &e["code"]), (404, &json!("not_found")), "{e}");

    let (status, a) = rest(
        "POST",
        "",
        &json!({"state": {"desired": {"open": true}}, "clientToken": "op1"}),
    );
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        (&a["version"], &a["clientToken"]),
        (&json!(1), &json!("op1"))
    );
    // The device hears it over MQTT: accepted, delta and documents.
    let r = replies(&mut c, &p, 3);
    assert_eq!(r["update/delta"]["state"], json!({"open": true}));
    assert_eq!(r["update/accepted"]["version"], json!(1));

    // An operator may not write what the device reports.
    let (status, e) = rest("POST", "", &json!({"state": {"reported": {"open": true}}}));
    assert_eq!(
        (status, &e["code"], &e["error"]),
        (403, &json!("forbidden"), &json!("Forbidden"))
    );
    let (status, e) = rest(
        "POST",
        "",
        &json!({"state": {"desired": {"open": false}}, "version": 9}),
    );
    assert_eq!((status, &e["code"]), (409, &json!("version_conflict")));

    send(
        &mut c,
        &p,
        "update",
        &json!({"state": {"reported": {"open": true}}}),
    );
    replies(&mut c, &p, 2);
    let (status, g) = rest("GET", "", &Value::Null);
    assert_eq!(status, 200);
    assert_eq!(
        (&g["version"], g["state"].get("delta")),
        (&json!(2), None),
        "{g}"
    );
    assert_eq!(
        rest("GET", "?name=cfg", &Value::Null).0,
        404,
        "named shadows are separate"
    );

    let (status, d) = rest("DELETE", "", &Value::Null);
    assert_eq!((status, &d["version"]), (200, &json!(2)));
    assert_eq!(
        replies(&mut c, &p, 1)["delete/accepted"]["version"],
        json!(2)
    );
    c.assert_silent(QUIET);
    // Each accepted change is a row of the history, refusals are not.
    let sql = "SELECT operation, version, source, client_token, current FROM iot.shadow_history \
               WHERE device_id = 'valve' ORDER BY time, version, operation DESC";
    let rows = query(server.http_port, sql);
    assert_eq!(
        rows,
        json!([
            {"operation": "update", "version": 1, "source": "operator", "client_token": "op1",
             "current": "{\"desired\":{\"open\":true}}"},
            {"operation": "update", "version": 2, "source": "device", "client_token": "",
             "current": "{\"desired\":{\"open\":true},\"reported\":{\"open\":true}}"},
            {"operation": "delete", "version": 2, "source": "operator", "client_token": "",
             "current": "{}"}
        ])
    );
}

#[test]
fn a_device_that_was_offline_converges_with_the_reconnect_protocol() {
    let server = Server::start();
    let rest_desired = |v: u32| {
        let body = json!({"state": {"desired": {"setpoint": v}}}).to_string();
        let (status, _, b) = common::http(
            server.http_port,
            "POST",
            "/api/v1/devices/hvac/shadow",
            &[],
            body.as_bytes(),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    };
    let (mut c, p) = device(Version::V5, server.port, "hvac", None);
    send(
        &mut c,
        &p,
        "update",
        &json!({"state": {"reported": {"setpoint": 18}}}),
    );
    replies(&mut c, &p, 2);
    c.disconnect();
    // Three changes while it is away.
    for v in [19, 20, 21] {
        rest_desired(v);
    }
    // Back with a clean session: subscribe, then get; the document has the latest desired.
    let (mut c, p) = device(Version::V311, server.port, "hvac", None);
    send(&mut c, &p, "get", &json!({"clientToken": "sync"}));
    let g = &replies(&mut c, &p, 1)["get/accepted"];
    assert_eq!(
        (&g["state"]["delta"], &g["version"]),
        (&json!({"setpoint": 21}), &json!(4))
    );
    // It applies it and reports, with the version it holds: in sync, no delta.
    send(
        &mut c,
        &p,
        "update",
        &json!({"state": {"reported": {"setpoint": 21}}, "version": 4}),
    );
    let r = replies(&mut c, &p, 2);
    assert_eq!(r["update/accepted"]["version"], json!(5));
    assert!(!r.contains_key("update/delta"));
    c.assert_silent(QUIET);
}

/// A gateway (an ACL rule with `gateway = true`) reads and updates the shadows of the devices
/// behind it; a client without the right is refused even where the ACL lets it publish.
#[test]
fn a_gateway_updates_the_shadows_of_its_devices_and_others_may_not() {
    // `#` does not reach topics that begin with `$`.
    const ACL: &str = "[[mqtt.acl]]\nuser = \"*\"\npublish = [\"#\", \"$aws/things/#\"]\n\
                       subscribe = [\"#\", \"$aws/things/#\"]\n";
    for gateway in [true, false] {
        let server = Server::start_with("", &format!("{ACL}gateway = {gateway}\n"));
        let mut gw = any::Client::connect(Version::V5, server.port, "gw-1");
        let p = "$aws/things/child-1/shadow";
        for r in REPLIES {
            assert_eq!(gw.subscribe(&format!("{p}/{r}"), 1), Some(1));
        }
        send(
            &mut gw,
            p,
            "update",
            &json!({"state": {"reported": {"temp": 21}}, "clientToken": "gw"}),
        );
        if !gateway {
            let r = replies(&mut gw, p, 1);
            assert_eq!(r["update/rejected"]["code"], json!(403), "{r:?}");
            let (status, _, _) = common::http(
                server.http_port,
                "GET",
                "/api/v1/devices/child-1/shadow",
                &[],
                b"",
            );
            assert_eq!(status, 404, "nothing was written");
            continue;
        }
        let r = replies(&mut gw, p, 2);
        assert_eq!(r["update/accepted"]["clientToken"], json!("gw"));
        send(&mut gw, p, "get", &json!({}));
        let r = replies(&mut gw, p, 1);
        assert_eq!(r["get/accepted"]["state"]["reported"], json!({"temp": 21}));
        let rows = query(
            server.http_port,
            "SELECT device_id, version, reported FROM iot.shadows",
        );
        assert_eq!(
            rows,
            json!([{"device_id": "child-1", "version": 1, "reported": "{\"temp\":21}"}])
        );
    }
}

/// A device offline (persistent session) while desired changes three times gets one delta
/// with the latest state when it comes back; the documents stream keeps every change.
#[test]
fn an_offline_persistent_session_gets_one_delta_with_the_latest_state() {
    let server = Server::start();
    for (n, v) in Version::ALL.into_iter().enumerate() {
        let thing = format!("heater-{n}");
        let p = format!("$aws/things/{thing}/shadow/update");
        let topics = [format!("{p}/delta"), format!("{p}/documents")];
        let (mut c, _) = any::Client::connect_persistent(v, server.port, &thing);
        for t in &topics {
            assert_eq!(c.subscribe(t, 1), Some(1));
        }
        c.disconnect();
        for (level, mode) in [(1, "eco"), (2, "eco"), (3, "boost")] {
            let body = json!({"state": {"desired": {"level": level, "mode": mode}}});
            let (status, _, b) = common::http(
                server.http_port,
                "POST",
                &format!("/api/v1/devices/{thing}/shadow"),
                &[],
                body.to_string().as_bytes(),
            );
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
        }
        let (mut c, present) = any::Client::connect_persistent(v, server.port, &thing);
        assert!(present);
        let got: Vec<(String, Value)> = (0..4)
            .map(|_| {
                let m = c.recv();
                (m.topic, serde_json::from_slice(&m.payload).unwrap())
            })
            .collect();
        c.assert_silent(QUIET);
        let deltas: Vec<&Value> = got
            .iter()
            .filter(|(t, _)| t == &topics[0])
            .map(|(_, d)| d)
            .collect();
        assert_eq!(deltas.len(), 1, "{v:?}: {got:?}");
        assert_eq!(deltas[0]["state"], json!({"level": 3, "mode": "boost"}));
        assert_eq!(deltas[0]["version"], json!(3));
        let versions: Vec<&Value> = got
            .iter()
            .filter(|(t, _)| t == &topics[1])
            .map(|(_, d)| &d["current"]["version"])
            .collect();
        assert_eq!(versions, [&json!(1), &json!(2), &json!(3)], "{v:?}");
    }
}

/// `/update/documents` is made only while someone listens: a client that subscribes between two
/// updates of the same shadow gets the second one's documents.
#[test]
fn documents_follow_subscriptions_made_between_updates() {
    let server = Server::start();
    let thing = "meter-1";
    let p = format!("$aws/things/{thing}/shadow");
    let mut c = any::Client::connect(Version::V5, server.port, thing);
    assert_eq!(c.subscribe(&format!("{p}/update/accepted"), 1), Some(1));
    let update = |c: &mut any::Client, n: u64| {
        send(c, &p, "update", &json!({"state": {"reported": {"n": n}}}));
    };
    update(&mut c, 1);
    assert_eq!(
        replies(&mut c, &p, 1)["update/accepted"]["version"],
        json!(1)
    );
    // A watcher subscribes to the documents of every thing (an operator's dashboard).
    let mut watch = any::Client::connect(Version::V5, server.port, "dashboard");
    assert_eq!(
        watch.subscribe("$aws/things/+/shadow/update/documents", 1),
        Some(1)
    );
    update(&mut c, 2);
    assert_eq!(
        replies(&mut c, &p, 1)["update/accepted"]["version"],
        json!(2)
    );
    let d: Value = serde_json::from_slice(&watch.recv().payload).unwrap();
    assert_eq!(
        (
            &d["previous"]["version"],
            &d["current"]["state"]["reported"]["n"]
        ),
        (&json!(1), &json!(2))
    );
    watch.assert_silent(QUIET);
}
