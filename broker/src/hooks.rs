//! The seams through which services plug into the broker without the broker knowing them.
//!
//! - [`PublishHook`]: called on the publisher's reactor for every accepted PUBLISH. It may let
//!   the message pass, refuse it with a reason, or claim it and hold its acknowledgement until
//!   another system (the telemetry store) says the message is done. Telemetry is such a hook.
//! - [`ClientEvents`]: a connection's life (connected, subscribed, disconnected with a reason).
//!   Presence is such a listener.
//! - [`Services`]: makes one hook per reactor; the reactor is generic over it (static dispatch,
//!   no call through a pointer per message).
//!
//! Every hook runs on the reactor thread that owns the connection, in the order the reactor
//! reads the connection's packets, and must not block: what waits (an fsync) is a [`Hold`],
//! completed later from [`PublishHook::poll`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mast_protocol::ProtocolVersion;
use mast_protocol::connect::QoS;
use mast_protocol::publish::{Delivery, PacketId};
use mast_protocol::reason::ReasonCode;
use mio::Waker;

use super::broker::{Broker, Notifier};
use super::ids::{AckToken, ConnRef, Seq};
use super::message::Message;
pub use super::refusals::Refusal;
use super::session::Session;
use mast_meta::Op;

/// Why a connection ended, as presence records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// DISCONNECT without a will.
    ClientDisconnected,
    /// DISCONNECT with reason 0x04 (the will is published).
    ClientDisconnectedWithWill,
    /// A newer connection of the same client took the session over.
    SessionTakenOver,
    /// The network connection dropped, or a read or write failed.
    ConnectionLost,
    /// No packet within the keep-alive (or no CONNECT in time).
    KeepAliveTimeout,
    /// The server is stopping.
    ServerShuttingDown,
    /// A held message could not be stored, and 3.1.1 has no way to say so but closing.
    StorageFailure,
    /// The server ended it with this reason code (a protocol error, a slow subscriber).
    Code(ReasonCode),
}

impl EndReason {
    /// The text of the presence record's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::ClientDisconnected => "client disconnected",
            EndReason::ClientDisconnectedWithWill => "client disconnected with will",
            EndReason::SessionTakenOver => "session taken over",
            EndReason::ConnectionLost => "connection lost",
            EndReason::KeepAliveTimeout => "keep alive timeout",
            EndReason::ServerShuttingDown => "server shutting down",
            EndReason::StorageFailure => "storage failure",
            EndReason::Code(c) => c.name(),
        }
    }
}

/// A held acknowledgement: what the reactor needs to finish it when the hook reports it done.
/// Only the reactor makes one; a hook keeps it and gives it back from [`PublishHook::poll`].
#[derive(Debug)]
pub struct Hold {
    pub(super) conn: ConnRef,
    /// The PUBACK/PUBREC waiting (none at QoS 0).
    pub(super) ack: Option<AckToken>,
    /// A QoS 2 message's session and packet id, kept out of the persisted session until done.
    pub(super) qos2: Option<(Arc<Session>, PacketId)>,
}

/// How a held message ended.
#[derive(Debug)]
pub enum HoldOutcome {
    /// Done (stored): acknowledge it with success.
    Done,
    /// Refused: a v5 client gets the refusal in its acknowledgement, a 3.1.1 client a plain one.
    Refused(Refusal),
    /// Failed: a v5 client gets the refusal; a 3.1.1 client gets no acknowledgement and the
    /// connection is closed with `end`, so that it resends after reconnecting.
    Failed { refusal: Refusal, end: EndReason },
}

/// Who published a message.
#[derive(Debug)]
pub struct Publisher<'a> {
    pub conn: ConnRef,
    pub client_id: &'a Arc<str>,
    pub username: Option<&'a str>,
    pub delivery: Delivery,
}

/// What a hook may do to the broker from the reactor thread.
#[derive(Debug)]
pub struct HookCx<'a> {
    pub(super) broker: &'a Broker,
    pub(super) notifier: &'a mut Notifier,
}

impl HookCx<'_> {
    /// Routes a message the server makes (an error reply), like a will: it never waits for
    /// room in a subscriber's queue.
    #[inline]
    pub fn publish(&mut self, msg: Message) {
        self.broker.publish(Arc::new(msg), self.notifier, false);
    }

    /// Queues metadata-store changes behind the broker's own, in one order; the number to wait
    /// for, if any.
    #[inline]
    pub fn persist(&mut self, ops: Vec<Op>) -> Option<Seq> {
        self.broker.persist.submit(ops)
    }
}

/// What the hook makes of a PUBLISH before it is routed.
#[derive(Debug)]
pub enum Inspect {
    /// Not the hook's: route and acknowledge it as usual.
    Pass,
    /// The hook's: route it, then [`PublishHook::accept`] it.
    Claim,
    /// Refused: not routed, acknowledged at once with the refusal (v5; 3.1.1 gets success), and
    /// a QoS 2 flow ends with the PUBREC.
    Refuse(Refusal),
}

/// What the hook did with a claimed, routed message.
#[derive(Debug)]
pub enum Accept {
    /// Nothing to wait for: acknowledge it now (after the routing's own commit).
    Ack,
    /// Refused after routing (a bad payload): acknowledged with the refusal.
    Refuse(Refusal),
    /// Held: the acknowledgement waits until `poll` returns the [`Hold`]. `pause` stops reading
    /// the connection until the hook resumes it (its downstream is full).
    Held { pause: bool },
}

/// Connections a hook wants read or left alone (backpressure from its downstream).
#[derive(Debug, Default)]
pub struct ReadControl {
    pub pause: Vec<ConnRef>,
    pub resume: Vec<ConnRef>,
}

/// A hook on the publish path.
///
/// Contract: called on the reactor thread of the publisher, in the order its packets are read,
/// for every PUBLISH that passed the ACL and QoS 2 de-duplication. `inspect` runs before
/// routing; a publish that has to wait for room in a subscriber's queue is retried whole,
/// `inspect` included, so `inspect` must have no effect it cannot repeat unless it refuses.
/// `accept` runs once, after a claimed message was routed. A held acknowledgement is released
/// when `poll` has returned its hold *and* the routing's metadata commit is durable; a held QoS 2
/// id stays out of the persisted session until then, and the acknowledgement of a persistent
/// session then also waits for the session's commit. Acknowledgements keep per-connection order.
pub trait PublishHook {
    fn inspect(&mut self, cx: &mut HookCx<'_>, p: &Publisher<'_>, msg: &Message) -> Inspect;
    fn accept(
        &mut self,
        cx: &mut HookCx<'_>,
        p: &Publisher<'_>,
        msg: &Arc<Message>,
        hold: Hold,
    ) -> Accept;
    /// End of the reactor's read phase: submit what was collected; say which connections to
    /// pause or resume.
    fn end_turn(&mut self, reads: &mut ReadControl);
    /// Every turn: the holds that are done, with their outcomes.
    fn poll(&mut self, cx: &mut HookCx<'_>, done: &mut Vec<(Hold, HoldOutcome)>);
    /// How soon the hook needs another turn without any event (a retry), if at all.
    fn retry_in(&self) -> Option<Duration>;
    /// After the reactor closed its last connection: make what is buffered safe.
    fn shutdown(&mut self);
}

/// A connection's life, as a client event listener sees it.
#[derive(Debug, Clone, Copy)]
pub enum ClientEvent<'a> {
    /// CONNECT accepted and the session attached; CONNACK not sent yet.
    Connected {
        clean_start: bool,
        /// Keep-alive in force (the server's if it imposed one).
        keep_alive_secs: u16,
    },
    /// One filter of a SUBSCRIBE, before the SUBACK.
    Subscribed {
        filter: &'a str,
        granted: Result<QoS, ReasonCode>,
    },
    /// The connection ended (before the will is published and the session detached).
    Disconnected {
        reason: EndReason,
        /// A newer connection of the same client owns the session now.
        superseded: bool,
    },
}

/// The connection a client event is about.
#[derive(Debug)]
pub struct ClientInfo<'a> {
    pub conn: ConnRef,
    pub client_id: &'a Arc<str>,
    pub username: Option<&'a str>,
    pub addr: SocketAddr,
    pub version: ProtocolVersion,
    /// How it authenticated ([`crate::credentials::Identity::kind`]).
    pub identity: crate::credentials::IdentityKind,
    /// When CONNECT was accepted (ns since the epoch).
    pub connected_at_ns: i64,
}

/// A listener of client events.
///
/// Contract: called on the owning reactor thread, synchronously, per connection in this order:
/// `Connected` once, `Subscribed` any number of times, `Disconnected` exactly once. Nothing is
/// implied durable; it must not block.
pub trait ClientEvents {
    fn on_client(&mut self, cx: &mut HookCx<'_>, c: &ClientInfo<'_>, ev: ClientEvent<'_>);
}

/// Wakes a reactor from another thread (its poll returns and it takes a turn).
#[derive(Debug, Clone)]
pub struct ReactorWake(pub(super) Arc<Waker>);

impl ReactorWake {
    pub fn wake(&self) -> std::io::Result<()> {
        self.0.wake()
    }
}

/// The services of a server: one hook per reactor.
pub trait Services {
    type Reactor: PublishHook + ClientEvents + Send + 'static;
    /// The hook of reactor `id`, which `wake` wakes.
    fn reactor(&self, id: usize, wake: ReactorWake) -> Self::Reactor;
}

/// No services: every message passes and nobody listens to client events (a bare broker, as
/// in the broker's own tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoServices;

impl Services for NoServices {
    type Reactor = NoServices;

    fn reactor(&self, _id: usize, _wake: ReactorWake) -> NoServices {
        NoServices
    }
}

impl PublishHook for NoServices {
    #[inline]
    fn inspect(&mut self, _: &mut HookCx<'_>, _: &Publisher<'_>, _: &Message) -> Inspect {
        Inspect::Pass
    }

    fn accept(
        &mut self,
        _: &mut HookCx<'_>,
        _: &Publisher<'_>,
        _: &Arc<Message>,
        _: Hold,
    ) -> Accept {
        Accept::Ack
    }

    fn end_turn(&mut self, _: &mut ReadControl) {}

    fn poll(&mut self, _: &mut HookCx<'_>, _: &mut Vec<(Hold, HoldOutcome)>) {}

    fn retry_in(&self) -> Option<Duration> {
        None
    }

    fn shutdown(&mut self) {}
}

impl ClientEvents for NoServices {
    fn on_client(&mut self, _: &mut HookCx<'_>, _: &ClientInfo<'_>, _: ClientEvent<'_>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_reasons_read_as_the_presence_record_always_said() {
        assert_eq!(EndReason::ConnectionLost.as_str(), "connection lost");
        assert_eq!(
            EndReason::Code(ReasonCode::SESSION_TAKEN_OVER).as_str(),
            ReasonCode::SESSION_TAKEN_OVER.name()
        );
    }
}
