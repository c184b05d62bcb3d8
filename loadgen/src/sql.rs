//! A minimal HTTP/1.1 client for Mast's SQL API (`POST /api/v1/sql?format=jsonl`), enough for
//! `--verify`: one request per connection, chunked or sized bodies.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Runs `sql` on the server at `addr` (`host:port`) and returns its rows.
pub(crate) fn query(addr: &str, sql: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut s = TcpStream::connect(addr)
        .map_err(|e| anyhow::anyhow!("cannot reach the SQL API at {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(300)))?;
    write!(
        s,
        "POST /api/v1/sql?format=jsonl HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\
         content-type: text/plain\r\ncontent-length: {}\r\n\r\n{sql}",
        sql.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("{addr}: not an HTTP response"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body)?;
    }
    let status = head.split(' ').nth(1).unwrap_or("");
    anyhow::ensure!(
        status == "200",
        "{addr}: SQL failed with {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let text = String::from_utf8(body)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
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
