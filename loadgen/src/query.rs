//! `mast-loadgen query`: the TSBS IoT query set ([`mast_loadgen::tsbs`]) over Mast's SQL API,
//! in a closed loop (`--concurrency` clients, each asking again when answered) or an open loop
//! (`--rate` queries per second, latency counted from when each query was due, so a server
//! that falls behind shows it in the tail instead of slowing the load: no coordinated
//! omission). Reports latency percentiles per query and in all, and errors by status and code.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use mast_loadgen::iot::parse_time;
use mast_loadgen::tsbs::{FLEETS, NAMES, Query, queries};
use serde_json::{Value, json};

use crate::stats::{Counters, Errors, Hist, Meter, Shown, timeline_json};

#[derive(Debug, Clone, Args)]
pub(crate) struct QueryArgs {
    /// Mast's HTTP API, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: String,
    /// Bearer token for the API (when Mast has `http.tokens`).
    #[arg(long)]
    token: Option<String>,
    /// Queries to run, comma separated [default: all ten: last-loc, low-fuel, high-load,
    /// stationary-trucks, long-driving-sessions, avg-vs-projected-fuel-consumption,
    /// avg-daily-driving-duration, avg-load, daily-activity, breakdown-frequency].
    #[arg(long, value_delimiter = ',')]
    queries: Vec<String>,
    /// Clients; in a closed loop each asks its next query when the last is answered, in an
    /// open loop they are the most queries under way at once.
    #[arg(short = 'c', long, default_value_t = 1)]
    concurrency: usize,
    /// Open loop: queries per second in all (0: closed loop).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds to run.
    #[arg(short = 'd', long, default_value_t = 10)]
    duration: u64,
    /// Stop after this many queries (0: no limit).
    #[arg(short = 'L', long, default_value_t = 0)]
    limit: u64,
    /// Seed for the fleet each fleet query asks about.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Start of the data (RFC 3339 or ms) [default: the earliest reading in Mast].
    #[arg(long, value_parser = parse_time)]
    start: Option<i64>,
    /// End of the data, exclusive [default: just after the latest reading in Mast].
    #[arg(long, value_parser = parse_time)]
    end: Option<i64>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

/// Per query name: runs, rows answered, latency.
#[derive(Default, Clone)]
struct PerQuery {
    count: u64,
    rows: u64,
    latency: Hist,
}

#[derive(Default)]
struct Tally {
    by_query: BTreeMap<&'static str, PerQuery>,
    all: Hist,
    errors: Errors,
    /// One example message per error reason.
    examples: BTreeMap<String, String>,
}

pub(crate) fn run_query(a: QueryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.concurrency > 0, "--concurrency must be at least 1");
    anyhow::ensure!(a.rate >= 0.0, "--rate must not be negative");
    let names: Vec<&'static str> = if a.queries.is_empty() {
        NAMES.to_vec()
    } else {
        a.queries
            .iter()
            .map(|q| {
                NAMES
                    .iter()
                    .find(|n| **n == q.trim())
                    .copied()
                    .ok_or_else(|| {
                        anyhow::anyhow!("unknown query {q:?} (known: {})", NAMES.join(", "))
                    })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let (start, end) = span(&a)?;
    // One prepared set per fleet; each run picks the set of its fleet.
    let sets: Vec<Vec<Query>> = FLEETS.iter().map(|f| queries(start, end, f)).collect();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let counters = Arc::new(Counters::default());
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let duration = Duration::from_secs(a.duration);
    let shown: Shown = [Some("queries"), Some("answered"), None];
    let meter = Meter::start("query", Arc::clone(&counters), shown, Some(duration));
    let t0 = Instant::now();
    let deadline = t0 + duration;
    let mut handles = Vec::new();
    for _ in 0..a.concurrency {
        let (a, names, sets) = (a.clone(), names.clone(), sets.clone());
        let (tally, counters, next, stop) = (
            Arc::clone(&tally),
            Arc::clone(&counters),
            Arc::clone(&next),
            Arc::clone(&stop),
        );
        handles.push(std::thread::spawn(move || {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) || (a.limit > 0 && n >= a.limit) {
                    break;
                }
                let due = if a.rate > 0.0 {
                    t0 + Duration::from_secs_f64(n as f64 / a.rate)
                } else {
                    Instant::now()
                };
                if due >= deadline || Instant::now() >= deadline {
                    break;
                }
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let name = names[(n % names.len() as u64) as usize];
                let fleet = pick(a.seed, n, FLEETS.len());
                let q = sets[fleet]
                    .iter()
                    .find(|q| q.name == name)
                    .expect("every name has a query");
                counters.sent.fetch_add(1, Ordering::Relaxed);
                let result = crate::sql::request(&a.http, a.token.as_deref(), &q.sql);
                let us = due.elapsed().as_micros() as u64;
                let mut t = tally.lock().unwrap_or_else(|e| e.into_inner());
                match result {
                    Ok(body) => {
                        counters.acked.fetch_add(1, Ordering::Relaxed);
                        let rows = body
                            .split(|&b| b == b'\n')
                            .filter(|l| !l.is_empty())
                            .count();
                        let e = t.by_query.entry(name).or_default();
                        e.count += 1;
                        e.rows += rows as u64;
                        e.latency.record(us);
                        t.all.record(us);
                    }
                    Err(f) => {
                        t.errors.add(format!("{name}: {}", f.reason));
                        t.examples.entry(f.reason.clone()).or_insert(f.detail);
                    }
                }
            }
        }));
    }
    for h in handles {
        if h.join().is_err() {
            stop.store(true, Ordering::Relaxed);
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let timeline = meter.finish();
    let mut t = std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()));
    // Open loop: queries that fell due before the end but never started (every client was
    // busy) are counted, not dropped from sight.
    if a.rate > 0.0 {
        let mut due = (a.rate * duration.as_secs_f64()).ceil() as u64;
        if a.limit > 0 {
            due = due.min(a.limit);
        }
        let started = counters.sent.load(Ordering::Relaxed);
        if due > started {
            t.errors.0.insert(
                "not started by the end (every client busy)".into(),
                due - started,
            );
        }
    }
    report(&a, &t, seconds, &timeline, &shown, (start, end));
    anyhow::ensure!(
        t.all.count() > 0 || t.errors.total() == 0,
        "every query failed: {}",
        t.examples.values().next().cloned().unwrap_or_default()
    );
    Ok(())
}

/// A well-spread pick in `0..n` for query `k` of seed `seed`.
fn pick(seed: u64, k: u64, n: usize) -> usize {
    let mut z = seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) % n as u64) as usize
}

/// The data's time span: from the flags, or asked of Mast (`readings`, as TSBS has it).
fn span(a: &QueryArgs) -> anyhow::Result<(i64, i64)> {
    if let (Some(s), Some(e)) = (a.start, a.end) {
        anyhow::ensure!(s < e, "--start must be before --end");
        return Ok((s, e));
    }
    let rows = crate::sql::query(
        &a.http,
        a.token.as_deref(),
        "SELECT CAST(min(time) AS BIGINT) AS lo, CAST(max(time) AS BIGINT) AS hi FROM readings",
    )
    .map_err(|e| anyhow::anyhow!("cannot find the span of the data (load it with `mast-loadgen iot`, or give --start and --end): {e}"))?;
    let row = rows.first().cloned().unwrap_or(Value::Null);
    let (lo, hi) = (row["lo"].as_i64(), row["hi"].as_i64());
    let (Some(lo), Some(hi)) = (lo, hi) else {
        anyhow::bail!("`readings` is empty: load data first (mast-loadgen iot)");
    };
    Ok((a.start.unwrap_or(lo), a.end.unwrap_or(hi + 1)))
}

fn report(
    a: &QueryArgs,
    t: &Tally,
    seconds: f64,
    timeline: &[(f64, [u64; 3])],
    shown: &Shown,
    span: (i64, i64),
) {
    let done = t.all.count();
    let mode = if a.rate > 0.0 { "open" } else { "closed" };
    if a.json {
        let by: serde_json::Map<String, Value> = t
            .by_query
            .iter()
            .map(|(n, q)| {
                (
                    (*n).to_string(),
                    json!({"count": q.count, "rows": q.rows, "latency_us": q.latency.json()}),
                )
            })
            .collect();
        let v = json!({
            "verb": "query",
            "mode": mode,
            "concurrency": a.concurrency,
            "rate": a.rate,
            "start_ns": span.0,
            "end_ns": span.1,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "queries": done,
            "queries_per_sec": (done as f64 / seconds.max(1e-9) * 10.0).round() / 10.0,
            "latency_us": t.all.json(),
            "errors": t.errors.json(),
            "by_query": by,
            "timeline": timeline_json(timeline, shown),
        });
        println!("{v}");
    } else {
        println!(
            "query: {mode} loop, {} clients{}: {done} answered in {seconds:.2}s ({:.1}/s); latency {}; errors: {}",
            a.concurrency,
            if a.rate > 0.0 {
                format!(" at {}/s", a.rate)
            } else {
                String::new()
            },
            done as f64 / seconds.max(1e-9),
            t.all.text(),
            t.errors.text()
        );
        for (n, q) in &t.by_query {
            println!(
                "  {n:<36} {:>6} runs {:>9} rows  {}",
                q.count,
                q.rows,
                q.latency.text()
            );
        }
    }
    for (reason, detail) in &t.examples {
        eprintln!("query: {reason}, e.g. {detail}");
    }
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn fleet_picks_spread_and_repeat_for_a_seed() {
        let mut seen = [0u32; 4];
        for k in 0..4000 {
            seen[pick(1, k, 4)] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert_eq!(pick(9, 17, 4), pick(9, 17, 4));
        assert_ne!(
            (0..32).map(|k| pick(1, k, 4)).collect::<Vec<_>>(),
            (0..32).map(|k| pick(2, k, 4)).collect::<Vec<_>>()
        );
    }
}
