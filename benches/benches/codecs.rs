//! Column codec throughput on real sensor data, in values (elements) per second.
//!
//! `cargo bench -p mast-benches --bench codecs` runs encode and decode of gorilla, alp, integer
//! (the ALP values ×100, rounded), timestamps (a NAB series) and bools for every ALP sample
//! vector in `../shared/data/alp-samples`, then prints bits/value per sample file for gorilla,
//! alp, the per-block choice and zstd level 3 over the raw little-endian `f64` bytes, beside the
//! ALP paper's figures.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};
use mast_storage::codec::{self, FloatCodec, boolean, integer, timestamp};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

/// `(file stem, values)` for every ALP sample vector.
fn alp_samples() -> Vec<(String, Vec<f64>)> {
    let dir = data_dir().join("alp-samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let values = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            let name = p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            (name, values)
        })
        .collect()
}

/// The first 1,024 timestamps (ns) of a NAB series; `YYYY-MM-DD HH:MM:SS` parsed by hand.
fn nab_timestamps() -> Vec<i64> {
    let path = data_dir().join("nab/ec2_cpu_utilization_24ae8d.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let parse = |ts: &str| -> Option<i64> {
        let n: Vec<i64> = ts
            .split(['-', ' ', ':'])
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [y, m, d, h, mi, s] = n[..] else {
            return None;
        };
        let y = if m <= 2 { y - 1 } else { y };
        let (era, yoe) = (y.div_euclid(400), y.rem_euclid(400));
        let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
        let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
        Some((days * 86_400 + h * 3_600 + mi * 60 + s) * 1_000_000_000)
    };
    let ts: Vec<i64> = text
        .lines()
        .filter_map(|l| parse(l.split(',').next()?))
        .take(1024)
        .collect();
    if ts.len() == 1024 {
        ts
    } else {
        (0..1024)
            .map(|i| 1_700_000_000_000_000_000 + i * 10_000_000_000)
            .collect()
    }
}

fn bench_group<T>(
    c: &mut Criterion,
    group: &str,
    name: &str,
    values: &[T],
    encode: impl Fn(&[T], &mut Vec<u8>),
    decode: impl Fn(&[u8], &mut Vec<T>),
) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(values.len() as u64));
    let mut bytes = Vec::new();
    encode(values, &mut bytes);
    let mut buf = Vec::with_capacity(bytes.len() * 2);
    g.bench_function(format!("encode/{name}"), |b| {
        b.iter(|| {
            buf.clear();
            encode(black_box(values), &mut buf);
        })
    });
    let mut out = Vec::with_capacity(values.len());
    g.bench_function(format!("decode/{name}"), |b| {
        b.iter(|| {
            out.clear();
            decode(black_box(&bytes), &mut out);
        })
    });
    g.finish();
}

fn codecs(c: &mut Criterion) {
    for (name, values) in alp_samples() {
        for codec in FloatCodec::ALL {
            bench_group(
                c,
                codec.name(),
                &name,
                &values,
                |v, o| codec.encode(v, o),
                |b, o| {
                    let _ = codec.decode(b, o);
                },
            );
        }
        bench_group(
            c,
            "chosen",
            &name,
            &values,
            |v, o| {
                codec::encode_f64(v, o);
            },
            |b, o| {
                let _ = codec::decode_f64(b, o);
            },
        );
        let ints: Vec<i64> = values.iter().map(|v| (v * 100.0).round() as i64).collect();
        bench_group(c, "integer", &name, &ints, integer::encode, |b, o| {
            let _ = integer::decode(b, o);
        });
    }
    let ts = nab_timestamps();
    bench_group(
        c,
        "timestamp",
        "nab_ec2_cpu",
        &ts,
        timestamp::encode,
        |b, o| {
            let _ = timestamp::decode(b, o);
        },
    );
    let regular: Vec<i64> = (0..1024)
        .map(|i| 1_700_000_000_000_000_000 + i * 10_000_000_000)
        .collect();
    bench_group(
        c,
        "timestamp",
        "regular_10s",
        &regular,
        timestamp::encode,
        |b, o| {
            let _ = timestamp::decode(b, o);
        },
    );
    let bools: Vec<bool> = (0..1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) & 1 == 1)
        .collect();
    bench_group(c, "bool", "random", &bools, boolean::encode, |b, o| {
        let _ = boolean::decode(b, o);
    });
    let runs: Vec<bool> = (0..1024).map(|i| (i / 100) % 2 == 0).collect();
    bench_group(c, "bool", "runs", &runs, boolean::encode, |b, o| {
        let _ = boolean::decode(b, o);
    });
}

/// The ALP paper's bits/value (Gorilla, ALP, zstd) on the full datasets, from the data README.
fn paper(name: &str) -> Option<(f64, f64, Option<f64>)> {
    match name {
        "neon_air_pressure" => Some((24.48, 16.43, Some(9.39))),
        "city_temperature_f" => Some((58.82, 10.74, Some(16.77))),
        "neon_dew_point_temp" => Some((54.86, 13.40, Some(25.07))),
        "neon_bio_temp_c" => Some((50.69, 10.75, Some(17.46))),
        "neon_pm10_dust" => Some((27.50, 8.56, None)),
        "neon_wind_dir" => Some((58.14, 15.89, None)),
        _ => None,
    }
}

fn print_compression() {
    let fmt = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.2}"));
    println!("\nbits/value on the 1,024-value ALP samples (paper: full datasets)");
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>8} | {:>13} {:>9} {:>10}",
        "file", "gorilla", "alp", "chosen", "zstd-3", "paper gorilla", "paper alp", "paper zstd"
    );
    for (name, values) in alp_samples() {
        let bpv = |len: usize| len as f64 * 8.0 / values.len() as f64;
        let size = |codec: FloatCodec| {
            let mut b = Vec::new();
            codec.encode(&values, &mut b);
            bpv(b.len())
        };
        let mut chosen = Vec::new();
        codec::encode_f64(&values, &mut chosen);
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let zstd = zstd::bulk::compress(&raw, 3).map(|z| bpv(z.len())).ok();
        let p = paper(&name);
        println!(
            "{:<22} {:>8.2} {:>8.2} {:>8.2} {:>8} | {:>13} {:>9} {:>10}",
            name,
            size(FloatCodec::Gorilla),
            size(FloatCodec::Alp),
            bpv(chosen.len()),
            fmt(zstd),
            fmt(p.map(|p| p.0)),
            fmt(p.map(|p| p.1)),
            fmt(p.and_then(|p| p.2)),
        );
    }
    println!();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    targets = codecs
}

fn main() {
    print_compression();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
