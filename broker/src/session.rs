//! A client's session as the broker holds it: the queue of messages waiting for it, its QoS 1/2
//! flows (the protocol crate's state machines), its subscriptions, and which connection owns it
//! now. It outlives its connection when the session expiry says so.
//!
//! Lock order across the broker: the session map, then the subscription trie, then one
//! session's `inner`. Nothing else is locked while `inner` is held.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use mast_protocol::ProtocolVersion;
use mast_protocol::connect::QoS;
use mast_protocol::reason::ReasonCode;
use mast_protocol::session::{Inbound, Outbound};
use mast_protocol::subscribe::SubscriptionOptions;

use super::ids::ConnRef;
use super::link::LinkWake;
use super::message::Message;

/// A message waiting for (or in flight to) one subscriber.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    pub(crate) msg: Arc<Message>,
    /// QoS granted to this subscriber for this message.
    pub(crate) qos: QoS,
    /// RETAIN flag to send.
    pub(crate) retain: bool,
    /// Subscription identifiers of the matching subscriptions.
    pub(crate) sub_ids: Vec<u32>,
    /// Key in the metadata store when persisted.
    pub(crate) key: Option<u64>,
}

impl Queued {
    /// Encodes for the metadata store.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.qos.level() | (u8::from(self.retain) << 2)];
        out.push(self.sub_ids.len().min(255) as u8);
        for id in self.sub_ids.iter().take(255) {
            out.extend_from_slice(&id.to_be_bytes());
        }
        self.msg.encode(&mut out);
        out
    }

    /// Decodes what [`Queued::encode`] wrote.
    pub(crate) fn decode(bytes: &[u8], key: u64) -> Option<Queued> {
        let (&flags, rest) = bytes.split_first()?;
        // Version 1 has no version byte: its first byte, the flags, is below 0x08. A later
        // version starts with a byte of 0x80 or more, which this one does not read.
        if flags & !0b111 != 0 {
            return None;
        }
        let (&n, mut rest) = rest.split_first()?;
        let mut sub_ids = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let (id, r) = rest.split_first_chunk::<4>()?;
            sub_ids.push(u32::from_be_bytes(*id));
            rest = r;
        }
        Some(Queued {
            msg: Arc::new(Message::decode(rest)?),
            qos: QoS::from_level(flags & 0b11)?,
            retain: flags & 0b100 != 0,
            sub_ids,
            key: Some(key),
        })
    }
}

/// One subscription of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubRecord {
    pub(crate) options: SubscriptionOptions,
    pub(crate) id: Option<u32>,
}

/// A session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) client_id: Arc<str>,
    inner: Mutex<SessionInner>,
}

/// The mutable part of a session.
#[derive(Debug)]
pub(crate) struct SessionInner {
    pub(crate) queue: VecDeque<Queued>,
    pub(crate) queued_bytes: usize,
    /// Bytes of the messages in flight (they count against the byte bound with the queue).
    pub(crate) inflight_bytes: usize,
    pub(crate) outbound: Outbound<Queued>,
    pub(crate) inbound: Inbound,
    pub(crate) owner: Option<ConnRef>,
    /// Set for a link's session: its service thread, woken when the queue gets something.
    pub(crate) link: Option<Arc<LinkWake>>,
    /// The owner has been told there is something to send and has not looked yet.
    pub(crate) notified: bool,
    /// Filters as the client gave them (with any `$share/group/` prefix).
    pub(crate) subscriptions: BTreeMap<String, SubRecord>,
    pub(crate) expiry_secs: u32,
    pub(crate) version: ProtocolVersion,
    /// Set to end the owning connection with this reason (slow-subscriber policy).
    pub(crate) kick: Option<ReasonCode>,
    /// The client certificate of the owning connection (to end it when the certificate is
    /// revoked).
    pub(crate) cert: Option<crate::credentials::Fingerprint>,
    /// How the owning connection authenticated ([`crate::credentials::Identity::kind`]).
    pub(crate) identity: crate::credentials::IdentityKind,
    pub(crate) disconnected_at: Option<Instant>,
    /// The session was discarded; deliveries are ignored.
    pub(crate) ended: bool,
    pub(crate) next_key: u64,
    /// Since when the queue has been more than half full (publishers are slowed meanwhile).
    pub(crate) congested_since: Option<Instant>,
    /// The queue stayed congested too long: a slow subscriber, whose publishers are no longer
    /// slowed (its messages are dropped instead, per policy) until it catches up.
    pub(crate) slow: bool,
    /// Since when a full queue has held QoS 1/2 publishers back.
    pub(crate) blocked_since: Option<Instant>,
    /// Inbound QoS 2 ids a publish hook holds (their messages are not done, e.g. not durable
    /// yet). They are left out of the persisted record: after a crash a resend must be handled
    /// again, not taken for a duplicate.
    pub(crate) held_qos2: Vec<u16>,
}

impl Session {
    pub(crate) fn new(client_id: Arc<str>, version: ProtocolVersion, expiry_secs: u32) -> Self {
        Session {
            client_id,
            inner: Mutex::new(SessionInner {
                queue: VecDeque::new(),
                queued_bytes: 0,
                inflight_bytes: 0,
                outbound: Outbound::new(u16::MAX),
                inbound: Inbound::new(u16::MAX),
                owner: None,
                link: None,
                notified: false,
                subscriptions: BTreeMap::new(),
                expiry_secs,
                version,
                kick: None,
                cert: None,
                identity: crate::credentials::IdentityKind::Anonymous,
                disconnected_at: None,
                ended: false,
                next_key: 1,
                congested_since: None,
                slow: false,
                blocked_since: None,
                held_qos2: Vec::new(),
            }),
        }
    }

    /// Locks the mutable part (a poisoned lock is taken over: the state is plain data).
    pub(crate) fn lock(&self) -> MutexGuard<'_, SessionInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SessionInner {
    pub(crate) fn persistent(&self) -> bool {
        self.expiry_secs > 0
    }

    /// Someone takes messages from the queue now: a connection, or a link's service.
    pub(crate) fn online(&self) -> bool {
        self.owner.is_some() || self.link.is_some()
    }

    pub(crate) fn push(&mut self, q: Queued) {
        self.queued_bytes += q.msg.size();
        self.queue.push_back(q);
    }

    pub(crate) fn pop(&mut self) -> Option<Queued> {
        let q = self.queue.pop_front()?;
        self.queued_bytes -= q.msg.size();
        Some(q)
    }

    /// After a drain: a queue back under a quarter full ends congestion (and slowness).
    pub(crate) fn relieve(&mut self, max_messages: usize, max_bytes: usize) {
        if self.queue.len() * 4 <= max_messages && self.queued_bytes * 4 <= max_bytes {
            self.congested_since = None;
            self.blocked_since = None;
            self.slow = false;
        }
    }

    pub(crate) fn push_front(&mut self, q: Queued) {
        self.queued_bytes += q.msg.size();
        self.queue.push_front(q);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mast_protocol::primitives::Utf8;

    /// A queued message as this version persists it, byte for byte: flags (QoS 2, retain),
    /// two subscription ids (u32 BE), then the message's own pinned bytes.
    #[test]
    fn persisted_bytes_are_pinned() {
        let (m, msg_hex) = crate::message::tests::fixture();
        let q = Queued {
            msg: Arc::new(m),
            qos: QoS::ExactlyOnce,
            retain: true,
            sub_ids: vec![1, 0x0102_0304],
            key: None,
        };
        let hex: String = q.encode().iter().map(|x| format!("{x:02x}")).collect();
        // flags 0b110 (QoS 2, retain), 2 ids: 1 and 0x01020304, then the message
        let want = format!("{}{}{}{}{msg_hex}", "06", "02", "00000001", "01020304");
        assert_eq!(hex, want);
        let back = Queued::decode(&q.encode(), 5).unwrap();
        assert_eq!(
            (back.msg, back.qos, back.retain, back.sub_ids),
            (q.msg, QoS::ExactlyOnce, true, vec![1, 0x0102_0304])
        );
    }

    #[test]
    fn queued_messages_round_trip_through_the_store_encoding() {
        let q = Queued {
            msg: Arc::new(Message {
                topic: Utf8::new("x/y"),
                payload: Bytes::from_static(b"p"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: Default::default(),
                origin: None,
                origin_conn: None,
                supersedes: false,
                expires_at: None,
            }),
            qos: QoS::AtLeastOnce,
            retain: true,
            sub_ids: vec![7, 300],
            key: Some(9),
        };
        let back = Queued::decode(&q.encode(), 9).unwrap();
        assert_eq!(back.msg, q.msg);
        assert_eq!(
            (back.qos, back.retain, back.sub_ids, back.key),
            (QoS::AtLeastOnce, true, vec![7, 300], Some(9))
        );
        assert!(Queued::decode(&[1, 3, 0], 1).is_none());
    }
}
