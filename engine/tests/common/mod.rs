//! Test harness: runs the real `mast` binary on free loopback ports with a config file in a
//! temporary data directory, and restarts or kills it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A free loopback port for a server to listen on (bound, released).
///
/// Taken below the kernel's ephemeral range (32768–60999 on Linux), never from it: a port the
/// kernel handed out for `bind(0)` can be handed out again as the local port of a client
/// connection of a test running beside this one before the server binds it. Each test process
/// walks its own stretch of 10000–31999, starting at an offset from its pid.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000;
    let start = std::process::id().wrapping_mul(2_654_435_761) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < SPAN, "no free loopback port below the ephemeral range");
        let port = (LOW + (start + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A running `mast serve`.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub http_port: u16,
    pub tls_port: u16,
    pub dir: tempfile::TempDir,
    config: PathBuf,
}

impl Server {
    /// Starts with `[mqtt]` settings `mqtt_extra` (TOML lines inside the `[mqtt]` table) and
    /// any further TOML in `tail` (e.g. `[mqtt.tls]`, `[[mqtt.users]]`). `{tls_port}` and
    /// `{dir}` in them are replaced.
    pub fn start_with(mqtt_extra: &str, tail: &str) -> Server {
        Server::start_full("", mqtt_extra, tail)
    }

    /// As [`Server::start_with`], with `http_extra` TOML lines inside the `[http]` table.
    pub fn start_full(http_extra: &str, mqtt_extra: &str, tail: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let http_port = free_port();
        let tls_port = free_port();
        let fill = |s: &str| {
            s.replace("{tls_port}", &tls_port.to_string())
                .replace("{dir}", &dir.path().display().to_string())
        };
        let config = dir.path().join("mast.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n{}\n[mqtt]\nlisten = \"127.0.0.1:{port}\"\nreactors = 2\n{}\n{}\n",
                dir.path().join("data").display(),
                fill(http_extra),
                fill(mqtt_extra),
                fill(tail)
            ),
        )
        .unwrap();
        let mut s = Server {
            child: None,
            port,
            http_port,
            tls_port,
            dir,
            config,
        };
        s.spawn();
        s
    }

    /// Starts on embedded defaults (anonymous access, no TLS).
    pub fn start() -> Server {
        Server::start_with("", "")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("mast.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mast"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("MAST_LOG", "info,mast_engine=debug,mast_broker=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting mast");
        self.child = Some(child);
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err()
            || TcpStream::connect(("127.0.0.1", self.http_port)).is_err()
        {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mast exited with {st} before listening:\n{}", self.log());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "mast did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("mast.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let t0 = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st.code();
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = c.kill();
                panic!("mast did not stop on SIGTERM:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills (SIGKILL) and starts again on the same data and ports.
    pub fn restart_after_kill(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Stops cleanly and starts again.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The server process's id (panics when it is not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("mast is not running").id()
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- mast log ----\n{}", self.log());
        }
    }
}

/// One HTTP/1.1 request to the server's HTTP port: the status, the headers (names lower case)
/// and the body (de-chunked).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::Write;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            let Some(eol) = rest[at..].windows(2).position(|w| w == b"\r\n") else {
                panic!("a chunked body cut short");
            };
            let size_text = String::from_utf8_lossy(&rest[at..at + eol]).to_string();
            let size = usize::from_str_radix(size_text.trim(), 16).expect("a chunk size");
            at += eol + 2;
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
        rest = out;
    }
    (status, headers, rest)
}
