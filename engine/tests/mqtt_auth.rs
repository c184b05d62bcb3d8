//! Authentication (argon2 passwords from `mast passwd`, anonymous access off) and topic rules,
//! end to end with MQTT 3.1.1 and 5.0 clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod mqtt_support;

use common::Server;
use mqtt_support::raw::{self, Got, Raw};
use mqtt_support::{QUIET, WAIT, hash_password, v5, v311};

/// One user `dev` / `s3cret`, anonymous access off, each client limited to `devices/<its id>/#`.
fn secured() -> Server {
    let hash = hash_password("s3cret");
    Server::start_with(
        "allow_anonymous = false",
        &format!(
            "[[mqtt.users]]\nname = \"dev\"\npassword_hash = \"{hash}\"\n\n\
             [[mqtt.acl]]\npublish = [\"devices/%c/#\"]\nsubscribe = [\"devices/%c/#\"]\n"
        ),
    )
}

fn v5_login(
    port: u16,
    id: &str,
    user: Option<(&str, &str)>,
) -> Result<v5::Client, Box<v5::ConnectionError>> {
    let mut o = v5::options(port, id);
    if let Some((u, p)) = user {
        o.set_credentials(u, p);
    }
    v5::Client::try_connect(o)
}

fn v311_login(
    port: u16,
    id: &str,
    user: Option<(&str, &str)>,
) -> Result<v311::Client, Box<v311::ConnectionError>> {
    let mut o = v311::options(port, id);
    if let Some((u, p)) = user {
        o.set_credentials(u, p);
    }
    v311::Client::try_connect(o)
}

#[test]
fn passwords_are_checked_and_anonymous_clients_refused_v5() {
    let server = secured();
    let ok = v5_login(server.port, "d1", Some(("dev", "s3cret"))).expect("right password");
    assert_eq!(ok.connack.code, v5::ConnectReturnCode::Success);
    for (user, want) in [
        (
            Some(("dev", "wrong")),
            v5::ConnectReturnCode::BadUserNamePassword,
        ),
        (
            Some(("nobody", "s3cret")),
            v5::ConnectReturnCode::BadUserNamePassword,
        ),
        (None, v5::ConnectReturnCode::NotAuthorized),
    ] {
        match v5_login(server.port, "d2", user).map_err(|e| *e) {
            Err(v5::ConnectionError::ConnectionRefused(code)) => assert_eq!(code, want, "{user:?}"),
            Err(e) => panic!("{user:?}: expected CONNACK {want:?}, got {e:?}"),
            Ok(_) => panic!("{user:?}: connected"),
        }
    }
}

#[test]
fn passwords_are_checked_and_anonymous_clients_refused_v311() {
    let server = secured();
    let ok = v311_login(server.port, "d1", Some(("dev", "s3cret"))).expect("right password");
    assert_eq!(ok.connack.code, v311::ConnectReturnCode::Success);
    for (user, want) in [
        (
            Some(("dev", "wrong")),
            v311::ConnectReturnCode::BadUserNamePassword,
        ),
        (None, v311::ConnectReturnCode::NotAuthorized),
    ] {
        match v311_login(server.port, "d2", user).map_err(|e| *e) {
            Err(v311::ConnectionError::ConnectionRefused(code)) => {
                assert_eq!(code, want, "{user:?}")
            }
            Err(e) => panic!("{user:?}: expected CONNACK {want:?}, got {e:?}"),
            Ok(_) => panic!("{user:?}: connected"),
        }
    }
    // The exact bytes: a 3.1.1 CONNACK with return code 5, then the close.
    let mut r = Raw::open(server.port);
    r.send(&raw::connect(4, "anon", 30, &[]));
    assert_eq!(r.read(WAIT), Got::Packet(0x20, vec![0x00, 0x05]));
    assert_eq!(r.expect_closed(WAIT), Vec::new());
}

#[test]
fn topic_rules_limit_publish_and_subscribe_v5() {
    let server = secured();
    let mut d1 = v5_login(server.port, "d1", Some(("dev", "s3cret"))).unwrap();
    let mut d2 = v5_login(server.port, "d2", Some(("dev", "s3cret"))).unwrap();
    assert_eq!(
        d2.subscribe("devices/d2/#", v5::QoS::AtLeastOnce),
        v5::SubscribeReasonCode::Success(v5::QoS::AtLeastOnce)
    );
    let refused = d1.subscribe_with(
        vec![
            v5::Filter::new("devices/d1/+", v5::QoS::AtLeastOnce),
            v5::Filter::new("devices/d2/#", v5::QoS::AtLeastOnce),
            v5::Filter::new("devices/+/x", v5::QoS::AtLeastOnce),
            v5::Filter::new("#", v5::QoS::AtLeastOnce),
        ],
        None,
    );
    assert_eq!(
        refused.return_codes,
        vec![
            v5::SubscribeReasonCode::Success(v5::QoS::AtLeastOnce),
            v5::SubscribeReasonCode::NotAuthorized,
            v5::SubscribeReasonCode::NotAuthorized,
            v5::SubscribeReasonCode::NotAuthorized,
        ]
    );
    // Publishing into another device's topics: refused in the PUBACK and not delivered.
    assert_eq!(
        d1.publish("devices/d2/cmd", v5::QoS::AtLeastOnce, false, b"intrusion"),
        Some(v5::PubAckReason::NotAuthorized)
    );
    d1.client
        .try_publish(
            "devices/d2/cmd",
            v5::QoS::ExactlyOnce,
            false,
            b"intrusion 2".to_vec(),
        )
        .unwrap();
    match d1.wait_packet(|p| matches!(p, v5::Packet::PubRec(_))) {
        v5::Packet::PubRec(r) => assert_eq!(r.reason, v5::PubRecReason::NotAuthorized),
        _ => unreachable!(),
    }
    d2.publish("devices/d2/cmd", v5::QoS::AtLeastOnce, false, b"own");
    let p = d2.recv();
    assert_eq!(&p.payload[..], b"own", "the refused messages never arrived");
    d2.assert_silent(QUIET);
    // Its own topics work.
    assert_eq!(
        d1.publish("devices/d1/x", v5::QoS::AtLeastOnce, false, b"mine"),
        Some(v5::PubAckReason::Success)
    );
    assert_eq!(v5::topic(&d1.recv()), "devices/d1/x");
}

#[test]
fn topic_rules_limit_publish_and_subscribe_v311() {
    let server = secured();
    let mut d1 = v311_login(server.port, "d1", Some(("dev", "s3cret"))).unwrap();
    let mut d2 = v311_login(server.port, "d2", Some(("dev", "s3cret"))).unwrap();
    d2.subscribe("devices/d2/#", v311::QoS::AtLeastOnce);
    assert_eq!(
        d1.subscribe_many(vec![
            v311::SubscribeFilter::new("devices/d1/#".into(), v311::QoS::AtLeastOnce),
            v311::SubscribeFilter::new("devices/d2/#".into(), v311::QoS::AtLeastOnce),
        ]),
        vec![
            v311::SubscribeReasonCode::Success(v311::QoS::AtLeastOnce),
            v311::SubscribeReasonCode::Failure,
        ]
    );
    // 3.1.1 has no refusal in PUBACK: acknowledged, dropped.
    d1.publish(
        "devices/d2/cmd",
        v311::QoS::AtLeastOnce,
        false,
        b"intrusion",
    );
    d2.publish("devices/d2/cmd", v311::QoS::AtLeastOnce, false, b"own");
    assert_eq!(&d2.recv().payload[..], b"own");
    d2.assert_silent(QUIET);
}

#[test]
fn a_will_outside_the_clients_topics_is_dropped() {
    let server = secured();
    let mut watcher = v5_login(server.port, "w", Some(("dev", "s3cret"))).unwrap();
    watcher.subscribe("devices/w/#", v5::QoS::AtLeastOnce);
    let mut o = v5::options(server.port, "d1");
    o.set_credentials("dev", "s3cret");
    o.set_last_will(v5::LastWill::new(
        "devices/w/will",
        "spoofed",
        v5::QoS::AtLeastOnce,
        false,
        None,
    ));
    v5::Client::connect_with(o).drop_abruptly();
    watcher.assert_silent(QUIET);
}
