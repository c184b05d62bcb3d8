//! Scan: decoded points/s for a full scan of all 7 float columns of a sealed TSBS-like "readings"
//! table, and for a 1 %-selective time range (pruned by block time ranges).
//!
//! `cargo bench -p mast-benches --bench scan`

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mast_benches::{FIELDS, Fleet, INTERVAL_NS, START_NS};
use mast_storage::{Durability, ScanRequest, Store, StoreConfig, WriteBatch};

const TRUCKS: usize = 200;
const ROWS: usize = 5_000; // per truck: 1,000,000 rows, 7,000,000 float points

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = StoreConfig::new(dir.path());
    cfg.shards = 2;
    let store = Store::open(cfg).expect("open");
    let mut fleet = Fleet::new(TRUCKS, 3);
    for chunk in 0..ROWS / 500 {
        let _ = chunk;
        let mut tickets = Vec::new();
        for t in 0..TRUCKS {
            let mut b = WriteBatch::new();
            fleet.readings(t, 500, &mut b);
            tickets.push(store.submit(b, Durability::Buffered).expect("submit"));
        }
        for t in tickets {
            t.wait().expect("write");
        }
        fleet.advance(500);
    }
    store.seal().expect("seal");
    let snap = store.snapshot();
    let total_rows = (TRUCKS * ROWS) as u64;

    let mut g = c.benchmark_group("scan");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(total_rows * FIELDS.len() as u64));
    let full = ScanRequest::table("readings").columns(&FIELDS);
    g.bench_function("full_7_float_columns", |b| {
        b.iter(|| {
            let out = snap.scan(&full).expect("scan");
            assert_eq!(
                out.iter().map(|b| b.num_rows() as u64).sum::<u64>(),
                total_rows
            );
        });
    });
    let span = ROWS as i64 * INTERVAL_NS;
    let start = START_NS + span / 2;
    let sel = ScanRequest::table("readings")
        .columns(&FIELDS)
        .time_range(start, start + span / 100);
    let sel_rows = (TRUCKS * ROWS / 100) as u64;
    g.throughput(Throughput::Elements(sel_rows * FIELDS.len() as u64));
    g.bench_function("one_percent_time_range", |b| {
        b.iter(|| {
            let out = snap.scan(&sel).expect("scan");
            assert_eq!(
                out.iter().map(|b| b.num_rows() as u64).sum::<u64>(),
                sel_rows
            );
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
