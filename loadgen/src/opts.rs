//! The flags every connecting verb shares, in emqtt-bench's conventions (`-h -p -V -c -n -i -R
//! -k -C -u -P --prefix --ifaddr`), and what they resolve to.

use std::net::{IpAddr, Ipv4Addr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use mast_protocol::ProtocolVersion;

use crate::client::{Dial, Settings, Tls};

/// Where and how to connect.
#[derive(Debug, Clone, Args)]
pub(crate) struct ConnOpts {
    /// Broker host.
    #[arg(short = 'h', long, default_value = "127.0.0.1")]
    pub(crate) host: String,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    pub(crate) port: u16,
    /// MQTT version: 3 or 4 (3.1.1), 5.
    #[arg(short = 'V', long, default_value_t = 5)]
    pub(crate) version: u8,
    /// Milliseconds between connection starts (over the whole run, not per thread).
    #[arg(short = 'i', long = "interval", default_value_t = 0)]
    pub(crate) interval_conn: u64,
    /// Connections started per second (overrides -i; 0 = use -i).
    #[arg(short = 'R', long, default_value_t = 0)]
    pub(crate) connrate: u64,
    /// Keep alive, seconds.
    #[arg(short = 'k', long, default_value_t = 300)]
    pub(crate) keepalive: u16,
    /// Clean start / clean session.
    #[arg(short = 'C', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub(crate) clean: bool,
    /// User name.
    #[arg(short = 'u', long)]
    pub(crate) username: Option<String>,
    /// Password.
    #[arg(short = 'P', long)]
    pub(crate) password: Option<String>,
    /// Source addresses, comma separated, ranges allowed (127.0.0.1,127.0.0.2-127.0.0.40):
    /// connections take them in turn, so each adds its own ~28,000 ephemeral ports.
    #[arg(long)]
    pub(crate) ifaddr: Option<String>,
    /// Seconds a connection may take from TCP connect to CONNACK before it counts as failed.
    #[arg(long, default_value_t = 60)]
    pub(crate) connect_timeout: u64,
    /// Worker threads (each drives its share of the connections on one poll).
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// TLS (with --cacertfile; a client certificate from --certfile/--keyfile or --certdir).
    #[arg(short = 'S', long)]
    pub(crate) ssl: bool,
    /// The CA certificates (PEM) that verify the broker.
    #[arg(long)]
    pub(crate) cacertfile: Option<PathBuf>,
    /// One client certificate (PEM) for every connection.
    #[arg(long, requires = "keyfile")]
    pub(crate) certfile: Option<PathBuf>,
    #[arg(long)]
    pub(crate) keyfile: Option<PathBuf>,
    /// A certificate per connection: DIR's `*.crt` (each with its `.key`) in name order, the
    /// n-th for the n-th connection (as `mast-loadgen provision --out` writes them).
    #[arg(long, conflicts_with = "certfile")]
    pub(crate) certdir: Option<PathBuf>,
    /// The server name for SNI and certificate verification [default: the host].
    #[arg(long)]
    pub(crate) sni: Option<String>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

impl ConnOpts {
    /// The broker's address, connection settings, source addresses and pace, counted from now.
    pub(crate) fn dial(&self) -> anyhow::Result<Dial> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {}", self.host))?
            .next()
            .context("host has no address")?;
        let version = match self.version {
            3 | 4 => ProtocolVersion::V311,
            5 => ProtocolVersion::V5,
            v => anyhow::bail!("unsupported MQTT version {v} (3, 4 or 5)"),
        };
        let sources = match &self.ifaddr {
            Some(s) => parse_ifaddr(s).map_err(|e| anyhow::anyhow!("--ifaddr: {e}"))?,
            None => Vec::new(),
        };
        let gap = if self.connrate > 0 {
            Duration::from_secs_f64(1.0 / self.connrate as f64)
        } else {
            Duration::from_millis(self.interval_conn)
        };
        Ok(Dial {
            addr,
            settings: Settings {
                version,
                keep_alive: self.keepalive,
                username: self.username.clone(),
                password: self.password.clone(),
                clean_start: self.clean,
                tls: self.tls()?,
            },
            sources,
            gap,
            connect_timeout: Duration::from_secs(self.connect_timeout.max(1)),
            t0: Instant::now(),
        })
    }
}

impl ConnOpts {
    /// The TLS settings, when `--ssl` asks for TLS.
    fn tls(&self) -> anyhow::Result<Option<Tls>> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        if !self.ssl {
            return Ok(None);
        }
        let mut roots = rustls::RootCertStore::empty();
        let ca = self
            .cacertfile
            .as_ref()
            .context("--ssl needs --cacertfile (the CA that signed the broker's certificate)")?;
        for c in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("reading {}", ca.display()))?
        {
            roots.add(c.with_context(|| format!("reading {}", ca.display()))?)?;
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = |pair: Option<(&Path, &Path)>| -> anyhow::Result<Arc<rustls::ClientConfig>> {
            let b = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(Arc::clone(&roots));
            Ok(Arc::new(match pair {
                None => b.with_no_client_auth(),
                Some((cert, key)) => {
                    let certs = CertificateDer::pem_file_iter(cert)
                        .with_context(|| format!("reading {}", cert.display()))?
                        .collect::<Result<Vec<_>, _>>()
                        .with_context(|| format!("reading {}", cert.display()))?;
                    let key = PrivateKeyDer::from_pem_file(key)
                        .with_context(|| format!("reading {}", key.display()))?;
                    b.with_client_auth_cert(certs, key)?
                }
            }))
        };
        let configs = match (&self.certfile, &self.keyfile, &self.certdir) {
            (Some(c), Some(k), _) => vec![config(Some((c, k)))?],
            (_, _, Some(dir)) => {
                let mut crts: Vec<PathBuf> = std::fs::read_dir(dir)
                    .with_context(|| format!("reading {}", dir.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                    .collect();
                crts.sort();
                anyhow::ensure!(!crts.is_empty(), "no *.crt in {}", dir.display());
                crts.iter()
                    .map(|c| config(Some((c, &c.with_extension("key")))))
                    .collect::<anyhow::Result<_>>()?
            }
            _ => vec![config(None)?],
        };
        let name = self.sni.clone().unwrap_or_else(|| self.host.clone());
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| anyhow::anyhow!("--sni {name:?} is not a server name"))?;
        Ok(Some(Tls {
            server_name,
            configs: Arc::new(configs),
        }))
    }
}

/// `127.0.0.1,127.0.0.5-127.0.0.8,::1` → each address; a range runs over IPv4 addresses.
pub(crate) fn parse_ifaddr(s: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            None => out.push(
                part.parse::<IpAddr>()
                    .map_err(|_| format!("{part:?} is not an IP address"))?,
            ),
            Some((a, b)) => {
                let parse = |x: &str| {
                    x.trim()
                        .parse::<Ipv4Addr>()
                        .map_err(|_| format!("{x:?} is not an IPv4 address"))
                };
                let (lo, hi) = (u32::from(parse(a)?), u32::from(parse(b)?));
                if lo > hi {
                    return Err(format!("range {part:?} runs backwards"));
                }
                if hi - lo >= 65_536 {
                    return Err(format!("range {part:?} is longer than 65,536 addresses"));
                }
                out.extend((lo..=hi).map(|x| IpAddr::V4(Ipv4Addr::from(x))));
            }
        }
    }
    if out.is_empty() {
        return Err("no address given".into());
    }
    Ok(out)
}

/// What the worker threads of a run returned, in order, or the error of one that failed (the
/// last one seen; a panic is reported as `what` panicking). Every thread is joined first.
pub(crate) fn join_workers<T>(
    handles: Vec<std::thread::JoinHandle<anyhow::Result<T>>>,
    what: &str,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::with_capacity(handles.len());
    let mut failure = None;
    for h in handles {
        match h.join() {
            Ok(Ok(t)) => out.push(t),
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some(anyhow::anyhow!("{what} thread panicked")),
        }
    }
    failure.map_or(Ok(out), Err)
}

/// `count` items dealt round-robin to at most `threads` threads (none empty).
pub(crate) fn split(count: usize, threads: usize) -> Vec<Vec<usize>> {
    let threads = threads.clamp(1, count.max(1));
    let mut v = vec![Vec::new(); threads];
    for i in 0..count {
        v[i % threads].push(i);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifaddr_lists_and_ranges() {
        let v = parse_ifaddr("127.0.0.1, 127.0.0.5-127.0.0.7,::1").unwrap();
        let s: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(
            s,
            ["127.0.0.1", "127.0.0.5", "127.0.0.6", "127.0.0.7", "::1"]
        );
        assert_eq!(parse_ifaddr("10.0.0.255-10.0.1.0").unwrap().len(), 2);
        assert!(parse_ifaddr("127.0.0.9-127.0.0.1").is_err());
        assert!(parse_ifaddr("localhost").is_err());
        assert!(parse_ifaddr("").is_err());
        assert!(parse_ifaddr("10.0.0.0-10.2.0.0").is_err());
    }

    #[test]
    fn split_deals_round_robin_without_empty_threads() {
        assert_eq!(split(5, 2), vec![vec![0, 2, 4], vec![1, 3]]);
        assert_eq!(split(2, 8).len(), 2);
        assert_eq!(split(0, 4), vec![Vec::<usize>::new()]);
    }
}
