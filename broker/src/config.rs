//! The `[mqtt]` section of `mast.toml`: listeners, limits, users, topic rules and TLS. Parsed by
//! the server's configuration (which checks it); the broker reads it.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What to do with a subscriber whose queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowSubscriber {
    /// Drop the new message and count it (Mosquitto's and EMQX's behaviour).
    Drop,
    /// Disconnect the subscriber (reason 0x97 quota exceeded); a persistent session keeps its
    /// queue for when it comes back.
    Disconnect,
}

/// The MQTT server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Plain TCP listener.
    pub listen: SocketAddr,
    /// Reactor threads; 0 = one per core.
    pub reactors: usize,
    /// Largest packet accepted (and the Maximum Packet Size sent in CONNACK).
    pub max_packet_size: u32,
    /// Unacknowledged inbound QoS 1/2 messages per connection (Receive Maximum in CONNACK).
    pub receive_maximum: u16,
    /// Topic aliases a client may set (Topic Alias Maximum in CONNACK).
    pub topic_alias_maximum: u16,
    /// Unacknowledged QoS 1/2 messages in flight to one subscriber at most (lower when the
    /// client's Receive Maximum is lower). Their bytes count against `max_queued_bytes`.
    pub max_inflight_messages: u16,
    /// Subscriptions one client may hold; more are refused (v5 SUBACK 0x97, 3.1.1 0x80).
    pub max_subscriptions_per_client: usize,
    /// Messages waiting for one subscriber (queued, not yet in flight).
    pub max_queued_messages: usize,
    /// Bytes waiting for one subscriber.
    pub max_queued_bytes: usize,
    /// Messages waiting for one service's link (the shadow service takes every device's
    /// requests): above half of it publishers are read more slowly, when full they wait.
    pub max_service_queued_messages: usize,
    /// Encoded bytes not yet written to one socket; above it the broker stops feeding that
    /// connection and stops reading from it.
    pub max_output_bytes: usize,
    /// What happens when a subscriber's queue is full.
    pub slow_subscriber: SlowSubscriber,
    /// Keep QoS 0 messages for offline persistent sessions.
    pub queue_qos0_offline: bool,
    /// Upper bound on a session's expiry, seconds (also the expiry of a 3.1.1 persistent session).
    pub max_session_expiry_secs: u32,
    /// Upper bound on the keep alive a client asks for, seconds (v5 clients are told through
    /// Server Keep Alive; 0 = no bound).
    pub max_keep_alive_secs: u16,
    /// Seconds a new connection has to send CONNECT.
    pub connect_timeout_secs: u16,
    /// Retained messages kept at most.
    pub max_retained: usize,
    /// Connections accepted at most.
    pub max_connections: usize,
    /// Allow clients without credentials (a user name, or a client certificate on mutual TLS).
    /// Unset: allowed only while no users are configured and every listener is on loopback.
    pub allow_anonymous: Option<bool>,
    /// Users and their argon2 password hashes (`mast passwd` makes one).
    pub users: Vec<UserConfig>,
    /// Topic rules; none = every authenticated client may do anything.
    pub acl: Vec<AclRule>,
    /// TLS listener.
    pub tls: Option<TlsConfig>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            reactors: 0,
            max_packet_size: 1024 * 1024,
            receive_maximum: 1024,
            topic_alias_maximum: 64,
            max_inflight_messages: 65535,
            max_subscriptions_per_client: 10_000,
            max_queued_messages: 10_000,
            max_queued_bytes: 64 * 1024 * 1024,
            max_service_queued_messages: 100_000,
            max_output_bytes: 1024 * 1024,
            slow_subscriber: SlowSubscriber::Drop,
            queue_qos0_offline: false,
            max_session_expiry_secs: 7 * 24 * 3600,
            max_keep_alive_secs: 0,
            connect_timeout_secs: 10,
            max_retained: 1_000_000,
            max_connections: 1_000_000,
            allow_anonymous: None,
            users: Vec::new(),
            acl: Vec::new(),
            tls: None,
        }
    }
}

impl MqttConfig {
    /// Reactor threads to run.
    pub fn reactor_count(&self) -> usize {
        if self.reactors > 0 {
            self.reactors
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// One user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// User name.
    pub name: String,
    /// argon2 PHC string.
    pub password_hash: String,
}

/// A topic rule: who it applies to and which topics it allows. `%c` and `%u` in a pattern stand
/// for the client id and the user name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// User name this rule applies to; `*` or absent = everyone.
    #[serde(default)]
    pub user: Option<String>,
    /// Topic filters the client may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Topic filters the client may subscribe to (a subscription must lie within one).
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Clients this rule applies to may publish telemetry for device ids other than their own
    /// client id (gateways); their publish patterns still apply.
    #[serde(default)]
    pub gateway: bool,
}

/// TLS listener settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Listener address (8883 by convention).
    #[serde(default = "default_tls_listen")]
    pub listen: SocketAddr,
    /// Server certificate chain, PEM.
    pub cert: PathBuf,
    /// Server private key, PEM.
    pub key: PathBuf,
    /// CA bundle for client certificates, PEM; set = mutual TLS.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Certificate revocation lists, PEM.
    #[serde(default)]
    pub crl: Vec<PathBuf>,
    /// Refuse connections without a client certificate. Unset: required when `client_ca` is
    /// set; optional (the CONNECT's credentials decide) when only the fleet CA is trusted.
    #[serde(default)]
    pub require_client_cert: Option<bool>,
    /// Seconds between checks for changed certificate, key or CRL files.
    #[serde(default = "default_reload")]
    pub reload_interval_secs: u64,
    /// CA certificate files the server keeps itself (set by the server, not the file: the
    /// fleet CA `DATA/ca/ca.crt`, the CAs enrolled for just-in-time registration
    /// `DATA/ca/enrolled.pem`): trusted for client certificates beside `client_ca` whenever
    /// they exist; one made or changed while the server runs is picked up at the next reload
    /// check.
    #[serde(skip)]
    pub managed_cas: Vec<PathBuf>,
}

fn default_tls_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8883))
}

fn default_reload() -> u64 {
    5
}
