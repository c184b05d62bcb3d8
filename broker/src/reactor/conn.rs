//! A connection's state: its transport and buffers, its client once CONNECT is accepted, and the
//! acknowledgements it holds back.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mast_protocol::ProtocolVersion;
use mast_protocol::packet::{self, Packet};
use mast_protocol::publish::Delivery;
use mast_protocol::session::{AliasesIn, AliasesOut};

use crate::hooks::EndReason;
use crate::ids::{AckToken, ConnRef, Seq};
use crate::message::Message;
use crate::session::Session;
use crate::transport::Transport;

/// The client after a successful CONNECT.
#[derive(Debug)]
pub(super) struct Client {
    pub(super) client_id: Arc<str>,
    pub(super) username: Option<String>,
    /// Topics the connection is confined to (a claim certificate's), beside the ACL.
    pub(super) confined: Option<Arc<crate::credentials::Confined>>,
    /// How it authenticated ([`crate::credentials::Identity::kind`]).
    pub(super) identity: crate::credentials::IdentityKind,
    pub(super) session: Arc<Session>,
    pub(super) will: Option<(Arc<Message>, u32)>,
    pub(super) aliases_in: AliasesIn,
    pub(super) aliases_out: AliasesOut,
    /// The client's Maximum Packet Size.
    pub(super) max_packet_out: u32,
    /// Acknowledgements waiting for a metadata commit or a hold, in order.
    pub(super) pending: VecDeque<PendingAck>,
    /// When the connection was accepted as this client (ns since the epoch).
    pub(super) connected_at: i64,
    /// CONNACK is among `pending`: send nothing else yet.
    pub(super) connack_pending: bool,
    /// In the reactor's `waiting` list (its first acknowledgement waits for a commit alone).
    pub(super) listed: bool,
    /// The last `release_acks` round that visited it.
    pub(super) round: u64,
    /// DISCONNECT with reason 0x00 (or 3.1.1 DISCONNECT) arrived.
    pub(super) normal_disconnect: bool,
}

/// An acknowledgement held back until the state it confirms is durable.
#[derive(Debug)]
pub(super) struct PendingAck {
    /// Metadata-store commit to wait for.
    pub(super) commit: Option<Seq>,
    /// Held by the publish hook until it reports the hold done; see `Reactor::complete_hold`.
    pub(super) hold: Option<AckToken>,
    pub(super) packet: Packet,
}

#[derive(Debug)]
pub(super) struct Conn {
    pub(super) transport: Transport,
    pub(super) addr: SocketAddr,
    /// This connection (its slot and generation).
    pub(super) id: ConnRef,
    pub(super) version: ProtocolVersion,
    /// A partial packet between reads (empty most of the time: idle connections hold no
    /// read buffer).
    pub(super) rbuf: BytesMut,
    pub(super) wbuf: Vec<u8>,
    pub(super) wpos: usize,
    pub(super) deadline: Instant,
    pub(super) keep_alive: Option<Duration>,
    pub(super) client: Option<Client>,
    /// Stopped reading: output over the limit.
    pub(super) read_paused: bool,
    /// The session queue was not drained for lack of output room.
    pub(super) drain_blocked: bool,
    /// Flush, then close.
    pub(super) closing: bool,
    /// Not read before this instant: a subscriber it feeds is congested.
    pub(super) snooze_until: Option<Instant>,
    /// A QoS 1/2 message waiting for room in a connected subscriber's queue; retried before
    /// anything else is read from this connection.
    pub(super) stalled: Option<(Arc<Message>, Delivery)>,
    /// Not read: the publish hook's downstream is full.
    pub(super) hook_paused: bool,
    /// Why the connection ends, for the client events (set by whoever ends it first).
    pub(super) end_reason: Option<EndReason>,
}

impl Conn {
    pub(super) fn pending_out(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    pub(super) fn send(&mut self, p: &Packet) {
        packet::encode(p, self.version, &mut self.wbuf);
    }

    pub(super) fn label(&self) -> String {
        match &self.client {
            Some(c) => format!("{} ({})", c.client_id, self.addr),
            None => self.addr.to_string(),
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
