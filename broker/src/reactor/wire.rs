//! The wire: reading and decoding, writing, refusing and closing a connection.

use std::sync::atomic::Ordering;
use std::time::Instant;

use mast_protocol::ProtocolVersion;
use mast_protocol::packet::{self};
use mast_protocol::reason::ReasonCode;

use super::conn::Conn;
use super::{Flow, READ_BUDGET, Reactor, connect_level};
use crate::hooks::{ClientEvent, ClientEvents, EndReason, PublishHook};
use crate::refusals;

impl<H: PublishHook + ClientEvents> Reactor<H> {
    pub(super) fn read(&mut self, idx: usize) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        if conn.read_paused || conn.closing || conn.snooze_until.is_some() || conn.hook_paused {
            self.conns[idx] = Some(conn);
            return;
        }
        let mut buf = if conn.rbuf.is_empty() {
            std::mem::take(&mut self.scratch)
        } else {
            std::mem::take(&mut conn.rbuf)
        };
        let outcome = conn.transport.read(&mut buf, READ_BUDGET);
        let mut flow = Flow::Continue;
        match outcome {
            Err(e) => {
                tracing::debug!(conn = %conn.label(), error = %e, "read failed");
                flow = Flow::Close { normal: false };
            }
            Ok(o) => {
                self.local.bytes_in += o.bytes as u64;
                if o.bytes > 0
                    && let Some(ka) = conn.keep_alive
                {
                    conn.deadline = Instant::now() + ka;
                }

                let max = self.broker.cfg.max_packet_size;
                if let Some((msg, delivery)) = conn.stalled.take() {
                    self.route(&mut conn, msg, delivery);
                }
                while matches!(flow, Flow::Continue) {
                    if conn.pending_out() > self.broker.cfg.max_output_bytes {
                        conn.read_paused = true;
                        break;
                    }
                    if conn.snooze_until.is_some() || conn.stalled.is_some() || conn.hook_paused {
                        break;
                    }
                    // Before CONNECT only an error in a CONNECT is answered (MQTT 5.0
                    // §4.13.1), and a 3.1.1 CONNECT in the 3.1.1 form.
                    let answer = conn.client.is_some() || buf.first().is_some_and(|b| b >> 4 == 1);
                    if conn.client.is_none() && connect_level(&buf) == Some(4) {
                        conn.version = ProtocolVersion::V311;
                    }
                    match packet::decode(&mut buf, conn.version, max) {
                        Ok(Some(p)) => flow = self.handle(&mut conn, p),
                        Ok(None) => break,
                        Err(e) => {
                            self.broker
                                .counters
                                .protocol_errors
                                .fetch_add(1, Ordering::Relaxed);
                            tracing::info!(conn = %conn.label(), error = %e, "bad packet; closing");
                            if answer {
                                self.refuse(&mut conn, e.reason_code());
                            }
                            flow = Flow::Close { normal: false };
                        }
                    }
                }
                if matches!(flow, Flow::Continue) && o.eof {
                    flow = Flow::Close { normal: false };
                }
                if let Some(until) = conn.snooze_until {
                    self.snoozed.push((conn.id, until));
                } else if o.more {
                    self.again.push(idx);
                }
            }
        }
        if buf.is_empty() {
            buf.clear();
            self.scratch = buf;
        } else {
            conn.rbuf = buf;
        }
        if conn.transport.wants_write() || conn.pending_out() > 0 {
            self.write_out(&mut conn);
        }
        let close = match flow {
            Flow::Continue => conn.closing.then_some(false),
            Flow::Close { normal } => Some(normal),
        };
        self.conns[idx] = Some(conn);
        if let Some(normal) = close {
            self.close(idx, normal);
        }
    }

    /// Answers a fatal error: CONNACK with the reason before CONNECT succeeded, DISCONNECT
    /// after (MQTT 5); 3.1.1 only has CONNACK return codes, and otherwise just closes.
    pub(super) fn refuse(&mut self, conn: &mut Conn, reason: ReasonCode) {
        conn.end_reason.get_or_insert(EndReason::Code(reason));
        if let Some((p, v)) = refusals::ending(conn.version, conn.client.is_some(), reason) {
            packet::encode(&p, v, &mut conn.wbuf);
        }
        conn.closing = true;
    }

    pub(super) fn flush(&mut self, idx: usize) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        self.write_out(&mut conn);
        let closing = conn.closing && conn.pending_out() == 0;
        self.conns[idx] = Some(conn);
        if closing {
            self.close(idx, false);
        }
    }

    pub(super) fn write_out(&mut self, conn: &mut Conn) {
        if conn.pending_out() > 0 || conn.transport.wants_write() {
            match conn.transport.write(&conn.wbuf[conn.wpos..]) {
                Ok(n) => {
                    conn.wpos += n;
                    self.local.bytes_out += n as u64;
                }
                Err(e) => {
                    tracing::debug!(conn = %conn.label(), error = %e, "write failed");
                    conn.closing = true;
                    conn.wbuf.clear();
                    conn.wpos = 0;
                    return;
                }
            }
        }
        if conn.wpos == conn.wbuf.len() {
            conn.wbuf.clear();
            conn.wpos = 0;
            if conn.wbuf.capacity() > 64 * 1024 {
                conn.wbuf = Vec::new();
            }
        } else if conn.wpos >= 64 * 1024 && conn.wpos * 2 >= conn.wbuf.len() {
            // Compact only when the written part dominates: amortised O(1) per byte.
            conn.wbuf.drain(..conn.wpos);
            conn.wpos = 0;
        }
        let max_out = self.broker.cfg.max_output_bytes;
        if conn.pending_out() <= max_out / 2 {
            let idx_gen = conn.client.is_some().then_some(conn.id);
            if conn.read_paused {
                conn.read_paused = false;
                if let Some(o) = idx_gen {
                    self.again.push(o.slot());
                }
            }
            if conn.drain_blocked
                && let Some(o) = idx_gen
            {
                conn.drain_blocked = false;
                self.ready.push(o);
            }
        }
    }

    pub(super) fn close(&mut self, idx: usize, normal: bool) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let _ = self.poll.registry().deregister(conn.transport.socket());
        self.free.push(idx);
        self.broker
            .counters
            .connections
            .fetch_sub(1, Ordering::Relaxed);
        if let Some(client) = &conn.client {
            let superseded = client.session.lock().owner != Some(conn.id);
            let reason = conn
                .end_reason
                .unwrap_or(if normal && client.normal_disconnect {
                    EndReason::ClientDisconnected
                } else if normal {
                    EndReason::ClientDisconnectedWithWill
                } else if superseded {
                    EndReason::SessionTakenOver
                } else {
                    EndReason::ConnectionLost
                });
            self.client_event(&conn, ClientEvent::Disconnected { reason, superseded });
        }
        if let Some(client) = conn.client.take() {
            let will = if normal && client.normal_disconnect {
                None
            } else {
                client.will
            };
            tracing::debug!(client_id = %client.client_id, normal, "disconnected");
            self.broker
                .detach(&client.session, conn.id, will, &mut self.notifier);
        }
    }
}
