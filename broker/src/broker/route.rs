//! Routing: matching, retained messages, delivery into session queues, congestion.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mast_protocol::connect::QoS;
use mast_protocol::reason::ReasonCode;
use mast_protocol::topic;

use super::subs::parse_filter;
use super::subs::{Sub, SubKey, SubVal};
use super::{Broker, lock};
use crate::config::SlowSubscriber;
use crate::ids::{ConnRef, Seq};
use crate::link::{LinkWake, Requester};
use crate::message::Message;
use crate::persist::{self, Op};
use crate::session::{Queued, Session};
use mast_protocol::trie::TopicTrie;

/// How long a congested subscriber may slow its publishers down before it counts as slow.
const CONGESTION_LIMIT: Duration = Duration::from_millis(500);

/// How long a connected subscriber's full queue may hold back QoS 1/2 publishers.
const BLOCK_LIMIT: Duration = Duration::from_secs(5);

/// What routing a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Routed {
    /// Persistence sequence the acknowledgement waits for.
    pub(crate) seq: Option<Seq>,
    /// Some subscription matched.
    pub(crate) matched: bool,
    /// Nothing was done: a connected subscriber's queue is full; try again shortly.
    pub(crate) blocked: bool,
}

/// Connections to wake after this loop turn.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    pub(crate) owners: Vec<ConnRef>,
    /// Links whose queue got something.
    pub(crate) links: Vec<Arc<LinkWake>>,
    /// A delivery found a connected subscriber's queue more than half full: the publisher
    /// should be read more slowly for a moment (backpressure before anything is dropped).
    pub(crate) congested: bool,
}

impl Broker {
    /// The subscriptions, to change: the epoch moves (while the lock is held, so a reader that
    /// read the epoch before its walk sees it move after any change it missed).
    pub(super) fn subs_mut(&self) -> std::sync::RwLockWriteGuard<'_, TopicTrie<SubKey, SubVal>> {
        let g = self.subs.write().unwrap_or_else(|e| e.into_inner());
        self.subs_epoch.fetch_add(1, Ordering::AcqRel);
        g
    }

    /// Changes of the subscriptions so far: an answer of `has_subscribers` given after reading
    /// it holds while it stays the same.
    pub(crate) fn subs_epoch(&self) -> u64 {
        self.subs_epoch.load(Ordering::Acquire)
    }

    /// Whether any subscription (of a connected or an offline session, or of a link) matches
    /// `topic`: a service may skip building a message nobody would get.
    pub(crate) fn has_subscribers(&self, topic: &str) -> bool {
        let subs = self.subs.read().unwrap_or_else(|e| e.into_inner());
        let mut any = false;
        subs.for_each_match(topic, |_, _| any = true);
        any
    }

    /// Routes a message to every matching session and updates the retained store. Returns the
    /// persistence sequence number its acknowledgement must wait for and whether any
    /// subscriber matched.
    /// `may_wait`: the caller can hold the message back and retry (a publisher's connection);
    /// wills cannot.
    pub(crate) fn publish(
        &self,
        msg: Arc<Message>,
        notifier: &mut Notifier,
        may_wait: bool,
    ) -> Routed {
        let mut ops = Vec::new();
        let mut targets: Vec<(Arc<Session>, Queued)> = Vec::new();
        // A link matched: its queue never drops, so even a QoS 0 publisher may have to wait.
        let mut link = false;
        {
            let subs = self.subs.read().unwrap_or_else(|e| e.into_inner());
            subs.for_each_match(msg.topic.as_str(), |_, val| {
                let sub = match val {
                    SubVal::Direct(sub) => {
                        if sub.options.no_local
                            && msg.origin.as_deref() == Some(&*sub.session.client_id)
                        {
                            return;
                        }
                        sub
                    }
                    SubVal::Group(members) => match self.pick(members) {
                        Some(sub) => sub,
                        None => return,
                    },
                };
                link |= sub.link;
                let qos = msg.qos.min(sub.options.qos);
                let retain = msg.retain && sub.options.retain_as_published;
                // Overlapping subscriptions of one session: one copy, the highest QoS, every
                // subscription identifier (MQTT 5.0 §3.3.4).
                if let Some((_, q)) = targets
                    .iter_mut()
                    .find(|(s, _)| Arc::ptr_eq(s, &sub.session))
                {
                    q.qos = q.qos.max(qos);
                    q.retain |= retain;
                    q.sub_ids.extend(sub.id);
                } else {
                    targets.push((
                        Arc::clone(&sub.session),
                        Queued {
                            msg: Arc::clone(&msg),
                            qos,
                            retain,
                            sub_ids: sub.id.into_iter().collect(),
                            key: None,
                        },
                    ));
                }
            });
        }
        if may_wait
            && (msg.qos > QoS::AtMostOnce || link)
            && targets.iter().any(|(s, q)| self.must_wait(s, q))
        {
            return Routed {
                seq: None,
                matched: true,
                blocked: true,
            };
        }
        if msg.retain {
            self.retain(&msg, &mut ops);
        }
        let matched = !targets.is_empty();
        for (session, q) in targets {
            self.deliver(&session, q, notifier, &mut ops);
        }
        Routed {
            seq: self.persist.submit(ops),
            matched,
            blocked: false,
        }
    }

    /// Messages a session's queue holds before its publishers are slowed and then held: a
    /// link serves every device, so it gets its own, larger bound (a link bound like one client
    /// held the shadow service's requesters back at 40,000 outstanding, and the pausing and
    /// resuming of their reads cost more than the queue).
    fn max_messages(&self, inner: &crate::session::SessionInner) -> usize {
        if inner.link.is_some() {
            self.cfg.max_service_queued_messages
        } else {
            self.cfg.max_queued_messages
        }
    }

    /// True when a QoS 1/2 message for a connected subscriber, or any message for a link, has
    /// no room in its queue: the publisher waits instead of the message being dropped. A
    /// subscriber that keeps its publishers waiting for BLOCK_LIMIT counts as slow and stops
    /// doing so (its messages are then dropped or it is disconnected, per `slow_subscriber`); a
    /// link never does.
    pub(super) fn must_wait(&self, session: &Session, q: &Queued) -> bool {
        let mut inner = session.lock();
        if q.qos == QoS::AtMostOnce && inner.link.is_none() {
            return false;
        }
        let full = inner.queue.len() >= self.max_messages(&inner)
            || inner.queued_bytes + inner.inflight_bytes + q.msg.size() > self.cfg.max_queued_bytes;
        if !full || !inner.online() || inner.ended {
            return false;
        }
        if inner.link.is_some() {
            return true;
        }
        if inner.slow {
            return false;
        }
        let now = Instant::now();
        let since = *inner.blocked_since.get_or_insert(now);
        if now.duration_since(since) > BLOCK_LIMIT {
            inner.slow = true;
            tracing::info!(client_id = %session.client_id, "slow subscriber: publishers kept waiting for {BLOCK_LIMIT:?}");
            return false;
        }
        true
    }

    /// Picks a shared-subscription member: round robin over the connected ones, else any.
    pub(super) fn pick<'a>(&self, members: &'a [Sub]) -> Option<&'a Sub> {
        if members.is_empty() {
            return None;
        }
        let start = self.share_rr.fetch_add(1, Ordering::Relaxed);
        (0..members.len())
            .map(|i| &members[(start + i) % members.len()])
            .find(|m| m.session.lock().online())
            .or_else(|| members.get(start % members.len()))
    }

    pub(super) fn retain(&self, msg: &Arc<Message>, ops: &mut Vec<Op>) {
        let mut retained = self.retained.write().unwrap_or_else(|e| e.into_inner());
        let key = msg.topic.as_str().as_bytes().to_vec();
        if msg.payload.is_empty() {
            if retained.remove(&msg.topic).is_some() {
                ops.push(Op::Del {
                    table: persist::RETAINED,
                    key,
                });
            }
        } else if retained.len() < self.cfg.max_retained || retained.contains_key(&msg.topic) {
            retained.insert(msg.topic.clone(), Arc::clone(msg));
            let mut value = Vec::new();
            msg.encode(&mut value);
            ops.push(Op::Put {
                table: persist::RETAINED,
                key,
                value,
            });
        } else {
            self.counters
                .retained_refused
                .fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .retained
            .store(retained.len() as i64, Ordering::Relaxed);
    }

    /// Puts a message on a session's queue (bounded), persisting it when the session is
    /// persistent and the QoS is 1 or 2.
    pub(super) fn deliver(
        &self,
        session: &Session,
        mut q: Queued,
        notifier: &mut Notifier,
        ops: &mut Vec<Op>,
    ) {
        let mut inner = session.lock();
        if inner.ended
            || (!inner.online() && q.qos == QoS::AtMostOnce && !self.cfg.queue_qos0_offline)
        {
            return;
        }
        if q.msg.supersedes && !inner.online() {
            supersede(&mut inner, &session.client_id, &q.msg.topic, ops);
        }
        let link = inner.link.is_some();
        // A link's queue is never dropped from: its publishers waited for room, and what cannot
        // wait (a will, a service's own publish) goes over the bound.
        if !link
            && (inner.queue.len() >= self.cfg.max_queued_messages
                || inner.queued_bytes + inner.inflight_bytes + q.msg.size()
                    > self.cfg.max_queued_bytes)
        {
            self.counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            if self.cfg.slow_subscriber == SlowSubscriber::Disconnect
                && let Some(owner) = inner.owner
                && inner.kick.is_none()
            {
                inner.kick = Some(ReasonCode::QUOTA_EXCEEDED);
                notifier.owners.push(owner);
            }
            return;
        }
        if inner.persistent() && q.qos > QoS::AtMostOnce {
            let key = inner.next_key;
            inner.next_key += 1;
            q.key = Some(key);
            ops.push(Op::Put {
                table: persist::QUEUE,
                key: persist::queue_key(&session.client_id, key),
                value: q.encode(),
            });
        }
        let qos = q.qos;
        inner.push(q);
        let half_full = inner.queue.len() * 2 >= self.max_messages(&inner)
            || inner.queued_bytes * 2 >= self.cfg.max_queued_bytes;
        if (inner.owner.is_some() && half_full && qos > QoS::AtMostOnce) || (link && half_full) {
            // At least once: a connected subscriber's QoS 1/2 messages are not dropped while
            // its queue has room; its publishers are slowed down instead, for as long as it
            // takes (the queue bound still caps memory).
            notifier.congested = true;
        } else if inner.owner.is_some() && half_full && !inner.slow {
            // QoS 0, backpressure first: slow the publishers down while the subscriber catches
            // up. A subscriber that stays congested for CONGESTION_LIMIT is slow: from then on
            // its messages are dropped (or it is disconnected) instead, so one slow consumer
            // never throttles its QoS 0 publishers for long.
            let now = Instant::now();
            let since = *inner.congested_since.get_or_insert(now);
            if now.duration_since(since) > CONGESTION_LIMIT {
                inner.slow = true;
                tracing::info!(client_id = %session.client_id, "slow subscriber: queue congested for {CONGESTION_LIMIT:?}");
            } else {
                notifier.congested = true;
            }
        }
        if !inner.notified {
            if let Some(owner) = inner.owner {
                inner.notified = true;
                notifier.owners.push(owner);
            } else if let Some(wake) = inner.link.clone() {
                inner.notified = true;
                notifier.links.push(wake);
            }
        }
    }

    /// A QoS 1/2 message to `session` completed: forget its persisted copy.
    pub(crate) fn delivered(&self, session: &Session, q: &Queued) {
        if let Some(key) = q.key {
            self.persist.submit(vec![Op::Del {
                table: persist::QUEUE,
                key: persist::queue_key(&session.client_id, key),
            }]);
        }
    }

    /// Delivers `msg` to the session of the connection `to` alone, if that connection still owns
    /// it and one of its subscriptions matches the topic: at the highest QoS among those, with
    /// their subscription identifiers. True if it was queued.
    ///
    /// `unsubscribed`: deliver at this QoS even when no subscription matches (AWS IoT Jobs
    /// answers a request on its reply topics "whether the client has subscribed to the topic
    /// or not").
    pub(crate) fn reply(
        &self,
        to: &Requester,
        msg: Arc<Message>,
        unsubscribed: Option<QoS>,
        notifier: &mut Notifier,
    ) -> bool {
        self.direct(&to.client_id, Some(to.conn), msg, unsubscribed, notifier)
    }

    /// Delivers `msg` to the session of `client_id` alone (connected or kept for it), if one of
    /// its subscriptions matches: a service's event meant for one device, which other
    /// subscribers of the topic do not get. True if it was queued.
    pub(crate) fn to_client(
        &self,
        client_id: &str,
        msg: Arc<Message>,
        notifier: &mut Notifier,
    ) -> bool {
        self.direct(client_id, None, msg, None, notifier)
    }

    fn direct(
        &self,
        client_id: &str,
        owner: Option<ConnRef>,
        msg: Arc<Message>,
        unsubscribed: Option<QoS>,
        notifier: &mut Notifier,
    ) -> bool {
        let Some(session) = lock(&self.sessions).get(client_id).cloned() else {
            return false;
        };
        let mut matched: Option<(QoS, Vec<u32>)> = None;
        {
            let inner = session.lock();
            if owner.is_some() && inner.owner != owner {
                return false;
            }
            for (raw, rec) in &inner.subscriptions {
                let Ok(spec) = parse_filter(raw) else {
                    continue;
                };
                if !topic::matches(spec.filter, msg.topic.as_str()) {
                    continue;
                }
                let (qos, ids) = matched.get_or_insert((QoS::AtMostOnce, Vec::new()));
                *qos = (*qos).max(rec.options.qos);
                ids.extend(rec.id);
            }
        }
        let Some((qos, sub_ids)) = matched.or(unsubscribed.map(|q| (q, Vec::new()))) else {
            return false;
        };
        let mut ops = Vec::new();
        let q = Queued {
            qos: msg.qos.min(qos),
            retain: false,
            sub_ids,
            key: None,
            msg,
        };
        self.deliver(&session, q, notifier, &mut ops);
        self.persist.submit(ops);
        true
    }
}

/// Drops the queued messages `topic`'s newest one makes obsolete (and their persisted copies).
fn supersede(
    inner: &mut crate::session::SessionInner,
    client_id: &str,
    topic: &mast_protocol::primitives::Utf8,
    ops: &mut Vec<Op>,
) {
    let mut freed = 0;
    inner.queue.retain(|old| {
        let obsolete = old.msg.supersedes && old.msg.topic == *topic;
        if obsolete {
            freed += old.msg.size();
            if let Some(k) = old.key {
                ops.push(Op::Del {
                    table: persist::QUEUE,
                    key: persist::queue_key(client_id, k),
                });
            }
        }
        !obsolete
    });
    inner.queued_bytes -= freed;
}
