//! The MQTT fixed header: packet type, flags and the variable-length "remaining length"
//! (MQTT 5.0 §2.1). Decoding tells a frame that is not complete yet from one that can never be
//! valid, so the reactor waits for more bytes in the first case and closes the connection with a
//! reason code in the second.

/// MQTT control packet types (the high nibble of the first byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// 1, client → server.
    Connect,
    /// 2, server → client.
    ConnAck,
    /// 3, both ways.
    Publish,
    /// 4, both ways.
    PubAck,
    /// 5, both ways.
    PubRec,
    /// 6, both ways.
    PubRel,
    /// 7, both ways.
    PubComp,
    /// 8, client → server.
    Subscribe,
    /// 9, server → client.
    SubAck,
    /// 10, client → server.
    Unsubscribe,
    /// 11, server → client.
    UnsubAck,
    /// 12, client → server.
    PingReq,
    /// 13, server → client.
    PingResp,
    /// 14, both ways.
    Disconnect,
    /// 15, both ways (MQTT 5 only).
    Auth,
}

impl PacketType {
    fn from_nibble(n: u8) -> Option<PacketType> {
        use PacketType::*;
        Some(match n {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }

    /// The flags the spec fixes for this type (`None` for PUBLISH, whose flags carry DUP, QoS and
    /// RETAIN).
    fn required_flags(self) -> Option<u8> {
        match self {
            PacketType::Publish => None,
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }
}

/// The largest remaining length the 4-byte encoding can carry (268,435,455).
pub const MAX_REMAINING_LENGTH: u32 = 0x0FFF_FFFF;

/// A decoded fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// The packet type.
    pub packet_type: PacketType,
    /// The low nibble of the first byte.
    pub flags: u8,
    /// Bytes after the fixed header.
    pub remaining_length: u32,
    /// Bytes of the fixed header itself (2..=5).
    pub header_length: usize,
}

impl FixedHeader {
    /// Bytes of the whole packet.
    pub fn packet_length(&self) -> usize {
        self.header_length + self.remaining_length as usize
    }
}

/// Why a fixed header can never become valid, whatever bytes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// Packet type 0 (reserved).
    ReservedType,
    /// Flags other than the spec requires for the type, or PUBLISH with QoS 3.
    BadFlags {
        /// The type.
        packet_type: PacketType,
        /// The flags seen.
        flags: u8,
    },
    /// The remaining length uses a fifth byte.
    RemainingLengthTooLong,
    /// The packet is larger than the negotiated maximum packet size.
    TooLarge {
        /// Whole packet length.
        size: u64,
        /// The maximum.
        max: u32,
    },
}

impl std::fmt::Display for HeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderError::ReservedType => f.write_str("reserved packet type 0"),
            HeaderError::BadFlags { packet_type, flags } => {
                write!(f, "invalid flags {flags:#06b} for {packet_type:?}")
            }
            HeaderError::RemainingLengthTooLong => {
                f.write_str("remaining length longer than 4 bytes")
            }
            HeaderError::TooLarge { size, max } => {
                write!(f, "packet of {size} bytes exceeds the maximum of {max}")
            }
        }
    }
}

impl std::error::Error for HeaderError {}

/// Decodes the fixed header at the start of `buf`. `Ok(None)`: not enough bytes yet to know.
/// `max_packet` bounds the whole packet (fixed header included), as MQTT 5's Maximum Packet Size.
pub fn decode(buf: &[u8], max_packet: u32) -> Result<Option<FixedHeader>, HeaderError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = PacketType::from_nibble(first >> 4).ok_or(HeaderError::ReservedType)?;
    let flags = first & 0x0F;
    let flags_ok = match packet_type.required_flags() {
        Some(req) => flags == req,
        None => (flags >> 1) & 0b11 != 0b11,
    };
    if !flags_ok {
        return Err(HeaderError::BadFlags { packet_type, flags });
    }
    let mut value = 0u32;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(None);
        };
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            let header_length = 2 + i;
            let size = header_length as u64 + u64::from(value);
            if size > u64::from(max_packet) {
                return Err(HeaderError::TooLarge {
                    size,
                    max: max_packet,
                });
            }
            return Ok(Some(FixedHeader {
                packet_type,
                flags,
                remaining_length: value,
                header_length,
            }));
        }
    }
    Err(HeaderError::RemainingLengthTooLong)
}

/// Appends the encoding of a remaining length (must be at most [`MAX_REMAINING_LENGTH`]).
pub fn encode_remaining_length(mut len: u32, out: &mut Vec<u8>) {
    len = len.min(MAX_REMAINING_LENGTH);
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u32 = u32::MAX;

    #[test]
    fn spec_boundaries_of_the_remaining_length() {
        // MQTT 5.0 §1.5.5 table: 1..4 bytes
        for (len, bytes) in [
            (0u32, vec![0x00]),
            (127, vec![0x7F]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xFF, 0x7F]),
            (16_384, vec![0x80, 0x80, 0x01]),
            (2_097_151, vec![0xFF, 0xFF, 0x7F]),
            (2_097_152, vec![0x80, 0x80, 0x80, 0x01]),
            (268_435_455, vec![0xFF, 0xFF, 0xFF, 0x7F]),
        ] {
            let mut enc = Vec::new();
            encode_remaining_length(len, &mut enc);
            assert_eq!(enc, bytes);
            let mut frame = vec![0x30];
            frame.extend_from_slice(&bytes);
            let h = decode(&frame, MAX).unwrap().unwrap();
            assert_eq!(
                (h.remaining_length, h.header_length),
                (len, 1 + bytes.len())
            );
        }
    }

    #[test]
    fn incomplete_is_not_malformed_and_malformed_is_final() {
        assert_eq!(decode(&[], MAX), Ok(None));
        assert_eq!(decode(&[0x30], MAX), Ok(None));
        assert_eq!(decode(&[0x30, 0x80, 0x80], MAX), Ok(None));
        assert_eq!(
            decode(&[0x30, 0x80, 0x80, 0x80, 0x80], MAX),
            Err(HeaderError::RemainingLengthTooLong)
        );
        assert_eq!(decode(&[0x00, 0x00], MAX), Err(HeaderError::ReservedType));
        // PUBLISH with QoS 3
        assert!(matches!(
            decode(&[0x36, 0x00], MAX),
            Err(HeaderError::BadFlags { .. })
        ));
        // SUBSCRIBE must carry 0b0010, PINGREQ 0
        assert!(matches!(
            decode(&[0x80, 0x00], MAX),
            Err(HeaderError::BadFlags { .. })
        ));
        assert!(decode(&[0x82, 0x00], MAX).unwrap().is_some());
        assert!(matches!(
            decode(&[0xC1, 0x00], MAX),
            Err(HeaderError::BadFlags { .. })
        ));
        // a header announcing more than the maximum is refused before the body arrives
        assert_eq!(
            decode(&[0x30, 0xFF, 0x7F], 1024),
            Err(HeaderError::TooLarge {
                size: 16_386,
                max: 1024
            })
        );
    }

    proptest! {
        #[test]
        fn remaining_length_round_trips(len in 0u32..=MAX_REMAINING_LENGTH, flags in 0u8..6) {
            let mut frame = vec![0x30 | flags];
            encode_remaining_length(len, &mut frame);
            let h = decode(&frame, MAX).unwrap().unwrap();
            prop_assert_eq!(h.remaining_length, len);
            prop_assert_eq!(h.header_length, frame.len());
            prop_assert_eq!(h.flags, flags);
            // every strict prefix is incomplete, never an error
            for cut in 0..frame.len() {
                prop_assert_eq!(decode(&frame[..cut], MAX), Ok(None));
            }
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..8), max in any::<u32>()) {
            if let Ok(Some(h)) = decode(&bytes, max) {
                prop_assert!(h.packet_length() as u64 <= u64::from(max));
            }
        }
    }
}
