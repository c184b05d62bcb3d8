//! Write path: points/s sustained into the store — 2 shards, group commit with fsync (every batch
//! submitted as `Durability::Durable`), batches of 1,001 points (143 rows × 7 fields of a
//! TSBS-IoT-like "readings" table with 8 tags + device_id), 1,000 trucks.
//!
//! A second case runs 10 M points with an 8 MiB head per shard, so seals happen during the run.
//!
//! Before the criterion run it prints bytes on disk per point for the same rows sealed into
//! segments, beside those rows written as Parquet with zstd in the same run.
//!
//! `cargo bench -p mast-benches --bench write_path`

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mast_benches::Fleet;
use mast_storage::{Durability, ScanRequest, Store, StoreConfig, WriteBatch};

const TRUCKS: usize = 1000;
const ROWS_PER_BATCH: usize = 143;
const BATCHES: usize = 2000;
const SUSTAINED_BATCHES: usize = 10_000;

fn batches(seed: u64, n: usize) -> (Vec<WriteBatch>, u64) {
    let mut fleet = Fleet::new(TRUCKS, seed);
    let mut out = Vec::with_capacity(n);
    let mut points = 0;
    while out.len() < n {
        for t in 0..fleet.len() {
            if out.len() == n {
                break;
            }
            let mut b = WriteBatch::new();
            fleet.readings(t, ROWS_PER_BATCH, &mut b);
            points += b.points() as u64;
            out.push(b);
        }
        fleet.advance(ROWS_PER_BATCH);
    }
    (out, points)
}

fn open(dir: &std::path::Path) -> Store {
    open_with(dir, StoreConfig::new(dir).max_head_bytes)
}

fn open_with(dir: &std::path::Path, max_head_bytes: usize) -> Store {
    let mut cfg = StoreConfig::new(dir);
    cfg.shards = 2;
    cfg.max_head_bytes = max_head_bytes;
    Store::open(cfg).expect("open store")
}

fn ingest(store: &Store, batches: Vec<WriteBatch>) {
    let tickets: Vec<_> = batches
        .into_iter()
        .map(|b| store.submit(b, Durability::Durable).expect("submit"))
        .collect();
    for t in tickets {
        t.wait().expect("write");
    }
}

fn dir_bytes(dir: &std::path::Path, ext: &str) -> u64 {
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            total += dir_bytes(&p, ext);
        } else if p.extension().is_some_and(|x| x == ext) {
            total += e.metadata().map_or(0, |m| m.len());
        }
    }
    total
}

/// Bytes per point: Mast segments vs Parquet (zstd) of the same rows.
fn disk_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let (b, points) = batches(7, BATCHES);
    let rows: u64 = b.iter().map(|x| x.rows() as u64).sum();
    ingest(&store, b);
    let wal = dir_bytes(dir.path(), "wal");
    store.seal().expect("seal");
    let seg = dir_bytes(dir.path(), "seg");
    let data = store
        .snapshot()
        .scan(&ScanRequest::table("readings"))
        .expect("scan");
    let pq_path = dir.path().join("readings.parquet");
    let file = std::fs::File::create(&pq_path).expect("create parquet");
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let schema = data[0].schema();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).expect("writer");
    for b in &data {
        w.write(b).expect("write parquet");
    }
    w.close().expect("close parquet");
    let pq = std::fs::metadata(&pq_path).map_or(0, |m| m.len());
    println!("write_path disk: {rows} rows, {points} points (1000 trucks, 10 s interval)");
    println!(
        "write_path disk: wal {:.2} B/point, mast segments {:.3} B/point, parquet+zstd {:.3} B/point, ratio mast/parquet {:.3}",
        wal as f64 / points as f64,
        seg as f64 / points as f64,
        pq as f64 / points as f64,
        seg as f64 / pq as f64
    );
}

fn bench(c: &mut Criterion) {
    disk_report();
    let mut g = c.benchmark_group("write_path");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(1));
    let (_, points) = batches(1, BATCHES);
    g.throughput(Throughput::Elements(points));
    let mut seed = 0;
    g.bench_function("readings_2shards_fsync_1000pt_batches", |bench| {
        bench.iter_batched(
            || {
                seed += 1;
                let dir = tempfile::tempdir().expect("tempdir");
                let store = open(dir.path());
                (dir, store, batches(seed, BATCHES).0)
            },
            |(dir, store, b)| {
                ingest(&store, b);
                (dir, store)
            },
            BatchSize::PerIteration,
        );
    });
    // Sustained: 10,000 batches (10 M points) with a small head, so each shard seals into
    // segments several times during the run and the seal cost is in the figure.
    let (_, points) = batches(1, SUSTAINED_BATCHES);
    g.throughput(Throughput::Elements(points));
    g.bench_function("readings_2shards_fsync_sealing_10M", |bench| {
        bench.iter_batched(
            || {
                seed += 1;
                let dir = tempfile::tempdir().expect("tempdir");
                let store = open_with(dir.path(), 8 << 20);
                (dir, store, batches(seed, SUSTAINED_BATCHES).0)
            },
            |(dir, store, b)| {
                ingest(&store, b);
                let seals = store.stats().seals;
                assert!(seals >= 2, "expected seals during the run, got {seals}");
                (dir, store)
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
