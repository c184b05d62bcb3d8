//! Golden SQL tests: a fixed fleet's telemetry is published over MQTT to the real `mast`
//! binary, then every statement of `tests/sql/*.sql` runs over HTTP and its CSV result (or its
//! error's status and code) must equal the matching `*.out` file.
//!
//! After a deliberate change of results, `GOLDEN_BLESS=1 cargo test --test sql_golden` rewrites
//! the `.out` files; review their diff like code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod ingest_support;
mod mqtt_support;

use std::fmt::Write as _;
use std::path::PathBuf;

use common::{Server, http};
use ingest_support::publish_ok;
use mqtt_support::v5;

/// 2026-01-01T00:00:00Z in ns.
const T: i64 = 1_767_225_600_000_000_000;
const MIN: i64 = 60_000_000_000;

const TRUCKS: [(&str, &str, &str); 3] = [
    ("truck_1", "South", "Derek"),
    ("truck_2", "North", "Rodney"),
    ("truck_3", "South", "Trish"),
];

/// The fixture: `readings` each minute for ten minutes (truck_3 silent in minutes 3 to 5,
/// truck_2 standing still for the first four), `diagnostics` every two minutes, and JSON
/// `telemetry` with sparse fields from truck_1.
fn publish_fleet(server: &Server) {
    for (n, (id, fleet, driver)) in TRUCKS.iter().enumerate() {
        let n = n as i64 + 1;
        let mut c = v5::Client::connect(server.port, id);
        let mut lines = String::new();
        for m in 0..10i64 {
            if n == 3 && (3..=5).contains(&m) {
                continue;
            }
            let velocity = if n == 2 && m < 4 {
                0.0
            } else {
                ((n * 7 + m * 13) % 90) as f64
            };
            let _ = writeln!(
                lines,
                "readings,fleet={fleet},driver={driver} latitude={},longitude={},velocity={} {}",
                52.0 + n as f64 / 10.0 + m as f64 / 100.0,
                4.0 + m as f64 / 50.0,
                velocity,
                T + m * MIN
            );
        }
        publish_ok(
            &mut c,
            &format!("devices/{id}/telemetry/readings"),
            lines.as_bytes(),
        );
        let mut lines = String::new();
        for m in (0..10i64).step_by(2) {
            let _ = writeln!(
                lines,
                "diagnostics,fleet={fleet},driver={driver} fuel_state={},current_load={},status={}i {}",
                1.0 - m as f64 * 0.05 - n as f64 * 0.01,
                n * 100 + m,
                m % 3,
                T + m * MIN
            );
        }
        publish_ok(
            &mut c,
            &format!("devices/{id}/telemetry/diagnostics"),
            lines.as_bytes(),
        );
        if n == 1 {
            let mut items = Vec::new();
            for m in 0..10i64 {
                let mut values = serde_json::json!({ "temp": 20.0 + m as f64 / 2.0 });
                if m % 5 == 0 {
                    values["state"] = serde_json::json!(if m == 0 { "idle" } else { "moving" });
                }
                if m == 7 {
                    values = serde_json::json!({ "ok": false });
                }
                items
                    .push(serde_json::json!({ "ts": (T + m * MIN) / 1_000_000, "values": values }));
            }
            let body = serde_json::to_vec(&items).unwrap();
            publish_ok(&mut c, "devices/truck_1/telemetry", &body);
        }
        c.disconnect();
    }
}

/// Statements of a `.sql` file: separated by a `;` at the end of a line.
fn statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("--") && cur.trim().is_empty() {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if line.trim_end().ends_with(';') {
            out.push(cur.trim().trim_end_matches(';').trim().to_string());
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

fn run(server: &Server, sql: &str) -> String {
    let (status, _, body) = http(
        server.http_port,
        "POST",
        "/api/v1/sql?format=csv",
        &[("content-type", "text/plain")],
        sql.as_bytes(),
    );
    let text = String::from_utf8(body).unwrap();
    if status == 200 {
        text
    } else {
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        format!(
            "ERROR {status} {}: {}\n",
            v["code"].as_str().unwrap(),
            v["error"].as_str().unwrap()
        )
    }
}

#[test]
fn golden_sql_files_match() {
    check_golden(Server::start(), true);
}

/// The same answers when every write is sealed at once into small blocks and
/// 2-minute partitions: many segments, pruning by segment and block, merges across them.
#[test]
fn golden_sql_files_match_over_many_small_segments() {
    let server = Server::start_with(
        "",
        "[storage]\nmax_head_bytes = 1\nblock_rows = 16\npartition_secs = 120\n",
    );
    check_golden(server, false);
}

fn check_golden(server: Server, may_bless: bool) {
    publish_fleet(&server);
    // One client stays connected for system.connections.
    let mut watcher = v5::Client::connect(server.port, "watcher");
    watcher.subscribe("devices/+/errors", rumqttc::v5::mqttbytes::QoS::AtLeastOnce);

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sql");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 6,
        "golden files missing in {}",
        dir.display()
    );
    let bless = may_bless && std::env::var_os("GOLDEN_BLESS").is_some();
    let mut failed = Vec::new();
    for file in &files {
        let mut got = String::new();
        for sql in statements(&std::fs::read_to_string(file).unwrap()) {
            let _ = write!(got, "{sql};\n----\n{}\n", run(&server, &sql));
        }
        let out = file.with_extension("out");
        if bless {
            std::fs::write(&out, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&out).unwrap_or_default();
        if want != got {
            failed.push(format!(
                "{} differs from {}:\n{}",
                file.display(),
                out.display(),
                diff(&want, &got)
            ));
        }
    }
    watcher.disconnect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// The lines that differ, marked `-` (expected) and `+` (got).
fn diff(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let mut out = String::new();
    for i in 0..w.len().max(g.len()) {
        match (w.get(i), g.get(i)) {
            (Some(a), Some(b)) if a == b => {}
            (a, b) => {
                if let Some(a) = a {
                    let _ = writeln!(out, "{:>4} - {a}", i + 1);
                }
                if let Some(b) = b {
                    let _ = writeln!(out, "{:>4} + {b}", i + 1);
                }
            }
        }
    }
    out
}
