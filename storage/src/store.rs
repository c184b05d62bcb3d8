//! [`Store`]: the storage engine's front door — open (recover), submit, snapshot, seal, retain.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crossbeam_channel::TrySendError;

use crate::batch::WriteBatch;
use crate::config::StoreConfig;
use crate::error::{StoreError, SubmitError};
use crate::scan::Snapshot;
use crate::schema::Catalog;
use crate::shard::{self, Control, ShardHandle, ShardShared, WriteRequest};
use crate::ticket::{Durability, Notify, Ticket};
use crate::types::ShardId;

/// Counters of the whole store (sums over shards).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Rows stored.
    pub rows: u64,
    /// Points stored.
    pub points: u64,
    /// Points and rows refused.
    pub rejected: u64,
    /// Batches applied.
    pub batches: u64,
    /// WAL groups committed.
    pub groups: u64,
    /// Bytes appended to WALs.
    pub wal_bytes: u64,
    /// fsyncs of WALs.
    pub fsyncs: u64,
    /// Heads sealed.
    pub seals: u64,
    /// Segments removed by retention.
    pub segments_dropped: u64,
    /// Bytes in heads now (gauge).
    pub head_bytes: u64,
    /// Time spent per write stage, ns: resolve, WAL write, fsync, apply, seal.
    pub stage_ns: [u64; 5],
    /// Segment files set aside as `*.seg.corrupt` at start (gauge).
    pub quarantined_segments: u64,
    /// Shards refusing writes after a WAL failure (gauge).
    pub poisoned_shards: u64,
}

/// The storage engine.
///
/// ```
/// use mast_storage::{Durability, ScanRequest, Store, StoreConfig, WriteBatch};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(StoreConfig::new(dir.path())).unwrap();
/// let mut b = WriteBatch::new();
/// let s = b.series("telemetry", &[("device_id", "d1")]);
/// b.row(s, 1_000).f64("temp", 21.5);
/// store.submit(b, Durability::Durable).unwrap().wait().unwrap();
/// let batches = store.snapshot().scan(&ScanRequest::table("telemetry")).unwrap();
/// assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
/// ```
#[derive(Debug)]
pub struct Store {
    cfg: Arc<StoreConfig>,
    catalog: Arc<Catalog>,
    shards: Vec<ShardHandle>,
    _lock: File,
}

const STORE_FILE: &str = "STORE";

impl Store {
    /// Opens (or creates) the store under `cfg.data_dir`, recovering every shard's segments and
    /// WAL. Only one process may open a data directory at a time.
    pub fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        let dir = cfg.data_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io("open", &lock_path, e))?;
        lock.try_lock()
            .map_err(|_| StoreError::Locked(dir.to_path_buf()))?;
        let mut cfg = cfg;
        cfg.shards = shard_count(&dir, cfg.shards)?;
        let cfg = Arc::new(cfg);
        let catalog = Arc::new(Catalog::new(cfg.limits));
        let mut shards = Vec::with_capacity(cfg.shards);
        for i in 0..cfg.shards {
            let id = ShardId(i as u32);
            let ((wtx, wrx), (ctx, crx)) = shard::channels(cfg.queue_capacity);
            let shared = Arc::new(ShardShared::default());
            let thread = shard::spawn(
                id,
                Arc::clone(&cfg),
                Arc::clone(&catalog),
                Arc::clone(&shared),
                wrx,
                crx,
            )?;
            shards.push(ShardHandle {
                id,
                writes: wtx,
                control: ctx,
                shared,
                thread: Some(thread),
            });
        }
        Ok(Store {
            cfg,
            catalog,
            shards,
            _lock: lock,
        })
    }

    /// The configuration in force (with the shard count resolved).
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// The catalog of tables and columns.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The shard that owns a device's rows.
    pub fn shard_of_device(&self, device_id: &str) -> ShardId {
        crate::batch::shard_of_device(device_id, self.shards.len() as u32)
    }

    /// Submits without blocking. A batch whose rows all belong to one shard (every batch of one
    /// device) comes back in [`SubmitError::Full`] when that shard's queue is full — the caller
    /// should stop reading its producer until it can resubmit. Batches spanning shards are split;
    /// parts wait for queue space.
    pub fn try_submit(
        &self,
        batch: WriteBatch,
        durability: Durability,
    ) -> Result<Ticket, SubmitError> {
        self.submit_inner(batch, durability, false, None)
    }

    /// [`try_submit`](Self::try_submit), with `notify` told (on the shard thread) as each part of
    /// the ticket resolves: an event loop polls [`Ticket::is_resolved`] when told instead of
    /// blocking in [`Ticket::wait`].
    pub fn try_submit_notify(
        &self,
        batch: WriteBatch,
        durability: Durability,
        notify: Arc<dyn Notify>,
    ) -> Result<Ticket, SubmitError> {
        self.submit_inner(batch, durability, false, Some(notify))
    }

    /// [`submit`](Self::submit) (waiting for queue space), with `notify` told as each part of
    /// the ticket resolves.
    pub fn submit_notify(
        &self,
        batch: WriteBatch,
        durability: Durability,
        notify: Arc<dyn Notify>,
    ) -> Result<Ticket, SubmitError> {
        self.submit_inner(batch, durability, true, Some(notify))
    }

    /// Submits, waiting for queue space when a shard is full.
    pub fn submit(&self, batch: WriteBatch, durability: Durability) -> Result<Ticket, SubmitError> {
        self.submit_inner(batch, durability, true, None)
    }

    fn submit_inner(
        &self,
        batch: WriteBatch,
        durability: Durability,
        block: bool,
        notify: Option<Arc<dyn Notify>>,
    ) -> Result<Ticket, SubmitError> {
        let mut ticket = Ticket::new(notify);
        let parts = batch.split(self.shards.len() as u32);
        let single = parts.len() == 1;
        for (shard, part, origin) in parts {
            let Some(h) = self.shards.get(shard.0 as usize) else {
                return Err(SubmitError::ShutDown(part));
            };
            let done = ticket.add_part(origin);
            let req = WriteRequest {
                batch: part,
                durability,
                done,
            };
            if single && !block {
                return match h.try_send(req) {
                    Ok(()) => Ok(ticket),
                    Err(TrySendError::Full(r)) => Err(SubmitError::Full {
                        shard,
                        batch: r.batch,
                    }),
                    Err(TrySendError::Disconnected(r)) => Err(SubmitError::ShutDown(r.batch)),
                };
            }
            if let Err(r) = h.send(req) {
                return Err(SubmitError::ShutDown(r.batch));
            }
        }
        Ok(ticket)
    }

    /// A consistent view of every shard: sealed segments plus head data up to every write whose
    /// ticket had resolved when this was called (read-after-ack). Writes of one shard are seen
    /// whole or not at all.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(
            Arc::clone(&self.catalog),
            self.shards.iter().map(|s| (s.id, s.current())).collect(),
        )
    }

    /// Seals every shard's head into segments now (tests, benchmarks, clean shutdown).
    pub fn seal(&self) -> Result<(), StoreError> {
        for s in &self.shards {
            s.request(Control::Seal)
                .ok_or(StoreError::ShardDown(s.id))?
                .map_err(StoreError::Config)?;
        }
        Ok(())
    }

    /// Applies retention as of `now_ns`; returns the number of segments removed.
    pub fn enforce_retention(&self, now_ns: i64) -> Result<usize, StoreError> {
        let mut n = 0;
        for s in &self.shards {
            n += s
                .request(|tx| Control::Retention(now_ns, tx))
                .ok_or(StoreError::ShardDown(s.id))?
                .map_err(StoreError::Config)?;
        }
        Ok(n)
    }

    /// Counters summed over shards.
    pub fn stats(&self) -> StoreStats {
        let mut t = StoreStats::default();
        for s in &self.shards {
            let st = &s.shared.stats;
            let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            t.rows += l(&st.rows);
            t.points += l(&st.points);
            t.rejected += l(&st.rejected);
            t.batches += l(&st.batches);
            t.groups += l(&st.groups);
            t.wal_bytes += l(&st.wal_bytes);
            t.fsyncs += l(&st.fsyncs);
            t.seals += l(&st.seals);
            t.segments_dropped += l(&st.segments_dropped);
            t.head_bytes += l(&st.head_bytes);
            t.quarantined_segments += l(&st.quarantined);
            for (i, a) in [
                &st.resolve_ns,
                &st.wal_write_ns,
                &st.fsync_ns,
                &st.apply_ns,
                &st.seal_ns,
            ]
            .into_iter()
            .enumerate()
            {
                t.stage_ns[i] += l(a);
            }
            t.poisoned_shards += u64::from(s.shared.poisoned.load(Ordering::Relaxed));
        }
        t
    }

    /// Stops the shards: queued writes are processed and the WALs synced.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for s in &self.shards {
            let _ = s.request(Control::Shutdown);
        }
        for s in &mut self.shards {
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The shard count of a data directory: fixed when it is created.
fn shard_count(dir: &Path, wanted: usize) -> Result<usize, StoreError> {
    let path = dir.join(STORE_FILE);
    let wanted = if wanted == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        wanted
    };
    match File::open(&path) {
        Ok(mut f) => {
            let mut s = String::new();
            f.read_to_string(&mut s)
                .map_err(|e| StoreError::io("read", &path, e))?;
            let n = s
                .lines()
                .find_map(|l| l.strip_prefix("shards="))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| StoreError::Config(format!("{} is corrupt", path.display())))?;
            if n != wanted {
                tracing::warn!(
                    configured = wanted,
                    stored = n,
                    "data directory keeps its shard count"
                );
            }
            Ok(n)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = dir.join("STORE.tmp");
            let mut f = File::create(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
            writeln!(f, "format=1\nshards={wanted}")
                .map_err(|e| StoreError::io("write", &tmp, e))?;
            f.sync_all().map_err(|e| StoreError::io("fsync", &tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename", &path, e))?;
            crate::segment::writer::sync_dir(dir).map_err(|e| StoreError::io("fsync", dir, e))?;
            Ok(wanted)
        }
        Err(e) => Err(StoreError::io("open", &path, e)),
    }
}
