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

/// Days from 1970-01-01 to the civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into nanoseconds since the epoch (JSON
/// telemetry's `ts`, a rollout's schedule).
pub fn rfc3339_ns(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() {
            return None;
        }
        let mut padded: String = digits.chars().take(9).collect();
        while padded.len() < 9 {
            padded.push('0');
        }
        frac_ns = padded.parse().ok()?;
    }
    let offset_secs = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6
            && matches!(tz.as_bytes()[0], b'+' | b'-')
            && tz.as_bytes()[3] == b':' =>
        {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset_secs;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
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
