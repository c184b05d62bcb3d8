//! `mast serve` as an operator meets it: `--help`, the configuration layers (file, `MAST_*`
//! variables, flags), one-line errors with exit status 1, and a clean exit on SIGTERM. Every test
//! runs the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::free_port;

const PATIENCE: Duration = Duration::from_secs(20);

/// `mast` with no `MAST_*` variable inherited from the test's own environment.
fn mast() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mast"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("MAST_") {
            c.env_remove(name);
        }
    }
    // Tests run side by side: no fixed HTTP port.
    c.env("MAST_HTTP_LISTEN", "127.0.0.1:0");
    c.stdin(Stdio::null());
    c
}

/// A `mast` process with stdout and stderr going to files in `dir`.
struct Run {
    child: Child,
    err: std::path::PathBuf,
}

impl Run {
    fn spawn(cmd: &mut Command, dir: &Path) -> Run {
        let err = dir.join("stderr.txt");
        let child = cmd
            .stdout(std::fs::File::create(dir.join("stdout.txt")).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("starting mast");
        Run { child, err }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.err).unwrap()
    }

    /// Waits for the process to exit by itself.
    fn wait(&mut self) -> ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if t0.elapsed() > PATIENCE {
                let _ = self.child.kill();
                panic!("mast did not exit; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `addr` accepts connections.
    fn wait_listening(&mut self, addr: SocketAddr) {
        let t0 = Instant::now();
        while TcpStream::connect(addr).is_err() {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!(
                    "mast exited ({st}) before listening; stderr:\n{}",
                    self.stderr()
                );
            }
            assert!(t0.elapsed() < PATIENCE, "mast did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for the exit.
    fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        self.wait()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `mast` to its exit (with logging off, so stderr holds only the error line).
fn fails(cmd: &mut Command) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut run = Run::spawn(cmd.env("MAST_LOG", "off"), dir.path());
    let status = run.wait();
    let err = run.stderr();
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("mast: "), "{err:?}");
    err.trim_end().to_owned()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn serve_help_explains_every_flag_and_the_environment() {
    let out = mast().args(["serve", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--config",
        "--data-dir",
        "--mqtt-listen",
        "--http-listen",
        "--allow-anonymous",
        "--log-format",
        "./mast-data",
        "127.0.0.1:1883",
        "127.0.0.1:8080",
        "MAST_<SECTION>_<KEY>",
        "MAST_DATA_DIR",
        "MAST_MQTT_LISTEN",
        "MAST_HTTP_LISTEN",
        "MAST_STORAGE_FSYNC_INTERVAL_MS",
        "MAST_CONFIG",
        "MAST_LOG",
        "MAST_LOG_FORMAT",
        "info,mast_engine=debug",
        "mast.example.toml",
        "[[mqtt.users]]",
        "SIGTERM",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn a_bad_config_file_is_one_line_naming_the_file_and_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mast.toml");
    std::fs::write(&path, "[mqtt]\nlisten = \"nowhere\"\n").unwrap();
    let err = fails(mast().arg("serve").arg("--config").arg(&path));
    assert_eq!(
        err,
        format!(
            "mast: config {}: line 2, column 10: invalid socket address syntax",
            path.display()
        )
    );
    std::fs::write(&path, "[storage]\nfsync_intervl_ms = 5\n").unwrap();
    let err = fails(mast().arg("serve").arg("--config").arg(&path));
    assert!(
        err.starts_with(&format!(
            "mast: config {}: line 2, column 1: unknown field `fsync_intervl_ms`",
            path.display()
        )),
        "{err}"
    );
    let err = fails(mast().args(["serve", "--config", "/nonexistent/mast.toml"]));
    assert!(
        err.starts_with("mast: cannot read config /nonexistent/mast.toml: "),
        "{err}"
    );
}

#[test]
fn a_bad_flag_is_one_line_too() {
    let err = fails(mast().args(["serve", "--mqtt-listen", "nowhere"]));
    assert!(
        err.starts_with(
            "mast: invalid value 'nowhere' for '--mqtt-listen <IP:PORT>': invalid socket \
             address syntax"
        ),
        "{err}"
    );
    let err = fails(mast().args(["serve", "--data-dri", "x"]));
    assert!(
        err.starts_with("mast: unexpected argument '--data-dri' found; tip: a similar argument exists: '--data-dir'"),
        "{err}"
    );
}

#[test]
fn a_busy_port_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = fails(
        mast()
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--mqtt-listen")
            .arg(addr.to_string()),
    );
    assert_eq!(
        err,
        format!("mast: cannot listen for MQTT on {addr}: address already in use")
    );
}

#[test]
fn an_unknown_or_bad_mast_variable_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let err = fails(
        mast()
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .env("MAST_MQTT_TYPO", "1"),
    );
    assert!(
        err.starts_with("mast: unknown environment variable MAST_MQTT_TYPO: "),
        "{err}"
    );
    let err = fails(
        mast()
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .env("MAST_MQTT_MAX_PACKET_SIZE", "big"),
    );
    assert_eq!(
        err,
        "mast: MAST_MQTT_MAX_PACKET_SIZE=\"big\": mqtt.max_packet_size needs an integer"
    );
    let err = fails(
        mast()
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .env("MAST_STORAGE_FSYNC_INTERVAL_MS", "0"),
    );
    assert_eq!(
        err,
        "mast: MAST_STORAGE_FSYNC_INTERVAL_MS=\"0\": storage.fsync_interval_ms must be between 1 \
         and 60000, not 0"
    );
    assert!(
        !data.exists(),
        "nothing is created before the config is good"
    );
}

#[test]
fn an_env_override_moves_the_listener_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let addr = loopback(free_port());
    let mut run = Run::spawn(
        mast()
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .args(["--log-format", "json"])
            .env("MAST_MQTT_LISTEN", addr.to_string())
            .env("MAST_MQTT_REACTORS", "1")
            .env("MAST_ALLOW_ANONYMOUS", "1")
            .env("MAST_LOG", "info"),
        dir.path(),
    );
    run.wait_listening(addr);
    assert!(data.join("LOCK").exists(), "the store lives in --data-dir");
    let status = run.terminate();
    let log = run.stderr();
    assert_eq!(status.code(), Some(0), "stderr:\n{log}");
    // Structured logs: every line is a JSON object.
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let serving = records
        .iter()
        .find(|r| r["fields"]["message"] == "mast serving")
        .unwrap_or_else(|| panic!("no `mast serving` record in\n{log}"));
    assert_eq!(serving["fields"]["mqtt"], addr.to_string());
    assert_eq!(serving["level"], "INFO");
    assert_eq!(
        records.last().unwrap()["fields"]["message"],
        "stopped",
        "{log}"
    );
}

#[test]
fn flags_beat_the_environment_and_the_data_dir_defaults_to_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let from_flag = loopback(free_port());
    let mut run = Run::spawn(
        mast()
            .current_dir(dir.path())
            .arg("serve")
            .arg("--mqtt-listen")
            .arg(from_flag.to_string())
            .env("MAST_MQTT_LISTEN", loopback(free_port()).to_string())
            .env("MAST_MQTT_REACTORS", "1"),
        dir.path(),
    );
    run.wait_listening(from_flag);
    assert!(dir.path().join("mast-data").join("LOCK").exists());
    assert_eq!(run.terminate().code(), Some(0), "{}", run.stderr());
    assert!(
        run.stderr().contains(&format!("mqtt={from_flag}")),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_data_dir_in_use_by_another_mast_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = loopback(free_port());
    let mut run = Run::spawn(
        mast()
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .arg("--mqtt-listen")
            .arg(first.to_string())
            .env("MAST_MQTT_REACTORS", "1"),
        dir.path(),
    );
    run.wait_listening(first);
    let err = fails(
        mast()
            .arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .arg("--mqtt-listen")
            .arg(loopback(free_port()).to_string()),
    );
    assert!(
        err.starts_with(&format!(
            "mast: cannot open data directory {}: ",
            data.display()
        )),
        "{err}"
    );
    assert!(err.ends_with("is in use by another process"), "{err}");
    assert_eq!(run.terminate().code(), Some(0), "{}", run.stderr());
}

/// One HTTP/1.1 request; the status code and the body.
fn http_get(addr: SocketAddr, method: &str, path: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(head.contains("content-type: application/json"), "{head}");
    (status, serde_json::from_str(body).unwrap())
}

#[test]
fn the_http_listener_answers_health_and_json_errors_and_a_busy_port_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mqtt, http) = (loopback(free_port()), loopback(free_port()));
    let mut run = Run::spawn(
        mast()
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--mqtt-listen")
            .arg(mqtt.to_string())
            .arg("--http-listen")
            .arg(http.to_string()),
        dir.path(),
    );
    run.wait_listening(http);
    let (status, body) = http_get(http, "GET", "/health");
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["mqtt_connections"], 0);
    let (status, body) = http_get(http, "GET", "/api/v1/nothing?x=1");
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, _) = http_get(http, "POST", "/health");
    assert_eq!(status, 405);
    // A second server on the same HTTP port (its own data and MQTT port) stops at once.
    let other = tempfile::tempdir().unwrap();
    let err = fails(
        mast()
            .arg("serve")
            .arg("--data-dir")
            .arg(other.path().join("data"))
            .arg("--mqtt-listen")
            .arg(loopback(free_port()).to_string())
            .arg("--http-listen")
            .arg(http.to_string()),
    );
    assert!(
        err.starts_with(&format!("mast: cannot listen for HTTP on {http}: ")),
        "{err}"
    );
    assert_eq!(run.terminate().code(), Some(0), "{}", run.stderr());
}
