//! The Mast server: configuration, the MQTT broker, and (as later issues land) ingest, the device
//! domain and HTTP. The `mast` binary (`src/main.rs`) is a thin command line over this library.

mod api_certs;
mod api_devices;
mod api_error;
mod api_firmware;
mod api_jobs;
mod api_shadows;
pub mod ca;
pub mod certs;
pub mod cli_certs;
pub mod cli_devices;
pub mod cli_firmware;
pub mod cli_jobs;
pub mod config;
pub mod export;
pub mod firmware;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod metrics;
pub mod mqtt;
pub(crate) mod presence;
pub mod priority;
pub mod provisioning;
pub mod registry;
mod service_thread;
pub mod shadow_acks;
pub mod shadows;
pub mod sql_tables;
pub(crate) mod telemetry;
