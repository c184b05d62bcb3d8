//! The shadow service: AWS IoT Device Shadow over MQTT. A broker link subscribed to every shadow
//! request topic (`mast_devices::shadow::topic::REQUEST_FILTERS`) runs the rules of
//! `mast_devices::shadow` on its own thread and answers on the reply topics.
//!
//! Contract:
//! - **Durable before replied.** The changes accepted in one turn of the thread (up to 1,025
//!   requests) are submitted to the metadata writer as one commit, and their `/accepted`,
//!   `/delta` and `/documents` replies are published only once that commit, and the turn's
//!   history rows, are durable. Every reply, rejections included, waits for the commits of its
//!   turn and the turns before, so replies go out in request order and never speak of a state
//!   that is not on disk.
//! - **One writer.** This thread is the only writer of the `shadows` table, so it keeps the
//!   shadows it has read in memory and reads the store once per shadow.
//! - **Who may ask.** A client may touch only the shadows of the thing named by its client id
//!   (AWS's policy template `$aws/things/${iot:ClientId}/…`); another client's request gets a
//!   403 error document, sent to that connection alone.
//! - **In flight.** More than [`MAX_IN_FLIGHT`] requests of one connection waiting for their
//!   commit get 429, as AWS limits them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use mast_broker::Broker;
use mast_broker::ids::ConnRef;
use mast_broker::link::{Link, LinkWaker, Received, Requester};
use mast_broker::message::Message;
use mast_devices::shadow::topic::{Op, REQUEST_FILTERS, Request};
use mast_devices::shadow::{self, Rejected, Shadow, ShadowError, Source};
use mast_meta::tables::SHADOWS;
use mast_meta::{MetaStore, Seq};
use mast_protocol::connect::QoS;
use mast_storage::batch::DEVICE_TAG;

use crate::service_thread::ServiceThread;
use crate::shadow_acks::ShadowAcks;
use bytes::Bytes;
use mast_storage::{Durability, Notify, Store, Ticket, WriteBatch};
use serde_json::Value;
use tokio::sync::oneshot;

/// Requests of one connection that may wait for their commit at once.
pub const MAX_IN_FLIGHT: usize = 10;

/// The telemetry table every accepted change is appended to.
pub const HISTORY_TABLE: &str = "iot.shadow_history";

/// A running shadow service.
#[derive(Debug)]
pub struct ShadowService {
    thread: ServiceThread,
    handle: ShadowHandle,
}

/// API requests that may wait for the service's thread at once; more get 429.
const API_QUEUE: usize = 1024;

/// Sends requests of another transport (REST) to the shadow service's thread: the same rules,
/// the same single writer, answered once the change is durable.
#[derive(Debug, Clone)]
pub struct ShadowHandle {
    tx: SyncSender<Command>,
    waker: LinkWaker,
}

impl ShadowHandle {
    /// Runs `op` on the shadow `shadow` (`None`: classic) of `thing` with the request document
    /// `payload`, as `source`: the accepted document, or the refusal.
    pub async fn request(
        &self,
        thing: &str,
        shadow: Option<&str>,
        op: Op,
        payload: Vec<u8>,
        source: Source,
    ) -> Result<Value, Rejected> {
        let (answer, rx) = oneshot::channel();
        let c = Command {
            thing: thing.to_owned(),
            shadow: shadow.map(str::to_owned),
            op,
            payload,
            source,
            answer,
        };
        let refused = |e| Rejected {
            error: e,
            token: None,
        };
        match self.tx.try_send(c) {
            Ok(()) => self.waker.wake(),
            Err(TrySendError::Full(_)) => return Err(refused(ShadowError::too_many_requests())),
            Err(TrySendError::Disconnected(_)) => return Err(refused(ShadowError::internal())),
        }
        match tokio::time::timeout(API_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer,
            // Stopped, or the commit did not come in time (a slow or failed disk).
            _ => Err(refused(ShadowError::internal())),
        }
    }
}

/// How long an API request waits for its answer.
const API_TIMEOUT: Duration = Duration::from_secs(30);

impl ShadowService {
    /// Opens a link on `broker` and starts answering; shadows are read from `meta`, their
    /// history appended to `store`.
    pub fn start(
        broker: &Arc<Broker>,
        meta: Arc<MetaStore>,
        store: Arc<Store>,
        acks: Arc<ShadowAcks>,
    ) -> std::io::Result<ShadowService> {
        let mut link = broker.open_link("shadows");
        for f in REQUEST_FILTERS {
            if let Err(code) = link.subscribe(f, QoS::AtLeastOnce) {
                return Err(std::io::Error::other(format!("subscribing {f}: {code:?}")));
            }
        }
        let (tx, rx) = mpsc::sync_channel(API_QUEUE);
        let handle = ShadowHandle {
            tx,
            waker: link.waker(),
        };
        let waker = link.waker();
        let thread = ServiceThread::spawn("shadows", waker, move |stop| {
            Worker::new(link, meta, store, acks, rx).run(stop)
        })?;
        Ok(ShadowService { thread, handle })
    }

    /// A handle for the API to send requests with.
    pub fn handle(&self) -> ShadowHandle {
        self.handle.clone()
    }

    /// Answers what was asked, waits for its commits, and stops.
    pub fn shutdown(mut self) {
        self.thread.stop();
    }
}

/// Replies waiting for a commit.
struct Pending {
    /// The connection whose request this answers (its PUBACK waits for it).
    ack: Option<ConnRef>,
    seq: Option<Seq>,
    /// The history batch its row went into (every reply also waits for the batches before).
    batch: u64,
    conn: Option<ConnRef>,
    out: Vec<Out>,
    answer: Option<Answer>,
}

/// Where an API request's answer goes, and the answer.
type Answer = (
    oneshot::Sender<Result<Value, Rejected>>,
    Result<Value, Rejected>,
);

/// A request of the API (REST) for the service's thread.
struct Command {
    thing: String,
    shadow: Option<String>,
    op: Op,
    payload: Vec<u8>,
    source: Source,
    answer: oneshot::Sender<Result<Value, Rejected>>,
}

/// A reply to `req` on its `{op}/{suffix}` topic.
fn message(req: &Request<'_>, op: Op, suffix: &str, body: impl Into<Bytes>) -> Message {
    Message::new(&req.reply(op, suffix), body, QoS::AtLeastOnce)
}

fn reply(req: &Request<'_>, op: Op, suffix: &str, doc: &Value) -> Message {
    // `to_vec` writes straight into the buffer; `Value`'s `Display` goes through a formatter.
    message(req, op, suffix, serde_json::to_vec(doc).unwrap_or_default())
}

enum Out {
    /// To every subscriber of the topic.
    Publish(Message),
    /// To the requesting connection alone.
    Reply(Requester, Message),
}

struct Worker {
    link: Link,
    meta: Arc<MetaStore>,
    /// Shadows read or written so far (`None`: none stored).
    shadows: HashMap<Vec<u8>, Cached>,
    pending: VecDeque<Pending>,
    in_flight: HashMap<ConnRef, usize>,
    /// The last commit submitted: every reply waits for it.
    last: Option<Seq>,
    /// This turn's shadow records, submitted as one commit at its end.
    ops: Vec<mast_meta::Op>,
    commands: Receiver<Command>,
    store: Arc<Store>,
    /// History rows of this turn, and its number; the submitted batches not yet durable.
    history: WriteBatch,
    batch: u64,
    tickets: VecDeque<(u64, Ticket)>,
    wake: Arc<WakeLink>,
    /// The time of the last history row (ns).
    last_ns: i64,
    /// Where a request's acknowledgement learns that it is answered.
    acks: Arc<ShadowAcks>,
}

/// Wakes the service's thread when a history batch is durable.
#[derive(Debug)]
struct WakeLink(LinkWaker);

impl Notify for WakeLink {
    fn notify(&self) {
        self.0.wake();
    }
}

fn now_secs() -> u64 {
    mast_broker::message::now_ms() / 1000
}

impl Worker {
    fn new(
        link: Link,
        meta: Arc<MetaStore>,
        store: Arc<Store>,
        acks: Arc<ShadowAcks>,
        commands: Receiver<Command>,
    ) -> Worker {
        Worker {
            acks,
            commands,
            store,
            history: WriteBatch::new(),
            batch: 0,
            tickets: VecDeque::new(),
            wake: Arc::new(WakeLink(link.waker())),
            last_ns: 0,
            link,
            meta,
            shadows: HashMap::new(),
            pending: VecDeque::new(),
            in_flight: HashMap::new(),
            last: None,
            ops: Vec::new(),
        }
    }

    fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            // recv returns early when a commit completes, so replies go out without delay.
            if let Some(r) = self.link.recv(Duration::from_millis(100)) {
                self.handle(r);
                for _ in 0..1024 {
                    let Some(r) = self.link.try_recv() else { break };
                    self.handle(r);
                }
            }
            while let Ok(c) = self.commands.try_recv() {
                self.command(c);
            }
            self.end_turn();
            self.flush();
        }
        // What was accepted is answered before the service goes.
        self.end_turn();
        for (_, t) in std::mem::take(&mut self.tickets) {
            if let Err(e) = t.wait() {
                tracing::error!(error = %e, "shadow history rows not stored");
            }
        }
        let last = self.last;
        if !self.link.wait_durable(last, Duration::from_secs(10)) {
            tracing::warn!("shadow changes not durable at shutdown; their replies are not sent");
        }
        self.flush();
    }

    /// Submits this turn's shadow records, one commit for the turn, and its history rows
    /// (durable; the thread is woken when they are).
    fn end_turn(&mut self) {
        if !self.ops.is_empty() {
            let ops = std::mem::take(&mut self.ops);
            let seq = self.link.persist(ops);
            if seq.is_none() {
                // The writer is closed (shutting down): nothing of this turn is stored, so
                // nothing of it is answered, and the shadows are read again if asked for.
                tracing::error!("shadow changes not stored: the metadata writer is closed");
                self.shadows.clear();
            }
            for p in self.pending.iter_mut().rev() {
                if p.batch != self.batch {
                    break;
                }
                match seq {
                    Some(_) => p.seq = seq,
                    None => {
                        p.out.clear();
                        if let Some((_, answer)) = &mut p.answer {
                            *answer = Err(Rejected {
                                error: ShadowError::internal(),
                                token: None,
                            });
                        }
                    }
                }
            }
            if seq.is_some() {
                self.last = seq;
            }
        }
        let batch = std::mem::take(&mut self.history);
        if !batch.is_empty() {
            let notify: Arc<dyn Notify> = Arc::<WakeLink>::clone(&self.wake);
            match self.store.submit_notify(batch, Durability::Durable, notify) {
                Ok(t) => self.tickets.push_back((self.batch, t)),
                Err(e) => tracing::error!(error = %e, "shadow history rows not stored"),
            }
        }
        self.batch += 1;
    }

    /// Publishes the replies whose commit and history rows are durable, in order.
    fn flush(&mut self) {
        while self.tickets.front().is_some_and(|(_, t)| t.is_resolved()) {
            if let Some((_, t)) = self.tickets.pop_front()
                && let Err(e) = t.wait()
            {
                tracing::error!(error = %e, "shadow history rows not stored");
            }
        }
        // Batches below this are durable (or were never submitted).
        let done_below = self.tickets.front().map_or(self.batch, |(n, _)| *n);
        // The replies go out first, then the holds are released, each reactor woken once.
        let mut answered = Vec::new();
        while let Some(p) = self.pending.front() {
            if !self.link.durable(p.seq) || p.batch >= done_below {
                break;
            }
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            if let Some(c) = p.conn
                && let Some(n) = self.in_flight.get_mut(&c)
            {
                *n -= 1;
                if *n == 0 {
                    self.in_flight.remove(&c);
                }
            }
            if let Some(c) = p.ack {
                answered.push(c);
            }
            if let Some((to, answer)) = p.answer {
                let _ = to.send(answer);
            }
            for o in p.out {
                match o {
                    Out::Publish(m) => {
                        self.link.publish_deferred(m);
                    }
                    Out::Reply(to, m) => {
                        self.link.reply_deferred(&to, m);
                    }
                }
            }
        }
        self.link.wake();
        if !answered.is_empty() {
            self.acks.answered_all(answered);
        }
    }

    fn handle(&mut self, r: Received) {
        let Some(req) = Request::parse(r.message.topic.as_str()) else {
            return;
        };
        let payload = &r.message.payload[..];
        let now = now_secs();
        let conn = r.from.as_ref().map(|f| f.conn);
        // Only the thing itself, or a gateway: another client hears the refusal alone.
        let allowed = r
            .from
            .as_ref()
            .is_some_and(|f| &*f.client_id == req.thing || self.acks.is_gateway(f.conn));
        if !allowed {
            if let Some(from) = r.from.clone() {
                let doc = Rejected::of(ShadowError::forbidden(), payload).document(now);
                let m = reply(&req, req.op, "rejected", &doc);
                self.queue(None, conn, vec![Out::Reply(from, m)], None);
            }
            return;
        }
        if let Some(c) = conn
            && self.in_flight.get(&c).copied().unwrap_or(0) >= MAX_IN_FLIGHT
        {
            let doc = Rejected::of(ShadowError::too_many_requests(), payload).document(now);
            self.queue(
                None,
                conn,
                vec![Out::Publish(reply(&req, req.op, "rejected", &doc))],
                None,
            );
            return;
        }
        let (mut out, answer) = self.apply(&req, payload, Source::Device, now);
        if let Err(r) = &answer {
            out.push(Out::Publish(reply(
                &req,
                req.op,
                "rejected",
                &r.document(now),
            )));
        }
        if let Some(c) = conn {
            *self.in_flight.entry(c).or_default() += 1;
        }
        self.queue(conn, conn, out, None);
    }

    /// A request of the API: the same rules; the answer goes back to the caller, and what an
    /// accepted change publishes over MQTT is published too (a rejection is not).
    fn command(&mut self, c: Command) {
        let req = Request {
            thing: &c.thing,
            shadow: c.shadow.as_deref(),
            op: c.op,
        };
        let (out, answer) = self.apply(&req, &c.payload, c.source, now_secs());
        let answer = answer.map(|b| serde_json::from_slice(&b).unwrap_or(Value::Null));
        self.queue(None, None, out, Some((c.answer, answer)));
    }

    /// Runs one request: the store write is submitted; what to publish once it is durable, and
    /// the answer: the accepted document's JSON text for an API caller (empty for a device,
    /// which hears it published), or the refusal.
    fn apply(
        &mut self,
        req: &Request<'_>,
        payload: &[u8],
        source: Source,
        now: u64,
    ) -> (Vec<Out>, Result<Bytes, Rejected>) {
        if let Err(e) = shadow::check_names(req.thing, req.shadow) {
            return (Vec::new(), Err(Rejected::of(e, payload)));
        }
        let key = req.key();
        // Taken out of the cache (not copied), and put back below.
        let mut entry = match self.take(&key) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, thing = req.thing, "reading a shadow failed");
                return (
                    Vec::new(),
                    Err(Rejected::of(ShadowError::internal(), payload)),
                );
            }
        };
        let api = source != Source::Device;
        // The accepted reply, and the answer an API caller gets: the same text.
        let accepted = |op: Op, body: Vec<u8>| {
            let body = Bytes::from(body);
            let answer = if api { body.clone() } else { Bytes::new() };
            (Out::Publish(message(req, op, "accepted", body)), answer)
        };
        // What a change stores: the history's previous and current state, the token.
        let mut write = None;
        let (out, answer) = match req.op {
            Op::Get => match shadow::get(entry.shadow.as_ref(), payload, req.display_name(), now) {
                Ok(doc) => {
                    let (o, answer) =
                        accepted(Op::Get, serde_json::to_vec(&doc).unwrap_or_default());
                    // A get is answered only to the API caller, not published, when the API asked.
                    (if api { Vec::new() } else { vec![o] }, Ok(answer))
                }
                Err(r) => (Vec::new(), Err(r)),
            },
            Op::Delete => {
                match shadow::delete(entry.shadow.as_ref(), payload, req.display_name(), now) {
                    Ok((tomb, doc)) => {
                        let token = doc
                            .get("clientToken")
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                        let previous = entry.history_state();
                        entry.shadow = Some(tomb);
                        write = Some((previous, "{}".to_owned(), token));
                        let (o, answer) =
                            accepted(Op::Delete, serde_json::to_vec(&doc).unwrap_or_default());
                        (vec![o], Ok(answer))
                    }
                    Err(r) => (Vec::new(), Err(r)),
                }
            }
            Op::Update => {
                // Asked of the broker again only when its subscriptions changed.
                let epoch = self.link.subscriptions_epoch();
                let documents = match entry.documents {
                    Some((e, any)) if e == epoch => any,
                    _ => {
                        let any = self
                            .link
                            .has_subscribers(&req.reply(Op::Update, "documents"));
                        entry.documents = Some((epoch, any));
                        any
                    }
                };
                let previous = entry.history_state();
                match shadow::update_in(
                    &mut entry.shadow,
                    payload,
                    source,
                    now,
                    documents,
                    Some(&previous),
                ) {
                    Ok(u) => {
                        let (o, answer) = accepted(Op::Update, u.accepted);
                        let mut out = vec![o];
                        if let Some(d) = u.delta {
                            let mut m = message(req, Op::Update, "delta", d);
                            m.supersedes = true;
                            out.push(Out::Publish(m));
                        }
                        if let Some(d) = u.documents {
                            out.push(Out::Publish(message(req, Op::Update, "documents", d)));
                        }
                        write = Some((previous, u.state_json, u.token));
                        (out, Ok(answer))
                    }
                    Err(r) => {
                        entry.state = Some(previous);
                        (Vec::new(), Err(r))
                    }
                }
            }
        };
        let Some((previous, current, token)) = write else {
            self.shadows.insert(key, entry);
            return (out, answer);
        };
        let Some(s) = entry.shadow.as_ref() else {
            return (out, answer);
        };
        // Every row has every column (a telemetry table's columns are made by the rows
        // written): `{}` stands for no state (before a create, after a delete) and an empty
        // client token for none.
        // Strictly increasing: rows of one series at the same time would be one point.
        let now_ns = mast_broker::message::now_ns().max(self.last_ns + 1);
        self.last_ns = now_ns;
        let series = self
            .history
            .series(HISTORY_TABLE, &[(DEVICE_TAG, req.thing)]);
        self.history
            .row(series, now_ns)
            .str("shadow_name", req.shadow.unwrap_or(""))
            .str("operation", req.op.as_str())
            .i64("version", i64::try_from(s.version).unwrap_or(i64::MAX))
            .str("source", source.as_str())
            .str("client_token", token.as_deref().unwrap_or(""))
            .str("previous", &previous)
            .str("current", &current);
        // Submitted with the turn's others, in one commit (`end_turn`).
        self.ops.push(mast_meta::Op::Put {
            table: SHADOWS,
            key: key.clone(),
            value: s.encode(),
        });
        entry.state = Some(current);
        self.shadows.insert(key, entry);
        (out, answer)
    }

    /// Replies (and an API answer) that wait for the commits submitted so far.
    /// `conn`: the connection whose in-flight count it takes; `ack`: whose acknowledgement
    /// waits for it (every request over MQTT).
    fn queue(
        &mut self,
        conn: Option<ConnRef>,
        ack: Option<ConnRef>,
        out: Vec<Out>,
        answer: Option<Answer>,
    ) {
        self.pending.push_back(Pending {
            ack,
            seq: self.last,
            batch: self.batch,
            conn,
            out,
            answer,
        });
    }

    /// The stored shadow, taken out of the cache (the caller puts it back). A record this
    /// version cannot read is reported and refuses every request (500), rather than being
    /// overwritten.
    fn take(&mut self, key: &[u8]) -> Result<Cached, String> {
        if let Some(s) = self.shadows.remove(key) {
            return Ok(s);
        }
        let shadow = match self.meta.get(SHADOWS, key).map_err(|e| e.to_string())? {
            None => None,
            Some(bytes) => match decode_or_report(&self.meta, key, &bytes) {
                Some(s) => Some(s),
                None => return Err("unreadable shadow record".into()),
            },
        };
        Ok(Cached {
            shadow,
            state: None,
            documents: None,
        })
    }
}

/// A shadow read or written (`None`: none stored), with its state text once known.
struct Cached {
    shadow: Option<Shadow>,
    /// [`Cached::history_state`] of `shadow`: the `current` of its last history row is the
    /// `previous` of the next, written once.
    state: Option<String>,
    /// Whether anyone is subscribed to its `/update/documents`, and the broker's subscription
    /// epoch when that was asked.
    documents: Option<(u64, bool)>,
}

impl Cached {
    /// The state as history rows hold it (`{}`: none), taken.
    fn history_state(&mut self) -> String {
        self.state.take().unwrap_or_else(|| {
            self.shadow
                .as_ref()
                .filter(|s| s.exists())
                .map_or_else(|| "{}".to_owned(), Shadow::state_json)
        })
    }
}

/// The shadow record `value` stored under `key`, or `None` after reporting it unreadable.
pub(crate) fn decode_or_report(meta: &MetaStore, key: &[u8], value: &[u8]) -> Option<Shadow> {
    let s = Shadow::decode(value);
    if s.is_none() {
        meta.report_unreadable(SHADOWS, key, "not a shadow record of version 1");
    }
    s
}
