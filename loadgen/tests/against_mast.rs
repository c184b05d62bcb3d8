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
        Server::start_with(bin, "")
    }

    /// Starts with `mqtt_extra` (TOML lines) inside the `[mqtt]` table.
    fn start_with(bin: PathBuf, mqtt_extra: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let http_port = free_port();
        let config = dir.path().join("mast.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n[mqtt]\nlisten = \"127.0.0.1:{port}\"\n{mqtt_extra}\n",
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

/// Runs `mast-loadgen ARGS`: its exit success, stdout and stderr.
fn run_loadgen(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mast-loadgen"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `mast-loadgen ARGS` and returns its exit success, the JSON lines it printed and its
/// stderr.
fn run_json(args: &[&str]) -> (bool, Vec<Json>, String) {
    let (ok, out, err) = run_loadgen(args);
    let lines = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (ok, lines, err)
}

/// Runs `mast-loadgen iot --json ARGS` against `server` and returns its summary.
fn loadgen(server: &Server, args: &[&str]) -> Json {
    let port = server.port.to_string();
    let (ok, mut out, err) = run_json(&[&["iot", "--json", "-p", &port], args].concat());
    assert!(ok, "mast-loadgen iot {args:?}: {err}");
    assert_eq!(out.len(), 1, "one JSON summary");
    out.remove(0)
}

/// What trucks `0..trucks` of `seed` send over `ticks` intervals in batches of `batch`.
fn expected(seed: u64, trucks: u64, ticks: usize, batch: usize, dirty: f64) -> Vec<(Truck, Row)> {
    let mut all = Vec::new();
    for i in 0..trucks {
        let mut t = Truck::new(seed, i, dirty);
        let rows = t.history(START, STEP, ticks, batch);
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
    let (port, http) = (
        mqtt_port.to_string(),
        format!("127.0.0.1:{}", sql.http_port),
    );
    run_loadgen(&[&["iot", "--verify", "-p", &port, "--http", &http], args].concat())
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
        out.matches("missing 0 rows, 0 points (0 devices)").count(),
        2,
        "{out}"
    );
}

/// A Mosquitto process, killed when dropped (a failing test must not leave it running).
struct Mosquitto(Child);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Mosquitto (Debian package) on a free port, listening.
fn mosquitto() -> (Mosquitto, u16) {
    let port = free_port();
    let child = Command::new("mosquitto")
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto (apt install mosquitto) must be on PATH");
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "mosquitto did not listen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (Mosquitto(child), port)
}

#[test]
fn scenarios_run_against_mosquitto_too_at_every_qos() {
    let (mosq, port) = mosquitto();
    let port = port.to_string();
    for (qos, v) in [("0", "4"), ("1", "5"), ("2", "5"), ("2", "4")] {
        let (ok, out, err) = run_json(&[
            "bench", "fanout", "--json", "-p", &port, "-V", v, "-c", "3", "--pubs", "2", "-q", qos,
            "-L", "100", "-I", "2", "-d", "30",
        ]);
        assert!(ok, "QoS {qos} v{v}: {err}");
        let r = &out[0];
        assert_eq!(r["sent"], 100, "{r}");
        // Paced (-I 2 ms) so that Mosquitto drops nothing at QoS 0 either.
        assert_eq!(r["received"], 300, "QoS {qos} v{v}: {r}");
        let acked = if qos == "0" { 0 } else { 100 };
        assert_eq!(r["acked"], acked, "QoS {qos} v{v}: {r}");
        assert_eq!(r["errors"], serde_json::json!({}));
    }
    // Mosquitto closes the connection on an invalid filter: an error, not a 60 s wait.
    let t0 = Instant::now();
    let (ok, out, _) = run_json(&["sub", "--json", "-p", &port, "-t", "a/#/b", "-d", "30"]);
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "no wait for a SUBACK that cannot come"
    );
    assert!(ok, "the connection came up, so the run itself succeeded");
    assert_eq!(
        out[0]["errors"]["subscribe: the connection closed before SUBACK"], 1,
        "{}",
        out[0]
    );
    drop(mosq);
}

#[test]
fn verify_reports_the_loss_when_the_broker_stores_nothing() {
    let bin = mast_bin();
    // Mosquitto acknowledges everything and stores nothing; Mast (empty) answers the SQL.
    let (mosq, mosq_port) = mosquitto();
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
    drop(mosq);
    assert!(!ok, "a run whose points are all missing must fail:\n{out}");
    // 3 trucks × 60 intervals: 180 rows per table, 7 and 3 points a row
    assert!(
        out.contains("verify readings: acknowledged 180 rows / 1260 points, stored 0 / 0; missing 180 rows, 1260 points (3 devices)"),
        "{out}"
    );
    assert!(
        out.contains("verify diagnostics: acknowledged 180 rows / 540 points, stored 0 / 0; missing 180 rows, 540 points (3 devices)"),
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
        let (port, r, limit) = (
            server.port.to_string(),
            rate.to_string(),
            (rate * 3).to_string(),
        );
        let (ok, out, err) = run_json(&[
            "pub", "--json", "-q", "1", "-p", &port, "-c", conns, "--rate", &r, "-L", &limit,
        ]);
        assert!(ok, "{err}");
        let v = out.last().expect("a JSON summary");
        assert_eq!(v["sent"], rate * 3, "{v}");
        assert_eq!(v["acked"], rate * 3, "{v}");
        let secs = v["seconds"].as_f64().unwrap();
        let achieved = (rate * 3) as f64 / secs;
        assert!(
            (achieved - rate as f64).abs() <= rate as f64 * 0.05,
            "asked {rate}/s, sent {achieved:.0}/s over {secs:.3} s"
        );
    }
}

#[test]
fn every_scenario_delivers_each_acknowledged_message_to_its_subscribers() {
    let server = Server::start(mast_bin());
    let port = server.port.to_string();
    // (scenario, size, extra flags, messages, copies each subscriber set gets in all)
    let cases: [(&str, &str, &[&str], u64, u64); 4] = [
        ("p2p", "3", &[], 300, 1),
        ("fanin", "4", &["--subs", "2"], 200, 2),
        ("fanout", "3", &["--pubs", "2"], 100, 3),
        ("sharedsub", "3", &["--subs", "3"], 300, 1),
    ];
    for (scenario, size, extra, limit, copies) in cases {
        let limit_s = limit.to_string();
        let mut args = vec![
            "bench",
            scenario,
            "--json",
            "-p",
            &port,
            "-c",
            size,
            "-q",
            "1",
            "-L",
            &limit_s,
            "-d",
            "30",
            "--threads",
            "2",
        ];
        args.extend_from_slice(extra);
        let (ok, out, err) = run_json(&args);
        assert!(ok, "{scenario}: {err}");
        let v = &out[0];
        assert_eq!(v["scenario"], scenario);
        assert_eq!(v["sent"], limit, "{scenario}: {v}");
        assert_eq!(v["acked"], limit, "{scenario}: {v}");
        assert_eq!(v["expected"], limit * copies, "{scenario}: {v}");
        assert_eq!(v["received"], limit * copies, "{scenario}: {v}");
        assert_eq!(v["errors"], serde_json::json!({}), "{scenario}");
        // Every delivery was timed end to end, every acknowledgement publish to PUBACK.
        assert_eq!(v["e2e_latency_us"]["count"], limit * copies, "{scenario}");
        assert_eq!(v["ack_latency_us"]["count"], limit, "{scenario}");
        let p = &v["e2e_latency_us"];
        assert!(p["p50"].as_u64() <= p["p99"].as_u64() && p["p99"].as_u64() <= p["max"].as_u64());
        let timeline: u64 = v["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["sent"].as_u64().unwrap())
            .sum();
        assert!(
            timeline <= limit,
            "the timeline never counts more than was sent"
        );
    }
}

#[test]
fn refused_connections_are_counted_by_reason_and_fail_the_run() {
    let server = Server::start_with(mast_bin(), "allow_anonymous = false");
    let (ok, out, err) = run_json(&[
        "conn",
        "--json",
        "-p",
        &server.port.to_string(),
        "-c",
        "5",
        "-u",
        "nobody",
        "-P",
        "wrong",
        "-d",
        "0",
    ]);
    assert!(!ok, "a run where nothing connects must fail");
    assert!(err.contains("no connection came up"), "{err}");
    let v = &out[0];
    assert_eq!(v["connected"], 0);
    assert_eq!(v["failed"], 5);
    assert_eq!(
        v["errors"],
        serde_json::json!({"connack 0x86 bad user name or password": 5}),
        "{v}"
    );
    // Nothing listening: the connect error itself is the reason.
    let (ok, out, _) = run_json(&[
        "conn",
        "--json",
        "-p",
        &free_port().to_string(),
        "-c",
        "2",
        "-d",
        "0",
    ]);
    assert!(!ok);
    let errors = out[0]["errors"].as_object().unwrap().clone();
    assert_eq!(
        errors.values().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        2,
        "{errors:?}"
    );
    assert!(
        errors.keys().all(|k| k.starts_with("connect: ")),
        "{errors:?}"
    );
}

#[test]
fn connections_come_from_every_source_address_given() {
    let server = Server::start(mast_bin());
    let mut child = Command::new(env!("CARGO_BIN_EXE_mast-loadgen"))
        .args([
            "conn",
            "-p",
            &server.port.to_string(),
            "-c",
            "30",
            "-d",
            "30",
        ])
        .args([
            "--ifaddr",
            "127.0.0.2-127.0.0.4",
            "-R",
            "300",
            "--threads",
            "2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for "conn: 30 connected in …; holding for 30 s".
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(line.starts_with("conn: 30 connected in"), "{line}");
    // The address comes from the presence record, committed just after the CONNACK: wait for
    // every connection's.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = sql(
            server.http_port,
            "SELECT split_part(address, ':', 1) AS ip, count(*) AS n FROM system.connections \
             GROUP BY ip ORDER BY ip",
        );
        if rows.iter().all(|r| r["ip"].is_string()) || std::time::Instant::now() > deadline {
            break rows;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    let got: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["ip"].as_str().unwrap().to_string(),
                r["n"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("127.0.0.2".to_string(), 10),
            ("127.0.0.3".to_string(), 10),
            ("127.0.0.4".to_string(), 10)
        ]
    );
}

/// Rows of a SQL query over Mast's HTTP API (JSON lines).
fn sql(http_port: u16, q: &str) -> Vec<Json> {
    let mut s = TcpStream::connect(("127.0.0.1", http_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    std::io::Write::write_all(
        &mut s,
        format!(
            "POST /api/v1/sql?format=jsonl HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{q}",
            q.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut s, &mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{raw}");
    // Chunked: keep the lines that are JSON.
    body.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn pub_verify_finds_every_acknowledged_row_in_mast() {
    let server = Server::start(mast_bin());
    let http = format!("127.0.0.1:{}", server.http_port);
    let (ok, out, err) = run_json(&[
        "pub",
        "--json",
        "-p",
        &server.port.to_string(),
        "-c",
        "4",
        "-q",
        "1",
        "-L",
        "200",
        "--format",
        "line",
        "--rows",
        "5",
        "--fields",
        "2",
        "-t",
        "devices/%c/telemetry",
        "--prefix",
        "vdev",
        "--verify",
        "--http",
        &http,
    ]);
    assert!(ok, "{err}");
    assert_eq!(out[0]["acked"], 200);
    assert_eq!(out[0]["points_per_message"], 10);
    let pps = out[0]["points_per_sec"].as_f64().unwrap();
    let mps = out[0]["acked_per_sec"].as_f64().unwrap();
    assert!(
        (pps - 10.0 * mps).abs() <= 10.0,
        "{pps} points/s vs {mps} msgs/s"
    );
    let v = &out[1]["verify"];
    assert_eq!(v["m"]["acked_rows"], 1000, "{v}");
    assert_eq!(v["m"]["acked_points"], 2000, "{v}");
    assert_eq!(v["missing_points"], 0, "{v}");
}

#[test]
fn query_runs_the_tsbs_set_over_a_fleet() {
    let server = Server::start(mast_bin());
    let http = format!("127.0.0.1:{}", server.http_port);
    loadgen(
        &server,
        &[
            "--fast-forward",
            "-c",
            "8",
            "--duration",
            "2h",
            "--seed",
            "3",
        ],
    );
    let (ok, out, err) = run_json(&[
        "query", "--json", "--http", &http, "-c", "2", "-L", "20", "-d", "120",
    ]);
    assert!(ok, "{err}");
    let v = &out[0];
    assert_eq!(v["queries"], 20, "{v}");
    assert_eq!(v["errors"], serde_json::json!({}));
    assert_eq!(v["start_ns"], START);
    assert_eq!(v["end_ns"], START + 2 * 3_600_000_000_000 - STEP + 1);
    let by = v["by_query"].as_object().unwrap();
    assert_eq!(by.len(), 10, "every query of the set ran");
    assert!(by.values().all(|q| q["count"] == 2));
    // last-loc answers one row per truck of the fleet asked about (8 trucks over 4 fleets).
    assert!(by["last-loc"]["rows"].as_u64().unwrap() > 0);
    assert_eq!(
        by["avg-vs-projected-fuel-consumption"]["latency_us"]["count"],
        2
    );
    // Failures are counted by query and reason; a run where all fail exits 1.
    let nobody = format!("127.0.0.1:{}", free_port());
    let (ok, out, err) = run_json(&[
        "query",
        "--json",
        "--http",
        &nobody,
        "-L",
        "3",
        "--queries",
        "last-loc,low-fuel",
        "--start",
        "2026-01-01T00:00:00Z",
        "--end",
        "2026-01-01T01:00:00Z",
    ]);
    assert!(!ok && err.contains("every query failed"), "{err}");
    assert_eq!(out[0]["queries"], 0);
    assert_eq!(
        out[0]["errors"],
        serde_json::json!({"last-loc: connect": 2, "low-fuel: connect": 1})
    );
    let (ok, _, err) = run_json(&["query", "--json", "--http", &http, "--queries", "nope"]);
    assert!(!ok && err.contains("unknown query"), "{err}");
}

#[test]
fn idle_connections_and_silent_subscribers_outlive_their_keep_alive() {
    let server = Server::start(mast_bin());
    // Mast drops a client silent for 1.5 × keep-alive (3 s here); the run holds for 5 s.
    let (ok, out, err) = run_json(&[
        "conn",
        "--json",
        "-p",
        &server.port.to_string(),
        "-c",
        "5",
        "-k",
        "2",
        "-d",
        "5",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out[0]["connected"], 5);
    assert_eq!(out[0]["errors"], serde_json::json!({}), "{}", out[0]);
    let (ok, out, err) = run_json(&[
        "sub",
        "--json",
        "-p",
        &server.port.to_string(),
        "-c",
        "2",
        "-k",
        "2",
        "-d",
        "5",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out[0]["errors"], serde_json::json!({}), "{}", out[0]);
    // A ramp longer than the keep-alive: the first connections must be kept alive meanwhile.
    let (ok, out, err) = run_json(&[
        "conn",
        "--json",
        "-p",
        &server.port.to_string(),
        "-c",
        "4",
        "-i",
        "1500",
        "-k",
        "2",
        "-d",
        "1",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out[0]["alive_at_end"], 4, "{}", out[0]);
    assert_eq!(out[0]["errors"], serde_json::json!({}), "{}", out[0]);
}

#[test]
fn a_paced_rate_is_shared_by_every_publisher() {
    let server = Server::start(mast_bin());
    // 4 publishers on one thread at 400 msgs/s for 2 s, no -L: each must get its share.
    let (ok, out, err) = run_json(&[
        "pub",
        "--json",
        "-p",
        &server.port.to_string(),
        "-c",
        "4",
        "-q",
        "1",
        "--rate",
        "400",
        "-d",
        "2",
        "--format",
        "json",
        "-t",
        "devices/%c/telemetry",
        "--prefix",
        "fair",
    ]);
    assert!(ok, "{err}");
    let acked = out[0]["acked"].as_u64().unwrap();
    let rows = sql(
        server.http_port,
        "SELECT device_id, count(*) AS n FROM telemetry GROUP BY device_id ORDER BY device_id",
    );
    assert_eq!(rows.len(), 4, "{rows:?}");
    let counts: Vec<u64> = rows.iter().map(|r| r["n"].as_u64().unwrap()).collect();
    assert_eq!(counts.iter().sum::<u64>(), acked);
    let mean = acked as f64 / 4.0;
    assert!(
        counts
            .iter()
            .all(|&n| (n as f64 - mean).abs() <= mean * 0.1),
        "each publisher should send about {mean}: {counts:?}"
    );
}

#[test]
fn a_broker_that_never_answers_fails_each_connection_after_the_timeout() {
    // A listener that accepts TCP (the kernel's backlog) but never speaks MQTT.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let t0 = Instant::now();
    let (ok, out, _) = run_json(&[
        "conn",
        "--json",
        "-p",
        &port,
        "-c",
        "300",
        "--connect-timeout",
        "2",
        "-d",
        "0",
    ]);
    assert!(!ok);
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "it must give up, not hang"
    );
    assert_eq!(out[0]["connected"], 0);
    let errors = out[0]["errors"].as_object().unwrap();
    let total: u64 = errors.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(total, 300, "{errors:?}");
    assert!(
        errors.contains_key("connect: no CONNACK in time"),
        "{errors:?}"
    );
    drop(silent);
}
