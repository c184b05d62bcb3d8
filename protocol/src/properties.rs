//! MQTT 5 properties (§2.2.2): the property block that follows the variable header of most v5
//! packets. Decoding checks what the spec makes a packet error regardless of the packet type —
//! unknown identifiers and bad encodings (Malformed Packet, 0x81), a property given twice or a
//! value out of range (Protocol Error, 0x82). Which properties a packet type may carry is checked
//! by that packet's decoder.

use bytes::Bytes;

use crate::primitives::{
    Malformed, Reader, Utf8, put_binary, put_string, put_u16, put_u32, put_var_int,
};

/// Why a property block is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyError {
    /// Reason code 0x81: the bytes do not form a property block.
    Malformed(&'static str),
    /// Reason code 0x82: well-formed, but the spec forbids it.
    Protocol(&'static str),
}

impl From<Malformed> for PropertyError {
    fn from(m: Malformed) -> Self {
        PropertyError::Malformed(m.0)
    }
}

impl std::fmt::Display for PropertyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PropertyError::Malformed(w) => write!(f, "malformed property: {w}"),
            PropertyError::Protocol(w) => write!(f, "protocol error in property: {w}"),
        }
    }
}

impl std::error::Error for PropertyError {}

/// The values of every MQTT 5 property; `None`/empty when absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyValues {
    /// 0x01: 0 = unspecified bytes, 1 = UTF-8.
    pub payload_format_utf8: Option<bool>,
    /// 0x02, seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03.
    pub content_type: Option<Utf8>,
    /// 0x08.
    pub response_topic: Option<Utf8>,
    /// 0x09.
    pub correlation_data: Option<Bytes>,
    /// 0x0B, may repeat (in PUBLISH sent to a subscriber).
    pub subscription_identifiers: Vec<u32>,
    /// 0x11, seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12.
    pub assigned_client_identifier: Option<Utf8>,
    /// 0x13, seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15.
    pub authentication_method: Option<Utf8>,
    /// 0x16.
    pub authentication_data: Option<Bytes>,
    /// 0x17.
    pub request_problem_information: Option<bool>,
    /// 0x18, seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19.
    pub request_response_information: Option<bool>,
    /// 0x1A.
    pub response_information: Option<Utf8>,
    /// 0x1C.
    pub server_reference: Option<Utf8>,
    /// 0x1F.
    pub reason_string: Option<Utf8>,
    /// 0x21, never 0.
    pub receive_maximum: Option<u16>,
    /// 0x22.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23, never 0.
    pub topic_alias: Option<u16>,
    /// 0x24, 0 or 1.
    pub maximum_qos: Option<u8>,
    /// 0x25.
    pub retain_available: Option<bool>,
    /// 0x26, may repeat, order kept.
    pub user_properties: Vec<(Utf8, Utf8)>,
    /// 0x27, never 0.
    pub maximum_packet_size: Option<u32>,
    /// 0x28.
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29.
    pub subscription_identifier_available: Option<bool>,
    /// 0x2A.
    pub shared_subscription_available: Option<bool>,
}

impl PropertyValues {
    /// No property at all.
    pub const EMPTY: PropertyValues = PropertyValues {
        payload_format_utf8: None,
        message_expiry_interval: None,
        content_type: None,
        response_topic: None,
        correlation_data: None,
        subscription_identifiers: Vec::new(),
        session_expiry_interval: None,
        assigned_client_identifier: None,
        server_keep_alive: None,
        authentication_method: None,
        authentication_data: None,
        request_problem_information: None,
        will_delay_interval: None,
        request_response_information: None,
        response_information: None,
        server_reference: None,
        reason_string: None,
        receive_maximum: None,
        topic_alias_maximum: None,
        topic_alias: None,
        maximum_qos: None,
        retain_available: None,
        user_properties: Vec::new(),
        maximum_packet_size: None,
        wildcard_subscription_available: None,
        subscription_identifier_available: None,
        shared_subscription_available: None,
    };
}

static NO_PROPERTIES: PropertyValues = PropertyValues::EMPTY;

/// A property block: [`PropertyValues`] behind one pointer, absent when there are none. Most
/// packets carry no properties, so a packet holding a block moves eight bytes instead of four
/// hundred, and decoding an empty block allocates nothing. Reads go through `Deref`; the first
/// write allocates.
#[derive(Clone, Default)]
pub struct Properties(Option<Box<PropertyValues>>);

impl Properties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        self.0
            .as_deref()
            .is_none_or(|v| *v == PropertyValues::EMPTY)
    }
}

impl std::ops::Deref for Properties {
    type Target = PropertyValues;
    fn deref(&self) -> &PropertyValues {
        self.0.as_deref().unwrap_or(&NO_PROPERTIES)
    }
}

impl std::ops::DerefMut for Properties {
    fn deref_mut(&mut self) -> &mut PropertyValues {
        self.0
            .get_or_insert_with(|| Box::new(PropertyValues::EMPTY))
    }
}

impl From<PropertyValues> for Properties {
    fn from(v: PropertyValues) -> Properties {
        Properties((v != PropertyValues::EMPTY).then(|| Box::new(v)))
    }
}

impl PartialEq for Properties {
    fn eq(&self, other: &Properties) -> bool {
        **self == **other
    }
}

impl Eq for Properties {}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            f.write_str("PropertyValues {}.into()")
        } else {
            (**self).fmt(f)
        }
    }
}

fn once<T>(slot: &mut Option<T>, v: T, what: &'static str) -> Result<(), PropertyError> {
    if slot.is_some() {
        return Err(PropertyError::Protocol(what));
    }
    *slot = Some(v);
    Ok(())
}

fn flag(r: &mut Reader, what: &'static str) -> Result<bool, PropertyError> {
    match r.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(PropertyError::Protocol(what)),
    }
}

fn nonzero_u16(r: &mut Reader, what: &'static str) -> Result<u16, PropertyError> {
    match r.u16(what)? {
        0 => Err(PropertyError::Protocol(what)),
        v => Ok(v),
    }
}

impl Properties {
    /// Reads a property block: its variable-byte length, then the properties.
    pub fn decode(r: &mut Reader) -> Result<Properties, PropertyError> {
        let len = r.var_int("property length")? as usize;
        if len > r.remaining() {
            return Err(PropertyError::Malformed(
                "property length beyond the packet",
            ));
        }
        if len == 0 {
            return Ok(Properties::default());
        }
        let mut block = Reader::new(r.bytes(len)?);
        let mut p = PropertyValues::default();
        while block.remaining() > 0 {
            let id = block.var_int("property identifier")?;
            let b = &mut block;
            match id {
                0x01 => once(
                    &mut p.payload_format_utf8,
                    flag(b, "payload format indicator")?,
                    "payload format indicator twice",
                )?,
                0x02 => once(
                    &mut p.message_expiry_interval,
                    b.u32("message expiry interval")?,
                    "message expiry interval twice",
                )?,
                0x03 => once(
                    &mut p.content_type,
                    b.string("content type")?,
                    "content type twice",
                )?,
                0x08 => once(
                    &mut p.response_topic,
                    b.string("response topic")?,
                    "response topic twice",
                )?,
                0x09 => once(
                    &mut p.correlation_data,
                    b.binary("correlation data")?,
                    "correlation data twice",
                )?,
                0x0B => match b.var_int("subscription identifier")? {
                    0 => return Err(PropertyError::Protocol("subscription identifier 0")),
                    v => p.subscription_identifiers.push(v),
                },
                0x11 => once(
                    &mut p.session_expiry_interval,
                    b.u32("session expiry interval")?,
                    "session expiry interval twice",
                )?,
                0x12 => once(
                    &mut p.assigned_client_identifier,
                    b.string("assigned client identifier")?,
                    "assigned client identifier twice",
                )?,
                0x13 => once(
                    &mut p.server_keep_alive,
                    b.u16("server keep alive")?,
                    "server keep alive twice",
                )?,
                0x15 => once(
                    &mut p.authentication_method,
                    b.string("authentication method")?,
                    "authentication method twice",
                )?,
                0x16 => once(
                    &mut p.authentication_data,
                    b.binary("authentication data")?,
                    "authentication data twice",
                )?,
                0x17 => once(
                    &mut p.request_problem_information,
                    flag(b, "request problem information")?,
                    "request problem information twice",
                )?,
                0x18 => once(
                    &mut p.will_delay_interval,
                    b.u32("will delay interval")?,
                    "will delay interval twice",
                )?,
                0x19 => once(
                    &mut p.request_response_information,
                    flag(b, "request response information")?,
                    "request response information twice",
                )?,
                0x1A => once(
                    &mut p.response_information,
                    b.string("response information")?,
                    "response information twice",
                )?,
                0x1C => once(
                    &mut p.server_reference,
                    b.string("server reference")?,
                    "server reference twice",
                )?,
                0x1F => once(
                    &mut p.reason_string,
                    b.string("reason string")?,
                    "reason string twice",
                )?,
                0x21 => once(
                    &mut p.receive_maximum,
                    nonzero_u16(b, "receive maximum 0")?,
                    "receive maximum twice",
                )?,
                0x22 => once(
                    &mut p.topic_alias_maximum,
                    b.u16("topic alias maximum")?,
                    "topic alias maximum twice",
                )?,
                0x23 => once(
                    &mut p.topic_alias,
                    nonzero_u16(b, "topic alias 0")?,
                    "topic alias twice",
                )?,
                0x24 => match b.u8("maximum qos")? {
                    q @ (0 | 1) => once(&mut p.maximum_qos, q, "maximum qos twice")?,
                    _ => return Err(PropertyError::Protocol("maximum qos above 1")),
                },
                0x25 => once(
                    &mut p.retain_available,
                    flag(b, "retain available")?,
                    "retain available twice",
                )?,
                0x26 => p.user_properties.push(b.string_pair("user property")?),
                0x27 => match b.u32("maximum packet size")? {
                    0 => return Err(PropertyError::Protocol("maximum packet size 0")),
                    v => once(&mut p.maximum_packet_size, v, "maximum packet size twice")?,
                },
                0x28 => once(
                    &mut p.wildcard_subscription_available,
                    flag(b, "wildcard subscription available")?,
                    "wildcard subscription available twice",
                )?,
                0x29 => once(
                    &mut p.subscription_identifier_available,
                    flag(b, "subscription identifier available")?,
                    "subscription identifier available twice",
                )?,
                0x2A => once(
                    &mut p.shared_subscription_available,
                    flag(b, "shared subscription available")?,
                    "shared subscription available twice",
                )?,
                _ => return Err(PropertyError::Malformed("unknown property identifier")),
            }
        }
        Ok(p.into())
    }

    /// Appends the property block (length, then properties) in identifier order.
    pub fn encode(&self, out: &mut Vec<u8>) {
        if self.0.is_none() {
            out.push(0);
            return;
        }
        // Encoded in place after `out`'s end, then the length is put in front of it: no scratch
        // buffer, and an empty block (the common case) costs one byte.
        let start = out.len();
        let b = out;
        let byte = |b: &mut Vec<u8>, id: u8, v: u8| b.extend_from_slice(&[id, v]);
        if let Some(v) = self.payload_format_utf8 {
            byte(b, 0x01, u8::from(v));
        }
        if let Some(v) = self.message_expiry_interval {
            b.push(0x02);
            put_u32(b, v);
        }
        if let Some(v) = &self.content_type {
            b.push(0x03);
            put_string(b, v.as_str());
        }
        if let Some(v) = &self.response_topic {
            b.push(0x08);
            put_string(b, v.as_str());
        }
        if let Some(v) = &self.correlation_data {
            b.push(0x09);
            put_binary(b, v);
        }
        for v in &self.subscription_identifiers {
            b.push(0x0B);
            put_var_int(b, *v);
        }
        if let Some(v) = self.session_expiry_interval {
            b.push(0x11);
            put_u32(b, v);
        }
        if let Some(v) = &self.assigned_client_identifier {
            b.push(0x12);
            put_string(b, v.as_str());
        }
        if let Some(v) = self.server_keep_alive {
            b.push(0x13);
            put_u16(b, v);
        }
        if let Some(v) = &self.authentication_method {
            b.push(0x15);
            put_string(b, v.as_str());
        }
        if let Some(v) = &self.authentication_data {
            b.push(0x16);
            put_binary(b, v);
        }
        if let Some(v) = self.request_problem_information {
            byte(b, 0x17, u8::from(v));
        }
        if let Some(v) = self.will_delay_interval {
            b.push(0x18);
            put_u32(b, v);
        }
        if let Some(v) = self.request_response_information {
            byte(b, 0x19, u8::from(v));
        }
        if let Some(v) = &self.response_information {
            b.push(0x1A);
            put_string(b, v.as_str());
        }
        if let Some(v) = &self.server_reference {
            b.push(0x1C);
            put_string(b, v.as_str());
        }
        if let Some(v) = &self.reason_string {
            b.push(0x1F);
            put_string(b, v.as_str());
        }
        if let Some(v) = self.receive_maximum {
            b.push(0x21);
            put_u16(b, v);
        }
        if let Some(v) = self.topic_alias_maximum {
            b.push(0x22);
            put_u16(b, v);
        }
        if let Some(v) = self.topic_alias {
            b.push(0x23);
            put_u16(b, v);
        }
        if let Some(v) = self.maximum_qos {
            byte(b, 0x24, v);
        }
        if let Some(v) = self.retain_available {
            byte(b, 0x25, u8::from(v));
        }
        for (k, v) in &self.user_properties {
            b.push(0x26);
            put_string(b, k.as_str());
            put_string(b, v.as_str());
        }
        if let Some(v) = self.maximum_packet_size {
            b.push(0x27);
            put_u32(b, v);
        }
        if let Some(v) = self.wildcard_subscription_available {
            byte(b, 0x28, u8::from(v));
        }
        if let Some(v) = self.subscription_identifier_available {
            byte(b, 0x29, u8::from(v));
        }
        if let Some(v) = self.shared_subscription_available {
            byte(b, 0x2A, u8::from(v));
        }
        let len = (b.len() - start) as u32;
        if len == 0 {
            b.push(0);
            return;
        }
        let mut prefix = Vec::with_capacity(4);
        put_var_int(&mut prefix, len);
        b.splice(start..start, prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn full() -> Properties {
        PropertyValues {
            payload_format_utf8: Some(true),
            message_expiry_interval: Some(3600),
            content_type: Some(Utf8::new("text/plain; format=line")),
            response_topic: Some(Utf8::new("devices/d1/replies")),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            subscription_identifiers: vec![1, 268_435_455],
            session_expiry_interval: Some(u32::MAX),
            assigned_client_identifier: Some(Utf8::new("auto-1")),
            server_keep_alive: Some(30),
            authentication_method: Some(Utf8::new("SCRAM-SHA-1")),
            authentication_data: Some(Bytes::from_static(b"x")),
            request_problem_information: Some(false),
            will_delay_interval: Some(5),
            request_response_information: Some(true),
            response_information: Some(Utf8::new("r/")),
            server_reference: Some(Utf8::new("other:1883")),
            reason_string: Some(Utf8::new("because")),
            receive_maximum: Some(10),
            topic_alias_maximum: Some(0),
            topic_alias: Some(7),
            maximum_qos: Some(1),
            retain_available: Some(true),
            user_properties: vec![
                (Utf8::new("k"), Utf8::new("v")),
                (Utf8::new("k"), Utf8::new("v2")),
            ],
            maximum_packet_size: Some(1 << 20),
            wildcard_subscription_available: Some(true),
            subscription_identifier_available: Some(false),
            shared_subscription_available: Some(true),
        }
        .into()
    }

    fn decode(bytes: Vec<u8>) -> Result<Properties, PropertyError> {
        Properties::decode(&mut Reader::new(Bytes::from(bytes)))
    }

    #[test]
    fn every_property_round_trips() {
        let mut out = Vec::new();
        full().encode(&mut out);
        assert_eq!(decode(out).unwrap(), full());
        let mut out = Vec::new();
        Properties::default().encode(&mut out);
        assert_eq!(out, [0]);
    }

    #[test]
    fn spec_errors_get_the_right_class() {
        // a property twice: protocol error (0x82)
        assert_eq!(
            decode(vec![6, 0x23, 0, 1, 0x23, 0, 2]),
            Err(PropertyError::Protocol("topic alias twice"))
        );
        // user properties and subscription ids may repeat
        assert!(decode(vec![4, 0x0B, 1, 0x0B, 2]).is_ok());
        // out-of-range values: protocol error
        assert_eq!(
            decode(vec![3, 0x21, 0, 0]),
            Err(PropertyError::Protocol("receive maximum 0"))
        );
        assert_eq!(
            decode(vec![2, 0x24, 2]),
            Err(PropertyError::Protocol("maximum qos above 1"))
        );
        assert_eq!(
            decode(vec![2, 0x01, 2]),
            Err(PropertyError::Protocol("payload format indicator"))
        );
        assert_eq!(
            decode(vec![2, 0x0B, 0]),
            Err(PropertyError::Protocol("subscription identifier 0"))
        );
        // unknown identifier, truncated value, length past the packet: malformed (0x81)
        assert_eq!(
            decode(vec![2, 0x04, 0]),
            Err(PropertyError::Malformed("unknown property identifier"))
        );
        assert!(matches!(
            decode(vec![2, 0x02, 0]),
            Err(PropertyError::Malformed(_))
        ));
        assert!(matches!(
            decode(vec![9, 0x02]),
            Err(PropertyError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(bytes);
        }
    }
}
