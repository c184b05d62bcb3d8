//! MQTT 3.1.1 and 5.0 for Mast: wire codec, topic names and filters, and a sans-IO session state
//! machine.
//!
//! What it is not: it opens no sockets and stores nothing; the server in `mast-engine` drives it.
//! Depends on no other Mast crate (checked by `tests/tests/workspace_layering.rs`).
//!
//! Built so far: the fixed header ([`fixed_header`]), the primitive data types ([`primitives`]),
//! MQTT 5 properties ([`properties`]), reason codes ([`reason`]), every packet body — CONNECT
//! ([`connect`]), CONNACK ([`connack`]), PUBLISH ([`publish`]), the publish responses ([`ack`]),
//! (UN)SUBSCRIBE and their acks ([`subscribe`]), DISCONNECT and AUTH ([`disconnect`]) — with one
//! packet-level entry point ([`packet::decode`], [`packet::encode`]), and topic names and filters
//! ([`topic`]). The session state machine lands with issue 3.

pub mod ack;
pub mod connack;
pub mod connect;
pub mod disconnect;
pub mod fixed_header;
pub mod packet;
pub mod primitives;
pub mod properties;
pub mod publish;
pub mod reason;
pub mod session;
pub mod subscribe;
pub mod topic;
pub mod trie;

/// The MQTT protocol levels this crate speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolVersion {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte carried in CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }
}
