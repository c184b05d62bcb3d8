//! A reactor thread: one mio `Poll` owning its connections. Each loop turn reads every ready
//! socket (up to a budget), decodes and handles the packets, drains the session queues of the
//! connections that have something to send, writes, and only then wakes the other reactors
//! whose connections received messages — once per reactor, not once per message.
//!
//! Backpressure: a connection whose unwritten output passes `max_output_bytes` is not fed from
//! its session queue (the queue absorbs it, bounded) and is not read from either (a client that
//! does not read its acknowledgements cannot make the broker buffer them without bound).
//! Keep-alive and CONNECT deadlines run on a timer wheel with one-second slots.

mod conn;
mod connect;
mod drain;
mod holds;
mod packets;
mod timers;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mast_protocol::ProtocolVersion;
use mast_protocol::disconnect::Disconnect;
use mast_protocol::packet::Packet;
use mast_protocol::reason::ReasonCode;
use mio::{Events, Interest, Poll, Token, Waker};

use super::broker::{Broker, Notifier};
use super::hooks::{ClientEvents, EndReason, Hold, HoldOutcome, PublishHook, ReadControl};
use super::ids::{AckTokens, Committed, ConnRef};
use super::metrics::Local;
use super::transport::Transport;

use conn::Conn;

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
    /// Connections whose first acknowledgement waits for a commit alone (visited when the
    /// commit moves).
    waiting: Vec<ConnRef>,
    /// Connections a hold of which completed (visited in this turn). A connection whose first
    /// acknowledgement waits for a hold is in neither list: its completion puts it here.
    touched: Vec<ConnRef>,
    /// Numbers `release_acks` rounds, so a connection in both lists is visited once.
    round: u64,
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
            touched: Vec::new(),
            round: 0,
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
            self.collect_holds();
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
            let moved = committed != last_committed;
            if moved || !self.touched.is_empty() {
                last_committed = committed;
                self.release_acks(committed, moved);
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
        for l in self.notifier.links.drain(..) {
            l.wake();
        }
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
