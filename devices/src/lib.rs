//! The device domain, sans IO: what happens to devices, as requests in and [`Effects`] out —
//! metadata writes to commit, telemetry rows to append, messages to publish — with no sockets,
//! no threads and no clock of its own, so every rule is unit-testable without a broker or a
//! store. The engine's services feed it (client events today; the shadow, job and provisioning
//! topics next) and carry the effects out: rows into the telemetry batches, writes through the
//! metadata writer, replies over a broker link once the writes are durable.
//!
//! - [`registry`]: the device record (`devices` table, `iot.devices`) and presence events
//!   (`iot.device_events`).
//! - [`profile`]: what operators say about a device (type, hardware revision, tags, static
//!   groups) and device groups, static or dynamic.
//! - [`shadow`]: device shadows (the AWS IoT Device Shadow contract): merge, delta, metadata,
//!   versions, limits and error documents.
//! - [`certs`]: the fleet CA (issuing device, claim and server certificates, signing CSRs,
//!   reading certificates), the certificate registry's rules, fleet provisioning and enrolled
//!   CAs.
//! - [`ota`]: firmware records and signatures, job executions.

pub mod certs;
pub mod ota;
pub mod profile;
pub mod registry;
pub mod shadow;

use mast_meta::Op;

/// A value of a telemetry row's field.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Bool(bool),
    I64(i64),
}

/// A telemetry row to append: `table`, series tag `device_id`, time (ns since the epoch), fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub table: &'static str,
    pub device_id: String,
    pub time_ns: i64,
    pub fields: Vec<(&'static str, Value)>,
}

/// What a request leads to, for the caller to carry out in this order: append the rows, submit
/// the writes (one atomic submission), and publish replies only once the writes are durable.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    pub rows: Vec<Row>,
    pub writes: Vec<Op>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.writes.is_empty()
    }
}

/// Lower-case hex of `b` (fingerprints, digests, tokens).
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}
