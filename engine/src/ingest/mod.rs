//! Telemetry ingest (issue 4): payload decoders that turn what devices publish into storage
//! write batches. So far: JSON (ThingsBoard shapes) and InfluxDB line protocol.

pub mod json;
pub mod line_protocol;
