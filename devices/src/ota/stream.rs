//! Firmware over MQTT in blocks, for devices that cannot do HTTP: AWS IoT's MQTT-based file
//! delivery (the "streams" API the AWS OTA agents use), JSON flavour, sans IO.
//!
//! - A device publishes `$aws/things/{thing}/streams/{stream}/get/json` with `{"c"?: client
//!   token, "f": file id, "l": block size, "o": first block, "n": blocks, "b"?: bitmap}`; the
//!   stream id is a firmware id and its only file is 0.
//! - Each block comes back alone on `…/streams/{stream}/data/json`: `{"c"?, "f", "i": block
//!   index, "l": its size, "o": its byte offset, "p": base64 bytes}` (`o` is Mast's, beside
//!   AWS's fields). A refusal is `…/rejected/json` `{"c"?, "o": code, "m": message}`.
//! - `b` (base64), when given, says which of the `n` blocks from `o` are wanted: bit `k` of
//!   byte `k / 8` (least significant first) for block `o + k`, as the AWS OTA agent sends it.
//!   A retry asks for the missing blocks alone.
//! - Blocks are 256 B to 128 KiB (as AWS allows); one request yields at most
//!   [`MAX_REQUEST_BYTES`].

use serde_json::{Value, json};

pub const MIN_BLOCK: u64 = 256;
pub const MAX_BLOCK: u64 = 128 * 1024;
/// The most one request returns (blocks past it are left for the next request).
pub const MAX_REQUEST_BYTES: u64 = 1 << 20;
/// The filter of the requests.
pub const REQUEST_FILTER: &str = "$aws/things/+/streams/+/get/json";

/// A request topic: (thing, stream).
pub fn parse_topic(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix("$aws/things/")?;
    let (thing, rest) = rest.split_once("/streams/")?;
    let stream = rest.strip_suffix("/get/json")?;
    (!thing.is_empty() && !thing.contains('/') && !stream.is_empty() && !stream.contains('/'))
        .then_some((thing, stream))
}

/// Whether only the server may publish on `topic` (a stream's data or refusals).
pub fn is_server_topic(topic: &str) -> bool {
    topic.starts_with("$aws/things/")
        && topic.contains("/streams/")
        && (topic.ends_with("/data/json")
            || topic.ends_with("/rejected/json")
            || topic.ends_with("/data/cbor")
            || topic.ends_with("/rejected/cbor"))
}

pub fn data_topic(thing: &str, stream: &str) -> String {
    format!("$aws/things/{thing}/streams/{stream}/data/json")
}

pub fn rejected_topic(thing: &str, stream: &str) -> String {
    format!("$aws/things/{thing}/streams/{stream}/rejected/json")
}

/// A refusal: AWS's code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    pub fn document(&self, client_token: Option<&str>) -> Value {
        let mut v = json!({"o": self.code, "m": self.message});
        if let Some(c) = client_token {
            v["c"] = Value::from(c);
        }
        v
    }
}

/// GetStream, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get {
    pub client_token: Option<String>,
    pub file: u64,
    pub block_size: u64,
    /// The blocks wanted, in order.
    pub blocks: Vec<u64>,
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    super::firmware::base64_decode(s)
}

/// Standard base64 with padding.
pub fn base64_encode(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads a GetStream request for a file of `size` bytes.
pub fn parse_get(payload: &[u8], size: u64) -> Result<Get, (Refusal, Option<String>)> {
    let v: Value = serde_json::from_slice(payload).map_err(|_| {
        (
            Refusal::new("InvalidRequest", "the request is not JSON"),
            None,
        )
    })?;
    let token = v.get("c").and_then(Value::as_str).map(str::to_owned);
    let bad = |m: &str| (Refusal::new("InvalidRequest", m), token.clone());
    let num = |k: &str| v.get(k).and_then(Value::as_u64);
    let file = num("f").unwrap_or(0);
    if file != 0 {
        return Err((
            Refusal::new("ResourceNotFound", format!("the stream has no file {file}")),
            token,
        ));
    }
    let l = num("l").ok_or_else(|| bad("l (block size) is required"))?;
    if !(MIN_BLOCK..=MAX_BLOCK).contains(&l) {
        return Err(bad("l (block size) is 256 to 131072 bytes"));
    }
    let o = num("o").unwrap_or(0);
    let n = num("n").unwrap_or(1).max(1);
    let total_blocks = size.div_ceil(l);
    if o >= total_blocks {
        return Err(bad("o (first block) is past the end of the file"));
    }
    let bitmap = match v.get("b") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(base64_decode(s).ok_or_else(|| bad("b (bitmap) is not base64"))?)
        }
        Some(_) => return Err(bad("b (bitmap) is a base64 string")),
    };
    let most = (MAX_REQUEST_BYTES / l).max(1);
    let mut blocks = Vec::new();
    for k in 0..n.min(total_blocks - o) {
        if let Some(b) = &bitmap {
            let byte = b.get((k / 8) as usize).copied().unwrap_or(0);
            if byte >> (k % 8) & 1 == 0 {
                continue;
            }
        }
        blocks.push(o + k);
        if blocks.len() as u64 == most {
            break;
        }
    }
    Ok(Get {
        client_token: token,
        file,
        block_size: l,
        blocks,
    })
}

impl Get {
    /// Where block `i` of a file of `size` bytes is: (offset, length).
    pub fn span(&self, i: u64, size: u64) -> (u64, u64) {
        let at = i * self.block_size;
        (at, self.block_size.min(size.saturating_sub(at)))
    }

    /// The data message of block `i` holding `bytes` from `offset`.
    pub fn data(&self, i: u64, offset: u64, bytes: &[u8]) -> Value {
        let mut v = json!({
            "f": self.file,
            "i": i,
            "l": bytes.len(),
            "o": offset,
            "p": base64_encode(bytes),
        });
        if let Some(c) = &self.client_token {
            v["c"] = Value::from(c.as_str());
        }
        v
    }
}

#[cfg(test)]
mod tests;
