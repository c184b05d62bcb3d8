//! In-process links: a session owned by a service thread instead of a connection.
//!
//! A service (device shadows, jobs, provisioning) opens a [`Link`], subscribes it to its
//! reserved topics and runs a loop on its own thread: [`Link::recv`] the next request, answer
//! it with [`Link::publish`] or [`Link::reply`] (to the one connection that asked), and keep
//! its state in the metadata store through [`Link::persist`] / [`Link::wait_durable`] before it
//! answers.
//!
//! Contract:
//! - **Thread.** A link belongs to one thread at a time (its methods take `&mut self`); a call
//!   may block only where it says so (`recv`, `wait_durable`).
//! - **Ordering.** Messages arrive in the order the broker routed them to the link; a
//!   publisher's messages keep their order.
//! - **Backpressure, never loss.** The link's queue is bounded (`max_service_queued_messages`,
//!   `max_queued_bytes`), but it is never dropped from and the link is
//!   never a "slow subscriber": a publisher whose message finds it full waits (its connection
//!   rests and retries, at any QoS) until the service has taken messages out. Only what cannot
//!   wait (a will, another service's publish) goes over the bound.
//! - **Durability.** Nothing a link receives is persisted: a link session is not persistent,
//!   and a message taken by `recv` is the service's. Replies are not acknowledged by anyone;
//!   a service that must not answer before its state is durable waits for its commit first.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use mast_protocol::connect::QoS;
use mast_protocol::reason::ReasonCode;
use mast_protocol::subscribe::{RetainHandling, SubscriptionOptions};

use crate::broker::{Broker, Notifier};
use crate::ids::{ConnRef, Seq};
use crate::message::Message;
use crate::reactor::ReactorShared;
use crate::session::Session;
use mast_meta::Op;

/// Wakes a link's thread: a flag under a mutex, so a wake between "queue empty" and "wait" is
/// not lost.
#[derive(Debug, Default)]
pub(crate) struct LinkWake {
    woken: Mutex<bool>,
    cv: Condvar,
}

impl LinkWake {
    pub(crate) fn wake(&self) {
        *self.woken.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_one();
    }

    /// Waits until woken or `until`; consumes the wake.
    fn wait(&self, until: Instant) {
        let mut woken = self.woken.lock().unwrap_or_else(|e| e.into_inner());
        while !*woken {
            let now = Instant::now();
            if now >= until {
                return;
            }
            woken = match self.cv.wait_timeout(woken, until - now) {
                Ok((w, _)) => w,
                Err(e) => e.into_inner().0,
            };
        }
        *woken = false;
    }
}

/// Wakes a link's thread from elsewhere (a service that also takes requests from another
/// transport, such as HTTP): its `recv` returns early.
#[derive(Debug, Clone)]
pub struct LinkWaker(Arc<LinkWake>);

impl LinkWaker {
    pub fn wake(&self) {
        self.0.wake();
    }
}

/// Who is woken when: the reactors (by connection) and the links. The broker holds it, so that
/// a link's publish reaches the connections of every reactor, and a metadata commit wakes
/// everyone waiting for one.
#[derive(Debug)]
pub(crate) struct Wakers {
    reactors: Arc<Vec<Arc<ReactorShared>>>,
    links: Mutex<Vec<Weak<LinkWake>>>,
}

impl Wakers {
    pub(crate) fn new(reactors: Arc<Vec<Arc<ReactorShared>>>) -> Wakers {
        Wakers {
            reactors,
            links: Mutex::new(Vec::new()),
        }
    }

    fn register(&self, wake: &Arc<LinkWake>) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|l| l.strong_count() > 0);
        links.push(Arc::downgrade(wake));
    }

    /// A metadata commit is durable: every reactor and every link looks again.
    pub(crate) fn on_commit(&self) {
        for r in self.reactors.iter() {
            r.post(|_| {});
        }
        let links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        for l in links.iter().filter_map(Weak::upgrade) {
            l.wake();
        }
    }

    /// Hands out what a thread that is not a reactor collected: each connection's reactor is
    /// posted once, each link woken.
    pub(crate) fn wake(&self, notifier: &mut Notifier) {
        let mut per: Vec<Vec<ConnRef>> = vec![Vec::new(); self.reactors.len()];
        for o in notifier.owners.drain(..) {
            if let Some(v) = per.get_mut(o.reactor()) {
                v.push(o);
            }
        }
        for (r, owners) in per.into_iter().enumerate() {
            if !owners.is_empty() {
                self.reactors[r].post(|inbox| inbox.ready.extend(owners));
            }
        }
        for l in notifier.links.drain(..) {
            l.wake();
        }
        notifier.congested = false;
    }
}

/// The connection a message came from, to reply to it alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester {
    /// Its client id.
    pub client_id: Arc<str>,
    /// The connection (a reconnect of the same client is another one).
    pub conn: ConnRef,
}

/// A message a link received.
#[derive(Debug, Clone)]
pub struct Received {
    pub message: Arc<Message>,
    /// The QoS it was delivered with (the lower of the publish and the link's subscription).
    pub qos: QoS,
    /// The connection that published it; `None` for wills and other services' messages.
    pub from: Option<Requester>,
}

/// A session owned by a service thread. Dropping it ends the session and its subscriptions.
#[derive(Debug)]
pub struct Link {
    broker: Arc<Broker>,
    session: Arc<Session>,
    wake: Arc<LinkWake>,
    notifier: Notifier,
}

impl Broker {
    /// Opens a link named `name` (for logs; names need not be unique).
    pub fn open_link(self: &Arc<Self>, name: &str) -> Link {
        // U+0000 is not allowed in an MQTT string, so no client can have this id.
        let client_id: Arc<str> = Arc::from(format!("\0link/{name}"));
        let session = Arc::new(Session::new(
            client_id,
            mast_protocol::ProtocolVersion::V5,
            0,
        ));
        let wake = Arc::new(LinkWake::default());
        session.lock().link = Some(Arc::clone(&wake));
        self.wakers().register(&wake);
        Link {
            broker: Arc::clone(self),
            session,
            wake,
            notifier: Notifier::default(),
        }
    }
}

impl Link {
    /// Subscribes to `filter` (a `$share/group/` prefix shares it with other links or clients)
    /// with at most `qos`; retained messages are not replayed. The granted QoS, or why not.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<QoS, ReasonCode> {
        let options = SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        };
        let granted =
            self.broker
                .subscribe(&self.session, filter, options, None, &mut self.notifier)?;
        QoS::from_level(granted.0).ok_or(granted)
    }

    /// Unsubscribes `filter`; false if it was not subscribed.
    pub fn unsubscribe(&mut self, filter: &str) -> bool {
        self.broker.unsubscribe(&self.session, filter) == ReasonCode::SUCCESS
    }

    /// The next message, if one is queued (never blocks).
    pub fn try_recv(&mut self) -> Option<Received> {
        let q = {
            let mut inner = self.session.lock();
            let q = inner.pop();
            if q.is_none() {
                // Empty: the next delivery wakes us.
                inner.notified = false;
            }
            q
        }?;
        let from = q
            .msg
            .origin
            .as_ref()
            .zip(q.msg.origin_conn)
            .map(|(client_id, conn)| Requester {
                client_id: Arc::clone(client_id),
                conn,
            });
        Some(Received {
            qos: q.qos,
            message: q.msg,
            from,
        })
    }

    /// The next message, waiting for one up to `timeout` (also returns early, with `None`, when
    /// a metadata commit completes or its [`LinkWaker`] is woken).
    pub fn recv(&mut self, timeout: Duration) -> Option<Received> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(r) = self.try_recv() {
                return Some(r);
            }
            if Instant::now() >= until {
                return None;
            }
            self.wake.wait(until);
        }
    }

    /// Publishes `msg` to every matching subscriber, as the server (like a will, it never
    /// waits for room). The metadata commit to wait for if it was retained, if any.
    pub fn publish(&mut self, msg: Message) -> Option<Seq> {
        let seq = self.publish_deferred(msg);
        self.wake();
        seq
    }

    /// As [`Link::publish`], but the connections it reaches are woken by the next
    /// [`Link::wake`]: a service sending many messages in a row wakes each reactor once.
    pub fn publish_deferred(&mut self, mut msg: Message) -> Option<Seq> {
        msg.origin = Some(Arc::clone(&self.session.client_id));
        msg.origin_conn = None;
        self.broker
            .publish(Arc::new(msg), &mut self.notifier, false)
            .seq
    }

    /// Delivers `msg` to the one connection `to`, if it is still connected and subscribed to
    /// the topic (at the QoS of its best matching subscription); nobody else sees it, whatever
    /// they subscribed to. True if it was queued.
    pub fn reply(&mut self, to: &Requester, msg: Message) -> bool {
        let queued = self.reply_deferred(to, msg);
        self.wake();
        queued
    }

    /// As [`Link::reply`], woken by the next [`Link::wake`].
    pub fn reply_deferred(&mut self, to: &Requester, msg: Message) -> bool {
        self.reply_with(to, msg, None)
    }

    /// As [`Link::reply_deferred`], but delivered at the message's QoS even when the
    /// connection subscribed to nothing matching (as AWS IoT Jobs answers).
    pub fn reply_unsubscribed_deferred(&mut self, to: &Requester, msg: Message) -> bool {
        let qos = msg.qos;
        self.reply_with(to, msg, Some(qos))
    }

    fn reply_with(&mut self, to: &Requester, mut msg: Message, unsubscribed: Option<QoS>) -> bool {
        msg.origin = Some(Arc::clone(&self.session.client_id));
        msg.origin_conn = None;
        self.broker
            .reply(to, Arc::new(msg), unsubscribed, &mut self.notifier)
    }

    /// Delivers `msg` to the session of `client_id` alone, if it subscribed to the topic (woken
    /// by the next [`Link::wake`]); nobody else sees it. True if it was queued.
    pub fn to_client_deferred(&mut self, client_id: &str, mut msg: Message) -> bool {
        msg.origin = Some(Arc::clone(&self.session.client_id));
        msg.origin_conn = None;
        self.broker
            .to_client(client_id, Arc::new(msg), &mut self.notifier)
    }

    /// Whether the session of `client_id` subscribed to something matching `topic`.
    pub fn client_subscribed(&self, client_id: &str, topic: &str) -> bool {
        self.broker.client_subscribed(client_id, topic)
    }

    /// Whether a publish on `topic` would reach anyone.
    pub fn has_subscribers(&self, topic: &str) -> bool {
        self.broker.has_subscribers(topic)
    }

    /// Counts the broker's subscription changes: an answer of [`Link::has_subscribers`]
    /// given after reading it stays true while it stays the same.
    pub fn subscriptions_epoch(&self) -> u64 {
        self.broker.subs_epoch()
    }

    /// Wakes the connections the deferred publishes and replies since the last wake reached.
    pub fn wake(&mut self) {
        self.broker.wakers().wake(&mut self.notifier);
    }

    /// Queues metadata-store changes behind the broker's own, in one order; the commit to wait
    /// for, if any.
    pub fn persist(&mut self, ops: Vec<Op>) -> Option<Seq> {
        self.broker.persist.submit(ops)
    }

    /// A handle that makes `recv` return early, for other threads.
    pub fn waker(&self) -> LinkWaker {
        LinkWaker(Arc::clone(&self.wake))
    }

    /// Whether `seq` is durable now (never blocks).
    pub fn durable(&self, seq: Option<Seq>) -> bool {
        self.broker.persist.committed().covers(seq)
    }

    /// Waits until `seq` is durable, up to `timeout`; false if it is not (a slow disk, or a
    /// failed commit, after which nothing is reported durable).
    pub fn wait_durable(&mut self, seq: Option<Seq>, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if self.broker.persist.committed().covers(seq) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            self.wake
                .wait(until.min(Instant::now() + Duration::from_millis(50)));
        }
    }

    /// Messages waiting in the queue now.
    pub fn queued(&self) -> usize {
        self.session.lock().queue.len()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let filters: Vec<String> = self.session.lock().subscriptions.keys().cloned().collect();
        for f in filters {
            self.broker.unsubscribe(&self.session, &f);
        }
        let mut inner = self.session.lock();
        inner.ended = true;
        inner.link = None;
        while inner.pop().is_some() {}
    }
}
