//! Telemetry ingest: which topics carry telemetry, which decoder a payload needs, and the
//! decoders that turn it into storage write batches (JSON in ThingsBoard's shapes, InfluxDB line
//! protocol).
//!
//! ```text
//! devices/{device_id}/telemetry          → table "telemetry" (line protocol: its measurement)
//! devices/{device_id}/telemetry/{table}  → table {table}
//! ```
//!
//! The MQTT side (batching per shard, durable acknowledgements, error replies) is in
//! `crate::telemetry`.

pub mod json;
pub mod line_protocol;

use mast_protocol::reason::ReasonCode;

/// Counters of the telemetry path, beside the broker's (`/metrics` renders both).
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// `mast_ingest_refused_total`: telemetry messages refused wholly or in part (each gets an
    /// error reply on `devices/{id}/errors`).
    pub refused: std::sync::atomic::AtomicU64,
}

/// What every reactor's telemetry path shares: where points go, how JSON keys become tags, and
/// the counters.
#[derive(Debug)]
pub(crate) struct TelemetryPath {
    /// Telemetry storage.
    pub(crate) store: std::sync::Arc<mast_storage::Store>,
    /// Which JSON keys are tags, per table.
    pub(crate) tag_keys: TagKeys,
    /// `/metrics` counters.
    pub(crate) counters: std::sync::Arc<IngestCounters>,
}

/// The table of `devices/{id}/telemetry` when the payload names none.
pub const DEFAULT_TABLE: &str = "telemetry";

/// Schemas Mast keeps for itself: a table `iot.x` or `system.x` cannot come from a device.
const RESERVED_SCHEMAS: [&str; 3] = ["iot.", "system.", "information_schema."];

/// Storage table of the presence events (`iot.device_events` in SQL).
pub use mast_devices::registry::DEVICE_EVENTS_TABLE;

/// True for table names devices may not write (Mast's own schemas).
pub fn reserved_table(name: &str) -> bool {
    RESERVED_SCHEMAS.iter().any(|s| {
        name.len() >= s.len() && name.as_bytes()[..s.len()].eq_ignore_ascii_case(s.as_bytes())
    })
}

/// The common number form, `-?digits(.digits)?` with at most 15 significant digits, parsed
/// without the general parser: the digits form an exact integer and one division by an exact
/// power of ten rounds correctly (Clinger's fast path), so the value equals `str::parse`'s.
/// Returns the value and the bytes it took; `None` when the text needs the general parser
/// (more digits, an exponent, no digits). The caller checks what follows.
pub(crate) fn simple_decimal(b: &[u8]) -> Option<(f64, usize)> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    // Appends the digits from `i` to the mantissa; the index after them, or `None` past 15.
    fn digits(b: &[u8], mut i: usize, mantissa: &mut u64, count: &mut usize) -> Option<usize> {
        while let Some(d @ b'0'..=b'9') = b.get(i) {
            *mantissa = *mantissa * 10 + u64::from(d - b'0');
            *count += 1;
            i += 1;
            if *count > 15 {
                return None;
            }
        }
        Some(i)
    }
    let neg = b.first() == Some(&b'-');
    let int_start = usize::from(neg);
    let (mut mantissa, mut count) = (0u64, 0usize);
    let mut i = digits(b, int_start, &mut mantissa, &mut count)?;
    if i == int_start {
        return None;
    }
    let mut scale = 0usize;
    if b.get(i) == Some(&b'.') {
        let frac_start = i + 1;
        i = digits(b, frac_start, &mut mantissa, &mut count)?;
        scale = i - frac_start;
        if scale == 0 {
            return None;
        }
    }
    let v = mantissa as f64 / POW10[scale];
    Some((if neg { -v } else { v }, i))
}

/// The JSON keys that are tags, per table (`[ingest]` `tag_keys`); empty by default, when every
/// JSON value is a field.
#[derive(Debug, Clone, Default)]
pub struct TagKeys {
    all: Vec<Box<str>>,
    tables: std::collections::HashMap<Box<str>, Vec<Box<str>>>,
}

impl TagKeys {
    /// Keys that are tags in every table, and per table.
    pub fn new<'a>(
        all: &[String],
        tables: impl IntoIterator<Item = (&'a str, &'a [String])>,
    ) -> TagKeys {
        let boxed = |l: &[String]| l.iter().map(|k| Box::from(k.as_str())).collect::<Vec<_>>();
        let all = boxed(all);
        let tables = tables
            .into_iter()
            .map(|(t, keys)| {
                let mut keys = boxed(keys);
                keys.extend(all.iter().cloned());
                (Box::from(t), keys)
            })
            .collect();
        TagKeys { all, tables }
    }

    /// The tag keys of `table` (empty: all JSON values are fields).
    pub fn of(&self, table: &str) -> &[Box<str>] {
        self.tables.get(table).unwrap_or(&self.all)
    }
}

/// A telemetry topic, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Telemetry<'a> {
    /// The device the points are for.
    pub device_id: &'a str,
    /// The table the topic names, if it names one.
    pub table: Option<&'a str>,
}

/// What kind of refusal an [`IngestError`] is; each has its MQTT 5 reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The topic is under `devices/{id}/telemetry` but not a valid telemetry topic (0x90).
    Topic,
    /// The client may not publish for this device (0x87).
    NotAuthorized,
    /// The payload cannot be decoded, or a value conflicts with a column's type (0x99).
    Payload,
    /// A table's column or series limit is reached (0x97).
    Quota,
    /// Storage could not take the write (0x80); nothing was stored.
    Storage,
}

impl ErrorKind {
    /// The PUBACK/PUBREC reason code.
    pub fn reason_code(self) -> ReasonCode {
        match self {
            ErrorKind::Topic => ReasonCode::TOPIC_NAME_INVALID,
            ErrorKind::NotAuthorized => ReasonCode::NOT_AUTHORIZED,
            ErrorKind::Payload => ReasonCode::PAYLOAD_FORMAT_INVALID,
            ErrorKind::Quota => ReasonCode::QUOTA_EXCEEDED,
            ErrorKind::Storage => ReasonCode::UNSPECIFIED_ERROR,
        }
    }
}

/// Why a telemetry message was refused, wholly or in part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestError {
    /// The kind (and with it the reason code).
    pub kind: ErrorKind,
    /// What is wrong, for the device's error topic and the v5 Reason String.
    pub message: String,
}

impl IngestError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        IngestError {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for IngestError {}

/// `None` for topics that are not telemetry (they are only routed); otherwise the device and
/// table, or why the topic cannot carry telemetry.
pub fn parse_topic(topic: &str) -> Option<Result<Telemetry<'_>, IngestError>> {
    let rest = topic.strip_prefix("devices/")?;
    let (device_id, rest) = rest.split_once('/')?;
    let table = match rest.strip_prefix("telemetry") {
        Some("") => None,
        Some(t) => match t.strip_prefix('/') {
            Some(t) => Some(t),
            None => return None, // devices/x/telemetryfoo: not ours
        },
        None => return None,
    };
    let bad = |m: String| Some(Err(IngestError::new(ErrorKind::Topic, m)));
    if device_id.is_empty() {
        return bad("empty device id in the topic".into());
    }
    if let Some(t) = table {
        if t.is_empty() || t.contains('/') {
            return bad(format!(
                "telemetry topics are devices/{{id}}/telemetry or devices/{{id}}/telemetry/{{table}}, not {topic:?}"
            ));
        }
        if reserved_table(t) {
            return bad(format!("table name {t:?} is reserved"));
        }
    }
    Some(Ok(Telemetry { device_id, table }))
}

/// A payload's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON (ThingsBoard shapes).
    Json,
    /// InfluxDB line protocol.
    Line,
}

/// The format of a payload: the MQTT 5 content type when it names one
/// (`text/plain; format=line`, `application/json`), else JSON when the first non-blank byte
/// opens an object or array, else line protocol.
pub fn sniff(payload: &[u8], content_type: Option<&str>) -> Format {
    if let Some(ct) = content_type {
        let ct = ct.to_ascii_lowercase();
        if ct.contains("format=line") || ct.starts_with("application/x-influx") {
            return Format::Line;
        }
        if ct.starts_with("application/json") {
            return Format::Json;
        }
    }
    match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{' | b'[') => Format::Json,
        _ => Format::Line,
    }
}

/// Decodes a telemetry payload into `batch`, all or nothing; returns the rows added.
pub fn decode(
    payload: &[u8],
    content_type: Option<&str>,
    t: &Telemetry<'_>,
    now_ns: i64,
    tag_keys: &TagKeys,
    batch: &mut mast_storage::WriteBatch,
) -> Result<usize, IngestError> {
    let payload_err = |m: String| IngestError::new(ErrorKind::Payload, m);
    match sniff(payload, content_type) {
        Format::Json => {
            let table = t.table.unwrap_or(DEFAULT_TABLE);
            json::decode_tagged(
                payload,
                t.device_id,
                table,
                now_ns,
                tag_keys.of(table),
                batch,
            )
            .map_err(|e| payload_err(e.to_string()))
        }
        Format::Line => line_protocol::decode(payload, t.device_id, t.table, now_ns, batch)
            .map_err(|e| payload_err(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        let t = |s| parse_topic(s);
        assert_eq!(
            t("devices/d1/telemetry"),
            Some(Ok(Telemetry {
                device_id: "d1",
                table: None
            }))
        );
        assert_eq!(
            t("devices/d1/telemetry/readings"),
            Some(Ok(Telemetry {
                device_id: "d1",
                table: Some("readings")
            }))
        );
        assert_eq!(t("devices/d1/errors"), None);
        assert_eq!(t("devices/d1/telemetryx"), None);
        assert_eq!(t("sensors/d1/telemetry"), None);
        assert_eq!(t("devices/d1"), None);
        for bad in [
            "devices//telemetry",
            "devices/d1/telemetry/",
            "devices/d1/telemetry/a/b",
            "devices/d1/telemetry/iot.devices",
            "devices/d1/telemetry/System.tables",
        ] {
            let e = t(bad).unwrap().unwrap_err();
            assert_eq!(e.kind, ErrorKind::Topic, "{bad}");
        }
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"  {\"a\":1}", None), Format::Json);
        assert_eq!(sniff(b"\n[{}]", None), Format::Json);
        assert_eq!(sniff(b"m a=1", None), Format::Line);
        assert_eq!(sniff(b"", None), Format::Line);
        assert_eq!(
            sniff(b"{\"a\":1}", Some("text/plain; format=line")),
            Format::Line
        );
        assert_eq!(sniff(b"m a=1", Some("application/json")), Format::Json);
        assert_eq!(sniff(b"m a=1", Some("text/plain")), Format::Line);
    }

    #[test]
    fn reserved_names() {
        assert!(reserved_table("iot.device_events"));
        assert!(reserved_table("SYSTEM.x"));
        assert!(!reserved_table("iotx"));
        assert!(!reserved_table("readings.v2"));
    }
}
