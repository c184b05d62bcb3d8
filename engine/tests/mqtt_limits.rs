//! Limits end to end: keep-alive and CONNECT deadlines, and a subscriber that stops reading
//! while a publisher floods it (the server stays responsive and its memory bounded; with
//! `slow_subscriber = "disconnect"` the slow client is cut off).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod mqtt_support;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Server;
use mqtt_support::raw::{self, Got, Raw};
use mqtt_support::{WAIT, rss_bytes, v5};

#[test]
fn silent_client_is_closed_after_one_and_a_half_keep_alives() {
    let server = Server::start();
    for level in [4u8, 5] {
        let mut r = Raw::connected(server.port, level, "quiet", 1);
        let t0 = Instant::now();
        let got = r.expect_closed(Duration::from_secs(4));
        let after = t0.elapsed();
        if level == 4 {
            assert_eq!(got, Vec::new(), "3.1.1: closed without a packet");
        } else {
            assert_eq!(
                raw::disconnect_reason(&got),
                Some(0x8D),
                "keep alive timeout: {got:?}"
            );
        }
        assert!(
            after >= Duration::from_millis(1400) && after <= Duration::from_millis(3000),
            "level {level}: closed after {after:?} with keep alive 1 s"
        );
    }
}

#[test]
fn pings_keep_a_connection_alive() {
    let server = Server::start();
    let mut r = Raw::connected(server.port, 4, "pinger", 1);
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        r.send(&[0xC0, 0x00]);
        assert_eq!(r.read(WAIT), Got::Packet(0xD0, Vec::new()), "PINGRESP");
    }
}

#[test]
fn connection_without_connect_is_closed_after_the_connect_timeout() {
    let server = Server::start_with("connect_timeout_secs = 1", "");
    let mut r = Raw::open(server.port);
    let t0 = Instant::now();
    assert_eq!(r.expect_closed(Duration::from_secs(4)), Vec::new());
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t0.elapsed()
    );
}

const FLOOD: usize = 50_000;

/// A subscriber to `load/#` that reads its SUBACK and then nothing more.
fn stalled_subscriber(port: u16) -> Raw {
    let mut slow = Raw::connected(port, 5, "slow", 0);
    slow.send(&raw::subscribe(true, 1, b"load/#", 0));
    assert_eq!(slow.read(WAIT), Got::Packet(0x90, vec![0, 1, 0, 0]));
    slow
}

/// Publishes [`FLOOD`] QoS 0 messages of 1 KiB on a raw 3.1.1 connection while sampling the
/// server's resident memory; the highest sample.
fn flood(server: &Server) -> u64 {
    let mut publisher = Raw::connected(server.port, 4, "flood", 0);
    let one = raw::publish(false, 0, 0, b"load/x", &[], &[0x5a; 1024]);
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 500).collect();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            for _ in 0..FLOOD / 500 {
                publisher.stream.write_all(&batch).unwrap();
            }
            done.store(true, Ordering::SeqCst);
            publisher
        })
    };
    let pid = server.pid();
    let mut peak = rss_bytes(pid);
    let t0 = Instant::now();
    while !done.load(Ordering::SeqCst) {
        assert!(t0.elapsed() < Duration::from_secs(60), "publishing stalled");
        peak = peak.max(rss_bytes(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut publisher = writer.join().unwrap();
    // Everything written has been read and routed once the server answers a ping after it.
    publisher.send(&[0xC0, 0x00]);
    assert_eq!(
        publisher.read(Duration::from_secs(20)),
        Got::Packet(0xD0, Vec::new())
    );
    peak.max(rss_bytes(pid))
}

/// Another pair of clients still gets a message through.
fn assert_responsive(port: u16) {
    let t0 = Instant::now();
    let mut sub = v5::Client::connect(port, "probe-sub");
    sub.subscribe("probe/#", v5::QoS::AtLeastOnce);
    let mut publisher = v5::Client::connect(port, "probe-pub");
    publisher.publish("probe/x", v5::QoS::AtLeastOnce, false, b"still here");
    let p = sub.recv();
    assert_eq!(
        (v5::topic(&p), &p.payload[..]),
        ("probe/x".to_owned(), &b"still here"[..])
    );
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "round trip took {:?}",
        t0.elapsed()
    );
}

#[test]
fn slow_subscriber_loses_messages_but_the_server_stays_responsive_and_bounded() {
    let server = Server::start_with("max_queued_messages = 100\nmax_output_bytes = 65536", "");
    let mut slow = stalled_subscriber(server.port);
    let peak = flood(&server);
    assert!(
        peak < 200 * 1024 * 1024,
        "server RSS peaked at {} MiB",
        peak >> 20
    );
    assert_responsive(server.port);
    // The slow subscriber is still connected and gets what was buffered for it: a bounded
    // part of the flood, then nothing.
    let mut got = 0usize;
    loop {
        match slow.read(Duration::from_millis(500)) {
            Got::Packet(first, body) => {
                assert_eq!(first, 0x30, "QoS 0 PUBLISH");
                assert_eq!(body.len(), 2 + 6 + 1 + 1024);
                got += 1;
            }
            Got::Timeout => break,
            Got::Closed => panic!("the slow subscriber was disconnected under the drop policy"),
        }
    }
    assert!(
        got > 0 && got < FLOOD,
        "slow subscriber got {got} of {FLOOD}"
    );
}

#[test]
fn slow_subscriber_is_disconnected_under_the_disconnect_policy() {
    let server = Server::start_with(
        "max_queued_messages = 100\nmax_output_bytes = 65536\nslow_subscriber = \"disconnect\"",
        "",
    );
    let mut slow = stalled_subscriber(server.port);
    let peak = flood(&server);
    assert!(
        peak < 200 * 1024 * 1024,
        "server RSS peaked at {} MiB",
        peak >> 20
    );
    let before_close = slow.expect_closed(Duration::from_secs(5));
    assert!(
        before_close.len() < FLOOD,
        "closed after {} messages",
        before_close.len()
    );
    assert_responsive(server.port);
}

/// A subscriber that keeps reading is fed through backpressure, not drops: with a queue of only
/// 100 messages, a burst of 20,000 QoS 0 messages written at once by one publisher arrives whole
/// and in order, because the publisher is read more slowly while the subscriber's queue is more
/// than half full.
#[test]
fn a_live_subscriber_gets_a_burst_whole_because_the_publisher_is_slowed() {
    const BURST: usize = 20_000;
    let server = Server::start_with("max_queued_messages = 100", "");
    let mut sub = Raw::connected(server.port, 4, "steady", 0);
    sub.send(&raw::subscribe(false, 1, b"burst/#", 0));
    assert_eq!(sub.read(WAIT), Got::Packet(0x90, vec![0, 1, 0]));
    let mut publisher = Raw::connected(server.port, 4, "burst", 0);
    let mut wire = Vec::new();
    for i in 0..BURST as u32 {
        wire.extend(raw::publish(false, 0, 0, b"burst/x", &[], &i.to_be_bytes()));
    }
    let writer = std::thread::spawn(move || {
        publisher.stream.write_all(&wire).unwrap();
        publisher
    });
    let mut next = 0u32;
    while (next as usize) < BURST {
        match sub.read(Duration::from_secs(5)) {
            Got::Packet(0x30, body) => {
                let seq = u32::from_be_bytes(body[body.len() - 4..].try_into().unwrap());
                assert_eq!(seq, next, "messages arrive in order and none is missing");
                next += 1;
            }
            other => panic!("after {next} messages: {other:?}"),
        }
    }
    drop(writer.join().unwrap());
}

/// A client cannot grow the subscription trie without bound: past
/// `max_subscriptions_per_client` a new filter is refused with 0x97 (v5) / 0x80 (3.1.1), while
/// re-subscribing to a filter it already has still works.
#[test]
fn subscriptions_per_client_are_capped() {
    let server = Server::start_with("max_subscriptions_per_client = 3", "");
    let mut c = Raw::connected(server.port, 5, "many-subs", 0);
    for (id, filter, want) in [
        (1u16, &b"a/1"[..], 0x00u8),
        (2, b"a/2", 0x00),
        (3, b"a/3", 0x00),
        (4, b"a/4", 0x97),
        (5, b"a/1", 0x00),
    ] {
        c.send(&raw::subscribe(true, id, filter, 0));
        assert_eq!(
            c.read(WAIT),
            Got::Packet(0x90, vec![0, id as u8, 0, want]),
            "SUBSCRIBE {}",
            String::from_utf8_lossy(filter)
        );
    }
    let mut v3 = Raw::connected(server.port, 4, "many-subs-v3", 0);
    for (id, filter, want) in [
        (1u16, &b"b/1"[..], 0x00u8),
        (2, b"b/2", 0),
        (3, b"b/3", 0),
        (4, b"b/4", 0x80),
    ] {
        v3.send(&raw::subscribe(false, id, filter, 0));
        assert_eq!(v3.read(WAIT), Got::Packet(0x90, vec![0, id as u8, want]));
    }
}

/// A subscriber that does not acknowledge holds at most `max_inflight_messages` QoS 1 messages;
/// the rest wait in its (bounded) queue and flow as acknowledgements come back.
#[test]
fn inflight_messages_to_a_subscriber_are_capped() {
    let server = Server::start_with("max_inflight_messages = 5", "");
    let mut sub = Raw::connected(server.port, 4, "no-acks", 0);
    sub.send(&raw::subscribe(false, 1, b"q1/#", 1));
    assert_eq!(sub.read(WAIT), Got::Packet(0x90, vec![0, 1, 1]));
    let mut publisher = v5::Client::connect(server.port, "q1-pub");
    for i in 0..20u8 {
        publisher.publish("q1/x", v5::QoS::AtLeastOnce, false, &[i]);
    }
    let mut ids = Vec::new();
    loop {
        match sub.read(Duration::from_millis(700)) {
            Got::Packet(0x32, body) => {
                assert_eq!(&body[..6], &[0, 4, b'q', b'1', b'/', b'x']);
                ids.push(u16::from_be_bytes([body[6], body[7]]));
                assert_eq!(body[8], ids.len() as u8 - 1, "in order");
            }
            Got::Timeout => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ids.len(), 5, "five in flight, no more");
    // one PUBACK lets exactly one more through
    sub.send(&raw::packet(0x40, &ids[0].to_be_bytes()));
    match sub.read(WAIT) {
        Got::Packet(0x32, body) => assert_eq!(body[8], 5),
        other => panic!("{other:?}"),
    }
    assert_eq!(sub.read(Duration::from_millis(500)), Got::Timeout);
}

/// A 3.1.1 QoS 1 subscriber on `q/#`, a publisher, and `n` QoS 1 PUBLISH packets (ids and
/// payloads 1..=n, big-endian) on `q/x` for it to write.
fn qos1_pair(port: u16, n: u16) -> (Raw, Raw, Vec<u8>) {
    let mut sub = Raw::connected(port, 4, "careful", 0);
    sub.send(&raw::subscribe(false, 1, b"q/#", 1));
    assert_eq!(sub.read(WAIT), Got::Packet(0x90, vec![0, 1, 1]));
    let publisher = Raw::connected(port, 4, "eager", 0);
    let wire = (1..=n)
        .flat_map(|i| raw::publish(false, 1, i, b"q/x", &[], &i.to_be_bytes()))
        .collect();
    (sub, publisher, wire)
}

/// At least once means no drops for a connected subscriber: a QoS 1 subscriber that reads more
/// slowly than its publisher for longer than the congestion limit (0.5 s) still gets every QoS 1
/// message, in order; its publisher is slowed down instead. (The same pace at QoS 0 marks the
/// subscriber slow and drops.)
#[test]
fn a_slow_qos1_subscriber_loses_nothing_while_connected() {
    const N: u16 = 400;
    let server = Server::start_with("max_queued_messages = 40\nmax_inflight_messages = 4", "");
    let (mut sub, mut publisher, wire) = qos1_pair(server.port, N);
    let writer = std::thread::spawn(move || {
        publisher.stream.write_all(&wire).unwrap();
        publisher
    });
    let t0 = Instant::now();
    let mut next = 1u16;
    while next <= N {
        match sub.read(Duration::from_secs(5)) {
            Got::Packet(0x32, body) => {
                let id = [body[5], body[6]];
                assert_eq!(
                    u16::from_be_bytes([body[7], body[8]]),
                    next,
                    "in order, none missing"
                );
                // 200 messages/s: slower than the slowed-down publisher (500/s)
                std::thread::sleep(Duration::from_millis(5));
                sub.send(&raw::packet(0x40, &id));
                next += 1;
            }
            other => panic!(
                "after {} messages at {:?}: {other:?}",
                next - 1,
                t0.elapsed()
            ),
        }
    }
    assert!(
        t0.elapsed() > Duration::from_millis(1500),
        "the subscriber was slow for long enough"
    );
    drop(writer.join().unwrap());
}

/// A connected QoS 1 subscriber that never reads holds its publishers back for at most the
/// block limit (5 s); then it counts as slow and the publisher's messages are acknowledged
/// again (and dropped for that subscriber), so one stalled consumer cannot stop a publisher.
#[test]
fn a_stalled_qos1_subscriber_holds_publishers_back_only_for_a_while() {
    const N: u16 = 300;
    let server = Server::start_with("max_queued_messages = 40\nmax_inflight_messages = 4", "");
    let (stalled, mut publisher, wire) = qos1_pair(server.port, N);
    publisher.send(&wire);
    let t0 = Instant::now();
    let mut acked = 0;
    while acked < N {
        match publisher.read(Duration::from_secs(10)) {
            Got::Packet(0x40, body) => {
                acked += 1;
                assert_eq!(body, acked.to_be_bytes(), "PUBACKs in order");
            }
            other => panic!("after {acked} PUBACKs at {:?}: {other:?}", t0.elapsed()),
        }
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(9),
        "publisher held back for {took:?}"
    );
    drop(stalled);
}
