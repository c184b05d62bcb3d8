//! A non-blocking MQTT client connection driven by a mio `Poll`: enough protocol for load
//! generation (CONNECT, PUBLISH at QoS 0/1/2 with a window of unacknowledged messages,
//! SUBSCRIBE, acknowledging what it receives), built on the `mast-protocol` codec; and the
//! loops that open many of them on one poll ([`connect_all`]) and drive them ([`pump`]).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU16;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mast_protocol::ProtocolVersion;
use mast_protocol::ack::PubResp;
use mast_protocol::connect::{Connect, QoS};
use mast_protocol::packet::{self, Packet};
use mast_protocol::primitives::Utf8;
use mast_protocol::properties::Properties;
use mast_protocol::publish::{Delivery, PacketId, Publish};
use mast_protocol::reason::ReasonCode;
use mast_protocol::subscribe::{Subscribe, Subscription, SubscriptionOptions};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::stats::Errors;

/// Connection settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) version: ProtocolVersion,
    pub(crate) keep_alive: u16,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) clean_start: bool,
    /// TLS: the server name, and the client configuration of each connection (by its ordinal,
    /// modulo their number: one per device certificate, or one shared).
    pub(crate) tls: Option<Tls>,
}

/// TLS settings of a run.
#[derive(Debug, Clone)]
pub(crate) struct Tls {
    pub(crate) server_name: rustls::pki_types::ServerName<'static>,
    pub(crate) configs: std::sync::Arc<Vec<std::sync::Arc<rustls::ClientConfig>>>,
}

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Connecting,
    Connected,
    Refused(u8),
    Closed,
}

/// Something the connection saw.
#[derive(Debug)]
pub(crate) enum Event {
    /// CONNACK (success) arrived this many microseconds after the TCP connect started.
    Connected(u64),
    /// A PUBLISH arrived (payload for latency stamps).
    Message { topic: Utf8, payload: Bytes },
    /// The QoS 1/2 publish with packet id `id` completed after `us` microseconds.
    Acked { us: u64, id: u16 },
    /// SUBACK arrived (every filter granted).
    Subscribed,
    /// The connection did not come up: CONNACK refused it (`"connack 0x86 bad user name or
    /// password"`) or the handshake failed (`"connect: Connection refused"`).
    Refused(String),
    /// The broker refused something: `"puback 0x97 quota exceeded"`, `"suback 0x87 not
    /// authorized"`, `"disconnect 0x8e session taken over"`.
    Error(String),
}

/// `"connack 0x86 bad user name or password"`.
pub(crate) fn reason_text(packet: &str, r: ReasonCode) -> String {
    format!("{packet} 0x{:02x} {}", r.0, r.name())
}

/// One connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    /// TLS over `stream`, when the run uses it.
    tls: Option<Box<rustls::ClientConnection>>,
    pub(crate) phase: Phase,
    version: ProtocolVersion,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    wpos: usize,
    pub(crate) write_blocked: bool,
    next_id: u16,
    inflight: HashMap<u16, Instant>,
    /// PINGREQs out without their PINGRESP.
    pings_out: u32,
    /// When the TCP connect started.
    opened: Instant,
    /// The broker's Receive Maximum (MQTT 5 CONNACK): at most this many QoS 1/2 in flight.
    pub(crate) receive_maximum: usize,
}

impl Conn {
    /// Starts connecting (from `source` when given: one of several loopback addresses lets a
    /// run open more than one address's ephemeral ports) and queues CONNECT.
    pub(crate) fn open(
        addr: SocketAddr,
        source: Option<IpAddr>,
        client_id: &str,
        ordinal: usize,
        s: &Settings,
    ) -> io::Result<Conn> {
        let tls = match &s.tls {
            None => None,
            Some(t) => {
                let cfg = std::sync::Arc::clone(&t.configs[ordinal % t.configs.len()]);
                let c = rustls::ClientConnection::new(cfg, t.server_name.clone())
                    .map_err(io::Error::other)?;
                Some(Box::new(c))
            }
        };
        let stream = match source {
            None => TcpStream::connect(addr)?,
            Some(ip) => {
                use socket2::{Domain, Socket, Type};
                let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
                sock.set_nonblocking(true)?;
                sock.bind(&SocketAddr::new(ip, 0).into())?;
                match sock.connect(&addr.into()) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc_einprogress()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                TcpStream::from_std(sock.into())
            }
        };
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            tls,
            phase: Phase::Connecting,
            version: s.version,
            rbuf: BytesMut::new(),
            wbuf: Vec::new(),
            wpos: 0,
            write_blocked: true,
            next_id: 0,
            inflight: HashMap::new(),
            pings_out: 0,
            opened: Instant::now(),
            receive_maximum: usize::from(u16::MAX),
        };
        let connect = Connect {
            version: s.version,
            clean_start: s.clean_start,
            keep_alive: s.keep_alive,
            properties: Properties::default(),
            client_id: Utf8::new(client_id),
            will: None,
            username: s.username.as_deref().map(Utf8::new),
            password: s
                .password
                .as_ref()
                .map(|p| Bytes::copy_from_slice(p.as_bytes())),
        };
        packet::encode(&Packet::Connect(Box::new(connect)), s.version, &mut c.wbuf);
        Ok(c)
    }

    /// A PINGREQ is out without its PINGRESP (the broker answers in order: once none is,
    /// everything written before the last PINGREQ has been read).
    pub(crate) fn ping_pending(&self) -> bool {
        self.pings_out > 0
    }

    /// Unacknowledged QoS 1/2 publishes.
    pub(crate) fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Bytes queued, not written (TLS records count as one).
    pub(crate) fn pending(&self) -> usize {
        let tls = self.tls.as_ref().is_some_and(|t| t.wants_write());
        self.wbuf.len() - self.wpos + usize::from(tls)
    }

    /// Queues a SUBSCRIBE.
    pub(crate) fn subscribe(&mut self, filter: &str, qos: QoS) {
        let id = self.take_id();
        let s = Subscribe {
            packet_id: id,
            properties: Properties::default(),
            subscriptions: vec![Subscription {
                filter: Utf8::new(filter),
                options: SubscriptionOptions::new(qos),
            }],
        };
        packet::encode(&Packet::Subscribe(s), self.version, &mut self.wbuf);
    }

    fn take_id(&mut self) -> PacketId {
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            if let Some(id) = NonZeroU16::new(self.next_id)
                && !self.inflight.contains_key(&id.get())
            {
                return PacketId(id);
            }
        }
    }

    /// Queues a PUBLISH; returns its packet id at QoS 1/2.
    pub(crate) fn publish(
        &mut self,
        topic: &Utf8,
        payload: Bytes,
        qos: u8,
        retain: bool,
    ) -> Option<u16> {
        let mut packet_id = None;
        let delivery = match qos {
            0 => Delivery::AtMostOnce,
            1 | 2 => {
                let id = self.take_id();
                self.inflight.insert(id.0.get(), Instant::now());
                packet_id = Some(id.0.get());
                if qos == 1 {
                    Delivery::AtLeastOnce(id)
                } else {
                    Delivery::ExactlyOnce(id)
                }
            }
            _ => Delivery::AtMostOnce,
        };
        let p = Publish {
            dup: false,
            delivery,
            retain,
            topic: topic.clone(),
            properties: Properties::default(),
            payload,
        };
        packet::encode(&Packet::Publish(p), self.version, &mut self.wbuf);
        packet_id
    }

    /// Writes what is queued until the socket would block.
    pub(crate) fn flush(&mut self) -> io::Result<usize> {
        if self.tls.is_some() {
            return self.flush_tls();
        }
        let mut n = 0;
        while self.wpos < self.wbuf.len() {
            match self.stream.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => {
                    self.wpos += k;
                    n += k;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.write_blocked = true;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    self.write_blocked = true;
                    return Ok(n);
                }
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(n)
    }

    /// TLS: the queued packets into the session (buffered until the handshake is done), then
    /// its records to the socket until it would block.
    fn flush_tls(&mut self) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(0);
        };
        while self.wpos < self.wbuf.len() {
            match tls.writer().write(&self.wbuf[self.wpos..]) {
                Ok(0) => break,
                Ok(k) => self.wpos += k,
                Err(e) => return Err(e),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
        let mut n = 0;
        while tls.wants_write() {
            match tls.write_tls(&mut self.stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => n += k,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::NotConnected =>
                {
                    self.write_blocked = true;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// TLS: reads records until the socket would block, into `rbuf` as plaintext; true at the
    /// end of the stream. What the session then has to say (the handshake's next flight,
    /// acknowledgements) is written at once.
    fn read_tls(&mut self, chunk: &mut [u8], total: &mut usize) -> io::Result<bool> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(false);
        };
        let mut eof = false;
        loop {
            let blocked = match tls.read_tls(&mut self.stream) {
                Ok(0) => {
                    eof = true;
                    false
                }
                Ok(n) => {
                    *total += n;
                    false
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let state = tls
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")))?;
            if state.plaintext_bytes_to_read() > 0 {
                loop {
                    match tls.reader().read(chunk) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(k) => self.rbuf.extend_from_slice(&chunk[..k]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            if state.peer_has_closed() {
                eof = true;
            }
            if eof || blocked {
                break;
            }
        }
        self.flush_tls()?;
        Ok(eof)
    }

    /// Queues a PINGREQ. The broker answers packets of a connection in order, so its PINGRESP
    /// says everything sent before it has been read (a QoS 0 run is over only then).
    pub(crate) fn ping(&mut self) {
        packet::encode(&Packet::PingReq, self.version, &mut self.wbuf);
        self.pings_out += 1;
    }

    /// Reads and handles what arrived; `on` sees each event.
    pub(crate) fn read(&mut self, mut on: impl FnMut(Event)) -> io::Result<usize> {
        let mut total = 0;
        let mut eof = false;
        let mut chunk = [0u8; 64 * 1024];
        if self.tls.is_some() {
            eof = self.read_tls(&mut chunk, &mut total)?;
        }
        while self.tls.is_none() {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    total += n;
                    self.rbuf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        loop {
            let p = match packet::decode(&mut self.rbuf, self.version, u32::MAX >> 4) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            };
            match p {
                Packet::ConnAck(a) => {
                    if a.reason == ReasonCode::SUCCESS {
                        self.phase = Phase::Connected;
                        if let Some(m) = a.properties.receive_maximum {
                            self.receive_maximum = usize::from(m.max(1));
                        }
                        on(Event::Connected(self.opened.elapsed().as_micros() as u64));
                    } else {
                        self.phase = Phase::Refused(a.reason.0);
                        on(Event::Refused(reason_text("connack", a.reason)));
                    }
                }
                Packet::PubAck(a) | Packet::PubComp(a) => {
                    let id = a.packet_id.0.get();
                    if let Some(t) = self.inflight.remove(&id) {
                        if a.reason.0 >= 0x80 {
                            on(Event::Error(reason_text("puback", a.reason)));
                        } else {
                            on(Event::Acked {
                                us: t.elapsed().as_micros() as u64,
                                id,
                            });
                        }
                    }
                }
                Packet::PubRec(a) if a.reason.0 >= 0x80 => {
                    // The flow ends at a failed PUBREC (§4.3.3): no PUBREL.
                    self.inflight.remove(&a.packet_id.0.get());
                    on(Event::Error(reason_text("pubrec", a.reason)));
                }
                Packet::PubRec(a) => {
                    packet::encode(
                        &Packet::PubRel(PubResp::new(a.packet_id)),
                        self.version,
                        &mut self.wbuf,
                    );
                }
                Packet::PubRel(a) => {
                    packet::encode(
                        &Packet::PubComp(PubResp::new(a.packet_id)),
                        self.version,
                        &mut self.wbuf,
                    );
                }
                Packet::Publish(p) => {
                    match p.delivery {
                        Delivery::AtMostOnce => {}
                        Delivery::AtLeastOnce(id) => packet::encode(
                            &Packet::PubAck(PubResp::new(id)),
                            self.version,
                            &mut self.wbuf,
                        ),
                        Delivery::ExactlyOnce(id) => packet::encode(
                            &Packet::PubRec(PubResp::new(id)),
                            self.version,
                            &mut self.wbuf,
                        ),
                    }
                    on(Event::Message {
                        topic: p.topic,
                        payload: p.payload,
                    });
                }
                Packet::SubAck(a) => match a.reasons.iter().find(|r| r.0 >= 0x80) {
                    Some(&r) => on(Event::Error(reason_text("suback", r))),
                    None => on(Event::Subscribed),
                },
                Packet::PingResp => self.pings_out = self.pings_out.saturating_sub(1),
                Packet::Disconnect(d) if self.phase == Phase::Connecting => {
                    self.phase = Phase::Refused(d.reason.0);
                    on(Event::Refused(reason_text("disconnect", d.reason)));
                }
                Packet::Disconnect(d) => {
                    self.phase = Phase::Closed;
                    on(Event::Error(reason_text("disconnect", d.reason)));
                }
                _ => {}
            }
        }
        // The end of the stream counts after the packets before it (a refusing CONNACK, a
        // DISCONNECT with its reason).
        if eof {
            match self.phase {
                Phase::Connecting => {
                    self.phase = Phase::Refused(0);
                    on(Event::Refused("connect: closed before CONNACK".into()));
                }
                Phase::Connected => {
                    self.phase = Phase::Closed;
                    on(Event::Error("connection closed by the broker".into()));
                }
                Phase::Refused(_) | Phase::Closed => {}
            }
        }
        Ok(total)
    }
}

/// `EINPROGRESS`: a non-blocking connect under way (115 on Linux, 36 on the BSDs and macOS).
fn libc_einprogress() -> i32 {
    if cfg!(any(target_os = "linux", target_os = "android")) {
        115
    } else {
        36
    }
}

/// A connection opened by [`connect_all`] and the number it was opened for.
pub(crate) struct Opened {
    pub(crate) conns: Vec<Conn>,
    /// For each of `conns`, the index into the `ids` it was opened for.
    pub(crate) index: Vec<usize>,
    pub(crate) errors: Errors,
    /// CONNECT → CONNACK, microseconds.
    pub(crate) connect_us: crate::stats::Hist,
}

/// How connections are opened: where to, with what, from which source addresses, and at what
/// pace (the n-th connection of the whole run starts `gap × n` after `t0`, whichever thread
/// opens it).
#[derive(Debug, Clone)]
pub(crate) struct Dial {
    pub(crate) addr: SocketAddr,
    pub(crate) settings: Settings,
    pub(crate) sources: Vec<IpAddr>,
    pub(crate) gap: Duration,
    /// A handshake with no CONNACK after this long has failed.
    pub(crate) connect_timeout: Duration,
    pub(crate) t0: Instant,
}

/// At most this many handshakes of one thread under way at once (keeps the listen backlog of
/// the broker from overflowing when no pace is set).
const HANDSHAKES: usize = 256;

/// PINGREQs on every connection that is up, at half the keep-alive: a broker drops a client
/// silent for 1.5 × keep-alive, and idle connections, subscribers that only receive and
/// connections waiting for the rest of a ramp-up send nothing else. Several PINGREQs may be out
/// at once (one waiting to be read is no reason to skip the next).
pub(crate) struct KeepAlive {
    /// Zero: keep-alive off.
    every: Duration,
    next: Instant,
}

impl KeepAlive {
    pub(crate) fn new(keep_alive_secs: u16) -> KeepAlive {
        let every = Duration::from_millis(u64::from(keep_alive_secs) * 500);
        KeepAlive {
            every,
            next: Instant::now() + every,
        }
    }

    /// Queues and writes a PINGREQ on each connected connection when one is due; a connection
    /// that cannot be written to is marked closed.
    pub(crate) fn tick(&mut self, conns: &mut [Conn]) {
        let now = Instant::now();
        if self.every.is_zero() || now < self.next {
            return;
        }
        self.next = now + self.every;
        for c in conns.iter_mut() {
            if c.phase == Phase::Connected {
                c.ping();
                if c.flush().is_err() {
                    c.phase = Phase::Closed;
                }
            }
        }
    }
}

/// The state of a ramp-up: what is counted while connections open.
struct Ramp {
    errors: Errors,
    connect_us: crate::stats::Hist,
    /// Handshakes under way.
    waiting: usize,
    keep_alive: KeepAlive,
    connect_timeout: Duration,
}

impl Ramp {
    fn on(&mut self, e: Event) {
        match e {
            Event::Connected(us) => {
                self.connect_us.record(us);
                self.waiting -= 1;
            }
            Event::Refused(r) => {
                self.errors.add(r);
                self.waiting -= 1;
            }
            Event::Error(r) => self.errors.add(r),
            _ => {}
        }
    }

    /// One round: handshakes move on, late ones fail, connections already up get their
    /// keep-alive PINGREQ (a long ramp must not lose its first connections).
    fn step(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        conns: &mut [Conn],
        wait: Duration,
    ) -> anyhow::Result<()> {
        pump_connecting(poll, events, conns, wait, &mut |e| self.on(e))?;
        let now = Instant::now();
        for c in conns.iter_mut() {
            if c.phase == Phase::Connecting && now.duration_since(c.opened) > self.connect_timeout {
                c.phase = Phase::Refused(0);
                self.on(Event::Refused("connect: no CONNACK in time".into()));
            }
        }
        self.keep_alive.tick(conns);
        Ok(())
    }
}

/// Opens a connection for each `(ordinal, client id)` in `ids` (ordinal = its place in the
/// whole run, for pacing and the source address) on `poll`, and waits for the CONNACKs.
/// Connections that fail are counted in `errors` by reason and left out; a handshake fails
/// after `dial.connect_timeout` of its own.
pub(crate) fn connect_all(
    poll: &mut Poll,
    dial: &Dial,
    ids: &[(usize, String)],
) -> anyhow::Result<Opened> {
    let mut conns: Vec<Conn> = Vec::with_capacity(ids.len());
    let mut index = Vec::with_capacity(ids.len());
    let mut events = Events::with_capacity(1024);
    let mut ramp = Ramp {
        errors: Errors::default(),
        connect_us: crate::stats::Hist::default(),
        waiting: 0,
        keep_alive: KeepAlive::new(dial.settings.keep_alive),
        connect_timeout: dial.connect_timeout,
    };
    for (k, (ordinal, client_id)) in ids.iter().enumerate() {
        let due = dial.t0 + dial.gap.saturating_mul(*ordinal as u32);
        loop {
            let now = Instant::now();
            if now >= due && ramp.waiting < HANDSHAKES {
                break;
            }
            // Block for events (at least 1 ms), never spin.
            let wait = due
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), Duration::from_millis(5));
            ramp.step(poll, &mut events, &mut conns, wait)?;
        }
        let source = (!dial.sources.is_empty()).then(|| dial.sources[ordinal % dial.sources.len()]);
        match Conn::open(dial.addr, source, client_id, *ordinal, &dial.settings) {
            Ok(mut c) => {
                poll.registry().register(
                    &mut c.stream,
                    Token(conns.len()),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                conns.push(c);
                index.push(k);
                ramp.waiting += 1;
            }
            Err(e) => ramp.errors.add(format!("connect: {e}")),
        }
    }
    while ramp.waiting > 0 {
        ramp.step(poll, &mut events, &mut conns, Duration::from_millis(10))?;
    }
    // Keep only the connected ones; tokens are renumbered to their new places.
    let mut kept = Opened {
        conns: Vec::with_capacity(conns.len()),
        index: Vec::with_capacity(conns.len()),
        errors: ramp.errors,
        connect_us: ramp.connect_us,
    };
    for (mut c, k) in conns.into_iter().zip(index) {
        match c.phase {
            Phase::Connected => {
                poll.registry().reregister(
                    &mut c.stream,
                    Token(kept.conns.len()),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                kept.conns.push(c);
                kept.index.push(k);
            }
            Phase::Connecting | Phase::Refused(_) | Phase::Closed => {
                if c.phase == Phase::Closed {
                    kept.errors
                        .add("connection closed by the broker during the ramp-up");
                }
                let _ = poll.registry().deregister(&mut c.stream);
            }
        }
    }
    Ok(kept)
}

/// A poll round while handshakes are under way: a socket error is a failed connection, not a
/// failed run. Connections already up are read too (PINGRESP, a DISCONNECT).
fn pump_connecting(
    poll: &mut Poll,
    events: &mut Events,
    conns: &mut [Conn],
    timeout: Duration,
    on: &mut impl FnMut(Event),
) -> anyhow::Result<()> {
    poll.poll(events, Some(timeout))?;
    for ev in events.iter() {
        let Some(c) = conns.get_mut(ev.token().0) else {
            continue;
        };
        match c.phase {
            Phase::Connecting => {
                if ev.is_writable() {
                    c.write_blocked = false;
                    if let Err(e) = c.flush() {
                        c.phase = Phase::Refused(0);
                        on(Event::Refused(format!("connect: {e}")));
                        continue;
                    }
                }
                if (ev.is_readable() || ev.is_read_closed() || ev.is_error())
                    && let Err(e) = c.read(&mut *on)
                    && c.phase == Phase::Connecting
                {
                    c.phase = Phase::Refused(0);
                    on(Event::Refused(format!("connect: {e}")));
                }
            }
            Phase::Connected => {
                if ev.is_writable() {
                    c.write_blocked = false;
                }
                if (ev.is_readable() || ev.is_read_closed()) && c.read(&mut *on).is_err() {
                    c.phase = Phase::Closed;
                }
            }
            Phase::Refused(_) | Phase::Closed => {}
        }
    }
    Ok(())
}

/// One poll round: reads, flushes. A connection that fails is marked closed and reported as
/// an error event, not as a failed run.
pub(crate) fn pump(
    poll: &mut Poll,
    events: &mut Events,
    conns: &mut [Conn],
    timeout: Duration,
    on: &mut impl FnMut(usize, Event),
) -> anyhow::Result<()> {
    poll.poll(events, Some(timeout))?;
    for ev in events.iter() {
        let k = ev.token().0;
        let Some(c) = conns.get_mut(k) else { continue };
        if ev.is_writable() {
            c.write_blocked = false;
        }
        if (ev.is_readable() || ev.is_read_closed())
            && c.phase == Phase::Connected
            && let Err(e) = c.read(|e| on(k, e))
        {
            c.phase = Phase::Closed;
            on(k, Event::Error(format!("read: {e}")));
        }
    }
    for (k, c) in conns.iter_mut().enumerate() {
        if c.phase == Phase::Connected
            && !c.write_blocked
            && c.pending() > 0
            && let Err(e) = c.flush()
        {
            c.phase = Phase::Closed;
            on(k, Event::Error(format!("write: {e}")));
        }
    }
    Ok(())
}

/// Subscribes connection `k` to `filters(k)` at QoS 1, for every connection, and waits for
/// the SUBACKs (at most 120 s).
pub(crate) fn subscribe_all(
    poll: &mut Poll,
    conns: &mut [Conn],
    filters: impl Fn(usize) -> Vec<String>,
) -> anyhow::Result<()> {
    let mut waiting = 0;
    for (k, c) in conns.iter_mut().enumerate() {
        for f in filters(k) {
            c.subscribe(&f, QoS::AtLeastOnce);
            waiting += 1;
        }
        c.flush()?;
    }
    let mut errors = Errors::default();
    let mut events = Events::with_capacity(1024);
    let until = Instant::now() + Duration::from_secs(120);
    while waiting > 0 {
        anyhow::ensure!(
            Instant::now() < until,
            "{waiting} SUBACKs did not come in 120 s"
        );
        pump(
            poll,
            &mut events,
            conns,
            Duration::from_millis(5),
            &mut |_, e| match e {
                Event::Subscribed => waiting -= 1,
                Event::Error(r) | Event::Refused(r) => errors.add(r),
                _ => {}
            },
        )?;
        anyhow::ensure!(errors.total() == 0, "subscribing failed: {}", errors.text());
    }
    Ok(())
}

/// A fleet run of the device verbs (`shadow`, `ota`): what each worker thread was given.
pub(crate) struct Fleet<'a> {
    pub(crate) dial: &'a Dial,
    pub(crate) threads: usize,
    pub(crate) devices: usize,
    /// Client ids are `{prefix}_{i}`.
    pub(crate) prefix: &'a str,
    pub(crate) label: &'static str,
    pub(crate) shown: crate::stats::Shown,
    pub(crate) planned: Duration,
}

impl Fleet<'_> {
    /// Each worker thread connects its share of the devices, subscribes each to
    /// `filters(client id)` and waits for the others; then all run `work(poll, conns, names,
    /// counters)` at once while the meter prints. Each thread's result and how long it ran,
    /// and the meter's timeline.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        filters: fn(&str) -> Vec<String>,
        work: impl Fn(
            &mut Poll,
            &mut Vec<Conn>,
            &[(usize, String)],
            &crate::stats::Counters,
        ) -> anyhow::Result<T>
        + Send
        + Sync
        + 'static,
    ) -> anyhow::Result<(Vec<(T, Duration)>, crate::stats::Timeline)> {
        use std::sync::{Arc, Barrier};
        let groups = crate::opts::split(self.devices, self.threads);
        let counters = Arc::new(crate::stats::Counters::default());
        let ready = Arc::new(Barrier::new(groups.len() + 1));
        let start = Arc::new(Barrier::new(groups.len() + 1));
        let work = Arc::new(work);
        let mut handles = Vec::new();
        for ids in groups {
            let (dial, counters, ready, start, work) = (
                self.dial.clone(),
                Arc::clone(&counters),
                Arc::clone(&ready),
                Arc::clone(&start),
                Arc::clone(&work),
            );
            let prefix = self.prefix.to_owned();
            handles.push(std::thread::spawn(
                move || -> anyhow::Result<(T, Duration)> {
                    let mut poll = Poll::new()?;
                    let names: Vec<(usize, String)> =
                        ids.iter().map(|&i| (i, format!("{prefix}_{i}"))).collect();
                    let opened = connect_all(&mut poll, &dial, &names);
                    let subscribed = opened.and_then(|o| {
                        anyhow::ensure!(
                            o.conns.len() == ids.len(),
                            "{} of {} devices could not connect: {}",
                            ids.len() - o.conns.len(),
                            ids.len(),
                            o.errors.text()
                        );
                        let mut conns = o.conns;
                        subscribe_all(&mut poll, &mut conns, |k| filters(&names[k].1))?;
                        Ok(conns)
                    });
                    ready.wait();
                    start.wait();
                    let mut conns = subscribed?;
                    let t0 = Instant::now();
                    let t = work(&mut poll, &mut conns, &names, &counters)?;
                    Ok((t, t0.elapsed()))
                },
            ));
        }
        ready.wait();
        let meter = crate::stats::Meter::start(
            self.label,
            Arc::clone(&counters),
            self.shown,
            Some(self.planned),
        );
        start.wait();
        let worked = crate::opts::join_workers(handles, "device");
        let timeline = meter.finish();
        Ok((worked?, timeline))
    }
}
