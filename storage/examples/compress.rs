//! Reports how well Mast's float codecs compress a CSV column.
//!
//! ```text
//! cargo run --release -p mast-storage --example compress -- FILE...
//! ```
//!
//! Each FILE holds one float per line, or `timestamp,value` lines (the last comma-separated field
//! is taken); lines that do not parse, such as a header, are skipped. Values are encoded in blocks
//! of 1,024, as the engine seals them. Output, one line per file and codec:
//! `<file> <codec> <bits_per_value>`, then `<file> chosen <codec> <bits_per_value>` for what
//! `encode_f64` picks per block (the codec that won most blocks; bits include the tag bytes).

use std::collections::BTreeMap;
use std::error::Error;
use std::process::ExitCode;

use mast_storage::codec::{self, FloatCodec};

const BLOCK: usize = 1024;

fn read_values(path: &str) -> Result<Vec<f64>, Box<dyn Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
    let values: Vec<f64> = text
        .lines()
        .filter_map(|line| line.rsplit(',').next()?.trim().parse().ok())
        .collect();
    if values.is_empty() {
        return Err(
            format!("{path}: no values (expected one float per line or timestamp,value)").into(),
        );
    }
    Ok(values)
}

fn bits_per_value(bytes: usize, values: usize) -> f64 {
    bytes as f64 * 8.0 / values as f64
}

fn report(path: &str) -> Result<(), Box<dyn Error>> {
    let values = read_values(path)?;
    let mut buf = Vec::new();
    for codec in FloatCodec::ALL {
        let mut total = 0;
        for block in values.chunks(BLOCK) {
            buf.clear();
            codec.encode(block, &mut buf);
            total += buf.len();
        }
        println!(
            "{path} {} {:.2}",
            codec.name(),
            bits_per_value(total, values.len())
        );
    }
    let mut wins: BTreeMap<u8, (usize, FloatCodec)> = BTreeMap::new();
    let mut total = 0;
    for block in values.chunks(BLOCK) {
        buf.clear();
        let chosen = codec::encode_f64(block, &mut buf);
        total += buf.len();
        wins.entry(chosen as u8).or_insert((0, chosen)).0 += 1;
    }
    let winner = wins
        .values()
        .max_by_key(|(count, codec)| (*count, *codec as u8))
        .map_or("none", |(_, codec)| codec.name());
    println!(
        "{path} chosen {winner} {:.2}",
        bits_per_value(total, values.len())
    );
    Ok(())
}

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: compress FILE...  (CSV: one float per line, or timestamp,value)");
        return ExitCode::from(2);
    }
    let mut failed = false;
    for file in &files {
        if let Err(e) = report(file) {
            eprintln!("error: {e}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
