//! Persistent sessions end to end: messages queued while a client is away, across reconnects
//! and across server restarts (clean stop and SIGKILL), and sessions that end (clean start,
//! expiry).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod mqtt_support;

use std::time::Duration;

use common::Server;
use mqtt_support::{QUIET, v5, v311};

#[test]
fn v311_persistent_session_gets_the_qos1_messages_published_while_it_was_away() {
    let server = Server::start();
    let mut sub = v311::Client::connect_with(v311::persistent(server.port, "sub"));
    assert!(!sub.connack.session_present);
    sub.subscribe("ps/#", v311::QoS::AtLeastOnce);
    sub.disconnect();
    let mut publisher = v311::Client::connect(server.port, "pub");
    for i in 0..3 {
        if i == 2 {
            // Before a QoS 1 message whose PUBACK shows the broker has handled it: sent last,
            // it could still be in flight when `sub` is back, and then rightly delivered.
            publisher.publish("ps/qos0", v311::QoS::AtMostOnce, false, b"not kept");
        }
        publisher.publish(
            &format!("ps/{i}"),
            v311::QoS::AtLeastOnce,
            false,
            format!("m{i}").as_bytes(),
        );
    }
    let mut sub = v311::Client::connect_with(v311::persistent(server.port, "sub"));
    assert!(sub.connack.session_present);
    for i in 0..3 {
        let p = sub.recv();
        assert_eq!(
            (p.topic.clone(), p.qos),
            (format!("ps/{i}"), v311::QoS::AtLeastOnce)
        );
        assert_eq!(&p.payload[..], format!("m{i}").as_bytes());
    }
    sub.assert_silent(QUIET);
}

#[test]
fn v5_session_with_expiry_gets_the_messages_published_while_it_was_away() {
    let server = Server::start();
    let mut sub = v5::Client::connect_with(v5::persistent(server.port, "sub", 300));
    assert!(!sub.connack.session_present);
    sub.subscribe("ps/#", v5::QoS::ExactlyOnce);
    sub.disconnect();
    let mut publisher = v5::Client::connect(server.port, "pub");
    publisher.publish("ps/1", v5::QoS::AtLeastOnce, false, b"one");
    publisher.publish("ps/2", v5::QoS::ExactlyOnce, false, b"two");
    let mut sub = v5::Client::connect_with(v5::persistent(server.port, "sub", 300));
    assert!(sub.connack.session_present);
    let p = sub.recv();
    assert_eq!(
        (v5::topic(&p), &p.payload[..], p.qos),
        ("ps/1".to_owned(), &b"one"[..], v5::QoS::AtLeastOnce)
    );
    let p = sub.recv();
    assert_eq!(
        (v5::topic(&p), &p.payload[..], p.qos),
        ("ps/2".to_owned(), &b"two"[..], v5::QoS::ExactlyOnce)
    );
    sub.assert_silent(QUIET);
}

/// Two offline persistent sessions (3.1.1 and 5.0) with queued messages and a retained
/// message; `restart` restarts the server; then everything must still be there.
fn offline_state_survives(restart: impl FnOnce(&mut Server)) {
    let mut server = Server::start();
    let port = server.port;
    let mut s311 = v311::Client::connect_with(v311::persistent(port, "dur311"));
    s311.subscribe("dur/#", v311::QoS::AtLeastOnce);
    s311.disconnect();
    let mut s5 = v5::Client::connect_with(v5::persistent(port, "dur5", 3600));
    s5.subscribe_with(
        vec![v5::Filter::new("dur/#", v5::QoS::ExactlyOnce)],
        Some(v5::SubscribeProperties {
            id: Some(9),
            user_properties: Vec::new(),
        }),
    );
    s5.disconnect();
    let mut publisher = v5::Client::connect(port, "pub");
    for i in 0..5 {
        let ack = publisher.publish(
            &format!("dur/{i}"),
            v5::QoS::AtLeastOnce,
            false,
            format!("{i}").as_bytes(),
        );
        assert_eq!(ack, Some(v5::PubAckReason::Success));
    }
    publisher.publish("ret/a", v5::QoS::AtLeastOnce, true, b"kept");
    // Every PUBACK is in: the server has committed what they acknowledge.
    restart(&mut server);
    drop(publisher);

    let mut s311 = v311::Client::connect_with(v311::persistent(port, "dur311"));
    assert!(s311.connack.session_present, "3.1.1 session restored");
    let mut s5 = v5::Client::connect_with(v5::persistent(port, "dur5", 3600));
    assert!(s5.connack.session_present, "5.0 session restored");
    for i in 0..5 {
        let p = s311.recv();
        assert_eq!(
            (p.topic.clone(), p.qos),
            (format!("dur/{i}"), v311::QoS::AtLeastOnce)
        );
        assert_eq!(&p.payload[..], format!("{i}").as_bytes());
        let p = s5.recv();
        assert_eq!(
            (v5::topic(&p), p.qos),
            (format!("dur/{i}"), v5::QoS::AtLeastOnce)
        );
        assert_eq!(v5::props(&p).subscription_identifiers, vec![9]);
    }
    s311.assert_silent(QUIET);
    s5.assert_silent(Duration::from_millis(50));

    // The subscriptions themselves survived: no SUBSCRIBE needed for new messages.
    let mut publisher = v5::Client::connect(port, "pub2");
    publisher.publish("dur/after", v5::QoS::ExactlyOnce, false, b"after");
    let p = s311.recv();
    assert_eq!(
        (p.topic.as_str(), p.qos),
        ("dur/after", v311::QoS::AtLeastOnce)
    );
    let p = s5.recv();
    assert_eq!(
        (v5::topic(&p), p.qos),
        ("dur/after".to_owned(), v5::QoS::ExactlyOnce)
    );

    // And so did the retained message.
    let mut late = v5::Client::connect(port, "late");
    late.subscribe("ret/#", v5::QoS::AtLeastOnce);
    let p = late.recv();
    assert_eq!(
        (v5::topic(&p), &p.payload[..], p.retain),
        ("ret/a".to_owned(), &b"kept"[..], true)
    );
}

#[test]
fn sessions_queued_messages_and_retained_messages_survive_a_clean_restart() {
    offline_state_survives(|s| s.restart());
}

#[test]
fn sessions_queued_messages_and_retained_messages_survive_sigkill_after_puback() {
    offline_state_survives(|s| s.restart_after_kill());
}

#[test]
fn connected_v5_clients_resume_their_session_after_a_restart() {
    let mut server = Server::start();
    let mut sub = v5::Client::connect_with(v5::persistent(server.port, "sub", 600));
    sub.subscribe("live/#", v5::QoS::AtLeastOnce);
    server.restart();
    assert!(
        sub.wait_end(Duration::from_secs(5)).is_some(),
        "the restart closed the connection"
    );
    let mut sub = v5::Client::connect_with(v5::persistent(server.port, "sub", 600));
    assert!(sub.connack.session_present);
    let mut publisher = v5::Client::connect(server.port, "pub");
    publisher.publish("live/x", v5::QoS::AtLeastOnce, false, b"x");
    assert_eq!(&sub.recv().payload[..], b"x");
}

#[test]
fn clean_session_discards_the_stored_session_v311() {
    let server = Server::start();
    let mut sub = v311::Client::connect_with(v311::persistent(server.port, "sub"));
    sub.subscribe("cs/#", v311::QoS::AtLeastOnce);
    sub.disconnect();
    let mut publisher = v311::Client::connect(server.port, "pub");
    publisher.publish("cs/1", v311::QoS::AtLeastOnce, false, b"queued");
    let mut clean = v311::Client::connect(server.port, "sub");
    assert!(!clean.connack.session_present);
    clean.assert_silent(QUIET);
    clean.disconnect();
    // The clean session ended with its connection: nothing left to resume.
    let mut again = v311::Client::connect_with(v311::persistent(server.port, "sub"));
    assert!(!again.connack.session_present);
    publisher.publish("cs/2", v311::QoS::AtLeastOnce, false, b"unsubscribed");
    again.assert_silent(QUIET);
}

#[test]
fn clean_start_discards_the_stored_session_v5() {
    let server = Server::start();
    let mut sub = v5::Client::connect_with(v5::persistent(server.port, "sub", 600));
    sub.subscribe("cs/#", v5::QoS::AtLeastOnce);
    sub.disconnect();
    let mut publisher = v5::Client::connect(server.port, "pub");
    publisher.publish("cs/1", v5::QoS::AtLeastOnce, false, b"queued");
    let mut o = v5::persistent(server.port, "sub", 600);
    o.set_clean_start(true);
    let mut fresh = v5::Client::connect_with(o);
    assert!(!fresh.connack.session_present);
    fresh.assert_silent(QUIET);
    assert_eq!(
        publisher.publish("cs/2", v5::QoS::AtLeastOnce, false, b"unsubscribed"),
        Some(v5::PubAckReason::NoMatchingSubscribers)
    );
    fresh.assert_silent(QUIET);
}

#[test]
fn session_ends_when_its_expiry_interval_passes_v5() {
    let server = Server::start();
    let mut sub = v5::Client::connect_with(v5::persistent(server.port, "sub", 1));
    sub.subscribe("se/#", v5::QoS::AtLeastOnce);
    sub.disconnect();
    std::thread::sleep(Duration::from_millis(2500));
    let mut publisher = v5::Client::connect(server.port, "pub");
    assert_eq!(
        publisher.publish("se/1", v5::QoS::AtLeastOnce, false, b"late"),
        Some(v5::PubAckReason::NoMatchingSubscribers)
    );
    let mut back = v5::Client::connect_with(v5::persistent(server.port, "sub", 1));
    assert!(!back.connack.session_present);
    back.assert_silent(QUIET);
}

#[test]
fn qos2_publish_received_before_sigkill_is_not_delivered_again_when_resent_after_it() {
    use mqtt_support::WAIT;
    use mqtt_support::raw::{self, Got, Raw};
    let mut server = Server::start();
    let port = server.port;
    let mut sub = v5::Client::connect_with(v5::persistent(port, "sub", 600));
    sub.subscribe("q2/#", v5::QoS::ExactlyOnce);
    sub.disconnect();
    // A publisher with a persistent session: clean start off, session expiry 600 s.
    let hello = raw::connect_flags(5, 0, "rawpub", 30, &[0x11, 0, 0, 2, 0x58]);
    let mut r = Raw::open(port);
    r.send(&hello);
    assert!(matches!(r.read(WAIT), Got::Packet(0x20, b) if b[..2] == [0, 0]));
    let publish = raw::publish(true, 2, 5, b"q2/t", &[], b"exactly once");
    r.send(&publish);
    assert!(
        matches!(r.read(WAIT), Got::Packet(0x50, b) if b[..2] == [0, 5]),
        "PUBREC"
    );
    server.restart_after_kill();
    drop(r);
    // The session is found again after each restart; a PUBLISH (id 5) then gets PUBREC, and
    // its PUBREL gets PUBCOMP.
    let reconnect = || {
        let mut r = Raw::open(port);
        r.send(&hello);
        assert!(
            matches!(r.read(WAIT), Got::Packet(0x20, b) if b[..2] == [1, 0]),
            "session present"
        );
        r
    };
    let exactly_once = |r: &mut Raw, publish: &[u8]| {
        r.send(publish);
        assert!(
            matches!(r.read(WAIT), Got::Packet(0x50, b) if b[..2] == [0, 5]),
            "PUBREC"
        );
        r.send(&raw::packet(0x62, &[0, 5]));
        assert!(
            matches!(r.read(WAIT), Got::Packet(0x70, b) if b[..2] == [0, 5]),
            "PUBCOMP"
        );
    };
    // The PUBREC was lost as far as the publisher knows: it resends with DUP, then PUBREL.
    let mut r = reconnect();
    let mut again = publish;
    again[0] |= 0x08;
    exactly_once(&mut r, &again);
    let mut sub = v5::Client::connect_with(v5::persistent(port, "sub", 600));
    assert!(sub.connack.session_present);
    let p = sub.recv();
    assert_eq!(&p.payload[..], b"exactly once");
    sub.assert_silent(QUIET);
    // Released ids are forgotten durably too: after another SIGKILL a new message that reuses
    // id 5 is a new message.
    drop(sub);
    server.restart_after_kill();
    drop(r);
    let mut r = reconnect();
    exactly_once(
        &mut r,
        &raw::publish(true, 2, 5, b"q2/t", &[], b"a new message"),
    );
    let mut sub = v5::Client::connect_with(v5::persistent(port, "sub", 600));
    assert_eq!(&sub.recv().payload[..], b"a new message");
}
