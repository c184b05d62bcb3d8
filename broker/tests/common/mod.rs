//! A broker on a free port with no services, and a device (rumqttc over TCP) whose incoming
//! packets arrive on channels.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use mast_broker::config::MqttConfig;
use mast_broker::credentials::ConfigCredentials;
use mast_broker::hooks::NoServices;
use mast_broker::{Broker, Server};
use mast_meta::{MetaStore, Writer};
use rumqttc::{Client, Event, MqttOptions, Packet, Publish};

pub const WAIT: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(500);

pub struct Broker1 {
    server: Option<Server>,
    _dir: tempfile::TempDir,
}

impl Broker1 {
    pub fn start(cfg: MqttConfig) -> Broker1 {
        let dir = tempfile::tempdir().unwrap();
        let writer = Broker1::writer(&dir);
        Broker1::start_with(cfg, dir, writer)
    }

    /// The metadata writer over `dir` (to load records before the broker starts).
    pub fn writer(dir: &tempfile::TempDir) -> Arc<Writer> {
        let meta = Arc::new(MetaStore::open(&dir.path().join("meta.redb")).unwrap());
        Arc::new(Writer::start(meta))
    }

    /// A broker over `writer`'s store, which lives in `dir`.
    pub fn start_with(cfg: MqttConfig, dir: tempfile::TempDir, writer: Arc<Writer>) -> Broker1 {
        let cfg = Arc::new(MqttConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            reactors: 2,
            ..cfg
        });
        let credentials = Arc::new(ConfigCredentials::new(&cfg));
        let server = Server::start(cfg, credentials, writer, &NoServices).unwrap();
        Broker1 {
            server: Some(server),
            _dir: dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.server.as_ref().unwrap().local_addr().port()
    }

    pub fn broker(&self) -> &Arc<Broker> {
        self.server.as_ref().unwrap().broker()
    }
}

impl Drop for Broker1 {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }
}

/// A connected client whose incoming PUBLISHes arrive on a channel.
pub struct Device {
    client: Client,
    publishes: Receiver<Publish>,
    subacks: Receiver<()>,
    _pump: JoinHandle<()>,
}

impl Device {
    pub fn connect(port: u16, id: &str) -> Device {
        Device::connect_with(port, id, true).0
    }

    /// Connects with a clean or a persistent session; also says whether a session was present.
    pub fn connect_with(port: u16, id: &str, clean: bool) -> (Device, bool) {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_session(clean);
        let (client, mut connection) = Client::new(o, 1000);
        let (ptx, publishes) = mpsc::channel();
        let (stx, subacks) = mpsc::channel();
        let (ctx, connected) = mpsc::channel();
        let pump = std::thread::spawn(move || {
            for ev in connection.iter() {
                match ev {
                    Ok(Event::Incoming(Packet::ConnAck(a))) => {
                        let _ = ctx.send(a.session_present);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = ptx.send(p);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = stx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        let present = connected.recv_timeout(WAIT).expect("CONNACK");
        let d = Device {
            client,
            publishes,
            subacks,
            _pump: pump,
        };
        (d, present)
    }

    pub fn subscribe(&self, filter: &str) {
        self.client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .unwrap();
        self.subacks.recv_timeout(WAIT).expect("SUBACK");
    }

    pub fn publish(&self, topic: &str, payload: &[u8], qos: rumqttc::QoS) {
        self.client
            .publish(topic, qos, false, payload.to_vec())
            .unwrap();
    }

    pub fn next(&self) -> Publish {
        self.publishes.recv_timeout(WAIT).expect("a PUBLISH")
    }

    pub fn nothing(&self) -> bool {
        matches!(
            self.publishes.recv_timeout(QUIET),
            Err(RecvTimeoutError::Timeout)
        )
    }
}
