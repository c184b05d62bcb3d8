//! Telemetry ingest (issue 4): payload decoders that turn what devices publish into storage
//! write batches. So far: InfluxDB line protocol.

pub mod line_protocol;
