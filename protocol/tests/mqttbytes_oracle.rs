#![allow(clippy::unwrap_used, clippy::expect_used)]
//! mqttbytes 0.6 (rumqtt's codec) as an independent oracle: packets it encodes decode with ours
//! to the same fields, and packets we encode decode with it to the same fields, for MQTT 3.1.1
//! (its `v4`) and MQTT 5 (its `v5`). Where both encoders must produce canonical bytes, the bytes
//! are compared too.
//!
//! Left out where mqttbytes is wrong: a v5 DISCONNECT with remaining length 0 (it answers
//! `PayloadRequired`) or 1 (it wants a property length), a v5 CONNACK without properties (it
//! omits the property length), and its "need more bytes" answer for bodies that are merely
//! malformed.

use bytes::{Bytes, BytesMut};
use mast_protocol::ProtocolVersion::{self, V5, V311};
use mast_protocol::ack::PubResp;
use mast_protocol::connect::{Connect, QoS, Will};
use mast_protocol::disconnect::Disconnect;
use mast_protocol::packet::{self, Packet};
use mast_protocol::primitives::Utf8;
use mast_protocol::properties::Properties;
use mast_protocol::publish::{Delivery, PacketId, Publish};
use mast_protocol::reason::ReasonCode;
use mast_protocol::subscribe::{
    RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, Unsubscribe,
};
use mqttbytes::{QoS as TheirQoS, v4, v5};

const MAX: u32 = 1 << 20;

fn id(n: u16) -> PacketId {
    PacketId(std::num::NonZeroU16::new(n).unwrap())
}

fn decode_ours(mut buf: BytesMut, v: ProtocolVersion) -> Packet {
    let p = packet::decode(&mut buf, v, MAX)
        .unwrap()
        .expect("a whole packet");
    assert!(buf.is_empty(), "one packet, nothing left over");
    p
}

fn encode_ours(p: &Packet, v: ProtocolVersion) -> BytesMut {
    let mut out = Vec::new();
    packet::encode(p, v, &mut out);
    BytesMut::from(&out[..])
}

fn decode_v4(mut buf: BytesMut) -> v4::Packet {
    let p = v4::read(&mut buf, 1 << 20).unwrap();
    assert!(buf.is_empty());
    p
}

fn decode_v5(mut buf: BytesMut) -> v5::Packet {
    let p = v5::read(&mut buf, 1 << 20).unwrap();
    assert!(buf.is_empty());
    p
}

fn qos(q: TheirQoS) -> QoS {
    match q {
        TheirQoS::AtMostOnce => QoS::AtMostOnce,
        TheirQoS::AtLeastOnce => QoS::AtLeastOnce,
        TheirQoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn user_props(ours: &Properties) -> Vec<(String, String)> {
    ours.user_properties
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.as_str().to_owned()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn ours_pairs(p: &[(&str, &str)]) -> Vec<(Utf8, Utf8)> {
    p.iter()
        .map(|(k, v)| (Utf8::new(k), Utf8::new(v)))
        .collect()
}

fn our_connect(p: Packet) -> Connect {
    match p {
        Packet::Connect(c) => *c,
        other => panic!("expected CONNECT, got {other:?}"),
    }
}

#[test]
fn connect_v311_agrees_both_ways() {
    let mut theirs = v4::Connect::new("truck_1");
    theirs.keep_alive = 45;
    theirs.clean_session = false;
    theirs.last_will = Some(v4::LastWill::new(
        "devices/truck_1/status",
        "offline",
        TheirQoS::AtLeastOnce,
        true,
    ));
    theirs.set_login("user", "pass");
    let mut buf = BytesMut::new();
    theirs.write(&mut buf).unwrap();
    let wire = buf.clone();

    // the server decodes before it knows the level: pass V5
    let c = our_connect(decode_ours(buf, V5));
    assert_eq!(c.version, V311);
    assert_eq!((c.client_id.as_str(), c.keep_alive), ("truck_1", 45));
    assert!(!c.clean_start);
    let will = c.will.as_ref().unwrap();
    assert_eq!(will.topic.as_str(), "devices/truck_1/status");
    assert_eq!(&will.payload[..], b"offline");
    assert_eq!((will.qos, will.retain), (QoS::AtLeastOnce, true));
    assert_eq!(c.username.as_ref().unwrap().as_str(), "user");
    assert_eq!(c.password.as_deref(), Some(&b"pass"[..]));

    // ours → theirs, and the bytes are the same
    let ours = encode_ours(&Packet::Connect(Box::new(c)), V311);
    assert_eq!(ours, wire);
    let v4::Packet::Connect(back) = decode_v4(ours) else {
        panic!("expected CONNECT");
    };
    assert_eq!(back, theirs);
}

#[test]
fn connect_v5_agrees_both_ways() {
    let mut theirs = v5::Connect::new("sensor-9");
    theirs.keep_alive = 30;
    theirs.properties = Some(v5::ConnectProperties {
        session_expiry_interval: Some(3600),
        receive_maximum: Some(20),
        max_packet_size: Some(65_536),
        topic_alias_max: Some(8),
        request_response_info: Some(1),
        request_problem_info: Some(0),
        user_properties: pairs(&[("site", "north")]),
        authentication_method: None,
        authentication_data: None,
    });
    let mut will = v5::LastWill::new("s/9/lwt", "gone", TheirQoS::ExactlyOnce, false);
    will.properties = Some(v5::WillProperties {
        delay_interval: Some(10),
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        content_type: Some("text/plain".into()),
        response_topic: None,
        correlation_data: None,
        user_properties: vec![],
    });
    theirs.last_will = Some(will);
    theirs.set_login("u", "p");
    let mut buf = BytesMut::new();
    theirs.write(&mut buf).unwrap();

    let c = our_connect(decode_ours(buf, V5));
    assert_eq!(c.version, V5);
    assert_eq!((c.client_id.as_str(), c.keep_alive), ("sensor-9", 30));
    assert!(c.clean_start);
    let p = &c.properties;
    assert_eq!(p.session_expiry_interval, Some(3600));
    assert_eq!(p.receive_maximum, Some(20));
    assert_eq!(p.maximum_packet_size, Some(65_536));
    assert_eq!(p.topic_alias_maximum, Some(8));
    assert_eq!(p.request_response_information, Some(true));
    assert_eq!(p.request_problem_information, Some(false));
    assert_eq!(user_props(p), pairs(&[("site", "north")]));
    let w = c.will.as_ref().unwrap();
    assert_eq!(
        (w.topic.as_str(), &w.payload[..]),
        ("s/9/lwt", &b"gone"[..])
    );
    assert_eq!((w.qos, w.retain), (QoS::ExactlyOnce, false));
    assert_eq!(w.properties.will_delay_interval, Some(10));
    assert_eq!(w.properties.payload_format_utf8, Some(true));
    assert_eq!(w.properties.message_expiry_interval, Some(60));
    assert_eq!(
        w.properties.content_type.as_ref().map(Utf8::as_str),
        Some("text/plain")
    );

    let v5::Packet::Connect(back) = decode_v5(encode_ours(&Packet::Connect(Box::new(c)), V5))
    else {
        panic!("expected CONNECT");
    };
    assert_eq!(back, theirs);
}

#[test]
fn our_v5_connect_without_properties_reads_in_mqttbytes() {
    let c = Connect {
        version: V5,
        clean_start: true,
        keep_alive: 0,
        properties: Properties::default(),
        client_id: Utf8::new(""),
        will: Some(Will {
            topic: Utf8::new("t"),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
        }),
        username: None,
        password: None,
    };
    let v5::Packet::Connect(theirs) = decode_v5(encode_ours(&Packet::Connect(Box::new(c)), V5))
    else {
        panic!("expected CONNECT");
    };
    assert_eq!(theirs.client_id, "");
    assert!(theirs.properties.is_none());
    let will = theirs.last_will.unwrap();
    assert_eq!((will.topic.as_str(), will.message.len()), ("t", 0));
}

#[test]
fn publish_agrees_both_ways() {
    for q in [
        TheirQoS::AtMostOnce,
        TheirQoS::AtLeastOnce,
        TheirQoS::ExactlyOnce,
    ] {
        // 3.1.1
        let mut theirs = v4::Publish::new("devices/d1/telemetry", q, r#"{"t":21.5}"#);
        theirs.retain = true;
        if q != TheirQoS::AtMostOnce {
            theirs.pkid = 77;
            theirs.dup = true;
        }
        let mut buf = BytesMut::new();
        theirs.write(&mut buf).unwrap();
        let wire = buf.clone();
        let Packet::Publish(p) = decode_ours(buf, V311) else {
            panic!("expected PUBLISH");
        };
        assert_eq!(p.topic.as_str(), "devices/d1/telemetry");
        assert_eq!(&p.payload[..], br#"{"t":21.5}"#);
        assert_eq!(p.delivery.qos(), q as u8);
        assert_eq!(
            p.delivery.packet_id().map(|i| i.0.get()),
            (q as u8 > 0).then_some(77)
        );
        assert_eq!((p.retain, p.dup), (true, q != TheirQoS::AtMostOnce));
        let ours = encode_ours(&Packet::Publish(p), V311);
        assert_eq!(ours, wire);
        let v4::Packet::Publish(back) = decode_v4(ours) else {
            panic!("expected PUBLISH");
        };
        assert_eq!(back, theirs);

        // 5.0, with properties
        let mut theirs = v5::Publish::new("devices/d1/telemetry", q, "21.5");
        if q != TheirQoS::AtMostOnce {
            theirs.pkid = 65535;
        }
        theirs.properties = Some(v5::PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(600),
            topic_alias: Some(3),
            response_topic: Some("devices/d1/replies".into()),
            correlation_data: Some(Bytes::from_static(b"\x01\x02")),
            user_properties: pairs(&[("unit", "C"), ("unit", "K")]),
            subscription_identifiers: vec![],
            content_type: Some("text/plain; format=line".into()),
        });
        let mut buf = BytesMut::new();
        theirs.write(&mut buf).unwrap();
        let Packet::Publish(p) = decode_ours(buf, V5) else {
            panic!("expected PUBLISH");
        };
        let props = &p.properties;
        assert_eq!(props.payload_format_utf8, Some(true));
        assert_eq!(props.message_expiry_interval, Some(600));
        assert_eq!(props.topic_alias, Some(3));
        assert_eq!(
            props.response_topic.as_ref().map(Utf8::as_str),
            Some("devices/d1/replies")
        );
        assert_eq!(props.correlation_data.as_deref(), Some(&b"\x01\x02"[..]));
        assert_eq!(user_props(props), pairs(&[("unit", "C"), ("unit", "K")]));
        assert_eq!(
            props.content_type.as_ref().map(Utf8::as_str),
            Some("text/plain; format=line")
        );
        assert_eq!(&p.payload[..], b"21.5");
        let v5::Packet::Publish(back) = decode_v5(encode_ours(&Packet::Publish(p), V5)) else {
            panic!("expected PUBLISH");
        };
        assert_eq!(back, theirs);
    }
}

#[test]
fn our_publish_without_properties_reads_in_mqttbytes_v5() {
    let p = Publish {
        dup: false,
        delivery: Delivery::AtLeastOnce(id(9)),
        retain: false,
        topic: Utf8::new("a/b"),
        properties: Properties::default(),
        payload: Bytes::from_static(b"x"),
    };
    let v5::Packet::Publish(theirs) = decode_v5(encode_ours(&Packet::Publish(p), V5)) else {
        panic!("expected PUBLISH");
    };
    assert_eq!((theirs.topic.as_str(), theirs.pkid), ("a/b", 9));
    assert!(theirs.properties.is_none());
    assert_eq!(&theirs.payload[..], b"x");
}

#[test]
fn puback_agrees_both_ways() {
    // 3.1.1
    let mut buf = BytesMut::new();
    v4::PubAck::new(10).write(&mut buf).unwrap();
    let wire = buf.clone();
    assert_eq!(decode_ours(buf, V311), Packet::PubAck(PubResp::new(id(10))));
    let ours = encode_ours(&Packet::PubAck(PubResp::new(id(10))), V311);
    assert_eq!(ours, wire);
    assert_eq!(decode_v4(ours), v4::Packet::PubAck(v4::PubAck::new(10)));

    // 5.0: the short form, a reason alone, a reason with properties
    let short = v5::PubAck::new(10);
    let mut reason_only = v5::PubAck::new(11);
    reason_only.reason = v5::PubAckReason::NoMatchingSubscribers;
    let mut with_props = v5::PubAck::new(12);
    with_props.reason = v5::PubAckReason::QuotaExceeded;
    with_props.properties = Some(v5::PubAckProperties {
        reason_string: Some("slow down".into()),
        user_properties: pairs(&[("k", "v")]),
    });
    let mut expected = PubResp::with_reason(id(12), ReasonCode::QUOTA_EXCEEDED);
    expected.properties.reason_string = Some(Utf8::new("slow down"));
    expected.properties.user_properties = ours_pairs(&[("k", "v")]);
    for (theirs, ours) in [
        (short, PubResp::new(id(10))),
        (
            reason_only,
            PubResp::with_reason(id(11), ReasonCode::NO_MATCHING_SUBSCRIBERS),
        ),
        (with_props, expected),
    ] {
        let mut buf = BytesMut::new();
        theirs.write(&mut buf).unwrap();
        let wire = buf.clone();
        assert_eq!(decode_ours(buf, V5), Packet::PubAck(ours.clone()));
        let encoded = encode_ours(&Packet::PubAck(ours), V5);
        assert_eq!(encoded, wire, "both pick the same form");
        assert_eq!(decode_v5(encoded), v5::Packet::PubAck(theirs));
    }
}

#[test]
fn subscribe_agrees_both_ways() {
    // 3.1.1
    let mut theirs = v4::Subscribe::new("devices/+/telemetry", TheirQoS::AtLeastOnce);
    theirs.pkid = 260;
    theirs.add("#".into(), TheirQoS::ExactlyOnce);
    theirs.add("a/b".into(), TheirQoS::AtMostOnce);
    let mut buf = BytesMut::new();
    theirs.write(&mut buf).unwrap();
    let wire = buf.clone();
    let Packet::Subscribe(s) = decode_ours(buf, V311) else {
        panic!("expected SUBSCRIBE");
    };
    assert_eq!(s.packet_id, id(260));
    let got: Vec<(&str, QoS)> = s
        .subscriptions
        .iter()
        .map(|s| (s.filter.as_str(), s.options.qos))
        .collect();
    assert_eq!(
        got,
        [
            ("devices/+/telemetry", QoS::AtLeastOnce),
            ("#", QoS::ExactlyOnce),
            ("a/b", QoS::AtMostOnce),
        ]
    );
    let ours = encode_ours(&Packet::Subscribe(s), V311);
    assert_eq!(ours, wire);
    let v4::Packet::Subscribe(back) = decode_v4(ours) else {
        panic!("expected SUBSCRIBE");
    };
    assert_eq!(back, theirs);

    // 5.0: every option, a subscription identifier and a user property
    let mut theirs = v5::Subscribe::new("$share/g/devices/#", TheirQoS::AtLeastOnce);
    theirs.pkid = 7;
    let mut f = v5::SubscribeFilter::new("alerts/+".into(), TheirQoS::ExactlyOnce);
    f.set_nolocal(true)
        .set_preserve_retain(true)
        .set_retain_forward_rule(v5::RetainForwardRule::Never);
    theirs.filters.push(f);
    let mut f = v5::SubscribeFilter::new("x".into(), TheirQoS::AtMostOnce);
    f.set_retain_forward_rule(v5::RetainForwardRule::OnNewSubscribe);
    theirs.filters.push(f);
    theirs.properties = Some(v5::SubscribeProperties {
        id: Some(300_000),
        user_properties: pairs(&[("k", "v")]),
    });
    let mut buf = BytesMut::new();
    theirs.write(&mut buf).unwrap();
    let wire = buf.clone();
    let Packet::Subscribe(s) = decode_ours(buf, V5) else {
        panic!("expected SUBSCRIBE");
    };
    assert_eq!(s.packet_id, id(7));
    assert_eq!(s.properties.subscription_identifiers, [300_000]);
    assert_eq!(user_props(&s.properties), pairs(&[("k", "v")]));
    for (ours, theirs) in s.subscriptions.iter().zip(&theirs.filters) {
        assert_eq!(ours.filter.as_str(), theirs.path);
        assert_eq!(ours.options.qos, qos(theirs.qos));
        assert_eq!(ours.options.no_local, theirs.nolocal);
        assert_eq!(ours.options.retain_as_published, theirs.preserve_retain);
        let rh = match theirs.retain_forward_rule {
            v5::RetainForwardRule::OnEverySubscribe => RetainHandling::SendAtSubscribe,
            v5::RetainForwardRule::OnNewSubscribe => RetainHandling::SendIfNew,
            v5::RetainForwardRule::Never => RetainHandling::DoNotSend,
        };
        assert_eq!(ours.options.retain_handling, rh);
    }
    assert_eq!(s.subscriptions.len(), 3);
    let ours = encode_ours(&Packet::Subscribe(s), V5);
    assert_eq!(ours, wire);
    let v5::Packet::Subscribe(back) = decode_v5(ours) else {
        panic!("expected SUBSCRIBE");
    };
    assert_eq!(back, theirs);
}

#[test]
fn our_subscribe_reads_in_mqttbytes_v5() {
    let s = Subscribe {
        packet_id: id(1),
        properties: Properties::default(),
        subscriptions: vec![Subscription {
            filter: Utf8::new("a/#"),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: false,
                retain_handling: RetainHandling::SendIfNew,
            },
        }],
    };
    let v5::Packet::Subscribe(theirs) = decode_v5(encode_ours(&Packet::Subscribe(s), V5)) else {
        panic!("expected SUBSCRIBE");
    };
    assert_eq!(theirs.pkid, 1);
    let f = &theirs.filters[0];
    assert_eq!((f.path.as_str(), f.qos), ("a/#", TheirQoS::AtLeastOnce));
    assert!(f.nolocal && !f.preserve_retain);
    assert_eq!(f.retain_forward_rule, v5::RetainForwardRule::OnNewSubscribe);
}

#[test]
fn suback_agrees_both_ways() {
    // 3.1.1
    let theirs = v4::SubAck::new(
        15,
        vec![
            v4::SubscribeReasonCode::Success(TheirQoS::AtLeastOnce),
            v4::SubscribeReasonCode::Failure,
            v4::SubscribeReasonCode::Success(TheirQoS::ExactlyOnce),
        ],
    );
    let mut buf = BytesMut::new();
    theirs.write(&mut buf).unwrap();
    let wire = buf.clone();
    let ours = SubAck {
        packet_id: id(15),
        properties: Properties::default(),
        reasons: vec![
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::UNSPECIFIED_ERROR,
            ReasonCode::GRANTED_QOS_2,
        ],
    };
    assert_eq!(decode_ours(buf, V311), Packet::SubAck(ours.clone()));
    // a v5-only error is written as the 3.1.1 failure code
    let mut v5_reasons = ours.clone();
    v5_reasons.reasons[1] = ReasonCode::TOPIC_FILTER_INVALID;
    let encoded = encode_ours(&Packet::SubAck(v5_reasons), V311);
    assert_eq!(encoded, wire);
    assert_eq!(decode_v4(encoded), v4::Packet::SubAck(theirs));

    // 5.0
    let mut theirs = v5::SubAck::new(
        16,
        vec![
            v5::SubscribeReasonCode::QoS0,
            v5::SubscribeReasonCode::TopicFilterInvalid,
            v5::SubscribeReasonCode::SharedSubscriptionsNotSupported,
        ],
    );
    theirs.properties = Some(v5::SubAckProperties {
        reason_string: Some("partly".into()),
        user_properties: vec![],
    });
    let mut buf = BytesMut::new();
    theirs.write(&mut buf).unwrap();
    let wire = buf.clone();
    let mut ours = SubAck {
        packet_id: id(16),
        properties: Properties::default(),
        reasons: vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::TOPIC_FILTER_INVALID,
            ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
        ],
    };
    ours.properties.reason_string = Some(Utf8::new("partly"));
    assert_eq!(decode_ours(buf, V5), Packet::SubAck(ours.clone()));
    let encoded = encode_ours(&Packet::SubAck(ours), V5);
    assert_eq!(encoded, wire);
    assert_eq!(decode_v5(encoded), v5::Packet::SubAck(theirs));
}

#[test]
fn unsubscribe_agrees_both_ways() {
    // 3.1.1
    let mut theirs = v4::Unsubscribe::new("devices/+/telemetry");
    theirs.pkid = 3;
    theirs.topics.push("#".into());
    let mut buf = BytesMut::new();
    theirs.write(&mut buf).unwrap();
    let wire = buf.clone();
    let ours = Unsubscribe {
        packet_id: id(3),
        properties: Properties::default(),
        filters: vec![Utf8::new("devices/+/telemetry"), Utf8::new("#")],
    };
    assert_eq!(decode_ours(buf, V311), Packet::Unsubscribe(ours.clone()));
    let encoded = encode_ours(&Packet::Unsubscribe(ours), V311);
    assert_eq!(encoded, wire);
    assert_eq!(decode_v4(encoded), v4::Packet::Unsubscribe(theirs));

    // 5.0
    let mut theirs = v5::Unsubscribe::new("a/b");
    theirs.pkid = 4;
    theirs.properties = Some(v5::UnsubscribeProperties {
        user_properties: pairs(&[("why", "done")]),
    });
    let mut buf = BytesMut::new();
    theirs.write(&mut buf).unwrap();
    let wire = buf.clone();
    let mut ours = Unsubscribe {
        packet_id: id(4),
        properties: Properties::default(),
        filters: vec![Utf8::new("a/b")],
    };
    ours.properties.user_properties = ours_pairs(&[("why", "done")]);
    assert_eq!(decode_ours(buf, V5), Packet::Unsubscribe(ours.clone()));
    let encoded = encode_ours(&Packet::Unsubscribe(ours), V5);
    assert_eq!(encoded, wire);
    assert_eq!(decode_v5(encoded), v5::Packet::Unsubscribe(theirs));
}

#[test]
fn pingreq_agrees_both_ways() {
    let mut buf = BytesMut::new();
    v4::PingReq.write(&mut buf).unwrap();
    assert_eq!(decode_ours(buf.clone(), V311), Packet::PingReq);
    assert_eq!(encode_ours(&Packet::PingReq, V311), buf);
    assert_eq!(
        decode_v4(encode_ours(&Packet::PingReq, V311)),
        v4::Packet::PingReq
    );
    let mut buf = BytesMut::new();
    v5::PingReq.write(&mut buf).unwrap();
    assert_eq!(decode_ours(buf.clone(), V5), Packet::PingReq);
    assert_eq!(
        decode_v5(encode_ours(&Packet::PingReq, V5)),
        v5::Packet::PingReq
    );
    // and PINGRESP
    assert_eq!(
        decode_v4(encode_ours(&Packet::PingResp, V311)),
        v4::Packet::PingResp
    );
}

#[test]
fn connack_agrees_where_mqttbytes_is_right() {
    // 3.1.1: the six return codes
    for (code, reason) in [
        (v4::ConnectReturnCode::Success, ReasonCode::SUCCESS),
        (
            v4::ConnectReturnCode::RefusedProtocolVersion,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        ),
        (
            v4::ConnectReturnCode::BadClientId,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
        ),
        (
            v4::ConnectReturnCode::ServiceUnavailable,
            ReasonCode::SERVER_UNAVAILABLE,
        ),
        (
            v4::ConnectReturnCode::BadUserNamePassword,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
        ),
        (
            v4::ConnectReturnCode::NotAuthorized,
            ReasonCode::NOT_AUTHORIZED,
        ),
    ] {
        let session_present = code == v4::ConnectReturnCode::Success;
        let theirs = v4::ConnAck::new(code, session_present);
        let mut buf = BytesMut::new();
        theirs.write(&mut buf).unwrap();
        let Packet::ConnAck(ours) = decode_ours(buf.clone(), V311) else {
            panic!("expected CONNACK");
        };
        assert_eq!(
            (ours.session_present, ours.reason),
            (session_present, reason)
        );
        let encoded = encode_ours(&Packet::ConnAck(ours), V311);
        assert_eq!(encoded, buf);
        assert_eq!(decode_v4(encoded), v4::Packet::ConnAck(theirs));
    }

    // 5.0, with properties (mqttbytes leaves out an empty property block, which is wrong)
    let mut props = v5::ConnAckProperties::new();
    props.assigned_client_identifier = Some("auto-1".into());
    props.receive_max = Some(32);
    props.max_qos = Some(1);
    props.topic_alias_max = Some(10);
    let mut theirs = v5::ConnAck::new(v5::ConnectReturnCode::Success, true);
    theirs.properties = Some(props);
    let mut buf = BytesMut::new();
    theirs.write(&mut buf).unwrap();
    let Packet::ConnAck(ours) = decode_ours(buf, V5) else {
        panic!("expected CONNACK");
    };
    assert!(ours.session_present);
    assert_eq!(ours.reason, ReasonCode::SUCCESS);
    let p = &ours.properties;
    assert_eq!(
        p.assigned_client_identifier.as_ref().map(Utf8::as_str),
        Some("auto-1")
    );
    assert_eq!(
        (p.receive_maximum, p.maximum_qos, p.topic_alias_maximum),
        (Some(32), Some(1), Some(10))
    );
    assert_eq!(
        decode_v5(encode_ours(&Packet::ConnAck(ours), V5)),
        v5::Packet::ConnAck(theirs)
    );
}

#[test]
fn disconnect_agrees_where_mqttbytes_is_right() {
    // a reason code without properties: we read mqttbytes' one-byte body, and write the
    // property length explicitly (mqttbytes, like rumqttc, cannot read a body without it,
    // which §3.14.2.2.1 allows), so mqttbytes reads ours
    let mut theirs = v5::Disconnect::new();
    theirs.reason_code = v5::DisconnectReasonCode::ServerShuttingDown;
    let mut buf = BytesMut::new();
    theirs.write(&mut buf).unwrap();
    let wire = buf.clone();
    let ours = Disconnect::with_reason(ReasonCode::SERVER_SHUTTING_DOWN);
    assert_eq!(decode_ours(buf, V5), Packet::Disconnect(ours.clone()));
    let encoded = encode_ours(&Packet::Disconnect(ours), V5);
    assert_eq!(&encoded[..], &[0xE0, 0x02, 0x8B, 0x00]);
    assert_eq!(&wire[..], &[0xE0, 0x01, 0x8B]);
    assert_eq!(decode_v5(encoded), v5::Packet::Disconnect(theirs));

    // a reason code with properties: both ways
    let mut props = v5::DisconnectProperties::new();
    props.session_expiry_interval = Some(0);
    props.reason_string = Some("maintenance".into());
    props.server_reference = Some("other:1883".into());
    let mut theirs = v5::Disconnect::new();
    theirs.reason_code = v5::DisconnectReasonCode::UseAnotherServer;
    theirs.properties = Some(props);
    let mut buf = BytesMut::new();
    theirs.write(&mut buf).unwrap();
    let mut ours = Disconnect::with_reason(ReasonCode::USE_ANOTHER_SERVER);
    ours.properties.session_expiry_interval = Some(0);
    ours.properties.reason_string = Some(Utf8::new("maintenance"));
    ours.properties.server_reference = Some(Utf8::new("other:1883"));
    assert_eq!(decode_ours(buf, V5), Packet::Disconnect(ours.clone()));
    let encoded = encode_ours(&Packet::Disconnect(ours), V5);
    assert_eq!(decode_v5(encoded), v5::Packet::Disconnect(theirs));

    // remaining length 0 is a normal disconnection (§3.14.2.1); mqttbytes refuses it
    let mut buf = BytesMut::new();
    v5::Disconnect::new().write(&mut buf).unwrap();
    assert_eq!(&buf[..], [0xE0, 0x00]);
    assert!(v5::read(&mut buf.clone(), 1 << 20).is_err());
    assert_eq!(
        decode_ours(buf, V5),
        Packet::Disconnect(Disconnect::normal())
    );
}
