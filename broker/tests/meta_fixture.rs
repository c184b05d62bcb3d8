//! Records written by this version (tests/fixtures/meta-v1.txt, documented in
//! docs/formats/meta.md) are read back by the broker: a persistent session with its
//! subscription and queued message, a retained message; a record it cannot read is reported,
//! not restored and not silently skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Broker1, Device};
use mast_broker::config::MqttConfig;
use mast_meta::{Op, tables};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn records_of_this_version_are_restored_and_an_unreadable_one_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Broker1::writer(&dir);
    let ops: Vec<Op> = include_str!("fixtures/meta-v1.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Op::Put {
                table: tables::by_name(f[0]).unwrap(),
                key: hex(f[1]),
                value: hex(f[2]),
            }
        })
        .collect();
    assert_eq!(ops.len(), 4);
    let seq = writer.submit(ops);
    assert!(writer.wait(seq, common::WAIT));
    let store = std::sync::Arc::clone(writer.store());

    let b = Broker1::start_with(MqttConfig::default(), dir, writer);
    assert_eq!(b.broker().session_count(), 1, "fx-dev, not fx-bad");
    assert_eq!(b.broker().retained_count(), 1);
    assert_eq!(b.broker().unreadable_records(), 1);
    let bad = store.unreadable();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].table, tables::MQTT_SESSIONS);
    assert_eq!(bad[0].key, b"fx-bad");

    // The device comes back to its session: the queued message arrives, and the subscription
    // is still there (fx/# matches a new publish).
    let (dev, present) = Device::connect_with(b.port(), "fx-dev", false);
    assert!(present, "the restored session is present");
    let q = dev.next();
    assert_eq!(q.topic, "fx/queued");
    assert_eq!(&q.payload[..], b"q1");
    assert_eq!(q.qos, rumqttc::QoS::AtLeastOnce);
    let other = Device::connect(b.port(), "fx-other");
    other.publish("fx/live", b"now", rumqttc::QoS::AtLeastOnce);
    let live = dev.next();
    assert_eq!(
        (live.topic.as_str(), &live.payload[..]),
        ("fx/live", &b"now"[..])
    );

    // The retained message is replayed to a new subscriber, with its flag.
    other.subscribe("fx/retained");
    let r = other.next();
    assert_eq!(&r.payload[..], b"r1");
    assert!(r.retain);
}
