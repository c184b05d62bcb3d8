//! What `system.connections` and the metrics read.

use std::sync::Arc;

use mast_protocol::reason::ReasonCode;

use super::{Broker, lock};
use crate::broker::route::Notifier;
use crate::credentials::Fingerprint;
use crate::session::Session;

/// A connected client, as `system.connections` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Client id.
    pub client_id: String,
    /// "3.1.1" or "5.0".
    pub protocol: &'static str,
    /// Subscriptions held.
    pub subscriptions: usize,
    /// Messages queued for it.
    pub queued: usize,
    /// Bytes queued for it.
    pub queued_bytes: usize,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight: usize,
    /// Session expiry interval, seconds.
    pub expiry_secs: u32,
    /// How it authenticated: `claim`, `certificate`, `password` or `anonymous`.
    pub identity: &'static str,
    /// Its client certificate.
    pub certificate: Option<Fingerprint>,
}

impl Broker {
    /// The clients connected now, by client id.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let sessions: Vec<Arc<Session>> = lock(&self.sessions).values().cloned().collect();
        let mut out = Vec::new();
        for s in sessions {
            let inner = s.lock();
            if inner.owner.is_none() || inner.ended {
                continue;
            }
            out.push(ConnectionInfo {
                client_id: s.client_id.to_string(),
                protocol: crate::message::protocol_name(inner.version),
                subscriptions: inner.subscriptions.len(),
                queued: inner.queue.len(),
                queued_bytes: inner.queued_bytes,
                inflight: inner.outbound.len(),
                expiry_secs: inner.expiry_secs,
                identity: inner.identity.as_str(),
                certificate: inner.cert,
            });
        }
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }

    /// How the owner of the session of `client_id` authenticated, if there is a session.
    pub(crate) fn session_identity(
        &self,
        client_id: &str,
    ) -> Option<crate::credentials::IdentityKind> {
        let s = lock(&self.sessions).get(client_id).cloned()?;
        let inner = s.lock();
        Some(inner.identity)
    }

    /// Whether the session of `client_id` (connected or kept for it) has a subscription that
    /// matches `topic`: a message published there now reaches it, or waits for it.
    pub fn client_subscribed(&self, client_id: &str, topic: &str) -> bool {
        let Some(s) = lock(&self.sessions).get(client_id).cloned() else {
            return false;
        };
        let inner = s.lock();
        inner.subscriptions.keys().any(|raw| {
            super::parse_filter(raw)
                .is_ok_and(|spec| mast_protocol::topic::matches(spec.filter, topic))
        })
    }

    /// The client certificate the connection `to` was established with, while it is connected.
    pub fn certificate_of(&self, to: &crate::link::Requester) -> Option<Fingerprint> {
        let s = lock(&self.sessions).get(&to.client_id).cloned()?;
        let inner = s.lock();
        if inner.owner != Some(to.conn) || inner.ended {
            return None;
        }
        inner.cert
    }

    /// Ends every live connection established with the certificate `fingerprint` (revoked):
    /// MQTT 5 clients get DISCONNECT with `reason`, 3.1.1 clients are closed. Their reactors
    /// act on it at once (woken here). Returns how many were told.
    pub fn disconnect_certificate(&self, fingerprint: &Fingerprint, reason: ReasonCode) -> usize {
        let sessions: Vec<Arc<Session>> = lock(&self.sessions).values().cloned().collect();
        let mut notifier = Notifier::default();
        for s in sessions {
            let mut inner = s.lock();
            if inner.cert.as_ref() != Some(fingerprint) || inner.ended {
                continue;
            }
            if let Some(owner) = inner.owner {
                inner.kick = Some(reason);
                notifier.owners.push(owner);
            }
        }
        let n = notifier.owners.len();
        self.wakers().wake(&mut notifier);
        n
    }

    /// Number of sessions (connected or not).
    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Failed commits of broker state (after the first, acknowledgements that need
    /// persistence are held back).
    pub fn persist_failures(&self) -> u64 {
        self.persist.failures()
    }

    /// Metadata records found unreadable (by anyone reading the store) since the start.
    pub fn unreadable_records(&self) -> u64 {
        self.persist.store().unreadable_total()
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.read().map_or(0, |r| r.len())
    }
}
