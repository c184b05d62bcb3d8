//! `mast-loadgen iot`: the truck fleet of [`mast_loadgen::iot`] over MQTT. Each truck is one
//! connection whose client id is its device id (`truck_{i}`), publishing to
//! `devices/{id}/telemetry/readings` and `devices/{id}/telemetry/diagnostics`.
//!
//! Two clocks: real time (one row per table per `--interval` at wall-clock pace, timestamps =
//! now; sends spread over the interval) or `--fast-forward` (the simulated history from `--start`
//! over `--duration`, as fast as the broker takes it). Either way QoS 1/2 keeps `--inflight`
//! messages unacknowledged per truck, and the run ends with a PINGREQ round trip per connection,
//! so at QoS 0 too the totals count only what the broker has read.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use mast_loadgen::iot::{Format, Table, Truck, parse_duration, parse_time};
use mast_protocol::primitives::Utf8;
use mio::{Events, Poll};
use serde_json::json;

use crate::VerifyOpts;
use crate::client::{Conn, Event, Phase, connect_all, pump};
use crate::opts::ConnOpts;
use crate::stats::{Counters, Errors, Hist, Meter, Shown, timeline_json};
use crate::traffic::now_ns;
use crate::verify::{Expect, verify};

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Line protocol carries the truck's tags (name, fleet, driver, model, \
device_version, load_capacity, fuel_capacity, nominal_fuel_consumption) on every row; JSON \
carries none (the device id comes from the topic); json-tags carries them as string values in \
every row."
)]
pub(crate) struct IotArgs {
    #[command(flatten)]
    conn: ConnOpts,
    /// Number of trucks (one connection each, client ids truck_0 ... truck_{N-1}).
    #[arg(
        short = 'c',
        long = "trucks",
        visible_alias = "count",
        default_value_t = 10
    )]
    trucks: usize,
    /// Seed: the same seed sends the same bytes (fast-forward) or values (real time).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First timestamp in fast-forward: RFC 3339 or ms since the epoch.
    #[arg(long, default_value = "2026-01-01T00:00:00Z", value_parser = parse_time)]
    start: i64,
    /// Time between a truck's rows (10s, 500ms, 1m).
    #[arg(short = 'I', long = "interval-of-msg", default_value = "10s", value_parser = parse_duration)]
    interval: u64,
    /// Simulated time to cover (6h, 10m, 1h30m) [default: 1h in fast-forward, no end in real time].
    #[arg(short = 'd', long, value_parser = parse_duration)]
    duration: Option<u64>,
    /// Send the simulated history as fast as the broker accepts it, with explicit timestamps
    /// from --start (instead of real time, timestamps = now).
    #[arg(long)]
    fast_forward: bool,
    /// Payload format (JSON has ms timestamps and no tags).
    #[arg(long, value_enum, default_value = "line")]
    format: Format,
    /// Rows per message: K consecutive intervals of one truck's table [default: 1 in real time,
    /// 60 in fast-forward].
    #[arg(long)]
    batch: Option<usize>,
    /// Probability (0..1) that a row is dirty: a field missing, a field zeroed, or the row sent
    /// late (out of order). Deterministic from the seed.
    #[arg(long, default_value_t = 0.0)]
    dirty: f64,
    /// QoS.
    #[arg(short = 'q', long, default_value_t = 1)]
    qos: u8,
    /// Unacknowledged QoS 1/2 messages per truck (capped by the broker's Receive Maximum).
    #[arg(short = 'F', long, default_value_t = 64)]
    inflight: usize,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// --verify needs a run that ends: --fast-forward or --duration.
    #[command(flatten)]
    check: VerifyOpts,
}

/// What was sent to (and acknowledged by) the broker, per table and in all.
#[derive(Debug, Default)]
struct Totals {
    /// Per table (readings, diagnostics): messages, rows, points.
    tables: [[u64; 3]; 2],
    acked: u64,
    latency: Hist,
    errors: Errors,
}

impl Totals {
    fn sum(&self, i: usize) -> u64 {
        self.tables.iter().map(|t| t[i]).sum()
    }

    fn add(&mut self, o: Totals) {
        for (a, b) in self.tables.iter_mut().zip(o.tables) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self.acked += o.acked;
        self.latency.merge(&o.latency);
        self.errors.merge(o.errors);
    }
}

/// Per table (readings, diagnostics): rows and points one truck sent.
type Sent = [[u64; 2]; 2];

/// What one worker thread reports: totals, its time, and each of its trucks' sent counts.
type Worked = (Totals, Duration, Vec<(String, Sent)>);

/// A message ready to go: table, rows, points, payload.
type Outgoing = (Table, u64, u64, Bytes);

/// One truck's run: its generator, topics, the next interval to produce, and the messages made
/// but not yet handed to the connection.
struct Run {
    truck: Truck,
    topics: [Utf8; 2],
    next: u64,
    drained: bool,
    outbox: VecDeque<Outgoing>,
    /// Real time: how far into each interval this truck sends (spreads the fleet's sends).
    offset: Duration,
    /// Per table: rows and points the broker took: at QoS 1/2 on their acknowledgement, at
    /// QoS 0 when handed to the connection (the final PINGREQ round trip confirms them).
    sent: Sent,
    /// QoS 1/2: per packet id in flight, its table, rows and points.
    in_flight: std::collections::HashMap<u16, (usize, u64, u64)>,
}

/// The schedule shared by every truck.
#[derive(Debug, Clone, Copy)]
struct Plan {
    format: Format,
    batch: u64,
    /// Intervals to produce (`u64::MAX`: until killed).
    ticks: u64,
    interval_ns: u64,
    /// Timestamp of interval 0.
    origin_ns: i64,
    /// Real time: when interval 0 is; `None` in fast-forward.
    wall0: Option<Instant>,
}

impl Run {
    /// Makes the next batch's messages when they are due; false when the truck is done.
    fn refill(&mut self, plan: &Plan, now: Instant, buf: &mut String) -> bool {
        if self.next >= plan.ticks {
            if !self.drained {
                self.drained = true;
                let b = self.truck.drain();
                self.queue(plan.format, &b, buf);
            }
            return !self.outbox.is_empty();
        }
        let k = plan.batch.min(plan.ticks - self.next);
        if let Some(w0) = plan.wall0 {
            let last = self.next + k - 1;
            let due =
                w0 + Duration::from_nanos(plan.interval_ns.saturating_mul(last)) + self.offset;
            if now < due {
                return true;
            }
        }
        let first = plan
            .origin_ns
            .saturating_add((plan.interval_ns as i64).saturating_mul(self.next as i64));
        let b = self
            .truck
            .next_batch(first, plan.interval_ns as i64, k as usize);
        self.next += k;
        self.queue(plan.format, &b, buf);
        true
    }

    fn queue(&mut self, format: Format, b: &mast_loadgen::iot::Batch, buf: &mut String) {
        for table in Table::ALL {
            let rows = b.rows(table);
            if rows.is_empty() {
                continue;
            }
            buf.clear();
            self.truck.encode(format, rows, buf);
            let points: usize = rows.iter().map(|r| r.points()).sum();
            self.outbox.push_back((
                table,
                rows.len() as u64,
                points as u64,
                Bytes::copy_from_slice(buf.as_bytes()),
            ));
        }
    }

    fn done(&self, plan: &Plan) -> bool {
        self.next >= plan.ticks && self.drained && self.outbox.is_empty()
    }
}

pub(crate) fn run_iot(a: IotArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.qos <= 2, "QoS must be 0, 1 or 2");
    anyhow::ensure!(a.trucks > 0, "--trucks must be at least 1");
    anyhow::ensure!(
        !a.check.verify || a.fast_forward || a.duration.is_some(),
        "--verify needs a run that ends: --fast-forward or --duration"
    );
    anyhow::ensure!(a.interval > 0, "--interval must be more than 0");
    anyhow::ensure!(
        (0.0..=1.0).contains(&a.dirty),
        "--dirty is a probability, 0 to 1"
    );
    let batch = a.batch.unwrap_or(if a.fast_forward { 60 } else { 1 });
    anyhow::ensure!(batch > 0, "--batch must be at least 1");
    let duration = match (a.duration, a.fast_forward) {
        (Some(d), _) => Some(d),
        (None, true) => Some(3_600_000_000_000),
        (None, false) => None,
    };
    let ticks = duration.map_or(u64::MAX, |d| d / a.interval);
    if a.format.is_json() {
        anyhow::ensure!(
            a.interval.is_multiple_of(1_000_000) && (!a.fast_forward || a.start % 1_000_000 == 0),
            "JSON timestamps are whole milliseconds: --interval and --start must be too"
        );
    }
    let dial = a.conn.dial()?;
    let groups = crate::opts::split(a.trucks, a.conn.threads);
    let counters = Arc::new(Counters::default());
    let ready = Arc::new(std::sync::Barrier::new(groups.len() + 1));
    // Real time: every thread starts interval 0 at the same wall-clock instant, 1 s after now
    // rounded down to a whole second (so timestamps are round and connecting has time).
    let wall_ns = now_ns();
    let origin_ns = if a.fast_forward {
        a.start
    } else {
        ((wall_ns / 1_000_000_000 + 1) * 1_000_000_000) as i64
    };
    let wall0 = Instant::now() + Duration::from_nanos((origin_ns as u64).saturating_sub(wall_ns));
    let plan = Plan {
        format: a.format,
        batch: batch as u64,
        ticks,
        interval_ns: a.interval,
        origin_ns,
        wall0: (!a.fast_forward).then_some(wall0),
    };
    let mut handles = Vec::new();
    for ids in groups {
        let (a, dial, counters, ready) = (
            a.clone(),
            dial.clone(),
            Arc::clone(&counters),
            Arc::clone(&ready),
        );
        handles.push(std::thread::spawn(move || -> anyhow::Result<Worked> {
            let mut poll = Poll::new()?;
            let names: Vec<(usize, String)> =
                ids.iter().map(|&i| (i, format!("truck_{i}"))).collect();
            let opened = connect_all(&mut poll, &dial, &names);
            ready.wait();
            let opened = opened?;
            // A fleet is its data: every truck must be on.
            anyhow::ensure!(
                opened.conns.len() == ids.len(),
                "{} of {} trucks could not connect: {}",
                ids.len() - opened.conns.len(),
                ids.len(),
                opened.errors.text()
            );
            let mut conns = opened.conns;
            let mut runs: Vec<Run> = ids
                .iter()
                .map(|&i| {
                    let truck = Truck::new(a.seed, i as u64, a.dirty);
                    let topics = Table::ALL.map(|t| {
                        Utf8::new(&format!(
                            "devices/{}/telemetry/{}",
                            truck.device_id(),
                            t.name()
                        ))
                    });
                    Run {
                        truck,
                        topics,
                        next: 0,
                        drained: false,
                        outbox: VecDeque::new(),
                        sent: [[0; 2]; 2],
                        in_flight: std::collections::HashMap::new(),
                        offset: Duration::from_nanos(
                            (u128::from(plan.interval_ns) * i as u128 / a.trucks as u128) as u64,
                        ),
                    }
                })
                .collect();
            let t0 = Instant::now();
            let totals = drive(&a, &plan, &mut poll, &mut conns, &mut runs, &counters)?;
            let sent = runs
                .iter()
                .map(|r| (r.truck.device_id().to_string(), r.sent))
                .collect();
            Ok((totals, t0.elapsed(), sent))
        }));
    }
    ready.wait();
    let shown: Shown = [Some("points"), (a.qos > 0).then_some("acked"), None];
    // Real time has a known end; fast-forward ends when the broker has taken it all.
    let planned = if a.fast_forward {
        None
    } else {
        duration.map(Duration::from_nanos)
    };
    let meter = Meter::start("iot", Arc::clone(&counters), shown, planned);
    let worked = crate::opts::join_workers(handles, "truck");
    let timeline = meter.finish();
    let mut total = Totals::default();
    let mut elapsed = Duration::ZERO;
    let mut sent = Vec::new();
    for (t, e, s) in worked? {
        total.add(t);
        elapsed = elapsed.max(e);
        sent.extend(s);
    }
    report(&a, &plan, total, elapsed, &timeline, &shown);
    if a.check.verify {
        let http = a.check.http(&a.conn.host);
        let end = plan
            .origin_ns
            .saturating_add((plan.interval_ns as i64).saturating_mul(plan.ticks as i64));
        let expect: Vec<Expect> = Table::ALL
            .iter()
            .enumerate()
            .map(|(ti, t)| Expect {
                table: t.name().to_string(),
                fields: t.fields().iter().map(|f| (*f).to_string()).collect(),
                devices: sent.iter().map(|(d, s)| (d.clone(), s[ti])).collect(),
            })
            .collect();
        let missing = verify(
            &http,
            a.check.token.as_deref(),
            Some(plan.origin_ns),
            Some(end),
            &expect,
            a.json,
        )?;
        anyhow::ensure!(
            missing == 0,
            "verify: {missing} acknowledged points are missing from Mast"
        );
    }
    Ok(())
}

/// Produces, publishes and acknowledges until every truck is done, then drains.
fn drive(
    a: &IotArgs,
    plan: &Plan,
    poll: &mut Poll,
    conns: &mut [Conn],
    runs: &mut [Run],
    counters: &Counters,
) -> anyhow::Result<Totals> {
    let mut t = Totals::default();
    let mut events = Events::with_capacity(1024);
    let mut buf = String::new();
    let mut reported = [0u64; 2];
    loop {
        let now = Instant::now();
        let mut all_done = true;
        let mut sent_any = false;
        for (c, r) in conns.iter_mut().zip(runs.iter_mut()) {
            anyhow::ensure!(
                c.phase == Phase::Connected,
                "{}: the broker closed the connection",
                r.truck.device_id()
            );
            let window = a.inflight.min(c.receive_maximum);
            while c.pending() < 64 * 1024 && (a.qos == 0 || c.inflight() < window) {
                if r.outbox.is_empty() && !r.refill(plan, now, &mut buf) {
                    break;
                }
                let Some((table, rows, points, body)) = r.outbox.pop_front() else {
                    break;
                };
                let ti = usize::from(table == Table::Diagnostics);
                match c.publish(&r.topics[ti], body, a.qos, false) {
                    Some(id) => {
                        r.in_flight.insert(id, (ti, rows, points));
                    }
                    None => {
                        r.sent[ti][0] += rows;
                        r.sent[ti][1] += points;
                    }
                }
                t.tables[ti][0] += 1;
                t.tables[ti][1] += rows;
                t.tables[ti][2] += points;
                sent_any = true;
            }
            if !c.write_blocked {
                c.flush()?;
            }
            if !r.done(plan) || c.inflight() > 0 {
                all_done = false;
            }
        }
        if all_done {
            break;
        }
        let timeout = if sent_any && plan.wall0.is_none() {
            Duration::ZERO
        } else {
            Duration::from_millis(1)
        };
        pump(poll, &mut events, conns, timeout, &mut |k, e| match e {
            Event::Acked { us, id } => {
                t.acked += 1;
                t.latency.record(us);
                // Only what the broker acknowledged counts for --verify (a refused PUBACK
                // leaves its rows out).
                if let Some((ti, rows, points)) = runs[k].in_flight.remove(&id) {
                    runs[k].sent[ti][0] += rows;
                    runs[k].sent[ti][1] += points;
                }
            }
            Event::Error(r) | Event::Refused(r) => t.errors.add(r),
            _ => {}
        })?;
        let now = [t.sum(2), t.acked];
        counters
            .sent
            .fetch_add(now[0] - reported[0], Ordering::Relaxed);
        counters
            .acked
            .fetch_add(now[1] - reported[1], Ordering::Relaxed);
        reported = now;
    }
    // Everything written before the PINGREQ has been read by the broker once its PINGRESP is in.
    for c in conns.iter_mut() {
        c.ping();
        c.flush()?;
    }
    let drain_end = Instant::now() + Duration::from_secs(60);
    while conns
        .iter()
        .any(|c| c.ping_pending() && c.phase == Phase::Connected)
    {
        anyhow::ensure!(
            Instant::now() < drain_end,
            "the broker did not answer PINGREQ within 60 s"
        );
        for c in conns.iter_mut() {
            if !c.write_blocked {
                c.flush()?;
            }
        }
        pump(
            poll,
            &mut events,
            conns,
            Duration::from_millis(5),
            &mut |_, e| {
                if let Event::Error(r) = e {
                    t.errors.add(r);
                }
            },
        )?;
    }
    anyhow::ensure!(
        conns.iter().all(|c| c.phase == Phase::Connected),
        "the broker closed a connection before the end"
    );
    Ok(t)
}

fn report(
    a: &IotArgs,
    plan: &Plan,
    t: Totals,
    elapsed: Duration,
    timeline: &[(f64, [u64; 3])],
    shown: &Shown,
) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let (messages, rows, points) = (t.sum(0), t.sum(1), t.sum(2));
    let mode = if plan.wall0.is_none() {
        "fast-forward"
    } else {
        "real-time"
    };
    let format = match plan.format {
        Format::Line => "line",
        Format::Json => "json",
        Format::JsonTags => "json-tags",
    };
    let [r, d] = t.tables;
    if a.json {
        let table = |x: [u64; 3]| json!({"messages": x[0], "rows": x[1], "points": x[2]});
        let v = json!({
            "verb": "iot",
            "mode": mode,
            "format": format,
            "trucks": a.trucks,
            "seed": a.seed,
            "qos": a.qos,
            "batch": plan.batch,
            "dirty": a.dirty,
            "messages": messages,
            "rows": rows,
            "points": points,
            "acked": t.acked,
            "seconds": (secs * 1000.0).round() / 1000.0,
            "msgs_per_sec": (messages as f64 / secs).round(),
            "rows_per_sec": (rows as f64 / secs).round(),
            "points_per_sec": (points as f64 / secs).round(),
            "tables": {"readings": table(r), "diagnostics": table(d)},
            "ack_latency_us": t.latency.json(),
            "errors": t.errors.json(),
            "timeline": timeline_json(timeline, shown),
            "latency_cdf": {"ack": t.latency.cdf()},
        });
        println!("{v}");
    } else {
        println!(
            "iot: {} trucks, {mode}, {format}, QoS {}, batch {}: {messages} messages, {rows} rows, {points} points in {secs:.2}s ({:.0} msgs/s, {:.0} rows/s, {:.0} points/s); acked {}",
            a.trucks,
            a.qos,
            plan.batch,
            messages as f64 / secs,
            rows as f64 / secs,
            points as f64 / secs,
            t.acked,
        );
        println!(
            "iot: readings {} messages, {} rows, {} points; diagnostics {} messages, {} rows, {} points",
            r[0], r[1], r[2], d[0], d[1], d[2]
        );
        if a.qos > 0 {
            println!("iot: publish→ack latency {}", t.latency.text());
        }
        println!("iot: errors: {}", t.errors.text());
    }
}
