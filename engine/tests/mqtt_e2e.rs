//! End to end through the real `mast` binary with the rumqttc client (MQTT 3.1.1 and 5.0):
//! QoS, retained messages, wills, overlapping and shared subscriptions, the MQTT 5 features,
//! and a clean stop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod mqtt_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Server;
use mqtt_support::any::{self, Version};
use mqtt_support::raw::{self, Got, Raw};
use mqtt_support::{QUIET, WAIT, v5, v311};

// ---- 1. QoS ----

#[test]
fn delivered_qos_is_the_lower_of_publish_and_subscription_qos() {
    for v in Version::ALL {
        let server = Server::start();
        let mut subs: Vec<any::Client> = (0..3u8)
            .map(|sq| {
                let mut c = any::Client::connect(v, server.port, &format!("sub{sq}"));
                assert_eq!(c.subscribe("q/#", sq), Some(sq), "{v:?}");
                c
            })
            .collect();
        let mut publisher = any::Client::connect(v, server.port, "pub");
        for pq in 0..3u8 {
            let ack = publisher.publish(&format!("q/{pq}"), pq, false, format!("m{pq}").as_bytes());
            if pq == 1 && v == Version::V5 {
                assert_eq!(ack, Some(v5::PubAckReason::Success));
            }
        }
        for (sq, sub) in subs.iter_mut().enumerate() {
            let mut got: Vec<any::Msg> = (0..3).map(|_| sub.recv()).collect();
            got.sort_by(|a, b| a.topic.cmp(&b.topic));
            for (pq, p) in got.iter().enumerate() {
                assert_eq!(p.topic, format!("q/{pq}"), "{v:?}");
                assert_eq!(&p.payload[..], format!("m{pq}").as_bytes());
                assert_eq!(
                    p.qos,
                    pq.min(sq) as u8,
                    "{v:?}: published {pq}, subscribed {sq}"
                );
                assert!(!p.retain && !p.dup);
            }
            sub.assert_silent(QUIET);
        }
    }
}

#[test]
fn qos2_messages_are_delivered_exactly_once() {
    let server = Server::start();
    let mut sub = v5::Client::connect(server.port, "sub");
    sub.subscribe("x/#", v5::QoS::ExactlyOnce);
    let mut sub311 = v311::Client::connect(server.port, "sub311");
    sub311.subscribe("x/#", v311::QoS::ExactlyOnce);
    let mut publisher = v5::Client::connect(server.port, "pub");
    for i in 0..40 {
        publisher.publish(
            &format!("x/{i}"),
            v5::QoS::ExactlyOnce,
            false,
            format!("{i}").as_bytes(),
        );
    }
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        let p = sub.recv();
        assert_eq!(p.qos, v5::QoS::ExactlyOnce);
        assert!(seen.insert(p.payload.to_vec()), "duplicate {p:?}");
        let q = sub311.recv();
        assert_eq!(q.qos, v311::QoS::ExactlyOnce);
    }
    assert_eq!(seen.len(), 40);
    sub.assert_silent(QUIET);
    sub311.assert_silent(Duration::from_millis(50));
}

#[test]
fn a_resent_qos2_publish_before_pubrel_is_not_delivered_twice() {
    let server = Server::start();
    let mut sub = v5::Client::connect(server.port, "sub");
    sub.subscribe("dup/#", v5::QoS::ExactlyOnce);
    let mut r = Raw::connected(server.port, 5, "raw-pub", 30);
    let publish = raw::publish(true, 2, 7, b"dup/t", &[], b"once");
    r.send(&publish);
    match r.read(WAIT) {
        Got::Packet(0x50, body) => assert_eq!(&body[..2], &[0, 7], "PUBREC for id 7"),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    // The same PUBLISH again, DUP set, as after a lost PUBREC.
    let mut again = publish.clone();
    again[0] |= 0x08;
    r.send(&again);
    match r.read(WAIT) {
        Got::Packet(0x50, body) => assert_eq!(&body[..2], &[0, 7]),
        other => panic!("expected a second PUBREC, got {other:?}"),
    }
    r.send(&raw::packet(0x62, &[0, 7]));
    match r.read(WAIT) {
        Got::Packet(0x70, body) => assert_eq!(&body[..2], &[0, 7], "PUBCOMP for id 7"),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    let p = sub.recv();
    assert_eq!(
        (&p.payload[..], p.qos),
        (&b"once"[..], v5::QoS::ExactlyOnce)
    );
    sub.assert_silent(QUIET);
}

#[test]
fn an_interrupted_outbound_qos2_flow_resumes_with_pubrel_not_a_second_publish() {
    let server = Server::start();
    // Session expiry 60 s (property 0x11), clean start off.
    let expiry = [0x11, 0, 0, 0, 60];
    let mut r = Raw::open(server.port);
    r.send(&raw::connect_flags(5, 0, "raw-sub", 30, &expiry));
    assert!(matches!(r.read(WAIT), Got::Packet(0x20, b) if b[..2] == [0, 0]));
    r.send(&raw::subscribe(true, 1, b"o2/#", 2));
    assert!(matches!(r.read(WAIT), Got::Packet(0x90, b) if b == [0, 1, 0, 2]));
    let mut publisher = v5::Client::connect(server.port, "pub");
    publisher.publish("o2/t", v5::QoS::ExactlyOnce, false, b"payload");
    let id = match r.read(WAIT) {
        Got::Packet(first, body) => {
            assert_eq!(first, 0x34, "QoS 2 PUBLISH, no DUP, no RETAIN");
            assert_eq!(&body[..6], b"\0\x04o2/t");
            [body[6], body[7]]
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    };
    r.send(&raw::packet(0x50, &id));
    match r.read(WAIT) {
        Got::Packet(0x62, body) => assert_eq!(&body[..2], &id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    drop(r); // no PUBCOMP, no DISCONNECT
    let mut r = Raw::open(server.port);
    r.send(&raw::connect_flags(5, 0, "raw-sub", 30, &expiry));
    match r.read(WAIT) {
        Got::Packet(0x20, body) => assert_eq!(&body[..2], &[1, 0], "session present, success"),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    match r.read(WAIT) {
        Got::Packet(0x62, body) => assert_eq!(&body[..2], &id, "PUBREL resent"),
        other => panic!("expected the PUBREL again (not the PUBLISH), got {other:?}"),
    }
    r.send(&raw::packet(0x70, &id));
    assert_eq!(r.read(QUIET), Got::Timeout, "nothing more after PUBCOMP");
}

// ---- 2. Retained messages ----

#[test]
fn retained_message_reaches_later_subscribers_until_cleared() {
    for v in Version::ALL {
        let server = Server::start();
        let mut publisher = any::Client::connect(v, server.port, "pub");
        publisher.publish("r/a", 1, true, b"kept");
        let mut sub = any::Client::connect(v, server.port, "sub1");
        sub.subscribe("r/#", 1);
        let p = sub.recv();
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos, p.retain),
            ("r/a", &b"kept"[..], 1, true),
            "{v:?}"
        );
        // A live message to an existing subscription carries RETAIN 0 (3.1.1 §3.3.1.3; in 5.0
        // unless the subscription asked for Retain As Published).
        publisher.publish("r/a", 1, true, b"newer");
        let p = sub.recv();
        assert_eq!((&p.payload[..], p.retain), (&b"newer"[..], false), "{v:?}");
        // A later subscriber sees the newest retained value, at the lower QoS.
        let mut sub2 = any::Client::connect(v, server.port, "sub2");
        sub2.subscribe("r/+", 0);
        let p = sub2.recv();
        assert_eq!(
            (&p.payload[..], p.retain, p.qos),
            (&b"newer"[..], true, 0),
            "{v:?}"
        );
        // An empty retained payload clears it.
        publisher.publish("r/a", 1, true, b"");
        let mut sub3 = any::Client::connect(v, server.port, "sub3");
        sub3.subscribe("r/#", 1);
        sub3.assert_silent(QUIET);
    }
}

#[test]
fn retain_handling_options_decide_when_retained_messages_are_sent_v5() {
    let server = Server::start();
    let mut publisher = v5::Client::connect(server.port, "pub");
    publisher.publish("rh/x", v5::QoS::AtLeastOnce, true, b"r");
    let filter = |rule| v5::Filter {
        retain_forward_rule: rule,
        ..v5::Filter::new("rh/#", v5::QoS::AtLeastOnce)
    };
    // 0: on every subscribe, repeated subscriptions included.
    let mut every = v5::Client::connect(server.port, "every");
    for _ in 0..2 {
        every.subscribe_with(vec![filter(v5::RetainForwardRule::OnEverySubscribe)], None);
        let p = every.recv();
        assert_eq!(
            (v5::topic(&p), &p.payload[..], p.retain),
            ("rh/x".into(), &b"r"[..], true)
        );
    }
    every.assert_silent(QUIET);
    // 1: only when the subscription is new.
    let mut new = v5::Client::connect(server.port, "new");
    new.subscribe_with(vec![filter(v5::RetainForwardRule::OnNewSubscribe)], None);
    let p = new.recv();
    assert!(p.retain);
    new.subscribe_with(vec![filter(v5::RetainForwardRule::OnNewSubscribe)], None);
    new.assert_silent(QUIET);
    // 2: never.
    let mut never = v5::Client::connect(server.port, "never");
    never.subscribe_with(vec![filter(v5::RetainForwardRule::Never)], None);
    never.assert_silent(QUIET);
    // Cleared by an empty payload.
    publisher.publish("rh/x", v5::QoS::AtLeastOnce, true, b"");
    let mut late = v5::Client::connect(server.port, "late");
    late.subscribe("rh/#", v5::QoS::AtLeastOnce);
    late.assert_silent(QUIET);
}

#[test]
fn retain_as_published_keeps_the_flag_on_live_messages_v5() {
    let server = Server::start();
    let mut keep = v5::Client::connect(server.port, "keep");
    keep.subscribe_with(
        vec![v5::Filter {
            preserve_retain: true,
            ..v5::Filter::new("rap/#", v5::QoS::AtLeastOnce)
        }],
        None,
    );
    let mut plain = v5::Client::connect(server.port, "plain");
    plain.subscribe("rap/#", v5::QoS::AtLeastOnce);
    let mut publisher = v5::Client::connect(server.port, "pub");
    publisher.publish("rap/t", v5::QoS::AtLeastOnce, true, b"r1");
    publisher.publish("rap/t", v5::QoS::AtLeastOnce, false, b"n1");
    let (a, b) = (keep.recv(), keep.recv());
    assert_eq!((&a.payload[..], a.retain), (&b"r1"[..], true));
    assert_eq!((&b.payload[..], b.retain), (&b"n1"[..], false));
    let (a, b) = (plain.recv(), plain.recv());
    assert_eq!((&a.payload[..], a.retain), (&b"r1"[..], false));
    assert_eq!((&b.payload[..], b.retain), (&b"n1"[..], false));
}

// ---- 3. Wills ----

#[test]
fn will_is_published_when_the_connection_drops_without_disconnect() {
    let server = Server::start();
    for v in Version::ALL {
        let mut watcher = any::Client::connect(v, server.port, &format!("watcher-{v:?}"));
        watcher.subscribe("will/#", 1);
        let will = any::Will {
            topic: "will/dev1",
            payload: "gone",
            qos: 1,
            retain: false,
        };
        any::Client::connect_with_will(v, server.port, "dev1", &will).drop_abruptly();
        let p = watcher.recv();
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos, p.retain),
            ("will/dev1", &b"gone"[..], 1, false),
            "{v:?}"
        );
        watcher.assert_silent(QUIET);
    }
}

#[test]
fn a_retained_will_is_kept_for_later_subscribers() {
    let server = Server::start();
    for v in Version::ALL {
        let topic = format!("status/{v:?}");
        let will = any::Will {
            topic: &topic,
            payload: "offline",
            qos: 1,
            retain: true,
        };
        // A subscriber from before sees the will go out live; only then is it surely retained (a
        // late subscriber polling for it could catch the live delivery, which is not retained).
        let mut early = any::Client::connect(v, server.port, &format!("early-{v:?}"));
        early.subscribe(&topic, 1);
        any::Client::connect_with_will(v, server.port, &format!("dev-{v:?}"), &will)
            .drop_abruptly();
        let p = early.recv();
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.retain),
            (topic.as_str(), &b"offline"[..], false),
            "{v:?}"
        );
        let mut late = any::Client::connect(v, server.port, &format!("late-{v:?}"));
        late.subscribe(&topic, 1);
        let p = late.recv();
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.retain),
            (topic.as_str(), &b"offline"[..], true),
            "{v:?}"
        );
    }
}

#[test]
fn will_is_not_published_after_a_normal_disconnect() {
    let server = Server::start();
    let mut watcher = v5::Client::connect(server.port, "watcher");
    watcher.subscribe("will/#", v5::QoS::AtLeastOnce);
    for v in Version::ALL {
        let topic = format!("will/dev-{v:?}");
        let will = any::Will {
            topic: &topic,
            payload: "gone",
            qos: 1,
            retain: false,
        };
        any::Client::connect_with_will(v, server.port, &format!("dev-{v:?}"), &will).disconnect();
    }
    watcher.assert_silent(Duration::from_millis(700));
}

fn delayed_will(port: u16, id: &str, delay: u32) -> v5::MqttOptions {
    let mut o = v5::persistent(port, id, 30);
    o.set_last_will(v5::LastWill::new(
        format!("will/{id}"),
        "late",
        v5::QoS::AtLeastOnce,
        false,
        Some(v5::LastWillProperties {
            delay_interval: Some(delay),
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        }),
    ));
    o
}

#[test]
fn will_delay_holds_the_will_back_for_the_interval_v5() {
    let server = Server::start();
    let mut watcher = v5::Client::connect(server.port, "watcher");
    watcher.subscribe("will/#", v5::QoS::AtLeastOnce);
    let dev = v5::Client::connect_with(delayed_will(server.port, "dev", 2));
    let t0 = Instant::now();
    dev.drop_abruptly();
    watcher.assert_silent(Duration::from_millis(1200));
    let p = watcher.recv();
    let waited = t0.elapsed();
    assert_eq!(
        (v5::topic(&p), &p.payload[..]),
        ("will/dev".to_owned(), &b"late"[..])
    );
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_millis(4500),
        "will after {waited:?}, delay 2 s"
    );
}

#[test]
fn will_is_dropped_when_the_client_reconnects_within_the_delay_v5() {
    let server = Server::start();
    let mut watcher = v5::Client::connect(server.port, "watcher");
    watcher.subscribe("will/#", v5::QoS::AtLeastOnce);
    v5::Client::connect_with(delayed_will(server.port, "dev", 2)).drop_abruptly();
    std::thread::sleep(Duration::from_millis(300));
    let mut o = v5::persistent(server.port, "dev", 30);
    o.set_last_will(v5::LastWill::new(
        "will/dev",
        "second",
        v5::QoS::AtLeastOnce,
        false,
        None,
    ));
    let back = v5::Client::connect_with(o);
    assert!(back.connack.session_present);
    watcher.assert_silent(Duration::from_millis(3000));
    back.disconnect();
    watcher.assert_silent(QUIET);
}

// ---- 5. Overlapping subscriptions ----

#[test]
fn overlapping_subscriptions_deliver_one_copy_at_the_highest_qos_v311() {
    let server = Server::start();
    let mut sub = v311::Client::connect(server.port, "sub");
    let codes = sub.subscribe_many(vec![
        v311::SubscribeFilter::new("a/#".into(), v311::QoS::AtLeastOnce),
        v311::SubscribeFilter::new("a/+/c".into(), v311::QoS::ExactlyOnce),
    ]);
    assert_eq!(
        codes,
        vec![
            v311::SubscribeReasonCode::Success(v311::QoS::AtLeastOnce),
            v311::SubscribeReasonCode::Success(v311::QoS::ExactlyOnce)
        ]
    );
    let mut publisher = v311::Client::connect(server.port, "pub");
    publisher.publish("a/b/c", v311::QoS::ExactlyOnce, false, b"both");
    publisher.publish("a/b/d", v311::QoS::ExactlyOnce, false, b"one");
    let p = sub.recv();
    assert_eq!((p.topic.as_str(), p.qos), ("a/b/c", v311::QoS::ExactlyOnce));
    let p = sub.recv();
    assert_eq!((p.topic.as_str(), p.qos), ("a/b/d", v311::QoS::AtLeastOnce));
    sub.assert_silent(QUIET);
}

#[test]
fn overlapping_subscriptions_carry_every_subscription_identifier_v5() {
    let server = Server::start();
    let mut sub = v5::Client::connect(server.port, "sub");
    let with_id = |id| {
        Some(v5::SubscribeProperties {
            id: Some(id),
            user_properties: Vec::new(),
        })
    };
    sub.subscribe_with(
        vec![v5::Filter::new("a/#", v5::QoS::AtLeastOnce)],
        with_id(1),
    );
    sub.subscribe_with(
        vec![v5::Filter::new("a/+/c", v5::QoS::ExactlyOnce)],
        with_id(2),
    );
    sub.subscribe("a/b/+", v5::QoS::AtMostOnce);
    let mut publisher = v5::Client::connect(server.port, "pub");
    publisher.publish("a/b/c", v5::QoS::ExactlyOnce, false, b"three");
    publisher.publish("a/x", v5::QoS::ExactlyOnce, false, b"one");
    let p = sub.recv();
    assert_eq!(
        (v5::topic(&p), p.qos),
        ("a/b/c".to_owned(), v5::QoS::ExactlyOnce)
    );
    let mut ids = v5::props(&p).subscription_identifiers;
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2]);
    let p = sub.recv();
    assert_eq!(
        (v5::topic(&p), p.qos),
        ("a/x".to_owned(), v5::QoS::AtLeastOnce)
    );
    assert_eq!(v5::props(&p).subscription_identifiers, vec![1]);
    sub.assert_silent(QUIET);
}

// ---- 6. Shared subscriptions ----

#[test]
fn shared_subscription_spreads_messages_over_the_group_while_others_get_all() {
    let server = Server::start();
    let mut members: Vec<v5::Client> = (0..3)
        .map(|i| {
            let mut c = v5::Client::connect(server.port, &format!("member{i}"));
            assert_eq!(
                c.subscribe("$share/g/t/#", v5::QoS::AtLeastOnce),
                v5::SubscribeReasonCode::Success(v5::QoS::AtLeastOnce)
            );
            c
        })
        .collect();
    let mut all = v5::Client::connect(server.port, "all");
    all.subscribe("t/#", v5::QoS::AtLeastOnce);
    let mut publisher = v5::Client::connect(server.port, "pub");
    for i in 0..300 {
        publisher.publish_nowait(
            &format!("t/{}", i % 7),
            v5::QoS::AtLeastOnce,
            format!("{i}").as_bytes(),
        );
    }
    publisher.wait_pubacks(300);

    let mut per_member = [0usize; 3];
    let mut shared_seen = BTreeSet::new();
    let t0 = Instant::now();
    while shared_seen.len() < 300 && t0.elapsed() < WAIT {
        for (i, m) in members.iter_mut().enumerate() {
            while let Some(p) = m.recv_within(Duration::from_millis(5)) {
                let n: usize = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
                assert!(shared_seen.insert(n), "message {n} went to two members");
                per_member[i] += 1;
            }
        }
    }
    assert_eq!(
        shared_seen,
        (0..300).collect(),
        "every message to exactly one member"
    );
    assert!(
        per_member.iter().all(|&n| n > 0),
        "every member gets some: {per_member:?}"
    );
    for m in &mut members {
        m.assert_silent(Duration::from_millis(100));
    }
    let everything: BTreeSet<usize> = (0..300)
        .map(|_| {
            std::str::from_utf8(&all.recv().payload)
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(everything, (0..300).collect());
}

// ---- 7. MQTT 5 features ----

#[test]
fn no_local_subscription_skips_the_clients_own_messages() {
    let server = Server::start();
    let mut a = v5::Client::connect(server.port, "a");
    a.subscribe_with(
        vec![v5::Filter {
            nolocal: true,
            ..v5::Filter::new("nl/#", v5::QoS::AtLeastOnce)
        }],
        None,
    );
    a.publish("nl/mine", v5::QoS::AtLeastOnce, false, b"mine");
    let mut b = v5::Client::connect(server.port, "b");
    b.publish("nl/theirs", v5::QoS::AtLeastOnce, false, b"theirs");
    let p = a.recv();
    assert_eq!(
        (v5::topic(&p), &p.payload[..]),
        ("nl/theirs".to_owned(), &b"theirs"[..])
    );
    a.assert_silent(QUIET);
}

#[test]
fn message_expiry_drops_expired_messages_and_counts_down_the_rest() {
    let server = Server::start();
    let mut sub = v5::Client::connect_with(v5::persistent(server.port, "sub", 60));
    sub.subscribe("exp/#", v5::QoS::AtLeastOnce);
    sub.disconnect();
    let mut publisher = v5::Client::connect(server.port, "pub");
    let expiring = |secs| {
        Some(v5::PublishProperties {
            message_expiry_interval: Some(secs),
            ..Default::default()
        })
    };
    publisher.publish_with("exp/short", v5::QoS::AtLeastOnce, false, b"s", expiring(1));
    publisher.publish_with("exp/long", v5::QoS::AtLeastOnce, false, b"l", expiring(30));
    std::thread::sleep(Duration::from_millis(2100));
    let mut sub = v5::Client::connect_with(v5::persistent(server.port, "sub", 60));
    assert!(sub.connack.session_present);
    let p = sub.recv();
    assert_eq!(v5::topic(&p), "exp/long");
    let left = v5::props(&p)
        .message_expiry_interval
        .expect("expiry forwarded");
    assert!(
        (25..=28).contains(&left),
        "remaining expiry {left} after ~2 s of 30"
    );
    sub.assert_silent(QUIET);
}

#[test]
fn topic_alias_from_the_client_is_resolved() {
    let server = Server::start();
    let mut sub = v5::Client::connect(server.port, "sub");
    sub.subscribe("ta/#", v5::QoS::AtLeastOnce);
    let mut publisher = v5::Client::connect(server.port, "pub");
    let alias = || {
        Some(v5::PublishProperties {
            topic_alias: Some(3),
            ..Default::default()
        })
    };
    assert_eq!(
        publisher.publish_with("ta/long/topic", v5::QoS::AtLeastOnce, false, b"1", alias()),
        Some(v5::PubAckReason::Success)
    );
    assert_eq!(
        publisher.publish_with("", v5::QoS::AtLeastOnce, false, b"2", alias()),
        Some(v5::PubAckReason::Success)
    );
    for payload in [b"1", b"2"] {
        let p = sub.recv();
        assert_eq!(
            (v5::topic(&p), &p.payload[..]),
            ("ta/long/topic".to_owned(), &payload[..])
        );
        assert_eq!(
            v5::props(&p).topic_alias,
            None,
            "subscriber asked for no aliases"
        );
    }
}

#[test]
fn request_response_and_user_properties_are_forwarded() {
    let server = Server::start();
    let mut sub = v5::Client::connect(server.port, "sub");
    sub.subscribe("req/#", v5::QoS::AtLeastOnce);
    let mut requester = v5::Client::connect(server.port, "requester");
    let props = v5::PublishProperties {
        payload_format_indicator: Some(1),
        response_topic: Some("resp/requester".into()),
        correlation_data: Some(bytes::Bytes::from_static(&[0xde, 0xad, 0x00, 0x01])),
        user_properties: vec![
            ("k".into(), "v1".into()),
            ("other".into(), "x".into()),
            ("k".into(), "v2".into()),
        ],
        content_type: Some("application/json".into()),
        ..Default::default()
    };
    requester.publish_with(
        "req/1",
        v5::QoS::AtLeastOnce,
        false,
        b"{}",
        Some(props.clone()),
    );
    let got = v5::props(&sub.recv());
    assert_eq!(got.response_topic, props.response_topic);
    assert_eq!(got.correlation_data, props.correlation_data);
    assert_eq!(
        got.user_properties, props.user_properties,
        "all pairs, in order"
    );
    assert_eq!(got.content_type, props.content_type);
    assert_eq!(got.payload_format_indicator, Some(1));
    // The responder answers on the response topic with the correlation data.
    requester.subscribe("resp/requester", v5::QoS::AtLeastOnce);
    sub.publish_with(
        got.response_topic.as_deref().unwrap(),
        v5::QoS::AtLeastOnce,
        false,
        b"ok",
        Some(v5::PublishProperties {
            correlation_data: got.correlation_data.clone(),
            ..Default::default()
        }),
    );
    let answer = requester.recv();
    assert_eq!(v5::topic(&answer), "resp/requester");
    assert_eq!(v5::props(&answer).correlation_data, props.correlation_data);
}

#[test]
fn empty_client_id_gets_an_assigned_identifier() {
    let server = Server::start();
    let a = v5::Client::connect(server.port, "");
    let b = v5::Client::connect(server.port, "");
    let id_a = a
        .connack
        .properties
        .clone()
        .unwrap()
        .assigned_client_identifier
        .expect("assigned id");
    let id_b = b
        .connack
        .properties
        .clone()
        .unwrap()
        .assigned_client_identifier
        .expect("assigned id");
    assert!(!id_a.is_empty());
    assert_ne!(id_a, id_b);
    let named = v5::Client::connect(server.port, "named");
    assert_eq!(
        named
            .connack
            .properties
            .and_then(|p| p.assigned_client_identifier),
        None
    );
}

#[test]
fn server_keep_alive_caps_the_clients_keep_alive() {
    let server = Server::start_with("max_keep_alive_secs = 10", "");
    let capped = v5::Client::connect(server.port, "capped"); // asks for 30 s
    let props = capped.connack.properties.clone().unwrap();
    assert_eq!(props.server_keep_alive, Some(10));
    let mut o = v5::options(server.port, "within");
    o.set_keep_alive(Duration::from_secs(5));
    let within = v5::Client::connect_with(o);
    assert_eq!(
        within.connack.properties.clone().unwrap().server_keep_alive,
        None
    );
}

#[test]
fn connack_advertises_the_configured_limits() {
    let server = Server::start_with(
        "receive_maximum = 77\ntopic_alias_maximum = 9\nmax_packet_size = 4096",
        "",
    );
    let c = v5::Client::connect(server.port, "c");
    let p = c.connack.properties.clone().unwrap();
    assert_eq!(p.receive_max, Some(77));
    assert_eq!(p.topic_alias_max, Some(9));
    assert_eq!(p.max_packet_size, Some(4096));
    assert_eq!(p.shared_subscription_available, Some(1));
    assert_eq!(p.subscription_identifiers_available, Some(1));
}

// rumqttc 0.25 cannot decode a DISCONNECT without a property length (remaining length 1,
// valid per MQTT 5.0 §3.14.2.2.1) and reports "connection aborted" instead, so the reason codes
// the server closes with are read off raw sockets.

#[test]
fn session_takeover_disconnects_the_first_connection_with_0x8e_v5() {
    let server = Server::start();
    let mut first = Raw::connected(server.port, 5, "same", 30);
    let mut second = v5::Client::connect(server.port, "same");
    let before_close = first.expect_closed(WAIT);
    assert_eq!(
        raw::disconnect_reason(&before_close),
        Some(0x8E),
        "{before_close:?}"
    );
    second.subscribe("to/#", v5::QoS::AtLeastOnce);
    second.publish("to/x", v5::QoS::AtLeastOnce, false, b"hi");
    let p = second.recv();
    assert_eq!(
        (v5::topic(&p), &p.payload[..]),
        ("to/x".to_owned(), &b"hi"[..])
    );
    // The same with a real client as the first connection: it is ended.
    let mut third = v5::Client::connect(server.port, "other");
    let _fourth = v5::Client::connect(server.port, "other");
    assert!(third.wait_end(WAIT).is_some());
}

#[test]
fn session_takeover_closes_the_first_connection_v311() {
    let server = Server::start();
    let mut first = v311::Client::connect_with(v311::persistent(server.port, "same"));
    first.subscribe("to/#", v311::QoS::AtLeastOnce);
    let mut second = v311::Client::connect_with(v311::persistent(server.port, "same"));
    assert!(
        second.connack.session_present,
        "the session moved to the new connection"
    );
    let mut publisher = v311::Client::connect(server.port, "pub");
    publisher.publish("to/x", v311::QoS::AtLeastOnce, false, b"hi");
    let p = second.recv();
    assert_eq!(p.topic, "to/x");
    assert!(
        first.wait_end(WAIT).is_some(),
        "the first connection was closed"
    );
}

// ---- 12. Stop ----

#[test]
fn sigterm_stops_the_server_cleanly_and_tells_v5_clients() {
    let mut server = Server::start();
    let mut c = v5::Client::connect(server.port, "c");
    c.subscribe("s/#", v5::QoS::AtLeastOnce);
    let mut r = Raw::connected(server.port, 5, "raw", 30);
    assert_eq!(server.stop(), Some(0));
    let before_close = r.expect_closed(WAIT);
    assert_eq!(
        raw::disconnect_reason(&before_close),
        Some(0x8B),
        "{before_close:?}"
    );
    assert!(c.wait_end(WAIT).is_some());
    assert!(server.log().contains("stopped"), "{}", server.log());
}
