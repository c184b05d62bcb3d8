//! Presence end to end: every connect and every end of a connection is a row of
//! `iot.device_events`, and the metadata store's `devices` table holds each client's last state,
//! through normal and abrupt disconnects, session takeover, a clean stop and a `kill -9`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod ingest_support;
mod mqtt_support;

use std::time::Duration;

use common::Server;
use ingest_support::{Row, Stored, T0, Value, b, f, int, publish_ok, row, s, t, time, without};
use mast_storage::now_ns;
use mqtt_support::{WAIT, hash_password, v5, v311};

/// `iot.device_events` rows of one client, each checked for a time within its window and a
/// loopback address, and returned without those two columns.
fn events(stored: &Stored, client: &str, windows: &[(i64, i64)]) -> Vec<Row> {
    let rows = stored.device_rows("iot.device_events", client);
    assert_eq!(rows.len(), windows.len(), "{client}: {rows:#?}");
    rows.iter()
        .zip(windows)
        .map(|(r, (lo, hi))| {
            assert!(
                (*lo..=*hi).contains(&time(r)),
                "{client}: event time {} not within [{lo}, {hi}]: {r:?}",
                time(r)
            );
            match r.get("address") {
                Some(Value::Str(a)) => assert!(a.starts_with("127.0.0.1:"), "{a}"),
                other => panic!("address {other:?}"),
            }
            without(r, &["time", "address"])
        })
        .collect()
}

fn connected(client: &str, protocol: &str, user: Option<&str>) -> Row {
    let mut r = row(&[
        ("device_id", s(client)),
        ("event", s("connected")),
        ("protocol", s(protocol)),
        ("clean_start", b(true)),
        ("keep_alive_secs", int(30)),
    ]);
    if let Some(u) = user {
        r.insert("username".into(), s(u));
    }
    // How it authenticated: the user's password, or nothing (anonymous on loopback).
    let identity = if user.is_some() {
        "password"
    } else {
        "anonymous"
    };
    r.insert("identity".into(), s(identity));
    r
}

fn disconnected(client: &str, protocol: &str, user: Option<&str>, reason: &str) -> Row {
    let mut r = row(&[
        ("device_id", s(client)),
        ("event", s("disconnected")),
        ("protocol", s(protocol)),
        ("reason", s(reason)),
    ]);
    if let Some(u) = user {
        r.insert("username".into(), s(u));
    }
    r
}

/// A `devices` record: connected_at within `conn`, disconnected_at within `disc`.
fn assert_record(
    rec: &serde_json::Value,
    client: &str,
    protocol: &str,
    user: Option<&str>,
    reason: &str,
    conn: (i64, i64),
    disc: (i64, i64),
) {
    assert_eq!(rec["device_id"], client, "{rec}");
    assert_eq!(rec["connected"], false, "{rec}");
    assert_eq!(rec["protocol"], protocol, "{rec}");
    assert_eq!(rec["username"].as_str(), user, "{rec}");
    assert_eq!(rec["disconnect_reason"], reason, "{rec}");
    assert!(
        rec["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{rec}"
    );
    let at = |k: &str| rec[k].as_i64().unwrap_or_else(|| panic!("{k} in {rec}"));
    assert!((conn.0..=conn.1).contains(&at("connected_at")), "{rec}");
    assert!((disc.0..=disc.1).contains(&at("disconnected_at")), "{rec}");
}

#[test]
fn presence_rows_and_device_records_follow_connects_and_disconnects() {
    let hash = hash_password("pw");
    let mut server = Server::start_with(
        "allow_anonymous = true",
        &format!("[[mqtt.users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\n"),
    );
    let t0 = now_ns();
    let mut o = v5::options(server.port, "pres-v5");
    o.set_credentials("alice", "pw");
    let c5 = v5::Client::connect_with(o);
    let c3 = v311::Client::connect(server.port, "pres-v311");
    let stay = v5::Client::connect(server.port, "pres-stay");
    let t1 = now_ns();
    c5.disconnect();
    c3.drop_abruptly();
    let mut first = v5::Client::connect(server.port, "pres-take");
    let t2 = now_ns();
    let _second = v5::Client::connect(server.port, "pres-take");
    first.wait_end(WAIT);
    // Let the lost connection be noticed before stopping.
    std::thread::sleep(Duration::from_millis(300));
    let t3 = now_ns();
    assert_eq!(server.stop(), Some(0));
    let t4 = now_ns();
    drop(stay);

    let stored = Stored::open(&server.data_dir());
    let user = Some("alice");
    assert_eq!(
        events(&stored, "pres-v5", &[(t0, t1), (t1, t2)]),
        [
            connected("pres-v5", "5.0", user),
            disconnected("pres-v5", "5.0", user, "client disconnected"),
        ]
    );
    assert_eq!(
        events(&stored, "pres-v311", &[(t0, t1), (t1, t3)]),
        [
            connected("pres-v311", "3.1.1", None),
            disconnected("pres-v311", "3.1.1", None, "connection lost"),
        ]
    );
    assert_eq!(
        events(&stored, "pres-stay", &[(t0, t1), (t3, t4)]),
        [
            connected("pres-stay", "5.0", None),
            disconnected("pres-stay", "5.0", None, "server shutting down"),
        ]
    );
    // The second connection's row and the end of the first may be written in either order.
    let mut take = events(
        &stored,
        "pres-take",
        &[(t1, t2), (t2, t3), (t2, t3), (t3, t4)],
    );
    take[1..3].sort_by_key(|r| format!("{r:?}"));
    let mut middle = [
        connected("pres-take", "5.0", None),
        disconnected("pres-take", "5.0", None, "session taken over"),
    ];
    middle.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(take[0], connected("pres-take", "5.0", None));
    assert_eq!(&take[1..3], &middle[..]);
    assert_eq!(
        take[3],
        disconnected("pres-take", "5.0", None, "server shutting down")
    );
    let devices = stored.devices();
    assert_eq!(
        devices.keys().collect::<Vec<_>>(),
        ["pres-stay", "pres-take", "pres-v311", "pres-v5"]
    );
    assert_record(
        &devices["pres-v5"],
        "pres-v5",
        "5.0",
        user,
        "client disconnected",
        (t0, t1),
        (t1, t2),
    );
    assert_record(
        &devices["pres-v311"],
        "pres-v311",
        "3.1.1",
        None,
        "connection lost",
        (t0, t1),
        (t1, t3),
    );
    assert_record(
        &devices["pres-stay"],
        "pres-stay",
        "5.0",
        None,
        "server shutting down",
        (t0, t1),
        (t3, t4),
    );
    // The record belongs to the connection that took the session over.
    assert_record(
        &devices["pres-take"],
        "pres-take",
        "5.0",
        None,
        "server shutting down",
        (t2, t3),
        (t3, t4),
    );
}

#[test]
fn after_kill_9_and_restart_connected_devices_are_recorded_as_disconnected_by_the_restart() {
    let mut server = Server::start();
    let t0 = now_ns();
    let mut c = v5::Client::connect(server.port, "crash-dev");
    // The ack of a durable write of the same shard comes after the presence row is written.
    publish_ok(
        &mut c,
        "devices/crash-dev/telemetry",
        br#"{"ts": 1700000000000, "values": {"v": 1}}"#,
    );
    let t1 = now_ns();
    // The device record is written by the persist thread; give it time to commit.
    std::thread::sleep(Duration::from_millis(500));
    server.restart_after_kill();
    let t2 = now_ns();
    c.wait_end(WAIT);
    let mut c = v5::Client::connect(server.port, "watcher");
    c.subscribe("x", v5::QoS::AtMostOnce);
    let t3 = now_ns();
    assert_eq!(server.stop(), Some(0));
    let t4 = now_ns();
    let stored = Stored::open(&server.data_dir());
    assert_eq!(
        events(&stored, "crash-dev", &[(t0, t1), (t1, t3)]),
        [
            connected("crash-dev", "5.0", None),
            disconnected("crash-dev", "5.0", None, "server restart"),
        ]
    );
    assert_record(
        &stored.devices()["crash-dev"],
        "crash-dev",
        "5.0",
        None,
        "server restart",
        (t0, t1),
        (t1, t3),
    );
    assert_record(
        &stored.devices()["watcher"],
        "watcher",
        "5.0",
        None,
        "server shutting down",
        (t2, t3),
        (t3, t4),
    );
    assert_eq!(
        stored.rows("telemetry"),
        [row(&[
            ("time", t(T0)),
            ("device_id", s("crash-dev")),
            ("v", f(1.0))
        ])]
    );
}
