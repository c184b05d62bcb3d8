//! The library half of `mast-loadgen`: the pure, deterministic data generators behind its verbs,
//! so tests (and other tools) can produce exactly the bytes a run sends.
//!
//! What it is: [`iot`], a TSBS-IoT-like truck fleet — tags, random-walk readings and
//! diagnostics, optional dirty data, encoded as InfluxDB line protocol or Mast's JSON — and
//! [`tsbs`], the TSBS IoT query set asked of that data.
//! What it is not: a client. Sockets, pacing and the MQTT session live in the binary.
//!
//! ```
//! use mast_loadgen::iot::{Format, Table, Truck};
//!
//! // Truck 0 of seed 7: one batch of 3 rows at 10 s steps from 2026-01-01T00:00:00Z.
//! let mut truck = Truck::new(7, 0, 0.0);
//! let batch = truck.next_batch(1_767_225_600_000_000_000, 10_000_000_000, 3);
//! let mut payload = String::new();
//! truck.encode(Format::Line, batch.rows(Table::Readings), &mut payload);
//! assert_eq!(payload.lines().count(), 3);
//! assert!(payload.starts_with("readings,name=truck_0,fleet="));
//! ```

pub mod iot;
pub mod tsbs;
