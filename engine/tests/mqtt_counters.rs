//! The broker's counters, read in-process the way the HTTP layer will read them: connections,
//! messages and bytes in and out, and protocol errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mast_engine::config::MqttConfig;
use mast_engine::mqtt::MqttServer;

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn connect(port: u16, id: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 0];
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id.as_bytes());
    let mut p = vec![0x10, body.len() as u8];
    p.extend(body);
    s.write_all(&p).unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0x20, 2, 0, 0]);
    s
}

#[test]
fn counters_follow_connections_messages_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(mast_storage::Store::open(mast_storage::StoreConfig::new(dir.path())).unwrap());
    let cfg = MqttConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        reactors: 1,
        ..MqttConfig::default()
    };
    let meta = mast_meta::MetaStore::open(&dir.path().join(mast_meta::FILE)).unwrap();
    let server = MqttServer::start(
        cfg,
        Default::default(),
        Arc::clone(&store),
        Arc::new(meta),
        dir.path(),
    )
    .unwrap();
    let port = server.local_addr().port();
    let c = Arc::clone(&server.broker().counters);

    let mut sub = connect(port, "count-sub");
    sub.write_all(&[0x82, 8, 0, 1, 0, 3, b'c', b'/', b'#', 0])
        .unwrap();
    let mut suback = [0u8; 5];
    sub.read_exact(&mut suback).unwrap();
    assert_eq!(suback, [0x90, 3, 0, 1, 0]);
    let mut publisher = connect(port, "count-pub");
    assert_eq!(c.connections.load(Ordering::Relaxed), 2);
    assert_eq!(c.connections_total.load(Ordering::Relaxed), 2);

    // three QoS 0 messages of 7 bytes each on the wire (topic "c/x", payload "hi")
    for _ in 0..3 {
        publisher
            .write_all(&[0x30, 7, 0, 3, b'c', b'/', b'x', b'h', b'i'])
            .unwrap();
    }
    let mut got = [0u8; 27];
    sub.read_exact(&mut got).unwrap();
    wait_for("messages counted", || {
        c.messages_in.load(Ordering::Relaxed) == 3 && c.messages_out.load(Ordering::Relaxed) == 3
    });
    // in: two CONNECTs of 2 + 12 + 9 bytes, SUBSCRIBE (10), 3 PUBLISH (27);
    // out: two CONNACKs (4 each), SUBACK (5), 3 PUBLISH (27)
    wait_for("bytes counted", || {
        c.bytes_in.load(Ordering::Relaxed) == 2 * 23 + 10 + 27
            && c.bytes_out.load(Ordering::Relaxed) == 2 * 4 + 5 + 27
    });

    // a malformed packet (QoS 3 PUBLISH) closes that connection and is counted
    publisher.write_all(&[0x36, 3, 0, 1, b'x']).unwrap();
    let mut end = [0u8; 1];
    assert_eq!(publisher.read(&mut end).unwrap_or(0), 0, "closed");
    wait_for("protocol error counted", || {
        c.protocol_errors.load(Ordering::Relaxed) == 1 && c.connections.load(Ordering::Relaxed) == 1
    });
    assert_eq!(c.dropped_queue_full.load(Ordering::Relaxed), 0);
    drop(sub);
    server.shutdown();
}
