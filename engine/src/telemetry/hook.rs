//! Telemetry as a publish hook: a PUBLISH on `devices/{id}/telemetry[/{table}]` is claimed,
//! routed to subscribers like any message, decoded into the reactor's open batch for its shard,
//! and its acknowledgement is held until the batch is durable (QoS 1/2) — or refused with a reason
//! code and a message on `devices/{id}/errors`.
//!
//! Refused before routing (nobody may feed another device's consumers): a topic that cannot
//! carry telemetry, or a device id other than the publisher's without gateway rights. Refused
//! after routing: a payload that does not decode (it was still delivered).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use mast_protocol::connect::QoS;
use mast_protocol::primitives::Utf8;
use mast_protocol::properties::PropertyValues;
use mast_protocol::reason::ReasonCode;

use super::batches::{Batches, Done, Part, Report};
use super::gateways::Gateways;
use crate::ingest::{self as decode, ErrorKind, IngestError, TelemetryPath};
use mast_broker::hooks::{
    Accept, EndReason, Hold, HoldOutcome, HookCx, Inspect, Publisher, ReadControl, Refusal,
};
use mast_broker::message::{Message, now_ms, now_ns};

impl From<&IngestError> for Refusal {
    fn from(e: &IngestError) -> Refusal {
        Refusal::new(e.kind.reason_code(), &e.message)
    }
}

/// One reactor's telemetry hook (the batches are shared with presence, so they are passed in).
#[derive(Debug)]
pub(crate) struct Telemetry {
    path: Arc<TelemetryPath>,
    gateways: Arc<Gateways>,
    done: Vec<Done>,
}

impl Telemetry {
    pub(crate) fn new(path: Arc<TelemetryPath>, gateways: Arc<Gateways>) -> Telemetry {
        Telemetry {
            path,
            gateways,
            done: Vec::new(),
        }
    }

    /// May this publisher write telemetry for `device_id`: its own, or any as a gateway.
    fn may_write_for(&self, p: &Publisher<'_>, device_id: &str) -> bool {
        device_id == &**p.client_id || self.gateways.allows(p.username)
    }

    pub(crate) fn inspect(
        &mut self,
        cx: &mut HookCx<'_>,
        p: &Publisher<'_>,
        msg: &Message,
    ) -> Inspect {
        let Some(parsed) = decode::parse_topic(msg.topic.as_str()) else {
            return Inspect::Pass;
        };
        let error = match parsed {
            Ok(t) if self.may_write_for(p, t.device_id) => return Inspect::Claim,
            Ok(t) => IngestError::new(
                ErrorKind::NotAuthorized,
                format!(
                    "client {:?} may publish telemetry only for itself, not for device {:?} (no gateway rights)",
                    &**p.client_id, t.device_id
                ),
            ),
            Err(e) => e,
        };
        // The refusal goes to the publisher, not to the device it named.
        let report = report(Arc::clone(p.client_id), p, msg);
        self.report_error(cx, &report, &error);
        Inspect::Refuse(Refusal::from(&error))
    }

    pub(crate) fn accept(
        &mut self,
        batches: &mut Batches,
        cx: &mut HookCx<'_>,
        p: &Publisher<'_>,
        msg: &Arc<Message>,
        hold: Hold,
    ) -> Accept {
        // Claimed, so the topic parses and the publisher may write for the device.
        let Some(Ok(t)) = decode::parse_topic(msg.topic.as_str()) else {
            return Accept::Ack;
        };
        let device_id: Arc<str> = if t.device_id == &**p.client_id {
            Arc::clone(p.client_id)
        } else {
            Arc::from(t.device_id)
        };
        let report = report(Arc::clone(&device_id), p, msg);
        let content_type = msg.properties.content_type.as_ref().map(Utf8::as_str);
        let now = now_ns();
        let part = Part {
            conn: p.conn,
            hold: Some(hold),
            report: Some(report.clone()),
            rows: 0..0,
        };
        let durable = p.delivery.level() > QoS::AtMostOnce;
        let tag_keys = &self.path.tag_keys;
        let result = batches.add(&device_id, durable, part, |b| {
            decode::decode(&msg.payload, content_type, &t, now, tag_keys, b)
        });
        match result {
            Ok(Some(pause)) => Accept::Held { pause },
            // Nothing to store (an empty array).
            Ok(None) => Accept::Ack,
            Err(e) => {
                self.report_error(cx, &report, &e);
                Accept::Refuse(Refusal::from(&e))
            }
        }
    }

    pub(crate) fn end_turn(&mut self, batches: &mut Batches, reads: &mut ReadControl) {
        let f = batches.flush();
        reads.pause.extend(f.pause);
        reads.resume.extend(f.resume);
    }

    /// The outcomes of resolved batches: error replies first, then the holds.
    pub(crate) fn poll(
        &mut self,
        batches: &mut Batches,
        cx: &mut HookCx<'_>,
        out: &mut Vec<(Hold, HoldOutcome)>,
    ) {
        if !batches.woken() {
            return;
        }
        batches.poll(&mut self.done);
        for d in std::mem::take(&mut self.done) {
            if let (Some(report), Err(e)) = (&d.part.report, &d.result) {
                self.report_error(cx, report, e);
            }
            let Some(hold) = d.part.hold else {
                continue;
            };
            let outcome = match &d.result {
                Ok(()) => HoldOutcome::Done,
                Err(e) if e.kind == ErrorKind::Storage => HoldOutcome::Failed {
                    refusal: Refusal::from(e),
                    end: EndReason::StorageFailure,
                },
                Err(e) => HoldOutcome::Refused(Refusal::from(e)),
            };
            out.push((hold, outcome));
        }
    }

    /// Publishes an ingest error on `devices/{id}/errors` (JSON), for the device to subscribe to.
    fn report_error(&self, cx: &mut HookCx<'_>, r: &Report, e: &IngestError) {
        self.path.counters.refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(device_id = %r.device_id, topic = r.topic.as_str(), error = %e, "telemetry refused");
        let code: ReasonCode = e.kind.reason_code();
        let body = serde_json::json!({
            "topic": r.topic.as_str(),
            "packet_id": r.packet_id,
            "code": code.0,
            "reason": code.name(),
            "error": e.message,
            "time": now_ms(),
        });
        cx.publish(Message {
            topic: Utf8::new(&format!("devices/{}/errors", r.device_id)),
            payload: Bytes::from(body.to_string()),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: PropertyValues {
                payload_format_utf8: Some(true),
                content_type: Some(Utf8::from_static("application/json")),
                ..PropertyValues::default()
            }
            .into(),
            origin: None,
            origin_conn: None,
            supersedes: false,
            expires_at: None,
        });
    }
}

fn report(device_id: Arc<str>, p: &Publisher<'_>, msg: &Message) -> Report {
    Report {
        device_id,
        topic: msg.topic.clone(),
        packet_id: p.delivery.packet_id().map(|id| id.0.get()),
    }
}
