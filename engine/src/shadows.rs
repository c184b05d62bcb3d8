//! The shadow service: AWS IoT Device Shadow over MQTT. A broker link subscribed to every shadow
//! request topic (`mast_devices::shadow::topic::REQUEST_FILTERS`) runs the rules of
//! `mast_devices::shadow` on its own thread and answers on the reply topics.
//!
//! Contract:
//! - **Durable before replied.** An accepted change is submitted to the metadata writer, and its
//!   `/accepted`, `/delta` and `/documents` replies are published only once that commit is
//!   durable. Every reply, rejections included, waits for the commits submitted before it, so
//!   replies go out in request order and never speak of a state that is not on disk.
//! - **One writer.** This thread is the only writer of the `shadows` table, so it keeps the
//!   shadows it has read in memory and reads the store once per shadow.
//! - **Who may ask.** A client may touch only the shadows of the thing named by its client id
//!   (AWS's policy template `$aws/things/${iot:ClientId}/…`); another client's request gets a
//!   403 error document, sent to that connection alone.
//! - **In flight.** More than [`MAX_IN_FLIGHT`] requests of one connection waiting for their
//!   commit get 429, as AWS limits them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mast_broker::Broker;
use mast_broker::ids::ConnRef;
use mast_broker::link::{Link, Received, Requester};
use mast_broker::message::Message;
use mast_devices::shadow::topic::{Op, REQUEST_FILTERS, Request};
use mast_devices::shadow::{self, Rejected, Shadow, ShadowError, Source};
use mast_meta::tables::SHADOWS;
use mast_meta::{MetaStore, Seq};
use mast_protocol::connect::QoS;

/// Requests of one connection that may wait for their commit at once.
pub const MAX_IN_FLIGHT: usize = 10;

/// A running shadow service.
#[derive(Debug)]
pub struct ShadowService {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ShadowService {
    /// Opens a link on `broker` and starts answering; shadows are read from `meta`.
    pub fn start(broker: &Arc<Broker>, meta: Arc<MetaStore>) -> std::io::Result<ShadowService> {
        let mut link = broker.open_link("shadows");
        for f in REQUEST_FILTERS {
            if let Err(code) = link.subscribe(f, QoS::AtLeastOnce) {
                return Err(std::io::Error::other(format!("subscribing {f}: {code:?}")));
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("shadows".into())
            .spawn(move || Worker::new(link, meta).run(&flag))?;
        Ok(ShadowService {
            stop,
            thread: Some(thread),
        })
    }

    /// Answers what was asked, waits for its commits, and stops.
    pub fn shutdown(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ShadowService {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

/// Replies waiting for a commit.
struct Pending {
    seq: Option<Seq>,
    conn: Option<ConnRef>,
    out: Vec<Out>,
}

enum Out {
    /// To every subscriber of the topic.
    Publish(Message),
    /// To the requesting connection alone.
    Reply(Requester, Message),
}

struct Worker {
    link: Link,
    meta: Arc<MetaStore>,
    /// Shadows read or written so far (`None`: none stored).
    shadows: HashMap<Vec<u8>, Option<Shadow>>,
    pending: VecDeque<Pending>,
    in_flight: HashMap<ConnRef, usize>,
    /// The last commit submitted: every reply waits for it.
    last: Option<Seq>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Worker {
    fn new(link: Link, meta: Arc<MetaStore>) -> Worker {
        Worker {
            link,
            meta,
            shadows: HashMap::new(),
            pending: VecDeque::new(),
            in_flight: HashMap::new(),
            last: None,
        }
    }

    fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            // recv returns early when a commit completes, so replies go out without delay.
            if let Some(r) = self.link.recv(Duration::from_millis(100)) {
                self.handle(r);
                for _ in 0..1024 {
                    let Some(r) = self.link.try_recv() else { break };
                    self.handle(r);
                }
            }
            self.flush();
        }
        // What was accepted is answered before the service goes.
        let last = self.last;
        if !self.link.wait_durable(last, Duration::from_secs(10)) {
            tracing::warn!("shadow changes not durable at shutdown; their replies are not sent");
        }
        self.flush();
    }

    /// Publishes the replies whose commit is durable, in order.
    fn flush(&mut self) {
        while let Some(p) = self.pending.front() {
            if !self.link.durable(p.seq) {
                break;
            }
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            if let Some(c) = p.conn
                && let Some(n) = self.in_flight.get_mut(&c)
            {
                *n -= 1;
                if *n == 0 {
                    self.in_flight.remove(&c);
                }
            }
            for o in p.out {
                match o {
                    Out::Publish(m) => {
                        self.link.publish(m);
                    }
                    Out::Reply(to, m) => {
                        self.link.reply(&to, m);
                    }
                }
            }
        }
    }

    fn handle(&mut self, r: Received) {
        let topic = r.message.topic.as_str().to_owned();
        let Some(req) = Request::parse(&topic) else {
            return;
        };
        let payload = &r.message.payload[..];
        let now = now_secs();
        let reject_to = |error: ShadowError| {
            let rejected = Rejected::of(error, payload);
            Message::new(
                &req.reply(req.op, "rejected"),
                rejected.document(now).to_string(),
                QoS::AtLeastOnce,
            )
        };
        let conn = r.from.as_ref().map(|f| f.conn);
        // Only the thing itself: another client hears the refusal alone.
        let allowed = r.from.as_ref().is_some_and(|f| &*f.client_id == req.thing);
        if !allowed {
            if let Some(from) = r.from.clone() {
                let m = reject_to(ShadowError::forbidden());
                self.queue(None, vec![Out::Reply(from, m)]);
            }
            return;
        }
        if let Err(e) = shadow::check_names(req.thing, req.shadow) {
            self.queue(None, vec![Out::Publish(reject_to(e))]);
            return;
        }
        if let Some(c) = conn
            && self.in_flight.get(&c).copied().unwrap_or(0) >= MAX_IN_FLIGHT
        {
            self.queue(
                None,
                vec![Out::Publish(reject_to(ShadowError::too_many_requests()))],
            );
            return;
        }
        let key = req.key();
        let current = match self.load(&key) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, thing = req.thing, "reading a shadow failed");
                self.queue(None, vec![Out::Publish(reject_to(ShadowError::internal()))]);
                return;
            }
        };
        let reply = |suffix: &str, doc: serde_json::Value| {
            Out::Publish(Message::new(
                &req.reply(req.op, suffix),
                doc.to_string(),
                QoS::AtLeastOnce,
            ))
        };
        let rejected = |r: Rejected| reply("rejected", r.document(now));
        let (write, out) = match req.op {
            Op::Get => match shadow::get(current.as_ref(), payload, req.display_name(), now) {
                Ok(doc) => (None, vec![reply("accepted", doc)]),
                Err(r) => (None, vec![rejected(r)]),
            },
            Op::Delete => {
                match shadow::delete(current.as_ref(), payload, req.display_name(), now) {
                    Ok((tomb, doc)) => (Some(tomb), vec![reply("accepted", doc)]),
                    Err(r) => (None, vec![rejected(r)]),
                }
            }
            Op::Update => match shadow::update(current.as_ref(), payload, Source::Device, now) {
                Ok(u) => {
                    let mut out = vec![reply("accepted", u.accepted)];
                    if let Some(d) = u.delta {
                        out.push(Out::Publish(Message::new(
                            &req.reply(Op::Update, "delta"),
                            d.to_string(),
                            QoS::AtLeastOnce,
                        )));
                    }
                    out.push(Out::Publish(Message::new(
                        &req.reply(Op::Update, "documents"),
                        u.documents.to_string(),
                        QoS::AtLeastOnce,
                    )));
                    (Some(u.shadow), out)
                }
                Err(r) => (None, vec![rejected(r)]),
            },
        };
        if let Some(s) = write {
            let seq = self.link.persist(vec![mast_meta::Op::Put {
                table: SHADOWS,
                key: key.clone(),
                value: s.encode(),
            }]);
            if seq.is_none() {
                // The writer is closed (shutting down): nothing is stored, nothing accepted.
                self.queue(None, vec![Out::Publish(reject_to(ShadowError::internal()))]);
                return;
            }
            self.last = seq;
            self.shadows.insert(key, Some(s));
        }
        if let Some(c) = conn {
            *self.in_flight.entry(c).or_default() += 1;
        }
        self.pending.push_back(Pending {
            seq: self.last,
            conn,
            out,
        });
    }

    /// Replies that wait only for the commits before them.
    fn queue(&mut self, conn: Option<ConnRef>, out: Vec<Out>) {
        self.pending.push_back(Pending {
            seq: self.last,
            conn,
            out,
        });
    }

    /// The stored shadow. A record this version cannot read is reported and refuses every
    /// request (500), rather than being overwritten.
    fn load(&mut self, key: &[u8]) -> Result<Option<Shadow>, String> {
        if let Some(s) = self.shadows.get(key) {
            return Ok(s.clone());
        }
        let s = match self.meta.get(SHADOWS, key).map_err(|e| e.to_string())? {
            None => None,
            Some(bytes) => match Shadow::decode(&bytes) {
                Some(s) => Some(s),
                None => {
                    self.meta
                        .report_unreadable(SHADOWS, key, "not a shadow record of version 1");
                    return Err("unreadable shadow record".into());
                }
            },
        };
        self.shadows.insert(key.to_vec(), s.clone());
        Ok(s)
    }
}
