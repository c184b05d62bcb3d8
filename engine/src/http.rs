//! The HTTP listener (`http.listen`, default 127.0.0.1:8080). The SQL API (axum on tokio) is the
//! next piece of work; until it lands this answers `GET /health` so that load balancers and
//! orchestrators can probe a running server, and every other request with a JSON 404 — the
//! error shape the API keeps (`{"error", "code"}`). Binding at start means a busy port fails
//! `mast serve` at once, like the MQTT port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

use crate::mqtt::Counters;

/// Requests served at once; more get 503.
const MAX_CONCURRENT: usize = 64;
/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// A running HTTP listener.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `listen` and serves on a thread; `/health` reports the MQTT counters.
    pub fn start(listen: SocketAddr, counters: Arc<Counters>) -> anyhow::Result<HttpServer> {
        let listener = TcpListener::bind(listen)
            .with_context(|| format!("cannot listen for HTTP on {listen}"))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicUsize::new(0));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("http-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(mut stream) = stream else {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CONCURRENT {
                        busy.fetch_sub(1, Ordering::AcqRel);
                        respond(&mut stream, 503, &error("too many requests", "busy"));
                        continue;
                    }
                    let (busy, counters) = (Arc::clone(&busy), Arc::clone(&counters));
                    let spawned =
                        std::thread::Builder::new()
                            .name("http-conn".into())
                            .spawn(move || {
                                serve(stream, &counters);
                                busy.fetch_sub(1, Ordering::AcqRel);
                            });
                    if spawned.is_err() {
                        tracing::warn!("HTTP connection thread could not start");
                    }
                }
            })?;
        tracing::info!(%addr, "HTTP listening (GET /health; the SQL API is not built yet)");
        Ok(HttpServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn error(message: &str, code: &str) -> String {
    serde_json::json!({ "error": message, "code": code }).to_string()
}

/// One request, then close.
fn serve(mut stream: TcpStream, counters: &Counters) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_HEAD {
            respond(
                &mut stream,
                431,
                &error("request head too large", "too_large"),
            );
            return;
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/health") => {
            let body = serde_json::json!({
                "status": "ok",
                "version": env!("CARGO_PKG_VERSION"),
                "mqtt_connections": counters.connections.load(Ordering::Relaxed),
            });
            respond(&mut stream, 200, &body.to_string());
        }
        (_, "/health") => respond(&mut stream, 405, &error("use GET", "method_not_allowed")),
        _ => respond(
            &mut stream,
            404,
            &error(&format!("no route for {method} {path}"), "not_found"),
        ),
    }
}

fn respond(stream: &mut TcpStream, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}
