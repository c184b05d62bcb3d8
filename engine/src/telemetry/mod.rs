//! The engine's services on the broker's seams: telemetry (a publish hook) and presence (a
//! client-event listener), sharing one set of per-shard batches per reactor, so a turn's
//! telemetry and presence rows reach each shard as one write.

pub(crate) mod batches;
pub(crate) mod gateways;
pub(crate) mod hook;

use std::sync::Arc;
use std::time::Duration;

use batches::{Batches, TicketWake};
use gateways::Gateways;
use hook::Telemetry;

use crate::ingest::TelemetryPath;
use crate::presence::Presence;
use crate::shadow_acks::{Claimed, ShadowAcks};
use mast_broker::hooks::{
    Accept, ClientEvent, ClientEvents, ClientInfo, Hold, HoldOutcome, HookCx, Inspect, PublishHook,
    Publisher, ReactorWake, ReadControl, Refusal, Services,
};
use mast_broker::message::Message;
use mast_protocol::reason::ReasonCode;

/// How often a reactor retries a telemetry batch a full shard queue handed back.
const RETRY: Duration = Duration::from_millis(1);

/// What the engine plugs into the broker.
#[derive(Debug)]
pub(crate) struct EngineServices {
    path: Arc<TelemetryPath>,
    gateways: Arc<Gateways>,
    shadow_acks: Arc<ShadowAcks>,
    certs: Arc<crate::certs::Certificates>,
    jobs: Arc<crate::jobs::JobEvents>,
}

impl EngineServices {
    pub(crate) fn new(
        path: Arc<TelemetryPath>,
        gateways: Gateways,
        shadow_acks: Arc<ShadowAcks>,
        certs: Arc<crate::certs::Certificates>,
        jobs: Arc<crate::jobs::JobEvents>,
    ) -> EngineServices {
        EngineServices {
            path,
            gateways: Arc::new(gateways),
            shadow_acks,
            certs,
            jobs,
        }
    }
}

impl Services for EngineServices {
    type Reactor = EngineReactor;

    fn reactor(&self, id: usize, wake: ReactorWake) -> EngineReactor {
        self.shadow_acks.register(id, wake.clone());
        EngineReactor {
            id,
            shadow_acks: Arc::clone(&self.shadow_acks),
            shadow_answers_seen: 0,
            batches: Batches::new(
                Arc::clone(&self.path.store),
                Arc::new(TicketWake::new(wake)),
            ),
            telemetry: Telemetry::new(Arc::clone(&self.path), Arc::clone(&self.gateways)),
            gateways: Arc::clone(&self.gateways),
            presence: Presence::default(),
            certs: Arc::clone(&self.certs),
            jobs: Arc::clone(&self.jobs),
        }
    }
}

/// A request the shadow service answers (its acknowledgement waits for the answer).
#[inline]
fn is_shadow_request(msg: &Message) -> bool {
    let t = msg.topic.as_str();
    t.starts_with("$aws/things/") && mast_devices::shadow::topic::Request::parse(t).is_some()
}

/// One reactor's services.
#[derive(Debug)]
pub(crate) struct EngineReactor {
    id: usize,
    shadow_acks: Arc<ShadowAcks>,
    shadow_answers_seen: u64,
    batches: Batches,
    telemetry: Telemetry,
    gateways: Arc<Gateways>,
    presence: Presence,
    certs: Arc<crate::certs::Certificates>,
    jobs: Arc<crate::jobs::JobEvents>,
}

impl PublishHook for EngineReactor {
    #[inline]
    fn inspect(&mut self, cx: &mut HookCx<'_>, p: &Publisher<'_>, msg: &Message) -> Inspect {
        let t = msg.topic.as_str();
        if t.starts_with("$aws/") {
            if mast_devices::certs::provision::is_server_topic(t) {
                return Inspect::Refuse(Refusal::new(
                    ReasonCode::NOT_AUTHORIZED,
                    "only the server publishes the replies of fleet provisioning",
                ));
            }
            if mast_devices::ota::job::is_server_topic(t)
                || mast_devices::ota::stream::is_server_topic(t)
            {
                return Inspect::Refuse(Refusal::new(
                    ReasonCode::NOT_AUTHORIZED,
                    "only the server publishes the replies and events of jobs",
                ));
            }
        }
        if is_shadow_request(msg) {
            if self.gateways.allows(p.username) {
                self.shadow_acks.mark_gateway(p.conn);
            }
            return Inspect::Claim;
        }
        self.telemetry.inspect(cx, p, msg)
    }

    #[inline]
    fn accept(
        &mut self,
        cx: &mut HookCx<'_>,
        p: &Publisher<'_>,
        msg: &Arc<Message>,
        hold: Hold,
    ) -> Accept {
        if is_shadow_request(msg) {
            return match self.shadow_acks.accept(p.conn, hold) {
                Claimed::Answered => Accept::Ack,
                Claimed::Held => Accept::Held { pause: false },
            };
        }
        self.telemetry.accept(&mut self.batches, cx, p, msg, hold)
    }

    fn end_turn(&mut self, reads: &mut ReadControl) {
        self.telemetry.end_turn(&mut self.batches, reads);
    }

    fn poll(&mut self, cx: &mut HookCx<'_>, done: &mut Vec<(Hold, HoldOutcome)>) {
        self.telemetry.poll(&mut self.batches, cx, done);
        self.shadow_acks
            .poll(self.id, &mut self.shadow_answers_seen, done);
    }

    fn retry_in(&self) -> Option<Duration> {
        self.batches.blocked().then_some(RETRY)
    }

    fn shutdown(&mut self) {
        // Buffered telemetry and the presence rows just written reach the WAL before the
        // store closes.
        self.batches.flush_blocking();
    }
}

impl ClientEvents for EngineReactor {
    fn on_client(&mut self, cx: &mut HookCx<'_>, c: &ClientInfo<'_>, ev: ClientEvent<'_>) {
        if let ClientEvent::Disconnected { .. } = ev {
            self.shadow_acks.forget_gateway(c.conn);
        }
        if let ClientEvent::Subscribed {
            filter,
            granted: Ok(_),
        } = ev
        {
            self.jobs.subscribed(c.client_id, c.conn, filter);
        }
        if let ClientEvent::Connected { .. } = ev
            && let Some((cert, ca)) = self.certs.take_registered(c.client_id)
        {
            self.presence
                .registered(&mut self.batches, cx, c, &cert, &ca);
        }
        self.presence.on_client(&mut self.batches, cx, c, ev);
    }
}
