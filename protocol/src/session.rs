//! The session state machine, without IO (MQTT 5.0 §4.4, §4.9, §3.3.2.3.4, §3.1.2.10).
//!
//! - [`Outbound`]: server → client QoS 1/2 flows. Allocates packet ids, holds each message until
//!   its acknowledgement, stops at the client's Receive Maximum, and lists what to resend (with
//!   DUP set, in the original order) when a session resumes.
//! - [`Inbound`]: client → server QoS 1/2 flows. Enforces the server's Receive Maximum, and
//!   remembers the QoS 2 packet ids between PUBREC and PUBREL so a retransmitted QoS 2 message is
//!   delivered once.
//! - [`AliasesIn`] / [`AliasesOut`]: topic aliases, per connection.
//! - [`keep_alive_deadline`]: one and a half keep-alive intervals (§3.1.2.10).
//!
//! The broker keeps `Outbound` and `Inbound` with the session (they outlive a connection when the
//! session is persistent) and the aliases with the connection (they never do).

use std::collections::{HashMap, HashSet, VecDeque};
use std::num::NonZeroU16;
use std::time::Duration;

use crate::primitives::Utf8;
use crate::publish::{Delivery, PacketId};
use crate::reason::ReasonCode;

/// A violation of the session rules: the connection ends with `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionError {
    /// The reason code for the DISCONNECT (MQTT 5) or the log line (3.1.1).
    pub reason: ReasonCode,
    /// What went wrong.
    pub what: &'static str,
}

impl std::fmt::Display for SessionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.what, self.reason.name())
    }
}

impl std::error::Error for SessionError {}

/// Where an outbound QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// QoS 1, PUBLISH sent, waiting for PUBACK.
    AwaitPubAck,
    /// QoS 2, PUBLISH sent, waiting for PUBREC.
    AwaitPubRec,
    /// QoS 2, PUBREL sent, waiting for PUBCOMP (the message itself is no longer needed).
    AwaitPubComp,
}

/// One outbound message in flight.
#[derive(Debug, Clone)]
pub struct InFlight<M> {
    /// Its packet id.
    pub id: PacketId,
    /// Where it stands.
    pub state: OutState,
    /// The message (kept until PUBREC/PUBACK, so it can be resent).
    pub msg: M,
}

/// What an acknowledgement did.
#[derive(Debug, PartialEq, Eq)]
pub enum Acked<M> {
    /// The flow is complete; here is the message it carried.
    Done(M),
    /// PUBREC accepted: send PUBREL for this id.
    SendPubRel(PacketId),
    /// PUBREC with an error reason: the flow ends without PUBREL (MQTT 5.0 §4.3.3).
    Refused(M),
    /// No flow in the right state has this id (the broker may answer 0x92 to a PUBREC).
    Unknown,
}

/// Server → client QoS 1/2 flows of one session.
#[derive(Debug)]
pub struct Outbound<M> {
    receive_maximum: u16,
    next_id: u16,
    inflight: VecDeque<InFlight<M>>,
    in_use: HashSet<u16>,
}

impl<M> Outbound<M> {
    /// A session whose client accepts `receive_maximum` unacknowledged QoS 1/2 messages
    /// (65,535 when the client does not say: §3.1.2.11.3).
    pub fn new(receive_maximum: u16) -> Self {
        Outbound {
            receive_maximum: receive_maximum.max(1),
            next_id: 0,
            inflight: VecDeque::new(),
            in_use: HashSet::new(),
        }
    }

    /// A resumed session's new connection may bring another Receive Maximum.
    pub fn set_receive_maximum(&mut self, receive_maximum: u16) {
        self.receive_maximum = receive_maximum.max(1);
    }

    /// Messages in flight.
    pub fn len(&self) -> usize {
        self.inflight.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.inflight.is_empty()
    }

    /// True when another QoS 1/2 message may be sent now.
    pub fn can_send(&self) -> bool {
        self.inflight.len() < usize::from(self.receive_maximum)
            && self.in_use.len() < usize::from(u16::MAX)
    }

    /// Starts a QoS 1 (`exactly_once` false) or QoS 2 flow; `None` when the Receive Maximum is
    /// reached (keep the message queued). The returned delivery goes into the PUBLISH.
    pub fn start(&mut self, exactly_once: bool, msg: M) -> Option<Delivery> {
        if !self.can_send() {
            return None;
        }
        let id = loop {
            self.next_id = self.next_id.wrapping_add(1);
            if let Some(id) = NonZeroU16::new(self.next_id)
                && !self.in_use.contains(&id.get())
            {
                break PacketId(id);
            }
        };
        self.in_use.insert(id.0.get());
        let (state, delivery) = if exactly_once {
            (OutState::AwaitPubRec, Delivery::ExactlyOnce(id))
        } else {
            (OutState::AwaitPubAck, Delivery::AtLeastOnce(id))
        };
        self.inflight.push_back(InFlight { id, state, msg });
        Some(delivery)
    }

    fn position(&self, id: PacketId, state: OutState) -> Option<usize> {
        // Acknowledgements nearly always come in order: the front is the common case.
        self.inflight
            .iter()
            .position(|f| f.id == id && f.state == state)
    }

    fn finish(&mut self, at: usize) -> Option<InFlight<M>> {
        let f = self.inflight.remove(at)?;
        self.in_use.remove(&f.id.0.get());
        Some(f)
    }

    /// PUBACK received.
    pub fn on_puback(&mut self, id: PacketId) -> Acked<M> {
        match self
            .position(id, OutState::AwaitPubAck)
            .and_then(|at| self.finish(at))
        {
            Some(f) => Acked::Done(f.msg),
            None => Acked::Unknown,
        }
    }

    /// PUBREC received; `refused` when its reason code is an error.
    pub fn on_pubrec(&mut self, id: PacketId, refused: bool) -> Acked<M>
    where
        M: Clone,
    {
        let Some(at) = self.position(id, OutState::AwaitPubRec) else {
            // A PUBREC repeated after our PUBREL still gets a PUBREL.
            return if self.position(id, OutState::AwaitPubComp).is_some() {
                Acked::SendPubRel(id)
            } else {
                Acked::Unknown
            };
        };
        if refused {
            return match self.finish(at) {
                Some(f) => Acked::Refused(f.msg),
                None => Acked::Unknown,
            };
        }
        if let Some(f) = self.inflight.get_mut(at) {
            f.state = OutState::AwaitPubComp;
        }
        Acked::SendPubRel(id)
    }

    /// PUBCOMP received.
    pub fn on_pubcomp(&mut self, id: PacketId) -> Acked<M> {
        match self
            .position(id, OutState::AwaitPubComp)
            .and_then(|at| self.finish(at))
        {
            Some(f) => Acked::Done(f.msg),
            None => Acked::Unknown,
        }
    }

    /// What to resend when the session resumes on a new connection, in the original order:
    /// PUBLISH with DUP for `AwaitPubAck`/`AwaitPubRec`, PUBREL for `AwaitPubComp` (§4.4).
    pub fn resend(&self) -> impl Iterator<Item = &InFlight<M>> {
        self.inflight.iter()
    }

    /// Takes every message whose flow can still be resent; used when a session ends.
    pub fn drain(&mut self) -> impl Iterator<Item = InFlight<M>> + '_ {
        self.in_use.clear();
        self.inflight.drain(..)
    }
}

/// What to do with an inbound QoS 1/2 PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InAction {
    /// New message: route it, then acknowledge it.
    Deliver,
    /// A QoS 2 message whose PUBREC was already sent (a retransmission): do not route it again,
    /// answer PUBREC again (§4.3.3).
    DuplicateQos2,
}

/// Client → server QoS 1/2 flows of one session.
#[derive(Debug, Default)]
pub struct Inbound {
    receive_maximum: u16,
    qos1_unacked: u16,
    qos2_pending: HashSet<u16>,
}

impl Inbound {
    /// The server accepts `receive_maximum` unacknowledged QoS 1/2 messages per connection.
    pub fn new(receive_maximum: u16) -> Self {
        Inbound {
            receive_maximum: receive_maximum.max(1),
            qos1_unacked: 0,
            qos2_pending: HashSet::new(),
        }
    }

    /// A resumed session starts a connection: QoS 1 acknowledgements that were not sent are
    /// gone with the old connection (the client resends those messages); QoS 2 ids stay.
    pub fn reconnect(&mut self, receive_maximum: u16) {
        self.receive_maximum = receive_maximum.max(1);
        self.qos1_unacked = 0;
    }

    fn in_flight(&self) -> usize {
        usize::from(self.qos1_unacked) + self.qos2_pending.len()
    }

    /// A PUBLISH arrived.
    pub fn on_publish(&mut self, delivery: Delivery) -> Result<InAction, SessionError> {
        let exceeded = SessionError {
            reason: ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
            what: "more unacknowledged QoS 1/2 messages than the receive maximum",
        };
        match delivery {
            Delivery::AtMostOnce => Ok(InAction::Deliver),
            Delivery::AtLeastOnce(_) => {
                if self.in_flight() >= usize::from(self.receive_maximum) {
                    return Err(exceeded);
                }
                self.qos1_unacked += 1;
                Ok(InAction::Deliver)
            }
            Delivery::ExactlyOnce(id) => {
                if self.qos2_pending.contains(&id.0.get()) {
                    return Ok(InAction::DuplicateQos2);
                }
                if self.in_flight() >= usize::from(self.receive_maximum) {
                    return Err(exceeded);
                }
                self.qos2_pending.insert(id.0.get());
                Ok(InAction::Deliver)
            }
        }
    }

    /// The PUBACK for a QoS 1 message was sent.
    pub fn puback_sent(&mut self) {
        self.qos1_unacked = self.qos1_unacked.saturating_sub(1);
    }

    /// PUBREL arrived: true when the id was pending (answer PUBCOMP 0x00), false otherwise
    /// (answer PUBCOMP 0x92 in MQTT 5).
    pub fn on_pubrel(&mut self, id: PacketId) -> bool {
        self.qos2_pending.remove(&id.0.get())
    }

    /// QoS 2 packet ids between PUBREC and PUBREL (persisted with the session).
    pub fn pending_qos2(&self) -> impl Iterator<Item = u16> + '_ {
        self.qos2_pending.iter().copied()
    }

    /// Restores a QoS 2 id after a restart.
    pub fn restore_qos2(&mut self, id: u16) {
        self.qos2_pending.insert(id);
    }
}

/// Topic aliases the client set (client → server), per connection (§3.3.2.3.4).
#[derive(Debug, Default)]
pub struct AliasesIn {
    maximum: u16,
    topics: HashMap<u16, Utf8>,
}

impl AliasesIn {
    /// The server's Topic Alias Maximum, as sent in CONNACK.
    pub fn new(maximum: u16) -> Self {
        AliasesIn {
            maximum,
            topics: HashMap::new(),
        }
    }

    /// Resolves a PUBLISH's topic: a non-empty topic with an alias sets the alias; an empty one
    /// uses it.
    pub fn resolve(&mut self, topic: &Utf8, alias: Option<u16>) -> Result<Utf8, SessionError> {
        let Some(alias) = alias else {
            return Ok(topic.clone());
        };
        if alias == 0 || alias > self.maximum {
            return Err(SessionError {
                reason: ReasonCode::TOPIC_ALIAS_INVALID,
                what: "topic alias 0 or above the maximum",
            });
        }
        if topic.as_str().is_empty() {
            self.topics.get(&alias).cloned().ok_or(SessionError {
                reason: ReasonCode::PROTOCOL_ERROR,
                what: "unknown topic alias",
            })
        } else {
            self.topics.insert(alias, topic.clone());
            Ok(topic.clone())
        }
    }
}

/// Topic aliases the server sets (server → client), per connection: the first messages on a
/// topic carry the topic and a new alias; later ones an empty topic and the alias. When the
/// client's maximum is used up, other topics go without an alias.
#[derive(Debug, Default)]
pub struct AliasesOut {
    maximum: u16,
    aliases: HashMap<Utf8, u16>,
}

/// How to send a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutAlias {
    /// No alias: the topic as is.
    None,
    /// Send the topic and this new alias.
    Set(u16),
    /// Send an empty topic and this alias.
    Use(u16),
}

impl AliasesOut {
    /// The client's Topic Alias Maximum from CONNECT (0: no aliases).
    pub fn new(maximum: u16) -> Self {
        AliasesOut {
            maximum,
            aliases: HashMap::new(),
        }
    }

    /// How to send `topic`.
    pub fn alias(&mut self, topic: &Utf8) -> OutAlias {
        if let Some(&a) = self.aliases.get(topic) {
            return OutAlias::Use(a);
        }
        if self.aliases.len() >= usize::from(self.maximum) {
            return OutAlias::None;
        }
        let a = self.aliases.len() as u16 + 1;
        self.aliases.insert(topic.clone(), a);
        OutAlias::Set(a)
    }
}

/// How long a connection may stay silent: one and a half times the keep-alive (none for 0).
pub fn keep_alive_deadline(keep_alive_secs: u16) -> Option<Duration> {
    (keep_alive_secs > 0).then(|| Duration::from_millis(u64::from(keep_alive_secs) * 1500))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pid(n: u16) -> PacketId {
        PacketId(NonZeroU16::new(n).unwrap())
    }

    #[test]
    fn qos1_and_qos2_flows_complete() {
        let mut o = Outbound::new(10);
        let d1 = o.start(false, "a").unwrap();
        let d2 = o.start(true, "b").unwrap();
        let (Delivery::AtLeastOnce(i1), Delivery::ExactlyOnce(i2)) = (d1, d2) else {
            panic!("wrong deliveries {d1:?} {d2:?}");
        };
        assert_ne!(i1, i2);
        assert_eq!(o.on_pubcomp(i2), Acked::Unknown, "PUBCOMP before PUBREC");
        assert_eq!(o.on_pubrec(i2, false), Acked::SendPubRel(i2));
        assert_eq!(
            o.on_pubrec(i2, false),
            Acked::SendPubRel(i2),
            "repeated PUBREC"
        );
        assert_eq!(o.on_puback(i1), Acked::Done("a"));
        assert_eq!(o.on_puback(i1), Acked::Unknown);
        assert_eq!(o.on_pubcomp(i2), Acked::Done("b"));
        assert!(o.is_empty());
    }

    #[test]
    fn receive_maximum_stops_sending_and_ids_are_never_reused_while_in_flight() {
        let mut o = Outbound::new(3);
        let ids: Vec<PacketId> = (0..3)
            .map(|i| o.start(i % 2 == 0, i).unwrap().packet_id().unwrap())
            .collect();
        assert_eq!(o.start(false, 9), None);
        assert!(!o.can_send());
        assert_eq!(o.on_puback(ids[1]), Acked::Done(1));
        // wrap the id counter all the way round: ids 0 and 2 stay in use
        for _ in 0..70_000 {
            let d = o.start(false, 7).unwrap();
            let id = d.packet_id().unwrap();
            assert!(id != ids[0] && id != ids[2]);
            assert_eq!(o.on_puback(id), Acked::Done(7));
        }
    }

    #[test]
    fn refused_pubrec_ends_the_flow_and_resend_keeps_order() {
        let mut o = Outbound::new(100);
        let a = o.start(true, "a").unwrap().packet_id().unwrap();
        let b = o.start(false, "b").unwrap().packet_id().unwrap();
        let c = o.start(true, "c").unwrap().packet_id().unwrap();
        assert_eq!(o.on_pubrec(c, false), Acked::SendPubRel(c));
        assert_eq!(o.on_pubrec(a, true), Acked::Refused("a"));
        let order: Vec<(PacketId, OutState)> = o.resend().map(|f| (f.id, f.state)).collect();
        assert_eq!(
            order,
            [(b, OutState::AwaitPubAck), (c, OutState::AwaitPubComp)]
        );
    }

    #[test]
    fn inbound_counts_against_the_receive_maximum_and_dedups_qos2() {
        let mut i = Inbound::new(2);
        assert_eq!(i.on_publish(Delivery::AtMostOnce), Ok(InAction::Deliver));
        assert_eq!(
            i.on_publish(Delivery::ExactlyOnce(pid(5))),
            Ok(InAction::Deliver)
        );
        assert_eq!(
            i.on_publish(Delivery::ExactlyOnce(pid(5))),
            Ok(InAction::DuplicateQos2)
        );
        assert_eq!(
            i.on_publish(Delivery::AtLeastOnce(pid(6))),
            Ok(InAction::Deliver)
        );
        let e = i.on_publish(Delivery::AtLeastOnce(pid(7))).unwrap_err();
        assert_eq!(e.reason, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
        i.puback_sent();
        assert!(i.on_pubrel(pid(5)));
        assert!(!i.on_pubrel(pid(5)));
        assert_eq!(
            i.on_publish(Delivery::ExactlyOnce(pid(5))),
            Ok(InAction::Deliver),
            "after PUBREL the id is free again"
        );
        // a new connection forgets QoS 1 but keeps QoS 2 state
        i.on_publish(Delivery::AtLeastOnce(pid(8))).unwrap();
        i.reconnect(2);
        assert_eq!(i.pending_qos2().collect::<Vec<_>>(), [5]);
        assert_eq!(
            i.on_publish(Delivery::AtLeastOnce(pid(9))),
            Ok(InAction::Deliver)
        );
    }

    #[test]
    fn aliases_in_and_out() {
        let mut a = AliasesIn::new(2);
        let t = Utf8::new("devices/d1/telemetry");
        let empty = Utf8::new("");
        assert_eq!(a.resolve(&t, None).unwrap(), t);
        assert_eq!(
            a.resolve(&empty, Some(1)).unwrap_err().reason,
            ReasonCode::PROTOCOL_ERROR
        );
        assert_eq!(a.resolve(&t, Some(1)).unwrap(), t);
        assert_eq!(a.resolve(&empty, Some(1)).unwrap(), t);
        assert_eq!(
            a.resolve(&t, Some(3)).unwrap_err().reason,
            ReasonCode::TOPIC_ALIAS_INVALID
        );
        assert_eq!(
            a.resolve(&t, Some(0)).unwrap_err().reason,
            ReasonCode::TOPIC_ALIAS_INVALID
        );

        let mut o = AliasesOut::new(1);
        let u = Utf8::new("x");
        assert_eq!(o.alias(&t), OutAlias::Set(1));
        assert_eq!(o.alias(&t), OutAlias::Use(1));
        assert_eq!(o.alias(&u), OutAlias::None);
        assert_eq!(AliasesOut::new(0).alias(&t), OutAlias::None);
    }

    #[test]
    fn keep_alive_is_one_and_a_half_intervals() {
        assert_eq!(keep_alive_deadline(0), None);
        assert_eq!(keep_alive_deadline(60), Some(Duration::from_secs(90)));
    }

    proptest! {
        #[test]
        fn outbound_never_has_two_flows_with_one_id(ops in prop::collection::vec((0u8..4, any::<u8>()), 0..300)) {
            let mut o = Outbound::new(20);
            let mut live: Vec<PacketId> = Vec::new();
            for (op, pick) in ops {
                match op {
                    0 | 1 => {
                        if let Some(d) = o.start(op == 1, ()) {
                            let id = d.packet_id().unwrap();
                            prop_assert!(!live.contains(&id));
                            live.push(id);
                        } else {
                            prop_assert_eq!(live.len(), 20);
                        }
                    }
                    _ if live.is_empty() => {}
                    2 => {
                        let id = live[usize::from(pick) % live.len()];
                        if o.on_puback(id) == Acked::Done(()) {
                            live.retain(|x| *x != id);
                        }
                    }
                    _ => {
                        let id = live[usize::from(pick) % live.len()];
                        let _ = o.on_pubrec(id, false);
                        if o.on_pubcomp(id) == Acked::Done(()) {
                            live.retain(|x| *x != id);
                        }
                    }
                }
                prop_assert_eq!(o.len(), live.len());
            }
        }
    }
}
