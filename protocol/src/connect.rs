//! CONNECT (MQTT 3.1.1 §3.1, MQTT 5.0 §3.1): the first packet of every connection.

use bytes::Bytes;

use crate::ProtocolVersion;
use crate::primitives::{Malformed, Reader, Utf8, put_binary, put_string, put_u16};
use crate::properties::{Properties, PropertyError};
use crate::topic;

/// Quality of service of a will message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QoS {
    /// At most once.
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS of a two-bit level: 0, 1 or 2; `None` for 3 (which no packet may carry).
    pub fn from_level(level: u8) -> Option<QoS> {
        match level {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }

    /// The level as the wire carries it.
    pub fn level(self) -> u8 {
        self as u8
    }
}

/// The will message a client leaves with the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Topic name (validated).
    pub topic: Utf8,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// Will properties (MQTT 5; empty for 3.1.1).
    pub properties: Properties,
}

/// A decoded CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol level.
    pub version: ProtocolVersion,
    /// Clean session (3.1.1) / clean start (5).
    pub clean_start: bool,
    /// Keep alive, seconds (0 = off).
    pub keep_alive: u16,
    /// CONNECT properties (MQTT 5; empty for 3.1.1).
    pub properties: Properties,
    /// Client identifier (may be empty: the server assigns one).
    pub client_id: Utf8,
    /// Will message.
    pub will: Option<Will>,
    /// User name.
    pub username: Option<Utf8>,
    /// Password.
    pub password: Option<Bytes>,
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// Not "MQTT" level 4 or 5: answer CONNACK 0x01 (3.1.1) or 0x84 (5), then close.
    UnsupportedProtocol {
        /// The protocol level byte seen (0 when the name was wrong).
        level: u8,
    },
    /// Reason code 0x81.
    Malformed(&'static str),
    /// Reason code 0x82.
    Protocol(&'static str),
}

impl From<Malformed> for ConnectError {
    fn from(m: Malformed) -> Self {
        ConnectError::Malformed(m.0)
    }
}

impl From<PropertyError> for ConnectError {
    fn from(e: PropertyError) -> Self {
        match e {
            PropertyError::Malformed(w) => ConnectError::Malformed(w),
            PropertyError::Protocol(w) => ConnectError::Protocol(w),
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::UnsupportedProtocol { level } => {
                write!(f, "unsupported protocol (level {level})")
            }
            ConnectError::Malformed(w) => write!(f, "malformed CONNECT: {w}"),
            ConnectError::Protocol(w) => write!(f, "protocol error in CONNECT: {w}"),
        }
    }
}

impl std::error::Error for ConnectError {}

impl Connect {
    /// Decodes a CONNECT body (everything after the fixed header).
    pub fn decode(body: Bytes) -> Result<Connect, ConnectError> {
        let mut r = Reader::new(body);
        let name = r.string("protocol name")?;
        let level = r.u8("protocol level")?;
        if name.as_str() != "MQTT" {
            return Err(ConnectError::UnsupportedProtocol { level: 0 });
        }
        let version = match level {
            4 => ProtocolVersion::V311,
            5 => ProtocolVersion::V5,
            l => return Err(ConnectError::UnsupportedProtocol { level: l }),
        };
        let flags = r.u8("connect flags")?;
        if flags & 0x01 != 0 {
            return Err(ConnectError::Malformed("reserved connect flag set"));
        }
        let will_flag = flags & 0x04 != 0;
        let will_qos = (flags >> 3) & 0b11;
        let will_retain = flags & 0x20 != 0;
        let has_password = flags & 0x40 != 0;
        let has_username = flags & 0x80 != 0;
        if !will_flag && (will_qos != 0 || will_retain) {
            return Err(ConnectError::Malformed("will QoS or retain without a will"));
        }
        let Some(qos) = QoS::from_level(will_qos) else {
            return Err(ConnectError::Malformed("will QoS 3"));
        };
        if version == ProtocolVersion::V311 && has_password && !has_username {
            return Err(ConnectError::Malformed("password without user name"));
        }
        let keep_alive = r.u16("keep alive")?;
        let v5 = version == ProtocolVersion::V5;
        let properties = if v5 {
            Properties::decode(&mut r)?
        } else {
            Properties::default()
        };
        let client_id = r.string("client identifier")?;
        let will = if will_flag {
            let properties = if v5 {
                Properties::decode(&mut r)?
            } else {
                Properties::default()
            };
            let topic = r.string("will topic")?;
            topic::validate_name(topic.as_str())
                .map_err(|_| ConnectError::Malformed("will topic"))?;
            let payload = r.binary("will payload")?;
            Some(Will {
                topic,
                payload,
                qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if has_username {
            Some(r.string("user name")?)
        } else {
            None
        };
        let password = if has_password {
            Some(r.binary("password")?)
        } else {
            None
        };
        if r.remaining() != 0 {
            return Err(ConnectError::Malformed("bytes after the CONNECT payload"));
        }
        Ok(Connect {
            version,
            clean_start: flags & 0x02 != 0,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }

    /// Appends the body (without the fixed header), as a client would send it.
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        put_string(out, "MQTT");
        let v5 = self.version == ProtocolVersion::V5;
        out.push(self.version.level());
        let mut flags = 0u8;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(w) = &self.will {
            flags |= 0x04 | ((w.qos as u8) << 3);
            if w.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        out.push(flags);
        put_u16(out, self.keep_alive);
        if v5 {
            self.properties.encode(out);
        }
        put_string(out, self.client_id.as_str());
        if let Some(w) = &self.will {
            if v5 {
                w.properties.encode(out);
            }
            put_string(out, w.topic.as_str());
            put_binary(out, &w.payload);
        }
        if let Some(u) = &self.username {
            put_string(out, u.as_str());
        }
        if let Some(p) = &self.password {
            put_binary(out, p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(version: ProtocolVersion) -> Connect {
        let mut properties = Properties::default();
        let mut will_props = Properties::default();
        if version == ProtocolVersion::V5 {
            properties.session_expiry_interval = Some(3600);
            properties.receive_maximum = Some(20);
            will_props.will_delay_interval = Some(10);
        }
        Connect {
            version,
            clean_start: true,
            keep_alive: 60,
            properties,
            client_id: Utf8::new("truck_1"),
            will: Some(Will {
                topic: Utf8::new("devices/truck_1/status"),
                payload: Bytes::from_static(b"offline"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: will_props,
            }),
            username: Some(Utf8::new("truck_1")),
            password: Some(Bytes::from_static(b"secret")),
        }
    }

    fn round_trip(c: &Connect) -> Connect {
        let mut body = Vec::new();
        c.encode_body(&mut body);
        Connect::decode(Bytes::from(body)).unwrap()
    }

    #[test]
    fn both_versions_round_trip() {
        for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
            let c = sample(v);
            assert_eq!(round_trip(&c), c);
        }
    }

    #[test]
    fn a_minimal_v311_connect_decodes() {
        // clean session, keep alive 60, client id "d1", nothing else (hand-built from §3.1)
        let body = b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x02d1";
        let c = Connect::decode(Bytes::from_static(body)).unwrap();
        assert_eq!(c.version, ProtocolVersion::V311);
        assert!(c.clean_start);
        assert_eq!((c.keep_alive, c.client_id.as_str()), (60, "d1"));
        assert!(c.will.is_none() && c.username.is_none() && c.password.is_none());
    }

    #[test]
    fn bad_connects_get_the_right_answer() {
        let decode = |b: &'static [u8]| Connect::decode(Bytes::from_static(b));
        assert_eq!(
            decode(b"\x00\x04MQTT\x03\x02\x00\x3c\x00\x00"),
            Err(ConnectError::UnsupportedProtocol { level: 3 })
        );
        assert_eq!(
            decode(b"\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00"),
            Err(ConnectError::UnsupportedProtocol { level: 0 })
        );
        assert_eq!(
            decode(b"\x00\x04MQTT\x04\x03\x00\x3c\x00\x00"),
            Err(ConnectError::Malformed("reserved connect flag set"))
        );
        assert_eq!(
            decode(b"\x00\x04MQTT\x04\x0A\x00\x3c\x00\x00"),
            Err(ConnectError::Malformed("will QoS or retain without a will"))
        );
        assert_eq!(
            decode(b"\x00\x04MQTT\x04\x1E\x00\x3c\x00\x00"),
            Err(ConnectError::Malformed("will QoS 3"))
        );
        assert_eq!(
            decode(b"\x00\x04MQTT\x04\x42\x00\x3c\x00\x00\x00\x00"),
            Err(ConnectError::Malformed("password without user name"))
        );
        assert_eq!(
            decode(b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x00\xff"),
            Err(ConnectError::Malformed("bytes after the CONNECT payload"))
        );
        // a will topic with a wildcard
        assert_eq!(
            decode(b"\x00\x04MQTT\x04\x06\x00\x3c\x00\x00\x00\x03a/#\x00\x00"),
            Err(ConnectError::Malformed("will topic"))
        );
        // v5 password without user name is allowed
        assert!(decode(b"\x00\x04MQTT\x05\x42\x00\x3c\x00\x00\x00\x00\x00").is_ok());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            let mut v = b"\x00\x04MQTT".to_vec();
            v.extend_from_slice(&bytes);
            let _ = Connect::decode(Bytes::from(v));
            let _ = Connect::decode(Bytes::from(bytes));
        }
    }
}
