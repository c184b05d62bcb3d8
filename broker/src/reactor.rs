//! A reactor thread: one mio `Poll` owning its connections. Each loop turn reads every ready
//! socket (up to a budget), decodes and handles the packets, drains the session queues of the
//! connections that have something to send, writes, and only then wakes the other reactors
//! whose connections received messages — once per reactor, not once per message.
//!
//! Backpressure: a connection whose unwritten output passes `max_output_bytes` is not fed from
//! its session queue (the queue absorbs it, bounded) and is not read from either (a client that
//! does not read its acknowledgements cannot make the broker buffer them without bound).
//! Keep-alive and CONNECT deadlines run on a timer wheel with one-second slots.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mast_protocol::ProtocolVersion;
use mast_protocol::ack::PubResp;
use mast_protocol::connack::ConnAck;
use mast_protocol::connect::{Connect, QoS};
use mast_protocol::disconnect::Disconnect;
use mast_protocol::packet::{self, Packet};
use mast_protocol::primitives::Utf8;
use mast_protocol::properties::Properties;
use mast_protocol::publish::{Delivery, Publish};
use mast_protocol::reason::ReasonCode;
use mast_protocol::session::{Acked, AliasesIn, AliasesOut, InAction, OutAlias, OutState};
use mast_protocol::subscribe::{SubAck, Subscribe, UnsubAck, Unsubscribe};
use mio::{Events, Interest, Poll, Token, Waker};

use super::broker::{Broker, Notifier, parse_filter};
use super::credentials::ConnectRequest;
use super::hooks::{
    Accept, ClientEvent, ClientEvents, ClientInfo, EndReason, Hold, HoldOutcome, HookCx, Inspect,
    PublishHook, Publisher, ReadControl,
};
use super::ids::{AckToken, AckTokens, Committed, ConnRef, Seq};
use super::message::{Message, now_ms, now_ns};
use super::metrics::Local;
use super::session::Session;
use super::transport::Transport;

const WAKER: Token = Token(0);
const READ_BUDGET: usize = 64 * 1024;
const WHEEL_SLOTS: usize = 64;
/// How long a publisher rests when a subscriber it feeds is congested.
const SNOOZE: Duration = Duration::from_millis(2);
/// The protocol level of a CONNECT at the front of `buf`, once that much has arrived.
fn connect_level(buf: &[u8]) -> Option<u8> {
    if buf.first()? >> 4 != 1 {
        return None;
    }
    let len_bytes = buf.get(1..)?.iter().take(4).position(|b| b & 0x80 == 0)? + 1;
    let name = 1 + len_bytes;
    let name_len = u16::from_be_bytes([*buf.get(name)?, *buf.get(name + 1)?]);
    buf.get(name + 2 + usize::from(name_len)).copied()
}

/// The PUBACK or PUBREC of an inbound PUBLISH (none at QoS 0).
fn ack_packet(delivery: Delivery, reason: ReasonCode) -> Option<Packet> {
    match delivery {
        Delivery::AtMostOnce => None,
        Delivery::AtLeastOnce(id) => Some(Packet::PubAck(PubResp::with_reason(id, reason))),
        Delivery::ExactlyOnce(id) => Some(Packet::PubRec(PubResp::with_reason(id, reason))),
    }
}

/// What other threads hand a reactor.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    pub(crate) conns: Vec<(Transport, SocketAddr)>,
    pub(crate) ready: Vec<ConnRef>,
}

/// The part of a reactor other threads reach.
#[derive(Debug)]
pub(crate) struct ReactorShared {
    pub(crate) inbox: Mutex<Inbox>,
    pub(crate) waker: Arc<Waker>,
}

impl ReactorShared {
    pub(crate) fn post(&self, f: impl FnOnce(&mut Inbox)) {
        f(&mut self.inbox.lock().unwrap_or_else(|e| e.into_inner()));
        if let Err(e) = self.waker.wake() {
            tracing::error!(error = %e, "waking a reactor failed");
        }
    }
}

/// The client after a successful CONNECT.
#[derive(Debug)]
struct Client {
    client_id: Arc<str>,
    username: Option<String>,
    session: Arc<Session>,
    will: Option<(Arc<Message>, u32)>,
    aliases_in: AliasesIn,
    aliases_out: AliasesOut,
    /// The client's Maximum Packet Size.
    max_packet_out: u32,
    /// Acknowledgements waiting for a metadata commit or a hold, in order.
    pending: VecDeque<PendingAck>,
    /// When the connection was accepted as this client (ns since the epoch).
    connected_at: i64,
    /// CONNACK is among `pending`: send nothing else yet.
    connack_pending: bool,
    /// DISCONNECT with reason 0x00 (or 3.1.1 DISCONNECT) arrived.
    normal_disconnect: bool,
}

/// An acknowledgement held back until the state it confirms is durable.
#[derive(Debug)]
struct PendingAck {
    /// Metadata-store commit to wait for.
    commit: Option<Seq>,
    /// Held by the publish hook until it reports the hold done; see `Reactor::complete_hold`.
    hold: Option<AckToken>,
    packet: Packet,
}

#[derive(Debug)]
struct Conn {
    transport: Transport,
    addr: SocketAddr,
    /// This connection (its slot and generation).
    id: ConnRef,
    version: ProtocolVersion,
    /// A partial packet between reads (empty most of the time: idle connections hold no
    /// read buffer).
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    wpos: usize,
    deadline: Instant,
    keep_alive: Option<Duration>,
    client: Option<Client>,
    /// Stopped reading: output over the limit.
    read_paused: bool,
    /// The session queue was not drained for lack of output room.
    drain_blocked: bool,
    /// Flush, then close.
    closing: bool,
    /// Not read before this instant: a subscriber it feeds is congested.
    snooze_until: Option<Instant>,
    /// A QoS 1/2 message waiting for room in a connected subscriber's queue; retried before
    /// anything else is read from this connection.
    stalled: Option<(Arc<Message>, Delivery)>,
    /// Not read: the publish hook's downstream is full.
    hook_paused: bool,
    /// Why the connection ends, for the client events (set by whoever ends it first).
    end_reason: Option<EndReason>,
}

impl Conn {
    fn pending_out(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    fn send(&mut self, p: &Packet) {
        packet::encode(p, self.version, &mut self.wbuf);
    }

    fn label(&self) -> String {
        match &self.client {
            Some(c) => format!("{} ({})", c.client_id, self.addr),
            None => self.addr.to_string(),
        }
    }
}

/// A reactor, with the services' hook `H`.
pub(crate) struct Reactor<H> {
    idx: usize,
    poll: Poll,
    broker: Arc<Broker>,
    all: Arc<Vec<Arc<ReactorShared>>>,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    next_generation: NonZeroU64,
    scratch: BytesMut,
    /// Connections to read again (budget ran out).
    again: Vec<usize>,
    /// Connections whose session queue to drain.
    ready: Vec<ConnRef>,
    notifier: Notifier,
    /// Connections with acknowledgements waiting for persistence.
    waiting: Vec<ConnRef>,
    /// Publishers resting because a subscriber they feed is congested, until when.
    snoozed: Vec<(ConnRef, Instant)>,
    wheel: Vec<Vec<ConnRef>>,
    wheel_at: Instant,
    wheel_slot: usize,
    local: Local,
    stop: Arc<AtomicBool>,
    /// The services' hook on publishes and client events.
    hook: H,
    /// Tokens of held acknowledgements.
    tokens: AckTokens,
    /// Holds the hook reported done (kept to reuse the allocation).
    holds_done: Vec<(Hold, HoldOutcome)>,
    /// Connections the hook pauses or resumes (kept to reuse the allocation).
    reads: ReadControl,
}

impl<H> std::fmt::Debug for Reactor<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reactor({})", self.idx)
    }
}

enum Flow {
    Continue,
    Close { normal: bool },
}

impl<H: PublishHook + ClientEvents> Reactor<H> {
    pub(crate) fn new(
        idx: usize,
        poll: Poll,
        broker: Arc<Broker>,
        all: Arc<Vec<Arc<ReactorShared>>>,
        stop: Arc<AtomicBool>,
        hook: H,
    ) -> Reactor<H> {
        Reactor {
            hook,
            tokens: AckTokens::default(),
            holds_done: Vec::new(),
            reads: ReadControl::default(),
            idx,
            poll,
            broker,
            all,
            conns: Vec::new(),
            free: Vec::new(),
            next_generation: NonZeroU64::MIN,
            scratch: BytesMut::new(),
            again: Vec::new(),
            ready: Vec::new(),
            notifier: Notifier::default(),
            waiting: Vec::new(),
            snoozed: Vec::new(),
            wheel: vec![Vec::new(); WHEEL_SLOTS],
            wheel_at: Instant::now(),
            wheel_slot: 0,
            local: Local::default(),
            stop,
        }
    }

    /// Runs until the stop flag is set.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut last_committed = Committed::default();
        while !self.stop.load(Ordering::Relaxed) {
            let busy = !self.again.is_empty() || !self.ready.is_empty();
            let mut timeout = if busy {
                Duration::ZERO
            } else {
                (self.wheel_at + Duration::from_secs(1)).saturating_duration_since(Instant::now())
            };
            if let Some(first) = self.snoozed.iter().map(|s| s.1).min() {
                timeout = timeout.min(first.saturating_duration_since(Instant::now()));
            }
            if let Some(retry) = self.hook.retry_in() {
                timeout = timeout.min(retry);
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "poll failed");
                std::thread::sleep(Duration::from_millis(10));
            }
            for ev in events.iter() {
                let token = ev.token();
                if token == WAKER {
                    self.take_inbox();
                    continue;
                }
                let idx = token.0 - 1;
                if ev.is_writable() {
                    self.flush(idx);
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.read(idx);
                    self.service();
                }
            }
            if !self.snoozed.is_empty() {
                let now = Instant::now();
                let mut i = 0;
                while i < self.snoozed.len() {
                    let (id, until) = self.snoozed[i];
                    if until <= now {
                        self.snoozed.swap_remove(i);
                        if let Some(c) = self.live(id) {
                            c.snooze_until = None;
                            self.again.push(id.slot());
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            for idx in std::mem::take(&mut self.again) {
                self.read(idx);
                self.service();
            }
            self.end_turn();
            let held_done = self.collect_holds();
            // Deliveries on this reactor are handled in this turn; a bounded number of rounds
            // keeps one busy session from starving the poll.
            for _ in 0..4 {
                self.wake_owners();
                if self.ready.is_empty() {
                    break;
                }
                for owner in std::mem::take(&mut self.ready) {
                    self.drain(owner);
                }
            }
            let committed = self.broker.persist.committed();
            if committed != last_committed || held_done {
                last_committed = committed;
                self.release_acks(committed);
            }
            if self.wheel_at.elapsed() >= Duration::from_secs(1) {
                self.tick();
            }
            self.local.flush(&self.broker.counters);
        }
        for idx in 0..self.conns.len() {
            if let Some(c) = self.conns[idx].as_mut() {
                c.end_reason.get_or_insert(EndReason::ServerShuttingDown);
                if c.client.is_some() && c.version == ProtocolVersion::V5 {
                    c.send(&Packet::Disconnect(Disconnect::with_reason(
                        ReasonCode::SERVER_SHUTTING_DOWN,
                    )));
                }
                self.flush(idx);
                self.close(idx, false);
            }
        }
        self.hook.shutdown();
    }

    /// Ends the hook's turn; pauses the connections it asks to and resumes the others.
    fn end_turn(&mut self) {
        let mut reads = std::mem::take(&mut self.reads);
        self.hook.end_turn(&mut reads);
        for id in reads.pause.drain(..) {
            if let Some(c) = self.live(id) {
                c.hook_paused = true;
            }
        }
        for id in reads.resume.drain(..) {
            if let Some(c) = self.live(id)
                && std::mem::take(&mut c.hook_paused)
            {
                self.again.push(id.slot());
            }
        }
        self.reads = reads;
    }

    /// Completes the holds the hook reports done; true if there were any.
    fn collect_holds(&mut self) -> bool {
        let mut done = std::mem::take(&mut self.holds_done);
        let mut cx = HookCx {
            broker: &self.broker,
            notifier: &mut self.notifier,
        };
        self.hook.poll(&mut cx, &mut done);
        let any = !done.is_empty();
        for (hold, outcome) in done.drain(..) {
            self.complete_hold(hold, outcome);
        }
        self.holds_done = done;
        any
    }

    /// A held message's outcome: its acknowledgement (released in order by `release_acks`).
    fn complete_hold(&mut self, hold: Hold, outcome: HoldOutcome) {
        let mut seq = None;
        if let Some((session, id)) = &hold.qos2 {
            let persistent = {
                let mut inner = session.lock();
                if let Some(i) = inner.held_qos2.iter().position(|x| *x == id.0.get()) {
                    inner.held_qos2.swap_remove(i);
                }
                // A negative PUBREC ends the QoS 2 flow (3.1.1 gets a plain one: PUBREL follows).
                if !matches!(outcome, HoldOutcome::Done) && inner.version == ProtocolVersion::V5 {
                    inner.inbound.on_pubrel(*id);
                }
                inner.persistent()
            };
            // The message is done: now the id may be durable, so a resend after a restart is
            // known as a duplicate.
            if persistent && matches!(outcome, HoldOutcome::Done) {
                seq = self.broker.save_session(session);
            }
        }
        let Some(token) = hold.ack else {
            return;
        };
        let idx = hold.conn.slot();
        let Some(conn) = self.live(hold.conn) else {
            return;
        };
        let v5 = conn.version == ProtocolVersion::V5;
        let Some(client) = conn.client.as_mut() else {
            return;
        };
        let Some(pos) = client.pending.iter().position(|a| a.hold == Some(token)) else {
            return;
        };
        let refusal = match outcome {
            HoldOutcome::Done => None,
            HoldOutcome::Refused(r) => Some(r),
            HoldOutcome::Failed { end, .. } if !v5 => {
                // 3.1.1 has no negative acknowledgement: withhold it and close, so the client
                // resends after reconnecting.
                client.pending.truncate(pos);
                conn.end_reason.get_or_insert(end);
                conn.closing = true;
                self.flush(idx);
                return;
            }
            HoldOutcome::Failed { refusal, .. } => Some(refusal),
        };
        let a = &mut client.pending[pos];
        a.hold = None;
        a.commit = a.commit.max(seq);
        if let Some(r) = refusal
            && v5
        {
            r.apply(&mut a.packet);
        }
    }

    /// Tells the hook about a connection that has a client.
    fn client_event(&mut self, conn: &Conn, ev: ClientEvent<'_>) {
        let Some(client) = &conn.client else {
            return;
        };
        let info = ClientInfo {
            conn: conn.id,
            client_id: &client.client_id,
            username: client.username.as_deref(),
            addr: conn.addr,
            version: conn.version,
            connected_at_ns: client.connected_at,
        };
        let mut cx = HookCx {
            broker: &self.broker,
            notifier: &mut self.notifier,
        };
        self.hook.on_client(&mut cx, &info, ev);
    }

    fn take_inbox(&mut self) {
        let inbox = {
            let shared = &self.all[self.idx];
            std::mem::take(&mut *shared.inbox.lock().unwrap_or_else(|e| e.into_inner()))
        };
        for (transport, addr) in inbox.conns {
            self.add(transport, addr);
        }
        self.ready.extend(inbox.ready);
    }

    fn add(&mut self, mut transport: Transport, addr: SocketAddr) {
        let counters = Arc::clone(&self.broker.counters);
        if counters.connections.load(Ordering::Relaxed) as usize >= self.broker.cfg.max_connections
        {
            tracing::warn!(%addr, "connection refused: max_connections reached");
            return;
        }
        let idx = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.conns.len() - 1
        });
        if let Err(e) = self.poll.registry().register(
            transport.socket(),
            Token(idx + 1),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::error!(%addr, error = %e, "registering a connection failed");
            self.free.push(idx);
            return;
        }
        let id = ConnRef::new(self.idx, idx, self.next_generation);
        self.next_generation = self.next_generation.saturating_add(1);
        let deadline = Instant::now()
            + Duration::from_secs(u64::from(self.broker.cfg.connect_timeout_secs.max(1)));
        self.conns[idx] = Some(Conn {
            transport,
            addr,
            id,
            version: ProtocolVersion::V5,
            rbuf: BytesMut::new(),
            wbuf: Vec::new(),
            wpos: 0,
            deadline,
            keep_alive: None,
            client: None,
            read_paused: false,
            drain_blocked: false,
            closing: false,
            snooze_until: None,
            stalled: None,
            hook_paused: false,
            end_reason: None,
        });
        self.schedule(id, deadline);
        counters.connections.fetch_add(1, Ordering::Relaxed);
        counters.connections_total.fetch_add(1, Ordering::Relaxed);
        // Data may already be waiting (edge-triggered registration after the fact).
        self.again.push(idx);
    }

    fn schedule(&mut self, id: ConnRef, at: Instant) {
        let secs = at.saturating_duration_since(self.wheel_at).as_secs() as usize;
        let slot = (self.wheel_slot + secs.clamp(1, WHEEL_SLOTS - 1)) % WHEEL_SLOTS;
        self.wheel[slot].push(id);
    }

    fn tick(&mut self) {
        self.wheel_at += Duration::from_secs(1);
        if self.wheel_at.elapsed() > Duration::from_secs(5) {
            self.wheel_at = Instant::now();
        }
        self.wheel_slot = (self.wheel_slot + 1) % WHEEL_SLOTS;
        let now = Instant::now();
        for id in std::mem::take(&mut self.wheel[self.wheel_slot]) {
            let idx = id.slot();
            let Some(c) = self.live(id) else {
                continue;
            };
            if c.deadline <= now {
                let connected = c.client.is_some();
                tracing::info!(conn = %c.label(), "{}", if connected { "keep-alive timeout" } else { "no CONNECT in time" });
                self.broker
                    .counters
                    .keepalive_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(c) = self.conns[idx].as_mut() {
                    c.end_reason.get_or_insert(EndReason::KeepAliveTimeout);
                }
                if let Some(c) = self.conns[idx].as_mut()
                    && connected
                    && c.version == ProtocolVersion::V5
                {
                    c.send(&Packet::Disconnect(Disconnect::with_reason(
                        ReasonCode::KEEP_ALIVE_TIMEOUT,
                    )));
                    self.flush(idx);
                }
                self.close(idx, false);
            } else {
                let at = c.deadline;
                self.schedule(id, at);
            }
        }
        if self.idx == 0 {
            self.broker.housekeeping(&mut self.notifier);
        }
    }

    fn conn(&mut self, idx: usize) -> Option<&mut Conn> {
        self.conns.get_mut(idx).and_then(Option::as_mut)
    }

    /// The connection `id` names, if it is still open (its slot may hold a newer one).
    fn live(&mut self, id: ConnRef) -> Option<&mut Conn> {
        self.conns
            .get_mut(id.slot())
            .and_then(Option::as_mut)
            .filter(|c| c.id == id)
    }

    fn read(&mut self, idx: usize) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        if conn.read_paused || conn.closing || conn.snooze_until.is_some() || conn.hook_paused {
            self.conns[idx] = Some(conn);
            return;
        }
        let mut buf = if conn.rbuf.is_empty() {
            std::mem::take(&mut self.scratch)
        } else {
            std::mem::take(&mut conn.rbuf)
        };
        let outcome = conn.transport.read(&mut buf, READ_BUDGET);
        let mut flow = Flow::Continue;
        match outcome {
            Err(e) => {
                tracing::debug!(conn = %conn.label(), error = %e, "read failed");
                flow = Flow::Close { normal: false };
            }
            Ok(o) => {
                self.local.bytes_in += o.bytes as u64;
                if o.bytes > 0
                    && let Some(ka) = conn.keep_alive
                {
                    conn.deadline = Instant::now() + ka;
                }

                let max = self.broker.cfg.max_packet_size;
                if let Some((msg, delivery)) = conn.stalled.take() {
                    self.route(&mut conn, msg, delivery);
                }
                while matches!(flow, Flow::Continue) {
                    if conn.pending_out() > self.broker.cfg.max_output_bytes {
                        conn.read_paused = true;
                        break;
                    }
                    if conn.snooze_until.is_some() || conn.stalled.is_some() || conn.hook_paused {
                        break;
                    }
                    // Before CONNECT only an error in a CONNECT is answered (MQTT 5.0
                    // §4.13.1), and a 3.1.1 CONNECT in the 3.1.1 form.
                    let answer = conn.client.is_some() || buf.first().is_some_and(|b| b >> 4 == 1);
                    if conn.client.is_none() && connect_level(&buf) == Some(4) {
                        conn.version = ProtocolVersion::V311;
                    }
                    match packet::decode(&mut buf, conn.version, max) {
                        Ok(Some(p)) => flow = self.handle(&mut conn, p),
                        Ok(None) => break,
                        Err(e) => {
                            self.broker
                                .counters
                                .protocol_errors
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::info!(conn = %conn.label(), error = %e, "bad packet; closing");
                            if answer {
                                self.refuse(&mut conn, e.reason_code());
                            }
                            flow = Flow::Close { normal: false };
                        }
                    }
                }
                if matches!(flow, Flow::Continue) && o.eof {
                    flow = Flow::Close { normal: false };
                }
                if let Some(until) = conn.snooze_until {
                    self.snoozed.push((conn.id, until));
                } else if o.more {
                    self.again.push(idx);
                }
            }
        }
        if buf.is_empty() {
            buf.clear();
            self.scratch = buf;
        } else {
            conn.rbuf = buf;
        }
        if conn.transport.wants_write() || conn.pending_out() > 0 {
            self.write_out(&mut conn);
        }
        let close = match flow {
            Flow::Continue => conn.closing.then_some(false),
            Flow::Close { normal } => Some(normal),
        };
        self.conns[idx] = Some(conn);
        if let Some(normal) = close {
            self.close(idx, normal);
        }
    }

    /// Answers a fatal error: CONNACK with the reason before CONNECT succeeded, DISCONNECT
    /// after (MQTT 5); 3.1.1 only has CONNACK return codes, and otherwise just closes.
    fn refuse(&mut self, conn: &mut Conn, reason: ReasonCode) {
        conn.end_reason.get_or_insert(EndReason::Code(reason));
        match (&conn.client, conn.version) {
            (None, _) => {
                // 3.1.1 has return codes for refusals only, not for malformed packets; a
                // client of an unsupported level gets the 3.1.1 form (return code 1).
                let version = if reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION {
                    Some(ProtocolVersion::V311)
                } else if conn.version == ProtocolVersion::V5 {
                    Some(ProtocolVersion::V5)
                } else if matches!(reason.0, 0x85..=0x8A) {
                    Some(ProtocolVersion::V311)
                } else {
                    None
                };
                if let Some(v) = version {
                    let p = Packet::ConnAck(ConnAck {
                        session_present: false,
                        reason,
                        properties: Properties::default(),
                    });
                    packet::encode(&p, v, &mut conn.wbuf);
                }
            }
            (Some(_), ProtocolVersion::V5) => {
                conn.send(&Packet::Disconnect(Disconnect::with_reason(reason)));
            }
            _ => {}
        }
        conn.closing = true;
    }

    fn handle(&mut self, conn: &mut Conn, p: Packet) -> Flow {
        if conn.client.is_none() {
            return match p {
                Packet::Connect(c) => self.connect(conn, *c),
                other => {
                    tracing::info!(conn = %conn.label(), packet = ?other.packet_type(), "first packet is not CONNECT; closing");
                    self.broker
                        .counters
                        .protocol_errors
                        .fetch_add(1, Ordering::Relaxed);
                    Flow::Close { normal: false }
                }
            };
        }
        match p {
            Packet::Publish(p) => self.publish(conn, p),
            Packet::PubAck(a) => {
                self.acked(conn, |o| o.on_puback(a.packet_id));
                Flow::Continue
            }
            Packet::PubRec(a) => {
                let refused = a.reason.is_error();
                let outcome = self.acked(conn, |o| o.on_pubrec(a.packet_id, refused));
                match outcome {
                    Some(id) => conn.send(&Packet::PubRel(PubResp::new(id))),
                    None if !refused => conn.send(&Packet::PubRel(PubResp::with_reason(
                        a.packet_id,
                        ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
                    ))),
                    None => {}
                }
                Flow::Continue
            }
            Packet::PubComp(a) => {
                self.acked(conn, |o| o.on_pubcomp(a.packet_id));
                Flow::Continue
            }
            Packet::PubRel(r) => {
                let Some(client) = &mut conn.client else {
                    return Flow::Continue;
                };
                let known = client.session.lock().inbound.on_pubrel(r.packet_id);
                // The released id leaves the persisted session too, or a new message reusing
                // it after a restart would be taken for a duplicate and dropped.
                let (comp, seq) = if known {
                    (
                        PubResp::new(r.packet_id),
                        self.broker.save_session(&client.session),
                    )
                } else {
                    (
                        PubResp::with_reason(r.packet_id, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND),
                        None,
                    )
                };
                Self::ack(conn, &mut self.waiting, seq, Packet::PubComp(comp));
                Flow::Continue
            }
            Packet::Subscribe(s) => self.subscribe(conn, s),
            Packet::Unsubscribe(u) => self.unsubscribe(conn, u),
            Packet::PingReq => {
                conn.send(&Packet::PingResp);
                Flow::Continue
            }
            Packet::Disconnect(d) => self.disconnect(conn, d),
            Packet::Connect(_) => {
                tracing::info!(conn = %conn.label(), "second CONNECT; closing");
                self.refuse(conn, ReasonCode::PROTOCOL_ERROR);
                Flow::Close { normal: false }
            }
            Packet::Auth(_) => {
                tracing::info!(conn = %conn.label(), "AUTH without an authentication method; closing");
                self.refuse(conn, ReasonCode::PROTOCOL_ERROR);
                Flow::Close { normal: false }
            }
            other => {
                tracing::info!(conn = %conn.label(), packet = ?other.packet_type(), "server-to-client packet from a client; closing");
                self.refuse(conn, ReasonCode::PROTOCOL_ERROR);
                Flow::Close { normal: false }
            }
        }
    }

    /// Queues an acknowledgement behind earlier ones that wait for persistence `commit`.
    fn ack(conn: &mut Conn, waiting: &mut Vec<ConnRef>, commit: Option<Seq>, p: Packet) {
        Self::ack_after(conn, waiting, commit, None, p);
    }

    /// Queues an acknowledgement behind earlier ones; it waits for persistence `commit` and for
    /// the publish hook to finish `hold`.
    fn ack_after(
        conn: &mut Conn,
        waiting: &mut Vec<ConnRef>,
        commit: Option<Seq>,
        hold: Option<AckToken>,
        packet: Packet,
    ) {
        let Some(client) = &mut conn.client else {
            return;
        };
        if client.pending.is_empty() && commit.is_none() && hold.is_none() {
            if let Packet::PubAck(_) = packet {
                client.session.lock().inbound.puback_sent();
            }
            packet::encode(&packet, conn.version, &mut conn.wbuf);
            return;
        }
        if client.pending.is_empty() {
            waiting.push(conn.id);
        }
        client.pending.push_back(PendingAck {
            commit,
            hold,
            packet,
        });
    }

    fn release_acks(&mut self, committed: Committed) {
        let mut still = Vec::new();
        for id in std::mem::take(&mut self.waiting) {
            let idx = id.slot();
            let Some(conn) = self.live(id) else {
                continue;
            };
            let version = conn.version;
            let mut released_connack = false;
            if let Some(client) = &mut conn.client {
                while client
                    .pending
                    .front()
                    .is_some_and(|a| a.hold.is_none() && committed.covers(a.commit))
                {
                    let Some(PendingAck { packet: p, .. }) = client.pending.pop_front() else {
                        break;
                    };
                    match &p {
                        Packet::PubAck(_) => client.session.lock().inbound.puback_sent(),
                        Packet::ConnAck(_) => {
                            client.connack_pending = false;
                            released_connack = true;
                        }
                        _ => {}
                    }
                    packet::encode(&p, version, &mut conn.wbuf);
                }
                if !client.pending.is_empty() {
                    still.push(id);
                }
            }
            if released_connack {
                self.after_connack(idx);
            }
            self.flush(idx);
        }
        self.waiting.extend(still);
    }

    fn connect(&mut self, conn: &mut Conn, c: Connect) -> Flow {
        let broker = Arc::clone(&self.broker);
        let cfg = &broker.cfg;
        conn.version = c.version;
        let v5 = c.version == ProtocolVersion::V5;
        let fail = |this: &mut Self, conn: &mut Conn, reason: ReasonCode, why: &str| {
            this.broker
                .counters
                .connects_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(conn = %conn.label(), client_id = c.client_id.as_str(), reason = reason.name(), "CONNECT refused: {why}");
            this.refuse(conn, reason);
            Flow::Close { normal: false }
        };
        if c.properties.authentication_method.is_some() {
            return fail(
                self,
                conn,
                ReasonCode::BAD_AUTHENTICATION_METHOD,
                "enhanced authentication is not supported",
            );
        }
        let request = ConnectRequest {
            client_id: c.client_id.as_str(),
            username: c.username.as_ref().map(Utf8::as_str),
            password: c.password.as_deref(),
            cert: conn.transport.peer_cert(),
            version: c.version,
            clean_start: c.clean_start,
        };
        let identity = match broker.credentials.authenticate(&request) {
            Ok(identity) => identity,
            Err(denied) => {
                if denied.auth_failure {
                    self.broker
                        .counters
                        .auth_failures
                        .fetch_add(1, Ordering::Relaxed);
                }
                return fail(self, conn, denied.code, denied.why);
            }
        };
        let (client_id, assigned) = match identity.client_id {
            Some(id) if c.client_id.as_str().is_empty() => (id.clone(), Some(id)),
            Some(id) => (id, None),
            None => {
                let id = broker.assign_client_id();
                (id.clone(), Some(id))
            }
        };
        let username = identity.username;
        if let Some(cert) = &identity.cert {
            tracing::debug!(client_id = %client_id, fingerprint = %cert.fingerprint, "client certificate");
        }
        let expiry = if v5 {
            c.properties.session_expiry_interval.unwrap_or(0)
        } else if c.clean_start {
            0
        } else {
            u32::MAX
        }
        .min(cfg.max_session_expiry_secs);
        let mut keep_alive = c.keep_alive;
        let mut server_keep_alive = None;
        if cfg.max_keep_alive_secs > 0
            && v5
            && (keep_alive == 0 || keep_alive > cfg.max_keep_alive_secs)
        {
            keep_alive = cfg.max_keep_alive_secs;
            server_keep_alive = Some(keep_alive);
        }
        let client_id: Arc<str> = Arc::from(client_id);
        let will = c.will.as_ref().and_then(|w| {
            if !broker.acl.can_publish(&client_id, username.as_deref(), w.topic.as_str()) {
                tracing::warn!(client_id = %client_id, topic = w.topic.as_str(), "will topic not allowed; will dropped");
                return None;
            }
            let p = Publish {
                dup: false,
                delivery: Delivery::AtMostOnce,
                retain: w.retain,
                topic: w.topic.clone(),
                properties: w.properties.clone(),
                payload: w.payload.clone(),
            };
            let mut m = Message::from_publish(&p, w.topic.clone(), None);
            m.qos = w.qos;
            Some((Arc::new(m), w.properties.will_delay_interval.unwrap_or(0)))
        });
        let owner = conn.id;
        let attached = broker.attach(
            &client_id,
            c.version,
            c.clean_start,
            expiry,
            owner,
            &mut self.notifier,
        );
        {
            let mut inner = attached.session.lock();
            inner.outbound.set_receive_maximum(
                c.properties
                    .receive_maximum
                    .unwrap_or(u16::MAX)
                    .min(cfg.max_inflight_messages),
            );
            inner.inbound.reconnect(cfg.receive_maximum);
        }
        let seq = broker.save_session(&attached.session);
        conn.keep_alive = mast_protocol::session::keep_alive_deadline(keep_alive);
        conn.deadline = match conn.keep_alive {
            Some(ka) => Instant::now() + ka,
            None => Instant::now() + Duration::from_secs(365 * 24 * 3600),
        };
        self.schedule(conn.id, conn.deadline);
        let mut properties = Properties::default();
        if v5 {
            properties.receive_maximum = Some(cfg.receive_maximum);
            properties.topic_alias_maximum = Some(cfg.topic_alias_maximum);
            properties.maximum_packet_size = Some(cfg.max_packet_size);
            properties.retain_available = Some(true);
            properties.wildcard_subscription_available = Some(true);
            properties.subscription_identifier_available = Some(true);
            properties.shared_subscription_available = Some(true);
            properties.server_keep_alive = server_keep_alive;
            properties.assigned_client_identifier = assigned.as_deref().map(Utf8::new);
            if c.properties
                .session_expiry_interval
                .is_some_and(|e| e != expiry)
            {
                properties.session_expiry_interval = Some(expiry);
            }
        }
        tracing::debug!(client_id = %client_id, addr = %conn.addr, version = ?c.version, session_present = attached.session_present, "connected");
        conn.client = Some(Client {
            client_id,
            username,
            session: attached.session,
            will,
            aliases_in: AliasesIn::new(cfg.topic_alias_maximum),
            aliases_out: AliasesOut::new(c.properties.topic_alias_maximum.unwrap_or(0)),
            max_packet_out: c.properties.maximum_packet_size.unwrap_or(u32::MAX),
            pending: VecDeque::new(),
            connected_at: now_ns(),
            connack_pending: true,
            normal_disconnect: false,
        });
        self.client_event(
            conn,
            ClientEvent::Connected {
                clean_start: c.clean_start,
                keep_alive_secs: keep_alive,
            },
        );
        let connack = Packet::ConnAck(ConnAck {
            session_present: attached.session_present,
            reason: ReasonCode::SUCCESS,
            properties,
        });
        let committed = broker.persist.committed();
        if committed.covers(seq) {
            conn.send(&connack);
            if let Some(client) = &mut conn.client {
                client.connack_pending = false;
            }
            Self::resend(conn);
        } else {
            Self::ack(conn, &mut self.waiting, seq, connack);
        }
        Flow::Continue
    }

    /// After CONNACK: resend the session's unacknowledged messages, then drain its queue.
    fn after_connack(&mut self, idx: usize) {
        let Some(conn) = self.conn(idx) else {
            return;
        };
        Self::resend(conn);
        if conn.client.is_some() {
            let owner = conn.id;
            self.ready.push(owner);
        }
    }

    fn resend(conn: &mut Conn) {
        let Some(client) = &mut conn.client else {
            return;
        };
        let session = Arc::clone(&client.session);
        let inner = session.lock();
        let now = now_ms();
        for f in inner.outbound.resend() {
            match f.state {
                OutState::AwaitPubComp => {
                    packet::encode(
                        &Packet::PubRel(PubResp::new(f.id)),
                        conn.version,
                        &mut conn.wbuf,
                    );
                }
                OutState::AwaitPubAck | OutState::AwaitPubRec => {
                    let delivery = if f.state == OutState::AwaitPubAck {
                        Delivery::AtLeastOnce(f.id)
                    } else {
                        Delivery::ExactlyOnce(f.id)
                    };
                    let expiry = f.msg.msg.remaining_secs(now).flatten();
                    let mut p =
                        f.msg
                            .msg
                            .to_publish(delivery, f.msg.retain, expiry, &f.msg.sub_ids);
                    p.dup = true;
                    packet::encode(&Packet::Publish(p), conn.version, &mut conn.wbuf);
                }
            }
        }
    }

    fn publish(&mut self, conn: &mut Conn, p: Publish) -> Flow {
        let Some(client) = &mut conn.client else {
            return Flow::Continue;
        };
        self.local.messages_in += 1;
        if !p.properties.subscription_identifiers.is_empty() {
            tracing::info!(client_id = %client.client_id, "PUBLISH with a subscription identifier from a client; closing");
            self.refuse(conn, ReasonCode::PROTOCOL_ERROR);
            return Flow::Close { normal: false };
        }
        let topic = match client
            .aliases_in
            .resolve(&p.topic, p.properties.topic_alias)
        {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(client_id = %client.client_id, error = %e, "bad topic alias; closing");
                self.refuse(conn, e.reason);
                return Flow::Close { normal: false };
            }
        };
        let action = client.session.lock().inbound.on_publish(p.delivery);
        let action = match action {
            Ok(a) => a,
            Err(e) => {
                tracing::info!(client_id = %client.client_id, error = %e, "closing");
                self.refuse(conn, e.reason);
                return Flow::Close { normal: false };
            }
        };
        let allowed = self.broker.acl.can_publish(
            &client.client_id,
            client.username.as_deref(),
            topic.as_str(),
        );
        let v5 = conn.version == ProtocolVersion::V5;
        let (seq, reason) = if action == InAction::DuplicateQos2 {
            (None, ReasonCode::SUCCESS)
        } else if !allowed {
            self.broker
                .counters
                .not_authorized
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(client_id = %client.client_id, topic = topic.as_str(), "publish not authorized; dropped");
            if v5 {
                if let Delivery::ExactlyOnce(id) = p.delivery {
                    // An error PUBREC ends the QoS 2 flow: no PUBREL will come.
                    client.session.lock().inbound.on_pubrel(id);
                }
                (None, ReasonCode::NOT_AUTHORIZED)
            } else {
                (None, ReasonCode::SUCCESS)
            }
        } else {
            let msg = Arc::new(Message::from_publish(
                &p,
                topic,
                Some(Arc::clone(&client.client_id)),
            ));
            self.route(conn, msg, p.delivery);
            return Flow::Continue;
        };
        Self::ack_publish(conn, &mut self.waiting, p.delivery, seq, reason);
        Flow::Continue
    }

    /// Routes an accepted PUBLISH and acknowledges it, or parks it on the connection when a
    /// connected subscriber has no room (the connection then rests and retries it first). The
    /// publish hook sees it first: it may refuse it (not routed), or claim it and hold its
    /// acknowledgement.
    fn route(&mut self, conn: &mut Conn, msg: Arc<Message>, delivery: Delivery) {
        let Some(client) = &conn.client else {
            return;
        };
        let v5 = conn.version == ProtocolVersion::V5;
        let publisher = Publisher {
            conn: conn.id,
            client_id: &client.client_id,
            username: client.username.as_deref(),
            delivery,
        };
        let mut cx = HookCx {
            broker: &self.broker,
            notifier: &mut self.notifier,
        };
        let claimed = match self.hook.inspect(&mut cx, &publisher, &msg) {
            Inspect::Pass => false,
            Inspect::Claim => true,
            Inspect::Refuse(refusal) => {
                if let (Delivery::ExactlyOnce(id), true) = (delivery, v5) {
                    // A negative PUBREC ends the QoS 2 flow: no PUBREL will come.
                    client.session.lock().inbound.on_pubrel(id);
                }
                if let Some(mut p) = ack_packet(delivery, ReasonCode::SUCCESS) {
                    if v5 {
                        refusal.apply(&mut p);
                    }
                    Self::ack(conn, &mut self.waiting, None, p);
                }
                return;
            }
        };
        self.notifier.congested = false;
        let routed = self
            .broker
            .publish(Arc::clone(&msg), &mut self.notifier, true);
        if routed.blocked {
            conn.stalled = Some((msg, delivery));
            conn.snooze_until = Some(Instant::now() + SNOOZE);
            return;
        }
        if std::mem::take(&mut self.notifier.congested) {
            conn.snooze_until = Some(Instant::now() + SNOOZE);
        }
        let reason = if !claimed && !routed.matched && v5 {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        if claimed {
            let qos2 = match delivery {
                Delivery::ExactlyOnce(id) => {
                    client.session.lock().held_qos2.push(id.0.get());
                    Some((Arc::clone(&client.session), id))
                }
                _ => None,
            };
            let ack = delivery.packet_id().map(|_| self.tokens.next());
            let hold = Hold {
                conn: conn.id,
                ack,
                qos2,
            };
            let mut cx = HookCx {
                broker: &self.broker,
                notifier: &mut self.notifier,
            };
            let refusal = match self.hook.accept(&mut cx, &publisher, &msg, hold) {
                Accept::Held { pause } => {
                    conn.hook_paused |= pause;
                    if let Some(p) = ack_packet(delivery, ReasonCode::SUCCESS) {
                        Self::ack_after(conn, &mut self.waiting, routed.seq, ack, p);
                    }
                    return;
                }
                Accept::Ack => None,
                Accept::Refuse(r) => Some(r),
            };
            if let Delivery::ExactlyOnce(id) = delivery {
                let mut inner = client.session.lock();
                inner.held_qos2.retain(|x| *x != id.0.get());
                if refusal.is_some() && v5 {
                    inner.inbound.on_pubrel(id);
                }
            }
            if let Some(refusal) = refusal {
                if let Some(mut p) = ack_packet(delivery, ReasonCode::SUCCESS) {
                    if v5 {
                        refusal.apply(&mut p);
                    }
                    Self::ack(conn, &mut self.waiting, routed.seq, p);
                }
                return;
            }
        }
        // A persistent session's pending QoS 2 id is durable before PUBREC: a resend after a
        // restart is then known as a duplicate, not delivered again.
        let seq = if matches!(delivery, Delivery::ExactlyOnce(_)) {
            routed.seq.max(self.broker.save_session(&client.session))
        } else {
            routed.seq
        };
        Self::ack_publish(conn, &mut self.waiting, delivery, seq, reason);
    }

    fn ack_publish(
        conn: &mut Conn,
        waiting: &mut Vec<ConnRef>,
        delivery: Delivery,
        seq: Option<Seq>,
        reason: ReasonCode,
    ) {
        if let Some(p) = ack_packet(delivery, reason) {
            Self::ack(conn, waiting, seq, p);
        }
    }

    /// Applies an acknowledgement of an outbound flow; returns the id to PUBREL, if any.
    fn acked(
        &mut self,
        conn: &mut Conn,
        f: impl FnOnce(
            &mut mast_protocol::session::Outbound<super::session::Queued>,
        ) -> Acked<super::session::Queued>,
    ) -> Option<mast_protocol::publish::PacketId> {
        let client = conn.client.as_ref()?;
        let outcome = {
            let mut inner = client.session.lock();
            let outcome = f(&mut inner.outbound);
            if let Acked::Done(q) | Acked::Refused(q) = &outcome {
                inner.inflight_bytes = inner.inflight_bytes.saturating_sub(q.msg.size());
            }
            outcome
        };
        let owner = conn.id;
        match outcome {
            Acked::Done(q) | Acked::Refused(q) => {
                self.broker.delivered(&client.session, &q);
                self.ready.push(owner);
                None
            }
            Acked::SendPubRel(id) => Some(id),
            Acked::Unknown => None,
        }
    }

    fn subscribe(&mut self, conn: &mut Conn, s: Subscribe) -> Flow {
        let Some(client) = &conn.client else {
            return Flow::Continue;
        };
        let v5 = conn.version == ProtocolVersion::V5;
        let sub_id = s.properties.subscription_identifiers.first().copied();
        let mut reasons = Vec::with_capacity(s.subscriptions.len());
        for sub in &s.subscriptions {
            let raw = sub.filter.as_str();
            let allowed = match parse_filter(raw) {
                Ok(spec) => self.broker.acl.can_subscribe(
                    &client.client_id,
                    client.username.as_deref(),
                    spec.filter,
                ),
                Err(_) => true,
            };
            let r = if allowed {
                self.broker.subscribe(
                    &client.session,
                    raw,
                    sub.options,
                    sub_id,
                    &mut self.notifier,
                )
            } else {
                self.broker
                    .counters
                    .not_authorized
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(client_id = %client.client_id, filter = raw, "subscription not authorized");
                Err(ReasonCode::NOT_AUTHORIZED)
            };
            let granted = r.and_then(|g| QoS::from_level(g.0).ok_or(g));
            self.client_event(
                conn,
                ClientEvent::Subscribed {
                    filter: raw,
                    granted,
                },
            );
            let r = match r {
                Ok(granted) => granted,
                Err(reason) if reason == ReasonCode::PROTOCOL_ERROR => {
                    tracing::info!(client_id = %client.client_id, filter = raw, "no-local on a shared subscription; closing");
                    self.refuse(conn, reason);
                    return Flow::Close { normal: false };
                }
                Err(reason) => {
                    tracing::info!(client_id = %client.client_id, filter = raw, reason = reason.name(), "subscription refused");
                    if v5 { reason } else { ReasonCode(0x80) }
                }
            };
            reasons.push(r);
        }
        let seq = self.broker.save_session(&client.session);
        let owner = conn.id;
        Self::ack(
            conn,
            &mut self.waiting,
            seq,
            Packet::SubAck(SubAck {
                packet_id: s.packet_id,
                properties: Properties::default(),
                reasons,
            }),
        );
        self.ready.push(owner);
        Flow::Continue
    }

    fn unsubscribe(&mut self, conn: &mut Conn, u: Unsubscribe) -> Flow {
        let Some(client) = &conn.client else {
            return Flow::Continue;
        };
        let reasons: Vec<ReasonCode> = u
            .filters
            .iter()
            .map(|f| self.broker.unsubscribe(&client.session, f.as_str()))
            .collect();
        let seq = self.broker.save_session(&client.session);
        let reasons = if conn.version == ProtocolVersion::V5 {
            reasons
        } else {
            Vec::new()
        };
        Self::ack(
            conn,
            &mut self.waiting,
            seq,
            Packet::UnsubAck(UnsubAck {
                packet_id: u.packet_id,
                properties: Properties::default(),
                reasons,
            }),
        );
        Flow::Continue
    }

    fn disconnect(&mut self, conn: &mut Conn, d: Disconnect) -> Flow {
        let Some(client) = &mut conn.client else {
            return Flow::Close { normal: true };
        };
        if let Some(e) = d.properties.session_expiry_interval {
            let mut inner = client.session.lock();
            if inner.expiry_secs == 0 && e != 0 {
                drop(inner);
                tracing::info!(client_id = %client.client_id, "DISCONNECT sets a session expiry on a session that had none");
                self.refuse(conn, ReasonCode::PROTOCOL_ERROR);
                return Flow::Close { normal: false };
            }
            inner.expiry_secs = e.min(self.broker.cfg.max_session_expiry_secs);
            drop(inner);
            self.broker.save_session(&client.session);
        }
        client.normal_disconnect = d.reason != ReasonCode::DISCONNECT_WITH_WILL;
        Flow::Close { normal: true }
    }

    /// Moves queued messages of the session `owner` names into its connection's output.
    fn drain(&mut self, owner: ConnRef) {
        let idx = owner.slot();
        if self.live(owner).is_none() {
            return;
        }
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let max_out = self.broker.cfg.max_output_bytes;
        let mut end: Option<ReasonCode> = None;
        if let Some(client) = &mut conn.client
            && !client.connack_pending
            && !conn.closing
        {
            let session = Arc::clone(&client.session);
            let mut inner = session.lock();
            inner.notified = false;
            if inner.owner != Some(conn.id) {
                end = Some(ReasonCode::SESSION_TAKEN_OVER);
            } else if let Some(reason) = inner.kick.take() {
                end = Some(reason);
            } else {
                let now = now_ms();
                conn.drain_blocked = false;
                while let Some(q) = inner.pop() {
                    if conn.wbuf.len() - conn.wpos >= max_out {
                        inner.push_front(q);
                        conn.drain_blocked = true;
                        break;
                    }
                    let Some(expiry) = q.msg.remaining_secs(now) else {
                        self.broker
                            .counters
                            .dropped_expired
                            .fetch_add(1, Ordering::Relaxed);
                        self.broker.delivered(&session, &q);
                        continue;
                    };
                    let delivery = if q.qos == QoS::AtMostOnce {
                        Delivery::AtMostOnce
                    } else if inner.outbound.can_send() {
                        match inner.outbound.start(q.qos == QoS::ExactlyOnce, q.clone()) {
                            Some(d) => {
                                inner.inflight_bytes += q.msg.size();
                                d
                            }
                            None => {
                                inner.push_front(q);
                                break;
                            }
                        }
                    } else {
                        inner.push_front(q);
                        break;
                    };
                    let mut p = q.msg.to_publish(delivery, q.retain, expiry, &q.sub_ids);
                    if conn.version == ProtocolVersion::V5 {
                        match client.aliases_out.alias(&q.msg.topic) {
                            OutAlias::None => {}
                            OutAlias::Set(a) => p.properties.topic_alias = Some(a),
                            OutAlias::Use(a) => {
                                p.properties.topic_alias = Some(a);
                                p.topic = Utf8::new("");
                            }
                        }
                    }
                    let start = conn.wbuf.len();
                    packet::encode(&Packet::Publish(p), conn.version, &mut conn.wbuf);
                    if conn.wbuf.len() - start > client.max_packet_out as usize {
                        // Larger than the client accepts: dropped (MQTT 5.0 §3.1.2.11.4).
                        conn.wbuf.truncate(start);
                        self.broker
                            .counters
                            .dropped_too_large
                            .fetch_add(1, Ordering::Relaxed);
                        if let Some(id) = delivery.packet_id() {
                            let done = match q.qos {
                                QoS::AtLeastOnce => inner.outbound.on_puback(id),
                                _ => inner.outbound.on_pubrec(id, true),
                            };
                            if let Acked::Done(q) | Acked::Refused(q) = done {
                                inner.inflight_bytes =
                                    inner.inflight_bytes.saturating_sub(q.msg.size());
                                drop(inner);
                                self.broker.delivered(&session, &q);
                                inner = session.lock();
                            }
                        }
                        continue;
                    }
                    self.local.messages_out += 1;
                }
                inner.relieve(
                    self.broker.cfg.max_queued_messages,
                    self.broker.cfg.max_queued_bytes,
                );
            }
        }
        if let Some(reason) = end {
            conn.end_reason.get_or_insert(EndReason::Code(reason));
            tracing::info!(conn = %conn.label(), reason = reason.name(), "connection ended by the server");
            if conn.version == ProtocolVersion::V5 {
                conn.send(&Packet::Disconnect(Disconnect::with_reason(reason)));
            }
            conn.closing = true;
        }
        self.write_out(&mut conn);
        let closing = conn.closing;
        self.conns[idx] = Some(conn);
        if closing {
            self.close(idx, false);
        }
    }

    fn flush(&mut self, idx: usize) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        self.write_out(&mut conn);
        let closing = conn.closing && conn.pending_out() == 0;
        self.conns[idx] = Some(conn);
        if closing {
            self.close(idx, false);
        }
    }

    fn write_out(&mut self, conn: &mut Conn) {
        if conn.pending_out() > 0 || conn.transport.wants_write() {
            match conn.transport.write(&conn.wbuf[conn.wpos..]) {
                Ok(n) => {
                    conn.wpos += n;
                    self.local.bytes_out += n as u64;
                }
                Err(e) => {
                    tracing::debug!(conn = %conn.label(), error = %e, "write failed");
                    conn.closing = true;
                    conn.wbuf.clear();
                    conn.wpos = 0;
                    return;
                }
            }
        }
        if conn.wpos == conn.wbuf.len() {
            conn.wbuf.clear();
            conn.wpos = 0;
            if conn.wbuf.capacity() > 64 * 1024 {
                conn.wbuf = Vec::new();
            }
        } else if conn.wpos >= 64 * 1024 && conn.wpos * 2 >= conn.wbuf.len() {
            // Compact only when the written part dominates: amortised O(1) per byte.
            conn.wbuf.drain(..conn.wpos);
            conn.wpos = 0;
        }
        let max_out = self.broker.cfg.max_output_bytes;
        if conn.pending_out() <= max_out / 2 {
            let idx_gen = conn.client.is_some().then_some(conn.id);
            if conn.read_paused {
                conn.read_paused = false;
                if let Some(o) = idx_gen {
                    self.again.push(o.slot());
                }
            }
            if conn.drain_blocked
                && let Some(o) = idx_gen
            {
                conn.drain_blocked = false;
                self.ready.push(o);
            }
        }
    }

    fn close(&mut self, idx: usize, normal: bool) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(conn.transport.socket());
        self.free.push(idx);
        self.broker
            .counters
            .connections
            .fetch_sub(1, Ordering::Relaxed);
        if let Some(client) = &conn.client {
            let superseded = client.session.lock().owner != Some(conn.id);
            let reason = conn
                .end_reason
                .unwrap_or(if normal && client.normal_disconnect {
                    EndReason::ClientDisconnected
                } else if normal {
                    EndReason::ClientDisconnectedWithWill
                } else if superseded {
                    EndReason::SessionTakenOver
                } else {
                    EndReason::ConnectionLost
                });
            self.client_event(&conn, ClientEvent::Disconnected { reason, superseded });
        }
        if let Some(client) = conn.client.take() {
            let will = if normal && client.normal_disconnect {
                None
            } else {
                client.will
            };
            tracing::debug!(client_id = %client.client_id, normal, "disconnected");
            self.broker
                .detach(&client.session, conn.id, will, &mut self.notifier);
        }
    }

    /// Between reads: hands out the wake-ups collected so far and drains this reactor's ready
    /// sessions, so subscribers are fed while publishers are still being read (fairness under
    /// overload: a turn never reads megabytes before writing anything).
    fn service(&mut self) {
        self.wake_owners();
        for owner in std::mem::take(&mut self.ready) {
            self.drain(owner);
        }
    }

    /// Sends the collected wake-ups: this reactor's own go to `ready`, others' to their inbox.
    fn wake_owners(&mut self) {
        if self.notifier.owners.is_empty() {
            return;
        }
        let owners = std::mem::take(&mut self.notifier.owners);
        let mut per: Vec<Vec<ConnRef>> = vec![Vec::new(); self.all.len()];
        for o in owners {
            if o.reactor() == self.idx {
                self.ready.push(o);
            } else if let Some(v) = per.get_mut(o.reactor()) {
                v.push(o);
            }
        }
        for (r, owners) in per.into_iter().enumerate() {
            if !owners.is_empty() {
                self.all[r].post(|inbox| inbox.ready.extend(owners));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory per idle connection: a `Conn` (and the `Client` inside it) must not grow unnoticed.
    /// A connection took 464 bytes before the typed identifiers and 448 with them (x86-64).
    #[test]
    fn a_connection_stays_small() {
        assert!(
            size_of::<Conn>() <= 448,
            "Conn is {} bytes",
            size_of::<Conn>()
        );
        assert!(
            size_of::<PendingAck>() <= 96,
            "PendingAck is {} bytes",
            size_of::<PendingAck>()
        );
    }
}
