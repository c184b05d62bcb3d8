//! Broker state in the metadata store: retained messages, persistent sessions (expiry and
//! subscriptions) and the QoS 1/2 messages queued for them, written through the metadata
//! store's group-commit [`Writer`](mast_meta::Writer). The record encodings are in
//! `docs/formats/meta.md`.

pub use mast_meta::Op;
pub(crate) use mast_meta::tables::{
    MQTT_QUEUE as QUEUE, MQTT_RETAINED as RETAINED, MQTT_SESSIONS as SESSIONS,
};

/// Key of a queued message: client id, a zero byte, then the per-session key (big-endian so
/// keys sort in queue order).
pub(crate) fn queue_key(client_id: &str, key: u64) -> Vec<u8> {
    let mut k = queue_prefix(client_id);
    k.extend_from_slice(&key.to_be_bytes());
    k
}

pub(crate) fn queue_prefix(client_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(client_id.len() + 9);
    k.extend_from_slice(client_id.as_bytes());
    k.push(0);
    k
}
