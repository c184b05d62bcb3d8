//! One handler per packet kind after CONNECT: PUBLISH (and routing through the publish hook),
//! acknowledgements, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mast_protocol::ProtocolVersion;
use mast_protocol::ack::PubResp;
use mast_protocol::connect::QoS;
use mast_protocol::disconnect::Disconnect;
use mast_protocol::packet::Packet;
use mast_protocol::properties::Properties;
use mast_protocol::publish::{Delivery, Publish};
use mast_protocol::reason::ReasonCode;
use mast_protocol::session::{Acked, InAction};
use mast_protocol::subscribe::{SubAck, Subscribe, UnsubAck, Unsubscribe};

use super::conn::Conn;
use super::{Flow, Reactor, SNOOZE};
use crate::broker::parse_filter;
use crate::hooks::{
    Accept, ClientEvent, ClientEvents, Hold, HookCx, Inspect, PublishHook, Publisher,
};
use crate::message::Message;
use crate::refusals::{self, Refusal, ack_packet};

impl<H: PublishHook + ClientEvents> Reactor<H> {
    pub(super) fn handle(&mut self, conn: &mut Conn, p: Packet) -> Flow {
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

    pub(super) fn publish(&mut self, conn: &mut Conn, p: Publish) -> Flow {
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
        let allowed = match &client.confined {
            // Nothing it sends is kept: a retained request would keep its token.
            Some(c) => !p.retain && c.can_publish(topic.as_str()),
            None => self.broker.acl.can_publish(
                &client.client_id,
                client.username.as_deref(),
                topic.as_str(),
            ),
        };
        if action == InAction::DuplicateQos2 {
            Self::ack_publish(
                conn,
                &mut self.waiting,
                p.delivery,
                None,
                ReasonCode::SUCCESS,
            );
            return Flow::Continue;
        }
        if !allowed {
            self.broker
                .counters
                .not_authorized
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(client_id = %client.client_id, topic = topic.as_str(), "publish not authorized; dropped");
            let refusal = Refusal::code(ReasonCode::NOT_AUTHORIZED);
            if let Delivery::ExactlyOnce(id) = p.delivery
                && refusals::ends_qos2_flow(conn.version)
            {
                client.session.lock().inbound.on_pubrel(id);
            }
            if let Some(ack) = refusal.publish_ack(conn.version, p.delivery) {
                Self::ack(conn, &mut self.waiting, None, ack);
            }
            return Flow::Continue;
        }
        let mut msg = Message::from_publish(&p, topic, Some(Arc::clone(&client.client_id)));
        msg.origin_conn = Some(conn.id);
        self.route(conn, Arc::new(msg), p.delivery);
        Flow::Continue
    }

    /// Routes an accepted PUBLISH and acknowledges it, or parks it on the connection when a
    /// connected subscriber has no room (the connection then rests and retries it first). The
    /// publish hook sees it first: it may refuse it (not routed), or claim it and hold its
    /// acknowledgement.
    pub(super) fn route(&mut self, conn: &mut Conn, msg: Arc<Message>, delivery: Delivery) {
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
                if let Delivery::ExactlyOnce(id) = delivery
                    && refusals::ends_qos2_flow(conn.version)
                {
                    client.session.lock().inbound.on_pubrel(id);
                }
                if let Some(p) = refusal.publish_ack(conn.version, delivery) {
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
                if refusal.is_some() && refusals::ends_qos2_flow(conn.version) {
                    inner.inbound.on_pubrel(id);
                }
            }
            if let Some(refusal) = refusal {
                if let Some(p) = refusal.publish_ack(conn.version, delivery) {
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

    /// Applies an acknowledgement of an outbound flow; returns the id to PUBREL, if any.
    pub(super) fn acked(
        &mut self,
        conn: &mut Conn,
        f: impl FnOnce(
            &mut mast_protocol::session::Outbound<crate::session::Queued>,
        ) -> Acked<crate::session::Queued>,
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

    pub(super) fn subscribe(&mut self, conn: &mut Conn, s: Subscribe) -> Flow {
        let Some(client) = &conn.client else {
            return Flow::Continue;
        };
        let _v5 = conn.version == ProtocolVersion::V5;
        let sub_id = s.properties.subscription_identifiers.first().copied();
        let mut reasons = Vec::with_capacity(s.subscriptions.len());
        for sub in &s.subscriptions {
            let raw = sub.filter.as_str();
            let allowed = match parse_filter(raw) {
                Ok(spec) => match &client.confined {
                    Some(c) => c.can_subscribe(spec.filter),
                    None => self.broker.acl.can_subscribe(
                        &client.client_id,
                        client.username.as_deref(),
                        spec.filter,
                    ),
                },
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
                    refusals::suback_code(conn.version, reason)
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

    pub(super) fn unsubscribe(&mut self, conn: &mut Conn, u: Unsubscribe) -> Flow {
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

    pub(super) fn disconnect(&mut self, conn: &mut Conn, d: Disconnect) -> Flow {
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
}
