//! `mast devices list|show|tag|group`: the device registry from the command line, through the
//! REST API of a running server (`--server`, default `http://127.0.0.1:8080`; `--token` or
//! `MAST_TOKEN` when the server asks for one). A tiny blocking HTTP/1.1 client is enough: one
//! request per connection, to a server the operator names.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Map, Value, json};

/// Where the server is and how to ask it.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `host:port`.
    addr: String,
    token: Option<String>,
}

impl Remote {
    /// `server` is `http://host:port` (or `host:port`).
    pub fn new(server: &str, token: Option<String>) -> anyhow::Result<Remote> {
        let rest = server.strip_prefix("http://").unwrap_or(server);
        if rest.starts_with("https://") {
            bail!("--server: the HTTP API speaks plain HTTP; put a TLS proxy in front for https");
        }
        let addr = rest.trim_end_matches('/');
        if addr.is_empty() || addr.contains('/') {
            bail!("--server {server:?}: give http://HOST:PORT");
        }
        let addr = if addr.contains(':') {
            addr.to_owned()
        } else {
            format!("{addr}:80")
        };
        Ok(Remote { addr, token })
    }

    /// One request; the status and the body as JSON (`null` for none).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut s = TcpStream::connect(&self.addr)
            .with_context(|| format!("cannot reach the Mast server at {}", self.addr))?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\naccept: application/json\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            req.push_str("content-type: application/json\r\n");
        }
        if let Some(t) = &self.token {
            req.push_str(&format!("authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        s.write_all(req.as_bytes())?;
        answer(&mut s)
    }

    /// A request whose body is `len` bytes read from `body` (a file, streamed: never held
    /// whole); the status and the answer as JSON.
    pub(crate) fn call_raw(
        &self,
        method: &str,
        path: &str,
        len: u64,
        body: &mut impl Read,
    ) -> anyhow::Result<(u16, Value)> {
        let mut s = TcpStream::connect(&self.addr)
            .with_context(|| format!("cannot reach the Mast server at {}", self.addr))?;
        s.set_read_timeout(Some(Duration::from_secs(600)))?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\naccept: application/json\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\n",
            self.addr
        );
        if let Some(t) = &self.token {
            req.push_str(&format!("authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes())?;
        // The server may answer early (a refusal): what it said counts, not the broken pipe.
        let _ = std::io::copy(&mut body.take(len), &mut s);
        answer(&mut s)
    }

    /// A request that must succeed: its body, or the server's error as the error.
    pub(crate) fn expect(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let (status, v) = self.call(method, path, body)?;
        if (200..300).contains(&status) {
            return Ok(v);
        }
        let msg = v["error"].as_str().unwrap_or("no message");
        let code = v["code"].as_str().unwrap_or("?");
        bail!("{method} {path}: {status} {code}: {msg}")
    }
}

/// The status and the JSON body (`null` for none) of the response on `s`.
fn answer(s: &mut TcpStream) -> anyhow::Result<(u16, Value)> {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let (status, body) = parse_response(&raw)?;
    let v = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).context("the server's answer is not JSON")?
    };
    Ok((status, v))
}

/// Status and (de-chunked) body of a raw HTTP/1.1 response.
pub(crate) fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the server's answer has no HTTP head")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .context("the server's answer has no status")?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")
        })
    });
    let rest = &raw[split + 4..];
    if !chunked {
        return Ok((status, rest.to_vec()));
    }
    let mut out = Vec::new();
    let mut at = 0;
    let short = || anyhow::anyhow!("a chunked answer cut short");
    loop {
        let line = rest.get(at..).ok_or_else(short)?;
        let eol = line
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(short)?;
        let size = usize::from_str_radix(String::from_utf8_lossy(&line[..eol]).trim(), 16)
            .context("a bad chunk size")?;
        at += eol + 2;
        if size == 0 {
            return Ok((status, out));
        }
        let end = at.checked_add(size).ok_or_else(short)?;
        out.extend_from_slice(rest.get(at..end).ok_or_else(short)?);
        at = end.saturating_add(2);
    }
}

/// Percent-encodes one path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What `list` asks for.
#[derive(Debug, Clone, Default)]
pub struct ListArgs {
    pub group: Option<String>,
    pub device_type: Option<String>,
    /// At most this many devices in all (`None`: every one, page after page).
    pub limit: Option<usize>,
    /// One JSON object per line instead of a table.
    pub json: bool,
}

/// `mast devices list`: every matching device, page by page, as a table or JSON lines.
pub fn list(r: &Remote, a: &ListArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let mut after: Option<String> = None;
    let mut shown = 0usize;
    if !a.json {
        writeln!(
            out,
            "{:<24} {:<12} {:<10} {:<9} {:<24} {:<20} TAGS",
            "DEVICE_ID", "TYPE", "FIRMWARE", "CONNECTED", "LAST_SEEN", "GROUPS"
        )?;
    }
    loop {
        let want = a.limit.map_or(1000, |l| (l - shown).min(1000));
        if want == 0 {
            return Ok(());
        }
        let mut path = format!("/api/v1/devices?limit={want}");
        if let Some(g) = &a.group {
            path.push_str(&format!("&group={}", enc(g)));
        }
        if let Some(t) = &a.device_type {
            path.push_str(&format!("&type={}", enc(t)));
        }
        if let Some(x) = &after {
            path.push_str(&format!("&after={}", enc(x)));
        }
        let page = r.expect("GET", &path, None)?;
        for d in page["devices"].as_array().into_iter().flatten() {
            shown += 1;
            if a.json {
                writeln!(out, "{d}")?;
                continue;
            }
            let s = |k: &str| d[k].as_str().unwrap_or("-").to_owned();
            let groups: Vec<&str> = d["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let groups = if groups.is_empty() {
                "-".to_owned()
            } else {
                groups.join(",")
            };
            writeln!(
                out,
                "{:<24} {:<12} {:<10} {:<9} {:<24} {:<20} {}",
                s("device_id"),
                s("device_type"),
                s("firmware_version"),
                d["connected"].as_bool().unwrap_or(false),
                s("last_seen"),
                groups,
                d["tags"]
            )?;
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => return Ok(()),
        }
    }
}

/// `mast devices show ID`: the device, pretty JSON.
pub fn show(r: &Remote, id: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let d = r.expect("GET", &format!("/api/v1/devices/{}", enc(id)), None)?;
    writeln!(out, "{}", serde_json::to_string_pretty(&d)?)?;
    Ok(())
}

/// `mast devices tag ID key=value... --remove key...`: a merge patch of the tags. A value that
/// reads as JSON is that JSON (`line=3` is the number 3, `site="7"` the string "7"); any other
/// text is a string. A dotted key (`loc.room=2`) sets a nested tag.
pub fn tag(
    r: &Remote,
    id: &str,
    set: &[String],
    remove: &[String],
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if set.is_empty() && remove.is_empty() {
        bail!("nothing to change: give key=value pairs and/or --remove key");
    }
    let mut tags = Map::new();
    let mut put = |key: &str, v: Value| {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap_or(key);
        let mut m = &mut tags;
        for p in parts {
            let slot = m.entry(p.to_owned()).or_insert_with(|| json!({}));
            if !slot.is_object() {
                *slot = json!({});
            }
            let Value::Object(inner) = slot else {
                return;
            };
            m = inner;
        }
        m.insert(last.to_owned(), v);
    };
    for kv in set {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("{kv:?}: give tags as key=value");
        };
        if k.is_empty() {
            bail!("{kv:?}: the tag name is empty");
        }
        let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        put(k, v);
    }
    for k in remove {
        put(k, Value::Null);
    }
    let d = r.expect(
        "PATCH",
        &format!("/api/v1/devices/{}", enc(id)),
        Some(&json!({ "tags": tags })),
    )?;
    writeln!(out, "{}", d["tags"])?;
    Ok(())
}

/// `mast devices group ID --add G... --remove G...`: static group memberships.
pub fn group(
    r: &Remote,
    id: &str,
    add: &[String],
    remove: &[String],
    out: &mut impl Write,
) -> anyhow::Result<()> {
    for g in add {
        r.expect(
            "PUT",
            &format!("/api/v1/groups/{}/devices/{}", enc(g), enc(id)),
            None,
        )?;
    }
    for g in remove {
        r.expect(
            "DELETE",
            &format!("/api/v1/groups/{}/devices/{}", enc(g), enc(id)),
            None,
        )?;
    }
    let d = r.expect("GET", &format!("/api/v1/devices/{}", enc(id)), None)?;
    writeln!(
        out,
        "groups: {}  dynamic: {}",
        d["groups"], d["dynamic_groups"]
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_read_plain_and_chunked() {
        let plain = b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (404, b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (200, b"[1,2]".to_vec()));
        assert!(parse_response(b"garbage").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nff\r\nab")
                .is_err()
        );
    }

    #[test]
    fn servers_and_segments() {
        assert_eq!(Remote::new("http://h:9/", None).unwrap().addr, "h:9");
        assert_eq!(Remote::new("h", None).unwrap().addr, "h:80");
        assert!(Remote::new("https://h:9", None).is_err());
        assert!(Remote::new("http://h:9/x", None).is_err());
        assert_eq!(enc("a b/c?d"), "a%20b%2Fc%3Fd");
    }
}
