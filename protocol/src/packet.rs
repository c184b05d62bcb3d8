//! Whole MQTT control packets (MQTT 3.1.1 §2–3, MQTT 5.0 §2–3): [`decode`] frames one packet off
//! the front of a read buffer and decodes its body; [`encode`] writes one packet, fixed header
//! included.
//!
//! Decoding is zero-copy: the frame is split off the `BytesMut` and frozen, and every string,
//! binary field and payload of the packet is a slice of it. A frame that is not complete yet is
//! `Ok(None)` with the buffer untouched, so the reactor reads more and calls again; any error is
//! final and [`DecodeError::reason_code`] gives the reason code for the DISCONNECT (or CONNACK)
//! that closes the connection.

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};

use crate::ProtocolVersion;
use crate::ack::PubResp;
use crate::connack::ConnAck;
use crate::connect::{Connect, ConnectError};
use crate::disconnect::{Auth, Disconnect};
use crate::fixed_header::{self, HeaderError, MAX_REMAINING_LENGTH, PacketType};
use crate::primitives::{Malformed, Reader};
use crate::properties::{Properties, PropertyError};
use crate::publish::{PacketId, Publish, PublishError};
use crate::reason::ReasonCode;
use crate::subscribe::{SubAck, Subscribe, UnsubAck, Unsubscribe};

/// One MQTT control packet (MQTT 5.0 §2.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (§3.1), boxed: it is by far the largest and the rarest.
    Connect(Box<Connect>),
    /// CONNACK (§3.2).
    ConnAck(ConnAck),
    /// PUBLISH (§3.3).
    Publish(Publish),
    /// PUBACK (§3.4).
    PubAck(PubResp),
    /// PUBREC (§3.5).
    PubRec(PubResp),
    /// PUBREL (§3.6).
    PubRel(PubResp),
    /// PUBCOMP (§3.7).
    PubComp(PubResp),
    /// SUBSCRIBE (§3.8).
    Subscribe(Subscribe),
    /// SUBACK (§3.9).
    SubAck(SubAck),
    /// UNSUBSCRIBE (§3.10).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (§3.11).
    UnsubAck(UnsubAck),
    /// PINGREQ (§3.12).
    PingReq,
    /// PINGRESP (§3.13).
    PingResp,
    /// DISCONNECT (§3.14).
    Disconnect(Disconnect),
    /// AUTH (MQTT 5.0 §3.15; not in 3.1.1).
    Auth(Auth),
}

impl Packet {
    /// The control packet type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// The first byte of the fixed header: type in the high nibble, flags in the low (§2.1.3).
    fn first_byte(&self) -> u8 {
        let (ty, flags) = match self {
            Packet::Connect(_) => (1, 0),
            Packet::ConnAck(_) => (2, 0),
            Packet::Publish(p) => (3, p.flags()),
            Packet::PubAck(_) => (4, 0),
            Packet::PubRec(_) => (5, 0),
            Packet::PubRel(_) => (6, 0b0010),
            Packet::PubComp(_) => (7, 0),
            Packet::Subscribe(_) => (8, 0b0010),
            Packet::SubAck(_) => (9, 0),
            Packet::Unsubscribe(_) => (10, 0b0010),
            Packet::UnsubAck(_) => (11, 0),
            Packet::PingReq => (12, 0),
            Packet::PingResp => (13, 0),
            Packet::Disconnect(_) => (14, 0),
            Packet::Auth(_) => (15, 0),
        };
        (ty << 4) | flags
    }
}

/// Why a packet can never be valid. The connection is closed after it, with the reason code
/// [`DecodeError::reason_code`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The fixed header is invalid or announces a packet above the maximum size.
    Header(HeaderError),
    /// The CONNECT is refused.
    Connect(ConnectError),
    /// The PUBLISH is refused.
    Publish(PublishError),
    /// Reason code 0x81: the body does not parse as this packet type.
    Malformed(&'static str),
    /// Reason code 0x82: the body parses, but the spec forbids it.
    Protocol(&'static str),
}

impl DecodeError {
    /// The MQTT 5 reason code to close the connection with (the one mapping of decode errors to
    /// reason codes): 0x95 for a packet above the maximum size, 0x84 for an unknown protocol
    /// level, 0x90 for a bad topic name, 0x82 for a protocol error, otherwise 0x81.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::Header(HeaderError::TooLarge { .. }) => ReasonCode::PACKET_TOO_LARGE,
            DecodeError::Connect(ConnectError::UnsupportedProtocol { .. }) => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            DecodeError::Publish(PublishError::TopicNameInvalid) => ReasonCode::TOPIC_NAME_INVALID,
            DecodeError::Connect(ConnectError::Protocol(_))
            | DecodeError::Publish(PublishError::Protocol(_))
            | DecodeError::Protocol(_) => ReasonCode::PROTOCOL_ERROR,
            _ => ReasonCode::MALFORMED_PACKET,
        }
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Header(e) => e.fmt(f),
            DecodeError::Connect(e) => e.fmt(f),
            DecodeError::Publish(e) => e.fmt(f),
            DecodeError::Malformed(w) => write!(f, "malformed packet: {w}"),
            DecodeError::Protocol(w) => write!(f, "protocol error: {w}"),
        }
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DecodeError::Header(e) => Some(e),
            DecodeError::Connect(e) => Some(e),
            DecodeError::Publish(e) => Some(e),
            DecodeError::Malformed(_) | DecodeError::Protocol(_) => None,
        }
    }
}

impl From<HeaderError> for DecodeError {
    fn from(e: HeaderError) -> Self {
        DecodeError::Header(e)
    }
}

impl From<ConnectError> for DecodeError {
    fn from(e: ConnectError) -> Self {
        DecodeError::Connect(e)
    }
}

impl From<PublishError> for DecodeError {
    fn from(e: PublishError) -> Self {
        DecodeError::Publish(e)
    }
}

impl From<Malformed> for DecodeError {
    fn from(m: Malformed) -> Self {
        DecodeError::Malformed(m.0)
    }
}

impl From<PropertyError> for DecodeError {
    fn from(e: PropertyError) -> Self {
        match e {
            PropertyError::Malformed(w) => DecodeError::Malformed(w),
            PropertyError::Protocol(w) => DecodeError::Protocol(w),
        }
    }
}

/// Decodes one packet from the front of `buf` and advances it; `Ok(None)` = incomplete (`buf`
/// untouched). `version` is the connection's protocol level; CONNECT decodes whatever it is (the
/// server passes `V5` before CONNECT and CONNECT names its own level). `max_packet` bounds the
/// whole packet, fixed header included (MQTT 5.0 §3.1.2.11.4). After an error the bad packet
/// may or may not have been consumed: the connection is over either way.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = fixed_header::decode(&buf[..], max_packet)? else {
        return Ok(None);
    };
    let len = header.packet_length();
    if buf.len() < len {
        return Ok(None);
    }
    let mut body = buf.split_to(len).freeze();
    let body = body.split_off(header.header_length);
    decode_body(header.packet_type, header.flags, version, body).map(Some)
}

fn decode_body(
    packet_type: PacketType,
    flags: u8,
    version: ProtocolVersion,
    body: Bytes,
) -> Result<Packet, DecodeError> {
    Ok(match packet_type {
        PacketType::Connect => Packet::Connect(Box::new(Connect::decode(body)?)),
        PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(version, body)?),
        PacketType::Publish => Packet::Publish(Publish::decode(version, flags, body)?),
        PacketType::PubAck => Packet::PubAck(PubResp::decode(version, packet_type, body)?),
        PacketType::PubRec => Packet::PubRec(PubResp::decode(version, packet_type, body)?),
        PacketType::PubRel => Packet::PubRel(PubResp::decode(version, packet_type, body)?),
        PacketType::PubComp => Packet::PubComp(PubResp::decode(version, packet_type, body)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(version, body)?),
        PacketType::SubAck => Packet::SubAck(SubAck::decode(version, body)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(version, body)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(version, body)?),
        PacketType::PingReq | PacketType::PingResp => {
            if !body.is_empty() {
                return Err(DecodeError::Malformed("PINGREQ or PINGRESP with a body"));
            }
            if packet_type == PacketType::PingReq {
                Packet::PingReq
            } else {
                Packet::PingResp
            }
        }
        PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(version, body)?),
        PacketType::Auth => Packet::Auth(Auth::decode(version, body)?),
    })
}

///
/// What 3.1.1 cannot carry is left out: properties, and reason codes other than a SUBACK's
/// granted QoS / failure and a CONNACK's return code (mapped by [`ReasonCode::connack_v311`]).
/// CONNECT is written at its own `version`; AUTH exists only in MQTT 5 and is written in that
/// form whatever `version` says. The caller keeps packets within the peer's maximum packet size
/// (and so within the 268,435,455-byte remaining length).
/// Appends a whole PUBLISH: the hot path. The payload is copied once, straight into `out`, and
/// a PUBLISH without properties needs no scratch buffer.
pub fn encode_publish(p: &Publish, version: ProtocolVersion, out: &mut Vec<u8>) {
    let id_len = if p.delivery.packet_id().is_some() {
        2
    } else {
        0
    };
    let fixed = 2 + p.topic.as_str().len() + id_len;
    thread_local! {
        // Property blocks are encoded here first (their length goes in the fixed header): one
        // buffer per thread, reused, instead of an allocation per packet.
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|props| {
        props.clear();
        if version == ProtocolVersion::V5 {
            p.properties.encode(props);
        }
        let len = fixed + props.len() + p.payload.len();
        debug_assert!(len <= MAX_REMAINING_LENGTH as usize);
        out.reserve(5 + len);
        out.push(0x30 | p.flags());
        fixed_header::encode_remaining_length(len as u32, out);
        crate::primitives::put_string(out, p.topic.as_str());
        if let Some(id) = p.delivery.packet_id() {
            crate::primitives::put_u16(out, id.0.get());
        }
        out.extend_from_slice(props);
        out.extend_from_slice(&p.payload);
    });
}

/// Appends the whole packet (fixed header + body) to `out`, in the form `version` gives it.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut Vec<u8>) {
    if let Packet::Publish(p) = packet {
        encode_publish(p, version, out);
        return;
    }
    let mut body = Vec::new();
    match packet {
        Packet::Connect(c) => c.encode_body(&mut body),
        Packet::ConnAck(c) => c.encode_body(version, &mut body),
        Packet::Publish(p) => p.encode_body(version, &mut body),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            a.encode_body(version, &mut body)
        }
        Packet::Subscribe(s) => s.encode_body(version, &mut body),
        Packet::SubAck(s) => s.encode_body(version, &mut body),
        Packet::Unsubscribe(u) => u.encode_body(version, &mut body),
        Packet::UnsubAck(u) => u.encode_body(version, &mut body),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => d.encode_body(version, &mut body),
        Packet::Auth(a) => a.encode_body(&mut body),
    }
    debug_assert!(body.len() <= MAX_REMAINING_LENGTH as usize);
    out.reserve(5 + body.len());
    out.push(packet.first_byte());
    fixed_header::encode_remaining_length(body.len() as u32, out);
    out.extend_from_slice(&body);
}

// Helpers shared by the body decoders of this crate.

/// Reads the optional MQTT 5 property block (3.1.1 has none).
pub(crate) fn read_properties(
    r: &mut Reader,
    version: ProtocolVersion,
) -> Result<Properties, DecodeError> {
    match version {
        ProtocolVersion::V5 => Ok(Properties::decode(r)?),
        ProtocolVersion::V311 => Ok(Properties::default()),
    }
}

/// A non-zero Packet Identifier (§2.2.1).
pub(crate) fn read_packet_id(r: &mut Reader) -> Result<PacketId, DecodeError> {
    NonZeroU16::new(r.u16("packet identifier")?)
        .map(PacketId)
        .ok_or(DecodeError::Malformed("packet identifier 0"))
}

/// Nothing may follow the last field of a body.
pub(crate) fn finish(r: &Reader, what: &'static str) -> Result<(), DecodeError> {
    if r.remaining() != 0 {
        return Err(DecodeError::Malformed(what));
    }
    Ok(())
}

/// A reason code the spec does not list for the packet type is a protocol error.
pub(crate) fn check_reason(
    reason: ReasonCode,
    allowed: &[u8],
    what: &'static str,
) -> Result<(), DecodeError> {
    if !allowed.contains(&reason.0) {
        return Err(DecodeError::Protocol(what));
    }
    Ok(())
}

/// A property whose identifier is not valid for the packet type makes the packet malformed
/// (MQTT 5.0 §2.2.2.2).
pub(crate) fn check_properties(
    p: &Properties,
    allowed: &[u8],
    what: &'static str,
) -> Result<(), DecodeError> {
    let mut mask = 0u64;
    for id in allowed {
        mask |= 1 << id;
    }
    if property_ids(p) & !mask != 0 {
        return Err(DecodeError::Malformed(what));
    }
    Ok(())
}

/// The identifiers present in `p`, as a bit set (every identifier is below 64).
fn property_ids(p: &Properties) -> u64 {
    // Destructured in full so a new property cannot be forgotten here.
    let crate::properties::PropertyValues {
        payload_format_utf8,
        message_expiry_interval,
        content_type,
        response_topic,
        correlation_data,
        subscription_identifiers,
        session_expiry_interval,
        assigned_client_identifier,
        server_keep_alive,
        authentication_method,
        authentication_data,
        request_problem_information,
        will_delay_interval,
        request_response_information,
        response_information,
        server_reference,
        reason_string,
        receive_maximum,
        topic_alias_maximum,
        topic_alias,
        maximum_qos,
        retain_available,
        user_properties,
        maximum_packet_size,
        wildcard_subscription_available,
        subscription_identifier_available,
        shared_subscription_available,
    } = &**p;
    let present: [(u8, bool); 27] = [
        (0x01, payload_format_utf8.is_some()),
        (0x02, message_expiry_interval.is_some()),
        (0x03, content_type.is_some()),
        (0x08, response_topic.is_some()),
        (0x09, correlation_data.is_some()),
        (0x0B, !subscription_identifiers.is_empty()),
        (0x11, session_expiry_interval.is_some()),
        (0x12, assigned_client_identifier.is_some()),
        (0x13, server_keep_alive.is_some()),
        (0x15, authentication_method.is_some()),
        (0x16, authentication_data.is_some()),
        (0x17, request_problem_information.is_some()),
        (0x18, will_delay_interval.is_some()),
        (0x19, request_response_information.is_some()),
        (0x1A, response_information.is_some()),
        (0x1C, server_reference.is_some()),
        (0x1F, reason_string.is_some()),
        (0x21, receive_maximum.is_some()),
        (0x22, topic_alias_maximum.is_some()),
        (0x23, topic_alias.is_some()),
        (0x24, maximum_qos.is_some()),
        (0x25, retain_available.is_some()),
        (0x26, !user_properties.is_empty()),
        (0x27, maximum_packet_size.is_some()),
        (0x28, wildcard_subscription_available.is_some()),
        (0x29, subscription_identifier_available.is_some()),
        (0x2A, shared_subscription_available.is_some()),
    ];
    present
        .iter()
        .filter(|(_, here)| *here)
        .fold(0, |m, (id, _)| m | (1 << id))
}

/// Reason String and User Property: the properties every acknowledgement may carry.
pub(crate) const ACK_PROPERTIES: &[u8] = &[0x1F, 0x26];

#[cfg(test)]
mod tests;
