//! Tickets: how a producer learns that its batch was applied (buffered) or is durable.
//!
//! `Store::submit` returns a [`Ticket`] at once; the shard worker resolves it after the batch's WAL
//! group was written (and fsync'd, for [`Durability::Durable`]) and applied to the head, so a query
//! started after the ticket resolved sees the batch (read-after-ack).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::{PointError, WriteError};
use crate::types::Lsn;

/// When a ticket resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Once the batch is in the WAL file (written, not fsync'd) and in the head. Survives a process
    /// crash; may lose the last fsync interval on power loss (see `FsyncPolicy`).
    Buffered,
    /// Once the batch's WAL group has been fsync'd. Survives power loss.
    Durable,
}

/// One point or row the store refused; the rest of its batch was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Index of the row in the submitted batch.
    pub row: u32,
    /// The field, or `None` when the whole row was refused (series limit, bad table or tag).
    pub field: Option<Arc<str>>,
    /// Why.
    pub error: PointError,
}

/// What a resolved ticket reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReceipt {
    /// Rows stored (rows with at least one stored point).
    pub rows: u64,
    /// Points stored.
    pub points: u64,
    /// Points and rows refused.
    pub rejected: Vec<Rejected>,
    /// The highest WAL LSN the batch was written at, per part (one per shard it touched).
    pub lsns: Vec<Lsn>,
}

type Outcome = Result<WriteReceipt, WriteError>;

/// Told when a ticket's part resolves, so an event loop can poll tickets instead of blocking on
/// them (the MQTT reactors wake their `mio::Poll` with it). Called on the shard worker thread:
/// it must be quick and must not block.
pub trait Notify: Send + Sync + std::fmt::Debug {
    /// One part of a ticket resolved.
    fn notify(&self);
}

#[derive(Debug, Default)]
struct Slot {
    state: Mutex<Option<Outcome>>,
    cv: Condvar,
    notify: Option<Arc<dyn Notify>>,
}

/// The worker's end of a ticket.
#[derive(Debug)]
pub(crate) struct Resolver(Arc<Slot>);

impl Resolver {
    pub(crate) fn resolve(self, outcome: Outcome) {
        let mut st = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        *st = Some(outcome);
        self.0.cv.notify_all();
        drop(st);
        if let Some(n) = &self.0.notify {
            n.notify();
        }
    }
}

/// The producer's end: resolves once every shard the batch touched has answered.
#[derive(Debug)]
pub struct Ticket {
    parts: Vec<(Arc<Slot>, Option<Vec<u32>>)>,
    notify: Option<Arc<dyn Notify>>,
}

impl Ticket {
    pub(crate) fn new(notify: Option<Arc<dyn Notify>>) -> Ticket {
        Ticket {
            parts: Vec::new(),
            notify,
        }
    }

    /// Adds a part; `origin` maps the part's row indices back to the submitted batch.
    pub(crate) fn add_part(&mut self, origin: Option<Vec<u32>>) -> Resolver {
        let slot = Arc::new(Slot {
            notify: self.notify.clone(),
            ..Slot::default()
        });
        self.parts.push((Arc::clone(&slot), origin));
        Resolver(slot)
    }

    /// True when every part has resolved.
    pub fn is_resolved(&self) -> bool {
        self.parts
            .iter()
            .all(|(s, _)| s.state.lock().unwrap_or_else(|p| p.into_inner()).is_some())
    }

    /// Blocks until resolved.
    pub fn wait(self) -> Result<WriteReceipt, WriteError> {
        self.wait_inner(None).unwrap_or(Err(WriteError::ShutDown))
    }

    /// Blocks until resolved or `timeout` passes (`None` then: the ticket is dropped, the write
    /// still completes).
    pub fn wait_timeout(self, timeout: Duration) -> Option<Result<WriteReceipt, WriteError>> {
        self.wait_inner(Some(timeout))
    }

    fn wait_inner(self, timeout: Option<Duration>) -> Option<Outcome> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut total = WriteReceipt::default();
        let mut first_err = None;
        for (slot, origin) in self.parts {
            let mut st = slot.state.lock().unwrap_or_else(|p| p.into_inner());
            while st.is_none() {
                st = match deadline {
                    None => slot.cv.wait(st).unwrap_or_else(|p| p.into_inner()),
                    Some(d) => {
                        let left = d.saturating_duration_since(std::time::Instant::now());
                        if left.is_zero() {
                            return None;
                        }
                        slot.cv
                            .wait_timeout(st, left)
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                    }
                };
            }
            match st.take() {
                Some(Ok(r)) => {
                    total.rows += r.rows;
                    total.points += r.points;
                    total.lsns.extend(r.lsns);
                    for mut rej in r.rejected {
                        if let Some(o) = &origin {
                            rej.row = o.get(rej.row as usize).copied().unwrap_or(rej.row);
                        }
                        total.rejected.push(rej);
                    }
                }
                Some(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                None => {}
            }
        }
        total.rejected.sort_by_key(|r| r.row);
        Some(match first_err {
            Some(e) => Err(e),
            None => Ok(total),
        })
    }
}
