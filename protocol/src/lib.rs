//! MQTT 3.1.1 and 5.0 for Mast: wire codec, topic names and filters, and a sans-IO session state
//! machine.
//!
//! What it is not: it opens no sockets and stores nothing; the server in `mast-engine` drives it.
//! Depends on no other Mast crate (checked by `tests/tests/workspace_layering.rs`).
//!
//! The codec lands with issue 3; until then this crate only fixes its place in the layering.

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
