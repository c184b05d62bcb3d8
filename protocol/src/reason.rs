//! MQTT 5 reason codes (MQTT 5.0 §2.4): the one byte that tells why an acknowledgement or a
//! disconnect says what it says, and its mapping onto the MQTT 3.1.1 CONNACK return codes
//! (MQTT 3.1.1 §3.2.2.3).
//!
//! A reason code is a plain byte: which values a packet type may carry is checked by that
//! packet's decoder, so this type never rejects a value. Several names share a value (0x00 is
//! Success, Normal disconnection and Granted QoS 0), as in the spec's table.

/// A reason code (MQTT 5.0 §2.4); below 0x80 is success, 0x80 and above an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReasonCode(pub u8);

impl ReasonCode {
    /// 0x00 in CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH.
    pub const SUCCESS: ReasonCode = ReasonCode(0x00);
    /// 0x00 in DISCONNECT.
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode(0x00);
    /// 0x00 in SUBACK.
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode(0x00);
    /// 0x01 in SUBACK.
    pub const GRANTED_QOS_1: ReasonCode = ReasonCode(0x01);
    /// 0x02 in SUBACK.
    pub const GRANTED_QOS_2: ReasonCode = ReasonCode(0x02);
    /// 0x04 in DISCONNECT (client to server: publish the will anyway).
    pub const DISCONNECT_WITH_WILL: ReasonCode = ReasonCode(0x04);
    /// 0x10 in PUBACK, PUBREC.
    pub const NO_MATCHING_SUBSCRIBERS: ReasonCode = ReasonCode(0x10);
    /// 0x11 in UNSUBACK.
    pub const NO_SUBSCRIPTION_EXISTED: ReasonCode = ReasonCode(0x11);
    /// 0x18 in AUTH.
    pub const CONTINUE_AUTHENTICATION: ReasonCode = ReasonCode(0x18);
    /// 0x19 in AUTH.
    pub const RE_AUTHENTICATE: ReasonCode = ReasonCode(0x19);
    /// 0x80.
    pub const UNSPECIFIED_ERROR: ReasonCode = ReasonCode(0x80);
    /// 0x81: the packet could not be parsed.
    pub const MALFORMED_PACKET: ReasonCode = ReasonCode(0x81);
    /// 0x82: the packet parsed but breaks a rule of the spec.
    pub const PROTOCOL_ERROR: ReasonCode = ReasonCode(0x82);
    /// 0x83.
    pub const IMPLEMENTATION_SPECIFIC_ERROR: ReasonCode = ReasonCode(0x83);
    /// 0x84 in CONNACK.
    pub const UNSUPPORTED_PROTOCOL_VERSION: ReasonCode = ReasonCode(0x84);
    /// 0x85 in CONNACK.
    pub const CLIENT_IDENTIFIER_NOT_VALID: ReasonCode = ReasonCode(0x85);
    /// 0x86 in CONNACK.
    pub const BAD_USER_NAME_OR_PASSWORD: ReasonCode = ReasonCode(0x86);
    /// 0x87.
    pub const NOT_AUTHORIZED: ReasonCode = ReasonCode(0x87);
    /// 0x88 in CONNACK.
    pub const SERVER_UNAVAILABLE: ReasonCode = ReasonCode(0x88);
    /// 0x89 in CONNACK, DISCONNECT.
    pub const SERVER_BUSY: ReasonCode = ReasonCode(0x89);
    /// 0x8A in CONNACK.
    pub const BANNED: ReasonCode = ReasonCode(0x8A);
    /// 0x8B in DISCONNECT.
    pub const SERVER_SHUTTING_DOWN: ReasonCode = ReasonCode(0x8B);
    /// 0x8C in CONNACK, DISCONNECT.
    pub const BAD_AUTHENTICATION_METHOD: ReasonCode = ReasonCode(0x8C);
    /// 0x8D in DISCONNECT.
    pub const KEEP_ALIVE_TIMEOUT: ReasonCode = ReasonCode(0x8D);
    /// 0x8E in DISCONNECT.
    pub const SESSION_TAKEN_OVER: ReasonCode = ReasonCode(0x8E);
    /// 0x8F in SUBACK, UNSUBACK, DISCONNECT.
    pub const TOPIC_FILTER_INVALID: ReasonCode = ReasonCode(0x8F);
    /// 0x90 in CONNACK, PUBACK, PUBREC, DISCONNECT.
    pub const TOPIC_NAME_INVALID: ReasonCode = ReasonCode(0x90);
    /// 0x91 in PUBACK, PUBREC, SUBACK, UNSUBACK.
    pub const PACKET_IDENTIFIER_IN_USE: ReasonCode = ReasonCode(0x91);
    /// 0x92 in PUBREL, PUBCOMP.
    pub const PACKET_IDENTIFIER_NOT_FOUND: ReasonCode = ReasonCode(0x92);
    /// 0x93 in DISCONNECT.
    pub const RECEIVE_MAXIMUM_EXCEEDED: ReasonCode = ReasonCode(0x93);
    /// 0x94 in DISCONNECT.
    pub const TOPIC_ALIAS_INVALID: ReasonCode = ReasonCode(0x94);
    /// 0x95 in CONNACK, DISCONNECT.
    pub const PACKET_TOO_LARGE: ReasonCode = ReasonCode(0x95);
    /// 0x96 in DISCONNECT.
    pub const MESSAGE_RATE_TOO_HIGH: ReasonCode = ReasonCode(0x96);
    /// 0x97.
    pub const QUOTA_EXCEEDED: ReasonCode = ReasonCode(0x97);
    /// 0x98 in DISCONNECT.
    pub const ADMINISTRATIVE_ACTION: ReasonCode = ReasonCode(0x98);
    /// 0x99.
    pub const PAYLOAD_FORMAT_INVALID: ReasonCode = ReasonCode(0x99);
    /// 0x9A in CONNACK, DISCONNECT.
    pub const RETAIN_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9A);
    /// 0x9B in CONNACK, DISCONNECT.
    pub const QOS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9B);
    /// 0x9C in CONNACK, DISCONNECT.
    pub const USE_ANOTHER_SERVER: ReasonCode = ReasonCode(0x9C);
    /// 0x9D in CONNACK, DISCONNECT.
    pub const SERVER_MOVED: ReasonCode = ReasonCode(0x9D);
    /// 0x9E in SUBACK, DISCONNECT.
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0x9E);
    /// 0x9F in CONNACK, DISCONNECT.
    pub const CONNECTION_RATE_EXCEEDED: ReasonCode = ReasonCode(0x9F);
    /// 0xA0 in DISCONNECT.
    pub const MAXIMUM_CONNECT_TIME: ReasonCode = ReasonCode(0xA0);
    /// 0xA1 in SUBACK, DISCONNECT.
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA1);
    /// 0xA2 in SUBACK, DISCONNECT.
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: ReasonCode = ReasonCode(0xA2);

    /// True for 0x80 and above (§2.4: "Reason Codes less than 0x80 indicate successful completion").
    pub fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// The spec's name, for log lines. 0x00 reads "success" whatever the packet.
    pub fn name(self) -> &'static str {
        match self.0 {
            0x00 => "success",
            0x01 => "granted QoS 1",
            0x02 => "granted QoS 2",
            0x04 => "disconnect with will message",
            0x10 => "no matching subscribers",
            0x11 => "no subscription existed",
            0x18 => "continue authentication",
            0x19 => "re-authenticate",
            0x80 => "unspecified error",
            0x81 => "malformed packet",
            0x82 => "protocol error",
            0x83 => "implementation specific error",
            0x84 => "unsupported protocol version",
            0x85 => "client identifier not valid",
            0x86 => "bad user name or password",
            0x87 => "not authorized",
            0x88 => "server unavailable",
            0x89 => "server busy",
            0x8A => "banned",
            0x8B => "server shutting down",
            0x8C => "bad authentication method",
            0x8D => "keep alive timeout",
            0x8E => "session taken over",
            0x8F => "topic filter invalid",
            0x90 => "topic name invalid",
            0x91 => "packet identifier in use",
            0x92 => "packet identifier not found",
            0x93 => "receive maximum exceeded",
            0x94 => "topic alias invalid",
            0x95 => "packet too large",
            0x96 => "message rate too high",
            0x97 => "quota exceeded",
            0x98 => "administrative action",
            0x99 => "payload format invalid",
            0x9A => "retain not supported",
            0x9B => "QoS not supported",
            0x9C => "use another server",
            0x9D => "server moved",
            0x9E => "shared subscriptions not supported",
            0x9F => "connection rate exceeded",
            0xA0 => "maximum connect time",
            0xA1 => "subscription identifiers not supported",
            0xA2 => "wildcard subscriptions not supported",
            _ => "unknown reason code",
        }
    }

    /// The MQTT 3.1.1 CONNACK return code (§3.2.2.3) closest to this MQTT 5 CONNACK reason:
    /// 1 unacceptable protocol version, 2 identifier rejected, 3 server unavailable, 4 bad user
    /// name or password, 5 not authorized; any other error is 3, any success 0.
    pub fn connack_v311(self) -> u8 {
        match self {
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION => 1,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => 2,
            ReasonCode::SERVER_UNAVAILABLE | ReasonCode::SERVER_BUSY => 3,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD => 4,
            ReasonCode::NOT_AUTHORIZED | ReasonCode::BANNED => 5,
            r if r.is_error() => 3,
            _ => 0,
        }
    }

    /// The MQTT 5 reason for a 3.1.1 CONNACK return code (§3.2.2.3); `None` for the reserved
    /// values 6..=255. The inverse of [`ReasonCode::connack_v311`] on the six reasons it yields.
    pub fn from_connack_v311(code: u8) -> Option<ReasonCode> {
        Some(match code {
            0 => ReasonCode::SUCCESS,
            1 => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            2 => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            3 => ReasonCode::SERVER_UNAVAILABLE,
            4 => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            5 => ReasonCode::NOT_AUTHORIZED,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:#04x})", self.name(), self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn success_and_error_split_at_0x80() {
        assert!(!ReasonCode::SUCCESS.is_error());
        assert!(!ReasonCode::RE_AUTHENTICATE.is_error());
        assert!(ReasonCode::UNSPECIFIED_ERROR.is_error());
        assert!(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED.is_error());
        assert_eq!(ReasonCode::NORMAL_DISCONNECTION, ReasonCode::GRANTED_QOS_0);
    }

    #[test]
    fn names_read_well_in_logs() {
        assert_eq!(ReasonCode::KEEP_ALIVE_TIMEOUT.name(), "keep alive timeout");
        assert_eq!(ReasonCode(0x03).name(), "unknown reason code");
        assert_eq!(
            ReasonCode::PACKET_TOO_LARGE.to_string(),
            "packet too large (0x95)"
        );
    }

    #[test]
    fn connack_codes_map_to_v311_return_codes() {
        // MQTT 3.1.1 §3.2.2.3, Table 3.1
        for (reason, code) in [
            (ReasonCode::SUCCESS, 0),
            (ReasonCode::UNSUPPORTED_PROTOCOL_VERSION, 1),
            (ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, 2),
            (ReasonCode::SERVER_UNAVAILABLE, 3),
            (ReasonCode::SERVER_BUSY, 3),
            (ReasonCode::BAD_USER_NAME_OR_PASSWORD, 4),
            (ReasonCode::NOT_AUTHORIZED, 5),
            (ReasonCode::BANNED, 5),
            (ReasonCode::PROTOCOL_ERROR, 3),
            (ReasonCode::QUOTA_EXCEEDED, 3),
        ] {
            assert_eq!(reason.connack_v311(), code, "{reason}");
        }
        assert_eq!(ReasonCode::from_connack_v311(6), None);
    }

    proptest! {
        #[test]
        fn v311_connack_mapping_is_total_and_stable(b in any::<u8>()) {
            let code = ReasonCode(b).connack_v311();
            prop_assert!(code <= 5);
            let back = ReasonCode::from_connack_v311(code);
            prop_assert!(back.is_some());
            prop_assert_eq!(back.map(|r| r.connack_v311()), Some(code));
            prop_assert_eq!(code == 0, !ReasonCode(b).is_error());
        }
    }
}
