//! Backpressure on the ingest path: with a shard queue of two batches and an fsync per WAL
//! group, one client publishing line-protocol batches as fast as it can outruns the shard. The
//! server must stop reading that client (TCP pushes back on it) rather than buffer: its resident
//! memory stays bounded, nothing it read is dropped, and every QoS 1 acknowledged point is stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod ingest_support;
mod mqtt_support;

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, TimestampNanosecondType};
use common::Server;
use ingest_support::Stored;
use mast_storage::ScanRequest;
use mqtt_support::raw::{self, Got, Raw};
use mqtt_support::{WAIT, rss_bytes};

/// 2023-11-14T22:13:20Z in ns.
const T0: i64 = 1_700_000_000_000_000_000;
/// Rows per message; each row has [`FIELDS`] points.
const LINES: usize = 100;
const FIELDS: usize = 10;
/// How long the client floods.
const FLOOD: Duration = Duration::from_secs(5);
/// A slow shard: two queued batches, an fsync per group. The head is sealed at 8 MiB so that
/// the stored data itself (the head is memory until sealed) is a known, small part of the
/// server's memory.
const SLOW: &str = "[storage]\nqueue_capacity = 2\nfsync = \"always\"\nmax_head_bytes = 8388608\n";
/// Resident memory the server may reach during a flood. Measured on a 2-core machine (debug
/// build): 15 MiB idle, peaks of 58 to 81 MiB over runs of either flood. What the server may
/// legitimately hold: the head (up to 8 MiB, then sealed), the segment being written, two
/// queued batches and one open batch per reactor (a message is 15 KB of text, 1,000 points),
/// one read buffer per connection, allocator slack. The bound is twice the highest
/// peak seen. The client can produce ~3,900 messages/s (~58 MB/s) while the slow shard stores
/// ~600 messages/s, so a server that kept reading and buffering instead of pushing back would
/// hold well over 200 MB after 5 s and fail this bound.
const RSS_BOUND: u64 = 160 << 20;

/// The value of field `f` in row `row` (exact in binary floating point).
fn value(row: i64, f: usize) -> f64 {
    row as f64 * 0.5 + f as f64
}

/// Message `k`: [`LINES`] rows at `T0 + (k * LINES + line)` µs, fields `f0..f9`.
fn message(k: usize) -> Vec<u8> {
    let mut s = String::with_capacity(LINES * 160);
    for line in 0..LINES {
        let row = (k * LINES + line) as i64;
        s.push_str("flood,site=lab ");
        for f in 0..FIELDS {
            if f > 0 {
                s.push(',');
            }
            s.push_str(&format!("f{f}={}", value(row, f)));
        }
        s.push_str(&format!(" {}\n", T0 + row * 1000));
    }
    s.into_bytes()
}

/// Samples the server's RSS every 20 ms until stopped; the highest sample.
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut peak = 0;
        while !stop.load(Ordering::Relaxed) {
            peak = peak.max(rss_bytes(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        peak.max(rss_bytes(pid))
    })
}

/// Checks that table `flood` holds exactly the rows of messages `0..messages`: the count,
/// unique times, and values `f0` and `f9` of every row.
fn assert_stored(stored: &Stored, messages: usize) {
    let mut times = BTreeSet::new();
    for batch in stored.scan(&ScanRequest::table("flood").columns(&["time", "f0", "f9"])) {
        let time = batch.column(0).as_primitive::<TimestampNanosecondType>();
        let f0 = batch.column(1).as_primitive::<Float64Type>();
        let f9 = batch.column(2).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let t = time.value(i);
            let row = (t - T0) / 1000;
            assert!(times.insert(t), "time {t} stored twice");
            assert!(!f0.is_null(i) && !f9.is_null(i), "row {row} incomplete");
            assert_eq!((f0.value(i), f9.value(i)), (value(row, 0), value(row, 9)));
        }
    }
    let want = messages * LINES;
    assert_eq!(times.len(), want, "rows stored of {messages} messages");
    let last = T0 + (want as i64 - 1) * 1000;
    assert_eq!(
        (times.first(), times.last()),
        (Some(&T0), Some(&last)),
        "rows 0..{want}"
    );
}

#[test]
fn a_qos0_flood_into_a_slow_shard_is_pushed_back_with_bounded_memory_and_nothing_lost() {
    let mut server = Server::start_with("", SLOW);
    let idle = rss_bytes(server.pid());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(server.pid(), Arc::clone(&stop));
    let mut r = Raw::connected(server.port, 4, "flooder", 0);
    let mut writer = r.stream.try_clone().unwrap();
    let t0 = Instant::now();
    let mut sent = 0;
    while t0.elapsed() < FLOOD {
        let body = message(sent);
        writer
            .write_all(&raw::publish(
                false,
                0,
                0,
                b"devices/flooder/telemetry",
                &[],
                &body,
            ))
            .unwrap();
        sent += 1;
    }
    // The server has read everything once it answers a ping sent after it.
    r.send(&[0xC0, 0x00]);
    assert_eq!(
        r.read(Duration::from_secs(60)),
        Got::Packet(0xD0, Vec::new())
    );
    let drained = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    eprintln!(
        "QoS 0: {sent} messages ({} points) in {drained:?}; RSS idle {} MiB, peak {} MiB",
        sent * LINES * FIELDS,
        idle >> 20,
        peak >> 20
    );
    assert!(peak < RSS_BOUND, "server RSS peaked at {} MiB", peak >> 20);
    r.send(&[0xE0, 0x00]);
    assert_eq!(server.stop(), Some(0));
    // QoS 0 is not acknowledged, but nothing the server read was dropped for lack of room.
    let stored = Stored::open(&server.data_dir());
    assert_stored(&stored, sent);
}

/// Records a PUBACK (true) or a timeout (false).
fn on_packet(got: Got, acked: &mut [bool], inflight: &mut usize) -> bool {
    match got {
        Got::Packet(0x40, body) => {
            let k = usize::from(u16::from_be_bytes([body[0], body[1]])) - 1;
            assert!(!acked[k], "message {k} acknowledged twice");
            acked[k] = true;
            *inflight -= 1;
            true
        }
        Got::Timeout => false,
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

#[test]
fn a_qos1_flood_with_a_wide_window_gets_every_acknowledged_point_stored_with_bounded_memory() {
    const WINDOW: usize = 500;
    let mut server = Server::start_with("", SLOW);
    let idle = rss_bytes(server.pid());
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(server.pid(), Arc::clone(&stop));
    let mut r = Raw::connected(server.port, 4, "flooder", 0);
    // Message k goes out with packet id k + 1 (fewer than 65535 messages in the flood).
    let mut acked: Vec<bool> = Vec::new();
    let mut inflight = 0usize;
    let t0 = Instant::now();
    while t0.elapsed() < FLOOD {
        while inflight < WINDOW {
            let k = acked.len();
            assert!(k < 65_000, "flood too fast for one packet id per message");
            let id = u16::try_from(k + 1).unwrap();
            let body = message(k);
            r.send(&raw::publish(
                false,
                1,
                id,
                b"devices/flooder/telemetry",
                &[],
                &body,
            ));
            acked.push(false);
            inflight += 1;
        }
        // One PUBACK (waiting), then whatever else was read with it.
        let got = r.read(WAIT);
        assert!(
            on_packet(got, &mut acked, &mut inflight),
            "no PUBACK in {WAIT:?}"
        );
        while on_packet(r.read(Duration::ZERO), &mut acked, &mut inflight) {}
    }
    let sent = acked.len();
    while inflight > 0 {
        let got = r.read(Duration::from_secs(30));
        assert!(on_packet(got, &mut acked, &mut inflight), "PUBACKs stopped");
    }
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    eprintln!(
        "QoS 1: {sent} messages ({} points) acknowledged in {:?}; RSS idle {} MiB, peak {} MiB",
        sent * LINES * FIELDS,
        t0.elapsed(),
        idle >> 20,
        peak >> 20
    );
    assert!(peak < RSS_BOUND, "server RSS peaked at {} MiB", peak >> 20);
    r.send(&[0xE0, 0x00]);
    // SIGKILL, not a clean stop: acknowledged points must be in the WAL already.
    server.kill();
    let stored = Stored::open(&server.data_dir());
    assert_stored(&stored, sent);
}
