//! The shard worker loop: drain a group of writes, resolve them, append them to the WAL as one
//! group, fsync once if any needs durability, apply them to the head, resolve their tickets. Between
//! groups it answers readers, seals the head when it is large or old, and enforces retention.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};

use super::resolve::{NameCache, Resolved, accepted_only, resolve};
use super::{Control, ShardShared, ShardVersion, WriteRequest};
use crate::batch;
use crate::config::{FsyncPolicy, StoreConfig};
use crate::error::{StoreError, WriteError};
use crate::head::Head;
use crate::schema::Catalog;
use crate::segment::Segment;
use crate::ticket::{Durability, WriteReceipt};
use crate::types::{Lsn, ShardId};
use crate::wal::{Wal, WalOptions};

pub(super) struct Worker {
    pub(super) id: ShardId,
    pub(super) cfg: Arc<StoreConfig>,
    pub(super) catalog: Arc<Catalog>,
    pub(super) shared: Arc<ShardShared>,
    pub(super) dir: PathBuf,
    pub(super) wal: Wal,
    pub(super) head: Head,
    pub(super) names: NameCache,
    pub(super) segments: Arc<Vec<Arc<Segment>>>,
    pub(super) next_segment: u64,
    /// Highest LSN applied to the head.
    pub(super) head_lsn: Lsn,
    /// When the oldest unsealed write arrived.
    pub(super) head_since: Option<Instant>,
    poisoned: Option<String>,
    /// Oldest buffered write not yet fsync'd.
    unsynced_since: Option<Instant>,
    next_retention: Instant,
    seal_backoff_until: Option<Instant>,
    applied: u64,
    payload: Vec<u8>,
}

/// Starts shard `id`: recovers its segments and WAL, then runs its loop on a new thread. Returns
/// once recovery finished (or failed).
pub(crate) fn spawn(
    id: ShardId,
    cfg: Arc<StoreConfig>,
    catalog: Arc<Catalog>,
    shared: Arc<ShardShared>,
    writes: Receiver<WriteRequest>,
    control: Receiver<Control>,
) -> Result<JoinHandle<()>, StoreError> {
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let handle = std::thread::Builder::new()
        .name(format!("mast-shard-{id}"))
        .spawn(move || match Worker::recover(id, cfg, catalog, shared) {
            Ok(mut w) => {
                let _ = ready_tx.send(Ok(()));
                w.run(&writes, &control);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(|e| StoreError::io("spawn shard thread", "", e))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            let _ = handle.join();
            Err(e)
        }
        Err(_) => Err(StoreError::ShardDown(id)),
    }
}

impl Worker {
    fn recover(
        id: ShardId,
        cfg: Arc<StoreConfig>,
        catalog: Arc<Catalog>,
        shared: Arc<ShardShared>,
    ) -> Result<Worker, StoreError> {
        let dir = cfg.data_dir.join(format!("shard-{}", id.0));
        let seg_dir = dir.join("segments");
        std::fs::create_dir_all(&seg_dir).map_err(|e| StoreError::io("create", &seg_dir, e))?;
        let mut quarantined = Vec::new();
        let mut names = NameCache::default();
        let segments =
            super::seal::load_segments(&seg_dir, &catalog, &mut quarantined, &mut names.series)?;
        shared
            .stats
            .quarantined
            .store(quarantined.len() as u64, Ordering::Relaxed);
        let next_segment = segments.last().map_or(1, |s| s.meta.id + 1);
        let seg_max_lsn = segments.iter().map(|s| s.meta.max_lsn).max().unwrap_or(0);
        let mut head = Head::new(cfg.block_rows);
        let mut head_lsn = Lsn(seg_max_lsn);
        let opts = WalOptions {
            shard: id.0,
            fault: cfg.wal_fault.clone(),
            first_lsn: Lsn(seg_max_lsn + 1),
            ..WalOptions::default()
        };
        let wal_dir = dir.join("wal");
        let (wal, report) = Wal::open(&wal_dir, opts, |lsn, payload| {
            match batch::codec::decode(payload) {
                Ok(b) => {
                    let r = resolve(&b, &catalog, &mut names, &mut head);
                    for rej in &r.rejected {
                        tracing::warn!(shard = id.0, %lsn, error = %rej.error, "WAL replay refused a point");
                    }
                    apply(&mut head, &r);
                    head_lsn = head_lsn.max(lsn);
                }
                Err(e) => {
                    tracing::error!(shard = id.0, %lsn, error = %e, "undecodable WAL record skipped");
                }
            }
            Ok::<(), std::convert::Infallible>(())
        })
        .map_err(|e| StoreError::Wal {
            shard: id,
            message: e.to_string(),
        })?;
        for p in &report.problems {
            tracing::warn!(shard = id.0, file = %p.file.display(), offset = p.offset, kind = ?p.kind,
                discarded = p.discarded_bytes, "WAL recovery stopped at a damaged record");
        }
        if report.records > 0 {
            tracing::info!(
                shard = id.0,
                records = report.records,
                rows = head.rows(),
                "WAL replayed"
            );
        }
        let head_since = (head.rows() > 0).then(Instant::now);
        let now = Instant::now();
        let mut w = Worker {
            id,
            next_retention: now,
            cfg,
            catalog,
            shared,
            dir,
            wal,
            head,
            names,
            segments: Arc::new(segments.into_iter().map(Arc::new).collect()),
            next_segment,
            head_lsn,
            head_since,
            poisoned: None,
            unsynced_since: None,
            seal_backoff_until: None,
            applied: 0,
            payload: Vec::with_capacity(1 << 16),
        };
        w.publish();
        Ok(w)
    }

    pub(super) fn seg_dir(&self) -> PathBuf {
        self.dir.join("segments")
    }

    /// Publishes a version with everything applied so far.
    pub(super) fn publish(&mut self) {
        let v = ShardVersion {
            segments: Arc::clone(&self.segments),
            head: Arc::new(self.head.view()),
            applied: self.applied,
        };
        self.shared.version.store(Arc::new(v));
    }

    fn run(&mut self, writes: &Receiver<WriteRequest>, control: &Receiver<Control>) {
        let mut group: Vec<WriteRequest> = Vec::with_capacity(self.cfg.max_group_requests);
        loop {
            while let Ok(c) = control.try_recv() {
                if self.control(c, writes) {
                    return;
                }
            }
            let timeout = self.next_deadline();
            select! {
                recv(control) -> c => match c {
                    Ok(c) => if self.control(c, writes) { return },
                    Err(_) => { self.shutdown(writes); return }
                },
                recv(writes) -> r => match r {
                    Ok(r) => {
                        group.push(r);
                        while group.len() < self.cfg.max_group_requests {
                            match writes.try_recv() {
                                Ok(r) => group.push(r),
                                Err(_) => break,
                            }
                        }
                        self.write_group(&mut group);
                    }
                    Err(_) => { self.shutdown(writes); return }
                },
                default(timeout) => {}
            }
            self.maintain();
        }
    }

    /// Handles a control message; true means stop.
    fn control(&mut self, c: Control, writes: &Receiver<WriteRequest>) -> bool {
        match c {
            Control::Publish(reply) => {
                self.publish();
                let _ = reply.send(());
            }
            Control::Seal(reply) => {
                let r = self.seal().map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            Control::Retention(now, reply) => {
                let r = self.enforce_retention(now).map_err(|e| e.to_string());
                let _ = reply.send(r);
            }
            Control::Shutdown(reply) => {
                self.shutdown(writes);
                let _ = reply.send(());
                return true;
            }
        }
        false
    }

    fn shutdown(&mut self, writes: &Receiver<WriteRequest>) {
        let mut group: Vec<WriteRequest> = writes.try_iter().collect();
        if !group.is_empty() {
            self.write_group(&mut group);
        }
        if self.poisoned.is_none()
            && let Err(e) = self.wal.sync()
        {
            tracing::error!(shard = self.id.0, error = %e, "WAL sync at shutdown failed");
        }
        self.publish();
    }

    fn next_deadline(&self) -> Duration {
        let mut d = Duration::from_millis(500);
        if let (Some(t), FsyncPolicy::Batched { max_delay }) = (self.unsynced_since, self.cfg.fsync)
        {
            d = d.min(max_delay.saturating_sub(t.elapsed()));
        }
        d
    }

    /// Periodic work between groups: interval fsync, sealing, retention.
    fn maintain(&mut self) {
        if let (Some(t), FsyncPolicy::Batched { max_delay }) = (self.unsynced_since, self.cfg.fsync)
            && t.elapsed() >= max_delay
            && self.poisoned.is_none()
        {
            let started = Instant::now();
            match self.wal.sync() {
                Ok(()) => {
                    self.unsynced_since = None;
                    self.count_fsync(started);
                }
                Err(e) => self.poison(format!("WAL fsync failed: {e}")),
            }
        }
        let too_big = self.head.bytes() >= self.cfg.max_head_bytes;
        let too_old = self
            .head_since
            .is_some_and(|t| t.elapsed() >= self.cfg.max_head_age);
        let backing_off = self.seal_backoff_until.is_some_and(|t| Instant::now() < t);
        if (too_big || too_old)
            && !backing_off
            && let Err(e) = self.seal()
        {
            tracing::error!(shard = self.id.0, error = %e, "sealing the head failed; retrying in 10 s");
            self.seal_backoff_until = Some(Instant::now() + Duration::from_secs(10));
        }
        if Instant::now() >= self.next_retention {
            self.next_retention = Instant::now() + self.cfg.retention_check_interval;
            if let Err(e) = self.enforce_retention(crate::now_ns()) {
                tracing::error!(shard = self.id.0, error = %e, "retention failed");
            }
        }
    }

    fn count_fsync(&self, started: Instant) {
        let s = &self.shared.stats;
        s.fsyncs.fetch_add(1, Ordering::Relaxed);
        s.fsync_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    fn poison(&mut self, cause: String) {
        tracing::error!(shard = self.id.0, %cause, "shard poisoned: refusing writes until restart");
        self.shared.poisoned.store(true, Ordering::Release);
        self.poisoned.get_or_insert(cause);
    }

    fn poisoned_error(&self) -> WriteError {
        WriteError::Poisoned {
            shard: self.id,
            cause: self.poisoned.clone().unwrap_or_default(),
        }
    }

    /// The group commit.
    fn write_group(&mut self, group: &mut Vec<WriteRequest>) {
        if self.poisoned.is_some() {
            for r in group.drain(..) {
                r.done.resolve(Err(self.poisoned_error()));
            }
            return;
        }
        let stats = &self.shared.stats;
        let t0 = Instant::now();
        let mut staged: Vec<(WriteRequest, Resolved, Option<Lsn>)> =
            Vec::with_capacity(group.len());
        let mut durable = false;
        let mut failure = None;
        let mut wal_ns = 0u64;
        for req in group.drain(..) {
            let resolved = resolve(&req.batch, &self.catalog, &mut self.names, &mut self.head);
            let mut lsn = None;
            if !resolved.rows.is_empty() && failure.is_none() {
                let tw = Instant::now();
                self.payload.clear();
                match accepted_only(&req.batch, &resolved) {
                    Some(b) => batch::codec::encode(&b, &mut self.payload),
                    None => batch::codec::encode(&req.batch, &mut self.payload),
                }
                match self.wal.append(&self.payload) {
                    Ok(l) => {
                        lsn = Some(l);
                        stats
                            .wal_bytes
                            .fetch_add(self.payload.len() as u64, Ordering::Relaxed);
                    }
                    Err(e) => failure = Some(format!("WAL append failed: {e}")),
                }
                wal_ns += tw.elapsed().as_nanos() as u64;
                durable |= req.durability == Durability::Durable;
            }
            staged.push((req, resolved, lsn));
        }
        let resolve_ns = (t0.elapsed().as_nanos() as u64).saturating_sub(wal_ns);
        if failure.is_none() {
            let sync = match self.cfg.fsync {
                FsyncPolicy::Always => true,
                FsyncPolicy::Batched { .. } => durable,
                FsyncPolicy::Never => false,
            };
            let started = Instant::now();
            let r = if sync {
                self.wal.sync()
            } else {
                self.wal.flush()
            };
            match r {
                Ok(()) if sync => {
                    self.unsynced_since = None;
                    self.count_fsync(started);
                }
                Ok(()) => {
                    let wrote = staged.iter().any(|s| s.2.is_some());
                    if wrote && self.cfg.fsync != FsyncPolicy::Never {
                        self.unsynced_since.get_or_insert(started);
                    }
                    stats
                        .wal_write_ns
                        .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    failure = Some(format!(
                        "WAL {} failed: {e}",
                        if sync { "fsync" } else { "write" }
                    ))
                }
            }
        }
        if let Some(cause) = failure {
            self.poison(cause);
            for (req, _, _) in staged {
                req.done.resolve(Err(self.poisoned_error()));
            }
            return;
        }
        let ta = Instant::now();
        let mut receipts = Vec::with_capacity(staged.len());
        for (req, resolved, lsn) in staged {
            apply(&mut self.head, &resolved);
            if let Some(l) = lsn {
                self.head_lsn = self.head_lsn.max(l);
            }
            stats
                .rows
                .fetch_add(resolved.rows.len() as u64, Ordering::Relaxed);
            stats.points.fetch_add(resolved.points, Ordering::Relaxed);
            stats
                .rejected
                .fetch_add(resolved.rejected.len() as u64, Ordering::Relaxed);
            stats.batches.fetch_add(1, Ordering::Relaxed);
            receipts.push((
                req.done,
                WriteReceipt {
                    rows: resolved.rows.len() as u64,
                    points: resolved.points,
                    rejected: resolved.rejected,
                    lsns: lsn.into_iter().collect(),
                },
            ));
        }
        if self.head.rows() > 0 {
            self.head_since.get_or_insert_with(Instant::now);
        }
        self.applied += 1;
        // Release: a reader that Acquire-loads this count and then asks for a version is
        // guaranteed a version that includes this group (see ShardHandle::current).
        self.shared.applied.store(self.applied, Ordering::Release);
        stats.groups.fetch_add(1, Ordering::Relaxed);
        stats.resolve_ns.fetch_add(resolve_ns, Ordering::Relaxed);
        stats
            .apply_ns
            .fetch_add(ta.elapsed().as_nanos() as u64, Ordering::Relaxed);
        stats
            .head_bytes
            .store(self.head.bytes() as u64, Ordering::Relaxed);
        for (done, receipt) in receipts {
            done.resolve(Ok(receipt));
        }
    }
}

/// Applies resolved rows to the head.
pub(super) fn apply(head: &mut Head, r: &Resolved) {
    for row in &r.rows {
        head.push_row(row.table, row.series, row.time, r.row_fields(row));
    }
}
