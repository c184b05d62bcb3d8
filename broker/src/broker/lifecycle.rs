//! Session lifecycle: attach on CONNECT, detach and wills, expiry.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mast_protocol::ProtocolVersion;
use mast_protocol::connect::QoS;

use super::records::SessionRecord;
use super::subs::{parse_filter, remove_from_trie};
use super::{Broker, Notifier, lock};
use crate::ids::{ConnRef, Seq};
use crate::message::Message;
use crate::persist::{self, Op};
use crate::session::Session;

/// A will waiting for its delay.
#[derive(Debug)]
pub(super) struct DelayedWill {
    pub(super) at: Instant,
    pub(super) client_id: Arc<str>,
    pub(super) msg: Arc<Message>,
}

/// What CONNECT found.
#[derive(Debug)]
pub(crate) struct Attached {
    pub(crate) session: Arc<Session>,
    pub(crate) session_present: bool,
}

impl Broker {
    /// A client id for a client that sent none (MQTT 5.0 §3.1.3.1).
    pub(crate) fn assign_client_id(&self) -> String {
        format!(
            "mast-{:x}",
            self.next_client.fetch_add(1, Ordering::Relaxed)
        )
    }

    pub(super) fn persist_session(&self, session: &Session, ops: &mut Vec<Op>) {
        let inner = session.lock();
        if !inner.persistent() {
            return;
        }
        let rec = SessionRecord {
            version: inner.version,
            expiry_secs: inner.expiry_secs,
            subscriptions: inner
                .subscriptions
                .iter()
                .map(|(f, r)| (f.clone(), *r))
                .collect(),
            qos2_pending: inner
                .inbound
                .pending_qos2()
                .filter(|id| !inner.held_qos2.contains(id))
                .collect(),
        };
        ops.push(Op::Put {
            table: persist::SESSIONS,
            key: session.client_id.as_bytes().to_vec(),
            value: rec.encode(),
        });
    }

    /// Saves a session's record (subscriptions, expiry, QoS 2 ids); returns the sequence to
    /// wait for.
    pub(crate) fn save_session(&self, session: &Session) -> Option<Seq> {
        let mut ops = Vec::new();
        self.persist_session(session, &mut ops);
        self.persist.submit(ops)
    }

    /// CONNECT: finds or creates the session for `client_id` and makes `owner` its connection.
    /// A connection that owned it before is told to go (it sees that it is no longer the owner).
    pub(crate) fn attach(
        &self,
        client_id: &str,
        version: ProtocolVersion,
        clean_start: bool,
        expiry_secs: u32,
        owner: ConnRef,
        notifier: &mut Notifier,
    ) -> Attached {
        lock(&self.wills).retain(|w| &*w.client_id != client_id);
        let mut sessions = lock(&self.sessions);
        let existing = sessions.get(client_id).cloned();
        if let Some(s) = &existing {
            let old = s.lock().owner.take();
            if let Some(old) = old {
                notifier.owners.push(old);
                self.counters.takeovers.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (session, present) = match existing {
            Some(s) if !clean_start => (s, true),
            other => {
                if let Some(old) = other {
                    sessions.remove(client_id);
                    self.discard(&old);
                }
                let s = Arc::new(Session::new(Arc::from(client_id), version, expiry_secs));
                sessions.insert(Arc::clone(&s.client_id), Arc::clone(&s));
                self.counters
                    .sessions
                    .store(sessions.len() as i64, Ordering::Relaxed);
                (s, false)
            }
        };
        drop(sessions);
        {
            let mut inner = session.lock();
            inner.owner = Some(owner);
            inner.version = version;
            inner.expiry_secs = expiry_secs;
            inner.disconnected_at = None;
            inner.kick = None;
            inner.notified = true;
        }
        notifier.owners.push(owner);
        Attached {
            session,
            session_present: present,
        }
    }

    /// Removes a session's subscriptions and persisted state (the session map entry is the
    /// caller's business).
    pub(super) fn discard(&self, session: &Session) {
        let filters: Vec<String> = {
            let mut inner = session.lock();
            inner.ended = true;
            inner.queue.clear();
            inner.queued_bytes = 0;
            std::mem::take(&mut inner.subscriptions)
                .into_keys()
                .collect()
        };
        {
            let mut subs = self.subs_mut();
            for f in &filters {
                if let Ok(spec) = parse_filter(f) {
                    remove_from_trie(&mut subs, &session.client_id, spec);
                }
            }
        }
        self.persist.submit(vec![
            Op::Del {
                table: persist::SESSIONS,
                key: session.client_id.as_bytes().to_vec(),
            },
            Op::DelPrefix {
                table: persist::QUEUE,
                prefix: persist::queue_prefix(&session.client_id),
            },
        ]);
    }

    /// The connection `owner` of `session` ended. `will` is published (now or after its delay)
    /// unless the client disconnected normally.
    pub(crate) fn detach(
        &self,
        session: &Arc<Session>,
        owner: ConnRef,
        will: Option<(Arc<Message>, u32)>,
        notifier: &mut Notifier,
    ) {
        let (still_owner, expiry) = {
            let mut inner = session.lock();
            if inner.owner == Some(owner) {
                inner.owner = None;
                inner.notified = false;
                inner.disconnected_at = Some(Instant::now());
                if !self.cfg.queue_qos0_offline {
                    let before = inner.queue.len();
                    inner.queue.retain(|q| q.qos > QoS::AtMostOnce);
                    if inner.queue.len() != before {
                        inner.queued_bytes = inner.queue.iter().map(|q| q.msg.size()).sum();
                    }
                }
                (true, inner.expiry_secs)
            } else {
                (false, inner.expiry_secs)
            }
        };
        if let Some((msg, delay)) = will {
            let delay = if still_owner { delay.min(expiry) } else { 0 };
            if delay == 0 {
                self.publish(msg, notifier, false);
            } else {
                lock(&self.wills).push(DelayedWill {
                    at: Instant::now() + Duration::from_secs(u64::from(delay)),
                    client_id: Arc::clone(&session.client_id),
                    msg,
                });
            }
        }
        if still_owner && expiry == 0 {
            let mut sessions = lock(&self.sessions);
            if sessions
                .get(&session.client_id)
                .is_some_and(|s| Arc::ptr_eq(s, session))
            {
                sessions.remove(&session.client_id);
                self.counters
                    .sessions
                    .store(sessions.len() as i64, Ordering::Relaxed);
                drop(sessions);
                self.discard(session);
            }
        }
    }

    /// Once a second: ends expired offline sessions and publishes wills whose delay is over.
    pub(crate) fn housekeeping(&self, notifier: &mut Notifier) {
        let now = Instant::now();
        let due: Vec<DelayedWill> = {
            let mut wills = lock(&self.wills);
            let (due, keep): (Vec<_>, Vec<_>) = wills.drain(..).partition(|w| w.at <= now);
            *wills = keep;
            due
        };
        for w in due {
            self.publish(w.msg, notifier, false);
        }
        let expired: Vec<Arc<Session>> = {
            let mut sessions = lock(&self.sessions);
            let gone: Vec<Arc<str>> = sessions
                .iter()
                .filter(|(_, s)| {
                    let inner = s.lock();
                    inner.owner.is_none()
                        && inner.disconnected_at.is_some_and(|t| {
                            now.duration_since(t)
                                >= Duration::from_secs(u64::from(inner.expiry_secs))
                        })
                })
                .map(|(k, _)| Arc::clone(k))
                .collect();
            let out = gone.iter().filter_map(|k| sessions.remove(k)).collect();
            self.counters
                .sessions
                .store(sessions.len() as i64, Ordering::Relaxed);
            out
        };
        for s in expired {
            tracing::info!(client_id = %s.client_id, "session expired");
            self.discard(&s);
        }
    }
}
