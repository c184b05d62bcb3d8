//! Keep-alive and CONNECT deadlines on a timer wheel with one-second slots.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mast_protocol::ProtocolVersion;
use mast_protocol::disconnect::Disconnect;
use mast_protocol::packet::Packet;
use mast_protocol::reason::ReasonCode;

use super::{Reactor, WHEEL_SLOTS};
use crate::hooks::{ClientEvents, EndReason, PublishHook};
use crate::ids::ConnRef;

impl<H: PublishHook + ClientEvents> Reactor<H> {
    pub(super) fn schedule(&mut self, id: ConnRef, at: Instant) {
        let secs = at.saturating_duration_since(self.wheel_at).as_secs() as usize;
        let slot = (self.wheel_slot + secs.clamp(1, WHEEL_SLOTS - 1)) % WHEEL_SLOTS;
        self.wheel[slot].push(id);
    }

    pub(super) fn tick(&mut self) {
        self.wheel_at += Duration::from_secs(1);
        if self.wheel_at.elapsed() > Duration::from_secs(5) {
            self.wheel_at = Instant::now();
        }
        self.wheel_slot = (self.wheel_slot + 1) % WHEEL_SLOTS;
        let now = Instant::now();
        for id in std::mem::take(&mut self.wheel[self.wheel_slot]) {
            let idx = id.slot();
            let Some(c) = self.live(id) else {
                continue;
            };
            if c.deadline <= now {
                let connected = c.client.is_some();
                tracing::info!(conn = %c.label(), "{}", if connected { "keep-alive timeout" } else { "no CONNECT in time" });
                self.broker
                    .counters
                    .keepalive_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(c) = self.conns[idx].as_mut() {
                    c.end_reason.get_or_insert(EndReason::KeepAliveTimeout);
                }
                if let Some(c) = self.conns[idx].as_mut()
                    && connected
                    && c.version == ProtocolVersion::V5
                {
                    c.send(&Packet::Disconnect(Disconnect::with_reason(
                        ReasonCode::KEEP_ALIVE_TIMEOUT,
                    )));
                    self.flush(idx);
                }
                self.close(idx, false);
            } else {
                let at = c.deadline;
                self.schedule(id, at);
            }
        }
        if self.idx == 0 {
            self.broker.housekeeping(&mut self.notifier);
        }
    }
}
