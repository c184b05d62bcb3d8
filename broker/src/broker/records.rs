//! Persisted broker state: restore at start, the session record.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mast_meta::MetaStore;
use mast_protocol::ProtocolVersion;
use mast_protocol::connect::QoS;
use mast_protocol::subscribe::{RetainHandling, SubscriptionOptions};

use super::subs::parse_filter;
use super::{Broker, lock};
use crate::message::{Message, now_ms};
use crate::persist::{self};
use crate::session::{Queued, Session, SubRecord};

impl Broker {
    pub(super) fn restore(&self, meta: &MetaStore) -> anyhow::Result<()> {
        let now = now_ms();
        let mut retained = self.retained.write().unwrap_or_else(|e| e.into_inner());
        for (k, v) in meta.scan_prefix(persist::RETAINED, b"")? {
            match Message::decode(&v) {
                Some(m) if m.remaining_secs(now).is_some() => {
                    retained.insert(m.topic.clone(), Arc::new(m));
                }
                Some(_) => {}
                None => meta.report_unreadable(persist::RETAINED, &k, "not a message record"),
            }
        }
        drop(retained);
        let mut restored = 0usize;
        for (k, v) in meta.scan_prefix(persist::SESSIONS, b"")? {
            let Ok(client_id) = std::str::from_utf8(&k) else {
                meta.report_unreadable(persist::SESSIONS, &k, "client id is not UTF-8");
                continue;
            };
            let Some(rec) = SessionRecord::decode(&v) else {
                meta.report_unreadable(persist::SESSIONS, &k, "not a session record");
                continue;
            };
            let session = Arc::new(Session::new(
                Arc::from(client_id),
                rec.version,
                rec.expiry_secs,
            ));
            {
                let mut inner = session.lock();
                // The clock restarts with the process: an offline session gets its whole
                // expiry again from now (the safe side: never earlier than promised).
                inner.disconnected_at = Some(Instant::now());
                for (key, value) in
                    meta.scan_prefix(persist::QUEUE, &persist::queue_prefix(client_id))?
                {
                    let Some(n) = key
                        .get(key.len().saturating_sub(8)..)
                        .and_then(|b| b.try_into().ok())
                        .filter(|_| key.len() == client_id.len() + 9)
                    else {
                        meta.report_unreadable(
                            persist::QUEUE,
                            &key,
                            "key is not client id, 0, u64",
                        );
                        continue;
                    };
                    let n = u64::from_be_bytes(n);
                    match Queued::decode(&value, n) {
                        Some(q) => {
                            inner.next_key = inner.next_key.max(n + 1);
                            inner.push(q);
                        }
                        None => meta.report_unreadable(
                            persist::QUEUE,
                            &key,
                            "not a queued-message record",
                        ),
                    }
                }
                for id in &rec.qos2_pending {
                    inner.inbound.restore_qos2(*id);
                }
            }
            for (filter, record) in rec.subscriptions {
                if let Ok(spec) = parse_filter(&filter) {
                    self.add_to_trie(&session, spec, record);
                }
                session.lock().subscriptions.insert(filter, record);
            }
            lock(&self.sessions).insert(Arc::clone(&session.client_id), session);
            restored += 1;
        }
        let retained = self.retained.read().map_or(0, |r| r.len());
        self.counters
            .sessions
            .store(restored as i64, Ordering::Relaxed);
        self.counters
            .retained
            .store(retained as i64, Ordering::Relaxed);
        tracing::info!(sessions = restored, retained, "MQTT state restored");
        Ok(())
    }
}

/// A persisted session.
#[derive(Debug, PartialEq)]
pub(super) struct SessionRecord {
    pub(super) version: ProtocolVersion,
    pub(super) expiry_secs: u32,
    pub(super) subscriptions: Vec<(String, SubRecord)>,
    pub(super) qos2_pending: Vec<u16>,
}

impl SessionRecord {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut out = vec![1, self.version.level()];
        out.extend_from_slice(&self.expiry_secs.to_be_bytes());
        out.extend_from_slice(&(self.subscriptions.len() as u32).to_be_bytes());
        for (f, r) in &self.subscriptions {
            out.extend_from_slice(&(f.len() as u16).to_be_bytes());
            out.extend_from_slice(f.as_bytes());
            let o = r.options;
            out.push(
                (o.qos as u8)
                    | (u8::from(o.no_local) << 2)
                    | (u8::from(o.retain_as_published) << 3)
                    | ((o.retain_handling as u8) << 4),
            );
            out.extend_from_slice(&r.id.unwrap_or(0).to_be_bytes());
        }
        out.extend_from_slice(&(self.qos2_pending.len() as u32).to_be_bytes());
        for id in &self.qos2_pending {
            out.extend_from_slice(&id.to_be_bytes());
        }
        out
    }

    pub(super) fn decode(b: &[u8]) -> Option<SessionRecord> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            let (h, t) = b.split_at_checked(n)?;
            *b = t;
            Some(h)
        }
        fn u32_(b: &mut &[u8]) -> Option<u32> {
            Some(u32::from_be_bytes(take(b, 4)?.try_into().ok()?))
        }
        let mut b = b;
        let head = take(&mut b, 2)?;
        if head[0] != 1 {
            return None;
        }
        let version = match head[1] {
            4 => ProtocolVersion::V311,
            5 => ProtocolVersion::V5,
            _ => return None,
        };
        let expiry_secs = u32_(&mut b)?;
        let n = u32_(&mut b)?;
        let mut subscriptions = Vec::new();
        for _ in 0..n {
            let len = u16::from_be_bytes(take(&mut b, 2)?.try_into().ok()?);
            let f = std::str::from_utf8(take(&mut b, usize::from(len))?)
                .ok()?
                .to_owned();
            let o = take(&mut b, 1)?[0];
            let id = u32_(&mut b)?;
            let options = SubscriptionOptions {
                qos: match o & 3 {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => QoS::ExactlyOnce,
                },
                no_local: o & 4 != 0,
                retain_as_published: o & 8 != 0,
                retain_handling: match (o >> 4) & 3 {
                    0 => RetainHandling::SendAtSubscribe,
                    1 => RetainHandling::SendIfNew,
                    _ => RetainHandling::DoNotSend,
                },
            };
            subscriptions.push((
                f,
                SubRecord {
                    options,
                    id: (id != 0).then_some(id),
                },
            ));
        }
        let n = u32_(&mut b)?;
        let mut qos2_pending = Vec::new();
        for _ in 0..n {
            qos2_pending.push(u16::from_be_bytes(take(&mut b, 2)?.try_into().ok()?));
        }
        Some(SessionRecord {
            version,
            expiry_secs,
            subscriptions,
            qos2_pending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_records_round_trip() {
        let rec = SessionRecord {
            version: ProtocolVersion::V5,
            expiry_secs: 3600,
            subscriptions: vec![(
                "$share/g/a/#".into(),
                SubRecord {
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: false,
                        retain_as_published: true,
                        retain_handling: RetainHandling::SendIfNew,
                    },
                    id: Some(42),
                },
            )],
            qos2_pending: vec![7, 9],
        };
        assert_eq!(SessionRecord::decode(&rec.encode()), Some(rec));
        assert_eq!(SessionRecord::decode(&[1, 5, 0]), None);
    }

    /// A session as this version persists it, byte for byte (a later version must keep
    /// reading these bytes).
    #[test]
    fn persisted_bytes_are_pinned() {
        let rec = SessionRecord {
            version: ProtocolVersion::V311,
            expiry_secs: 0x0102_0304,
            subscriptions: vec![(
                "a/+".into(),
                SubRecord {
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: false,
                        retain_handling: RetainHandling::DoNotSend,
                    },
                    id: None,
                },
            )],
            qos2_pending: vec![0x0a0b],
        };
        let hex: String = rec.encode().iter().map(|x| format!("{x:02x}")).collect();
        // record version 1, protocol level 4, expiry (u32 BE), 1 subscription: filter "a/+",
        // options QoS 1 | no local | retain handling 2, id 0 (none); 1 pending QoS 2 id
        let want = [
            "01", "04", "01020304", "00000001", "0003", "612f2b", "25", "00000000", "00000001",
            "0a0b",
        ]
        .concat();
        assert_eq!(hex, want);
        let bytes = crate::message::tests::from_hex(&want);
        assert_eq!(SessionRecord::decode(&bytes), Some(rec));
    }
}
