//! Acknowledged means durable, under fire: kills the server with SIGKILL during a QoS 1 load
//! many times and checks that every acknowledged point is present after restart (count and
//! values), and that no point is stored twice.
//!
//! Three publishers (one MQTT 5, two 3.1.1, raw sockets), each its own device, keep a window of
//! QoS 1 messages in flight; each message is one row `{"ts": T0 + seq ms, "values": {"seq",
//! "v"}}`. The server is killed at a pseudo-random moment, restarted, and the publishers carry
//! on with new sequence numbers. Unacknowledged messages may or may not be stored; whatever is
//! stored must carry the values it was sent with. A small head forces segment sealing (and WAL
//! truncation) to happen between the kills. The seed is printed; `MAST_CRASH_SEED` replays one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod ingest_support;
mod mqtt_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Server;
use ingest_support::{Stored, Value, float, time};
use mqtt_support::raw::{self, Got, Raw};

/// 2023-11-14T22:13:20Z in ms: the timestamp of sequence number 0.
const T0_MS: i64 = 1_700_000_000_000;
const PUBLISHERS: usize = 3;
const CYCLES: usize = 10;
/// QoS 1 messages in flight per publisher.
const WINDOW: usize = 32;

/// The value sent with `seq` by publisher `p` (exact in binary floating point).
fn value(p: usize, seq: u64) -> f64 {
    seq as f64 * 0.25 + (p * 1_000_000) as f64
}

fn device(p: usize) -> String {
    format!("crash-{p}")
}

/// One publisher's progress, carried from cycle to cycle.
#[derive(Debug, Default)]
struct Progress {
    /// The next sequence number to send.
    next: u64,
    /// Acknowledged sequence numbers and the value sent with each.
    acked: BTreeMap<u64, f64>,
}

/// Publishes until the connection breaks (the server was killed); `stop` ends it early.
fn publish_until_killed(
    port: u16,
    p: usize,
    mut progress: Progress,
    stop: &AtomicBool,
) -> Progress {
    let v5 = p == 0;
    let id = device(p);
    let topic = format!("devices/{id}/telemetry");
    let mut r = Raw::connected(port, if v5 { 5 } else { 4 }, &id, 0);
    let mut inflight: HashMap<u16, u64> = HashMap::new();
    let mut packet_id: u16 = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            Instant::now() < deadline,
            "{id}: the server was never killed"
        );
        while inflight.len() < WINDOW && !stop.load(Ordering::Relaxed) {
            packet_id = packet_id.checked_add(1).unwrap_or(1);
            let seq = progress.next;
            progress.next += 1;
            let payload = format!(
                r#"{{"ts": {}, "values": {{"seq": {seq}, "v": {}}}}}"#,
                T0_MS + seq as i64,
                value(p, seq)
            );
            r.send(&raw::publish(
                v5,
                1,
                packet_id,
                topic.as_bytes(),
                &[],
                payload.as_bytes(),
            ));
            assert!(inflight.insert(packet_id, seq).is_none(), "id reused");
        }
        match r.read(Duration::from_millis(200)) {
            Got::Packet(0x40, body) => {
                let pid = u16::from_be_bytes([body[0], body[1]]);
                let reason = body.get(2).copied().unwrap_or(0);
                assert_eq!(reason, 0, "{id}: PUBACK {pid} refused: {body:?}");
                let seq = inflight
                    .remove(&pid)
                    .unwrap_or_else(|| panic!("{id}: PUBACK for {pid}, not in flight"));
                progress.acked.insert(seq, value(p, seq));
            }
            Got::Packet(first, body) => panic!("{id}: unexpected packet {first:#x} {body:?}"),
            Got::Closed => return progress,
            Got::Timeout => {}
        }
    }
}

/// A small pseudo-random generator (xorshift64*), seeded per run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[test]
fn every_acknowledged_point_survives_repeated_sigkill_during_qos1_load() {
    let seed = std::env::var("MAST_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| mast_storage::now_ns() as u64 | 1);
    eprintln!("MAST_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let mut server = Server::start_with("", "[storage]\nmax_head_bytes = 65536\n");
    let mut progress: Vec<Progress> = (0..PUBLISHERS).map(|_| Progress::default()).collect();
    for cycle in 0..CYCLES {
        let stop = Arc::new(AtomicBool::new(false));
        let acked_before: usize = progress.iter().map(|p| p.acked.len()).sum();
        let threads: Vec<_> = std::mem::take(&mut progress)
            .into_iter()
            .enumerate()
            .map(|(p, prog)| {
                let (port, stop) = (server.port, Arc::clone(&stop));
                std::thread::spawn(move || publish_until_killed(port, p, prog, &stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100 + rng.below(500)));
        server.kill();
        stop.store(true, Ordering::Relaxed);
        progress = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let acked: usize = progress.iter().map(|p| p.acked.len()).sum();
        eprintln!("cycle {cycle}: {} acknowledged", acked - acked_before);
        assert!(
            acked > acked_before,
            "cycle {cycle}: nothing acknowledged\n{}",
            server.log()
        );
        server.restart_after_kill();
    }
    assert_eq!(server.stop(), Some(0));

    let stored = Stored::open(&server.data_dir());
    assert!(
        !stored.store().snapshot().segments().is_empty(),
        "the load sealed no segment: the test would not cover sealing"
    );
    let rows = stored.rows("telemetry");
    let mut seen = BTreeSet::new();
    let mut found: Vec<BTreeMap<u64, f64>> = vec![BTreeMap::new(); PUBLISHERS];
    for r in &rows {
        let Some(Value::Str(dev)) = r.get("device_id") else {
            panic!("row without a device: {r:?}")
        };
        let p: usize = dev
            .strip_prefix("crash-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected device {dev}"));
        let ts = time(r);
        assert!(seen.insert((dev.clone(), ts)), "{dev} at {ts} stored twice");
        let seq = float(r, "seq");
        let want_seq = ((ts / 1_000_000) - T0_MS) as f64;
        assert_eq!(seq, want_seq, "{dev}: seq does not match its time: {r:?}");
        let v = float(r, "v");
        assert_eq!(v, value(p, seq as u64), "{dev}: value of seq {seq}: {r:?}");
        found[p].insert(seq as u64, v);
    }
    let mut unacked_present = 0;
    for (p, prog) in progress.iter().enumerate() {
        let missing: Vec<u64> = prog
            .acked
            .keys()
            .filter(|s| !found[p].contains_key(s))
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "{}: {} acknowledged rows lost, e.g. seq {:?} (seed {seed})",
            device(p),
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        unacked_present += found[p].len() - prog.acked.len();
    }
    let acked: usize = progress.iter().map(|p| p.acked.len()).sum();
    eprintln!(
        "{acked} acknowledged rows all present; {unacked_present} unacknowledged ones stored too"
    );
}
