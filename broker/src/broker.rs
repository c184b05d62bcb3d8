//! The broker's shared state and its operations: sessions, the subscription trie (with shared
//! subscriptions), retained messages, wills, and routing a message to the sessions it matches.
//!
//! Reactor threads call into it; it never does socket IO. Delivering a message pushes it onto
//! the target session's queue and records the owning connection in a [`Notifier`]; the calling
//! reactor wakes the owners once per loop turn, not once per message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use mast_meta::MetaStore;
use mast_protocol::ProtocolVersion;
use mast_protocol::connect::QoS;
use mast_protocol::primitives::Utf8;
use mast_protocol::reason::ReasonCode;
use mast_protocol::subscribe::{RetainHandling, SubscriptionOptions};
use mast_protocol::topic;
use mast_protocol::trie::TopicTrie;

use super::acl::Acl;
use super::credentials::Credentials;
use super::ids::{ConnRef, Seq};
use super::message::{Message, now_ms};
use super::metrics::Counters;
use super::persist::{self, Op, Persist};
use super::session::{Queued, Session, SubRecord};
use crate::config::{MqttConfig, SlowSubscriber};

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

/// Who a trie entry belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SubKey {
    Client(Arc<str>),
    Shared(Arc<str>),
}

#[derive(Debug, Clone)]
struct Sub {
    session: Arc<Session>,
    options: SubscriptionOptions,
    id: Option<u32>,
}

#[derive(Debug)]
enum SubVal {
    Direct(Sub),
    Group(Vec<Sub>),
}

/// A parsed SUBSCRIBE filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FilterSpec<'a> {
    /// `$share/{group}/…` group.
    pub(crate) group: Option<&'a str>,
    /// The topic filter proper.
    pub(crate) filter: &'a str,
}

/// Parses and validates a subscription filter (MQTT 5.0 §4.7, §4.8.2).
pub(crate) fn parse_filter(raw: &str) -> Result<FilterSpec<'_>, ReasonCode> {
    let spec = match raw.strip_prefix("$share/") {
        Some(rest) => {
            let (group, filter) = rest
                .split_once('/')
                .ok_or(ReasonCode::TOPIC_FILTER_INVALID)?;
            if group.is_empty() || group.contains(['+', '#']) {
                return Err(ReasonCode::TOPIC_FILTER_INVALID);
            }
            FilterSpec {
                group: Some(group),
                filter,
            }
        }
        None => FilterSpec {
            group: None,
            filter: raw,
        },
    };
    topic::validate_filter(spec.filter).map_err(|_| ReasonCode::TOPIC_FILTER_INVALID)?;
    Ok(spec)
}

/// Connections to wake after this loop turn.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    pub(crate) owners: Vec<ConnRef>,
    /// A delivery found a connected subscriber's queue more than half full: the publisher
    /// should be read more slowly for a moment (backpressure before anything is dropped).
    pub(crate) congested: bool,
}

/// A will waiting for its delay.
#[derive(Debug)]
struct DelayedWill {
    at: Instant,
    client_id: Arc<str>,
    msg: Arc<Message>,
}

/// What CONNECT found.
#[derive(Debug)]
pub(crate) struct Attached {
    pub(crate) session: Arc<Session>,
    pub(crate) session_present: bool,
}

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
}

/// The broker.
#[derive(Debug)]
pub struct Broker {
    pub(crate) cfg: Arc<MqttConfig>,
    pub(crate) acl: Acl,
    pub(crate) credentials: Arc<dyn Credentials>,
    subs: RwLock<TopicTrie<SubKey, SubVal>>,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    retained: RwLock<HashMap<Utf8, Arc<Message>>>,
    wills: Mutex<Vec<DelayedWill>>,
    share_rr: AtomicUsize,
    next_client: AtomicU64,
    pub(crate) persist: Persist,
    /// The metadata store the broker's state is kept in.
    pub(crate) meta: Arc<MetaStore>,
    /// Counters for /metrics.
    pub counters: Arc<Counters>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Broker {
    /// Builds the broker and restores persisted state from `meta`.
    pub(crate) fn new(
        cfg: Arc<MqttConfig>,
        credentials: Arc<dyn Credentials>,
        meta: Arc<MetaStore>,
        on_commit: Box<dyn Fn() + Send>,
    ) -> anyhow::Result<Broker> {
        let broker = Broker {
            acl: Acl::new(&cfg.acl),
            credentials,
            subs: RwLock::new(TopicTrie::new()),
            sessions: Mutex::new(HashMap::new()),
            retained: RwLock::new(HashMap::new()),
            wills: Mutex::new(Vec::new()),
            share_rr: AtomicUsize::new(0),
            next_client: AtomicU64::new(now_ms()),
            persist: Persist::start(Arc::clone(&meta), on_commit),
            counters: Arc::new(Counters::default()),
            cfg,
            meta,
        };
        broker.restore(&broker.meta)?;
        Ok(broker)
    }

    fn restore(&self, meta: &MetaStore) -> anyhow::Result<()> {
        let now = now_ms();
        let mut retained = self.retained.write().unwrap_or_else(|e| e.into_inner());
        for (_, v) in meta.scan_prefix(persist::RETAINED, b"")? {
            if let Some(m) = Message::decode(&v)
                && m.remaining_secs(now).is_some()
            {
                retained.insert(m.topic.clone(), Arc::new(m));
            }
        }
        drop(retained);
        let mut restored = 0usize;
        for (k, v) in meta.scan_prefix(persist::SESSIONS, b"")? {
            let Ok(client_id) = std::str::from_utf8(&k) else {
                continue;
            };
            let Some(rec) = SessionRecord::decode(&v) else {
                tracing::warn!(client_id, "unreadable persisted session skipped");
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
                    else {
                        continue;
                    };
                    let n = u64::from_be_bytes(n);
                    if let Some(q) = Queued::decode(&value, n) {
                        inner.next_key = inner.next_key.max(n + 1);
                        inner.push(q);
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

    /// A client id for a client that sent none (MQTT 5.0 §3.1.3.1).
    pub(crate) fn assign_client_id(&self) -> String {
        format!(
            "mast-{:x}",
            self.next_client.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn persist_session(&self, session: &Session, ops: &mut Vec<Op>) {
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
    fn discard(&self, session: &Session) {
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
            let mut subs = self.subs.write().unwrap_or_else(|e| e.into_inner());
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

    fn add_to_trie(&self, session: &Arc<Session>, spec: FilterSpec<'_>, record: SubRecord) -> bool {
        let sub = Sub {
            session: Arc::clone(session),
            options: record.options,
            id: record.id,
        };
        let mut subs = self.subs.write().unwrap_or_else(|e| e.into_inner());
        match spec.group {
            None => subs
                .insert(
                    spec.filter,
                    SubKey::Client(Arc::clone(&session.client_id)),
                    SubVal::Direct(sub),
                )
                .is_some(),
            Some(group) => {
                let key = SubKey::Shared(Arc::from(group));
                let mut members = match subs.remove(spec.filter, &key) {
                    Some(SubVal::Group(m)) => m,
                    _ => Vec::new(),
                };
                let existed = members
                    .iter()
                    .position(|m| Arc::ptr_eq(&m.session, session))
                    .map(|i| members.remove(i))
                    .is_some();
                members.push(sub);
                subs.insert(spec.filter, key, SubVal::Group(members));
                existed
            }
        }
    }

    /// SUBSCRIBE of one filter: returns the granted QoS as a reason code, or the refusal.
    pub(crate) fn subscribe(
        &self,
        session: &Arc<Session>,
        raw: &str,
        options: SubscriptionOptions,
        id: Option<u32>,
        notifier: &mut Notifier,
    ) -> Result<ReasonCode, ReasonCode> {
        let spec = parse_filter(raw)?;
        if spec.group.is_some() && options.no_local {
            return Err(ReasonCode::PROTOCOL_ERROR);
        }
        {
            let inner = session.lock();
            if inner.subscriptions.len() >= self.cfg.max_subscriptions_per_client
                && !inner.subscriptions.contains_key(raw)
            {
                return Err(ReasonCode::QUOTA_EXCEEDED);
            }
        }
        let record = SubRecord { options, id };
        let existed = self.add_to_trie(session, spec, record);
        session.lock().subscriptions.insert(raw.to_owned(), record);
        let send_retained = spec.group.is_none()
            && match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
        if send_retained {
            let now = now_ms();
            let matching: Vec<Arc<Message>> = self
                .retained
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .filter(|m| topic::matches(spec.filter, m.topic.as_str()))
                .filter(|m| m.remaining_secs(now).is_some())
                .cloned()
                .collect();
            let mut ops = Vec::new();
            for msg in matching {
                let q = Queued {
                    qos: msg.qos.min(options.qos),
                    retain: true,
                    sub_ids: id.into_iter().collect(),
                    key: None,
                    msg,
                };
                self.deliver(session, q, notifier, &mut ops);
            }
            self.persist.submit(ops);
        }
        Ok(ReasonCode(options.qos as u8))
    }

    /// UNSUBSCRIBE of one filter.
    pub(crate) fn unsubscribe(&self, session: &Arc<Session>, raw: &str) -> ReasonCode {
        let Ok(spec) = parse_filter(raw) else {
            return ReasonCode::TOPIC_FILTER_INVALID;
        };
        let had = session.lock().subscriptions.remove(raw).is_some();
        let mut subs = self.subs.write().unwrap_or_else(|e| e.into_inner());
        remove_from_trie(&mut subs, &session.client_id, spec);
        if had {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::NO_SUBSCRIPTION_EXISTED
        }
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
            && msg.qos > QoS::AtMostOnce
            && targets
                .iter()
                .any(|(s, q)| q.qos > QoS::AtMostOnce && self.must_wait(s, q))
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

    /// True when a QoS 1/2 message for a connected subscriber has no room in its queue: the
    /// publisher waits instead of the message being dropped. A subscriber that keeps its
    /// publishers waiting for BLOCK_LIMIT counts as slow and stops doing so (its messages are
    /// then dropped or it is disconnected, per `slow_subscriber`).
    fn must_wait(&self, session: &Session, q: &Queued) -> bool {
        let mut inner = session.lock();
        let full = inner.queue.len() >= self.cfg.max_queued_messages
            || inner.queued_bytes + inner.inflight_bytes + q.msg.size() > self.cfg.max_queued_bytes;
        if !full || inner.owner.is_none() || inner.ended || inner.slow {
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
    fn pick<'a>(&self, members: &'a [Sub]) -> Option<&'a Sub> {
        if members.is_empty() {
            return None;
        }
        let start = self.share_rr.fetch_add(1, Ordering::Relaxed);
        (0..members.len())
            .map(|i| &members[(start + i) % members.len()])
            .find(|m| m.session.lock().owner.is_some())
            .or_else(|| members.get(start % members.len()))
    }

    fn retain(&self, msg: &Arc<Message>, ops: &mut Vec<Op>) {
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
    fn deliver(
        &self,
        session: &Session,
        mut q: Queued,
        notifier: &mut Notifier,
        ops: &mut Vec<Op>,
    ) {
        let mut inner = session.lock();
        if inner.ended
            || (inner.owner.is_none() && q.qos == QoS::AtMostOnce && !self.cfg.queue_qos0_offline)
        {
            return;
        }
        if inner.queue.len() >= self.cfg.max_queued_messages
            || inner.queued_bytes + inner.inflight_bytes + q.msg.size() > self.cfg.max_queued_bytes
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
        let half_full = inner.queue.len() * 2 >= self.cfg.max_queued_messages
            || inner.queued_bytes * 2 >= self.cfg.max_queued_bytes;
        if inner.owner.is_some() && half_full && qos > QoS::AtMostOnce {
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
        if !inner.notified
            && let Some(owner) = inner.owner
        {
            inner.notified = true;
            notifier.owners.push(owner);
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
                protocol: super::message::protocol_name(inner.version),
                subscriptions: inner.subscriptions.len(),
                queued: inner.queue.len(),
                queued_bytes: inner.queued_bytes,
                inflight: inner.outbound.len(),
                expiry_secs: inner.expiry_secs,
            });
        }
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
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

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.read().map_or(0, |r| r.len())
    }
}

fn remove_from_trie(
    subs: &mut TopicTrie<SubKey, SubVal>,
    client_id: &Arc<str>,
    spec: FilterSpec<'_>,
) {
    match spec.group {
        None => {
            subs.remove(spec.filter, &SubKey::Client(Arc::clone(client_id)));
        }
        Some(group) => {
            let key = SubKey::Shared(Arc::from(group));
            if let Some(SubVal::Group(mut members)) = subs.remove(spec.filter, &key) {
                members.retain(|m| m.session.client_id != *client_id);
                if !members.is_empty() {
                    subs.insert(spec.filter, key, SubVal::Group(members));
                }
            }
        }
    }
}

/// A persisted session.
#[derive(Debug, PartialEq)]
struct SessionRecord {
    version: ProtocolVersion,
    expiry_secs: u32,
    subscriptions: Vec<(String, SubRecord)>,
    qos2_pending: Vec<u16>,
}

impl SessionRecord {
    fn encode(&self) -> Vec<u8> {
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

    fn decode(b: &[u8]) -> Option<SessionRecord> {
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
    fn filters_parse_with_and_without_share_groups() {
        assert_eq!(
            parse_filter("$share/g1/a/+"),
            Ok(FilterSpec {
                group: Some("g1"),
                filter: "a/+"
            })
        );
        assert_eq!(parse_filter("a/#").map(|s| s.group), Ok(None));
        for bad in ["$share/g1", "$share//a", "$share/g+/a", "a/#/b", "a+", ""] {
            assert_eq!(
                parse_filter(bad),
                Err(ReasonCode::TOPIC_FILTER_INVALID),
                "{bad}"
            );
        }
    }

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
