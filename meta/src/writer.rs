//! The one way to write metadata while the server runs: a group-commit writer.
//!
//! Every writer of metadata (the broker's sessions and retained messages, presence's device
//! records, the device services) submits its changes here. One thread commits everything that
//! arrived meanwhile in one redb transaction (one fsync). Each submission gets a [`Seq`];
//! [`Writer::committed`] says how far the durable prefix reaches, so whoever acknowledges
//! something (a PUBACK, a reply) holds it back until the state it confirms is on disk.
//!
//! Contract: submissions are committed in the order of their numbers, each whole or not at all,
//! and one number being durable means every smaller one is. After a failed commit nothing more
//! is reported durable (waiters wait forever rather than acknowledge what may be lost); the
//! failure is counted and logged.

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{MetaStore, Table};

/// A submission's number; commits are in number order, so one number being durable means every
/// smaller one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(NonZeroU64);

impl Seq {
    fn new(n: u64) -> Option<Seq> {
        NonZeroU64::new(n).map(Seq)
    }

    pub fn get(self) -> u64 {
        self.0.get()
    }
}

/// How far the durable prefix of submissions reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Committed(u64);

impl Committed {
    /// Is the state that `seq` wrote durable (nothing to wait for is)?
    pub fn covers(self, seq: Option<Seq>) -> bool {
        seq.is_none_or(|s| s.get() <= self.0)
    }
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Puts only when the key holds nothing (a record created once, never overwritten).
    PutIfAbsent {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Del {
        table: Table,
        key: Vec<u8>,
    },
    DelPrefix {
        table: Table,
        prefix: Vec<u8>,
    },
}

type Listener = Box<dyn Fn() + Send + Sync>;
/// A numbered submission.
type Submission = (u64, Vec<Op>);

/// The writer. Shared (`Arc`) by everyone who writes metadata.
pub struct Writer {
    meta: Arc<MetaStore>,
    tx: Mutex<Option<Sender<Submission>>>,
    next: Mutex<u64>,
    committed: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    listeners: Arc<Mutex<Vec<Listener>>>,
    progress: Arc<Progress>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Signalled (under its lock) after each commit and on a failure, for [`Writer::wait`].
#[derive(Default)]
struct Progress {
    lock: Mutex<()>,
    changed: Condvar,
}

impl Progress {
    fn signal(&self) {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.changed.notify_all();
    }
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("committed", &self.committed())
            .field("failures", &self.failures())
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the writer thread over `meta`.
    pub fn start(meta: Arc<MetaStore>) -> Writer {
        let (tx, rx) = mpsc::channel::<Submission>();
        let committed = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let listeners: Arc<Mutex<Vec<Listener>>> = Arc::new(Mutex::new(Vec::new()));
        let progress = Arc::new(Progress::default());
        let (m, c, f, l, p) = (
            Arc::clone(&meta),
            Arc::clone(&committed),
            Arc::clone(&failed),
            Arc::clone(&listeners),
            Arc::clone(&progress),
        );
        let thread = std::thread::Builder::new()
            .name("meta-writer".into())
            .spawn(move || write_loop(&m, &rx, &c, &f, &l, &p))
            .ok();
        Writer {
            meta,
            tx: Mutex::new(Some(tx)),
            next: Mutex::new(1),
            committed,
            failed,
            listeners,
            progress,
            thread: Mutex::new(thread),
        }
    }

    /// The store, for reading.
    pub fn store(&self) -> &Arc<MetaStore> {
        &self.meta
    }

    /// Runs `f` after every commit, on the writer thread (it must not block).
    pub fn on_commit(&self, f: impl Fn() + Send + Sync + 'static) {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(f));
    }

    /// Queues changes; the number to wait for (none for nothing, or once the writer is closed).
    pub fn submit(&self, ops: Vec<Op>) -> Option<Seq> {
        if ops.is_empty() {
            return None;
        }
        // Numbers are taken and sent under one lock, so the channel carries them in order and
        // a commit of number n includes every number below it.
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let seq = *next;
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = tx.as_ref()
            && tx.send((seq, ops)).is_ok()
        {
            *next += 1;
            return Seq::new(seq);
        }
        None
    }

    /// How far the durable prefix reaches.
    pub fn committed(&self) -> Committed {
        Committed(self.committed.load(Ordering::Acquire))
    }

    /// Commits that failed (after the first, nothing more is persisted).
    pub fn failures(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Blocks until `seq` is durable, up to `timeout`; false if it is not by then.
    pub fn wait(&self, seq: Option<Seq>, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut g = self.progress.lock.lock().unwrap_or_else(|e| e.into_inner());
        // The writer moves `committed` before it takes the lock to signal, so a check made
        // under the lock cannot miss the wake-up that follows it.
        loop {
            if self.committed().covers(seq) {
                return true;
            }
            let now = Instant::now();
            if now >= until || self.failures() > 0 {
                return false;
            }
            g = match self.progress.changed.wait_timeout(g, until - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Commits what is queued and stops the writer; later submissions are refused.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(
    meta: &MetaStore,
    rx: &Receiver<Submission>,
    committed: &AtomicU64,
    failed: &AtomicU64,
    listeners: &Mutex<Vec<Listener>>,
    progress: &Progress,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096
            && let Ok(more) = rx.try_recv()
        {
            batch.push(more);
        }
        let last = batch.iter().map(|(s, _)| *s).max().unwrap_or(0);
        let result = meta.write(|t| {
            for (_, ops) in &batch {
                for op in ops {
                    match op {
                        Op::Put { table, key, value } => t.put(*table, key, value)?,
                        Op::PutIfAbsent { table, key, value } => {
                            if t.get(*table, key)?.is_none() {
                                t.put(*table, key, value)?;
                            }
                        }
                        Op::Del { table, key } => {
                            t.remove(*table, key)?;
                        }
                        Op::DelPrefix { table, prefix } => {
                            t.remove_prefix(*table, prefix)?;
                        }
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            // Nothing after a failed commit is reported durable: acknowledgements that wait
            // for it are never sent, and clients resend after reconnecting.
            failed.fetch_add(1, Ordering::Relaxed);
            progress.signal();
            tracing::error!(error = %e, "committing metadata failed; acknowledgements held back");
            while rx.recv().is_ok() {}
            return;
        }
        committed.fetch_max(last, Ordering::AcqRel);
        progress.signal();
        for l in listeners.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            l();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables;

    #[test]
    fn nothing_to_wait_for_is_durable_and_order_is_by_number() {
        assert!(Committed(0).covers(None));
        assert!(!Committed(0).covers(Seq::new(1)));
        assert!(Committed(3).covers(Seq::new(3)));
        assert!(None < Seq::new(1) && Seq::new(1) < Seq::new(2));
    }

    #[test]
    fn submissions_commit_in_order_and_a_closed_writer_refuses_more() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(MetaStore::open(&dir.path().join("meta.redb")).unwrap());
        let w = Writer::start(Arc::clone(&meta));
        let commits = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&commits);
        w.on_commit(move || {
            c.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(w.submit(Vec::new()), None, "nothing to wait for");
        let put = |k: &[u8], v: &[u8]| Op::Put {
            table: tables::DEVICES,
            key: k.to_vec(),
            value: v.to_vec(),
        };
        let a = w.submit(vec![put(b"a", b"1")]);
        let b = w.submit(vec![
            put(b"b", b"2"),
            Op::Del {
                table: tables::DEVICES,
                key: b"a".to_vec(),
            },
        ]);
        let once = |v: &[u8]| Op::PutIfAbsent {
            table: tables::DEVICES,
            key: b"p".to_vec(),
            value: v.to_vec(),
        };
        let p = w.submit(vec![once(b"first"), once(b"second")]);
        assert!(a < b && b < p);
        assert!(w.wait(p, Duration::from_secs(10)));
        assert_eq!(
            meta.get(tables::DEVICES, b"p").unwrap().as_deref(),
            Some(&b"first"[..]),
            "a put-if-absent never overwrites"
        );
        assert!(
            w.committed().covers(a),
            "a later number covers every earlier one"
        );
        assert!(commits.load(Ordering::Relaxed) >= 1);
        assert_eq!(meta.get(tables::DEVICES, b"a").unwrap(), None);
        assert_eq!(
            meta.get(tables::DEVICES, b"b").unwrap().as_deref(),
            Some(&b"2"[..])
        );
        w.close();
        assert_eq!(w.submit(vec![put(b"c", b"3")]), None);
        assert_eq!(w.failures(), 0);
    }
}
