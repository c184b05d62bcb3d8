//! A reactor's telemetry batches: payloads decoded during a loop turn go into one open
//! write batch per storage shard; at the end of the turn each open batch is submitted as one
//! request (one ticket for every message in it), so a turn that read a thousand small PUBLISH
//! packets costs the shard one queue slot and one WAL record.
//!
//! - **Durability.** A batch holding a QoS 1/2 message is submitted `Durable`: its ticket resolves
//!   after the WAL group's fsync, and only then are the PUBACK/PUBREC of its messages released.
//!   QoS 0 batches are `Buffered` (fsync'd within `storage.fsync_interval_ms`).
//! - **Wake-ups.** The shard worker resolves a ticket and calls [`TicketWake`], which wakes the
//!   reactor's poll at most once until the reactor looks ([`Batches::poll`]).
//! - **Backpressure.** A shard whose queue is full hands the batch back. It stays open (later
//!   messages for that shard join it) and every connection that fed it stops being read until a
//!   later flush gets it in; the reactor retries each turn, every millisecond while blocked. Memory
//!   is bounded by one read budget per paused connection.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mast_protocol::primitives::Utf8;
use mast_storage::{Durability, Notify, PointError, Store, SubmitError, Ticket, WriteBatch};

use crate::ingest::{ErrorKind, IngestError};
use mast_broker::hooks::{Hold, ReactorWake};
use mast_broker::ids::ConnRef;

/// Wakes a reactor when a ticket it holds resolves; one wake-up until the reactor looks.
#[derive(Debug)]
pub(crate) struct TicketWake {
    flag: AtomicBool,
    waker: ReactorWake,
}

impl TicketWake {
    pub(crate) fn new(waker: ReactorWake) -> TicketWake {
        TicketWake {
            flag: AtomicBool::new(false),
            waker,
        }
    }
}

impl Notify for TicketWake {
    fn notify(&self) {
        if !self.flag.swap(true, Ordering::AcqRel)
            && let Err(e) = self.waker.wake()
        {
            tracing::error!(error = %e, "waking a reactor failed");
        }
    }
}

/// Where a message's outcome goes.
#[derive(Debug)]
pub(crate) struct Part {
    /// The connection (on this reactor), paused while the batch cannot be submitted.
    pub(crate) conn: ConnRef,
    /// The broker's hold on the message's acknowledgement; none for presence rows.
    pub(crate) hold: Option<Hold>,
    /// Device and topic, for the error reply; `None` for rows the server writes itself.
    pub(crate) report: Option<Report>,
    /// Rows of the message in its batch.
    pub(crate) rows: Range<u32>,
}

/// What an error reply names.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) device_id: Arc<str>,
    pub(crate) topic: Utf8,
    pub(crate) packet_id: Option<u16>,
}

/// A message whose batch resolved.
#[derive(Debug)]
pub(crate) struct Done {
    pub(crate) part: Part,
    pub(crate) result: Result<(), IngestError>,
}

#[derive(Debug, Default)]
struct Open {
    batch: WriteBatch,
    durable: bool,
    parts: Vec<Part>,
    /// The shard's queue was full at the last flush.
    blocked: bool,
}

#[derive(Debug)]
struct Inflight {
    ticket: Ticket,
    parts: Vec<Part>,
}

/// Connections to stop or resume reading after a flush.
#[derive(Debug, Default)]
pub(crate) struct Flushed {
    pub(crate) pause: Vec<ConnRef>,
    pub(crate) resume: Vec<ConnRef>,
}

/// One reactor's open and in-flight batches.
#[derive(Debug)]
pub(crate) struct Batches {
    store: Arc<Store>,
    wake: Arc<TicketWake>,
    open: Vec<Open>,
    inflight: Vec<Inflight>,
    /// Outcomes known without a ticket (the store was shut down).
    failed: Vec<Done>,
}

impl Batches {
    pub(crate) fn new(store: Arc<Store>, wake: Arc<TicketWake>) -> Batches {
        let shards = store.shards();
        Batches {
            store,
            wake,
            open: (0..shards).map(|_| Open::default()).collect(),
            inflight: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Decodes one message into the open batch of `device_id`'s shard with `decode` (which adds
    /// all of its rows or none). `Ok(None)`: it had no rows, there is nothing to wait for.
    /// `Ok(Some(blocked))`: its outcome comes from [`Batches::poll`]; `blocked` says the shard's
    /// queue is full (the connection should stop reading).
    pub(crate) fn add(
        &mut self,
        device_id: &str,
        durable: bool,
        mut part: Part,
        decode: impl FnOnce(&mut WriteBatch) -> Result<usize, IngestError>,
    ) -> Result<Option<bool>, IngestError> {
        let shard = self.store.shard_of_device(device_id).0 as usize;
        let Some(open) = self.open.get_mut(shard) else {
            return Err(IngestError::new(ErrorKind::Storage, "no such shard"));
        };
        let start = open.batch.rows() as u32;
        decode(&mut open.batch)?;
        let end = open.batch.rows() as u32;
        if end == start {
            return Ok(None);
        }
        part.rows = start..end;
        open.durable |= durable;
        open.parts.push(part);
        Ok(Some(open.blocked))
    }

    /// Some shard's queue was full at the last flush.
    pub(crate) fn blocked(&self) -> bool {
        self.open.iter().any(|o| o.blocked)
    }

    /// Submits every open batch that has something in it.
    pub(crate) fn flush(&mut self) -> Flushed {
        let mut out = Flushed::default();
        for open in &mut self.open {
            if open.parts.is_empty() {
                continue;
            }
            let durability = if open.durable {
                Durability::Durable
            } else {
                Durability::Buffered
            };
            let batch = std::mem::take(&mut open.batch);
            let notify: Arc<dyn Notify> = Arc::<TicketWake>::clone(&self.wake);
            match self.store.try_submit_notify(batch, durability, notify) {
                Ok(ticket) => {
                    let parts = std::mem::take(&mut open.parts);
                    if std::mem::take(&mut open.blocked) {
                        out.resume.extend(parts.iter().map(|p| p.conn));
                    }
                    open.durable = false;
                    self.inflight.push(Inflight { ticket, parts });
                }
                Err(SubmitError::Full { batch, .. }) => {
                    open.batch = batch;
                    open.blocked = true;
                    out.pause.extend(open.parts.iter().map(|p| p.conn));
                }
                Err(e) => {
                    let resume = std::mem::take(&mut open.blocked);
                    open.durable = false;
                    for part in std::mem::take(&mut open.parts) {
                        if resume {
                            out.resume.push(part.conn);
                        }
                        self.failed.push(Done {
                            part,
                            result: Err(IngestError::new(ErrorKind::Storage, e.to_string())),
                        });
                    }
                }
            }
        }
        out
    }

    /// Submits what is open, waiting for queue space (at shutdown: buffered QoS 0 data is not
    /// lost on a clean stop).
    pub(crate) fn flush_blocking(&mut self) {
        for open in &mut self.open {
            if open.batch.is_empty() {
                continue;
            }
            let batch = std::mem::take(&mut open.batch);
            if let Err(e) = self.store.submit(batch, Durability::Buffered) {
                tracing::warn!(error = %e, "telemetry not stored at shutdown");
            }
            open.parts.clear();
        }
    }

    /// True when a ticket may have resolved since the last look.
    pub(crate) fn woken(&self) -> bool {
        self.wake.flag.swap(false, Ordering::AcqRel) || !self.failed.is_empty()
    }

    /// Moves the outcomes of resolved batches to `out`.
    pub(crate) fn poll(&mut self, out: &mut Vec<Done>) {
        out.append(&mut self.failed);
        let mut i = 0;
        while i < self.inflight.len() {
            if !self.inflight[i].ticket.is_resolved() {
                i += 1;
                continue;
            }
            let Inflight { ticket, parts } = self.inflight.swap_remove(i);
            match ticket.wait() {
                Ok(receipt) => {
                    let rejected = &receipt.rejected;
                    for part in parts {
                        let lo = rejected.partition_point(|r| r.row < part.rows.start);
                        let hi = rejected.partition_point(|r| r.row < part.rows.end);
                        let result = match rejected.get(lo..hi) {
                            Some(bad) if !bad.is_empty() => Err(refusal(bad)),
                            _ => Ok(()),
                        };
                        out.push(Done { part, result });
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "telemetry write failed");
                    for part in parts {
                        out.push(Done {
                            part,
                            result: Err(IngestError::new(ErrorKind::Storage, e.to_string())),
                        });
                    }
                }
            }
        }
    }
}

/// The error for a message some of whose points storage refused (the rest are stored).
fn refusal(bad: &[mast_storage::Rejected]) -> IngestError {
    let quota = bad.iter().any(|r| {
        matches!(
            r.error,
            PointError::TooManyColumns { .. } | PointError::TooManySeries { .. }
        )
    });
    let kind = if quota {
        ErrorKind::Quota
    } else {
        ErrorKind::Payload
    };
    let first = &bad[0];
    let what = if bad.len() == 1 {
        "1 point refused".to_owned()
    } else {
        format!("{} points refused", bad.len())
    };
    IngestError::new(
        kind,
        format!("{what} (the others are stored): {}", first.error),
    )
}
