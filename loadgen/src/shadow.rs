//! `mast-loadgen shadow`: devices updating their shadows the way the AWS IoT Device SDKs do.
//! Each device is one connection (client id `{prefix}_{i}`, the thing name) subscribed at QoS
//! 1 to its `$aws/things/{id}/shadow/update/accepted` and `/rejected`, publishing QoS 1
//! updates `{"state": {"reported": {...}}, "clientToken": "..."}` to `.../shadow/update`.
//!
//! The measured latency is publish → the `/accepted` reply, which Mast sends only once the
//! change is durable. Two modes: `--rate R` updates per device per second (the fleet's sends
//! spread over the second: a steady load, for latency), or `--rate 0`: as fast as replies come,
//! each device keeping `--inflight` updates unanswered (the highest accepted rate).
//! `--telemetry R` adds each device's telemetry (`devices/{id}/telemetry`, JSON, QoS 1) beside
//! it at R messages per second.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use mast_protocol::primitives::Utf8;
use mio::{Events, Poll};
use serde_json::json;

use crate::client::{Conn, Event, Fleet, Phase, pump};
use crate::opts::ConnOpts;
use crate::stats::{Counters, Errors, Hist, Shown, timeline_json};

#[derive(Debug, Clone, Args)]
pub(crate) struct ShadowArgs {
    #[command(flatten)]
    conn: ConnOpts,
    /// Devices (one connection each).
    #[arg(
        short = 'c',
        long = "devices",
        visible_alias = "count",
        default_value_t = 100
    )]
    devices: usize,
    /// Client id (= thing name) prefix: ids are PREFIX_0 ... PREFIX_{N-1}.
    #[arg(long, default_value = "shadow")]
    prefix: String,
    /// Shadow updates per device per second; 0 = as fast as the replies come (closed loop).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Closed loop: updates a device keeps unanswered (AWS answers more than 10 with 429).
    #[arg(short = 'F', long, default_value_t = 1)]
    inflight: usize,
    /// Telemetry messages per device per second beside the updates (0: none).
    #[arg(long, default_value_t = 0.0)]
    telemetry: f64,
    /// How long to send, seconds (after every device is connected and subscribed).
    #[arg(short = 'd', long, default_value_t = 10)]
    duration: u64,
    /// Reported keys per update (`k0` ... numbers), besides a sequence number.
    #[arg(long, default_value_t = 4)]
    keys: usize,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Default)]
struct Totals {
    updates: u64,
    accepted: u64,
    rejected: u64,
    telemetry: u64,
    telemetry_acked: u64,
    /// publish → `/accepted`, µs.
    latency: Hist,
    errors: Errors,
}

impl Totals {
    fn add(&mut self, o: Totals) {
        self.updates += o.updates;
        self.accepted += o.accepted;
        self.rejected += o.rejected;
        self.telemetry += o.telemetry;
        self.telemetry_acked += o.telemetry_acked;
        self.latency.merge(&o.latency);
        self.errors.merge(o.errors);
    }
}

/// One device's state in the run.
struct Device {
    update: Utf8,
    telemetry: Utf8,
    /// Updates sent and not yet answered.
    open: usize,
    next_update: Instant,
    next_telemetry: Instant,
    seq: u64,
    /// Packet ids of its telemetry in flight (to tell their PUBACKs from the updates').
    telemetry_ids: std::collections::HashSet<u16>,
}

/// The client token of an update sent at `sent` µs after `t0`: the reply carries it back.
fn token(us: u64) -> String {
    format!("t{us}")
}

/// From a reply: whether it is an `/accepted` one, and the µs its token was stamped with.
fn read_reply(payload: &[u8]) -> Option<(bool, u64)> {
    let text = std::str::from_utf8(payload).ok()?;
    let at = text.find("\"clientToken\":\"t")? + "\"clientToken\":\"t".len();
    let end = text[at..].find('"')? + at;
    let us = text[at..end].parse().ok()?;
    // An error document has no state.
    Some((text.contains("\"state\":"), us))
}

pub(crate) fn run_shadow(a: ShadowArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.devices > 0, "--devices must be at least 1");
    anyhow::ensure!(
        a.rate >= 0.0 && a.telemetry >= 0.0,
        "rates are not negative"
    );
    anyhow::ensure!(a.inflight > 0, "--inflight must be at least 1");
    let dial = a.conn.dial()?;
    let shown: Shown = [Some("updates"), Some("accepted"), None];
    let fleet = Fleet {
        dial: &dial,
        threads: a.conn.threads,
        devices: a.devices,
        prefix: &a.prefix,
        label: "shadow",
        shown,
        planned: Duration::from_secs(a.duration),
    };
    let args = a.clone();
    let (worked, timeline) = fleet.run(
        |id| {
            ["accepted", "rejected"]
                .map(|r| format!("$aws/things/{id}/shadow/update/{r}"))
                .to_vec()
        },
        move |poll, conns, names, counters| {
            let a = &args;
            let t0 = Instant::now();
            let period = |r: f64| (r > 0.0).then(|| Duration::from_secs_f64(1.0 / r));
            let mut devices: Vec<Device> = names
                .iter()
                .map(|(i, id)| {
                    // Spread the fleet's sends over one period.
                    let frac = *i as f64 / a.devices as f64;
                    let off = |p: Option<Duration>| p.map_or(Duration::ZERO, |p| p.mul_f64(frac));
                    Device {
                        update: Utf8::new(&format!("$aws/things/{id}/shadow/update")),
                        telemetry: Utf8::new(&format!("devices/{id}/telemetry")),
                        open: 0,
                        next_update: t0 + off(period(a.rate)),
                        next_telemetry: t0 + off(period(a.telemetry)),
                        seq: 0,
                        telemetry_ids: std::collections::HashSet::new(),
                    }
                })
                .collect();
            drive(a, t0, poll, conns, &mut devices, counters)
        },
    )?;
    let mut total = Totals::default();
    let mut elapsed = Duration::ZERO;
    for (t, e) in worked {
        total.add(t);
        elapsed = elapsed.max(e);
    }
    report(&a, &total, elapsed, &timeline, &shown);
    Ok(())
}

/// Queues one update of device `d` on `c`.
fn send_update(c: &mut Conn, d: &mut Device, keys: usize, us: u64) {
    d.seq += 1;
    let mut reported = serde_json::Map::new();
    reported.insert("seq".into(), json!(d.seq));
    for k in 0..keys {
        reported.insert(format!("k{k}"), json!((d.seq + k as u64) % 100));
    }
    let doc = json!({"state": {"reported": reported}, "clientToken": token(us)});
    c.publish(&d.update, Bytes::from(doc.to_string()), 1, false);
    d.open += 1;
}

/// Queues one telemetry message of device `d` on `c`.
fn send_telemetry(c: &mut Conn, d: &mut Device) {
    let payload = format!("{{\"temp\": {}.5, \"seq\": {}}}", d.seq % 40, d.seq);
    if let Some(id) = c.publish(&d.telemetry, Bytes::from(payload), 1, false) {
        d.telemetry_ids.insert(id);
    }
}

/// At a rate: from device `*cursor` on, in index order, lets `step` send for each device while
/// it says the device was due (at most one round); how many it sent.
fn paced(
    cursor: &mut usize,
    conns: &mut [Conn],
    devices: &mut [Device],
    dirty: &mut Vec<usize>,
    mut step: impl FnMut(&mut Conn, &mut Device) -> bool,
) -> u64 {
    let n = devices.len();
    let mut sent = 0;
    for _ in 0..n {
        let k = *cursor;
        let c = &mut conns[k];
        if c.inflight() >= c.receive_maximum || !step(c, &mut devices[k]) {
            break;
        }
        sent += 1;
        dirty.push(k);
        *cursor = (k + 1) % n;
    }
    sent
}

/// Sends and receives until the end, then waits for every answer. Each turn visits only the
/// devices with something to send: in the closed loop those a reply made room for, at a rate
/// the next ones due (a device's sends are spread over the period in index order, so the due
/// ones are the next after a cursor), so 10,000 idle devices cost nothing per turn.
fn drive(
    a: &ShadowArgs,
    t0: Instant,
    poll: &mut Poll,
    conns: &mut [Conn],
    devices: &mut [Device],
    counters: &Counters,
) -> anyhow::Result<Totals> {
    let mut t = Totals::default();
    let mut events = Events::with_capacity(1024);
    let end = t0 + Duration::from_secs(a.duration);
    let update_every = (a.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / a.rate));
    let telemetry_every = (a.telemetry > 0.0).then(|| Duration::from_secs_f64(1.0 / a.telemetry));
    let mut reported = [0u64; 2];
    let n = devices.len();
    // Closed loop: the devices with room for another update (one entry per free slot).
    let mut ready: std::collections::VecDeque<usize> = if update_every.is_none() {
        (0..a.inflight).flat_map(|_| 0..n).collect()
    } else {
        std::collections::VecDeque::new()
    };
    let (mut next_u, mut next_t) = (0usize, 0usize);
    let mut dirty: Vec<usize> = Vec::new();
    let mut open = 0usize;
    loop {
        let now = Instant::now();
        let sending = now < end;
        let us = now.duration_since(t0).as_micros() as u64;
        if sending {
            if let Some(p) = update_every {
                let sent = paced(&mut next_u, conns, devices, &mut dirty, |c, d| {
                    if d.next_update > now {
                        return false;
                    }
                    send_update(c, d, a.keys, us);
                    d.next_update += p;
                    true
                });
                t.updates += sent;
                open += sent as usize;
            } else {
                let mut later = Vec::new();
                while let Some(k) = ready.pop_front() {
                    if conns[k].inflight() >= conns[k].receive_maximum {
                        later.push(k);
                        continue;
                    }
                    send_update(&mut conns[k], &mut devices[k], a.keys, us);
                    t.updates += 1;
                    open += 1;
                    dirty.push(k);
                }
                ready.extend(later);
            }
            if let Some(p) = telemetry_every {
                let sent = paced(&mut next_t, conns, devices, &mut dirty, |c, d| {
                    if d.next_telemetry > now {
                        return false;
                    }
                    send_telemetry(c, d);
                    d.next_telemetry += p;
                    true
                });
                t.telemetry += sent;
                open += sent as usize;
            }
        }
        dirty.sort_unstable();
        dirty.dedup();
        for k in dirty.drain(..) {
            let c = &mut conns[k];
            anyhow::ensure!(
                c.phase == Phase::Connected,
                "the broker closed a device's connection"
            );
            if !c.write_blocked {
                c.flush()?;
            }
        }
        if !sending && open == 0 {
            break;
        }
        anyhow::ensure!(
            now < end + Duration::from_secs(60),
            "{open} updates or telemetry messages unanswered 60 s after the end"
        );
        pump(
            poll,
            &mut events,
            conns,
            Duration::from_millis(1),
            &mut |k, e| match e {
                Event::Message { payload: p, .. } => match read_reply(&p) {
                    Some((accepted, us)) => {
                        let d = &mut devices[k];
                        if d.open > 0 {
                            d.open -= 1;
                            open -= 1;
                            if update_every.is_none() {
                                ready.push_back(k);
                            }
                        }
                        if accepted {
                            t.accepted += 1;
                            let now_us = t0.elapsed().as_micros() as u64;
                            t.latency.record(now_us.saturating_sub(us));
                        } else {
                            t.rejected += 1;
                            let code = std::str::from_utf8(&p)
                                .ok()
                                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
                                .and_then(|v| v["code"].as_u64())
                                .unwrap_or(0);
                            t.errors.add(format!("shadow rejected {code}"));
                        }
                    }
                    None => t.errors.add("a reply without this run's clientToken"),
                },
                Event::Acked { id, .. } if devices[k].telemetry_ids.remove(&id) => {
                    t.telemetry_acked += 1;
                    open -= 1;
                }
                Event::Error(r) | Event::Refused(r) => t.errors.add(r),
                _ => {}
            },
        )?;
        let now = [t.updates, t.accepted];
        counters
            .sent
            .fetch_add(now[0] - reported[0], Ordering::Relaxed);
        counters
            .acked
            .fetch_add(now[1] - reported[1], Ordering::Relaxed);
        reported = now;
    }
    anyhow::ensure!(
        conns.iter().all(|c| c.phase == Phase::Connected),
        "the broker closed a device's connection"
    );
    Ok(t)
}

fn report(
    a: &ShadowArgs,
    t: &Totals,
    elapsed: Duration,
    timeline: &[(f64, [u64; 3])],
    shown: &Shown,
) {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mode = if a.rate > 0.0 {
        format!("{} updates/device/s", a.rate)
    } else {
        format!("closed loop, {} in flight per device", a.inflight)
    };
    if a.json {
        let v = json!({
            "verb": "shadow",
            "mode": mode,
            "devices": a.devices,
            "rate": a.rate,
            "inflight": a.inflight,
            "keys": a.keys,
            "updates": t.updates,
            "accepted": t.accepted,
            "rejected": t.rejected,
            "seconds": (secs * 1000.0).round() / 1000.0,
            "accepted_per_sec": (t.accepted as f64 / secs).round(),
            "telemetry": t.telemetry,
            "telemetry_acked": t.telemetry_acked,
            "telemetry_per_sec": (t.telemetry_acked as f64 / secs).round(),
            "reply_latency_us": t.latency.json(),
            "errors": t.errors.json(),
            "timeline": timeline_json(timeline, shown),
        });
        println!("{v}");
    } else {
        println!(
            "shadow: {} devices, {mode}: {} updates, {} accepted, {} rejected in {secs:.2}s ({:.0} accepted/s); telemetry {} sent, {} acked ({:.0}/s)",
            a.devices,
            t.updates,
            t.accepted,
            t.rejected,
            t.accepted as f64 / secs,
            t.telemetry,
            t.telemetry_acked,
            t.telemetry_acked as f64 / secs,
        );
        println!("shadow: update→accepted latency {}", t.latency.text());
        println!("shadow: errors: {}", t.errors.text());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_told_apart_by_their_state_and_timed_by_their_token() {
        let ok = br#"{"clientToken":"t1234","metadata":{},"state":{"reported":{"a":1}},"timestamp":1,"version":2}"#;
        assert_eq!(read_reply(ok), Some((true, 1234)));
        let no = br#"{"clientToken":"t99","code":409,"message":"Version conflict","timestamp":1}"#;
        assert_eq!(read_reply(no), Some((false, 99)));
        assert_eq!(read_reply(br#"{"clientToken":"other","state":{}}"#), None);
        assert_eq!(read_reply(b"\xff"), None);
        assert_eq!(token(5), "t5");
    }
}
