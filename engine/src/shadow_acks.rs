//! The acknowledgement of a shadow request waits until the shadow service has answered it, so
//! a PUBACK (PUBREC) means the request is durably handled: its change committed, or its refusal
//! decided. The engine's publish hook claims every shadow request topic and holds it here; the
//! service reports each request it has answered for the connection that sent it.
//!
//! Holds are numbered per connection, in the order the reactor accepted them, and answers are
//! counted per connection, in the order the service answered them; both orders are the
//! connection's publish order (a link receives one connection's messages in routing order).
//! Numbers rather than a queue of holds, because the service can answer a request before the
//! reactor's `accept` for it has run (the message is routed first).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use mast_broker::hooks::{Hold, HoldOutcome, ReactorWake};
use mast_broker::ids::ConnRef;

#[derive(Debug, Default)]
struct Conn {
    /// Holds accepted so far, and answers reported so far.
    claimed: u64,
    answered: u64,
    waiting: VecDeque<(u64, Hold)>,
}

#[derive(Debug, Default)]
struct State {
    conns: HashMap<ConnRef, Conn>,
    wakes: HashMap<usize, ReactorWake>,
    /// Connections with gateway rights that have sent a shadow request: they may act for
    /// other things (marked before the request is routed, so before the service sees it).
    gateways: HashSet<ConnRef>,
    /// Per reactor: connections with a hold answered since its last poll (so a poll looks at
    /// those, not at every connection with a request outstanding).
    ready: HashMap<usize, Vec<ConnRef>>,
}

/// Shared by the reactors' hooks and the shadow service.
#[derive(Debug, Default)]
pub struct ShadowAcks {
    state: Mutex<State>,
    /// Answers reported so far, so that a reactor's `poll` takes the lock only when there are
    /// new ones (it runs every turn).
    answers: AtomicU64,
}

/// Whether the hook must hold the acknowledgement.
#[derive(Debug)]
pub(crate) enum Claimed {
    /// Already answered: acknowledge it now.
    Answered,
    /// Held until the service answers.
    Held,
}

impl ShadowAcks {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reactor `id` is woken with `wake` when one of its holds is answered.
    pub(crate) fn register(&self, id: usize, wake: ReactorWake) {
        self.lock().wakes.insert(id, wake);
    }

    /// `conn` has gateway rights (an ACL rule with `gateway = true`): it may read and update
    /// the shadows of other things.
    pub(crate) fn mark_gateway(&self, conn: ConnRef) {
        self.lock().gateways.insert(conn);
    }

    /// Whether `conn` may act for things other than its own client id.
    pub fn is_gateway(&self, conn: ConnRef) -> bool {
        self.lock().gateways.contains(&conn)
    }

    /// `conn` has ended.
    pub(crate) fn forget_gateway(&self, conn: ConnRef) {
        let mut s = self.lock();
        if !s.gateways.is_empty() {
            s.gateways.remove(&conn);
        }
    }

    /// A claimed shadow request of `conn` (after routing).
    pub(crate) fn accept(&self, conn: ConnRef, hold: Hold) -> Claimed {
        let mut s = self.lock();
        let c = s.conns.entry(conn).or_default();
        let n = c.claimed;
        c.claimed += 1;
        if n < c.answered {
            forget_if_settled(&mut s.conns, conn);
            return Claimed::Answered;
        }
        c.waiting.push_back((n, hold));
        Claimed::Held
    }

    /// The service answered one request of each of `conns` (a connection appears once per
    /// request; their replies are durable and sent): one lock, and each reactor with a hold
    /// ready is woken once.
    pub fn answered_all(&self, conns: impl IntoIterator<Item = ConnRef>) {
        let mut s = self.lock();
        let mut wake: Vec<usize> = Vec::new();
        let mut n = 0;
        for conn in conns {
            n += 1;
            let c = s.conns.entry(conn).or_default();
            c.answered += 1;
            let ready = c.waiting.front().is_some_and(|(k, _)| *k < c.answered);
            if ready {
                s.ready.entry(conn.reactor()).or_default().push(conn);
                if !wake.contains(&conn.reactor()) {
                    wake.push(conn.reactor());
                }
            }
        }
        self.answers.fetch_add(n, Ordering::Release);
        for r in wake {
            if let Some(w) = s.wakes.get(&r)
                && let Err(e) = w.wake()
            {
                tracing::error!(error = %e, "waking a reactor failed");
            }
        }
    }

    /// The holds of reactor `id` that are answered; `seen` is the reactor's count of answers
    /// looked at so far.
    pub(crate) fn poll(&self, id: usize, seen: &mut u64, out: &mut Vec<(Hold, HoldOutcome)>) {
        let answers = self.answers.load(Ordering::Acquire);
        if answers == *seen {
            return;
        }
        *seen = answers;
        let mut s = self.lock();
        let Some(ready) = s.ready.remove(&id) else {
            return;
        };
        // A connection answered twice is listed twice; its second visit finds nothing ready.
        for conn in ready {
            let Some(c) = s.conns.get_mut(&conn) else {
                continue;
            };
            while c.waiting.front().is_some_and(|(n, _)| *n < c.answered) {
                if let Some((_, hold)) = c.waiting.pop_front() {
                    out.push((hold, HoldOutcome::Done));
                }
            }
            forget_if_settled(&mut s.conns, conn);
        }
    }
}

/// Every request claimed is answered: nothing is left to count (a new request starts both
/// counts again from zero).
fn forget_if_settled(conns: &mut HashMap<ConnRef, Conn>, conn: ConnRef) {
    if conns
        .get(&conn)
        .is_some_and(|c| c.claimed == c.answered && c.waiting.is_empty())
    {
        conns.remove(&conn);
    }
}
