//! `mast-loadgen`: load for MQTT brokers (Mast or any other), in emqtt-bench's conventions.
//!
//! Built so far: `pub`, `sub`, `conn` and `iot` (a TSBS-IoT-like truck fleet; its generator is
//! the library's [`mast_loadgen::iot`]). Each runs its connections on a few mio threads, prints a
//! rate line per second on stderr and a summary at the end (`--json` for scripts). `query` and
//! the scenario presets land with issue 6.

mod client;
mod fleet;
mod sql;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use mast_protocol::ProtocolVersion;
use mast_protocol::connect::QoS;
use mast_protocol::primitives::Utf8;
use mio::{Events, Interest, Poll, Token};

use client::{Conn, Event, Phase, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "mast-loadgen",
    version,
    about = "Load for MQTT brokers",
    disable_help_flag = true
)]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Publishers.
    Pub(PubArgs),
    /// Subscribers.
    Sub(SubArgs),
    /// Idle connections.
    Conn(ConnArgs),
    /// A TSBS-IoT-like truck fleet: each truck a connection (client id = device id truck_N)
    /// publishing readings and diagnostics, in real time or fast-forward.
    Iot(fleet::IotArgs),
}

#[derive(Debug, Clone, Args)]
struct Common {
    /// Broker host.
    #[arg(short = 'h', long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    port: u16,
    /// MQTT version: 3 or 4 (3.1.1), 5.
    #[arg(short = 'V', long, default_value_t = 4)]
    version: u8,
    /// Number of connections.
    #[arg(short = 'c', long, default_value_t = 1)]
    count: usize,
    /// Milliseconds between connection starts.
    #[arg(short = 'i', long, default_value_t = 0)]
    interval_conn: u64,
    /// Keep alive, seconds.
    #[arg(short = 'k', long, default_value_t = 300)]
    keepalive: u16,
    /// User name.
    #[arg(short = 'u', long)]
    username: Option<String>,
    /// Password.
    #[arg(short = 'P', long)]
    password: Option<String>,
    /// Client id prefix (client ids are PREFIX-N) [default: VERB-PID].
    #[arg(long)]
    prefix: Option<String>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Seconds to run (after all connections are up).
    #[arg(short = 'd', long, default_value_t = 10)]
    duration: u64,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

#[derive(Debug, Clone, Args)]
struct PubArgs {
    #[command(flatten)]
    common: Common,
    /// Topic; %i is the connection's number, %c its client id (for Mast telemetry:
    /// devices/%c/telemetry).
    #[arg(short = 't', long, default_value = "bench/%i")]
    topic: String,
    /// Payload size in bytes (the first 8 carry the send time) for `--format raw`.
    #[arg(short = 's', long, default_value_t = 64)]
    size: usize,
    /// Payload: raw bytes, or telemetry as JSON (`{"ts","values"}`, an array when --rows > 1)
    /// or InfluxDB line protocol; rows get distinct timestamps per connection.
    #[arg(long, value_enum, default_value = "raw")]
    format: PayloadFormat,
    /// Telemetry rows per message.
    #[arg(long, default_value_t = 1)]
    rows: usize,
    /// Fields per telemetry row (points per message = rows × fields).
    #[arg(long, default_value_t = 1)]
    fields: usize,
    /// QoS.
    #[arg(short = 'q', long, default_value_t = 0)]
    qos: u8,
    /// Retain flag.
    #[arg(short = 'r', long)]
    retain: bool,
    /// Total messages per second over all connections (0 = as fast as possible).
    #[arg(short = 'R', long, default_value_t = 0)]
    rate: u64,
    /// Milliseconds between messages of one connection (0 = as fast as possible).
    #[arg(short = 'I', long, default_value_t = 0)]
    interval: u64,
    /// Stop after this many messages in total (0 = no limit).
    #[arg(short = 'L', long, default_value_t = 0)]
    limit: u64,
    /// Unacknowledged QoS 1/2 messages per connection.
    #[arg(long, default_value_t = 64)]
    inflight: usize,
}

/// What `pub` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PayloadFormat {
    /// `--size` bytes, the first 8 the send time.
    Raw,
    /// JSON telemetry.
    Json,
    /// Line-protocol telemetry.
    Line,
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
        let now_ms = now_ns() / 1_000_000;
        Telemetry {
            format,
            rows: rows.max(1),
            fields: fields.max(1),
            next_ms: now_ms,
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
                for f in 0..self.fields {
                    // One decimal, formatted from integers (float formatting would make the
                    // generator the bottleneck).
                    let v = base + f as u64 * 7;
                    let _ = write!(
                        self.buf,
                        "{}\"f{f}\":{}.{}",
                        if f > 0 { "," } else { "" },
                        v / 10,
                        v % 10
                    );
                }
                self.buf.push_str("}}");
            } else {
                self.buf.push_str("m ");
                for f in 0..self.fields {
                    let v = base + f as u64 * 7;
                    let _ = write!(
                        self.buf,
                        "{}f{f}={}.{}",
                        if f > 0 { "," } else { "" },
                        v / 10,
                        v % 10
                    );
                }
                let _ = writeln!(self.buf, " {}", ts * 1_000_000);
            }
        }
        if json && self.rows > 1 {
            self.buf.push(']');
        }
        Bytes::copy_from_slice(self.buf.as_bytes())
    }
}

#[derive(Debug, Clone, Args)]
struct SubArgs {
    #[command(flatten)]
    common: Common,
    /// Topic filter; %i is the connection's number.
    #[arg(short = 't', long, default_value = "bench/#")]
    topic: String,
    /// QoS.
    #[arg(short = 'q', long, default_value_t = 0)]
    qos: u8,
    /// Stop after this many messages in total (0 = no limit).
    #[arg(short = 'L', long, default_value_t = 0)]
    limit: u64,
    /// Stop when nothing arrived for this many seconds after the first message.
    #[arg(long, default_value_t = 3)]
    idle_exit: u64,
}

#[derive(Debug, Clone, Args)]
struct ConnArgs {
    #[command(flatten)]
    common: Common,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("mast-loadgen: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    match Cli::parse().verb {
        Verb::Pub(a) => run_pub(a),
        Verb::Sub(a) => run_sub(a),
        Verb::Conn(a) => run_conn(a),
        Verb::Iot(a) => fleet::run_iot(a),
    }
}

fn prefix(c: &Common, verb: &str) -> String {
    c.prefix
        .clone()
        .unwrap_or_else(|| format!("{verb}-{}", std::process::id()))
}

fn settings(c: &Common) -> anyhow::Result<(SocketAddr, Settings)> {
    connection(
        &c.host,
        c.port,
        c.version,
        c.keepalive,
        c.username.clone(),
        c.password.clone(),
    )
}

/// The broker's address and the connection settings for it.
fn connection(
    host: &str,
    port: u16,
    version: u8,
    keep_alive: u16,
    username: Option<String>,
    password: Option<String>,
) -> anyhow::Result<(SocketAddr, Settings)> {
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .context("host has no address")?;
    let version = match version {
        3 | 4 => ProtocolVersion::V311,
        5 => ProtocolVersion::V5,
        v => anyhow::bail!("unsupported MQTT version {v} (3, 4 or 5)"),
    };
    Ok((
        addr,
        Settings {
            version,
            keep_alive,
            username,
            password,
            clean_start: true,
        },
    ))
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Latency samples (microseconds) and their percentiles.
#[derive(Debug, Default)]
struct Latency(Vec<u64>);

impl Latency {
    fn percentiles(&mut self) -> [(f64, u64); 4] {
        self.0.sort_unstable();
        let at = |q: f64| -> u64 {
            if self.0.is_empty() {
                return 0;
            }
            let i = ((self.0.len() as f64 - 1.0) * q).round() as usize;
            self.0[i]
        };
        [
            (50.0, at(0.5)),
            (90.0, at(0.9)),
            (99.0, at(0.99)),
            (99.9, at(0.999)),
        ]
    }
}

/// `{"p50":…,"p90":…,"p99":…,"p99_9":…}` in microseconds.
fn percentiles_json(p: &[(f64, u64); 4]) -> String {
    format!(
        "{{\"p50\":{},\"p90\":{},\"p99\":{},\"p99_9\":{}}}",
        p[0].1, p[1].1, p[2].1, p[3].1
    )
}

/// `us p50=… p90=… p99=… p99.9=…`.
fn percentiles_text(p: &[(f64, u64); 4]) -> String {
    format!(
        "us p50={} p90={} p99={} p99.9={}",
        p[0].1, p[1].1, p[2].1, p[3].1
    )
}

/// Opens `ids` connections (client id `client_id(i)`) on one poll and waits for their CONNACKs.
fn connect_all(
    poll: &mut Poll,
    addr: SocketAddr,
    s: &Settings,
    client_id: &dyn Fn(usize) -> String,
    ids: &[usize],
    interval: Duration,
) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(ids.len());
    let mut events = Events::with_capacity(1024);
    let t0 = Instant::now();
    for (k, &i) in ids.iter().enumerate() {
        let mut c = Conn::open(addr, &client_id(i), s)?;
        poll.registry().register(
            &mut c.stream,
            Token(k),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(c);
        if !interval.is_zero() {
            std::thread::sleep(interval);
        }
        // Keep the handshakes moving while opening more.
        if k % 256 == 255 {
            pump(
                poll,
                &mut events,
                &mut conns,
                Duration::ZERO,
                &mut |_, _| {},
            )?;
        }
    }
    while conns.iter().any(|c| c.phase == Phase::Connecting) {
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60 + ids.len() as u64 / 100),
            "connections did not all get CONNACK"
        );
        pump(
            poll,
            &mut events,
            &mut conns,
            Duration::from_millis(10),
            &mut |_, _| {},
        )?;
    }
    if let Some(c) = conns
        .iter()
        .find(|c| matches!(c.phase, Phase::Refused(_) | Phase::Closed))
    {
        anyhow::bail!("a connection was refused or closed: {:?}", c.phase);
    }
    Ok(conns)
}

/// One poll round: reads, flushes.
fn pump(
    poll: &mut Poll,
    events: &mut Events,
    conns: &mut [Conn],
    timeout: Duration,
    on: &mut impl FnMut(usize, Event),
) -> anyhow::Result<()> {
    poll.poll(events, Some(timeout))?;
    for ev in events.iter() {
        let k = ev.token().0;
        let Some(c) = conns.get_mut(k) else { continue };
        if ev.is_writable() {
            c.write_blocked = false;
        }
        if ev.is_readable() {
            c.read(|e| on(k, e))?;
        }
    }
    for c in conns.iter_mut() {
        if !c.write_blocked && c.pending() > 0 {
            c.flush()?;
        }
    }
    Ok(())
}

fn split(count: usize, threads: usize) -> Vec<Vec<usize>> {
    let threads = threads.clamp(1, count.max(1));
    let mut v = vec![Vec::new(); threads];
    for i in 0..count {
        v[i % threads].push(i);
    }
    v
}

/// Prints `total=… rate=…/s` once a second until `done`.
fn rate_lines(label: &'static str, counter: Arc<AtomicU64>, done: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        let mut last = 0;
        while done.load(Ordering::Relaxed) == 0 {
            std::thread::sleep(Duration::from_secs(1));
            let now = counter.load(Ordering::Relaxed);
            eprintln!("{label}: total={now} rate={}/s", now - last);
            last = now;
        }
    });
}

struct PubResult {
    sent: u64,
    acked: u64,
    elapsed: Duration,
    latency: Latency,
}

fn run_pub(a: PubArgs) -> anyhow::Result<()> {
    let (addr, s) = settings(&a.common)?;
    anyhow::ensure!(a.qos <= 2, "QoS must be 0, 1 or 2");
    let groups = split(a.common.count, a.common.threads);
    let sent_total = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(std::sync::Barrier::new(groups.len() + 1));
    let per_thread_rate = a.rate as f64 / groups.len() as f64;
    let mut handles = Vec::new();
    for ids in groups {
        let (a, s, sent_total, ready) = (
            a.clone(),
            s.clone(),
            Arc::clone(&sent_total),
            Arc::clone(&ready),
        );
        handles.push(std::thread::spawn(move || -> anyhow::Result<PubResult> {
            let mut poll = Poll::new()?;
            let conns = connect_all(
                &mut poll,
                addr,
                &s,
                &|i| format!("{}-{i}", prefix(&a.common, "pub")),
                &ids,
                Duration::from_millis(a.common.interval_conn),
            );
            ready.wait();
            let mut conns = conns?;
            let pre = prefix(&a.common, "pub");
            let topics: Vec<Utf8> = ids
                .iter()
                .map(|i| {
                    Utf8::new(
                        &a.topic
                            .replace("%i", &i.to_string())
                            .replace("%c", &format!("{pre}-{i}")),
                    )
                })
                .collect();
            let mut telemetry: Vec<Telemetry> = ids
                .iter()
                .map(|&i| Telemetry::new(a.format, a.rows, a.fields, i as u64 + 1))
                .collect();
            let mut payload = vec![b'x'; a.size.max(8)];
            let mut latency = Latency::default();
            let mut acked = 0u64;
            let mut sent = 0u64;
            let mut reported = 0u64;
            let mut events = Events::with_capacity(1024);
            let limit_per_thread = if a.limit > 0 {
                a.limit.div_ceil(sent_total_threads(&a))
            } else {
                u64::MAX
            };
            let per_conn_interval = Duration::from_millis(a.interval);
            let mut next_at = vec![Instant::now(); conns.len()];
            let t0 = Instant::now();
            let end = t0 + Duration::from_secs(a.common.duration);
            while Instant::now() < end
                && (sent < limit_per_thread || conns.iter().any(|c| c.inflight() > 0))
            {
                let now = Instant::now();
                for (k, c) in conns.iter_mut().enumerate() {
                    while c.pending() < 64 * 1024
                        && sent < limit_per_thread
                        && (a.qos == 0 || c.inflight() < a.inflight)
                        && (per_thread_rate == 0.0
                            || (sent as f64) < per_thread_rate * t0.elapsed().as_secs_f64())
                        && (per_conn_interval.is_zero() || next_at[k] <= now)
                    {
                        let body = if a.format == PayloadFormat::Raw {
                            payload[..8].copy_from_slice(&now_ns().to_be_bytes());
                            Bytes::copy_from_slice(&payload)
                        } else {
                            telemetry[k].next()
                        };
                        c.publish(&topics[k], body, a.qos, a.retain);
                        sent += 1;
                        if !per_conn_interval.is_zero() {
                            next_at[k] += per_conn_interval;
                            break;
                        }
                    }
                    if !c.write_blocked {
                        c.flush()?;
                    }
                }
                let paced = per_thread_rate > 0.0 || !per_conn_interval.is_zero();
                let timeout = if paced {
                    Duration::from_millis(1)
                } else {
                    Duration::ZERO
                };
                pump(&mut poll, &mut events, &mut conns, timeout, &mut |_, e| {
                    if let Event::Acked(us) = e {
                        acked += 1;
                        if acked % 16 == 1 || latency.0.len() < 100_000 {
                            latency.0.push(us);
                        }
                    }
                })?;
                sent_total.fetch_add(sent - reported, Ordering::Relaxed);
                reported = sent;
            }
            // The run ends when the broker has read everything: what sits in socket buffers
            // was sent but not yet accepted (at QoS 0 that can be seconds of messages).
            for c in conns.iter_mut() {
                if c.phase == Phase::Connected {
                    c.ping();
                    c.flush()?;
                }
            }
            let drain_end = Instant::now() + Duration::from_secs(60);
            while conns
                .iter()
                .any(|c| (c.ping_pending || c.inflight() > 0) && c.phase == Phase::Connected)
                && Instant::now() < drain_end
            {
                for c in conns.iter_mut() {
                    if !c.write_blocked {
                        c.flush()?;
                    }
                }
                pump(
                    &mut poll,
                    &mut events,
                    &mut conns,
                    Duration::from_millis(5),
                    &mut |_, e| {
                        if let Event::Acked(us) = e {
                            acked += 1;
                            latency.0.push(us);
                        }
                    },
                )?;
            }
            Ok(PubResult {
                sent,
                acked,
                elapsed: t0.elapsed(),
                latency,
            })
        }));
    }
    ready.wait();
    rate_lines("pub", Arc::clone(&sent_total), Arc::clone(&done));
    let mut total = PubResult {
        sent: 0,
        acked: 0,
        elapsed: Duration::ZERO,
        latency: Latency::default(),
    };
    for h in handles {
        let r = h
            .join()
            .map_err(|_| anyhow::anyhow!("publisher thread panicked"))??;
        total.sent += r.sent;
        total.acked += r.acked;
        total.elapsed = total.elapsed.max(r.elapsed);
        total.latency.0.extend(r.latency.0);
    }
    done.store(1, Ordering::Relaxed);
    let secs = total.elapsed.as_secs_f64().max(1e-9);
    let p = total.latency.percentiles();
    if a.common.json {
        println!(
            "{{\"verb\":\"pub\",\"connections\":{},\"qos\":{},\"size\":{},\"points_per_message\":{},\"sent\":{},\"acked\":{},\"seconds\":{:.3},\"sent_per_sec\":{:.0},\"acked_per_sec\":{:.0},\"ack_latency_us\":{}}}",
            a.common.count,
            a.qos,
            a.size,
            if a.format == PayloadFormat::Raw {
                0
            } else {
                a.rows.max(1) * a.fields.max(1)
            },
            total.sent,
            total.acked,
            secs,
            total.sent as f64 / secs,
            total.acked as f64 / secs,
            percentiles_json(&p)
        );
    } else {
        println!(
            "pub: {} connections, QoS {}, {} B: sent {} ({:.0}/s), acked {} ({:.0}/s) in {:.2}s; ack latency {}",
            a.common.count,
            a.qos,
            a.size,
            total.sent,
            total.sent as f64 / secs,
            total.acked,
            total.acked as f64 / secs,
            secs,
            percentiles_text(&p)
        );
    }
    Ok(())
}

fn sent_total_threads(a: &PubArgs) -> u64 {
    a.common.threads.clamp(1, a.common.count.max(1)) as u64
}

fn run_sub(a: SubArgs) -> anyhow::Result<()> {
    let (addr, s) = settings(&a.common)?;
    let qos = match a.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => anyhow::bail!("QoS must be 0, 1 or 2"),
    };
    let ids: Vec<usize> = (0..a.common.count).collect();
    let mut poll = Poll::new()?;
    let mut conns = connect_all(
        &mut poll,
        addr,
        &s,
        &|i| format!("{}-{i}", prefix(&a.common, "sub")),
        &ids,
        Duration::from_millis(a.common.interval_conn),
    )?;
    for (k, c) in conns.iter_mut().enumerate() {
        c.subscribe(&a.topic.replace("%i", &k.to_string()), qos);
        c.flush()?;
    }
    let mut events = Events::with_capacity(1024);
    let mut subscribed = 0;
    while subscribed < conns.len() {
        pump(
            &mut poll,
            &mut events,
            &mut conns,
            Duration::from_millis(10),
            &mut |_, e| {
                if let Event::Subscribed = e {
                    subscribed += 1;
                }
            },
        )?;
    }
    eprintln!("sub: {} subscribed to {}", conns.len(), a.topic);
    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    rate_lines("sub", Arc::clone(&received), Arc::clone(&done));
    let mut count = 0u64;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut latency = Latency::default();
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(a.common.duration);
    let idle = Duration::from_secs(a.idle_exit);
    loop {
        let now = Instant::now();
        if now >= end || (a.limit > 0 && count >= a.limit) || (first.is_some() && now - last > idle)
        {
            break;
        }
        let before = count;
        pump(
            &mut poll,
            &mut events,
            &mut conns,
            Duration::from_millis(50),
            &mut |_, e| {
                if let Event::Message(p) = e {
                    count += 1;
                    if p.len() >= 8 && (count % 16 == 1 || latency.0.len() < 100_000) {
                        let sent = u64::from_be_bytes(p[..8].try_into().unwrap_or([0; 8]));
                        latency.0.push(now_ns().saturating_sub(sent) / 1000);
                    }
                }
            },
        )?;
        if count > before {
            let t = Instant::now();
            first.get_or_insert(t);
            last = t;
            received.store(count, Ordering::Relaxed);
        }
    }
    done.store(1, Ordering::Relaxed);
    let window = first.map_or(0.0, |f| (last - f).as_secs_f64()).max(1e-9);
    let p = latency.percentiles();
    if a.common.json {
        println!(
            "{{\"verb\":\"sub\",\"connections\":{},\"qos\":{},\"received\":{},\"seconds\":{:.3},\"received_per_sec\":{:.0},\"e2e_latency_us\":{}}}",
            a.common.count,
            a.qos,
            count,
            window,
            count as f64 / window,
            percentiles_json(&p)
        );
    } else {
        println!(
            "sub: {} connections, QoS {}: received {} in {:.2}s ({:.0}/s); end-to-end latency {}",
            a.common.count,
            a.qos,
            count,
            window,
            count as f64 / window,
            percentiles_text(&p)
        );
    }
    Ok(())
}

fn run_conn(a: ConnArgs) -> anyhow::Result<()> {
    let (addr, s) = settings(&a.common)?;
    let ids: Vec<usize> = (0..a.common.count).collect();
    let mut poll = Poll::new()?;
    let t0 = Instant::now();
    let mut conns = connect_all(
        &mut poll,
        addr,
        &s,
        &|i| format!("{}-{i}", prefix(&a.common, "conn")),
        &ids,
        Duration::from_millis(a.common.interval_conn),
    )?;
    let took = t0.elapsed().as_secs_f64();
    if a.common.json {
        println!(
            "{{\"verb\":\"conn\",\"connected\":{},\"seconds\":{took:.3}}}",
            conns.len()
        );
    } else {
        println!(
            "conn: {} connected in {took:.2}s; holding for {}s",
            conns.len(),
            a.common.duration
        );
    }
    let mut events = Events::with_capacity(1024);
    let end = Instant::now() + Duration::from_secs(a.common.duration);
    while Instant::now() < end {
        pump(
            &mut poll,
            &mut events,
            &mut conns,
            Duration::from_millis(200),
            &mut |_, _| {},
        )?;
    }
    let alive = conns.iter().filter(|c| c.phase == Phase::Connected).count();
    eprintln!("conn: {alive} still connected at the end");
    Ok(())
}
