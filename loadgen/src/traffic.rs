//! Publishers, subscribers and idle connections on a few mio threads: the engine behind `pub`,
//! `sub`, `conn` and every `bench` scenario. Each thread opens its share of the connections,
//! subscribes its subscribers, waits for every other thread (so no message is published before
//! all subscriptions are in place), then publishes at the asked pace and counts what comes back.
//!
//! A publisher's run ends with a PINGREQ round trip: the broker answers packets in order, so its
//! PINGRESP says everything sent before has been read; totals count only that. Subscribers stop
//! when every publisher is done and they hold every copy they can expect (acknowledged messages
//! × copies per message), or after `idle_exit` of silence (QoS 0 may lose some).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use mast_protocol::connect::QoS;
use mast_protocol::primitives::Utf8;
use mio::{Events, Poll};

use crate::client::{Conn, Dial, Event, KeepAlive, Phase, connect_all, pump};
use crate::stats::{Counters, Errors, Hist, Meter, Shown};

/// What one connection does.
#[derive(Debug, Clone)]
pub(crate) enum Role {
    /// Publishes to this topic.
    Pub(String),
    /// Subscribes to this filter.
    Sub(String),
    /// Holds the connection.
    Idle,
}

/// One connection of the run: its place (for pacing and source addresses), client id and role.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) ordinal: usize,
    pub(crate) client_id: String,
    pub(crate) role: Role,
}

/// What `pub` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PayloadFormat {
    /// `--size` bytes (at least 12): the send time and a marker, so subscribers measure
    /// end-to-end latency.
    Raw,
    /// JSON telemetry (`{"ts","values"}`, an array when --rows > 1).
    Json,
    /// InfluxDB line-protocol telemetry.
    Line,
}

/// How the publishers and subscribers behave.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    pub(crate) qos: u8,
    pub(crate) sub_qos: u8,
    pub(crate) retain: bool,
    pub(crate) size: usize,
    pub(crate) format: PayloadFormat,
    pub(crate) rows: usize,
    pub(crate) fields: usize,
    /// Messages per second over all publishers (0: as fast as the broker takes them).
    pub(crate) rate: f64,
    /// Between two messages of one publisher (zero: no per-publisher pace).
    pub(crate) interval: Duration,
    /// Messages in all (0: no limit).
    pub(crate) limit: u64,
    /// Unacknowledged QoS 1/2 messages per publisher (the broker's Receive Maximum caps it).
    pub(crate) inflight: usize,
    /// How long publishing (or holding, or listening without publishers) lasts.
    pub(crate) duration: Duration,
    /// Copies of each message the subscribers get in all.
    pub(crate) copies: u64,
    /// Subscribers give up after this long without a message once publishing is over (or,
    /// without publishers in the run, once the first message came).
    pub(crate) idle_exit: Duration,
    /// Without publishers in the run: stop after this many messages (0: no limit).
    pub(crate) receive_limit: u64,
    /// Say on stderr when every connection is up (`conn: N connected in X s; holding for D s`),
    /// for scripts that measure the broker while the connections are held.
    pub(crate) announce: bool,
}

/// What a run did.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) publishers: usize,
    pub(crate) subscribers: usize,
    pub(crate) connected: usize,
    /// Connections still up when the run ended.
    pub(crate) alive: usize,
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    pub(crate) received: u64,
    /// From the start to the end of publishing (drain included).
    pub(crate) pub_seconds: f64,
    /// From the first to the last message received.
    pub(crate) recv_seconds: f64,
    pub(crate) seconds_to_connect: f64,
    pub(crate) ack: Hist,
    pub(crate) e2e: Hist,
    pub(crate) connect: Hist,
    pub(crate) errors: Errors,
    /// Per publisher that connected: client id and messages it had accepted (acknowledged at
    /// QoS 1/2, read by the broker at QoS 0).
    pub(crate) accepted: Vec<(String, u64)>,
    pub(crate) timeline: crate::stats::Timeline,
}

/// What one thread hands back.
#[derive(Default)]
struct Part {
    sent: u64,
    acked: u64,
    received: u64,
    pub_end: Option<Instant>,
    first_msg: Option<Instant>,
    last_msg: Option<Instant>,
    ack: Hist,
    e2e: Hist,
    connect: Hist,
    errors: Errors,
    connected: usize,
    alive: usize,
    accepted: Vec<(String, u64)>,
}

/// State shared by the threads of a run.
struct Shared {
    counters: Arc<Counters>,
    /// Threads whose publishers are still at it.
    publishing: AtomicUsize,
    /// Threads connected and subscribed (or failed).
    ready: AtomicUsize,
    /// The start time is set: publish.
    go: AtomicBool,
    start: std::sync::OnceLock<Instant>,
    has_publishers: bool,
    /// A thread failed: the others stop.
    abort: std::sync::atomic::AtomicBool,
    /// Connections up, over all threads.
    connected: AtomicUsize,
}

/// Runs `members` (dealt to `threads` threads) with `load`; prints rate lines under `label`.
pub(crate) fn run(
    dial: &Dial,
    members: Vec<Member>,
    load: &Load,
    threads: usize,
    label: &'static str,
    shown: Shown,
) -> anyhow::Result<Outcome> {
    let publishers = members
        .iter()
        .filter(|m| matches!(m.role, Role::Pub(_)))
        .count();
    let subscribers = members
        .iter()
        .filter(|m| matches!(m.role, Role::Sub(_)))
        .count();
    let groups = crate::opts::split(members.len(), threads);
    let pub_threads = groups
        .iter()
        .filter(|g| g.iter().any(|&i| matches!(members[i].role, Role::Pub(_))))
        .count();
    let shared = Arc::new(Shared {
        counters: Arc::new(Counters::default()),
        publishing: AtomicUsize::new(pub_threads),
        ready: AtomicUsize::new(0),
        go: AtomicBool::new(false),
        start: std::sync::OnceLock::new(),
        has_publishers: publishers > 0,
        abort: std::sync::atomic::AtomicBool::new(false),
        connected: AtomicUsize::new(0),
    });
    let t_connect = Instant::now();
    let mut handles = Vec::new();
    // Each publisher's share of the limit: the first `limit % publishers` get one more.
    let mut pub_rank = 0u64;
    let mut plans = Vec::new();
    for g in &groups {
        let mut mine = Vec::new();
        for &i in g {
            let m = members[i].clone();
            let quota = match m.role {
                Role::Pub(_) if load.limit > 0 => {
                    let n = publishers as u64;
                    let q = load.limit / n + u64::from(pub_rank < load.limit % n);
                    pub_rank += 1;
                    q
                }
                Role::Pub(_) => {
                    pub_rank += 1;
                    u64::MAX
                }
                _ => 0,
            };
            mine.push((m, quota));
        }
        plans.push(mine);
    }
    for mine in plans {
        let (dial, load, shared) = (dial.clone(), load.clone(), Arc::clone(&shared));
        let share = mine
            .iter()
            .filter(|(m, _)| matches!(m.role, Role::Pub(_)))
            .count() as f64
            / publishers.max(1) as f64;
        handles.push(std::thread::spawn(move || -> anyhow::Result<Part> {
            let r = worker(&dial, mine, &load, load.rate * share, &shared);
            if r.is_err() {
                shared.abort.store(true, Ordering::Relaxed);
            }
            r
        }));
    }
    let threads = handles.len();
    while shared.ready.load(Ordering::Acquire) < threads {
        std::thread::sleep(Duration::from_millis(1));
    }
    let seconds_to_connect = t_connect.elapsed().as_secs_f64();
    if load.announce {
        eprintln!(
            "{label}: {} connected in {seconds_to_connect:.2} s; holding for {} s",
            shared.connected.load(Ordering::Acquire),
            load.duration.as_secs()
        );
    }
    let start = Instant::now();
    let _ = shared.start.set(start);
    let planned = (!load.duration.is_zero()).then_some(load.duration);
    let meter = Meter::start(label, Arc::clone(&shared.counters), shown, planned);
    shared.go.store(true, Ordering::Release);
    let mut out = Outcome {
        publishers,
        subscribers,
        seconds_to_connect,
        ..Outcome::default()
    };
    let (mut pub_end, mut first, mut last) = (None::<Instant>, None::<Instant>, None::<Instant>);
    let worked = crate::opts::join_workers(handles, "a worker");
    out.timeline = meter.finish();
    for p in worked? {
        out.sent += p.sent;
        out.acked += p.acked;
        out.received += p.received;
        out.ack.merge(&p.ack);
        out.e2e.merge(&p.e2e);
        out.connect.merge(&p.connect);
        out.errors.merge(p.errors);
        out.connected += p.connected;
        out.alive += p.alive;
        out.accepted.extend(p.accepted);
        pub_end = pub_end.max(p.pub_end);
        first = match (first, p.first_msg) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        last = last.max(p.last_msg);
    }
    out.pub_seconds = pub_end.map_or(0.0, |e| (e - start).as_secs_f64());
    out.recv_seconds = match (first, last) {
        (Some(f), Some(l)) => (l - f).as_secs_f64(),
        _ => 0.0,
    };
    Ok(out)
}

/// One publisher's pace and progress.
struct Pace {
    quota: u64,
    sent: u64,
    accepted: u64,
    next_at: Instant,
}

fn worker(
    dial: &Dial,
    mine: Vec<(Member, u64)>,
    load: &Load,
    rate: f64,
    shared: &Shared,
) -> anyhow::Result<Part> {
    let mut part = Part::default();
    let counted = mine.iter().any(|(m, _)| matches!(m.role, Role::Pub(_)));
    let mut poll = Poll::new()?;
    let ids: Vec<(usize, String)> = mine
        .iter()
        .map(|(m, _)| (m.ordinal, m.client_id.clone()))
        .collect();
    let opened = connect_all(&mut poll, dial, &ids);
    let subscribed = opened.and_then(|o| subscribe(&mut poll, o, &mine, load));
    if let Ok((c, _)) = &subscribed {
        shared.connected.fetch_add(c.len(), Ordering::AcqRel);
    }
    // Meet the other threads whatever happened, so none waits forever on a failed one; keep
    // this thread's connections alive meanwhile (others may still be ramping up).
    shared.ready.fetch_add(1, Ordering::AcqRel);
    // Nothing is read meanwhile: messages that arrive once another thread has started
    // publishing wait in the socket for the run loop, which counts them.
    let mut subscribed = subscribed;
    let mut keep_alive = KeepAlive::new(dial.settings.keep_alive);
    while !shared.go.load(Ordering::Acquire) {
        if let Ok((conns, _)) = &mut subscribed {
            keep_alive.tick(conns);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (mut conns, (members, (errors, connect))) = match subscribed {
        Ok(s) => s,
        Err(e) => {
            if counted {
                shared.publishing.fetch_sub(1, Ordering::AcqRel);
            }
            return Err(e);
        }
    };
    let start = *shared.start.get().expect("start is set before go");
    part.connected = conns.len();
    part.errors = errors;
    part.connect = connect;
    let topics: Vec<Option<Utf8>> = members
        .iter()
        .map(|(m, _)| match &m.role {
            Role::Pub(t) => Some(Utf8::new(t)),
            _ => None,
        })
        .collect();
    let mut paces: Vec<Pace> = members
        .iter()
        .map(|(_, quota)| Pace {
            quota: *quota,
            sent: 0,
            accepted: 0,
            next_at: start,
        })
        .collect();
    let mut telemetry: Vec<Option<Telemetry>> = members
        .iter()
        .map(|(m, _)| {
            (matches!(m.role, Role::Pub(_)) && load.format != PayloadFormat::Raw)
                .then(|| Telemetry::new(load.format, load.rows, load.fields, m.ordinal as u64 + 1))
        })
        .collect();
    let has_pubs = topics.iter().any(Option::is_some);
    if counted && !has_pubs {
        // Every publisher of this thread failed to connect: nothing to wait for here.
        part.pub_end = Some(start);
        shared.publishing.fetch_sub(1, Ordering::AcqRel);
    }
    let has_subs = members.iter().any(|(m, _)| matches!(m.role, Role::Sub(_)));
    let mut raw = vec![b'x'; load.size.max(RAW_HEADER)];
    raw[8..RAW_HEADER].copy_from_slice(RAW_MAGIC);
    let end = start + load.duration;
    let mut events = Events::with_capacity(1024);
    let mut publishing = has_pubs;
    let mut draining = false;
    let mut reported = [0u64; 3];
    let mut sent_total = 0u64;
    let paced = rate > 0.0 || !load.interval.is_zero();
    let mut turn = 0usize;
    loop {
        let now = Instant::now();
        keep_alive.tick(&mut conns);
        if publishing
            && (now >= end
                || paces
                    .iter()
                    .zip(&conns)
                    .all(|(p, c)| p.sent >= p.quota || c.phase != Phase::Connected))
        {
            // Publishing is over: ask each publisher's broker side to confirm it read all.
            publishing = false;
            draining = true;
            for (c, t) in conns.iter_mut().zip(&topics) {
                if t.is_some() && c.phase == Phase::Connected {
                    c.ping();
                }
            }
        }
        if draining
            && conns.iter().zip(&topics).all(|(c, t)| {
                t.is_none()
                    || c.phase != Phase::Connected
                    || (!c.ping_pending() && c.inflight() == 0)
            })
        {
            draining = false;
            part.pub_end = Some(Instant::now());
            shared.publishing.fetch_sub(1, Ordering::AcqRel);
        }
        if draining && now > end + Duration::from_secs(60) {
            part.errors
                .add("drain: the broker did not answer within 60 s");
            draining = false;
            part.pub_end = Some(Instant::now());
            shared.publishing.fetch_sub(1, Ordering::AcqRel);
        }
        let mut sent_any = false;
        if publishing && !conns.is_empty() {
            // Publishers take turns, one message each per round, starting one further each
            // pass: a paced budget is shared fairly (the first publisher must not take it all).
            // Unpaced, each sends as much as its window and socket take.
            let n = conns.len();
            let per_turn = if paced { 1 } else { usize::MAX };
            loop {
                let mut progressed = false;
                for j in 0..n {
                    let k = (turn + j) % n;
                    let Some(topic) = &topics[k] else { continue };
                    let c = &mut conns[k];
                    if c.phase != Phase::Connected {
                        continue;
                    }
                    let p = &mut paces[k];
                    let window = load.inflight.min(c.receive_maximum);
                    let mut sent_here = 0;
                    while sent_here < per_turn
                        && c.pending() < 64 * 1024
                        && p.sent < p.quota
                        && (load.qos == 0 || c.inflight() < window)
                        && (rate == 0.0
                            || (sent_total as f64) < rate * start.elapsed().as_secs_f64())
                        && (load.interval.is_zero() || p.next_at <= now)
                    {
                        let body = match &mut telemetry[k] {
                            Some(t) => t.next(),
                            None => {
                                raw[..8].copy_from_slice(&now_ns().to_be_bytes());
                                Bytes::copy_from_slice(&raw)
                            }
                        };
                        c.publish(topic, body, load.qos, load.retain);
                        p.sent += 1;
                        sent_total += 1;
                        sent_here += 1;
                        if !load.interval.is_zero() {
                            p.next_at += load.interval;
                        }
                    }
                    progressed |= sent_here > 0;
                }
                sent_any |= progressed;
                if !progressed || !paced {
                    break;
                }
            }
            turn = (turn + 1) % n;
        }
        // Subscribers whose connections all closed have nothing left to wait for.
        let subs_live = has_subs
            && conns
                .iter()
                .zip(&members)
                .any(|(c, (m, _))| matches!(m.role, Role::Sub(_)) && c.phase == Phase::Connected);
        let subs_done = !subs_live || {
            let over = shared.publishing.load(Ordering::Acquire) == 0;
            let silent = part.last_msg.map_or(start, |t| t).elapsed() >= load.idle_exit;
            if shared.has_publishers {
                let c = &shared.counters;
                let basis = if load.qos.min(load.sub_qos) == 0 {
                    c.sent.load(Ordering::Relaxed)
                } else {
                    c.acked.load(Ordering::Relaxed)
                };
                over && (c.received.load(Ordering::Relaxed) >= basis * load.copies || silent)
            } else {
                now >= end
                    || (load.receive_limit > 0
                        && shared.counters.received.load(Ordering::Relaxed) >= load.receive_limit)
                    || (part.first_msg.is_some() && silent)
            }
        };
        let pubs_done = !publishing && !draining;
        let idle_done = has_pubs || has_subs || now >= end;
        if (pubs_done && subs_done && idle_done) || shared.abort.load(Ordering::Relaxed) {
            break;
        }
        let timeout = if !publishing {
            // Nothing to pace: wake for traffic, or to check the end now and then.
            Duration::from_millis(if has_pubs || has_subs { 5 } else { 50 })
        } else if sent_any && !paced {
            Duration::ZERO
        } else {
            Duration::from_millis(1)
        };
        pump(
            &mut poll,
            &mut events,
            &mut conns,
            timeout,
            &mut |k, e| match e {
                Event::Acked { us, .. } => {
                    part.acked += 1;
                    part.ack.record(us);
                    paces[k].accepted += 1;
                }
                Event::Message { payload: p, .. } => {
                    let t = Instant::now();
                    part.received += 1;
                    part.first_msg.get_or_insert(t);
                    part.last_msg = Some(t);
                    if let Some(stamp) = raw_stamp(&p) {
                        part.e2e.record(now_ns().saturating_sub(stamp) / 1000);
                    }
                }
                Event::Error(r) | Event::Refused(r) => part.errors.add(r),
                Event::Connected(_) | Event::Subscribed => {}
            },
        )?;
        let now_counts = [sent_total, part.acked, part.received];
        let c = &shared.counters;
        c.sent
            .fetch_add(now_counts[0] - reported[0], Ordering::Relaxed);
        c.acked
            .fetch_add(now_counts[1] - reported[1], Ordering::Relaxed);
        c.received
            .fetch_add(now_counts[2] - reported[2], Ordering::Relaxed);
        reported = now_counts;
    }
    for (c, t) in conns.iter().zip(&topics) {
        if t.is_some() && c.inflight() > 0 {
            for _ in 0..c.inflight() {
                part.errors.add("unacknowledged when the connection closed");
            }
        }
    }
    // QoS 0: a publisher's messages count as taken once its drain PINGRESP came back; one whose
    // connection closed before that cannot say what the broker read.
    if load.qos == 0 {
        for ((p, c), t) in paces.iter_mut().zip(&conns).zip(&topics) {
            if t.is_none() {
                continue;
            }
            if c.phase == Phase::Connected && !c.ping_pending() {
                p.accepted = p.sent;
            } else if p.sent > 0 {
                part.errors
                    .0
                    .entry("unconfirmed QoS 0 messages (the connection closed)".into())
                    .and_modify(|n| *n += p.sent)
                    .or_insert(p.sent);
            }
        }
    }
    part.alive = conns.iter().filter(|c| c.phase == Phase::Connected).count();
    part.sent = sent_total;
    part.accepted = members
        .iter()
        .zip(&paces)
        .filter(|((m, _), _)| matches!(m.role, Role::Pub(_)))
        .map(|((m, _), p)| (m.client_id.clone(), p.accepted))
        .collect();
    Ok(part)
}

type Subscribed = (Vec<Conn>, (Vec<(Member, u64)>, (Errors, Hist)));

/// Sends each subscriber's SUBSCRIBE and waits for the SUBACKs; returns the connections that
/// came up with their members.
fn subscribe(
    poll: &mut Poll,
    opened: crate::client::Opened,
    mine: &[(Member, u64)],
    load: &Load,
) -> anyhow::Result<Subscribed> {
    let mut conns = opened.conns;
    let mut errors = opened.errors;
    let members: Vec<(Member, u64)> = opened.index.iter().map(|&k| mine[k].clone()).collect();
    let qos = match load.sub_qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    // Per connection: still waiting for its SUBACK.
    let mut pending: Vec<bool> = vec![false; conns.len()];
    for ((c, (m, _)), w) in conns.iter_mut().zip(&members).zip(pending.iter_mut()) {
        if let Role::Sub(filter) = &m.role {
            c.subscribe(filter, qos);
            *w = true;
        }
    }
    let mut events = Events::with_capacity(1024);
    let t0 = Instant::now();
    loop {
        // A subscriber whose connection closed (a broker may disconnect on a bad filter) is
        // an error of its own, not a reason to wait.
        for (c, w) in conns.iter().zip(pending.iter_mut()) {
            if *w && c.phase != Phase::Connected {
                *w = false;
                errors.add("subscribe: the connection closed before SUBACK");
            }
        }
        let waiting = pending.iter().filter(|w| **w).count();
        if waiting == 0 {
            break;
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "{waiting} SUBSCRIBEs got no SUBACK within 60 s"
        );
        pump(
            poll,
            &mut events,
            &mut conns,
            Duration::from_millis(5),
            &mut |k, e| match e {
                Event::Subscribed => pending[k] = false,
                Event::Error(r) if r.starts_with("suback") => {
                    errors.add(r);
                    pending[k] = false;
                }
                Event::Error(r) => errors.add(r),
                _ => {}
            },
        )?;
    }
    Ok((conns, (members, (errors, opened.connect_us))))
}

/// Raw payloads start with the send time (ns since the epoch, big endian) and this marker, so a
/// subscriber times only mast-loadgen's own messages.
const RAW_MAGIC: &[u8; 4] = b"MLG1";
const RAW_HEADER: usize = 12;

/// The send time of a raw mast-loadgen payload, `None` for anything else.
fn raw_stamp(p: &[u8]) -> Option<u64> {
    (p.len() >= RAW_HEADER && &p[8..RAW_HEADER] == RAW_MAGIC)
        .then(|| u64::from_be_bytes(p[..8].try_into().unwrap_or([0; 8])))
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Telemetry payloads for one connection: rows at 1 ms steps from the start time, values that
/// wander like sensor readings (one decimal).
struct Telemetry {
    format: PayloadFormat,
    rows: usize,
    fields: usize,
    next_ms: u64,
    step: u64,
    buf: String,
}

impl Telemetry {
    fn new(format: PayloadFormat, rows: usize, fields: usize, seed: u64) -> Self {
        Telemetry {
            format,
            rows: rows.max(1),
            fields: fields.max(1),
            next_ms: now_ns() / 1_000_000,
            step: seed,
            buf: String::new(),
        }
    }

    fn next(&mut self) -> Bytes {
        use std::fmt::Write;
        self.buf.clear();
        let json = self.format == PayloadFormat::Json;
        if json && self.rows > 1 {
            self.buf.push('[');
        }
        for r in 0..self.rows {
            let ts = self.next_ms;
            self.next_ms += 1;
            self.step = self
                .step
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let base = (self.step >> 40) % 4000;
            if json {
                if r > 0 {
                    self.buf.push(',');
                }
                let _ = write!(self.buf, "{{\"ts\":{ts},\"values\":{{");
            } else {
                self.buf.push_str("m ");
            }
            for f in 0..self.fields {
                // One decimal, formatted from integers (float formatting would make the
                // generator the bottleneck).
                let v = base + f as u64 * 7;
                let sep = if f > 0 { "," } else { "" };
                let q = if json { "\"" } else { "" };
                let eq = if json { ":" } else { "=" };
                let _ = write!(self.buf, "{sep}{q}f{f}{q}{eq}{}.{}", v / 10, v % 10);
            }
            if json {
                self.buf.push_str("}}");
            } else {
                let _ = writeln!(self.buf, " {}", ts * 1_000_000);
            }
        }
        if json && self.rows > 1 {
            self.buf.push(']');
        }
        Bytes::copy_from_slice(self.buf.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_payloads_parse_and_count_their_points() {
        let mut t = Telemetry::new(PayloadFormat::Json, 3, 2, 1);
        let v: serde_json::Value = serde_json::from_slice(&t.next()).unwrap();
        let rows = v.as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["values"].as_object().unwrap().len(), 2);
        let (a, b) = (
            rows[0]["ts"].as_u64().unwrap(),
            rows[1]["ts"].as_u64().unwrap(),
        );
        assert_eq!(b, a + 1, "rows of one connection get distinct times");
        let mut l = Telemetry::new(PayloadFormat::Line, 2, 3, 1);
        let text = String::from_utf8(l.next().to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("m f0="));
        assert_eq!(lines[0].split(' ').nth(1).unwrap().split(',').count(), 3);
        let single = Telemetry::new(PayloadFormat::Json, 1, 1, 5).next();
        assert!(single.starts_with(b"{\"ts\":"));
    }

    #[test]
    fn only_marked_raw_payloads_carry_a_send_time() {
        let mut p = 1_700_000_000_000_000_000u64.to_be_bytes().to_vec();
        p.extend_from_slice(RAW_MAGIC);
        p.extend_from_slice(b"xxxx");
        assert_eq!(raw_stamp(&p), Some(1_700_000_000_000_000_000));
        assert_eq!(raw_stamp(&p[..11]), None);
        assert_eq!(raw_stamp(b"{\"temp\": 21.5, \"ok\": true}"), None);
    }
}
