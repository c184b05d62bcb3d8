//! MQTT counters, read by the HTTP layer for `/metrics` (Prometheus names in the doc comments).
//! Reactors add to them once per loop turn, not per message.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Broker-wide counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// `mast_mqtt_connections`: connections open now.
    pub connections: AtomicI64,
    /// `mast_mqtt_connections_total`: connections accepted.
    pub connections_total: AtomicU64,
    /// `mast_mqtt_connects_refused_total`: CONNECTs answered with an error.
    pub connects_refused: AtomicU64,
    /// `mast_mqtt_sessions`: sessions held (connected or not).
    pub sessions: AtomicI64,
    /// `mast_mqtt_retained`: retained messages held.
    pub retained: AtomicI64,
    /// `mast_mqtt_messages_in_total`: PUBLISH packets received.
    pub messages_in: AtomicU64,
    /// `mast_mqtt_messages_out_total`: PUBLISH packets sent.
    pub messages_out: AtomicU64,
    /// `mast_mqtt_bytes_in_total`.
    pub bytes_in: AtomicU64,
    /// `mast_mqtt_bytes_out_total`.
    pub bytes_out: AtomicU64,
    /// `mast_mqtt_dropped_total{reason="queue_full"}`.
    pub dropped_queue_full: AtomicU64,
    /// `mast_mqtt_dropped_total{reason="expired"}`.
    pub dropped_expired: AtomicU64,
    /// `mast_mqtt_dropped_total{reason="too_large"}`: larger than the client's maximum packet size.
    pub dropped_too_large: AtomicU64,
    /// `mast_mqtt_retained_refused_total`: retained messages refused at `max_retained`.
    pub retained_refused: AtomicU64,
    /// `mast_mqtt_protocol_errors_total`: connections closed for a malformed or forbidden packet.
    pub protocol_errors: AtomicU64,
    /// `mast_mqtt_auth_failures_total`.
    pub auth_failures: AtomicU64,
    /// `mast_mqtt_not_authorized_total`: publishes and subscriptions refused by the ACL.
    pub not_authorized: AtomicU64,
    /// `mast_mqtt_keepalive_timeouts_total`.
    pub keepalive_timeouts: AtomicU64,
    /// `mast_mqtt_takeovers_total`: sessions taken over by a new connection.
    pub takeovers: AtomicU64,
}

/// Per-reactor tallies, added to [`Counters`] once per loop turn.
#[derive(Debug, Default)]
pub(crate) struct Local {
    pub(crate) messages_in: u64,
    pub(crate) messages_out: u64,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

impl Local {
    pub(crate) fn flush(&mut self, c: &Counters) {
        for (v, a) in [
            (&mut self.messages_in, &c.messages_in),
            (&mut self.messages_out, &c.messages_out),
            (&mut self.bytes_in, &c.bytes_in),
            (&mut self.bytes_out, &c.bytes_out),
        ] {
            if *v > 0 {
                a.fetch_add(*v, Ordering::Relaxed);
                *v = 0;
            }
        }
    }
}
