//! Draining a session's queue into its connection: packet ids, receive maximum, aliases, encoding.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use mast_protocol::ProtocolVersion;
use mast_protocol::connect::QoS;
use mast_protocol::disconnect::Disconnect;
use mast_protocol::packet::{self, Packet};
use mast_protocol::primitives::Utf8;
use mast_protocol::publish::Delivery;
use mast_protocol::reason::ReasonCode;
use mast_protocol::session::{Acked, OutAlias};

use super::Reactor;
use crate::hooks::{ClientEvents, EndReason, PublishHook};
use crate::ids::ConnRef;
use crate::message::now_ms;

impl<H: PublishHook + ClientEvents> Reactor<H> {
    /// Moves queued messages of the session `owner` names into its connection's output.
    pub(super) fn drain(&mut self, owner: ConnRef) {
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
}
