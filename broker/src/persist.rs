//! Broker state in the metadata store: retained messages, persistent sessions (expiry and
//! subscriptions) and the QoS 1/2 messages queued for them.
//!
//! Writes go to one thread that commits them in groups (one redb transaction, one fsync, for
//! everything that arrived meanwhile). Each submission gets a sequence number; `committed()`
//! says how far the durable prefix reaches, so a connection holds back a PUBACK until the state
//! the message created is on disk.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use mast_meta::MetaStore;

use super::ids::{Committed, Seq};

pub(crate) const RETAINED: &str = "mqtt_retained";
pub(crate) const SESSIONS: &str = "mqtt_sessions";
pub(crate) const QUEUE: &str = "mqtt_queue";

/// One change.
#[derive(Debug)]
pub enum Op {
    Put {
        table: &'static str,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Del {
        table: &'static str,
        key: Vec<u8>,
    },
    DelPrefix {
        table: &'static str,
        prefix: Vec<u8>,
    },
}

/// Key of a queued message: client id, a zero byte, then the per-session key (big-endian so
/// keys sort in queue order).
pub(crate) fn queue_key(client_id: &str, key: u64) -> Vec<u8> {
    let mut k = queue_prefix(client_id);
    k.extend_from_slice(&key.to_be_bytes());
    k
}

pub(crate) fn queue_prefix(client_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(client_id.len() + 9);
    k.extend_from_slice(client_id.as_bytes());
    k.push(0);
    k
}

/// The writer.
#[derive(Debug)]
pub(crate) struct Persist {
    tx: Option<Sender<(u64, Vec<Op>)>>,
    next: Mutex<u64>,
    committed: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Persist {
    /// Starts the writer over `meta`; `on_commit` runs after each commit.
    pub(crate) fn start(meta: Arc<MetaStore>, on_commit: Box<dyn Fn() + Send>) -> Persist {
        let (tx, rx) = crossbeam_channel::unbounded::<(u64, Vec<Op>)>();
        let committed = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (c, f) = (Arc::clone(&committed), Arc::clone(&failed));
        let thread = std::thread::Builder::new()
            .name("mqtt-persist".into())
            .spawn(move || writer(&meta, &rx, &c, &f, &*on_commit))
            .ok();
        Persist {
            tx: Some(tx),
            next: Mutex::new(1),
            committed,
            failed,
            thread,
        }
    }

    /// Queues changes; returns the sequence number to wait for (none for nothing, or when the
    /// writer is gone).
    pub(crate) fn submit(&self, ops: Vec<Op>) -> Option<Seq> {
        if ops.is_empty() {
            return None;
        }
        // Numbers are taken and sent under one lock, so the channel carries them in order and
        // a commit of number n includes every number below it.
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let seq = *next;
        if let Some(tx) = &self.tx
            && tx.send((seq, ops)).is_ok()
        {
            *next += 1;
            return Seq::new(seq);
        }
        None
    }

    /// How far the durable prefix reaches.
    pub(crate) fn committed(&self) -> Committed {
        Committed(self.committed.load(Ordering::Acquire))
    }

    /// Commits that failed (after the first, nothing more is persisted).
    pub(crate) fn failures(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Commits what is queued and stops the writer.
    pub(crate) fn close(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Persist {
    fn drop(&mut self) {
        self.close();
    }
}

fn writer(
    meta: &MetaStore,
    rx: &Receiver<(u64, Vec<Op>)>,
    committed: &AtomicU64,
    failed: &AtomicU64,
    on_commit: &dyn Fn(),
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
                        Op::Put { table, key, value } => t.put(table, key, value)?,
                        Op::Del { table, key } => {
                            t.remove(table, key)?;
                        }
                        Op::DelPrefix { table, prefix } => {
                            t.remove_prefix(table, prefix)?;
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
            tracing::error!(error = %e, "persisting MQTT state failed; acknowledgements held back");
            while rx.recv().is_ok() {}
            return;
        }
        committed.fetch_max(last, Ordering::AcqRel);
        on_commit();
    }
}
