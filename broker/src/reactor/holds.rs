//! Acknowledgement ordering: acknowledgements wait for metadata commits and for the publish
//! hook's holds, and leave in the order their packets arrived; the seams' calls.

use mast_protocol::packet::{self, Packet};
use mast_protocol::publish::Delivery;
use mast_protocol::reason::ReasonCode;

use super::Reactor;
use super::conn::{Conn, PendingAck};
use crate::hooks::{ClientEvent, ClientEvents, ClientInfo, Hold, HoldOutcome, HookCx, PublishHook};
use crate::ids::{AckToken, Committed, ConnRef, Seq};
use crate::refusals::{self, ack_packet};

impl<H: PublishHook + ClientEvents> Reactor<H> {
    /// Ends the hook's turn; pauses the connections it asks to and resumes the others.
    pub(super) fn end_turn(&mut self) {
        let mut reads = std::mem::take(&mut self.reads);
        self.hook.end_turn(&mut reads);
        for id in reads.pause.drain(..) {
            if let Some(c) = self.live(id) {
                c.hook_paused = true;
            }
        }
        for id in reads.resume.drain(..) {
            if let Some(c) = self.live(id)
                && std::mem::take(&mut c.hook_paused)
            {
                self.again.push(id.slot());
            }
        }
        self.reads = reads;
    }

    /// Completes the holds the hook reports done.
    pub(super) fn collect_holds(&mut self) {
        let mut done = std::mem::take(&mut self.holds_done);
        let mut cx = HookCx {
            broker: &self.broker,
            notifier: &mut self.notifier,
        };
        self.hook.poll(&mut cx, &mut done);
        for (hold, outcome) in done.drain(..) {
            self.complete_hold(hold, outcome);
        }
        self.holds_done = done;
    }

    /// A held message's outcome: its acknowledgement (released in order by `release_acks`).
    pub(super) fn complete_hold(&mut self, hold: Hold, outcome: HoldOutcome) {
        let mut seq = None;
        if let Some((session, id)) = &hold.qos2 {
            let persistent = {
                let mut inner = session.lock();
                if let Some(i) = inner.held_qos2.iter().position(|x| *x == id.0.get()) {
                    inner.held_qos2.swap_remove(i);
                }
                // A negative PUBREC ends the QoS 2 flow (3.1.1 gets a plain one: PUBREL follows).
                if !matches!(outcome, HoldOutcome::Done) && refusals::ends_qos2_flow(inner.version)
                {
                    inner.inbound.on_pubrel(*id);
                }
                inner.persistent()
            };
            // The message is done: now the id may be durable, so a resend after a restart is
            // known as a duplicate.
            if persistent && matches!(outcome, HoldOutcome::Done) {
                seq = self.broker.save_session(session);
            }
        }
        let Some(token) = hold.ack else {
            return;
        };
        self.touched.push(hold.conn);
        let idx = hold.conn.slot();
        let Some(conn) = self.live(hold.conn) else {
            return;
        };
        let version = conn.version;
        let Some(client) = conn.client.as_mut() else {
            return;
        };
        let Some(pos) = client.pending.iter().position(|a| a.hold == Some(token)) else {
            return;
        };
        let refusal = match outcome {
            HoldOutcome::Done => None,
            HoldOutcome::Refused(r) => Some(r),
            HoldOutcome::Failed { end, .. } if refusals::failed_hold_closes(conn.version) => {
                // 3.1.1 has no negative acknowledgement: withhold it and close, so the client
                // resends after reconnecting.
                client.pending.truncate(pos);
                conn.end_reason.get_or_insert(end);
                conn.closing = true;
                self.flush(idx);
                return;
            }
            HoldOutcome::Failed { refusal, .. } => Some(refusal),
        };
        let a = &mut client.pending[pos];
        a.hold = None;
        a.commit = a.commit.max(seq);
        if let Some(r) = refusal {
            r.apply(version, &mut a.packet);
        }
    }

    /// Tells the hook about a connection that has a client.
    pub(super) fn client_event(&mut self, conn: &Conn, ev: ClientEvent<'_>) {
        let Some(client) = &conn.client else {
            return;
        };
        let info = ClientInfo {
            conn: conn.id,
            client_id: &client.client_id,
            username: client.username.as_deref(),
            addr: conn.addr,
            version: conn.version,
            identity: client.identity,
            connected_at_ns: client.connected_at,
        };
        let mut cx = HookCx {
            broker: &self.broker,
            notifier: &mut self.notifier,
        };
        self.hook.on_client(&mut cx, &info, ev);
    }

    /// Queues an acknowledgement behind earlier ones that wait for persistence `commit`.
    pub(super) fn ack(conn: &mut Conn, waiting: &mut Vec<ConnRef>, commit: Option<Seq>, p: Packet) {
        Self::ack_after(conn, waiting, commit, None, p);
    }

    /// Queues an acknowledgement behind earlier ones; it waits for persistence `commit` and for
    /// the publish hook to finish `hold`.
    pub(super) fn ack_after(
        conn: &mut Conn,
        waiting: &mut Vec<ConnRef>,
        commit: Option<Seq>,
        hold: Option<AckToken>,
        packet: Packet,
    ) {
        let Some(client) = &mut conn.client else {
            return;
        };
        if client.pending.is_empty() && commit.is_none() && hold.is_none() {
            if let Packet::PubAck(_) = packet {
                client.session.lock().inbound.puback_sent();
            }
            packet::encode(&packet, conn.version, &mut conn.wbuf);
            return;
        }
        // Behind others it is reached when they are released; a hold's completion touches it.
        if client.pending.is_empty() && hold.is_none() && !client.listed {
            client.listed = true;
            waiting.push(conn.id);
        }
        client.pending.push_back(PendingAck {
            commit,
            hold,
            packet,
        });
    }

    /// Sends the acknowledgements that may go: visits the connections whose holds completed
    /// and, if the commit `moved`, those waiting for a commit alone; each keeps its place in
    /// `waiting` only while its first acknowledgement waits for a commit alone.
    pub(super) fn release_acks(&mut self, committed: Committed, moved: bool) {
        self.round += 1;
        let round = self.round;
        let mut visit = std::mem::take(&mut self.touched);
        if moved {
            visit.append(&mut self.waiting);
        }
        for id in visit.drain(..) {
            let idx = id.slot();
            let Some(conn) = self.live(id) else {
                continue;
            };
            let version = conn.version;
            let mut released_connack = false;
            let Some(client) = &mut conn.client else {
                continue;
            };
            if client.round == round {
                continue;
            }
            client.round = round;
            if moved {
                // Every listed connection is in `visit`.
                client.listed = false;
            }
            while client
                .pending
                .front()
                .is_some_and(|a| a.hold.is_none() && committed.covers(a.commit))
            {
                let Some(PendingAck { packet: p, .. }) = client.pending.pop_front() else {
                    break;
                };
                match &p {
                    Packet::PubAck(_) => client.session.lock().inbound.puback_sent(),
                    Packet::ConnAck(_) => {
                        client.connack_pending = false;
                        released_connack = true;
                    }
                    _ => {}
                }
                packet::encode(&p, version, &mut conn.wbuf);
            }
            let relist = client.pending.front().is_some_and(|a| a.hold.is_none()) && !client.listed;
            client.listed |= relist;
            if relist {
                self.waiting.push(id);
            }
            if released_connack {
                self.after_connack(idx);
            }
            self.flush(idx);
        }
        // The allocation is kept for the next round.
        if self.touched.is_empty() {
            self.touched = visit;
        }
    }

    pub(super) fn ack_publish(
        conn: &mut Conn,
        waiting: &mut Vec<ConnRef>,
        delivery: Delivery,
        seq: Option<Seq>,
        reason: ReasonCode,
    ) {
        if let Some(p) = ack_packet(delivery, reason) {
            Self::ack(conn, waiting, seq, p);
        }
    }
}
