//! PUBLISH (MQTT 3.1.1 §3.3, MQTT 5.0 §3.3). The QoS carries its packet id, so a QoS 1/2 message
//! without one cannot be built; topic and payload are slices of the read buffer.

use std::num::NonZeroU16;

use bytes::Bytes;

use crate::ProtocolVersion;
use crate::primitives::{Malformed, Reader, Utf8, put_string, put_u16};
use crate::properties::{Properties, PropertyError};

/// A packet identifier (never 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketId(pub NonZeroU16);

/// QoS with the packet id it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// QoS 0.
    AtMostOnce,
    /// QoS 1.
    AtLeastOnce(PacketId),
    /// QoS 2.
    ExactlyOnce(PacketId),
}

impl Delivery {
    /// The QoS number.
    pub fn qos(self) -> u8 {
        match self {
            Delivery::AtMostOnce => 0,
            Delivery::AtLeastOnce(_) => 1,
            Delivery::ExactlyOnce(_) => 2,
        }
    }

    /// The QoS.
    pub fn level(self) -> crate::connect::QoS {
        use crate::connect::QoS;
        match self {
            Delivery::AtMostOnce => QoS::AtMostOnce,
            Delivery::AtLeastOnce(_) => QoS::AtLeastOnce,
            Delivery::ExactlyOnce(_) => QoS::ExactlyOnce,
        }
    }

    /// The packet id, for QoS 1 and 2.
    pub fn packet_id(self) -> Option<PacketId> {
        match self {
            Delivery::AtMostOnce => None,
            Delivery::AtLeastOnce(id) | Delivery::ExactlyOnce(id) => Some(id),
        }
    }
}

/// A decoded PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// DUP flag.
    pub dup: bool,
    /// QoS and packet id.
    pub delivery: Delivery,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name; empty only in MQTT 5 with a Topic Alias property.
    pub topic: Utf8,
    /// Properties (MQTT 5; empty for 3.1.1).
    pub properties: Properties,
    /// Payload.
    pub payload: Bytes,
}

/// Why a PUBLISH is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishError {
    /// Reason code 0x81.
    Malformed(&'static str),
    /// Reason code 0x82.
    Protocol(&'static str),
    /// Reason code 0x90: the topic name is not a valid topic name.
    TopicNameInvalid,
}

impl From<Malformed> for PublishError {
    fn from(m: Malformed) -> Self {
        PublishError::Malformed(m.0)
    }
}

impl From<PropertyError> for PublishError {
    fn from(e: PropertyError) -> Self {
        match e {
            PropertyError::Malformed(w) => PublishError::Malformed(w),
            PropertyError::Protocol(w) => PublishError::Protocol(w),
        }
    }
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Malformed(w) => write!(f, "malformed PUBLISH: {w}"),
            PublishError::Protocol(w) => write!(f, "protocol error in PUBLISH: {w}"),
            PublishError::TopicNameInvalid => f.write_str("invalid topic name"),
        }
    }
}

impl std::error::Error for PublishError {}

impl Publish {
    /// Decodes a PUBLISH from its fixed-header `flags` and `body`.
    pub fn decode(
        version: ProtocolVersion,
        flags: u8,
        body: Bytes,
    ) -> Result<Publish, PublishError> {
        let dup = flags & 0x08 != 0;
        let retain = flags & 0x01 != 0;
        let qos = (flags >> 1) & 0b11;
        if qos == 3 {
            return Err(PublishError::Malformed("QoS 3"));
        }
        if qos == 0 && dup {
            return Err(PublishError::Malformed("DUP set on a QoS 0 message"));
        }
        let mut r = Reader::new(body);
        let topic = r.string("topic name")?;
        let delivery = if qos == 0 {
            Delivery::AtMostOnce
        } else {
            let id = NonZeroU16::new(r.u16("packet identifier")?)
                .map(PacketId)
                .ok_or(PublishError::Malformed("packet identifier 0"))?;
            if qos == 1 {
                Delivery::AtLeastOnce(id)
            } else {
                Delivery::ExactlyOnce(id)
            }
        };
        let properties = if version == ProtocolVersion::V5 {
            Properties::decode(&mut r)?
        } else {
            Properties::default()
        };
        if topic.as_str().is_empty() {
            if properties.topic_alias.is_none() {
                return Err(PublishError::Protocol(
                    "empty topic name without a topic alias",
                ));
            }
        } else {
            // `Reader::string` has checked UTF-8, U+0000 and the length: only wildcards remain.
            if topic.as_str().bytes().any(|b| b == b'+' || b == b'#') {
                return Err(PublishError::TopicNameInvalid);
            }
        }
        Ok(Publish {
            dup,
            delivery,
            retain,
            topic,
            properties,
            payload: r.rest(),
        })
    }

    /// The fixed-header flags of this message.
    pub fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | (self.delivery.qos() << 1) | u8::from(self.retain)
    }

    /// Appends the body (without the fixed header).
    pub fn encode_body(&self, version: ProtocolVersion, out: &mut Vec<u8>) {
        self.encode_variable_header(version, out);
        out.extend_from_slice(&self.payload);
    }

    /// Appends the variable header: topic, packet id, properties (the body without the payload).
    pub fn encode_variable_header(&self, version: ProtocolVersion, out: &mut Vec<u8>) {
        put_string(out, self.topic.as_str());
        if let Some(id) = self.delivery.packet_id() {
            put_u16(out, id.0.get());
        }
        if version == ProtocolVersion::V5 {
            self.properties.encode(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u16) -> PacketId {
        PacketId(NonZeroU16::new(n).unwrap())
    }

    #[test]
    fn messages_round_trip_on_both_versions() {
        for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
            for delivery in [
                Delivery::AtMostOnce,
                Delivery::AtLeastOnce(id(1)),
                Delivery::ExactlyOnce(id(65535)),
            ] {
                let mut properties = Properties::default();
                if version == ProtocolVersion::V5 {
                    properties.content_type = Some(Utf8::new("text/plain; format=line"));
                    properties.message_expiry_interval = Some(60);
                }
                let p = Publish {
                    dup: delivery != Delivery::AtMostOnce,
                    delivery,
                    retain: true,
                    topic: Utf8::new("devices/d1/telemetry"),
                    properties,
                    payload: Bytes::from_static(br#"{"temp": 21.5}"#),
                };
                let mut body = Vec::new();
                p.encode_body(version, &mut body);
                assert_eq!(
                    Publish::decode(version, p.flags(), Bytes::from(body)).unwrap(),
                    p
                );
            }
        }
    }

    #[test]
    fn bad_publishes_get_the_right_answer() {
        let v3 = ProtocolVersion::V311;
        let v5 = ProtocolVersion::V5;
        let d = |v, flags, b: &'static [u8]| Publish::decode(v, flags, Bytes::from_static(b));
        assert_eq!(
            d(v3, 0b0110, b"\x00\x01a"),
            Err(PublishError::Malformed("QoS 3"))
        );
        assert_eq!(
            d(v3, 0b1000, b"\x00\x01a"),
            Err(PublishError::Malformed("DUP set on a QoS 0 message"))
        );
        assert_eq!(
            d(v3, 0b0010, b"\x00\x01a\x00\x00"),
            Err(PublishError::Malformed("packet identifier 0"))
        );
        assert_eq!(
            d(v3, 0, b"\x00\x03a/+"),
            Err(PublishError::TopicNameInvalid)
        );
        assert_eq!(
            d(v3, 0, b"\x00\x00"),
            Err(PublishError::Protocol(
                "empty topic name without a topic alias"
            ))
        );
        // v5: an empty topic with a topic alias is fine; subscription identifiers decode (the
        // server refuses them from a client: that is a session rule, not a codec one)
        assert!(d(v5, 0, b"\x00\x00\x03\x23\x00\x01payload").is_ok());
        assert_eq!(
            d(v5, 0, b"\x00\x01a\x02\x0B\x01")
                .unwrap()
                .properties
                .subscription_identifiers,
            [1]
        );
        // the payload is everything after the properties, zero-copy
        let p = d(v5, 0, b"\x00\x01a\x00hello").unwrap();
        assert_eq!(&p.payload[..], b"hello");
    }

    proptest! {
        #[test]
        fn decode_never_panics(flags in 0u8..16, bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Publish::decode(ProtocolVersion::V311, flags, Bytes::from(bytes.clone()));
            let _ = Publish::decode(ProtocolVersion::V5, flags, Bytes::from(bytes));
        }
    }
}
