//! PUBACK, PUBREC, PUBREL and PUBCOMP (MQTT 3.1.1 §3.4–3.7, MQTT 5.0 §3.4–3.7): the four
//! responses of the QoS 1 and QoS 2 flows share one body, a packet identifier and, in MQTT 5, an
//! optional reason code and property block.
//!
//! MQTT 5 shortens the body when it can (§3.4.2.1): a remaining length of 2 means reason 0x00
//! and no properties, 3 means a reason code and no properties. The encoder always picks the
//! shortest form. MQTT 3.1.1 bodies are exactly the packet identifier.

use bytes::Bytes;

use crate::ProtocolVersion;
use crate::fixed_header::PacketType;
use crate::packet::{
    ACK_PROPERTIES, DecodeError, check_properties, check_reason, finish, read_packet_id,
};
use crate::primitives::{Reader, put_u16};
use crate::properties::Properties;
use crate::publish::PacketId;
use crate::reason::ReasonCode;

/// Reasons a PUBACK (§3.4.2.1) or PUBREC (§3.5.2.1) may carry.
pub(crate) const PUBACK_REASONS: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];

/// Reasons a PUBREL (§3.6.2.1) or PUBCOMP (§3.7.2.1) may carry.
pub(crate) const PUBREL_REASONS: &[u8] = &[0x00, 0x92];

/// A PUBACK, PUBREC, PUBREL or PUBCOMP body; the packet type says which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubResp {
    /// The packet identifier of the PUBLISH (or PUBREC / PUBREL) answered.
    pub packet_id: PacketId,
    /// The outcome (MQTT 5; always success in 3.1.1).
    pub reason: ReasonCode,
    /// Reason String and User Property (MQTT 5; empty for 3.1.1).
    pub properties: Properties,
}

impl PubResp {
    /// A successful response without properties.
    pub fn new(packet_id: PacketId) -> PubResp {
        PubResp::with_reason(packet_id, ReasonCode::SUCCESS)
    }

    /// A response with `reason` and no properties.
    pub fn with_reason(packet_id: PacketId, reason: ReasonCode) -> PubResp {
        PubResp {
            packet_id,
            reason,
            properties: Properties::default(),
        }
    }

    /// Decodes the body of a `packet_type` packet (one of PUBACK, PUBREC, PUBREL, PUBCOMP).
    /// A reason code the spec does not list for the type is a protocol error.
    pub fn decode(
        version: ProtocolVersion,
        packet_type: PacketType,
        body: Bytes,
    ) -> Result<PubResp, DecodeError> {
        let (allowed, bad_reason, bad_property) = match packet_type {
            PacketType::PubRec => (
                PUBACK_REASONS,
                "reason code not allowed in PUBREC",
                "property not allowed in PUBREC",
            ),
            PacketType::PubRel => (
                PUBREL_REASONS,
                "reason code not allowed in PUBREL",
                "property not allowed in PUBREL",
            ),
            PacketType::PubComp => (
                PUBREL_REASONS,
                "reason code not allowed in PUBCOMP",
                "property not allowed in PUBCOMP",
            ),
            _ => (
                PUBACK_REASONS,
                "reason code not allowed in PUBACK",
                "property not allowed in PUBACK",
            ),
        };
        let mut r = Reader::new(body);
        let mut resp = PubResp::new(read_packet_id(&mut r)?);
        if version == ProtocolVersion::V5 && r.remaining() > 0 {
            resp.reason = ReasonCode(r.u8("reason code")?);
            check_reason(resp.reason, allowed, bad_reason)?;
            if r.remaining() > 0 {
                resp.properties = Properties::decode(&mut r)?;
                check_properties(&resp.properties, ACK_PROPERTIES, bad_property)?;
            }
        }
        finish(&r, "bytes after the end of a publish response")?;
        Ok(resp)
    }

    /// Appends the body (without the fixed header) in its shortest form; 3.1.1 carries only the
    /// packet identifier.
    pub fn encode_body(&self, version: ProtocolVersion, out: &mut Vec<u8>) {
        put_u16(out, self.packet_id.0.get());
        if version != ProtocolVersion::V5 {
            return;
        }
        let no_properties = self.properties == Properties::default();
        if self.reason == ReasonCode::SUCCESS && no_properties {
            return;
        }
        out.push(self.reason.0);
        if !no_properties {
            self.properties.encode(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;

    use super::*;
    use crate::primitives::Utf8;
    use proptest::prelude::*;

    const V3: ProtocolVersion = ProtocolVersion::V311;
    const V5: ProtocolVersion = ProtocolVersion::V5;
    const TYPES: [PacketType; 4] = [
        PacketType::PubAck,
        PacketType::PubRec,
        PacketType::PubRel,
        PacketType::PubComp,
    ];

    fn id(n: u16) -> PacketId {
        PacketId(NonZeroU16::new(n).unwrap())
    }

    fn enc(r: &PubResp, v: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        r.encode_body(v, &mut out);
        out
    }

    fn dec(v: ProtocolVersion, t: PacketType, b: &'static [u8]) -> Result<PubResp, DecodeError> {
        PubResp::decode(v, t, Bytes::from_static(b))
    }

    #[test]
    fn the_encoder_picks_the_shortest_form() {
        // §3.4.2.1: reason 0 and no properties → remaining length 2
        assert_eq!(enc(&PubResp::new(id(10)), V5), [0x00, 0x0A]);
        // a reason and no properties → 3
        let r = PubResp::with_reason(id(10), ReasonCode::NO_MATCHING_SUBSCRIBERS);
        assert_eq!(enc(&r, V5), [0x00, 0x0A, 0x10]);
        // properties → reason + property block, even for success
        let mut r = PubResp::new(id(10));
        r.properties.reason_string = Some(Utf8::new("ok"));
        assert_eq!(
            enc(&r, V5),
            [0x00, 0x0A, 0x00, 0x05, 0x1F, 0x00, 0x02, b'o', b'k']
        );
        // 3.1.1: only the packet identifier
        assert_eq!(enc(&r, V3), [0x00, 0x0A]);
    }

    #[test]
    fn every_form_round_trips() {
        for t in TYPES {
            let reason = if matches!(t, PacketType::PubRel | PacketType::PubComp) {
                ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
            } else {
                ReasonCode::QUOTA_EXCEEDED
            };
            let mut with_props = PubResp::with_reason(id(7), reason);
            with_props
                .properties
                .user_properties
                .push((Utf8::new("k"), Utf8::new("v")));
            for r in [
                PubResp::new(id(1)),
                PubResp::with_reason(id(65535), reason),
                with_props,
            ] {
                let got = PubResp::decode(V5, t, Bytes::from(enc(&r, V5))).unwrap();
                assert_eq!(got, r, "{t:?}");
            }
            let r = PubResp::new(id(3));
            assert_eq!(PubResp::decode(V3, t, Bytes::from(enc(&r, V3))).unwrap(), r);
        }
    }

    #[test]
    fn long_forms_decode_like_short_ones() {
        // a sender may spell out reason 0 and an empty property block
        let r = dec(V5, PacketType::PubAck, &[0, 1, 0, 0]).unwrap();
        assert_eq!(r, PubResp::new(id(1)));
    }

    #[test]
    fn bad_responses_are_refused() {
        // packet identifier 0 or missing
        assert_eq!(
            dec(V5, PacketType::PubAck, &[0, 0]),
            Err(DecodeError::Malformed("packet identifier 0"))
        );
        assert!(matches!(
            dec(V5, PacketType::PubAck, &[0]),
            Err(DecodeError::Malformed(_))
        ));
        // 3.1.1: exactly two bytes
        assert_eq!(
            dec(V3, PacketType::PubAck, &[0, 1, 0]),
            Err(DecodeError::Malformed(
                "bytes after the end of a publish response"
            ))
        );
        // PUBREL and PUBCOMP allow only 0x00 and 0x92; PUBACK does not allow 0x92
        assert_eq!(
            dec(V5, PacketType::PubRel, &[0, 1, 0x10]),
            Err(DecodeError::Protocol("reason code not allowed in PUBREL"))
        );
        assert_eq!(
            dec(V5, PacketType::PubComp, &[0, 1, 0x80]),
            Err(DecodeError::Protocol("reason code not allowed in PUBCOMP"))
        );
        assert_eq!(
            dec(V5, PacketType::PubAck, &[0, 1, 0x92]),
            Err(DecodeError::Protocol("reason code not allowed in PUBACK"))
        );
        assert!(dec(V5, PacketType::PubRec, &[0, 1, 0x99]).is_ok());
        // a property other than Reason String / User Property (here Topic Alias)
        assert_eq!(
            dec(V5, PacketType::PubAck, &[0, 1, 0, 3, 0x23, 0, 1]),
            Err(DecodeError::Malformed("property not allowed in PUBACK"))
        );
        // a property block that runs past the body, and bytes after it
        assert!(matches!(
            dec(V5, PacketType::PubAck, &[0, 1, 0, 9]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            dec(V5, PacketType::PubAck, &[0, 1, 0, 0, 0xFF]),
            Err(DecodeError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(t in 0usize..4, bytes in prop::collection::vec(any::<u8>(), 0..32)) {
            let _ = PubResp::decode(V3, TYPES[t], Bytes::from(bytes.clone()));
            let _ = PubResp::decode(V5, TYPES[t], Bytes::from(bytes));
        }
    }
}
