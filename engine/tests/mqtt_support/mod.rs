//! MQTT clients for the end-to-end tests: rumqttc (3.1.1 and 5.0), each connection driven by
//! its own thread, and a raw socket that speaks just enough MQTT to send what no real client
//! would. Waits skip events they are not looking for but keep incoming packets for later waits,
//! so a test sees every packet in arrival order whatever it waited for first.
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a test waits for something that must happen.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test watches for something that must not happen.
pub const QUIET: Duration = Duration::from_millis(400);

/// One connection's events, read by a thread that owns the rumqttc event loop. Dropping it
/// drops the socket without a DISCONNECT (an abrupt disconnect as far as the server can tell).
struct Pump<E, Er> {
    rx: mpsc::Receiver<Result<E, Er>>,
    kept: VecDeque<E>,
    /// The error that ended the connection.
    ended: Option<Er>,
    /// The event loop thread is gone.
    done: bool,
    abort: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Spawns the thread that polls `$eventloop` until it fails or the pump is dropped: a failed
/// poll is the end (no automatic reconnect; the tests reconnect explicitly).
macro_rules! pump {
    ($eventloop:expr) => {{
        let mut eventloop = $eventloop;
        let (tx, rx) = mpsc::channel();
        let (abort, mut abort_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut abort_rx => break,
                        ev = eventloop.poll() => {
                            let end = ev.is_err();
                            if tx.send(ev).is_err() || end {
                                break;
                            }
                        }
                    }
                }
            });
        });
        Pump {
            rx,
            kept: VecDeque::new(),
            ended: None,
            done: false,
            abort: Some(abort),
            thread: Some(thread),
        }
    }};
}

impl<E, Er: std::fmt::Debug> Pump<E, Er> {
    /// The first event `f` accepts within `timeout`, earlier kept ones first. Events `f`
    /// rejects are kept when `keep` says so, else dropped.
    fn wait(
        &mut self,
        timeout: Duration,
        mut f: impl FnMut(&E) -> bool,
        keep: impl Fn(&E) -> bool,
    ) -> Option<E> {
        if let Some(i) = self.kept.iter().position(&mut f) {
            return self.kept.remove(i);
        }
        let deadline = Instant::now() + timeout;
        while !self.done {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Ok(e)) if f(&e) => return Some(e),
                Ok(Ok(e)) => {
                    if keep(&e) {
                        self.kept.push_back(e);
                    }
                }
                Ok(Err(er)) => {
                    self.ended = Some(er);
                    self.done = true;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => return None,
                Err(mpsc::RecvTimeoutError::Disconnected) => self.done = true,
            }
        }
        None
    }

    /// Waits up to `timeout` for the connection to end; the error that ended it.
    fn wait_end(&mut self, timeout: Duration) -> Option<&Er> {
        let deadline = Instant::now() + timeout;
        while !self.done && Instant::now() < deadline {
            let _ = self.wait(
                deadline.saturating_duration_since(Instant::now()),
                |_| false,
                |_| true,
            );
        }
        assert!(self.done, "the connection did not end within {timeout:?}");
        self.ended.as_ref()
    }
}

impl<E, Er> Drop for Pump<E, Er> {
    fn drop(&mut self) {
        if let Some(a) = self.abort.take() {
            let _ = a.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How a client connects, the same for both protocol versions: each module's `Client`,
/// `MqttOptions`, `AsyncClient`, `Event`, `Packet`, `ConnectionError`, `options` and `incoming`
/// are the version's own.
/// The client and its default options, the same for both protocol versions: each module's
/// `AsyncClient`, `ConnAck`, `Event`, `ConnectionError` and `MqttOptions` are the version's own.
macro_rules! client_type {
    ($doc:literal) => {
        #[doc = $doc]
        pub struct Client {
            pub client: AsyncClient,
            pump: Pump<Event, ConnectionError>,
            /// The CONNACK the server answered with.
            pub connack: ConnAck,
        }

        /// Options with a test-friendly keep alive.
        pub fn options(port: u16, id: &str) -> MqttOptions {
            let mut o = MqttOptions::new(id, "127.0.0.1", port);
            o.set_keep_alive(Duration::from_secs(30));
            o
        }
    };
}

macro_rules! connect_methods {
    () => {
        pub fn connect(port: u16, id: &str) -> Client {
            Client::connect_with(options(port, id))
        }

        pub fn connect_with(o: MqttOptions) -> Client {
            Client::try_connect(o).unwrap_or_else(|e| panic!("CONNECT refused: {e:?}"))
        }

        /// Connects; the error when the server refuses (rumqttc reports the CONNACK code).
        pub fn try_connect(o: MqttOptions) -> Result<Client, Box<ConnectionError>> {
            let (client, eventloop) = AsyncClient::new(o, 1000);
            let mut pump = pump!(eventloop);
            match pump.wait(
                WAIT,
                |e| matches!(e, Event::Incoming(Packet::ConnAck(_))),
                incoming,
            ) {
                Some(Event::Incoming(Packet::ConnAck(connack))) => Ok(Client {
                    client,
                    pump,
                    connack,
                }),
                _ => Err(Box::new(
                    pump.ended.take().expect("no CONNACK and no error"),
                )),
            }
        }
    };
}

/// What a client does with what arrives, the same for both protocol versions: each module's
/// `Event`, `Packet`, `Publish`, `ConnectionError` and `incoming` are the version's own.
macro_rules! receive_methods {
    () => {
        /// The next incoming packet `f` accepts (panics after [`WAIT`]).
        pub fn wait_packet(&mut self, f: impl Fn(&Packet) -> bool) -> Packet {
            match self
                .pump
                .wait(WAIT, |e| matches!(e, Event::Incoming(p) if f(p)), incoming)
            {
                Some(Event::Incoming(p)) => p,
                _ => panic!(
                    "expected packet did not arrive; connection ended with {:?}",
                    self.pump.ended
                ),
            }
        }

        /// The next PUBLISH within `timeout`.
        pub fn recv_within(&mut self, timeout: Duration) -> Option<Publish> {
            match self.pump.wait(
                timeout,
                |e| matches!(e, Event::Incoming(Packet::Publish(_))),
                incoming,
            ) {
                Some(Event::Incoming(Packet::Publish(p))) => Some(p),
                _ => None,
            }
        }

        /// The next PUBLISH (panics after [`WAIT`]).
        pub fn recv(&mut self) -> Publish {
            self.recv_within(WAIT).unwrap_or_else(|| {
                panic!(
                    "no PUBLISH arrived; connection ended with {:?}",
                    self.pump.ended
                )
            })
        }

        /// Asserts no PUBLISH arrives for `d`.
        pub fn assert_silent(&mut self, d: Duration) {
            if let Some(p) = self.recv_within(d) {
                panic!("unexpected PUBLISH {p:?}");
            }
        }

        /// Waits for the server to end the connection; the error it ended with.
        pub fn wait_end(&mut self, timeout: Duration) -> Option<&ConnectionError> {
            self.pump.wait_end(timeout)
        }

        /// DISCONNECT (reason 0) and wait for the connection to close.
        pub fn disconnect(mut self) {
            self.client.try_disconnect().unwrap();
            self.pump.wait_end(WAIT);
        }

        /// Drops the socket without DISCONNECT.
        pub fn drop_abruptly(self) {
            drop(self);
        }
    };
}

/// MQTT 5.0 through rumqttc.
pub mod v5 {
    use super::*;
    pub use rumqttc::v5::mqttbytes::QoS;
    pub use rumqttc::v5::mqttbytes::v5::{
        ConnAck, ConnectReturnCode, DisconnectReasonCode, Filter, LastWill, LastWillProperties,
        Packet, PubAckReason, PubRecReason, Publish, PublishProperties, RetainForwardRule, SubAck,
        SubscribeProperties, SubscribeReasonCode,
    };
    pub use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions, StateError};

    client_type!("A connected 5.0 client.");

    /// Options for a session that outlives its connection.
    pub fn persistent(port: u16, id: &str, expiry_secs: u32) -> MqttOptions {
        let mut o = options(port, id);
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(expiry_secs));
        o
    }

    fn incoming(e: &Event) -> bool {
        matches!(e, Event::Incoming(p) if !matches!(p, Packet::PingResp(_)))
    }

    impl Client {
        connect_methods!();

        /// Subscribes to filters with options and properties in one SUBSCRIBE; the SUBACK.
        pub fn subscribe_with(
            &mut self,
            filters: Vec<Filter>,
            props: Option<SubscribeProperties>,
        ) -> SubAck {
            match props {
                Some(p) => self.client.try_subscribe_many_with_properties(filters, p),
                None => self.client.try_subscribe_many(filters),
            }
            .unwrap();
            match self.wait_packet(|p| matches!(p, Packet::SubAck(_))) {
                Packet::SubAck(a) => a,
                _ => unreachable!(),
            }
        }

        /// Subscribes to one filter; its SUBACK reason code.
        pub fn subscribe(&mut self, filter: &str, qos: QoS) -> SubscribeReasonCode {
            self.subscribe_with(vec![Filter::new(filter, qos)], None)
                .return_codes[0]
        }

        /// Publishes and waits for the flow to finish (written for QoS 0, PUBACK for QoS 1,
        /// PUBCOMP for QoS 2); the PUBACK reason for QoS 1.
        pub fn publish_with(
            &mut self,
            topic: &str,
            qos: QoS,
            retain: bool,
            payload: &[u8],
            props: Option<PublishProperties>,
        ) -> Option<PubAckReason> {
            let payload = payload.to_vec();
            match props {
                Some(p) => self
                    .client
                    .try_publish_with_properties(topic, qos, retain, payload, p),
                None => self.client.try_publish(topic, qos, retain, payload),
            }
            .unwrap();
            match qos {
                QoS::AtMostOnce => {
                    let sent = self.pump.wait(
                        WAIT,
                        |e| matches!(e, Event::Outgoing(rumqttc::Outgoing::Publish(_))),
                        incoming,
                    );
                    assert!(sent.is_some(), "PUBLISH not written: {:?}", self.pump.ended);
                    None
                }
                QoS::AtLeastOnce => match self.wait_packet(|p| matches!(p, Packet::PubAck(_))) {
                    Packet::PubAck(a) => Some(a.reason),
                    _ => unreachable!(),
                },
                QoS::ExactlyOnce => {
                    self.wait_packet(|p| matches!(p, Packet::PubComp(_)));
                    None
                }
            }
        }

        pub fn publish(
            &mut self,
            topic: &str,
            qos: QoS,
            retain: bool,
            payload: &[u8],
        ) -> Option<PubAckReason> {
            self.publish_with(topic, qos, retain, payload, None)
        }

        /// Queues a publish without waiting for anything.
        pub fn publish_nowait(&self, topic: &str, qos: QoS, payload: &[u8]) {
            self.client
                .try_publish(topic, qos, false, payload.to_vec())
                .unwrap();
        }

        /// Waits for `n` acknowledgements of QoS 1 publishes.
        pub fn wait_pubacks(&mut self, n: usize) {
            for i in 0..n {
                let got = self.pump.wait(
                    WAIT,
                    |e| matches!(e, Event::Incoming(Packet::PubAck(_))),
                    incoming,
                );
                assert!(
                    got.is_some(),
                    "PUBACK {i} of {n} missing: {:?}",
                    self.pump.ended
                );
            }
        }

        receive_methods!();
    }

    /// A publish's topic as text.
    pub fn topic(p: &Publish) -> String {
        String::from_utf8(p.topic.to_vec()).unwrap()
    }

    /// A publish's properties (empty when it had none).
    pub fn props(p: &Publish) -> PublishProperties {
        p.properties.clone().unwrap_or_default()
    }
}

/// MQTT 3.1.1 through rumqttc.
pub mod v311 {
    use super::*;
    pub use rumqttc::{
        AsyncClient, ConnAck, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions,
        Packet, Publish, QoS, SubscribeFilter, SubscribeReasonCode,
    };

    client_type!("A connected 3.1.1 client.");

    /// Options for a persistent session (clean session = 0).
    pub fn persistent(port: u16, id: &str) -> MqttOptions {
        let mut o = options(port, id);
        o.set_clean_session(false);
        o
    }

    fn incoming(e: &Event) -> bool {
        matches!(e, Event::Incoming(p) if !matches!(p, Packet::PingResp))
    }

    impl Client {
        connect_methods!();

        pub fn subscribe_many(
            &mut self,
            filters: Vec<SubscribeFilter>,
        ) -> Vec<SubscribeReasonCode> {
            self.client.try_subscribe_many(filters).unwrap();
            match self.wait_packet(|p| matches!(p, Packet::SubAck(_))) {
                Packet::SubAck(a) => a.return_codes,
                _ => unreachable!(),
            }
        }

        pub fn subscribe(&mut self, filter: &str, qos: QoS) -> SubscribeReasonCode {
            self.subscribe_many(vec![SubscribeFilter::new(filter.into(), qos)])[0]
        }

        /// Publishes and waits for the flow to finish.
        pub fn publish(&mut self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) {
            self.client
                .try_publish(topic, qos, retain, payload.to_vec())
                .unwrap();
            let done = match qos {
                QoS::AtMostOnce => self.pump.wait(
                    WAIT,
                    |e| matches!(e, Event::Outgoing(rumqttc::Outgoing::Publish(_))),
                    incoming,
                ),
                QoS::AtLeastOnce => self.pump.wait(
                    WAIT,
                    |e| matches!(e, Event::Incoming(Packet::PubAck(_))),
                    incoming,
                ),
                QoS::ExactlyOnce => self.pump.wait(
                    WAIT,
                    |e| matches!(e, Event::Incoming(Packet::PubComp(_))),
                    incoming,
                ),
            };
            assert!(
                done.is_some(),
                "publish flow did not finish: {:?}",
                self.pump.ended
            );
        }

        receive_methods!();
    }
}

/// A plain socket and hand-made packets.
pub mod raw {
    use super::*;

    /// What a read found.
    #[derive(Debug, PartialEq, Eq)]
    pub enum Got {
        /// First byte of the fixed header and the body.
        Packet(u8, Vec<u8>),
        /// End of stream or reset.
        Closed,
        Timeout,
    }

    pub struct Raw {
        pub stream: TcpStream,
        buf: Vec<u8>,
    }

    /// Appends MQTT's variable byte integer.
    pub fn varint(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let mut b = (n % 128) as u8;
            n /= 128;
            if n > 0 {
                b |= 0x80;
            }
            out.push(b);
            if n == 0 {
                break;
            }
        }
    }

    /// A length-prefixed string (or binary field).
    pub fn string(s: &[u8]) -> Vec<u8> {
        let mut v = (s.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(s);
        v
    }

    /// A whole packet: first byte, remaining length, body.
    pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![first];
        varint(body.len(), &mut v);
        v.extend_from_slice(body);
        v
    }

    /// A v5 property block from raw property bytes.
    pub fn props(p: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        varint(p.len(), &mut v);
        v.extend_from_slice(p);
        v
    }

    /// CONNECT, clean start, no will or credentials; `level` 4 (3.1.1) or 5.
    pub fn connect(level: u8, id: &str, keep_alive: u16, v5_props: &[u8]) -> Vec<u8> {
        connect_flags(level, 0x02, id, keep_alive, v5_props)
    }

    /// CONNECT with the given connect flags (no will or credentials fields are written).
    pub fn connect_flags(
        level: u8,
        flags: u8,
        id: &str,
        keep_alive: u16,
        v5_props: &[u8],
    ) -> Vec<u8> {
        let mut b = string(b"MQTT");
        b.push(level);
        b.push(flags);
        b.extend_from_slice(&keep_alive.to_be_bytes());
        if level == 5 {
            b.extend(props(v5_props));
        }
        b.extend(string(id.as_bytes()));
        packet(0x10, &b)
    }

    /// SUBSCRIBE of one filter.
    pub fn subscribe(v5: bool, packet_id: u16, filter: &[u8], options: u8) -> Vec<u8> {
        let mut b = packet_id.to_be_bytes().to_vec();
        if v5 {
            b.push(0);
        }
        b.extend(string(filter));
        b.push(options);
        packet(0x82, &b)
    }

    /// PUBLISH; `packet_id` is written for QoS > 0; `v5_props` only for v5.
    pub fn publish(
        v5: bool,
        qos: u8,
        packet_id: u16,
        topic: &[u8],
        v5_props: &[u8],
        payload: &[u8],
    ) -> Vec<u8> {
        let mut b = string(topic);
        if qos > 0 {
            b.extend_from_slice(&packet_id.to_be_bytes());
        }
        if v5 {
            b.extend(props(v5_props));
        }
        b.extend_from_slice(payload);
        packet(0x30 | (qos << 1), &b)
    }

    /// The reason code of the DISCONNECT among `packets` (0 for one without a body).
    pub fn disconnect_reason(packets: &[(u8, Vec<u8>)]) -> Option<u8> {
        packets
            .iter()
            .find(|(first, _)| *first == 0xE0)
            .map(|(_, body)| body.first().copied().unwrap_or(0))
    }

    impl Raw {
        pub fn open(port: u16) -> Raw {
            let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_nodelay(true).unwrap();
            Raw {
                stream,
                buf: Vec::new(),
            }
        }

        /// Opens and CONNECTs (clean start), asserting a successful CONNACK.
        pub fn connected(port: u16, level: u8, id: &str, keep_alive: u16) -> Raw {
            let mut r = Raw::open(port);
            r.send(&connect(level, id, keep_alive, &[]));
            match r.read(WAIT) {
                Got::Packet(0x20, body) => {
                    assert_eq!(body.get(1), Some(&0), "CONNACK refused: {body:?}")
                }
                other => panic!("expected CONNACK, got {other:?}"),
            }
            r
        }

        /// Writes; an error (the server already closed) is ignored: the read tells.
        pub fn send(&mut self, bytes: &[u8]) {
            let _ = self.stream.write_all(bytes);
        }

        fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
            let mut len = 0usize;
            let mut i = 1;
            loop {
                let b = *self.buf.get(i)?;
                len |= usize::from(b & 0x7f) << (7 * (i - 1));
                i += 1;
                if b & 0x80 == 0 {
                    break;
                }
                assert!(i <= 4, "bad remaining length from the server");
            }
            if self.buf.len() < i + len {
                return None;
            }
            let first = self.buf[0];
            let body = self.buf[i..i + len].to_vec();
            self.buf.drain(..i + len);
            Some((first, body))
        }

        /// The next packet from the server, or what stopped it.
        pub fn read(&mut self, timeout: Duration) -> Got {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some((first, body)) = self.frame() {
                    return Got::Packet(first, body);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Got::Timeout;
                }
                self.stream.set_read_timeout(Some(left)).unwrap();
                let mut chunk = [0u8; 64 * 1024];
                match self.stream.read(&mut chunk) {
                    Ok(0) => return Got::Closed,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        return Got::Timeout;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Got::Closed,
                }
            }
        }

        /// Reads until the server closes the connection (panics if it does not within
        /// `timeout`); the packets that came before the close.
        pub fn expect_closed(&mut self, timeout: Duration) -> Vec<(u8, Vec<u8>)> {
            let deadline = Instant::now() + timeout;
            let mut got = Vec::new();
            loop {
                match self.read(deadline.saturating_duration_since(Instant::now())) {
                    Got::Packet(f, b) => got.push((f, b)),
                    Got::Closed => return got,
                    Got::Timeout => panic!("connection still open after {timeout:?}; got {got:?}"),
                }
            }
        }
    }
}

/// `mast passwd` for `password`: the argon2 PHC string.
pub fn hash_password(password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mast"))
        .arg("passwd")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "mast passwd failed");
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2"), "not a PHC string: {hash}");
    hash
}

/// Resident memory of a process, bytes (Linux `/proc`).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("no VmRSS line");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS value");
    kb * 1024
}

/// One client of either protocol version, for the rules that do not depend on it: a test
/// written once runs against both (`for v in Version::ALL`).
pub mod any {
    use super::*;

    /// An MQTT protocol version.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Version {
        V311,
        V5,
    }

    impl Version {
        pub const ALL: [Version; 2] = [Version::V311, Version::V5];
    }

    /// A received PUBLISH, version-neutral.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Msg {
        pub topic: String,
        pub payload: Vec<u8>,
        pub qos: u8,
        pub retain: bool,
        pub dup: bool,
    }

    fn v5_qos(n: u8) -> v5::QoS {
        match n {
            0 => v5::QoS::AtMostOnce,
            1 => v5::QoS::AtLeastOnce,
            _ => v5::QoS::ExactlyOnce,
        }
    }

    fn v311_qos(n: u8) -> v311::QoS {
        match n {
            0 => v311::QoS::AtMostOnce,
            1 => v311::QoS::AtLeastOnce,
            _ => v311::QoS::ExactlyOnce,
        }
    }

    /// A last will, version-neutral.
    pub struct Will<'a> {
        pub topic: &'a str,
        pub payload: &'a str,
        pub qos: u8,
        pub retain: bool,
    }

    /// A connected client of either version.
    pub enum Client {
        V311(v311::Client),
        V5(v5::Client),
    }

    impl Client {
        pub fn connect(v: Version, port: u16, id: &str) -> Client {
            match v {
                Version::V311 => Client::V311(v311::Client::connect(port, id)),
                Version::V5 => Client::V5(v5::Client::connect(port, id)),
            }
        }

        /// Connects with a persistent session (3.1.1: clean session off; 5.0: expiry 600 s);
        /// whether the server had one for it.
        pub fn connect_persistent(v: Version, port: u16, id: &str) -> (Client, bool) {
            match v {
                Version::V311 => {
                    let c = v311::Client::connect_with(v311::persistent(port, id));
                    let present = c.connack.session_present;
                    (Client::V311(c), present)
                }
                Version::V5 => {
                    let c = v5::Client::connect_with(v5::persistent(port, id, 600));
                    let present = c.connack.session_present;
                    (Client::V5(c), present)
                }
            }
        }

        /// Connects with a last will.
        pub fn connect_with_will(v: Version, port: u16, id: &str, will: &Will) -> Client {
            match v {
                Version::V311 => {
                    let mut o = v311::options(port, id);
                    o.set_last_will(v311::LastWill::new(
                        will.topic,
                        will.payload,
                        v311_qos(will.qos),
                        will.retain,
                    ));
                    Client::V311(v311::Client::connect_with(o))
                }
                Version::V5 => {
                    let mut o = v5::options(port, id);
                    o.set_last_will(v5::LastWill::new(
                        will.topic,
                        will.payload,
                        v5_qos(will.qos),
                        will.retain,
                        None,
                    ));
                    Client::V5(v5::Client::connect_with(o))
                }
            }
        }

        /// DISCONNECT (reason 0) and wait for the connection to close.
        pub fn disconnect(self) {
            match self {
                Client::V311(c) => c.disconnect(),
                Client::V5(c) => c.disconnect(),
            }
        }

        /// Drops the socket without DISCONNECT.
        pub fn drop_abruptly(self) {
            drop(self);
        }

        /// Subscribes to one filter at `qos`; the granted QoS, or `None` when refused.
        pub fn subscribe(&mut self, filter: &str, qos: u8) -> Option<u8> {
            match self {
                Client::V311(c) => match c.subscribe(filter, v311_qos(qos)) {
                    v311::SubscribeReasonCode::Success(q) => Some(q as u8),
                    v311::SubscribeReasonCode::Failure => None,
                },
                Client::V5(c) => match c.subscribe(filter, v5_qos(qos)) {
                    v5::SubscribeReasonCode::Success(q) => Some(q as u8),
                    _ => None,
                },
            }
        }

        /// Publishes and waits for the flow to finish; an MQTT 5 QoS 1 PUBACK's reason.
        pub fn publish(
            &mut self,
            topic: &str,
            qos: u8,
            retain: bool,
            payload: &[u8],
        ) -> Option<v5::PubAckReason> {
            match self {
                Client::V311(c) => {
                    c.publish(topic, v311_qos(qos), retain, payload);
                    None
                }
                Client::V5(c) => c.publish(topic, v5_qos(qos), retain, payload),
            }
        }

        /// The next PUBLISH (panics after [`WAIT`]).
        pub fn recv(&mut self) -> Msg {
            match self {
                Client::V311(c) => {
                    let p = c.recv();
                    Msg {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        qos: p.qos as u8,
                        retain: p.retain,
                        dup: p.dup,
                    }
                }
                Client::V5(c) => {
                    let p = c.recv();
                    Msg {
                        topic: v5::topic(&p),
                        payload: p.payload.to_vec(),
                        qos: p.qos as u8,
                        retain: p.retain,
                        dup: p.dup,
                    }
                }
            }
        }

        /// Asserts no PUBLISH arrives for `d`.
        pub fn assert_silent(&mut self, d: Duration) {
            match self {
                Client::V311(c) => c.assert_silent(d),
                Client::V5(c) => c.assert_silent(d),
            }
        }
    }
}
