//! The MQTT server of `mast serve`: the broker of `mast-broker` with the engine's services
//! (telemetry and presence) plugged into its seams, and the shadow service on a link.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use mast_broker::credentials::ConfigCredentials;
use mast_broker::message::now_ns;
use mast_meta::{MetaStore, Writer};
use mast_storage::Store;

pub use mast_broker::credentials::hash_password;
pub use mast_broker::{Broker, ConnectionInfo, Counters};

use crate::ca::CaDir;
use crate::certs::{Certificates, EngineCredentials};
use crate::config::MqttConfig;
use crate::ingest::{IngestCounters, TagKeys, TelemetryPath};
use crate::shadow_acks::ShadowAcks;
use crate::shadows::ShadowService;
use crate::telemetry::EngineServices;
use crate::telemetry::gateways::Gateways;

/// A running MQTT server.
#[derive(Debug)]
pub struct MqttServer {
    server: mast_broker::Server,
    shadows: ShadowService,
    telemetry: Arc<TelemetryPath>,
    writer: Arc<Writer>,
    certs: Arc<Certificates>,
    jobs: Arc<crate::jobs::JobEvents>,
}

impl MqttServer {
    /// Binds the listeners, restores the persisted broker state from `meta` and starts the
    /// threads; telemetry is decoded with `tag_keys` and written to `store`. The fleet CA and
    /// the certificates it issued are under `data_dir`.
    pub fn start(
        cfg: MqttConfig,
        tag_keys: TagKeys,
        store: Arc<Store>,
        meta: Arc<MetaStore>,
        data_dir: &Path,
    ) -> anyhow::Result<MqttServer> {
        let cfg = Arc::new(cfg);
        let writer = Arc::new(Writer::start(Arc::clone(&meta)));
        match crate::presence::close_stale(&store, &writer, now_ns()) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                clients = n,
                "marked clients of the previous run disconnected"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "presence records of the previous run not updated")
            }
        }
        let telemetry = Arc::new(TelemetryPath {
            store: Arc::clone(&store),
            tag_keys,
            counters: Arc::new(IngestCounters::default()),
        });
        let certs = Arc::new(Certificates::load(
            &meta,
            Arc::clone(&writer),
            CaDir::new(data_dir),
        )?);
        let shadow_acks = Arc::new(ShadowAcks::default());
        let jobs = Arc::new(crate::jobs::JobEvents::default());
        let services = EngineServices::new(
            Arc::clone(&telemetry),
            Gateways::new(&cfg.acl),
            Arc::clone(&shadow_acks),
            Arc::clone(&certs),
            Arc::clone(&jobs),
        );
        let credentials = Arc::new(EngineCredentials::new(
            ConfigCredentials::new(&cfg),
            Arc::clone(&certs),
        ));
        let server = mast_broker::Server::start(cfg, credentials, Arc::clone(&writer), &services)?;
        certs.set_broker(Arc::clone(server.broker()));
        let shadows = ShadowService::start(server.broker(), meta, store, shadow_acks)?;
        Ok(MqttServer {
            server,
            shadows,
            telemetry,
            writer,
            certs,
            jobs,
        })
    }

    /// Where the jobs service learns of subscriptions (it registers when it starts).
    pub fn job_events(&self) -> &Arc<crate::jobs::JobEvents> {
        &self.jobs
    }

    /// Sends REST requests to the shadow service.
    pub fn shadows(&self) -> crate::shadows::ShadowHandle {
        self.shadows.handle()
    }

    /// The metadata writer (for the device registry's writes).
    pub fn meta_writer(&self) -> &Arc<Writer> {
        &self.writer
    }

    /// The certificate registry.
    pub fn certificates(&self) -> &Arc<Certificates> {
        &self.certs
    }

    /// The plain listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The TLS listener's address.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.server.tls_addr()
    }

    /// The broker (counters, session and retained counts).
    pub fn broker(&self) -> &Arc<Broker> {
        self.server.broker()
    }

    /// The telemetry path's counters.
    pub fn ingest_counters(&self) -> &Arc<IngestCounters> {
        &self.telemetry.counters
    }

    /// Stops accepting, closes connections (v5 clients get DISCONNECT 0x8B), and waits for the
    /// threads; persisted state is committed.
    pub fn shutdown(self) {
        // The services answer what they accepted while the broker still delivers.
        self.shadows.shutdown();
        self.server.shutdown();
    }
}
