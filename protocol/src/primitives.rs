//! MQTT's primitive data types (MQTT 5.0 §1.5): two- and four-byte integers, variable byte
//! integers, UTF-8 strings, binary data and string pairs, read zero-copy from a `Bytes` buffer.
//!
//! Every read is bounds-checked. Running out of bytes inside a packet whose length the fixed header
//! already fixed is *malformed* (the packet can never grow), so these readers report
//! [`Malformed`], never "incomplete".

use bytes::{Buf, Bytes};

/// A packet body that violates the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed packet: {}", self.0)
    }
}

impl std::error::Error for Malformed {}

/// A UTF-8 string slice of a packet buffer, validated once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Utf8(Bytes);

impl Utf8 {
    /// A string of this process (for packets the server builds).
    pub fn from_static(s: &'static str) -> Utf8 {
        Utf8(Bytes::from_static(s.as_bytes()))
    }

    /// A copy of `s` (for packets the server builds).
    pub fn new(s: &str) -> Utf8 {
        Utf8(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// The text.
    #[allow(unsafe_code)]
    pub fn as_str(&self) -> &str {
        // SAFETY: the field is private and every constructor validates: `from_static` and `new`
        // take a `&str`, `Reader::string` runs `std::str::from_utf8` before building one, and
        // the bytes are immutable. Checking again here cost a full UTF-8 scan per call on the
        // routing hot path (topic matching, encoding).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes (shared with the read buffer).
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

/// A cursor over one packet body.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
}

impl Reader {
    /// Reads from `buf` (one packet body).
    pub fn new(buf: Bytes) -> Reader {
        Reader { buf }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<Bytes, Malformed> {
        if self.buf.len() < n {
            return Err(Malformed(what));
        }
        Ok(self.buf.split_to(n))
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), Malformed> {
        if self.buf.len() < n {
            return Err(Malformed(what));
        }
        Ok(())
    }

    /// One byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, Malformed> {
        // Fixed-size reads advance the view instead of splitting off a `Bytes`: no reference
        // count traffic per integer.
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    /// Two Byte Integer (big-endian).
    pub fn u16(&mut self, what: &'static str) -> Result<u16, Malformed> {
        self.need(2, what)?;
        Ok(self.buf.get_u16())
    }

    /// Four Byte Integer (big-endian).
    pub fn u32(&mut self, what: &'static str) -> Result<u32, Malformed> {
        self.need(4, what)?;
        Ok(self.buf.get_u32())
    }

    /// Variable Byte Integer (1–4 bytes, at most 268,435,455, minimal encoding not required).
    pub fn var_int(&mut self, what: &'static str) -> Result<u32, Malformed> {
        let mut v = 0u32;
        for i in 0..4 {
            let b = self.u8(what)?;
            v |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed(what))
    }

    /// Binary Data: a two-byte length, then that many bytes.
    pub fn binary(&mut self, what: &'static str) -> Result<Bytes, Malformed> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }

    /// UTF-8 Encoded String: well-formed UTF-8 without U+0000 (§1.5.4).
    pub fn string(&mut self, what: &'static str) -> Result<Utf8, Malformed> {
        let b = self.binary(what)?;
        let s = std::str::from_utf8(&b).map_err(|_| Malformed(what))?;
        if s.contains('\0') {
            return Err(Malformed(what));
        }
        Ok(Utf8(b))
    }

    /// UTF-8 String Pair.
    pub fn string_pair(&mut self, what: &'static str) -> Result<(Utf8, Utf8), Malformed> {
        Ok((self.string(what)?, self.string(what)?))
    }

    /// The next `n` bytes, unparsed (shared with the read buffer).
    pub fn bytes(&mut self, n: usize) -> Result<Bytes, Malformed> {
        self.take(n, "length beyond the packet")
    }

    /// The rest of the body (a PUBLISH payload).
    pub fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }
}

/// Appends a Two Byte Integer.
pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a Four Byte Integer.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a Variable Byte Integer (values above 268,435,455 are clamped to it).
pub fn put_var_int(out: &mut Vec<u8>, v: u32) {
    crate::fixed_header::encode_remaining_length(v, out);
}

/// Appends Binary Data (at most 65,535 bytes; the caller checks the length).
pub fn put_binary(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len().min(usize::from(u16::MAX));
    put_u16(out, n as u16);
    out.extend_from_slice(&b[..n]);
}

/// Appends a UTF-8 Encoded String.
pub fn put_string(out: &mut Vec<u8>, s: &str) {
    put_binary(out, s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strings_are_checked_per_spec() {
        let mut r = Reader::new(Bytes::from_static(
            b"\x00\x04MQTT\x00\x02a\x00\x00\x02\xC3\x28\x00",
        ));
        assert_eq!(r.string("protocol name").unwrap().as_str(), "MQTT");
        assert_eq!(r.string("nul"), Err(Malformed("nul")));
        assert_eq!(r.string("bad utf-8"), Err(Malformed("bad utf-8")));
        assert_eq!(r.u16("short"), Err(Malformed("short")));
        let mut r = Reader::new(Bytes::from_static(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]));
        assert_eq!(
            r.var_int("5-byte var int"),
            Err(Malformed("5-byte var int"))
        );
    }

    #[test]
    fn strings_share_the_read_buffer() {
        let buf = Bytes::from(b"\x00\x05hello".to_vec());
        let start = buf.as_ptr() as usize;
        let mut r = Reader::new(buf);
        let s = r.string("s").unwrap();
        assert_eq!(s.bytes().as_ptr() as usize, start + 2, "no copy");
    }

    proptest! {
        #[test]
        fn primitives_round_trip(a in any::<u16>(), b in any::<u32>(), v in 0u32..=0x0FFF_FFFF,
                                 s in "[^\u{0}]{0,40}", bin in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            put_u16(&mut out, a);
            put_u32(&mut out, b);
            put_var_int(&mut out, v);
            put_string(&mut out, &s);
            put_binary(&mut out, &bin);
            out.extend_from_slice(b"payload");
            let mut r = Reader::new(Bytes::from(out));
            prop_assert_eq!(r.u16("a").unwrap(), a);
            prop_assert_eq!(r.u32("b").unwrap(), b);
            prop_assert_eq!(r.var_int("v").unwrap(), v);
            let got = r.string("s").unwrap();
            prop_assert_eq!(got.as_str(), s.as_str());
            prop_assert_eq!(&r.binary("bin").unwrap()[..], &bin[..]);
            prop_assert_eq!(&r.rest()[..], b"payload");
            prop_assert_eq!(r.remaining(), 0);
        }

        #[test]
        fn readers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(Bytes::from(bytes));
            while r.remaining() > 0 {
                if r.string("s").is_err() && r.var_int("v").is_err() && r.u32("u").is_err() {
                    let _ = r.u8("b");
                }
            }
        }
    }
}
