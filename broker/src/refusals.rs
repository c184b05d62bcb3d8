//! MQTT refusals, in one place: for each cause, what an MQTT 5 client and what a 3.1.1 client
//! get. MQTT 5 has a reason code for nearly everything; 3.1.1 has CONNACK return codes for a
//! refused CONNECT, 0x80 for a refused subscription, and nothing else: a refused PUBLISH is
//! acknowledged as usual and dropped, and what must not be acknowledged at all (a message that
//! could not be stored) is answered by closing the connection, so the client resends it.
//!
//! | cause | MQTT 5 | MQTT 3.1.1 |
//! |---|---|---|
//! | PUBLISH refused (ACL 0x87, a hook's reason) | PUBACK/PUBREC with the code and Reason String; a QoS 2 flow ends there | plain PUBACK/PUBREC, message dropped; PUBREL follows |
//! | held PUBLISH failed (storage) | PUBACK/PUBREC with the code | no acknowledgement; connection closed |
//! | SUBSCRIBE filter refused | SUBACK with the code | SUBACK 0x80 |
//! | CONNECT refused | CONNACK with the code | CONNACK return code 1–5 for 0x84–0x8A; otherwise closed without one |
//! | protocol error after CONNECT | DISCONNECT with the code | closed |

use mast_protocol::ProtocolVersion;
use mast_protocol::ack::PubResp;
use mast_protocol::connack::ConnAck;
use mast_protocol::disconnect::Disconnect;
use mast_protocol::packet::Packet;
use mast_protocol::primitives::Utf8;
use mast_protocol::properties::Properties;
use mast_protocol::publish::Delivery;
use mast_protocol::reason::ReasonCode;

/// Longest Reason String a refusal carries (bytes; cut on a character boundary).
const MAX_REASON: usize = 256;

/// Why a message is refused: the MQTT 5 reason code of its PUBACK/PUBREC and a Reason String.
/// A 3.1.1 client, which has no negative acknowledgement, gets a plain one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ReasonCode,
    pub reason: String,
}

impl Refusal {
    /// A refusal with `reason` cut to 256 bytes.
    pub fn new(code: ReasonCode, reason: &str) -> Refusal {
        let mut end = reason.len().min(MAX_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Refusal {
            code,
            reason: reason[..end].to_owned(),
        }
    }

    /// A refusal with a reason code only (no Reason String).
    pub fn code(code: ReasonCode) -> Refusal {
        Refusal {
            code,
            reason: String::new(),
        }
    }

    /// The PUBACK / PUBREC of a refused PUBLISH (none at QoS 0): in MQTT 5 the reason code and
    /// Reason String; in 3.1.1, which has no negative acknowledgement, a plain one (the message
    /// is dropped, §3.3.5).
    pub(crate) fn publish_ack(
        &self,
        version: ProtocolVersion,
        delivery: Delivery,
    ) -> Option<Packet> {
        let mut p = ack_packet(delivery, ReasonCode::SUCCESS)?;
        self.apply(version, &mut p);
        Some(p)
    }

    /// Turns a waiting PUBACK / PUBREC into this refusal's (MQTT 5 only, as `publish_ack`).
    pub(crate) fn apply(&self, version: ProtocolVersion, p: &mut Packet) {
        if version != ProtocolVersion::V5 {
            return;
        }
        if let Packet::PubAck(r) | Packet::PubRec(r) = p {
            r.reason = self.code;
            r.properties.reason_string = (!self.reason.is_empty()).then(|| Utf8::new(&self.reason));
        }
    }
}

/// The PUBACK or PUBREC of an inbound PUBLISH (none at QoS 0).
pub(crate) fn ack_packet(delivery: Delivery, reason: ReasonCode) -> Option<Packet> {
    match delivery {
        Delivery::AtMostOnce => None,
        Delivery::AtLeastOnce(id) => Some(Packet::PubAck(PubResp::with_reason(id, reason))),
        Delivery::ExactlyOnce(id) => Some(Packet::PubRec(PubResp::with_reason(id, reason))),
    }
}

/// Does a refused QoS 2 PUBLISH end its flow with the PUBREC (no PUBREL will come)? Only a
/// negative PUBREC does, and only MQTT 5 has one.
pub(crate) fn ends_qos2_flow(version: ProtocolVersion) -> bool {
    version == ProtocolVersion::V5
}

/// What a held PUBLISH that failed gets: MQTT 5 a negative acknowledgement; 3.1.1 none, and
/// the connection closes (so that the client resends after reconnecting).
pub(crate) fn failed_hold_closes(version: ProtocolVersion) -> bool {
    version != ProtocolVersion::V5
}

/// The SUBACK code of a refused filter.
pub(crate) fn suback_code(version: ProtocolVersion, reason: ReasonCode) -> ReasonCode {
    if version == ProtocolVersion::V5 {
        reason
    } else {
        ReasonCode(0x80)
    }
}

/// What ends a connection with `reason`: the CONNACK of a refused CONNECT, or the DISCONNECT
/// after one, with the protocol version to encode it in (none when it closes silently).
/// `version` is the CONNECT's; `connected` whether CONNECT was accepted.
pub(crate) fn ending(
    version: ProtocolVersion,
    connected: bool,
    reason: ReasonCode,
) -> Option<(Packet, ProtocolVersion)> {
    if connected {
        return (version == ProtocolVersion::V5)
            .then(|| (Packet::Disconnect(Disconnect::with_reason(reason)), version));
    }
    // 3.1.1 has return codes for refusals only, not for malformed packets; a client of an
    // unsupported level gets the 3.1.1 form (return code 1).
    let v = if reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION {
        ProtocolVersion::V311
    } else if version == ProtocolVersion::V5 {
        ProtocolVersion::V5
    } else if matches!(reason.0, 0x85..=0x8A) {
        ProtocolVersion::V311
    } else {
        return None;
    };
    let p = Packet::ConnAck(ConnAck {
        session_present: false,
        reason,
        properties: Properties::default(),
    });
    Some((p, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mast_protocol::publish::PacketId;

    #[test]
    fn a_refusal_is_cut_on_a_character_boundary() {
        let long = "é".repeat(200); // 400 bytes
        let r = Refusal::new(ReasonCode::PAYLOAD_FORMAT_INVALID, &long);
        assert_eq!(r.reason.len(), 256);
        assert!(r.reason.chars().all(|c| c == 'é'));
        assert_eq!(Refusal::new(ReasonCode(0x80), "short").reason, "short");
    }

    #[test]
    fn each_version_gets_its_form() {
        let id = PacketId(std::num::NonZeroU16::MIN);
        let r = Refusal::new(ReasonCode::NOT_AUTHORIZED, "no");
        let Some(Packet::PubAck(a)) = r.publish_ack(ProtocolVersion::V5, Delivery::AtLeastOnce(id))
        else {
            panic!("a PUBACK");
        };
        assert_eq!(a.reason, ReasonCode::NOT_AUTHORIZED);
        assert_eq!(
            a.properties.reason_string.as_ref().map(Utf8::as_str),
            Some("no")
        );
        let Some(Packet::PubRec(a)) =
            r.publish_ack(ProtocolVersion::V311, Delivery::ExactlyOnce(id))
        else {
            panic!("a PUBREC");
        };
        assert_eq!(
            a.reason,
            ReasonCode::SUCCESS,
            "3.1.1 has no negative acknowledgement"
        );
        assert!(
            r.publish_ack(ProtocolVersion::V5, Delivery::AtMostOnce)
                .is_none()
        );
        let Some(Packet::PubAck(a)) = Refusal::code(ReasonCode::NOT_AUTHORIZED)
            .publish_ack(ProtocolVersion::V5, Delivery::AtLeastOnce(id))
        else {
            panic!("a PUBACK");
        };
        assert_eq!(a.properties.reason_string, None, "no empty Reason String");
        assert_eq!(
            suback_code(ProtocolVersion::V311, ReasonCode::NOT_AUTHORIZED),
            ReasonCode(0x80)
        );
        assert_eq!(
            suback_code(ProtocolVersion::V5, ReasonCode::QUOTA_EXCEEDED),
            ReasonCode::QUOTA_EXCEEDED
        );
        assert!(ends_qos2_flow(ProtocolVersion::V5) && !ends_qos2_flow(ProtocolVersion::V311));
        assert!(
            failed_hold_closes(ProtocolVersion::V311) && !failed_hold_closes(ProtocolVersion::V5)
        );
        // CONNECT refusals: 3.1.1 return codes exist for 0x85..=0x8A only.
        assert!(ending(ProtocolVersion::V311, false, ReasonCode::MALFORMED_PACKET).is_none());
        let (_, v) = ending(ProtocolVersion::V311, false, ReasonCode::NOT_AUTHORIZED).unwrap();
        assert_eq!(v, ProtocolVersion::V311);
        let (_, v) = ending(
            ProtocolVersion::V5,
            false,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
        )
        .unwrap();
        assert_eq!(v, ProtocolVersion::V311);
        assert!(matches!(
            ending(ProtocolVersion::V5, true, ReasonCode::PROTOCOL_ERROR),
            Some((Packet::Disconnect(_), ProtocolVersion::V5))
        ));
        assert!(ending(ProtocolVersion::V311, true, ReasonCode::PROTOCOL_ERROR).is_none());
    }
}
