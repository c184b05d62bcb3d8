//! A metadata record that does not decode is reported — a log line, a counter in /metrics, a
//! row of `system.unreadable_records` — and left out, never silently skipped; the server runs
//! on with everything else.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Server, http};
use mast_meta::{MetaStore, Op, Writer, tables};

fn sql(server: &Server, q: &str) -> String {
    let (status, _, body) = http(
        server.http_port,
        "POST",
        "/api/v1/sql?format=csv",
        &[("content-type", "text/plain")],
        q.as_bytes(),
    );
    let text = String::from_utf8(body).unwrap();
    assert_eq!(status, 200, "{q}: {text}");
    text
}

#[test]
fn unreadable_records_are_counted_listed_and_left_out() {
    let mut server = Server::start();
    server.stop();
    {
        let meta = Arc::new(MetaStore::open(&server.data_dir().join(mast_meta::FILE)).unwrap());
        let w = Writer::start(meta);
        let seq = w.submit(vec![
            Op::Put {
                table: tables::DEVICES,
                key: b"bad-dev".to_vec(),
                value: b"\x01not json".to_vec(),
            },
            Op::Put {
                table: tables::MQTT_SESSIONS,
                key: b"bad-sess".to_vec(),
                value: vec![9, 4, 0, 0],
            },
        ]);
        assert!(w.wait(seq, Duration::from_secs(10)));
        w.close();
    }
    server.restart();

    let (status, _, body) = http(server.http_port, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    let metrics = String::from_utf8(body).unwrap();
    assert!(
        metrics.contains("\nmast_meta_unreadable_records_total 2\n"),
        "{metrics}"
    );
    assert_eq!(
        sql(
            &server,
            "SELECT table_name, key, about FROM system.unreadable_records ORDER BY key"
        ),
        "table_name,key,about\n\
         devices,bad-dev,devices: device record\n\
         mqtt_sessions,bad-sess,broker: persistent session\n"
    );
    let reasons = sql(
        &server,
        "SELECT reason FROM system.unreadable_records ORDER BY key",
    );
    assert!(reasons.contains("not a device record"), "{reasons}");
    assert!(reasons.contains("not a session record"), "{reasons}");
    assert_eq!(
        sql(&server, "SELECT count(*) AS n FROM iot.devices"),
        "n\n0\n",
        "the unreadable device is left out"
    );
    assert!(server.log().contains("unreadable metadata record"));
}
