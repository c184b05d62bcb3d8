//! The broker's shared state and its operations: sessions, the subscription trie (with shared
//! subscriptions), retained messages, wills, and routing a message to the sessions it matches.
//!
//! Reactor threads call into it; it never does socket IO. Delivering a message pushes it onto
//! the target session's queue and records the owning connection in a [`Notifier`]; the calling
//! reactor wakes the owners once per loop turn, not once per message.

mod introspect;
mod lifecycle;
mod records;
mod route;
mod subs;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use mast_meta::Writer;
use mast_protocol::primitives::Utf8;
use mast_protocol::trie::TopicTrie;

use crate::acl::Acl;
use crate::config::MqttConfig;
use crate::credentials::Credentials;
use crate::link::Wakers;
use crate::message::{Message, now_ms};
use crate::metrics::Counters;
use crate::session::Session;

pub use introspect::ConnectionInfo;
use lifecycle::DelayedWill;
pub(crate) use route::Notifier;
pub(crate) use subs::parse_filter;
use subs::{SubKey, SubVal};

/// The broker.
#[derive(Debug)]
pub struct Broker {
    pub(crate) cfg: Arc<MqttConfig>,
    pub(crate) acl: Acl,
    pub(crate) credentials: Arc<dyn Credentials>,
    subs: RwLock<TopicTrie<SubKey, SubVal>>,
    /// Counts changes of `subs` (bumped under its write lock), so an answer of
    /// [`Broker::has_subscribers`] can be kept until it moves.
    subs_epoch: AtomicU64,
    sessions: Mutex<HashMap<Arc<str>, Arc<Session>>>,
    retained: RwLock<HashMap<Utf8, Arc<Message>>>,
    wills: Mutex<Vec<DelayedWill>>,
    share_rr: AtomicUsize,
    next_client: AtomicU64,
    /// The metadata writer (shared with the services).
    pub(crate) persist: Arc<Writer>,
    /// Counters for /metrics.
    pub counters: Arc<Counters>,
    /// The reactors and links to wake.
    wakers: Arc<Wakers>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Broker {
    /// Builds the broker and restores persisted state from the writer's store.
    pub(crate) fn new(
        cfg: Arc<MqttConfig>,
        credentials: Arc<dyn Credentials>,
        persist: Arc<Writer>,
        wakers: Arc<Wakers>,
    ) -> anyhow::Result<Broker> {
        let weak = Arc::downgrade(&wakers);
        persist.on_commit(move || {
            if let Some(w) = weak.upgrade() {
                w.on_commit();
            }
        });
        let broker = Broker {
            wakers,
            acl: Acl::new(&cfg.acl),
            credentials,
            subs: RwLock::new(TopicTrie::new()),
            subs_epoch: AtomicU64::new(0),
            sessions: Mutex::new(HashMap::new()),
            retained: RwLock::new(HashMap::new()),
            wills: Mutex::new(Vec::new()),
            share_rr: AtomicUsize::new(0),
            next_client: AtomicU64::new(now_ms()),
            persist,
            counters: Arc::new(Counters::default()),
            cfg,
        };
        broker.restore(broker.persist.store())?;
        Ok(broker)
    }

    pub(crate) fn wakers(&self) -> &Wakers {
        &self.wakers
    }
}
