//! A connection's byte stream: plain TCP, or TLS (rustls driven inside the reactor, no proxy).
//! Both read into the connection's buffer and write from its output buffer without blocking.

use std::io::{self, Read, Write};

use bytes::BytesMut;
use mio::net::TcpStream;
use rustls::ServerConnection;

use super::credentials::PeerCert;

/// What a read found.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ReadOutcome {
    /// Plaintext bytes added to the buffer.
    pub(crate) bytes: usize,
    /// The peer closed its side.
    pub(crate) eof: bool,
    /// Stopped at the budget, not at "would block": read again soon.
    pub(crate) more: bool,
}

/// Plain or TLS.
#[derive(Debug)]
pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<ServerConnection>, TcpStream),
}

const CHUNK: usize = 16 * 1024;

thread_local! {
    /// Where a plain socket is read into (see [`Transport::read`]).
    static SCRATCH: std::cell::RefCell<Box<[u8; CHUNK]>> =
        std::cell::RefCell::new(Box::new([0; CHUNK]));
}

impl Transport {
    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) | Transport::Tls(_, s) => s,
        }
    }

    /// Reads until the socket would block or `budget` bytes arrived.
    pub(crate) fn read(&mut self, buf: &mut BytesMut, budget: usize) -> io::Result<ReadOutcome> {
        let mut out = ReadOutcome::default();
        match self {
            Transport::Plain(s) => loop {
                if out.bytes >= budget {
                    out.more = true;
                    return Ok(out);
                }
                // Into a scratch buffer zeroed once per thread, then only the bytes read are
                // copied: growing `buf` by a zeroed chunk per read cost a 16 KB memset each
                // time, twice per readable event (the second read is the one that would block).
                let got = SCRATCH.with_borrow_mut(|scratch| {
                    let r = s.read(&mut scratch[..]);
                    if let Ok(n) = r {
                        buf.extend_from_slice(&scratch[..n]);
                    }
                    r
                });
                match got {
                    Ok(0) => {
                        out.eof = true;
                        return Ok(out);
                    }
                    Ok(n) => {
                        out.bytes += n;
                    }
                    Err(e) => match e.kind() {
                        io::ErrorKind::WouldBlock => return Ok(out),
                        io::ErrorKind::Interrupted => {}
                        _ => return Err(e),
                    },
                }
            },
            Transport::Tls(tls, s) => loop {
                if out.bytes >= budget {
                    out.more = true;
                    return Ok(out);
                }
                match tls.read_tls(s) {
                    Ok(0) => out.eof = true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
                let state = match tls.process_new_packets() {
                    Ok(st) => st,
                    Err(e) => {
                        // Send the alert before the caller closes.
                        let _ = tls.write_tls(s);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                };
                let n = state.plaintext_bytes_to_read();
                let closed = state.peer_has_closed();
                if n > 0 {
                    let len = buf.len();
                    buf.resize(len + n, 0);
                    let got = tls.reader().read(&mut buf[len..]).unwrap_or(0);
                    buf.truncate(len + got);
                    out.bytes += got;
                }
                if out.eof || closed {
                    out.eof = true;
                    return Ok(out);
                }
                if n == 0 {
                    // Nothing new decrypted: either the socket would block or a record is
                    // incomplete. Try the socket once more only if it gave us bytes.
                    match tls.read_tls(s) {
                        Ok(0) => {
                            out.eof = true;
                            return Ok(out);
                        }
                        Ok(_) => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                }
            },
        }
    }

    /// Writes as much of `data` as the socket takes; returns how much was consumed. TLS output
    /// pending inside rustls (handshake, alerts) goes first.
    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => {
                let mut done = 0;
                while done < data.len() {
                    match s.write(&data[done..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => done += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(done)
            }
            Transport::Tls(tls, s) => {
                let mut done = 0;
                loop {
                    while tls.wants_write() {
                        match tls.write_tls(s) {
                            Ok(_) => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(done),
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e),
                        }
                    }
                    if done == data.len() || tls.is_handshaking() {
                        return Ok(done);
                    }
                    let n = tls.writer().write(&data[done..])?;
                    if n == 0 {
                        return Ok(done);
                    }
                    done += n;
                }
            }
        }
    }

    /// True when TLS has bytes of its own to send (handshake messages, alerts).
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(tls, _) => tls.wants_write(),
        }
    }

    /// The client certificate the TLS layer verified, on mutual TLS.
    pub(crate) fn peer_cert(&self) -> Option<PeerCert<'_>> {
        match self {
            Transport::Plain(_) => None,
            Transport::Tls(tls, _) => tls
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| PeerCert::new(c.as_ref())),
        }
    }
}
