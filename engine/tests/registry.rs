//! The device registry against the real binary: devices from MQTT and from REST, profiles,
//! merge patches, pages, static and dynamic groups, bearer-token roles, fleet-wide desired
//! changes, `iot.devices` in SQL (joined with shadows and telemetry), `kill -9`, and the
//! `mast devices` command line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod mqtt_support;

use common::Server;
use mqtt_support::any::{self, Version};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "reader-token-0123456789";

/// One REST call with `token` (if any): status and JSON body (`null` for none).
fn call(
    port: u16,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    if let Some(a) = auth.as_deref() {
        headers.push(("authorization", a));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let (status, _, b) = common::http(port, method, path, &headers, body.as_bytes());
    (status, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn sql(port: u16, q: &str) -> Value {
    let (status, v) = call(port, None, "POST", "/api/v1/sql", Some(json!({ "sql": q })));
    assert_eq!(status, 200, "{v}");
    v
}

/// What `f` gives once it gives something (the presence record commits just after CONNACK).
fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = std::time::Instant::now();
    loop {
        if let Some(x) = f() {
            return x;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "never happened"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn devices_from_mqtt_and_rest_with_profiles_pages_and_groups() {
    let mut server = Server::start();
    let port = server.http_port;
    let rest = |m: &str, p: &str, b: Option<Value>| call(port, None, m, p, b);

    // A device that connects is in the registry, created on its first connect.
    let live = any::Client::connect(Version::V5, server.port, "sensor-1");
    let d = eventually(|| {
        let (status, d) = rest("GET", "/api/v1/devices/sensor-1", None);
        (status == 200).then_some(d)
    });
    assert_eq!(
        (&d["connected"], &d["protocol"]),
        (&json!(true), &json!("5.0"))
    );
    assert!(d["created_at"].as_str().unwrap().ends_with('Z'), "{d}");
    assert_eq!((&d["tags"], &d["groups"]), (&json!({}), &json!([])));

    // One created through the API, never connected.
    let pump = json!({"device_type": "pump", "hardware_revision": "r2",
                      "tags": {"site": "plant-7", "line": 3}});
    let (status, d) = rest("PUT", "/api/v1/devices/pump-1", Some(pump.clone()));
    assert_eq!(status, 201, "{d}");
    assert_eq!(
        (&d["connected"], &d["address"], &d["tags"]["site"]),
        (&json!(false), &Value::Null, &json!("plant-7"))
    );
    let created = d["created_at"].clone();
    assert_eq!(
        rest("PUT", "/api/v1/devices/pump-1", Some(pump)).0,
        200,
        "replaced, not created"
    );
    for (id, t, site) in [
        ("pump-2", "pump", "plant-9"),
        ("valve-1", "valve", "plant-7"),
    ] {
        let body = json!({"device_type": t, "tags": {"site": site}});
        assert_eq!(
            rest("PUT", &format!("/api/v1/devices/{id}"), Some(body)).0,
            201
        );
    }

    // PATCH is a merge patch: tags merge key by key, null removes, absent keeps.
    let (status, d) = rest(
        "PATCH",
        "/api/v1/devices/pump-1",
        Some(json!({"hardware_revision": null, "tags": {"line": null, "loc": {"room": 2}}})),
    );
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["tags"], json!({"site": "plant-7", "loc": {"room": 2}}));
    assert_eq!(
        (&d["device_type"], &d["hardware_revision"]),
        (&json!("pump"), &Value::Null)
    );
    assert_eq!(d["created_at"], created, "a write keeps the creation time");

    // Refusals, each with its status and code.
    for (method, path, body, status, code) in [
        (
            "PATCH",
            "/api/v1/devices/pump-1",
            json!({"colour": "red"}),
            400,
            "bad_request",
        ),
        (
            "PATCH",
            "/api/v1/devices/pump-1",
            json!(["pump", null]),
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/api/v1/devices/new-one",
            json!([]),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/api/v1/shadows/desired",
            json!([["x"], null, null]),
            400,
            "bad_request",
        ),
        (
            "PATCH",
            "/api/v1/devices/pump-1",
            json!({"groups": ["no such"]}),
            400,
            "bad_request",
        ),
        (
            "PATCH",
            "/api/v1/devices/pump-1",
            json!({"groups": ["nowhere"]}),
            404,
            "not_found",
        ),
        (
            "PATCH",
            "/api/v1/devices/pump-1",
            json!({"tags": {"a": "x".repeat(9000)}}),
            413,
            "too_large",
        ),
        ("PUT", "/api/v1/devices/a+b", json!({}), 400, "bad_request"),
        (
            "GET",
            "/api/v1/devices/nobody",
            Value::Null,
            404,
            "not_found",
        ),
        (
            "GET",
            "/api/v1/devices?limit=0",
            Value::Null,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/devices?colour=red",
            Value::Null,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/api/v1/devices?group=nowhere",
            Value::Null,
            404,
            "not_found",
        ),
        (
            "PUT",
            "/api/v1/groups/bad",
            json!({"where": "1 = 1; DROP TABLE x"}),
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/api/v1/groups/bad",
            json!({"where": "no_such_column = 1"}),
            400,
            "bad_sql",
        ),
        (
            "PUT",
            "/api/v1/groups/bad",
            json!({"where": "true", "devices": []}),
            400,
            "bad_request",
        ),
    ] {
        let b = (!body.is_null()).then_some(body);
        let (s, e) = rest(method, path, b);
        assert_eq!(
            (s, e["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {e}"
        );
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
    }
    let (_, d) = rest("GET", "/api/v1/devices/pump-1", None);
    assert_eq!(
        d["tags"],
        json!({"site": "plant-7", "loc": {"room": 2}}),
        "refusals changed nothing"
    );

    // Pages in id order; `next` is where the next page starts.
    let mut seen = Vec::new();
    let mut path = "/api/v1/devices?limit=2".to_owned();
    loop {
        let (status, page) = rest("GET", &path, None);
        assert_eq!(status, 200, "{page}");
        assert!(ids(&page).len() <= 2);
        seen.extend(ids(&page));
        match page["next"].as_str() {
            Some(n) => path = format!("/api/v1/devices?limit=2&after={n}"),
            None => break,
        }
    }
    assert_eq!(seen, ["pump-1", "pump-2", "sensor-1", "valve-1"]);
    let (_, page) = rest("GET", "/api/v1/devices?type=pump", None);
    assert_eq!(ids(&page), ["pump-1", "pump-2"]);

    // A static group: members listed, then one added and one taken out.
    let (status, g) = rest(
        "PUT",
        "/api/v1/groups/north",
        Some(json!({"description": "north wing", "devices": ["pump-1", "sensor-1"]})),
    );
    assert_eq!(
        (status, &g["kind"], &g["device_count"]),
        (201, &json!("static"), &json!(2)),
        "{g}"
    );
    let (status, e) = rest(
        "PUT",
        "/api/v1/groups/north",
        Some(json!({"devices": ["ghost"]})),
    );
    assert_eq!(status, 404, "{e}");
    assert_eq!(
        rest("PUT", "/api/v1/groups/north/devices/valve-1", None).0,
        200
    );
    assert_eq!(
        rest("DELETE", "/api/v1/groups/north/devices/sensor-1", None).0,
        204
    );
    let (_, page) = rest("GET", "/api/v1/devices?group=north", None);
    assert_eq!(ids(&page), ["pump-1", "valve-1"]);

    // A dynamic group: whoever its predicate over iot.devices holds for, tags included.
    let (status, g) = rest(
        "PUT",
        "/api/v1/groups/plant-7-pumps",
        Some(json!({"where": "device_type = 'pump' AND json_get_str(tags, 'site') = 'plant-7'"})),
    );
    assert_eq!(
        (status, &g["kind"], &g["device_count"]),
        (201, &json!("dynamic"), &json!(1)),
        "{g}"
    );
    let (_, page) = rest("GET", "/api/v1/devices?group=plant-7-pumps", None);
    assert_eq!(ids(&page), ["pump-1"]);
    let (_, d) = rest("GET", "/api/v1/devices/pump-1", None);
    assert_eq!(
        (&d["groups"], &d["dynamic_groups"]),
        (&json!(["north"]), &json!(["plant-7-pumps"]))
    );
    let (status, e) = rest("PUT", "/api/v1/groups/plant-7-pumps/devices/pump-2", None);
    assert_eq!(
        (status, &e["code"]),
        (409, &json!("conflict")),
        "a dynamic group has no listed members"
    );
    let (status, e) = rest(
        "PUT",
        "/api/v1/groups/plant-7-pumps",
        Some(json!({"description": "x"})),
    );
    assert_eq!(status, 409, "a group stays dynamic: {e}");
    rest(
        "PATCH",
        "/api/v1/devices/pump-2",
        Some(json!({"tags": {"site": "plant-7"}})),
    );
    let (_, page) = rest("GET", "/api/v1/devices?group=plant-7-pumps", None);
    assert_eq!(
        ids(&page),
        ["pump-1", "pump-2"],
        "membership follows the tags"
    );
    let (_, list) = rest("GET", "/api/v1/groups", None);
    let names: Vec<&str> = list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["north", "plant-7-pumps"]);

    // The same in SQL.
    let rows = sql(
        port,
        "SELECT device_id, device_type, json_get_str(tags, 'site') AS site, groups, connected, \
         created_at IS NOT NULL AS created FROM iot.devices WHERE array_has(groups, 'north') \
         ORDER BY device_id",
    );
    assert_eq!(
        rows,
        json!([
            {"device_id": "pump-1", "device_type": "pump", "site": "plant-7", "groups": ["north"],
             "connected": false, "created": true},
            {"device_id": "valve-1", "device_type": "valve", "site": "plant-7", "groups": ["north"],
             "connected": false, "created": true}
        ])
    );

    // A connected device cannot be deleted; a disconnected one goes with its shadow.
    let (status, e) = rest("DELETE", "/api/v1/devices/sensor-1", None);
    assert_eq!((status, &e["code"]), (409, &json!("conflict")), "{e}");
    let (status, _) = call(
        port,
        None,
        "POST",
        "/api/v1/devices/pump-2/shadow",
        Some(json!({"state": {"desired": {"speed": 3}}})),
    );
    assert_eq!(status, 200);
    assert_eq!(rest("DELETE", "/api/v1/devices/pump-2", None).0, 204);
    assert_eq!(rest("GET", "/api/v1/devices/pump-2", None).0, 404);
    assert_eq!(rest("GET", "/api/v1/devices/pump-2/shadow", None).0, 404);
    assert_eq!(rest("DELETE", "/api/v1/groups/north", None).0, 204);
    let (_, d) = rest("GET", "/api/v1/devices/pump-1", None);
    assert_eq!(d["groups"], json!([]), "a deleted group leaves its members");

    // All of it is durable: after kill -9 the registry reads back the same.
    live.disconnect();
    server.restart_after_kill();
    let (_, d) = rest("GET", "/api/v1/devices/pump-1", None);
    assert_eq!(d["tags"], json!({"site": "plant-7", "loc": {"room": 2}}));
    assert_eq!(d["created_at"], created);
    let (_, page) = rest("GET", "/api/v1/devices", None);
    assert_eq!(ids(&page), ["pump-1", "sensor-1", "valve-1"]);
    let (_, page) = rest("GET", "/api/v1/devices?group=plant-7-pumps", None);
    assert_eq!(ids(&page), ["pump-1"]);
}

#[test]
fn read_only_tokens_read_and_admin_tokens_write() {
    let server = Server::start_full(
        &format!("tokens = [\"{ADMIN}\"]\nread_tokens = [\"{READER}\"]"),
        "",
        "",
    );
    let port = server.http_port;
    let body = Some(json!({"device_type": "pump"}));
    let (status, e) = call(port, None, "PUT", "/api/v1/devices/p", body.clone());
    assert_eq!((status, &e["code"]), (401, &json!("unauthorized")));
    let (status, _) = call(
        port,
        Some("wrong-token-0123456789"),
        "GET",
        "/api/v1/devices",
        None,
    );
    assert_eq!(status, 401);
    let (status, e) = call(port, Some(READER), "PUT", "/api/v1/devices/p", body.clone());
    assert_eq!((status, &e["code"]), (403, &json!("forbidden")), "{e}");
    for (m, p) in [
        ("POST", "/api/v1/shadows/desired"),
        ("POST", "/api/v1/devices/p/shadow"),
        ("DELETE", "/api/v1/groups/g"),
        ("PATCH", "/api/v1/devices/p"),
    ] {
        assert_eq!(
            call(port, Some(READER), m, p, Some(json!({}))).0,
            403,
            "{m} {p}"
        );
    }
    assert_eq!(
        call(port, Some(ADMIN), "PUT", "/api/v1/devices/p", body).0,
        201
    );
    let (status, d) = call(port, Some(READER), "GET", "/api/v1/devices/p", None);
    assert_eq!((status, &d["device_type"]), (200, &json!("pump")));
    let (status, rows) = call(
        port,
        Some(READER),
        "POST",
        "/api/v1/sql",
        Some(json!({"sql": "SELECT device_type FROM iot.devices"})),
    );
    assert_eq!(
        (status, rows),
        (200, json!([{"device_type": "pump"}])),
        "SQL is reading"
    );
    assert_eq!(call(port, Some(READER), "GET", "/metrics", None).0, 200);
}

#[test]
fn a_fleet_wide_desired_change_reaches_each_device_by_the_shadow_rules() {
    let server = Server::start();
    let port = server.http_port;
    let rest = |m: &str, p: &str, b: Option<Value>| call(port, None, m, p, b);
    // Three lamps online, subscribed to their deltas; one offline; one of another type.
    let mut lamps = Vec::new();
    for id in ["lamp-1", "lamp-2", "lamp-3"] {
        let mut c = any::Client::connect(Version::V311, server.port, id);
        let t = format!("$aws/things/{id}/shadow/update/delta");
        assert_eq!(c.subscribe(&t, 1), Some(1));
        rest(
            "PATCH",
            &format!("/api/v1/devices/{id}"),
            Some(json!({"device_type": "lamp"})),
        );
        lamps.push(c);
    }
    rest(
        "PUT",
        "/api/v1/devices/lamp-4",
        Some(json!({"device_type": "lamp"})),
    );
    rest(
        "PUT",
        "/api/v1/devices/fan-1",
        Some(json!({"device_type": "fan"})),
    );
    // lamp-3 already has a version-2 shadow.
    for _ in 0..2 {
        let (s, _) = rest(
            "POST",
            "/api/v1/devices/lamp-3/shadow",
            Some(json!({"state": {"desired": {"x": 1}}})),
        );
        assert_eq!(s, 200);
    }
    for _ in 0..2 {
        let delta = lamps[2].recv();
        let d: Value = serde_json::from_slice(&delta.payload).unwrap();
        assert_eq!(d["state"], json!({"x": 1}));
    }

    let (status, r) = rest(
        "POST",
        "/api/v1/shadows/desired",
        Some(json!({
            "where": "device_type = 'lamp'",
            "devices": ["ghost"],
            "desired": {"brightness": 80, "schedule": {"on": "18:00"}},
            "clientToken": "fleet-7"
        })),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (&r["targeted"], &r["accepted"], &r["rejected"]),
        (&json!(5), &json!(4), &json!(1)),
        "{r}"
    );
    let by_id = |id: &str| {
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["device_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("lamp-1")["version"], json!(1));
    assert_eq!(
        by_id("lamp-3")["version"],
        json!(3),
        "merged into the existing shadow"
    );
    assert_eq!(
        by_id("lamp-4")["version"],
        json!(1),
        "an offline device's shadow waits for it"
    );
    assert_eq!(by_id("ghost")["status"], json!(404));
    for c in &mut lamps {
        let m = c.recv();
        let d: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(d["state"]["brightness"], json!(80), "{d}");
        assert_eq!(d["state"]["schedule"], json!({"on": "18:00"}));
    }
    let (_, s) = rest("GET", "/api/v1/devices/lamp-3/shadow", None);
    assert_eq!(
        s["state"]["desired"],
        json!({"x": 1, "brightness": 80, "schedule": {"on": "18:00"}})
    );
    assert_eq!(
        rest("GET", "/api/v1/devices/fan-1/shadow", None).0,
        404,
        "not targeted"
    );

    // Every device's change is in the history, as the fleet's.
    let rows = sql(
        port,
        "SELECT device_id, version, source, client_token FROM iot.shadow_history \
         WHERE source = 'fleet' ORDER BY device_id",
    );
    assert_eq!(
        rows,
        json!([
            {"device_id": "lamp-1", "version": 1, "source": "fleet", "client_token": "fleet-7"},
            {"device_id": "lamp-2", "version": 1, "source": "fleet", "client_token": "fleet-7"},
            {"device_id": "lamp-3", "version": 3, "source": "fleet", "client_token": "fleet-7"},
            {"device_id": "lamp-4", "version": 1, "source": "fleet", "client_token": "fleet-7"}
        ])
    );
    // A document the rules refuse is refused per device, and nothing is written.
    let (status, r) = rest(
        "POST",
        "/api/v1/shadows/desired",
        Some(
            json!({"devices": ["lamp-1"], "desired": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}),
        ),
    );
    assert_eq!(
        (status, &r["accepted"], &r["results"][0]["status"]),
        (200, &json!(0), &json!(400)),
        "{r}"
    );
    for bad in [
        json!({"desired": {"a": 1}}),
        json!({"devices": ["lamp-1"], "desired": 3}),
    ] {
        assert_eq!(rest("POST", "/api/v1/shadows/desired", Some(bad)).0, 400);
    }
}

/// "Average temperature of the devices whose reported firmware is 2.1, per site tag": one
/// query over telemetry, `iot.shadows` (what devices report) and `iot.devices` (what operators
/// tag).
#[test]
fn telemetry_shadows_and_registry_tags_join_in_one_query() {
    let server = Server::start();
    for (id, fw, site, temps) in [
        ("t-1", "2.1", "plant-7", [20.0, 22.0]),
        ("t-2", "2.1", "plant-7", [30.0, 32.0]),
        ("t-3", "2.0", "plant-7", [90.0, 90.0]),
        ("t-4", "2.1", "plant-9", [10.0, 12.0]),
    ] {
        let mut c = any::Client::connect(Version::V5, server.port, id);
        let acc = format!("$aws/things/{id}/shadow/update/accepted");
        assert_eq!(c.subscribe(&acc, 1), Some(1));
        let doc = json!({"state": {"reported": {"fw": {"version": fw}}}});
        c.publish(
            &format!("$aws/things/{id}/shadow/update"),
            1,
            false,
            doc.to_string().as_bytes(),
        );
        c.recv();
        for t in temps {
            c.publish(
                &format!("devices/{id}/telemetry"),
                1,
                false,
                json!({"temp": t}).to_string().as_bytes(),
            );
        }
        let (s, _) = call(
            server.http_port,
            None,
            "PATCH",
            &format!("/api/v1/devices/{id}"),
            Some(json!({"tags": {"site": site}})),
        );
        assert_eq!(s, 200);
    }
    let rows = sql(
        server.http_port,
        "SELECT json_get_str(d.tags, 'site') AS site, avg(t.temp) AS avg_temp, \
         count(DISTINCT t.device_id) AS devices \
         FROM telemetry t \
         JOIN iot.shadows s ON s.device_id = t.device_id AND s.shadow_name = '' \
         JOIN iot.devices d ON d.device_id = t.device_id \
         WHERE json_get_str(s.reported, 'fw.version') = '2.1' \
         GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(
        rows,
        json!([
            {"site": "plant-7", "avg_temp": 26.0, "devices": 2},
            {"site": "plant-9", "avg_temp": 11.0, "devices": 1}
        ])
    );
    // The registry reads the firmware from the classic shadow too.
    let rows = sql(
        server.http_port,
        "SELECT firmware_version AS fw, count(*) AS n FROM iot.devices GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(rows, json!([{"fw": "2.0", "n": 1}, {"fw": "2.1", "n": 3}]));
    // The history's documents are JSON text the same functions read.
    let rows = sql(
        server.http_port,
        "SELECT device_id, json_get_int(current, 'reported', 'fw') AS none, \
         json_contains(current, 'reported.fw.version') AS has_fw \
         FROM iot.shadow_history WHERE device_id = 't-3'",
    );
    assert_eq!(
        rows,
        json!([{"device_id": "t-3", "none": null, "has_fw": true}])
    );
}

#[test]
fn the_command_line_lists_shows_tags_and_groups_devices() {
    let server = Server::start_full(&format!("tokens = [\"{ADMIN}\"]"), "", "");
    let port = server.http_port;
    for id in ["cli-a", "cli-b"] {
        let (s, _) = call(
            port,
            Some(ADMIN),
            "PUT",
            &format!("/api/v1/devices/{id}"),
            Some(json!({"device_type": "meter"})),
        );
        assert_eq!(s, 201);
    }
    assert_eq!(
        call(
            port,
            Some(ADMIN),
            "PUT",
            "/api/v1/groups/roof",
            Some(json!({}))
        )
        .0,
        201
    );
    let mast = |args: &[&str], token: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_mast"));
        c.arg("devices")
            .args(args)
            .arg("--server")
            .arg(format!("http://127.0.0.1:{port}"));
        c.env_remove("MAST_TOKEN");
        if let Some(t) = token {
            c.env("MAST_TOKEN", t);
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, out, err) = mast(
        &["tag", "cli-a", "site=plant-7", "line=3", "loc.room=\"2b\""],
        Some(ADMIN),
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.trim(),
        r#"{"line":3,"loc":{"room":"2b"},"site":"plant-7"}"#
    );
    let (code, _, err) = mast(&["tag", "cli-a", "--remove", "line"], Some(ADMIN));
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = mast(&["group", "cli-b", "--add", "roof"], Some(ADMIN));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(r#"["roof"]"#), "{out}");

    let (code, out, err) = mast(&["list", "--json"], Some(ADMIN));
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0]["tags"],
        json!({"loc": {"room": "2b"}, "site": "plant-7"})
    );
    assert_eq!(rows[1]["groups"], json!(["roof"]));
    let (code, out, _) = mast(&["list", "--group", "roof"], Some(ADMIN));
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one device: {out}");
    assert!(
        lines[0].starts_with("DEVICE_ID") && lines[1].starts_with("cli-b"),
        "{out}"
    );
    let (code, out, _) = mast(&["show", "cli-a"], Some(ADMIN));
    assert_eq!(code, Some(0));
    let d: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["device_type"], json!("meter"));

    // Errors are one line on stderr and exit status 1.
    let (code, _, err) = mast(&["show", "nobody"], Some(ADMIN));
    assert_eq!(code, Some(1));
    assert!(err.contains("404 not_found"), "{err}");
    let (code, _, err) = mast(&["list"], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("401 unauthorized"), "{err}");
}
