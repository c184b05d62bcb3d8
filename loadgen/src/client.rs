//! A non-blocking MQTT client connection driven by a mio `Poll`: enough protocol for load
//! generation (CONNECT, PUBLISH at QoS 0/1/2 with a window of unacknowledged messages,
//! SUBSCRIBE, acknowledging what it receives), built on the `mast-protocol` codec.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::time::Instant;

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

/// Connection settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) version: ProtocolVersion,
    pub(crate) keep_alive: u16,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) clean_start: bool,
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
    /// A PUBLISH arrived (payload for latency stamps).
    Message(Bytes),
    /// A QoS 1/2 publish completed after this many microseconds.
    Acked(u64),
    /// SUBACK arrived.
    Subscribed,
}

/// One connection.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) phase: Phase,
    version: ProtocolVersion,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    wpos: usize,
    pub(crate) write_blocked: bool,
    next_id: u16,
    inflight: HashMap<u16, Instant>,
    /// A PINGREQ is out and its PINGRESP has not arrived.
    pub(crate) ping_pending: bool,
}

impl Conn {
    /// Starts connecting and queues CONNECT.
    pub(crate) fn open(addr: SocketAddr, client_id: &str, s: &Settings) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        let mut c = Conn {
            stream,
            phase: Phase::Connecting,
            version: s.version,
            rbuf: BytesMut::new(),
            wbuf: Vec::new(),
            wpos: 0,
            write_blocked: true,
            next_id: 0,
            inflight: HashMap::new(),
            ping_pending: false,
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

    /// Unacknowledged QoS 1/2 publishes.
    pub(crate) fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Bytes queued, not written.
    pub(crate) fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
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

    /// Queues a PUBLISH.
    pub(crate) fn publish(&mut self, topic: &Utf8, payload: Bytes, qos: u8, retain: bool) {
        let delivery = match qos {
            0 => Delivery::AtMostOnce,
            1 | 2 => {
                let id = self.take_id();
                self.inflight.insert(id.0.get(), Instant::now());
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
    }

    /// Writes what is queued until the socket would block.
    pub(crate) fn flush(&mut self) -> io::Result<usize> {
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

    /// Queues a PINGREQ. The broker answers packets of a connection in order, so its PINGRESP
    /// says everything sent before it has been read (a QoS 0 run is over only then).
    pub(crate) fn ping(&mut self) {
        packet::encode(&Packet::PingReq, self.version, &mut self.wbuf);
        self.ping_pending = true;
    }

    /// Reads and handles what arrived; `on` sees each event.
    pub(crate) fn read(&mut self, mut on: impl FnMut(Event)) -> io::Result<usize> {
        let mut total = 0;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.phase = Phase::Closed;
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
                    self.phase = if a.reason == ReasonCode::SUCCESS {
                        Phase::Connected
                    } else {
                        Phase::Refused(a.reason.0)
                    };
                }
                Packet::PubAck(a) | Packet::PubComp(a) => {
                    if let Some(t) = self.inflight.remove(&a.packet_id.0.get()) {
                        on(Event::Acked(t.elapsed().as_micros() as u64));
                    }
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
                    on(Event::Message(p.payload));
                }
                Packet::SubAck(_) => on(Event::Subscribed),
                Packet::PingResp => self.ping_pending = false,
                Packet::Disconnect(_) => self.phase = Phase::Closed,
                _ => {}
            }
        }
        Ok(total)
    }
}
