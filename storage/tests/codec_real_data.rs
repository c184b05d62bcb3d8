//! Column codecs against real sensor data in `../shared/data`: every ALP sample vector and every
//! NAB series round-trips bit-exactly, and ALP meets the paper's bits/value on each sample.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use mast_storage::codec::{self, FloatCodec};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data")
}

fn csv_files(sub: &str) -> Vec<PathBuf> {
    let dir = data_dir().join(sub);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no CSV files in {}", dir.display());
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One float per line; lines that do not parse are skipped.
fn alp_values(path: &Path) -> Vec<f64> {
    read(path)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) to nanoseconds since the epoch.
fn parse_ns(ts: &str) -> Option<i64> {
    let (date, time) = ts.trim().split_once(' ')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, mo, da) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':').map(|p| p.parse::<i64>());
    let (h, mi, s) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let secs = days_from_civil(y, mo, da) * 86_400 + h * 3_600 + mi * 60 + s;
    Some(secs * 1_000_000_000)
}

/// `timestamp,value` rows; the header and anything else that does not parse is skipped.
fn nab_series(path: &Path) -> (Vec<i64>, Vec<f64>) {
    read(path)
        .lines()
        .filter_map(|l| {
            let (ts, v) = l.split_once(',')?;
            Some((parse_ns(ts)?, v.trim().parse::<f64>().ok()?))
        })
        .unzip()
}

fn bits(values: &[f64]) -> Vec<u64> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// Round-trips `values` through every float codec and `encode_f64`; returns ALP's encoded size.
fn assert_float_round_trips(name: &str, values: &[f64]) -> usize {
    let mut alp_len = 0;
    for codec in FloatCodec::ALL {
        let mut bytes = Vec::new();
        codec.encode(values, &mut bytes);
        let mut back = Vec::new();
        codec
            .decode(&bytes, &mut back)
            .unwrap_or_else(|e| panic!("{name} {}: {e}", codec.name()));
        assert_eq!(bits(&back), bits(values), "{name} through {}", codec.name());
        if codec == FloatCodec::Alp {
            alp_len = bytes.len();
        }
    }
    let mut bytes = Vec::new();
    codec::encode_f64(values, &mut bytes);
    let mut back = Vec::new();
    codec::decode_f64(&bytes, &mut back).unwrap_or_else(|e| panic!("{name} chosen: {e}"));
    assert_eq!(bits(&back), bits(values), "{name} through encode_f64");
    alp_len
}

/// The ALP column of the paper's table (README of the data directory).
fn paper_alp_bits(file: &str) -> Option<f64> {
    match file {
        "neon_air_pressure" => Some(16.43),
        "city_temperature_f" => Some(10.74),
        "neon_dew_point_temp" => Some(13.40),
        "neon_bio_temp_c" => Some(10.75),
        "neon_pm10_dust" => Some(8.56),
        "neon_wind_dir" => Some(15.89),
        _ => None,
    }
}

#[test]
fn alp_samples_round_trip_and_meet_the_papers_alp_bits_per_value() {
    let mut checked = 0;
    for path in csv_files("alp-samples") {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let values = alp_values(&path);
        assert_eq!(values.len(), 1024, "{name}");
        let alp_len = assert_float_round_trips(&name, &values);
        let bpv = alp_len as f64 * 8.0 / values.len() as f64;
        if let Some(paper) = paper_alp_bits(&name) {
            assert!(
                bpv <= paper,
                "{name}: ALP {bpv:.2} bits/value, paper {paper}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}

#[test]
fn nab_series_round_trip_in_engine_sized_blocks() {
    for path in csv_files("nab") {
        let name = path.display().to_string();
        let (timestamps, values) = nab_series(&path);
        assert!(timestamps.len() > 1000, "{name}: {} rows", timestamps.len());
        for block in values.chunks(1024) {
            assert_float_round_trips(&name, block);
        }
        assert_float_round_trips(&name, &values);
        let mut bytes = Vec::new();
        codec::encode_timestamps(&timestamps, &mut bytes);
        let mut back = Vec::new();
        codec::decode_timestamps(&bytes, &mut back).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, timestamps, "{name} timestamps");
    }
}

#[test]
fn nab_timestamps_parse_to_the_right_instant() {
    assert_eq!(parse_ns("1970-01-01 00:00:00"), Some(0));
    assert_eq!(
        parse_ns("2014-02-14 14:30:00"),
        Some(1_392_388_200_000_000_000)
    );
    assert_eq!(parse_ns("timestamp"), None);
}

#[test]
fn a_regular_ten_second_series_costs_at_most_1_1_bits_per_timestamp() {
    let start = parse_ns("2015-09-01 13:45:00").unwrap_or_default();
    let timestamps: Vec<i64> = (0..1024).map(|i| start + i * 10_000_000_000).collect();
    let mut bytes = Vec::new();
    codec::encode_timestamps(&timestamps, &mut bytes);
    let bpv = bytes.len() as f64 * 8.0 / 1024.0;
    assert!(bpv <= 1.1, "{bpv:.3} bits/timestamp");
    let mut back = Vec::new();
    codec::decode_timestamps(&bytes, &mut back).unwrap_or_default();
    assert_eq!(back, timestamps);
}
