//! A minimal HTTP/1.1 client for Mast's SQL API (`POST /api/v1/sql?format=jsonl`), enough for
//! `--verify` and the `query` verb: one request per connection, chunked or sized bodies.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Runs `sql` on the server at `addr` (`host:port`) and returns its rows.
pub(crate) fn query(
    addr: &str,
    token: Option<&str>,
    sql: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let text = String::from_utf8(request(addr, token, sql).map_err(|e| anyhow::anyhow!("{e}"))?)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

/// Why a request failed: the reason to count it under, and the detail.
#[derive(Debug)]
pub(crate) struct Failure {
    /// `http 408 timeout`, `connect`, `read`…
    pub(crate) reason: String,
    pub(crate) detail: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

fn fail(reason: &str, detail: String) -> Failure {
    Failure {
        reason: reason.to_string(),
        detail,
    }
}

/// One request on its own connection: the status, the head (lower case) and the body.
pub(crate) fn exchange(
    addr: &str,
    head_lines: &str,
    body: &[u8],
) -> Result<(String, String, Vec<u8>), Failure> {
    let mut s = TcpStream::connect(addr).map_err(|e| {
        fail(
            "connect",
            format!("cannot reach the HTTP API at {addr}: {e}"),
        )
    })?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(Duration::from_secs(300)))
        .map_err(|e| fail("connect", e.to_string()))?;
    let mut req = format!(
        "{head_lines}host: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    s.write_all(&req)
        .map_err(|e| fail("write", e.to_string()))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| fail("read", e.to_string()))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| fail("read", format!("{addr}: not an HTTP response")))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body).map_err(|e| fail("read", e.to_string()))?;
    }
    let status = head.split(' ').nth(1).unwrap_or("").to_string();
    Ok((status, head, body))
}

/// Sends `sql` and returns the JSON-lines body of a 200 answer.
pub(crate) fn request(addr: &str, token: Option<&str>, sql: &str) -> Result<Vec<u8>, Failure> {
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let (status, _, body) = exchange(
        addr,
        &format!("POST /api/v1/sql?format=jsonl HTTP/1.1\r\n{auth}content-type: text/plain\r\n"),
        sql.as_bytes(),
    )?;
    if status != "200" {
        // Mast's errors are {"error","code"}: count them by status and code.
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        return Err(fail(
            format!("http {status} {code}").trim_end(),
            format!(
                "{addr}: SQL failed with {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        ));
    }
    Ok(body)
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow::anyhow!("chunked body cut short"))?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16)?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        anyhow::ensure!(b.len() >= size + 2, "chunked body cut short");
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}
