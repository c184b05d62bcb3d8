//! Shards: one worker thread per shard owns that shard's WAL, head and series; producers hand it
//! batches through a bounded lock-free queue, readers ask it for an immutable view.
//!
//! Nothing on the write path takes a lock: the queue is crossbeam's array channel, the worker's
//! state is its own, and readers get data through an `ArcSwap` of [`ShardVersion`]. The catalog
//! mutex is taken only when a name is new to the shard.

mod resolve;
mod seal;
mod worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

use crate::batch::WriteBatch;
use crate::head::HeadView;
use crate::segment::Segment;
use crate::ticket::{Durability, Resolver};
use crate::types::ShardId;

pub(crate) use worker::spawn;

/// A write handed to a shard.
#[derive(Debug)]
pub(crate) struct WriteRequest {
    pub(crate) batch: WriteBatch,
    pub(crate) durability: Durability,
    pub(crate) done: Resolver,
}

/// Requests other than writes.
#[derive(Debug)]
pub(crate) enum Control {
    /// Publish a fresh version (everything applied so far), then reply.
    Publish(Sender<()>),
    /// Seal the head into segments now.
    Seal(Sender<Result<(), String>>),
    /// Drop segments past their TTL as of `now` (ns); reply with the number dropped.
    Retention(i64, Sender<Result<usize, String>>),
    /// Process queued writes, sync the WAL and stop.
    Shutdown(Sender<()>),
}

/// What readers see of a shard: sealed segments and a head view, consistent with each other.
#[derive(Debug, Default)]
pub(crate) struct ShardVersion {
    /// Sorted by segment id (write order).
    pub(crate) segments: Arc<Vec<Arc<Segment>>>,
    pub(crate) head: Arc<HeadView>,
    /// Write groups applied when this version was taken.
    pub(crate) applied: u64,
}

/// Counters a shard exports (all monotonic except the gauges noted).
#[derive(Debug, Default)]
pub(crate) struct ShardStats {
    pub(crate) rows: AtomicU64,
    pub(crate) points: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) groups: AtomicU64,
    pub(crate) wal_bytes: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) seals: AtomicU64,
    pub(crate) segments_dropped: AtomicU64,
    pub(crate) resolve_ns: AtomicU64,
    pub(crate) wal_write_ns: AtomicU64,
    pub(crate) fsync_ns: AtomicU64,
    pub(crate) apply_ns: AtomicU64,
    pub(crate) seal_ns: AtomicU64,
    /// Gauge: segment files set aside at start because they failed verification.
    pub(crate) quarantined: AtomicU64,
    /// Gauge: bytes in the head.
    pub(crate) head_bytes: AtomicU64,
}

/// State shared between a shard's worker and everyone else.
#[derive(Debug, Default)]
pub(crate) struct ShardShared {
    pub(crate) version: ArcSwap<ShardVersion>,
    /// Write groups applied to the head. Release-stored by the worker after applying a group and
    /// before resolving its tickets; Acquire-loaded by readers to decide whether the published
    /// version is stale.
    pub(crate) applied: AtomicU64,
    pub(crate) poisoned: AtomicBool,
    pub(crate) stats: ShardStats,
}

/// The store's handle on one shard.
#[derive(Debug)]
pub(crate) struct ShardHandle {
    pub(crate) id: ShardId,
    pub(crate) writes: Sender<WriteRequest>,
    pub(crate) control: Sender<Control>,
    pub(crate) shared: Arc<ShardShared>,
    pub(crate) thread: Option<JoinHandle<()>>,
}

impl ShardHandle {
    pub(crate) fn try_send(&self, req: WriteRequest) -> Result<(), TrySendError<WriteRequest>> {
        self.writes.try_send(req)
    }

    pub(crate) fn send(&self, req: WriteRequest) -> Result<(), WriteRequest> {
        self.writes.send(req).map_err(|e| e.into_inner())
    }

    /// A version holding every write applied before this call.
    pub(crate) fn current(&self) -> Arc<ShardVersion> {
        let applied = self.shared.applied.load(Ordering::Acquire);
        let v = self.shared.version.load_full();
        if v.applied >= applied {
            return v;
        }
        let (tx, rx) = bounded(1);
        if self.control.send(Control::Publish(tx)).is_ok() {
            // a worker that died cannot answer; the last published version is all there is
            let _ = rx.recv_timeout(Duration::from_secs(60));
        }
        self.shared.version.load_full()
    }

    pub(crate) fn request<T>(&self, make: impl FnOnce(Sender<T>) -> Control) -> Option<T> {
        let (tx, rx) = bounded(1);
        self.control.send(make(tx)).ok()?;
        rx.recv().ok()
    }
}

pub(crate) fn channels(
    capacity: usize,
) -> (
    (Sender<WriteRequest>, Receiver<WriteRequest>),
    (Sender<Control>, Receiver<Control>),
) {
    (bounded(capacity.max(1)), crossbeam_channel::unbounded())
}
