//! CONNECT: identity, session attach, CONNACK, and resending what a session left in flight.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mast_protocol::ProtocolVersion;
use mast_protocol::ack::PubResp;
use mast_protocol::connack::ConnAck;
use mast_protocol::connect::Connect;
use mast_protocol::packet::{self, Packet};
use mast_protocol::primitives::Utf8;
use mast_protocol::properties::Properties;
use mast_protocol::publish::{Delivery, Publish};
use mast_protocol::reason::ReasonCode;
use mast_protocol::session::{AliasesIn, AliasesOut, OutState};

use super::conn::{Client, Conn};
use super::{Flow, Reactor};
use crate::credentials::ConnectRequest;
use crate::hooks::{ClientEvent, ClientEvents, PublishHook};
use crate::message::{Message, now_ms, now_ns};

impl<H: PublishHook + ClientEvents> Reactor<H> {
    pub(super) fn connect(&mut self, conn: &mut Conn, c: Connect) -> Flow {
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
        let kind = identity.kind();
        let (client_id, assigned) = match identity.client_id {
            Some(id) if c.client_id.as_str().is_empty() => (id.clone(), Some(id)),
            Some(id) => (id, None),
            None => {
                let id = broker.assign_client_id();
                (id.clone(), Some(id))
            }
        };
        let username = identity.username;
        let confined = identity.confined;
        if let Some(cert) = &identity.cert {
            tracing::debug!(client_id = %client_id, fingerprint = %cert.fingerprint, "client certificate");
        }
        // A confined identity (a claim certificate a whole production run shares) gets a
        // clean session that ends with the connection, and may not take over the session of
        // a client that is not confined as well (a device's subscriptions and queue).
        let clean_start = c.clean_start || confined.is_some();
        if confined.is_some()
            && broker
                .session_identity(&client_id)
                .is_some_and(|k| k != kind)
        {
            return fail(
                self,
                conn,
                ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                "a claim certificate may not take over another client's session",
            );
        }
        let expiry = if confined.is_some() {
            0
        } else if v5 {
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
            let allowed = match &confined {
                Some(c) => c.can_publish(w.topic.as_str()),
                None => broker.acl.can_publish(&client_id, username.as_deref(), w.topic.as_str()),
            };
            if !allowed {
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
            clean_start,
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
            inner.cert = identity.cert.as_ref().map(|c| c.fingerprint);
            inner.identity = kind;
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
            confined,
            identity: kind,
            session: attached.session,
            will,
            aliases_in: AliasesIn::new(cfg.topic_alias_maximum),
            aliases_out: AliasesOut::new(c.properties.topic_alias_maximum.unwrap_or(0)),
            max_packet_out: c.properties.maximum_packet_size.unwrap_or(u32::MAX),
            pending: VecDeque::new(),
            connected_at: now_ns(),
            connack_pending: true,
            listed: false,
            round: 0,
            normal_disconnect: false,
        });
        self.client_event(
            conn,
            ClientEvent::Connected {
                clean_start,
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
    pub(super) fn after_connack(&mut self, idx: usize) {
        let Some(conn) = self.conn(idx) else {
            return;
        };
        Self::resend(conn);
        if conn.client.is_some() {
            let owner = conn.id;
            self.ready.push(owner);
        }
    }

    pub(super) fn resend(conn: &mut Conn) {
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
}
