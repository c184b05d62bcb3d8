//! DISCONNECT (MQTT 3.1.1 §3.14, MQTT 5.0 §3.14) and AUTH (MQTT 5.0 §3.15).
//!
//! Both MQTT 5 bodies shrink when they can: a remaining length of 0 means reason 0x00 and no
//! properties, and a DISCONNECT of one byte is a reason without properties (§3.14.2.2.1). AUTH is
//! read the same way, though the spec only spells out the empty form (§3.15.2.1); it is written
//! empty or in full. A 3.1.1 DISCONNECT has no body at all, and 3.1.1 has no AUTH.

use bytes::Bytes;

use crate::ProtocolVersion;
use crate::packet::{DecodeError, check_properties, check_reason, finish};
use crate::primitives::Reader;
use crate::properties::Properties;
use crate::reason::ReasonCode;

/// Reasons a DISCONNECT may carry (MQTT 5.0 §3.14.2.1); which side may send which is the
/// session's business.
pub(crate) const DISCONNECT_REASONS: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];

/// Reasons an AUTH may carry (MQTT 5.0 §3.15.2.1).
pub(crate) const AUTH_REASONS: &[u8] = &[0x00, 0x18, 0x19];

/// Session Expiry Interval, Server Reference, Reason String, User Property (§3.14.2.2).
const DISCONNECT_PROPERTIES: &[u8] = &[0x11, 0x1C, 0x1F, 0x26];

/// Authentication Method and Data, Reason String, User Property (§3.15.2.2).
const AUTH_PROPERTIES: &[u8] = &[0x15, 0x16, 0x1F, 0x26];

/// A DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// Why (MQTT 5; always normal disconnection in 3.1.1).
    pub reason: ReasonCode,
    /// DISCONNECT properties (MQTT 5; empty for 3.1.1).
    pub properties: Properties,
}

impl Disconnect {
    /// A normal disconnection without properties.
    pub fn normal() -> Disconnect {
        Disconnect::with_reason(ReasonCode::NORMAL_DISCONNECTION)
    }

    /// A disconnect with `reason` and no properties.
    pub fn with_reason(reason: ReasonCode) -> Disconnect {
        Disconnect {
            reason,
            properties: Properties::default(),
        }
    }

    /// Decodes a DISCONNECT body (everything after the fixed header).
    pub fn decode(version: ProtocolVersion, body: Bytes) -> Result<Disconnect, DecodeError> {
        let mut r = Reader::new(body);
        let mut d = Disconnect::normal();
        if version == ProtocolVersion::V5 && r.remaining() > 0 {
            d.reason = ReasonCode(r.u8("disconnect reason code")?);
            check_reason(
                d.reason,
                DISCONNECT_REASONS,
                "reason code not allowed in DISCONNECT",
            )?;
            if r.remaining() > 0 {
                d.properties = Properties::decode(&mut r)?;
                check_properties(
                    &d.properties,
                    DISCONNECT_PROPERTIES,
                    "property not allowed in DISCONNECT",
                )?;
            }
        }
        finish(&r, "bytes after the end of a DISCONNECT")?;
        Ok(d)
    }

    /// Appends the body in its shortest form; nothing on 3.1.1.
    pub fn encode_body(&self, version: ProtocolVersion, out: &mut Vec<u8>) {
        if version != ProtocolVersion::V5 {
            return;
        }
        let no_properties = self.properties == Properties::default();
        if self.reason == ReasonCode::NORMAL_DISCONNECTION && no_properties {
            return;
        }
        out.push(self.reason.0);
        // The property length is written even when zero: the spec lets it go (§3.14.2.2.1),
        // but some clients (rumqttc 0.25) cannot read a DISCONNECT without it.
        self.properties.encode(out);
    }
}

/// An AUTH (MQTT 5 only): one step of enhanced authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Success, continue authentication or re-authenticate.
    pub reason: ReasonCode,
    /// Authentication Method and Data, Reason String, User Properties.
    pub properties: Properties,
}

impl Auth {
    /// Decodes an AUTH body; AUTH does not exist in 3.1.1 (packet type 15 is reserved there).
    pub fn decode(version: ProtocolVersion, body: Bytes) -> Result<Auth, DecodeError> {
        if version != ProtocolVersion::V5 {
            return Err(DecodeError::Malformed("AUTH in MQTT 3.1.1"));
        }
        let mut r = Reader::new(body);
        let mut a = Auth {
            reason: ReasonCode::SUCCESS,
            properties: Properties::default(),
        };
        if r.remaining() > 0 {
            a.reason = ReasonCode(r.u8("authenticate reason code")?);
            check_reason(a.reason, AUTH_REASONS, "reason code not allowed in AUTH")?;
            if r.remaining() > 0 {
                a.properties = Properties::decode(&mut r)?;
                check_properties(
                    &a.properties,
                    AUTH_PROPERTIES,
                    "property not allowed in AUTH",
                )?;
            }
        }
        finish(&r, "bytes after the end of an AUTH")?;
        Ok(a)
    }

    /// Appends the body: empty for success without properties, else reason and property block.
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        if self.reason == ReasonCode::SUCCESS && self.properties == Properties::default() {
            return;
        }
        out.push(self.reason.0);
        self.properties.encode(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitives::Utf8;
    use proptest::prelude::*;

    const V3: ProtocolVersion = ProtocolVersion::V311;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    fn enc(d: &Disconnect, v: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        d.encode_body(v, &mut out);
        out
    }

    #[test]
    fn an_empty_v5_disconnect_is_a_normal_one() {
        // §3.14.2.1: remaining length 0 means 0x00 (mqttbytes 0.6 wrongly refuses this)
        let d = Disconnect::decode(V5, Bytes::new()).unwrap();
        assert_eq!(d, Disconnect::normal());
        assert_eq!(enc(&d, V5), [] as [u8; 0]);
        // one byte: a reason, no properties
        let d = Disconnect::decode(V5, Bytes::from_static(&[0x8D])).unwrap();
        assert_eq!(d, Disconnect::with_reason(ReasonCode::KEEP_ALIVE_TIMEOUT));
        // written with an explicit empty property block, which every client can read
        assert_eq!(enc(&d, V5), [0x8D, 0x00]);
    }

    #[test]
    fn disconnects_round_trip() {
        let mut d = Disconnect::with_reason(ReasonCode::SERVER_MOVED);
        d.properties.server_reference = Some(Utf8::new("other:1883"));
        d.properties.session_expiry_interval = Some(0);
        assert_eq!(Disconnect::decode(V5, Bytes::from(enc(&d, V5))).unwrap(), d);
        // 3.1.1 carries nothing
        assert_eq!(enc(&d, V3), [] as [u8; 0]);
        assert_eq!(
            Disconnect::decode(V3, Bytes::new()).unwrap(),
            Disconnect::normal()
        );
    }

    #[test]
    fn bad_disconnects_are_refused() {
        assert_eq!(
            Disconnect::decode(V3, Bytes::from_static(&[0x00])),
            Err(DecodeError::Malformed(
                "bytes after the end of a DISCONNECT"
            ))
        );
        assert_eq!(
            Disconnect::decode(V5, Bytes::from_static(&[0x01])),
            Err(DecodeError::Protocol(
                "reason code not allowed in DISCONNECT"
            ))
        );
        assert_eq!(
            Disconnect::decode(V5, Bytes::from_static(&[0x00, 0x03, 0x23, 0x00, 0x01])),
            Err(DecodeError::Malformed("property not allowed in DISCONNECT"))
        );
        assert!(matches!(
            Disconnect::decode(V5, Bytes::from_static(&[0x00, 0x00, 0x00])),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn auth_round_trips_and_exists_only_in_v5() {
        let mut a = Auth {
            reason: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Properties::default(),
        };
        a.properties.authentication_method = Some(Utf8::new("SCRAM-SHA-256"));
        a.properties.authentication_data = Some(Bytes::from_static(b"client-first"));
        let mut out = Vec::new();
        a.encode_body(&mut out);
        assert_eq!(Auth::decode(V5, Bytes::from(out)).unwrap(), a);
        // §3.15.2.1: remaining length 0 is success
        let ok = Auth::decode(V5, Bytes::new()).unwrap();
        assert_eq!(ok.reason, ReasonCode::SUCCESS);
        let mut out = Vec::new();
        ok.encode_body(&mut out);
        assert!(out.is_empty());
        assert_eq!(
            Auth::decode(V3, Bytes::new()),
            Err(DecodeError::Malformed("AUTH in MQTT 3.1.1"))
        );
        assert_eq!(
            Auth::decode(V5, Bytes::from_static(&[0x87, 0x00])),
            Err(DecodeError::Protocol("reason code not allowed in AUTH"))
        );
        assert_eq!(
            Auth::decode(V5, Bytes::from_static(&[0x18, 0x05, 0x11, 0, 0, 0, 1])),
            Err(DecodeError::Malformed("property not allowed in AUTH"))
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..32)) {
            for v in [V3, V5] {
                let _ = Disconnect::decode(v, Bytes::from(bytes.clone()));
                let _ = Auth::decode(v, Bytes::from(bytes.clone()));
            }
        }
    }
}
