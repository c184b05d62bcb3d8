//! CONNACK (MQTT 3.1.1 §3.2, MQTT 5.0 §3.2): the server's answer to CONNECT.
//!
//! The reason is carried as an MQTT 5 [`ReasonCode`] on both versions: on 3.1.1 the wire byte is
//! the return code of §3.2.2.3, written with [`ReasonCode::connack_v311`] and read back with
//! [`ReasonCode::from_connack_v311`].

use bytes::Bytes;

use crate::ProtocolVersion;
use crate::packet::{DecodeError, check_properties, check_reason, finish, read_properties};
use crate::primitives::Reader;
use crate::properties::Properties;
use crate::reason::ReasonCode;

/// Reasons a v5 CONNACK may carry (MQTT 5.0 §3.2.2.2).
pub(crate) const CONNACK_REASONS: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];

/// Properties a CONNACK may carry (MQTT 5.0 §3.2.2.3).
const CONNACK_PROPERTIES: &[u8] = &[
    0x11, 0x12, 0x13, 0x15, 0x16, 0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29,
    0x2A,
];

/// A CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Session Present (§3.2.2.1.1); never set with an error reason.
    pub session_present: bool,
    /// The outcome; on 3.1.1 one of the six reasons a return code maps to.
    pub reason: ReasonCode,
    /// CONNACK properties (MQTT 5; empty for 3.1.1).
    pub properties: Properties,
}

impl ConnAck {
    /// Decodes a CONNACK body (everything after the fixed header).
    pub fn decode(version: ProtocolVersion, body: Bytes) -> Result<ConnAck, DecodeError> {
        let mut r = Reader::new(body);
        let flags = r.u8("connect acknowledge flags")?;
        if flags & 0xFE != 0 {
            return Err(DecodeError::Malformed("reserved CONNACK flag set"));
        }
        let code = r.u8("connect reason code")?;
        let reason = match version {
            ProtocolVersion::V311 => ReasonCode::from_connack_v311(code)
                .ok_or(DecodeError::Protocol("reserved CONNACK return code"))?,
            ProtocolVersion::V5 => {
                let reason = ReasonCode(code);
                check_reason(
                    reason,
                    CONNACK_REASONS,
                    "reason code not allowed in CONNACK",
                )?;
                reason
            }
        };
        let session_present = flags & 0x01 != 0;
        if session_present && reason.is_error() {
            // MQTT 3.1.1 §3.2.2.2 [MQTT-3.2.2-4], MQTT 5.0 §3.2.2.1.1 [MQTT-3.2.2-6]
            return Err(DecodeError::Protocol(
                "session present with an error reason code",
            ));
        }
        let properties = read_properties(&mut r, version)?;
        check_properties(
            &properties,
            CONNACK_PROPERTIES,
            "property not allowed in CONNACK",
        )?;
        finish(&r, "bytes after the CONNACK properties")?;
        Ok(ConnAck {
            session_present,
            reason,
            properties,
        })
    }

    /// Appends the body (without the fixed header). Session Present is written as 0 with an
    /// error reason, whatever the field says.
    pub fn encode_body(&self, version: ProtocolVersion, out: &mut Vec<u8>) {
        out.push(u8::from(self.session_present && !self.reason.is_error()));
        match version {
            ProtocolVersion::V311 => out.push(self.reason.connack_v311()),
            ProtocolVersion::V5 => {
                out.push(self.reason.0);
                self.properties.encode(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitives::Utf8;
    use proptest::prelude::*;

    const V3: ProtocolVersion = ProtocolVersion::V311;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    fn enc(c: &ConnAck, v: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        c.encode_body(v, &mut out);
        out
    }

    fn dec(v: ProtocolVersion, b: &'static [u8]) -> Result<ConnAck, DecodeError> {
        ConnAck::decode(v, Bytes::from_static(b))
    }

    fn ack(session_present: bool, reason: ReasonCode) -> ConnAck {
        ConnAck {
            session_present,
            reason,
            properties: Properties::default(),
        }
    }

    #[test]
    fn both_versions_round_trip() {
        let mut c = ack(true, ReasonCode::SUCCESS);
        c.properties.assigned_client_identifier = Some(Utf8::new("auto-7"));
        c.properties.receive_maximum = Some(100);
        c.properties.maximum_qos = Some(1);
        c.properties.topic_alias_maximum = Some(10);
        assert_eq!(ConnAck::decode(V5, Bytes::from(enc(&c, V5))).unwrap(), c);
        let c = ack(true, ReasonCode::SUCCESS);
        assert_eq!(enc(&c, V3), [0x01, 0x00]);
        assert_eq!(ConnAck::decode(V3, Bytes::from(enc(&c, V3))).unwrap(), c);
    }

    #[test]
    fn v311_return_codes_map_both_ways() {
        // MQTT 3.1.1 §3.2.2.3: the return codes 0..=5
        for (reason, code) in [
            (ReasonCode::SUCCESS, 0u8),
            (ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, 1),
            (ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, 2),
            (ReasonCode::SERVER_UNAVAILABLE, 3),
            (ReasonCode::BAD_USER_NAME_OR_PASSWORD, 4),
            (ReasonCode::NOT_AUTHORIZED, 5),
        ] {
            assert_eq!(enc(&ack(false, reason), V3), [0x00, code]);
            let got = ConnAck::decode(V3, Bytes::from(vec![0x00, code])).unwrap();
            assert_eq!(got.reason, reason);
        }
        // v5-only reasons fall back to the nearest 3.1.1 code
        assert_eq!(enc(&ack(false, ReasonCode::BANNED), V3), [0x00, 5]);
        assert_eq!(enc(&ack(false, ReasonCode::QUOTA_EXCEEDED), V3), [0x00, 3]);
    }

    #[test]
    fn an_error_never_claims_a_session() {
        assert_eq!(
            enc(&ack(true, ReasonCode::NOT_AUTHORIZED), V5),
            [0, 0x87, 0]
        );
        assert_eq!(
            dec(V5, &[0x01, 0x87, 0x00]),
            Err(DecodeError::Protocol(
                "session present with an error reason code"
            ))
        );
        assert!(dec(V3, &[0x01, 0x05]).is_err());
    }

    #[test]
    fn bad_connacks_are_refused() {
        assert_eq!(
            dec(V5, &[0x02, 0x00, 0x00]),
            Err(DecodeError::Malformed("reserved CONNACK flag set"))
        );
        assert_eq!(
            dec(V3, &[0x00, 0x06]),
            Err(DecodeError::Protocol("reserved CONNACK return code"))
        );
        assert_eq!(
            dec(V5, &[0x00, 0x10, 0x00]),
            Err(DecodeError::Protocol("reason code not allowed in CONNACK"))
        );
        // v5 requires the property length; 3.1.1 has exactly two bytes
        assert!(matches!(
            dec(V5, &[0x00, 0x00]),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(
            dec(V3, &[0x00, 0x00, 0x00]),
            Err(DecodeError::Malformed("bytes after the CONNACK properties"))
        );
        // Topic Alias is not a CONNACK property
        assert_eq!(
            dec(V5, &[0x00, 0x00, 0x03, 0x23, 0x00, 0x01]),
            Err(DecodeError::Malformed("property not allowed in CONNACK"))
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..32)) {
            let _ = ConnAck::decode(V3, Bytes::from(bytes.clone()));
            let _ = ConnAck::decode(V5, Bytes::from(bytes));
        }
    }
}
