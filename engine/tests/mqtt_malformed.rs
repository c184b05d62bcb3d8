//! Malformed and out-of-order packets on raw sockets, before and after a valid CONNECT: each
//! connection is closed (MQTT 5 clients first get the DISCONNECT or CONNACK reason code), and
//! well-behaved clients on the same server do not notice. Packets that arrive in pieces are
//! waited for, not taken for malformed ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod mqtt_support;

use std::time::Duration;

use common::Server;
use mqtt_support::raw::{self, Got, Raw};
use mqtt_support::{QUIET, WAIT, v5};

/// Where the bad bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// As the first bytes of a connection.
    Fresh,
    /// After a successful 3.1.1 CONNECT.
    V311,
    /// After a successful 5.0 CONNECT.
    V5,
}

/// What the server must do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Close without sending anything.
    Silent,
    /// Send exactly this packet (first byte, body), then close.
    Packet(u8, Vec<u8>),
    /// MQTT 5: DISCONNECT with this reason code, then close.
    Disconnect(u8),
}

struct Case {
    name: &'static str,
    stage: Stage,
    bytes: Vec<u8>,
    expect: Expect,
}

const MAX_PACKET: usize = 1024;

fn cases() -> Vec<Case> {
    use Expect::*;
    use Stage::*;
    let v5_publish =
        |qos, id, topic: &[u8], props: &[u8]| raw::publish(true, qos, id, topic, props, b"p");
    let v311_publish = |qos, id, topic: &[u8]| raw::publish(false, qos, id, topic, &[], b"p");
    let mut v = Vec::new();
    let mut both = |name, v311: Vec<u8>, v5: Vec<u8>, reason| {
        v.push(Case {
            name,
            stage: V311,
            bytes: v311,
            expect: Silent,
        });
        v.push(Case {
            name,
            stage: V5,
            bytes: v5,
            expect: Disconnect(reason),
        });
    };
    both(
        "reserved packet type 0",
        vec![0x00, 0x00],
        vec![0x00, 0x00],
        0x81,
    );
    both(
        "SUBSCRIBE with fixed-header flags 0",
        {
            let mut s = raw::subscribe(false, 1, b"a/b", 0);
            s[0] = 0x80;
            s
        },
        {
            let mut s = raw::subscribe(true, 1, b"a/b", 0);
            s[0] = 0x80;
            s
        },
        0x81,
    );
    both(
        "remaining length in five bytes",
        vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        0x81,
    );
    both(
        "PUBLISH with QoS 3",
        {
            let mut p = v311_publish(1, 1, b"a/b");
            p[0] = 0x36;
            p
        },
        {
            let mut p = v5_publish(1, 1, b"a/b", &[]);
            p[0] = 0x36;
            p
        },
        0x81,
    );
    both(
        "wildcard in a PUBLISH topic",
        v311_publish(0, 0, b"a/+"),
        v5_publish(0, 0, b"a/+", &[]),
        0x90,
    );
    both(
        "topic that is not UTF-8",
        v311_publish(0, 0, &[b'a', 0xC3, 0x28]),
        v5_publish(0, 0, &[b'a', 0xC3, 0x28], &[]),
        0x81,
    );
    both(
        "packet above max_packet_size",
        raw::publish(false, 0, 0, b"big", &[], &[0; 2 * MAX_PACKET]),
        raw::publish(true, 0, 0, b"big", &[], &[0; 2 * MAX_PACKET]),
        0x95,
    );
    both(
        "second CONNECT",
        raw::connect(4, "again", 30, &[]),
        raw::connect(5, "again", 30, &[]),
        0x82,
    );
    both(
        "QoS 1 PUBLISH with packet id 0",
        v311_publish(1, 0, b"a/b"),
        v5_publish(1, 0, b"a/b", &[]),
        0x81,
    );
    both(
        "SUBSCRIBE without a topic filter",
        raw::packet(0x82, &[0x00, 0x01]),
        raw::packet(0x82, &[0x00, 0x01, 0x00]),
        0x82,
    );
    both(
        "UNSUBSCRIBE without a topic filter",
        raw::packet(0xA2, &[0x00, 0x01]),
        raw::packet(0xA2, &[0x00, 0x01, 0x00]),
        0x82,
    );
    both(
        "CONNACK from a client",
        vec![0x20, 0x02, 0x00, 0x00],
        vec![0x20, 0x03, 0x00, 0x00, 0x00],
        0x82,
    );
    both(
        "PINGREQ with a body",
        vec![0xC0, 0x01, 0x00],
        vec![0xC0, 0x01, 0x00],
        0x81,
    );
    v.push(Case {
        name: "property given twice (message expiry)",
        stage: V5,
        bytes: v5_publish(0, 0, b"a/b", &[0x02, 0, 0, 0, 9, 0x02, 0, 0, 0, 9]),
        expect: Disconnect(0x82),
    });
    v.push(Case {
        name: "unknown property identifier",
        stage: V5,
        bytes: v5_publish(0, 0, b"a/b", &[0x7F, 0]),
        expect: Disconnect(0x81),
    });
    v.push(Case {
        name: "subscription identifier from a client in PUBLISH",
        stage: V5,
        bytes: v5_publish(0, 0, b"a/b", &[0x0B, 0x01]),
        expect: Disconnect(0x82),
    });
    v.push(Case {
        name: "topic alias above the maximum",
        stage: V5,
        bytes: v5_publish(0, 0, b"a/b", &[0x23, 0xFF, 0xFF]),
        expect: Disconnect(0x94),
    });
    v.push(Case {
        name: "empty topic with an unknown topic alias",
        stage: V5,
        bytes: v5_publish(0, 0, b"", &[0x23, 0x00, 0x01]),
        expect: Disconnect(0x82),
    });
    v.push(Case {
        name: "empty topic without a topic alias",
        stage: V5,
        bytes: v5_publish(0, 0, b"", &[]),
        expect: Disconnect(0x82),
    });
    // Before CONNECT.
    v.push(Case {
        name: "PUBLISH before CONNECT",
        stage: Fresh,
        bytes: v5_publish(1, 1, b"a/b", &[]),
        expect: Silent,
    });
    // Read as MQTT 5 (the level is unknown before CONNECT) this one is also malformed; no
    // CONNACK either way (only an error in a CONNECT is answered).
    v.push(Case {
        name: "3.1.1 PUBLISH before CONNECT",
        stage: Fresh,
        bytes: v311_publish(0, 0, b"a/b"),
        expect: Silent,
    });
    v.push(Case {
        name: "PINGREQ before CONNECT",
        stage: Fresh,
        bytes: vec![0xC0, 0x00],
        expect: Silent,
    });
    v.push(Case {
        name: "reserved packet type 0 first",
        stage: Fresh,
        bytes: vec![0x00, 0x00],
        expect: Silent,
    });
    v.push(Case {
        name: "SUBSCRIBE with bad flags first",
        stage: Fresh,
        bytes: vec![0x80, 0x00],
        expect: Silent,
    });
    v.push(Case {
        name: "unknown protocol level",
        stage: Fresh,
        bytes: raw::connect(6, "future", 30, &[]),
        expect: Packet(0x20, vec![0x00, 0x01]),
    });
    v.push(Case {
        name: "protocol level 3 (MQTT 3.1)",
        stage: Fresh,
        bytes: raw::connect(3, "old", 30, &[]),
        expect: Packet(0x20, vec![0x00, 0x01]),
    });
    v.push(Case {
        name: "CONNECT with the reserved flag set (v5)",
        stage: Fresh,
        bytes: raw::connect_flags(5, 0x03, "r", 30, &[]),
        expect: Packet(0x20, vec![0x00, 0x81, 0x00]),
    });
    v.push(Case {
        name: "CONNECT with a property given twice (v5)",
        stage: Fresh,
        bytes: raw::connect(5, "p", 30, &[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 1]),
        expect: Packet(0x20, vec![0x00, 0x82, 0x00]),
    });
    v.push(Case {
        name: "3.1.1 CONNECT above max_packet_size",
        stage: Fresh,
        bytes: raw::connect(4, &"x".repeat(2 * MAX_PACKET), 30, &[]),
        expect: Silent,
    });
    v.push(Case {
        name: "CONNECT above max_packet_size",
        stage: Fresh,
        bytes: raw::connect(5, &"x".repeat(2 * MAX_PACKET), 30, &[]),
        expect: Packet(0x20, vec![0x00, 0x95, 0x00]),
    });
    v
}

fn run_case(port: u16, case: &Case) {
    let mut r = match case.stage {
        Stage::Fresh => Raw::open(port),
        Stage::V311 => Raw::connected(port, 4, "bad311", 30),
        Stage::V5 => Raw::connected(port, 5, "bad5", 30),
    };
    r.send(&case.bytes);
    let got = r.expect_closed(Duration::from_secs(2));
    let what = format!("{:?} / {}: got {got:?}", case.stage, case.name);
    match &case.expect {
        Expect::Silent => assert!(got.is_empty(), "{what}"),
        Expect::Packet(first, body) => assert_eq!(got, vec![(*first, body.clone())], "{what}"),
        Expect::Disconnect(reason) => {
            assert_eq!(got.len(), 1, "{what}");
            assert_eq!(raw::disconnect_reason(&got), Some(*reason), "{what}");
        }
    }
}

fn round_trip(sub: &mut v5::Client, publisher: &mut v5::Client, payload: &[u8]) {
    publisher.publish("ok/t", v5::QoS::AtLeastOnce, false, payload);
    let p = sub.recv();
    assert_eq!(
        (v5::topic(&p), &p.payload[..]),
        ("ok/t".to_owned(), payload)
    );
}

#[test]
fn malformed_packets_close_only_their_own_connection() {
    let mut server = Server::start_with(&format!("max_packet_size = {MAX_PACKET}"), "");
    let mut sub = v5::Client::connect(server.port, "good-sub");
    sub.subscribe("ok/#", v5::QoS::AtLeastOnce);
    let mut publisher = v5::Client::connect(server.port, "good-pub");
    round_trip(&mut sub, &mut publisher, b"before");
    for case in cases() {
        run_case(server.port, &case);
    }
    assert!(server.is_running());
    round_trip(&mut sub, &mut publisher, b"after");
    sub.assert_silent(Duration::from_millis(100));
}

#[test]
fn packets_split_across_writes_are_waited_for() {
    let server = Server::start();
    let mut r = Raw::open(server.port);
    let pause = || std::thread::sleep(Duration::from_millis(150));
    let connect = raw::connect(5, "slowpoke", 30, &[]);
    r.send(&connect[..1]);
    pause();
    r.send(&connect[1..7]);
    assert_eq!(
        r.read(Duration::from_millis(150)),
        Got::Timeout,
        "half a CONNECT: wait"
    );
    r.send(&connect[7..]);
    match r.read(WAIT) {
        Got::Packet(0x20, body) => assert_eq!(&body[..2], &[0, 0]),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // A SUBSCRIBE one byte at a time.
    for b in raw::subscribe(true, 1, b"split/#", 1) {
        r.send(&[b]);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(r.read(WAIT), Got::Packet(0x90, vec![0, 1, 0, 1]));
    // A PUBLISH whose remaining length takes two bytes, cut inside the length, then the tail
    // of it sent together with a whole PINGREQ and the first byte of another PINGREQ.
    let payload = vec![7u8; 300];
    let publish = raw::publish(true, 1, 9, b"split/t", &[], &payload);
    assert!(publish[1] & 0x80 != 0, "two-byte remaining length");
    r.send(&publish[..2]);
    pause();
    r.send(&publish[2..100]);
    assert_eq!(
        r.read(Duration::from_millis(150)),
        Got::Timeout,
        "part of a PUBLISH: wait"
    );
    let mut tail = publish[100..].to_vec();
    tail.extend_from_slice(&[0xC0, 0x00, 0xC0]);
    r.send(&tail);
    let mut got = Vec::new();
    while got.len() < 3 {
        match r.read(WAIT) {
            Got::Packet(first, body) => got.push((first, body)),
            other => panic!("after {got:?}: {other:?}"),
        }
    }
    got.sort_by_key(|(first, _)| *first);
    assert_eq!(got[0].0, 0x32, "own message back at QoS 1: {got:?}");
    assert!(got[0].1.ends_with(&payload));
    assert_eq!(
        (got[1].0, &got[1].1[..2]),
        (0x40, &[0, 9][..]),
        "PUBACK for id 9: {got:?}"
    );
    assert_eq!(got[2], (0xD0, Vec::new()), "PINGRESP");
    pause();
    r.send(&[0x00]);
    assert_eq!(
        r.read(WAIT),
        Got::Packet(0xD0, Vec::new()),
        "the second PINGREQ completed"
    );
    assert_eq!(r.read(QUIET), Got::Timeout, "still connected");
}

#[test]
fn a_malformed_v311_connect_is_not_answered_in_the_v5_format() {
    let server = Server::start();
    let mut r = Raw::open(server.port);
    r.send(&raw::connect_flags(4, 0x03, "reserved-flag", 30, &[]));
    assert_eq!(
        r.expect_closed(Duration::from_secs(2)),
        Vec::new(),
        "3.1.1: just closed"
    );
    let mut r = Raw::open(server.port);
    r.send(&raw::connect_flags(5, 0x03, "reserved-flag", 30, &[]));
    assert_eq!(
        r.expect_closed(Duration::from_secs(2)),
        vec![(0x20, vec![0x00, 0x81, 0x00])],
        "5.0: CONNACK 0x81"
    );
}
