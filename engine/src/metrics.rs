//! `GET /metrics`: the MQTT, storage and query counters in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use mast_query::QueryEngine;
use mast_storage::Store;

use crate::mqtt::Broker;

struct Out(String);

impl Out {
    fn metric(&mut self, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        for (labels, v) in samples {
            if labels.is_empty() {
                let _ = writeln!(self.0, "{name} {v}");
            } else {
                let _ = writeln!(self.0, "{name}{{{labels}}} {v}");
            }
        }
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, v: f64) {
        self.metric(name, kind, help, &[("", v)]);
    }
}

/// Renders every metric.
pub fn render(
    broker: &Broker,
    ingest: &crate::ingest::IngestCounters,
    store: &Store,
    engine: &QueryEngine,
) -> String {
    let c = &broker.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let mut o = Out(String::with_capacity(8 * 1024));
    o.one(
        "mast_mqtt_connections",
        "gauge",
        "MQTT connections open now.",
        c.connections.load(Ordering::Relaxed) as f64,
    );
    o.one(
        "mast_mqtt_connections_total",
        "counter",
        "MQTT connections accepted.",
        get(&c.connections_total),
    );
    o.one(
        "mast_mqtt_connects_refused_total",
        "counter",
        "CONNECTs answered with an error.",
        get(&c.connects_refused),
    );
    o.one(
        "mast_mqtt_sessions",
        "gauge",
        "MQTT sessions held, connected or not.",
        c.sessions.load(Ordering::Relaxed) as f64,
    );
    o.one(
        "mast_mqtt_retained",
        "gauge",
        "Retained messages held.",
        c.retained.load(Ordering::Relaxed) as f64,
    );
    o.one(
        "mast_mqtt_messages_in_total",
        "counter",
        "PUBLISH packets received.",
        get(&c.messages_in),
    );
    o.one(
        "mast_mqtt_messages_out_total",
        "counter",
        "PUBLISH packets sent.",
        get(&c.messages_out),
    );
    o.one(
        "mast_mqtt_bytes_in_total",
        "counter",
        "MQTT bytes received.",
        get(&c.bytes_in),
    );
    o.one(
        "mast_mqtt_bytes_out_total",
        "counter",
        "MQTT bytes sent.",
        get(&c.bytes_out),
    );
    o.metric(
        "mast_mqtt_dropped_total",
        "counter",
        "Messages not delivered to a subscriber, by reason.",
        &[
            ("reason=\"queue_full\"", get(&c.dropped_queue_full)),
            ("reason=\"expired\"", get(&c.dropped_expired)),
            ("reason=\"too_large\"", get(&c.dropped_too_large)),
        ],
    );
    o.one(
        "mast_mqtt_retained_refused_total",
        "counter",
        "Retained messages refused at max_retained.",
        get(&c.retained_refused),
    );
    o.one(
        "mast_mqtt_protocol_errors_total",
        "counter",
        "Connections closed for a malformed or forbidden packet.",
        get(&c.protocol_errors),
    );
    o.one(
        "mast_mqtt_auth_failures_total",
        "counter",
        "CONNECTs refused for bad credentials.",
        get(&c.auth_failures),
    );
    o.one(
        "mast_mqtt_not_authorized_total",
        "counter",
        "Publishes and subscriptions refused by the ACL.",
        get(&c.not_authorized),
    );
    o.one(
        "mast_mqtt_keepalive_timeouts_total",
        "counter",
        "Connections closed for a missed keep-alive.",
        get(&c.keepalive_timeouts),
    );
    o.one(
        "mast_mqtt_takeovers_total",
        "counter",
        "Sessions taken over by a new connection.",
        get(&c.takeovers),
    );
    o.one(
        "mast_ingest_refused_total",
        "counter",
        "Telemetry messages refused wholly or in part.",
        get(&ingest.refused),
    );
    o.one(
        "mast_mqtt_persist_failures_total",
        "counter",
        "Session and retained-message writes that failed.",
        broker.persist_failures() as f64,
    );
    o.one(
        "mast_meta_unreadable_records_total",
        "counter",
        "Metadata records that did not decode (listed in system.unreadable_records).",
        broker.unreadable_records() as f64,
    );

    let s = store.stats();
    o.one(
        "mast_storage_rows_total",
        "counter",
        "Rows stored.",
        s.rows as f64,
    );
    o.one(
        "mast_storage_points_total",
        "counter",
        "Points (field values) stored.",
        s.points as f64,
    );
    o.one(
        "mast_storage_rejected_total",
        "counter",
        "Points and rows refused (type conflicts, limits).",
        s.rejected as f64,
    );
    o.one(
        "mast_storage_batches_total",
        "counter",
        "Write batches applied.",
        s.batches as f64,
    );
    o.one(
        "mast_storage_wal_groups_total",
        "counter",
        "WAL groups committed.",
        s.groups as f64,
    );
    o.one(
        "mast_storage_wal_bytes_total",
        "counter",
        "Bytes appended to WALs.",
        s.wal_bytes as f64,
    );
    o.one(
        "mast_storage_fsyncs_total",
        "counter",
        "WAL fsyncs.",
        s.fsyncs as f64,
    );
    o.one(
        "mast_storage_seals_total",
        "counter",
        "Heads sealed into segments.",
        s.seals as f64,
    );
    o.one(
        "mast_storage_segments_dropped_total",
        "counter",
        "Segments removed by retention.",
        s.segments_dropped as f64,
    );
    o.one(
        "mast_storage_head_bytes",
        "gauge",
        "Bytes in in-memory heads.",
        s.head_bytes as f64,
    );
    o.one(
        "mast_storage_quarantined_segments",
        "gauge",
        "Segment files set aside as corrupt at start.",
        s.quarantined_segments as f64,
    );
    o.one(
        "mast_storage_poisoned_shards",
        "gauge",
        "Shards refusing writes after a WAL failure.",
        s.poisoned_shards as f64,
    );
    let stage = |i: usize| s.stage_ns.get(i).copied().unwrap_or(0) as f64 / 1e9;
    o.metric(
        "mast_storage_write_stage_seconds_total",
        "counter",
        "Time the shard writers spent per write stage.",
        &[
            ("stage=\"resolve\"", stage(0)),
            ("stage=\"wal_write\"", stage(1)),
            ("stage=\"fsync\"", stage(2)),
            ("stage=\"apply\"", stage(3)),
            ("stage=\"seal\"", stage(4)),
        ],
    );
    let segs = store.snapshot().segments();
    o.one(
        "mast_storage_segments",
        "gauge",
        "Sealed segment files.",
        segs.len() as f64,
    );
    o.one(
        "mast_storage_segment_bytes",
        "gauge",
        "Bytes in sealed segment files.",
        segs.iter().map(|s| s.bytes).sum::<u64>() as f64,
    );

    let q = engine.log().counts();
    o.one(
        "mast_queries_running",
        "gauge",
        "SQL queries running now.",
        q.running as f64,
    );
    o.metric(
        "mast_queries_total",
        "counter",
        "SQL queries finished, by outcome.",
        &[
            ("outcome=\"done\"", q.done as f64),
            ("outcome=\"failed\"", q.failed as f64),
            ("outcome=\"cancelled\"", q.cancelled as f64),
        ],
    );
    o.one(
        "mast_query_rows_total",
        "counter",
        "Rows returned by SQL queries.",
        q.rows as f64,
    );
    o.one(
        "mast_query_seconds_total",
        "counter",
        "Time SQL queries ran, summed.",
        q.seconds,
    );
    o.0
}
