//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (MQTT 3.1.1 §3.8–3.11, MQTT 5.0 §3.8–3.11).
//!
//! Topic filters are checked only as UTF-8 strings (§1.5.4) here. Wildcard placement is the
//! broker's business: a bad filter is answered per filter in the SUBACK (0x8F, or 0x80 on
//! 3.1.1) rather than by closing the connection, and `$share/...` filters are parsed there too.

use bytes::Bytes;

use crate::ProtocolVersion;
use crate::connect::QoS;
use crate::packet::{
    ACK_PROPERTIES, DecodeError, check_properties, check_reason, finish, read_packet_id,
    read_properties,
};
use crate::primitives::{Reader, Utf8, put_string, put_u16};
use crate::properties::Properties;
use crate::publish::PacketId;
use crate::reason::ReasonCode;

/// Reasons a v5 SUBACK may carry (MQTT 5.0 §3.9.3).
pub(crate) const SUBACK_REASONS: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];

/// Return codes of a 3.1.1 SUBACK (MQTT 3.1.1 §3.9.3).
pub(crate) const SUBACK_V311_CODES: &[u8] = &[0x00, 0x01, 0x02, 0x80];

/// Reasons a v5 UNSUBACK may carry (MQTT 5.0 §3.11.3).
pub(crate) const UNSUBACK_REASONS: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];

/// Properties of a SUBSCRIBE: Subscription Identifier, User Property (MQTT 5.0 §3.8.2.1).
const SUBSCRIBE_PROPERTIES: &[u8] = &[0x0B, 0x26];

/// The start every packet of this module shares: packet id, then (MQTT 5) the property block,
/// checked against the properties the packet may carry.
fn read_head(
    version: ProtocolVersion,
    body: Bytes,
    allowed: &[u8],
    what: &'static str,
) -> Result<(Reader, PacketId, Properties), DecodeError> {
    let mut r = Reader::new(body);
    let packet_id = read_packet_id(&mut r)?;
    let properties = read_properties(&mut r, version)?;
    check_properties(&properties, allowed, what)?;
    Ok((r, packet_id, properties))
}

/// Writes what [`read_head`] reads.
fn write_head(out: &mut Vec<u8>, version: ProtocolVersion, id: PacketId, properties: &Properties) {
    put_u16(out, id.0.get());
    if version == ProtocolVersion::V5 {
        properties.encode(out);
    }
}

/// Properties of an UNSUBSCRIBE: User Property (MQTT 5.0 §3.10.2.1).
const UNSUBSCRIBE_PROPERTIES: &[u8] = &[0x26];

/// When the server sends retained messages for a new subscription (MQTT 5.0 §3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: at every subscribe (the only 3.1.1 behaviour).
    #[default]
    SendAtSubscribe = 0,
    /// 1: only if the subscription did not exist.
    SendIfNew = 1,
    /// 2: never.
    DoNotSend = 2,
}

/// The options byte after each topic filter (MQTT 5.0 §3.8.3.1; only the QoS in 3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionOptions {
    /// Maximum QoS the server may deliver at.
    pub qos: QoS,
    /// Do not send the subscriber its own messages.
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded messages.
    pub retain_as_published: bool,
    /// Retained messages at subscribe time.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// `qos` with every MQTT 5 option at its default (the 3.1.1 behaviour).
    pub fn new(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    }

    /// Reads the options byte. Reserved bits set are malformed (3.1.1 [MQTT-3.8.3-4], 5.0
    /// [MQTT-3.8.3-5]); so is QoS 3 in 3.1.1, while QoS 3 and Retain Handling 3 are protocol
    /// errors in MQTT 5 (§3.8.3.1).
    pub fn decode(version: ProtocolVersion, b: u8) -> Result<SubscriptionOptions, DecodeError> {
        let v5 = version == ProtocolVersion::V5;
        let reserved = if v5 { 0b1100_0000 } else { 0b1111_1100 };
        if b & reserved != 0 {
            return Err(DecodeError::Malformed(
                "reserved subscription option bits set",
            ));
        }
        let qos = match b & 0b11 {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            _ if v5 => return Err(DecodeError::Protocol("subscription QoS 3")),
            _ => return Err(DecodeError::Malformed("subscription QoS 3")),
        };
        let retain_handling = match (b >> 4) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::Protocol("retain handling 3")),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: b & 0b0100 != 0,
            retain_as_published: b & 0b1000 != 0,
            retain_handling,
        })
    }

    /// The options byte; 3.1.1 carries the QoS only.
    pub fn encode(self, version: ProtocolVersion) -> u8 {
        let qos = self.qos as u8;
        if version != ProtocolVersion::V5 {
            return qos;
        }
        qos | (u8::from(self.no_local) << 2)
            | (u8::from(self.retain_as_published) << 3)
            | ((self.retain_handling as u8) << 4)
    }
}

/// One topic filter of a SUBSCRIBE with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topic filter, as sent (wildcards not validated).
    pub filter: Utf8,
    /// Its options.
    pub options: SubscriptionOptions,
}

/// A SUBSCRIBE (§3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier, echoed by the SUBACK.
    pub packet_id: PacketId,
    /// At most one Subscription Identifier, and User Properties (MQTT 5; empty for 3.1.1).
    pub properties: Properties,
    /// One or more filters, in order.
    pub subscriptions: Vec<Subscription>,
}

impl Subscribe {
    /// Decodes a SUBSCRIBE body (everything after the fixed header).
    pub fn decode(version: ProtocolVersion, body: Bytes) -> Result<Subscribe, DecodeError> {
        let (mut r, packet_id, properties) = read_head(
            version,
            body,
            SUBSCRIBE_PROPERTIES,
            "property not allowed in SUBSCRIBE",
        )?;
        if properties.subscription_identifiers.len() > 1 {
            return Err(DecodeError::Protocol("subscription identifier twice"));
        }
        let mut subscriptions = Vec::new();
        while r.remaining() > 0 {
            let filter = r.string("topic filter")?;
            let options = SubscriptionOptions::decode(version, r.u8("subscription options")?)?;
            subscriptions.push(Subscription { filter, options });
        }
        if subscriptions.is_empty() {
            // 3.1.1 [MQTT-3.8.3-3], 5.0 [MQTT-3.8.3-2]
            return Err(DecodeError::Protocol("SUBSCRIBE with no topic filter"));
        }
        Ok(Subscribe {
            packet_id,
            properties,
            subscriptions,
        })
    }

    /// Appends the body (without the fixed header).
    pub fn encode_body(&self, version: ProtocolVersion, out: &mut Vec<u8>) {
        write_head(out, version, self.packet_id, &self.properties);
        for s in &self.subscriptions {
            put_string(out, s.filter.as_str());
            out.push(s.options.encode(version));
        }
    }
}

/// A SUBACK (§3.9): one reason per filter of the SUBSCRIBE, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// Reason String and User Property (MQTT 5; empty for 3.1.1).
    pub properties: Properties,
    /// Granted QoS (0x00–0x02) or an error; 3.1.1 knows only 0x80 as the error.
    pub reasons: Vec<ReasonCode>,
}

impl SubAck {
    /// Decodes a SUBACK body.
    pub fn decode(version: ProtocolVersion, body: Bytes) -> Result<SubAck, DecodeError> {
        let (mut r, packet_id, properties) = read_head(
            version,
            body,
            ACK_PROPERTIES,
            "property not allowed in SUBACK",
        )?;
        let allowed = match version {
            ProtocolVersion::V311 => SUBACK_V311_CODES,
            ProtocolVersion::V5 => SUBACK_REASONS,
        };
        let reasons = read_reasons(&mut r, allowed, "reason code not allowed in SUBACK")?;
        if reasons.is_empty() {
            return Err(DecodeError::Protocol("SUBACK with no reason code"));
        }
        Ok(SubAck {
            packet_id,
            properties,
            reasons,
        })
    }

    /// Appends the body; on 3.1.1 every error is written as the failure code 0x80.
    pub fn encode_body(&self, version: ProtocolVersion, out: &mut Vec<u8>) {
        put_u16(out, self.packet_id.0.get());
        let v5 = version == ProtocolVersion::V5;
        if v5 {
            self.properties.encode(out);
        }
        out.extend(
            self.reasons
                .iter()
                .map(|r| if v5 || r.0 <= 2 { r.0 } else { 0x80 }),
        );
    }
}

/// An UNSUBSCRIBE (§3.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier, echoed by the UNSUBACK.
    pub packet_id: PacketId,
    /// User Properties (MQTT 5; empty for 3.1.1).
    pub properties: Properties,
    /// One or more topic filters, as sent.
    pub filters: Vec<Utf8>,
}

impl Unsubscribe {
    /// Decodes an UNSUBSCRIBE body.
    pub fn decode(version: ProtocolVersion, body: Bytes) -> Result<Unsubscribe, DecodeError> {
        let (mut r, packet_id, properties) = read_head(
            version,
            body,
            UNSUBSCRIBE_PROPERTIES,
            "property not allowed in UNSUBSCRIBE",
        )?;
        let mut filters = Vec::new();
        while r.remaining() > 0 {
            filters.push(r.string("topic filter")?);
        }
        if filters.is_empty() {
            // 3.1.1 [MQTT-3.10.3-2], 5.0 [MQTT-3.10.3-2]
            return Err(DecodeError::Protocol("UNSUBSCRIBE with no topic filter"));
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    }

    /// Appends the body (without the fixed header).
    pub fn encode_body(&self, version: ProtocolVersion, out: &mut Vec<u8>) {
        write_head(out, version, self.packet_id, &self.properties);
        for f in &self.filters {
            put_string(out, f.as_str());
        }
    }
}

/// An UNSUBACK (§3.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// Reason String and User Property (MQTT 5; empty for 3.1.1).
    pub properties: Properties,
    /// One reason per filter (MQTT 5); empty on 3.1.1, whose UNSUBACK has no payload.
    pub reasons: Vec<ReasonCode>,
}

impl UnsubAck {
    /// Decodes an UNSUBACK body.
    pub fn decode(version: ProtocolVersion, body: Bytes) -> Result<UnsubAck, DecodeError> {
        let (mut r, packet_id, properties) = read_head(
            version,
            body,
            ACK_PROPERTIES,
            "property not allowed in UNSUBACK",
        )?;
        let reasons = match version {
            ProtocolVersion::V311 => {
                finish(&r, "UNSUBACK with a payload in MQTT 3.1.1")?;
                Vec::new()
            }
            ProtocolVersion::V5 => {
                let reasons = read_reasons(
                    &mut r,
                    UNSUBACK_REASONS,
                    "reason code not allowed in UNSUBACK",
                )?;
                if reasons.is_empty() {
                    return Err(DecodeError::Protocol("UNSUBACK with no reason code"));
                }
                reasons
            }
        };
        Ok(UnsubAck {
            packet_id,
            properties,
            reasons,
        })
    }

    /// Appends the body; 3.1.1 carries only the packet identifier.
    pub fn encode_body(&self, version: ProtocolVersion, out: &mut Vec<u8>) {
        put_u16(out, self.packet_id.0.get());
        if version == ProtocolVersion::V5 {
            self.properties.encode(out);
            out.extend(self.reasons.iter().map(|r| r.0));
        }
    }
}

/// The rest of the body as reason codes, each one of `allowed`.
fn read_reasons(
    r: &mut Reader,
    allowed: &[u8],
    what: &'static str,
) -> Result<Vec<ReasonCode>, DecodeError> {
    let codes = r.rest();
    let mut reasons = Vec::with_capacity(codes.len());
    for &c in codes.iter() {
        check_reason(ReasonCode(c), allowed, what)?;
        reasons.push(ReasonCode(c));
    }
    Ok(reasons)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use super::*;
    use proptest::prelude::*;

    const V3: ProtocolVersion = ProtocolVersion::V311;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    fn id(n: u16) -> PacketId {
        PacketId(NonZeroU16::new(n).unwrap())
    }

    fn sub(filter: &str, options: SubscriptionOptions) -> Subscription {
        Subscription {
            filter: Utf8::new(filter),
            options,
        }
    }

    #[test]
    fn spec_example_subscribe_decodes() {
        // MQTT 3.1.1 §3.8.3, Figure 3.23: "a/b" QoS 1, "c/d" QoS 2, packet id 10
        let body = b"\x00\x0A\x00\x03a/b\x01\x00\x03c/d\x02";
        let s = Subscribe::decode(V3, Bytes::from_static(body)).unwrap();
        assert_eq!(s.packet_id, id(10));
        assert_eq!(
            s.subscriptions,
            vec![
                sub("a/b", SubscriptionOptions::new(QoS::AtLeastOnce)),
                sub("c/d", SubscriptionOptions::new(QoS::ExactlyOnce)),
            ]
        );
        let mut out = Vec::new();
        s.encode_body(V3, &mut out);
        assert_eq!(out, body);
    }

    #[test]
    fn v5_options_and_properties_round_trip() {
        let mut properties = Properties::default();
        properties.subscription_identifiers.push(268_435_455);
        properties
            .user_properties
            .push((Utf8::new("k"), Utf8::new("v")));
        let s = Subscribe {
            packet_id: id(1),
            properties,
            subscriptions: vec![
                sub(
                    "$share/g/devices/+/telemetry",
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: false,
                        retain_as_published: true,
                        retain_handling: RetainHandling::DoNotSend,
                    },
                ),
                sub(
                    "a/#",
                    SubscriptionOptions {
                        qos: QoS::AtMostOnce,
                        no_local: true,
                        retain_as_published: false,
                        retain_handling: RetainHandling::SendIfNew,
                    },
                ),
            ],
        };
        let mut out = Vec::new();
        s.encode_body(V5, &mut out);
        assert_eq!(Subscribe::decode(V5, Bytes::from(out)).unwrap(), s);
    }

    #[test]
    fn bad_filters_are_left_to_the_broker() {
        // wildcard misuse and the empty filter decode; the broker answers them in the SUBACK
        let body = b"\x00\x01\x00\x03a#b\x00\x00\x00\x00";
        let s = Subscribe::decode(V3, Bytes::from_static(body)).unwrap();
        assert_eq!(s.subscriptions.len(), 2);
        // but not a string that is not UTF-8
        assert!(matches!(
            Subscribe::decode(V3, Bytes::from_static(b"\x00\x01\x00\x01\xFF\x00")),
            Err(DecodeError::Malformed("topic filter"))
        ));
    }

    #[test]
    fn bad_subscribes_are_refused() {
        let d = |v, b: &'static [u8]| Subscribe::decode(v, Bytes::from_static(b));
        assert_eq!(
            d(V3, b"\x00\x01"),
            Err(DecodeError::Protocol("SUBSCRIBE with no topic filter"))
        );
        assert_eq!(
            d(V5, b"\x00\x01\x00"),
            Err(DecodeError::Protocol("SUBSCRIBE with no topic filter"))
        );
        assert_eq!(
            d(V3, b"\x00\x00\x00\x01a\x00"),
            Err(DecodeError::Malformed("packet identifier 0"))
        );
        // options: 3.1.1 allows bits 0-1 only; v5 reserves bits 6-7
        assert_eq!(
            d(V3, b"\x00\x01\x00\x01a\x04"),
            Err(DecodeError::Malformed(
                "reserved subscription option bits set"
            ))
        );
        assert_eq!(
            d(V5, b"\x00\x01\x00\x00\x01a\x40"),
            Err(DecodeError::Malformed(
                "reserved subscription option bits set"
            ))
        );
        assert_eq!(
            d(V3, b"\x00\x01\x00\x01a\x03"),
            Err(DecodeError::Malformed("subscription QoS 3"))
        );
        assert_eq!(
            d(V5, b"\x00\x01\x00\x00\x01a\x03"),
            Err(DecodeError::Protocol("subscription QoS 3"))
        );
        assert_eq!(
            d(V5, b"\x00\x01\x00\x00\x01a\x30"),
            Err(DecodeError::Protocol("retain handling 3"))
        );
        // a filter without its options byte
        assert!(matches!(
            d(V3, b"\x00\x01\x00\x01a"),
            Err(DecodeError::Malformed(_))
        ));
        // subscription identifier: at most one, never 0; no other properties but user properties
        assert_eq!(
            d(V5, b"\x00\x01\x04\x0B\x01\x0B\x02\x00\x01a\x00"),
            Err(DecodeError::Protocol("subscription identifier twice"))
        );
        assert_eq!(
            d(V5, b"\x00\x01\x02\x0B\x00\x00\x01a\x00"),
            Err(DecodeError::Protocol("subscription identifier 0"))
        );
        assert_eq!(
            d(V5, b"\x00\x01\x03\x23\x00\x01\x00\x01a\x00"),
            Err(DecodeError::Malformed("property not allowed in SUBSCRIBE"))
        );
    }

    #[test]
    fn subacks_round_trip_and_map_errors_on_v311() {
        let properties = crate::properties::PropertyValues {
            reason_string: Some(Utf8::new("no wildcards here")),
            ..crate::properties::PropertyValues::default()
        }
        .into();
        let a = SubAck {
            packet_id: id(9),
            properties,
            reasons: vec![
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
            ],
        };
        let mut out = Vec::new();
        a.encode_body(V5, &mut out);
        assert_eq!(SubAck::decode(V5, Bytes::from(out)).unwrap(), a);
        // 3.1.1: no properties, any error becomes 0x80
        let mut out = Vec::new();
        a.encode_body(V3, &mut out);
        assert_eq!(out, [0x00, 0x09, 0x01, 0x80]);
        let got = SubAck::decode(V3, Bytes::from(out)).unwrap();
        assert_eq!(got.reasons, [ReasonCode::GRANTED_QOS_1, ReasonCode(0x80)]);
    }

    #[test]
    fn bad_subacks_are_refused() {
        let d = |v, b: &'static [u8]| SubAck::decode(v, Bytes::from_static(b));
        assert_eq!(
            d(V3, b"\x00\x01"),
            Err(DecodeError::Protocol("SUBACK with no reason code"))
        );
        assert_eq!(
            d(V3, b"\x00\x01\x8F"),
            Err(DecodeError::Protocol("reason code not allowed in SUBACK"))
        );
        assert!(d(V5, b"\x00\x01\x00\x8F").is_ok());
        assert_eq!(
            d(V5, b"\x00\x01\x00\x03"),
            Err(DecodeError::Protocol("reason code not allowed in SUBACK"))
        );
    }

    #[test]
    fn unsubscribe_and_unsuback_round_trip() {
        for v in [V3, V5] {
            let mut properties = Properties::default();
            if v == V5 {
                properties
                    .user_properties
                    .push((Utf8::new("k"), Utf8::new("v")));
            }
            let u = Unsubscribe {
                packet_id: id(2),
                properties: properties.clone(),
                filters: vec![Utf8::new("a/+"), Utf8::new("#")],
            };
            let mut out = Vec::new();
            u.encode_body(v, &mut out);
            assert_eq!(Unsubscribe::decode(v, Bytes::from(out)).unwrap(), u);
            let a = UnsubAck {
                packet_id: id(2),
                properties,
                reasons: if v == V5 {
                    vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
                } else {
                    vec![]
                },
            };
            let mut out = Vec::new();
            a.encode_body(v, &mut out);
            assert_eq!(UnsubAck::decode(v, Bytes::from(out)).unwrap(), a);
        }
    }

    #[test]
    fn bad_unsubscribes_and_unsubacks_are_refused() {
        assert_eq!(
            Unsubscribe::decode(V3, Bytes::from_static(b"\x00\x01")),
            Err(DecodeError::Protocol("UNSUBSCRIBE with no topic filter"))
        );
        assert_eq!(
            Unsubscribe::decode(V5, Bytes::from_static(b"\x00\x01\x02\x0B\x01\x00\x01a")),
            Err(DecodeError::Malformed(
                "property not allowed in UNSUBSCRIBE"
            ))
        );
        assert_eq!(
            UnsubAck::decode(V3, Bytes::from_static(b"\x00\x01\x00")),
            Err(DecodeError::Malformed(
                "UNSUBACK with a payload in MQTT 3.1.1"
            ))
        );
        assert_eq!(
            UnsubAck::decode(V5, Bytes::from_static(b"\x00\x01\x00")),
            Err(DecodeError::Protocol("UNSUBACK with no reason code"))
        );
        assert_eq!(
            UnsubAck::decode(V5, Bytes::from_static(b"\x00\x01\x00\x92")),
            Err(DecodeError::Protocol("reason code not allowed in UNSUBACK"))
        );
    }

    proptest! {
        #[test]
        fn options_byte_round_trips(b in any::<u8>()) {
            for v in [V3, V5] {
                if let Ok(o) = SubscriptionOptions::decode(v, b) {
                    prop_assert_eq!(o.encode(v), b);
                }
            }
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..48)) {
            for v in [V3, V5] {
                let _ = Subscribe::decode(v, Bytes::from(bytes.clone()));
                let _ = SubAck::decode(v, Bytes::from(bytes.clone()));
                let _ = Unsubscribe::decode(v, Bytes::from(bytes.clone()));
                let _ = UnsubAck::decode(v, Bytes::from(bytes.clone()));
            }
        }
    }
}
