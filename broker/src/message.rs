//! An application message as the broker routes it: shared by every subscriber it goes to
//! (`Arc<Message>`), payload and topic still slices of the publisher's read buffer.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mast_protocol::ProtocolVersion;
use mast_protocol::connect::QoS;
use mast_protocol::primitives::{Reader, Utf8};
use mast_protocol::properties::{Properties, PropertyValues};
use mast_protocol::publish::{Delivery, Publish};

use crate::ids::ConnRef;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// A routed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: Utf8,
    pub payload: Bytes,
    /// QoS it was published with.
    pub qos: QoS,
    /// RETAIN flag it was published with.
    pub retain: bool,
    /// Properties forwarded to subscribers (MQTT 5.0 §3.3.2.3): payload format, content type,
    /// response topic, correlation data, user properties. Expiry is kept in `expires_at`.
    /// Empty for most messages (then it is one null pointer).
    pub properties: Properties,
    /// Publishing client (for No Local); `None` for wills of ended sessions and restored ones.
    pub origin: Option<Arc<str>>,
    /// The connection that published it, while it is being routed (a link's service replies to
    /// it); `None` for wills, server messages and restored ones. Not persisted.
    pub origin_conn: Option<ConnRef>,
    /// Unix ms after which the message is not delivered.
    pub expires_at: Option<u64>,
    /// A later message of this topic makes this one obsolete (a shadow's delta: only the latest
    /// state matters): a session that is offline keeps only the newest such message per topic
    /// in its queue. Not persisted: after a restart the restored ones are each delivered.
    pub supersedes: bool,
}

impl Message {
    /// A message the server makes (a service's reply): no properties, no expiry, no origin.
    pub fn new(topic: &str, payload: impl Into<Bytes>, qos: QoS) -> Message {
        Message {
            topic: Utf8::new(topic),
            payload: payload.into(),
            qos,
            retain: false,
            properties: Properties::default(),
            origin: None,
            origin_conn: None,
            supersedes: false,
            expires_at: None,
        }
    }

    /// Builds the routed form of a received PUBLISH whose topic alias is resolved to `topic`.
    pub fn from_publish(p: &Publish, topic: Utf8, origin: Option<Arc<str>>) -> Message {
        let src = &p.properties;
        let forwarded = src.payload_format_utf8.is_some()
            || src.content_type.is_some()
            || src.response_topic.is_some()
            || src.correlation_data.is_some()
            || !src.user_properties.is_empty();
        let properties = if forwarded {
            PropertyValues {
                payload_format_utf8: src.payload_format_utf8,
                content_type: src.content_type.clone(),
                response_topic: src.response_topic.clone(),
                correlation_data: src.correlation_data.clone(),
                user_properties: src.user_properties.clone(),
                ..PropertyValues::default()
            }
            .into()
        } else {
            Properties::default()
        };
        Message {
            topic,
            payload: p.payload.clone(),
            qos: p.delivery.level(),
            retain: p.retain,
            properties,
            origin,
            origin_conn: None,
            supersedes: false,
            expires_at: src
                .message_expiry_interval
                .map(|s| now_ms() + u64::from(s) * 1000),
        }
    }

    /// Bytes it holds (for queue bounds).
    pub(crate) fn size(&self) -> usize {
        self.topic.as_str().len() + self.payload.len() + 64
    }

    /// Seconds of life left: `None` = expired, `Some(None)` = no expiry.
    pub(crate) fn remaining_secs(&self, now: u64) -> Option<Option<u32>> {
        match self.expires_at {
            None => Some(None),
            Some(t) if t <= now => None,
            Some(t) => Some(Some(
                (t - now).div_ceil(1000).min(u64::from(u32::MAX)) as u32
            )),
        }
    }

    /// The PUBLISH a subscriber gets.
    pub(crate) fn to_publish(
        &self,
        delivery: Delivery,
        retain: bool,
        expiry: Option<u32>,
        sub_ids: &[u32],
    ) -> Publish {
        let mut properties = self.properties.clone();
        // Written only when set: an untouched block stays unallocated.
        if expiry.is_some() {
            properties.message_expiry_interval = expiry;
        }
        if !sub_ids.is_empty() {
            properties.subscription_identifiers = sub_ids.to_vec();
        }
        Publish {
            dup: false,
            delivery,
            retain,
            topic: self.topic.clone(),
            properties,
            payload: self.payload.clone(),
        }
    }

    /// Encodes for the metadata store: version, QoS and retain, expiry, origin, then a
    /// v5 PUBLISH body (topic, properties, payload).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(1);
        out.push(self.qos.level() | (u8::from(self.retain) << 2));
        out.extend_from_slice(&self.expires_at.unwrap_or(0).to_be_bytes());
        let origin = self.origin.as_deref().unwrap_or("");
        out.extend_from_slice(&(origin.len() as u16).to_be_bytes());
        out.extend_from_slice(origin.as_bytes());
        let p = self.to_publish(Delivery::AtMostOnce, false, None, &[]);
        p.encode_body(ProtocolVersion::V5, out);
    }

    /// Decodes what [`Message::encode`] wrote.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Message> {
        let mut r = Reader::new(Bytes::copy_from_slice(bytes));
        if r.u8("version").ok()? != 1 {
            return None;
        }
        let flags = r.u8("flags").ok()?;
        let hi = u64::from(r.u32("expiry").ok()?);
        let lo = u64::from(r.u32("expiry").ok()?);
        let expires_at = (hi << 32) | lo;
        let origin = r.string("origin").ok()?;
        let p = Publish::decode(ProtocolVersion::V5, 0, r.rest()).ok()?;
        Some(Message {
            topic: p.topic,
            payload: p.payload,
            qos: QoS::from_level(flags & 0b11)?,
            retain: flags & 0b100 != 0,
            properties: p.properties,
            origin: (!origin.as_str().is_empty()).then(|| Arc::from(origin.as_str())),
            origin_conn: None,
            supersedes: false,
            expires_at: (expires_at != 0).then_some(expires_at),
        })
    }
}

/// A protocol version as people read it: "3.1.1" or "5.0".
pub fn protocol_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V5 => "5.0",
        _ => "3.1.1",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn persisted_form_round_trips() {
        let m = Message {
            topic: Utf8::new("a/b"),
            payload: Bytes::from_static(b"hello"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: PropertyValues {
                content_type: Some(Utf8::new("text/plain")),
                user_properties: vec![(Utf8::new("k"), Utf8::new("v"))],
                ..PropertyValues::default()
            }
            .into(),
            origin: Some(Arc::from("dev-1")),
            origin_conn: None,
            supersedes: false,
            expires_at: Some(1_700_000_000_123),
        };
        let mut b = Vec::new();
        m.encode(&mut b);
        assert_eq!(Message::decode(&b), Some(m));
        assert_eq!(Message::decode(&b[..3]), None);
    }

    /// A message as this version persists it, byte for byte (retained messages and queued
    /// ones are stored this way: a later version must keep reading these bytes).
    pub(crate) fn fixture() -> (Message, &'static str) {
        let m = Message {
            topic: Utf8::new("a/b"),
            payload: Bytes::from_static(b"hi"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: PropertyValues {
                content_type: Some(Utf8::new("t")),
                ..PropertyValues::default()
            }
            .into(),
            origin: Some(Arc::from("d")),
            origin_conn: None,
            supersedes: false,
            expires_at: Some(0x0102_0304_0506),
        };
        // version 1; QoS 1 | retain; expiry (u64 BE); origin "d"; then a v5 PUBLISH body:
        // topic "a/b", properties (4 bytes: content type "t"), payload "hi"
        (m, "010500000102030405060001640003612f6204030001746869")
    }

    #[test]
    fn persisted_bytes_are_pinned() {
        let (m, hex) = fixture();
        let mut b = Vec::new();
        m.encode(&mut b);
        let got: String = b.iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(got, hex);
        assert_eq!(Message::decode(&from_hex(hex)), Some(m));
    }

    /// The bytes a hex string spells (tests pinning persisted bytes).
    pub(crate) fn from_hex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn expiry_counts_down_and_ends() {
        let m = Message {
            topic: Utf8::new("t"),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
            origin: None,
            origin_conn: None,
            supersedes: false,
            expires_at: Some(10_000),
        };
        assert_eq!(m.remaining_secs(8_500), Some(Some(2)));
        assert_eq!(m.remaining_secs(10_000), None);
    }
}
