//! Fuzzes `packet::decode`, the decoder of every byte a client sends, as the reactor drives it:
//! packet after packet off one buffer, on both protocol versions, with a 1 MiB maximum packet
//! size.
//!
//! Checks: nothing panics; a packet decodes only from bytes that were there and consumes them;
//! and every decoded packet re-encodes to a frame that decodes to the same packet, whole.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mast_protocol::ProtocolVersion;
use mast_protocol::packet::{decode, encode};

const MAX_PACKET: u32 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            match decode(&mut buf, version, MAX_PACKET) {
                Ok(Some(packet)) => {
                    assert!(buf.len() < before, "a packet consumes its bytes");
                    let mut frame = Vec::new();
                    encode(&packet, version, &mut frame);
                    let mut again = BytesMut::from(&frame[..]);
                    let round = decode(&mut again, version, u32::MAX);
                    assert_eq!(round, Ok(Some(packet)), "re-encoded packet decodes the same");
                    assert!(again.is_empty(), "re-encoded packet is one whole frame");
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "an incomplete frame stays buffered");
                    break;
                }
                Err(_) => break,
            }
        }
    }
});
