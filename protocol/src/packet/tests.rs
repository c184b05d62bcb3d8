//! Tests of the packet-level codec: spec examples, reason codes of bad packets, and property
//! tests over generated packets of every type on both versions.
use super::*;
use crate::ack::{PUBACK_REASONS, PUBREL_REASONS};
use crate::connack::CONNACK_REASONS;
use crate::connect::{QoS, Will};
use crate::disconnect::{AUTH_REASONS, DISCONNECT_REASONS};
use crate::primitives::Utf8;
use crate::publish::Delivery;
use crate::subscribe::{
    RetainHandling, SUBACK_REASONS, SUBACK_V311_CODES, Subscription, SubscriptionOptions,
    UNSUBACK_REASONS,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;
const MAX: u32 = 1 << 20;

fn id(n: u16) -> PacketId {
    PacketId(NonZeroU16::new(n).unwrap())
}

fn bytes(b: &[u8]) -> BytesMut {
    BytesMut::from(b)
}

fn encoded(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut out = Vec::new();
    encode(p, v, &mut out);
    out
}

#[test]
fn pings_and_the_empty_disconnect() {
    // MQTT 5.0 §3.12, §3.13: type byte and a zero remaining length
    assert_eq!(encoded(&Packet::PingReq, V3), [0xC0, 0x00]);
    assert_eq!(encoded(&Packet::PingResp, V5), [0xD0, 0x00]);
    let mut buf = bytes(&[0xC0, 0x00, 0xD0, 0x00]);
    assert_eq!(decode(&mut buf, V3, MAX), Ok(Some(Packet::PingReq)));
    assert_eq!(decode(&mut buf, V3, MAX), Ok(Some(Packet::PingResp)));
    assert_eq!(decode(&mut buf, V3, MAX), Ok(None));
    // a v5 DISCONNECT of remaining length 0 is a normal disconnection (§3.14.2.1)
    let mut buf = bytes(&[0xE0, 0x00]);
    assert_eq!(
        decode(&mut buf, V5, MAX),
        Ok(Some(Packet::Disconnect(Disconnect::normal())))
    );
    assert!(buf.is_empty());
    assert_eq!(
        encoded(&Packet::Disconnect(Disconnect::normal()), V5),
        [0xE0, 0x00]
    );
}

#[test]
fn fixed_header_flags_follow_the_type() {
    let rel = Packet::PubRel(PubResp::new(id(1)));
    assert_eq!(encoded(&rel, V3), [0x62, 0x02, 0x00, 0x01]);
    let sub = Packet::Subscribe(Subscribe {
        packet_id: id(1),
        properties: Properties::default(),
        subscriptions: vec![Subscription {
            filter: Utf8::new("a"),
            options: SubscriptionOptions::new(QoS::AtLeastOnce),
        }],
    });
    assert_eq!(encoded(&sub, V3)[0], 0x82);
    let unsub = Packet::Unsubscribe(Unsubscribe {
        packet_id: id(1),
        properties: Properties::default(),
        filters: vec![Utf8::new("a")],
    });
    assert_eq!(encoded(&unsub, V3)[0], 0xA2);
    let publish = Packet::Publish(Publish {
        dup: true,
        delivery: Delivery::ExactlyOnce(id(2)),
        retain: true,
        topic: Utf8::new("t"),
        properties: Properties::default(),
        payload: Bytes::from_static(b"x"),
    });
    assert_eq!(encoded(&publish, V3)[0], 0x3D);
}

#[test]
fn incomplete_frames_leave_the_buffer_alone() {
    let mut buf = bytes(&[0x30, 0x05, 0x00, 0x01, b'a']);
    assert_eq!(decode(&mut buf, V3, MAX), Ok(None));
    assert_eq!(buf.len(), 5);
    buf.extend_from_slice(b"hi");
    let Ok(Some(Packet::Publish(p))) = decode(&mut buf, V3, MAX) else {
        panic!("a complete PUBLISH");
    };
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("a", &b"hi"[..]));
    assert!(buf.is_empty());
}

#[test]
fn payloads_are_slices_of_the_read_buffer() {
    let mut buf = bytes(b"\x30\x08\x00\x01ahello");
    let start = buf.as_ptr() as usize;
    let Ok(Some(Packet::Publish(p))) = decode(&mut buf, V3, MAX) else {
        panic!("a PUBLISH");
    };
    assert_eq!(p.payload.as_ptr() as usize, start + 5, "no copy");
    assert_eq!(p.topic.bytes().as_ptr() as usize, start + 4, "no copy");
}

#[test]
fn connect_decodes_whatever_the_connection_version() {
    let mut buf = bytes(b"\x10\x0E\x00\x04MQTT\x04\x02\x00\x3c\x00\x02d1");
    let Ok(Some(Packet::Connect(c))) = decode(&mut buf, V5, MAX) else {
        panic!("a CONNECT");
    };
    assert_eq!(c.version, V3);
}

#[test]
fn bad_packets_get_the_right_reason_code() {
    let cases: [(&[u8], ProtocolVersion, ReasonCode); 9] = [
        // AUTH is packet type 15, reserved in 3.1.1
        (&[0xF0, 0x00], V3, ReasonCode::MALFORMED_PACKET),
        // PINGREQ with a body
        (&[0xC0, 0x01, 0x00], V5, ReasonCode::MALFORMED_PACKET),
        // bytes after a 3.1.1 PUBACK
        (
            &[0x40, 0x03, 0x00, 0x01, 0x00],
            V3,
            ReasonCode::MALFORMED_PACKET,
        ),
        // a SUBSCRIBE without filters
        (&[0x82, 0x02, 0x00, 0x01], V3, ReasonCode::PROTOCOL_ERROR),
        // flags other than the type requires
        (&[0x60, 0x02, 0x00, 0x01], V3, ReasonCode::MALFORMED_PACKET),
        // larger than the maximum packet size
        (&[0x30, 0xFF, 0xFF, 0x7F], V5, ReasonCode::PACKET_TOO_LARGE),
        // protocol level 3
        (
            b"\x10\x0C\x00\x04MQTT\x03\x02\x00\x3c\x00\x00",
            V5,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        ),
        // a wildcard in a PUBLISH topic
        (b"\x30\x05\x00\x03a/#", V3, ReasonCode::TOPIC_NAME_INVALID),
        // PUBREL with a reason PUBREL cannot carry
        (
            &[0x62, 0x03, 0x00, 0x01, 0x10],
            V5,
            ReasonCode::PROTOCOL_ERROR,
        ),
    ];
    for (frame, v, reason) in cases {
        let err = decode(&mut bytes(frame), v, MAX).unwrap_err();
        assert_eq!(err.reason_code(), reason, "{err}");
    }
}

fn utf8() -> impl Strategy<Value = Utf8> {
    "[^\u{0}]{0,8}".prop_map(|s| Utf8::new(&s))
}

fn topic() -> impl Strategy<Value = Utf8> {
    "[a-z0-9$]{1,5}(/[a-z0-9]{0,4}){0,3}".prop_map(|s| Utf8::new(&s))
}

fn pid() -> impl Strategy<Value = PacketId> {
    (1u16..).prop_map(id)
}

fn payload() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

fn user_properties() -> impl Strategy<Value = Vec<(Utf8, Utf8)>> {
    vec((utf8(), utf8()), 0..3)
}

/// Reason String and User Property (what every acknowledgement may carry); none on 3.1.1.
fn ack_properties(v: ProtocolVersion) -> BoxedStrategy<Properties> {
    if v == V3 {
        return Just(Properties::default()).boxed();
    }
    (option::of(utf8()), user_properties())
        .prop_map(|(reason_string, user_properties)| {
            crate::properties::PropertyValues {
                reason_string,
                user_properties,
                ..crate::properties::PropertyValues::default()
            }
            .into()
        })
        .boxed()
}

fn reason(allowed: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    select(allowed).prop_map(ReasonCode)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let v5 = v == V5;
    let props = (
        option::of(any::<u32>()),
        option::of(1u16..),
        user_properties(),
    )
        .prop_map(
            move |(session_expiry_interval, receive_maximum, user_properties)| {
                if !v5 {
                    return Properties::default();
                }
                crate::properties::PropertyValues {
                    session_expiry_interval,
                    receive_maximum,
                    user_properties,
                    ..crate::properties::PropertyValues::default()
                }
                .into()
            },
        );
    let will = (
        topic(),
        payload(),
        qos(),
        any::<bool>(),
        option::of(any::<u32>()),
    )
        .prop_map(move |(topic, payload, qos, retain, delay)| Will {
            topic,
            payload,
            qos,
            retain,
            properties: crate::properties::PropertyValues {
                will_delay_interval: delay.filter(|_| v5),
                ..crate::properties::PropertyValues::default()
            }
            .into(),
        });
    (
        any::<bool>(),
        any::<u16>(),
        props,
        utf8(),
        option::of(will),
        option::of(utf8()),
        option::of(payload()),
    )
        .prop_map(
            move |(clean_start, keep_alive, properties, client_id, will, username, password)| {
                // 3.1.1: no password without a user name
                let password = password.filter(|_| v5 || username.is_some());
                Packet::Connect(Box::new(Connect {
                    version: v,
                    clean_start,
                    keep_alive,
                    properties,
                    client_id,
                    will,
                    username,
                    password,
                }))
            },
        )
}

fn connack(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let reasons: &'static [u8] = if v == V5 {
        CONNACK_REASONS
    } else {
        &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87]
    };
    let props = (
        ack_properties(v),
        option::of(1u16..),
        option::of(0u8..=1),
        option::of(utf8()),
    )
        .prop_map(move |(mut p, receive_maximum, maximum_qos, assigned)| {
            if v == V5 {
                p.receive_maximum = receive_maximum;
                p.maximum_qos = maximum_qos;
                p.assigned_client_identifier = assigned;
            }
            p
        });
    (any::<bool>(), reason(reasons), props)
        .prop_map(|(session_present, reason, properties)| {
            Packet::ConnAck(ConnAck {
                session_present: session_present && !reason.is_error(),
                reason,
                properties,
            })
        })
        .boxed()
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        0u8..3,
        pid(),
        any::<bool>(),
        any::<bool>(),
        topic(),
        option::of(1u16..),
        option::of(utf8()),
        payload(),
        any::<bool>(),
    )
        .prop_map(
            move |(q, id, dup, retain, topic, alias, content_type, payload, alias_only)| {
                let delivery = match q {
                    0 => Delivery::AtMostOnce,
                    1 => Delivery::AtLeastOnce(id),
                    _ => Delivery::ExactlyOnce(id),
                };
                let mut properties = Properties::default();
                let mut topic = topic;
                if v == V5 {
                    properties.content_type = content_type;
                    properties.topic_alias = alias;
                    if alias.is_some() && alias_only {
                        // an alias may replace the topic name (§3.3.2.3.4)
                        topic = Utf8::new("");
                    }
                }
                Packet::Publish(Publish {
                    dup: dup && q > 0,
                    delivery,
                    retain,
                    topic,
                    properties,
                    payload,
                })
            },
        )
}

fn pub_resp(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let resp = move |allowed: &'static [u8]| {
        let reason = if v == V5 {
            reason(allowed).boxed()
        } else {
            Just(ReasonCode::SUCCESS).boxed()
        };
        (pid(), reason, ack_properties(v)).prop_map(|(packet_id, reason, properties)| PubResp {
            packet_id,
            reason,
            properties,
        })
    };
    prop_oneof![
        resp(PUBACK_REASONS).prop_map(Packet::PubAck),
        resp(PUBACK_REASONS).prop_map(Packet::PubRec),
        resp(PUBREL_REASONS).prop_map(Packet::PubRel),
        resp(PUBREL_REASONS).prop_map(Packet::PubComp),
    ]
    .boxed()
}

fn options(v: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    (qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(move |(qos, nl, rap, rh)| {
        let mut o = SubscriptionOptions::new(qos);
        if v == V5 {
            o.no_local = nl;
            o.retain_as_published = rap;
            o.retain_handling = match rh {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendIfNew,
                _ => RetainHandling::DoNotSend,
            };
        }
        o
    })
}

fn subscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let subs = vec(
        (utf8(), options(v)).prop_map(|(filter, options)| Subscription { filter, options }),
        1..4,
    );
    (
        pid(),
        option::of(1u32..=268_435_455),
        user_properties(),
        subs,
    )
        .prop_map(move |(packet_id, sub_id, user_properties, subscriptions)| {
            let mut properties = Properties::default();
            if v == V5 {
                properties.subscription_identifiers.extend(sub_id);
                properties.user_properties = user_properties;
            }
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                subscriptions,
            })
        })
}

fn suback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let allowed = if v == V5 {
        SUBACK_REASONS
    } else {
        SUBACK_V311_CODES
    };
    (pid(), ack_properties(v), vec(reason(allowed), 1..5)).prop_map(
        |(packet_id, properties, reasons)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reasons,
            })
        },
    )
}

fn unsubscribe(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (pid(), user_properties(), vec(utf8(), 1..4)).prop_map(
        move |(packet_id, user_properties, filters)| {
            let mut properties = Properties::default();
            if v == V5 {
                properties.user_properties = user_properties;
            }
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        },
    )
}

fn unsuback(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let n = if v == V5 { 1..5 } else { 0..1 };
    (pid(), ack_properties(v), vec(reason(UNSUBACK_REASONS), n)).prop_map(
        |(packet_id, properties, reasons)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                reasons,
            })
        },
    )
}

fn disconnect(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    if v == V3 {
        return Just(Packet::Disconnect(Disconnect::normal())).boxed();
    }
    (
        reason(DISCONNECT_REASONS),
        ack_properties(v),
        option::of(any::<u32>()),
        option::of(utf8()),
    )
        .prop_map(|(reason, mut properties, expiry, server)| {
            properties.session_expiry_interval = expiry;
            properties.server_reference = server;
            Packet::Disconnect(Disconnect { reason, properties })
        })
        .boxed()
}

fn auth() -> impl Strategy<Value = Packet> {
    (
        reason(AUTH_REASONS),
        ack_properties(V5),
        option::of(utf8()),
        option::of(payload()),
    )
        .prop_map(|(reason, mut properties, method, data)| {
            properties.authentication_method = method;
            properties.authentication_data = data;
            Packet::Auth(Auth { reason, properties })
        })
}

/// Any packet that `v` can carry without loss.
fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(v),
        connack(v),
        publish(v),
        pub_resp(v),
        subscribe(v),
        suback(v),
        unsubscribe(v),
        unsuback(v),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(v),
    ];
    if v == V5 {
        prop_oneof![10 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(V3), Just(V5)]
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), packet(v)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_packet_round_trips((v, p) in versioned_packet()) {
        let frame = encoded(&p, v);
        let mut buf = BytesMut::from(&frame[..]);
        prop_assert_eq!(decode(&mut buf, v, MAX), Ok(Some(p.clone())));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn a_packet_fed_byte_by_byte_is_incomplete_until_its_last_byte(
        (v, p) in versioned_packet(),
    ) {
        let frame = encoded(&p, v);
        let mut buf = BytesMut::new();
        for (i, b) in frame.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let got = decode(&mut buf, v, MAX);
            if i + 1 < frame.len() {
                prop_assert_eq!(got, Ok(None));
                prop_assert_eq!(buf.len(), i + 1, "an incomplete frame stays buffered");
            } else {
                prop_assert_eq!(got, Ok(Some(p.clone())));
            }
        }
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn decode_never_panics(v in version(), bytes in vec(any::<u8>(), 0..96), max in 0u32..256) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(p)) = decode(&mut buf, v, max) {
            // whatever decodes re-encodes to something that decodes to the same packet
            let mut again = BytesMut::from(&encoded(&p, v)[..]);
            prop_assert_eq!(decode(&mut again, v, u32::MAX), Ok(Some(p)));
        }
    }

    #[test]
    fn decode_never_panics_on_valid_headers(
        v in version(),
        first in prop::sample::select(vec![
            0x10u8, 0x20, 0x30, 0x32, 0x3D, 0x40, 0x50, 0x62, 0x70, 0x82, 0x90, 0xA2, 0xB0,
            0xC0, 0xD0, 0xE0, 0xF0,
        ]),
        body in vec(any::<u8>(), 0..64),
    ) {
        let mut frame = vec![first];
        fixed_header::encode_remaining_length(body.len() as u32, &mut frame);
        frame.extend_from_slice(&body);
        let mut buf = BytesMut::from(&frame[..]);
        if let Ok(Some(p)) = decode(&mut buf, v, MAX) {
            prop_assert!(buf.is_empty());
            let mut again = BytesMut::from(&encoded(&p, v)[..]);
            prop_assert_eq!(decode(&mut again, v, u32::MAX), Ok(Some(p)));
        }
    }
}
