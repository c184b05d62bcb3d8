//! `mast-loadgen` against the real `mast serve`: what `iot` reports sending is what the server
//! stored, row for row and value for value, as the library's generator makes it for the same
//! seed; `--verify` finds every acknowledged point, or reports the loss; `pub -R` holds its rate. The server is the `mast` binary next to this package's `mast-loadgen`
//! (built by `cargo test --workspace`, or `cargo build -p mast-engine --bin mast`; `MAST_BIN`
//! overrides); without it they fail, naming what to build.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mast_loadgen::iot::{Row, Table, Truck, Value};
use serde_json::{Map, Value as Json};

const START: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z, the default --start
const STEP: i64 = 10_000_000_000; // the default --interval

fn mast_bin() -> PathBuf {
    let p = std::env::var_os("MAST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_BIN_EXE_mast-loadgen"))
                .with_file_name(format!("mast{}", std::env::consts::EXE_SUFFIX))
        });
    assert!(
        p.exists(),
        "no mast binary at {} (cargo build -p mast-engine --bin mast, or set MAST_BIN)",
        p.display()
    );
    p
}

/// A free port below the kernel's ephemeral range, so no client connection of a test running
/// beside this one can take it between this check and the server's bind (as in the engine's
/// test harness, `engine/tests/common`).
fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(2_654_435_761) % 22_000;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(
            n < 22_000,
            "no free loopback port below the ephemeral range"
        );
        let port = (10_000 + (start + n) % 22_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A `mast serve` on a free loopback port with its data in a temporary directory.
struct Server {
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    http_port: u16,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(bin: PathBuf) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let http_port = free_port();
        let config = dir.path().join("mast.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n[mqtt]\nlisten = \"127.0.0.1:{port}\"\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("mast.log")).unwrap();
        let mut cmd = Command::new(&bin);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MAST_") {
                cmd.env_remove(name);
            }
        }
        let child = cmd
            .args(["serve", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting mast");
        let mut s = Server {
            bin,
            child: Some(child),
            port,
            http_port,
            dir,
        };
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err()
            || TcpStream::connect(("127.0.0.1", http_port)).is_err()
        {
            if let Some(st) = s.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mast exited with {st}:\n{}", s.log());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "mast did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mast.log")).unwrap_or_default()
    }

    /// SIGTERM, and wait for a clean exit.
    fn stop(&mut self) {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let t0 = Instant::now();
        while c.try_wait().unwrap().is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "mast did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The stored rows of `table` (server stopped), via `mast export`.
    fn rows(&self, table: &str) -> Vec<Map<String, Json>> {
        let out = Command::new(&self.bin)
            .args(["export", "--table", table, "--data-dir"])
            .arg(self.dir.path().join("data"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mast export: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| match serde_json::from_str(l).unwrap() {
                Json::Object(m) => m,
                other => panic!("export line is not an object: {other}"),
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- mast log ----\n{}", self.log());
        }
    }
}

/// Runs `mast-loadgen iot --json ARGS` against `server` and returns its summary.
fn loadgen(server: &Server, args: &[&str]) -> Json {
    let out = Command::new(env!("CARGO_BIN_EXE_mast-loadgen"))
        .args(["iot", "--json", "-p", &server.port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mast-loadgen iot {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON summary")
}

/// What trucks `0..trucks` of `seed` send over `ticks` intervals in batches of `batch`.
fn expected(seed: u64, trucks: u64, ticks: usize, batch: usize, dirty: f64) -> Vec<(Truck, Row)> {
    let mut all = Vec::new();
    for i in 0..trucks {
        let mut t = Truck::new(seed, i, dirty);
        let mut n = 0;
        let mut rows = Vec::new();
        while n < ticks {
            let k = batch.min(ticks - n);
            let b = t.next_batch(START + n as i64 * STEP, STEP, k);
            for table in Table::ALL {
                rows.extend_from_slice(b.rows(table));
            }
            n += k;
        }
        let b = t.drain();
        for table in Table::ALL {
            rows.extend_from_slice(b.rows(table));
        }
        all.extend(rows.into_iter().map(|r| (t.clone(), r)));
    }
    all
}

/// Asserts that the stored rows of both tables are exactly `expected` (tags only with `tags`),
/// and that the counts equal the summary's.
fn assert_stored(server: &Server, summary: &Json, expected: &[(Truck, Row)], tags: bool) {
    let mut want_points = 0;
    for table in Table::ALL {
        let stored = server.rows(table.name());
        let mut by_key: BTreeMap<(String, i64), &Map<String, Json>> = BTreeMap::new();
        for r in &stored {
            let key = (
                r["device_id"].as_str().unwrap().to_owned(),
                r["time"].as_i64().unwrap(),
            );
            assert!(
                by_key.insert(key, r).is_none(),
                "one row per device and time"
            );
        }
        let want: Vec<&(Truck, Row)> = expected.iter().filter(|(_, r)| r.table == table).collect();
        let s = &summary["tables"][table.name()];
        assert_eq!(
            stored.len() as u64,
            s["rows"].as_u64().unwrap(),
            "{table:?} rows"
        );
        assert_eq!(stored.len(), want.len(), "{table:?} rows");
        let mut points = 0u64;
        for (truck, row) in want {
            let got = by_key
                .get(&(truck.device_id().to_owned(), row.ts_ns))
                .unwrap_or_else(|| panic!("{} {row:?} was not stored", truck.device_id()));
            let mut cols = 3; // table, time, device_id
            if tags {
                for (k, v) in truck.tags().pairs() {
                    assert_eq!(got[k].as_str(), Some(v.as_str()), "tag {k} of {got:?}");
                    cols += 1;
                }
            }
            for (name, v) in row.fields() {
                match (v, tags) {
                    (Value::Int(i), true) => assert_eq!(got[name].as_i64(), Some(i), "{name}"),
                    _ => assert_eq!(got[name].as_f64(), Some(v.as_f64()), "{name} of {got:?}"),
                }
                cols += 1;
                points += 1;
            }
            assert_eq!(got.len(), cols, "no more columns than sent: {got:?}");
        }
        assert_eq!(points, s["points"].as_u64().unwrap(), "{table:?} points");
        want_points += points;
    }
    assert_eq!(summary["points"].as_u64(), Some(want_points));
    assert_eq!(summary["rows"].as_u64(), Some(expected.len() as u64));
}

#[test]
fn a_fast_forward_fleet_is_stored_exactly_as_generated() {
    let bin = mast_bin();
    let mut server = Server::start(bin);
    let summary = loadgen(
        &server,
        &[
            "--fast-forward",
            "-c",
            "5",
            "--duration",
            "10m",
            "--seed",
            "7",
        ],
    );
    server.stop();
    // 5 trucks × 60 intervals × (7 + 3) fields, in batches of 60: one message per table each.
    assert_eq!(summary["trucks"], 5);
    assert_eq!(summary["rows"], 600);
    assert_eq!(summary["points"], 3000);
    assert_eq!(summary["messages"], 10);
    assert_eq!(summary["acked"], 10);
    let want = expected(7, 5, 60, 60, 0.0);
    assert_stored(&server, &summary, &want, true);
    // The first reading of truck_0 as the generator makes it, field by field.
    let first = server
        .rows("readings")
        .into_iter()
        .find(|r| r["device_id"] == "truck_0" && r["time"] == START)
        .expect("truck_0's first reading");
    let mut t = Truck::new(7, 0, 0.0);
    let gen_first = t.next_batch(START, STEP, 1).rows(Table::Readings)[0];
    for (name, v) in gen_first.fields() {
        assert_eq!(first[name].as_f64(), Some(v.as_f64()), "{name}");
    }
    assert_eq!(first["name"], "truck_0");
}

#[test]
fn dirty_data_at_qos_0_is_counted_exactly() {
    let bin = mast_bin();
    let mut server = Server::start(bin);
    let summary = loadgen(
        &server,
        &[
            "--fast-forward",
            "-c",
            "4",
            "--duration",
            "30m",
            "--seed",
            "11",
            "--dirty",
            "0.3",
            "--batch",
            "7",
            "-q",
            "0",
            "--threads",
            "2",
        ],
    );
    server.stop();
    assert_eq!(summary["acked"], 0);
    let want = expected(11, 4, 180, 7, 0.3);
    assert!(
        want.iter()
            .any(|(_, r)| r.points() < r.table.fields().len())
    );
    assert_stored(&server, &summary, &want, true);
}

#[test]
fn json_payloads_carry_the_values_without_tags() {
    let bin = mast_bin();
    let mut server = Server::start(bin);
    let summary = loadgen(
        &server,
        &[
            "--fast-forward",
            "-c",
            "3",
            "--duration",
            "5m",
            "--seed",
            "5",
            "--format",
            "json",
            "--batch",
            "4",
        ],
    );
    server.stop();
    assert_eq!(summary["messages"], 3 * 2 * 8); // 30 intervals in batches of 4
    let want = expected(5, 3, 30, 4, 0.0);
    assert_stored(&server, &summary, &want, false);
}

/// `mast-loadgen iot --verify` against `mqtt_port`, asking the SQL API of `sql`.
fn verify_run(mqtt_port: u16, sql: &Server, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mast-loadgen"))
        .args(["iot", "--verify", "-p", &mqtt_port.to_string()])
        .args(["--http", &format!("127.0.0.1:{}", sql.http_port)])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn verify_finds_every_acknowledged_point_in_mast() {
    let bin = mast_bin();
    let server = Server::start(bin);
    let args = [
        "--fast-forward",
        "-c",
        "4",
        "--duration",
        "20m",
        "--seed",
        "3",
        "--dirty",
        "0.2",
    ];
    let (ok, out, err) = verify_run(server.port, &server, &args);
    assert!(ok, "{out}\n{err}");
    // 4 trucks × 120 intervals per table, every row acknowledged and found
    assert!(
        out.contains("verify readings: acknowledged 480 rows"),
        "{out}"
    );
    assert!(
        out.contains("verify diagnostics: acknowledged 480 rows"),
        "{out}"
    );
    assert_eq!(
        out.matches("missing 0 rows, 0 points (0 trucks)").count(),
        2,
        "{out}"
    );
}

#[test]
fn verify_reports_the_loss_when_the_broker_stores_nothing() {
    let bin = mast_bin();
    // Mosquitto acknowledges everything and stores nothing; Mast (empty) answers the SQL.
    let mosq_port = free_port();
    let mut mosq = Command::new("mosquitto")
        .args(["-p", &mosq_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto (apt install mosquitto) must be on PATH");
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", mosq_port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "mosquitto did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let server = Server::start(bin);
    let args = [
        "--fast-forward",
        "-c",
        "3",
        "--duration",
        "10m",
        "--seed",
        "4",
        "-q",
        "1",
    ];
    let (ok, out, err) = verify_run(mosq_port, &server, &args);
    let _ = mosq.kill();
    let _ = mosq.wait();
    assert!(!ok, "a run whose points are all missing must fail:\n{out}");
    // 3 trucks × 60 intervals: 180 rows per table, 7 and 3 points a row
    assert!(
        out.contains("verify readings: acknowledged 180 rows / 1260 points, stored 0 / 0; missing 180 rows, 1260 points (3 trucks)"),
        "{out}"
    );
    assert!(
        out.contains("verify diagnostics: acknowledged 180 rows / 540 points, stored 0 / 0; missing 180 rows, 540 points (3 trucks)"),
        "{out}"
    );
    assert!(
        err.contains("1800 acknowledged points are missing"),
        "{err}"
    );
}

#[test]
fn pub_holds_the_requested_rate_within_five_percent() {
    let bin = mast_bin();
    let server = Server::start(bin);
    for (rate, conns) in [(400u64, "4"), (1500, "10")] {
        let out = Command::new(env!("CARGO_BIN_EXE_mast-loadgen"))
            .args([
                "pub",
                "--json",
                "-q",
                "1",
                "-p",
                &server.port.to_string(),
                "-c",
                conns,
            ])
            .args(["-R", &rate.to_string(), "-L", &(rate * 3).to_string()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string();
        let v: Json = serde_json::from_str(&line).unwrap();
        assert_eq!(v["sent"], rate * 3, "{line}");
        assert_eq!(v["acked"], rate * 3, "{line}");
        let secs = v["seconds"].as_f64().unwrap();
        let achieved = (rate * 3) as f64 / secs;
        assert!(
            (achieved - rate as f64).abs() <= rate as f64 * 0.05,
            "asked {rate}/s, sent {achieved:.0}/s over {secs:.3} s"
        );
    }
}
