//! Mast's MQTT server: listeners, reactor threads and the broker (sessions, subscriptions,
//! retained messages, wills, delivery, TLS, credentials). It knows nothing of telemetry or
//! devices: services plug in through the seams of [`hooks`] and [`credentials`].
//!
//! ```text
//!  acceptor thread(s) ──(socket, round robin)──▶ reactor 0..N  (mio Poll each, owns its conns)
//!                                                   │  decode → Broker::publish → session queues
//!                                                   └─ wake the owners' reactors once per turn
//!  persist thread: retained, sessions, queued QoS 1/2 → metadata store, group commit
//! ```

mod acl;
mod broker;
pub mod config;
pub mod credentials;
pub mod hooks;
pub mod ids;
pub mod link;
pub mod message;
mod metrics;
pub mod persist;
mod reactor;
mod refusals;
mod session;
mod tls;
mod transport;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use mast_meta::Writer;
use mio::{Poll, Token, Waker};

pub use broker::{Broker, ConnectionInfo};
pub use credentials::hash_password;
pub use metrics::Counters;

use config::MqttConfig;
use credentials::Credentials;
use hooks::Services;
use reactor::{Reactor, ReactorShared};
use transport::Transport;

/// A running MQTT server.
#[derive(Debug)]
pub struct Server {
    broker: Arc<Broker>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    listen: SocketAddr,
    tls_listen: Option<SocketAddr>,
}

impl Server {
    /// Binds the listeners, restores the persisted broker state through `persist` (the
    /// metadata writer) and starts the
    /// threads, with `credentials` deciding who connects and `services` hooked into every
    /// reactor.
    pub fn start<S: Services>(
        cfg: Arc<MqttConfig>,
        credentials: Arc<dyn Credentials>,
        persist: Arc<Writer>,
        services: &S,
    ) -> anyhow::Result<Server> {
        let listener = TcpListener::bind(cfg.listen)
            .with_context(|| format!("cannot listen for MQTT on {}", cfg.listen))?;
        let listen = listener.local_addr()?;
        let tls = match &cfg.tls {
            Some(t) => {
                let built = tls::build(t, &credentials).context("TLS configuration")?;
                let l = TcpListener::bind(t.listen)
                    .with_context(|| format!("cannot listen for MQTT over TLS on {}", t.listen))?;
                Some((l, Arc::new(ArcSwap::new(built)), t.clone()))
            }
            None => None,
        };
        let n = cfg.reactor_count();
        let mut polls = Vec::with_capacity(n);
        let mut shared = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), Token(0))?);
            shared.push(Arc::new(ReactorShared {
                inbox: Default::default(),
                waker,
            }));
            polls.push(poll);
        }
        let all = Arc::new(shared);
        let wakers = Arc::new(link::Wakers::new(Arc::clone(&all)));
        let broker = Arc::new(Broker::new(
            Arc::clone(&cfg),
            Arc::clone(&credentials),
            persist,
            wakers,
        )?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (i, poll) in polls.into_iter().enumerate() {
            let wake = hooks::ReactorWake(Arc::clone(&all[i].waker));
            let r = Reactor::new(
                i,
                poll,
                Arc::clone(&broker),
                Arc::clone(&all),
                Arc::clone(&stop),
                services.reactor(i, wake),
            );
            threads.push(
                std::thread::Builder::new()
                    .name(format!("mqtt-reactor-{i}"))
                    .spawn(move || r.run())?,
            );
        }
        let rr = Arc::new(AtomicUsize::new(0));
        threads.push(spawn_acceptor(
            listener,
            None,
            Arc::clone(&all),
            Arc::clone(&rr),
            Arc::clone(&stop),
        )?);
        let mut tls_listen = None;
        if let Some((l, shared_cfg, t)) = tls {
            tls_listen = Some(l.local_addr()?);
            tls::watch(
                t,
                Arc::clone(&credentials),
                Arc::clone(&shared_cfg),
                Arc::clone(&stop),
            );
            threads.push(spawn_acceptor(
                l,
                Some(shared_cfg),
                Arc::clone(&all),
                rr,
                Arc::clone(&stop),
            )?);
        }
        tracing::info!(
            %listen,
            tls = ?tls_listen,
            reactors = n,
            anonymous = broker.credentials.allows_anonymous(),
            "MQTT listening"
        );
        Ok(Server {
            broker,
            stop,
            threads,
            listen,
            tls_listen,
        })
    }

    /// The plain listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The TLS listener's address.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_listen
    }

    /// The broker (counters, session and retained counts).
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, closes connections (v5 clients get DISCONNECT 0x8B), waits for the
    /// threads, and closes the metadata writer once what is queued is committed.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Unblock the acceptors.
        let _ = std::net::TcpStream::connect_timeout(&self.listen, Duration::from_millis(200));
        if let Some(a) = self.tls_listen {
            let _ = std::net::TcpStream::connect_timeout(&a, Duration::from_millis(200));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Everything queued is committed; a service still writing metadata must have stopped.
        self.broker.persist.close();
    }
}

fn spawn_acceptor(
    listener: TcpListener,
    tls: Option<tls::Shared>,
    all: Arc<Vec<Arc<ReactorShared>>>,
    rr: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(
            if tls.is_some() {
                "mqtt-accept-tls"
            } else {
                "mqtt-accept"
            }
            .into(),
        )
        .spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let stream = match stream {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                };
                let Ok(addr) = stream.peer_addr() else {
                    continue;
                };
                if stream.set_nonblocking(true).is_err() {
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let sock = mio::net::TcpStream::from_std(stream);
                let transport = match &tls {
                    None => Transport::Plain(sock),
                    Some(cfg) => match rustls::ServerConnection::new(cfg.load_full()) {
                        Ok(c) => Transport::Tls(Box::new(c), sock),
                        Err(e) => {
                            tracing::warn!(error = %e, "TLS session setup failed");
                            continue;
                        }
                    },
                };
                let r = rr.fetch_add(1, Ordering::Relaxed) % all.len();
                all[r].post(|inbox| inbox.conns.push((transport, addr)));
            }
        })
}
