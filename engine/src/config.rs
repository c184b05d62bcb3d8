//! `mast.toml`: every setting with its embedded default, so `mast serve` with no file runs.
//!
//! A configuration is built in layers, each overriding the one before: the embedded defaults,
//! the `--config` file, `MAST_*` environment variables ([`env_overrides`]), then command-line
//! flags ([`Override::flag`]). Unknown keys and unknown `MAST_*` variables are errors (a typo
//! must not silently fall back to a default), and every error is one line naming where the bad
//! value came from: the file with line and column, or the variable or flag.
//!
//! ```
//! use mast_engine::config::{Config, Override};
//!
//! let env = mast_engine::config::env_overrides([("MAST_MQTT_REACTORS".into(), "2".into())])?;
//! let flag = Override::flag("--data-dir", "data_dir", &"/tmp/mast")?;
//! let cfg = Config::load(None, &[env, vec![flag]].concat())?;
//! assert_eq!(cfg.mqtt.reactors, 2);
//! assert_eq!(cfg.data_dir, std::path::Path::new("/tmp/mast"));
//! # anyhow::Ok(())
//! ```

mod ingest;
mod layers;
mod mqtt;
mod ota;
mod provisioning;
mod query;
mod storage;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use ingest::{IngestConfig, TableIngest};
pub use layers::{CONSUMED_ELSEWHERE, Override, env_name, env_overrides};
pub use mast_broker::config::{AclRule, MqttConfig, SlowSubscriber, TlsConfig, UserConfig};
pub use ota::{OtaConfig, SigningKeyConfig};
pub use provisioning::ProvisioningConfig;
pub use query::QueryConfig;
pub use storage::{FsyncMode, StorageConfig};

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where data lives.
    pub data_dir: PathBuf,
    /// The MQTT server.
    pub mqtt: MqttConfig,
    /// The HTTP API.
    pub http: HttpConfig,
    /// The storage engine.
    pub storage: StorageConfig,
    /// SQL queries.
    pub query: QueryConfig,
    /// Telemetry decoding (which JSON keys are tags).
    pub ingest: IngestConfig,
    /// Fleet provisioning by claim.
    pub provisioning: ProvisioningConfig,
    /// Over-the-air updates: the firmware registry.
    pub ota: OtaConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./mast-data"),
            mqtt: MqttConfig::default(),
            http: HttpConfig::default(),
            storage: StorageConfig::default(),
            query: QueryConfig::default(),
            ingest: IngestConfig::default(),
            provisioning: ProvisioningConfig::default(),
            ota: OtaConfig::default(),
        }
    }
}

/// A value that parses but cannot be used, and the dotted keys it is about (the first one the
/// flags or variables set is blamed; otherwise the file is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    keys: Vec<String>,
    msg: String,
}

impl Invalid {
    fn new(key: &str, msg: impl Into<String>) -> Invalid {
        Invalid {
            keys: vec![key.to_owned()],
            msg: msg.into(),
        }
    }
}

impl Config {
    /// Builds the configuration: the defaults, then `file` (if any), then `overrides` in order
    /// (later ones win: pass the `MAST_*` variables first, then the flags), then checks it.
    pub fn load(file: Option<&Path>, overrides: &[Override]) -> anyhow::Result<Config> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?,
            None => String::new(),
        };
        Config::build(file, &text, overrides)
    }

    /// Parses and checks config text (no file name, no overrides).
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        Config::build(None, text, &[])
    }

    fn build(file: Option<&Path>, text: &str, overrides: &[Override]) -> anyhow::Result<Config> {
        let at_file = |msg: &str| match file {
            Some(path) => anyhow::anyhow!("config {}: {msg}", path.display()),
            None => anyhow::anyhow!("config: {msg}"),
        };
        let mut tree: toml::Table = toml::from_str(text).map_err(|e| at_file(&at(text, &e)))?;
        for o in overrides {
            layers::set(&mut tree, &o.key, o.value.clone())
                .map_err(|e| anyhow::anyhow!("{}: cannot set {}: {e}", o.origin, o.key))?;
        }
        // Blames the last override of `key` (or of a key inside it, or of the table holding
        // it) for a bad value; None when the value came from the file.
        let blame = |key: &str| {
            overrides.iter().rev().find(|o| {
                o.key == key
                    || o.key.starts_with(&format!("{key}."))
                    || key.starts_with(&format!("{}.", o.key))
            })
        };
        let mut cfg: Config =
            toml::Value::Table(tree)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    let (msg, key) = flatten(&e);
                    // Parsing the file alone gives its errors a line and column.
                    let in_file = toml::from_str::<Config>(text).err();
                    match (in_file, key.as_deref().and_then(blame)) {
                        (Some(f), _) if f.message() == e.message() => at_file(&at(text, &f)),
                        (_, Some(o)) => anyhow::anyhow!("{}: {msg}", o.origin),
                        (Some(f), None) => at_file(&at(text, &f)),
                        (None, None) => match key {
                            Some(key) => at_file(&format!("{msg} (in `{key}`)")),
                            None => at_file(&msg),
                        },
                    }
                })?;
        cfg.check()
            .map_err(|e| match e.keys.iter().find_map(|k| blame(k)) {
                Some(o) => anyhow::anyhow!("{}: {}", o.origin, e.msg),
                None => at_file(&e.msg),
            })?;
        let ca = crate::ca::CaDir::new(&cfg.data_dir);
        if let Some(t) = &mut cfg.mqtt.tls {
            t.managed_cas = vec![ca.cert_path(), ca.enrolled_path()];
        }
        Ok(cfg)
    }

    fn check(&self) -> Result<(), Invalid> {
        mqtt::check(&self.mqtt)?;
        self.storage.check()?;
        self.query.check()?;
        self.http.check()?;
        self.ingest.check()?;
        self.provisioning.check()?;
        self.ota.check()?;
        if !self.http.listen.ip().is_loopback()
            && self.http.tokens.is_empty()
            && self.http.read_tokens.is_empty()
            && self.mqtt.allow_anonymous != Some(true)
        {
            return Err(Invalid {
                keys: vec!["http.listen".into(), "http.tokens".into()],
                msg: format!(
                    "http.listen {} is not loopback and no http.tokens are set: anyone could \
                     query; set http.tokens, or allow anonymous access explicitly with \
                     --allow-anonymous (mqtt.allow_anonymous = true)",
                    self.http.listen
                ),
            });
        }
        let mut listeners = vec![
            ("mqtt.listen", self.mqtt.listen),
            ("http.listen", self.http.listen),
        ];
        if let Some(tls) = &self.mqtt.tls {
            listeners.push(("mqtt.tls.listen", tls.listen));
        }
        for (i, (key, addr)) in listeners.iter().enumerate() {
            if let Some((other, _)) = listeners[..i]
                .iter()
                .find(|(_, a)| *a == *addr && addr.port() != 0)
            {
                return Err(Invalid {
                    keys: vec![(*key).to_owned(), (*other).to_owned()],
                    msg: format!("{key} and {other} are both {addr}; each listener needs its own"),
                });
            }
        }
        Ok(())
    }

    /// The defaults with every optional section and list filled in: the tree of keys the
    /// `MAST_*` variables are matched against, and the keys `mast.example.toml` must document.
    pub(crate) fn key_sample() -> anyhow::Result<toml::Table> {
        let mut sample = Config::default();
        sample.mqtt.allow_anonymous = Some(false);
        sample.mqtt.users = vec![UserConfig {
            name: String::new(),
            password_hash: String::new(),
        }];
        sample.mqtt.acl = vec![AclRule {
            user: Some(String::new()),
            publish: Vec::new(),
            subscribe: Vec::new(),
            gateway: false,
        }];
        sample.mqtt.tls = Some(TlsConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8883)),
            cert: PathBuf::new(),
            key: PathBuf::new(),
            client_ca: Some(PathBuf::new()),
            crl: Vec::new(),
            require_client_cert: Some(true),
            reload_interval_secs: 5,
            managed_cas: Vec::new(),
        });
        sample.ingest.tag_keys = vec![String::new()];
        sample.ingest.tables.insert(
            "readings".into(),
            TableIngest {
                tag_keys: vec![String::new()],
            },
        );
        sample.provisioning.templates.insert(
            "factory".into(),
            mast_devices::certs::provision::Template {
                device_id: String::new(),
                description: Some(String::new()),
                device_type: Some(String::new()),
                tags: Default::default(),
                groups: vec![String::new()],
                desired: None,
                device_configuration: Default::default(),
                hook_url: Some(String::new()),
                enabled: true,
                reprovision: true,
                certificate_days: Some(1),
                updated_at: 0,
            },
        );
        sample.ota.signing_keys = vec![SigningKeyConfig {
            id: String::new(),
            public_key: String::new(),
        }];
        match toml::Value::try_from(&sample)? {
            toml::Value::Table(t) => Ok(t),
            other => anyhow::bail!("the config serialized to a {}", other.type_str()),
        }
    }
}

/// A parse error as one line: `line L, column C: message` when it has a place in `text`.
fn at(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {msg}")
        }
        None => msg,
    }
}

/// A deserialization error's message on one line, and the dotted key it is about.
fn flatten(e: &toml::de::Error) -> (String, Option<String>) {
    // toml prints the key path (`in `a.b``) but has no accessor for it.
    let shown = e.to_string();
    let key = shown
        .lines()
        .filter_map(|l| l.strip_prefix("in `")?.strip_suffix('`'))
        .next_back()
        .map(str::to_owned);
    (e.message().replace('\n', " "), key)
}

/// The HTTP API (SQL, `/health`, `/metrics`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listener address.
    pub listen: SocketAddr,
    /// Bearer tokens accepted by `/api/*` and `/metrics` (`Authorization: Bearer <token>`);
    /// empty = no authentication (allowed only on loopback unless anonymous access is allowed).
    pub tokens: Vec<String>,
    /// Read-only bearer tokens: `GET` requests and SQL; every other request is refused (403).
    pub read_tokens: Vec<String>,
    /// Largest request body (a POSTed query), bytes.
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tokens: Vec::new(),
            read_tokens: Vec::new(),
            max_body_bytes: 1 << 20,
        }
    }
}

impl HttpConfig {
    fn check(&self) -> Result<(), Invalid> {
        if self.max_body_bytes < 1024 {
            return Err(Invalid::new(
                "http.max_body_bytes",
                "http.max_body_bytes must be at least 1024",
            ));
        }
        if let Some(t) = self
            .tokens
            .iter()
            .chain(&self.read_tokens)
            .find(|t| t.len() < 16 || t.contains(char::is_whitespace))
        {
            let shown: String = t.chars().take(4).collect();
            return Err(Invalid::new(
                "http.tokens",
                format!(
                    "http.tokens: the token starting {shown:?} must be at least 16 characters without spaces"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;
    use std::ffi::OsString;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<Override> {
        env_overrides(
            vars.iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        )
        .unwrap()
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mast.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn defaults_and_overrides() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.mqtt.listen, SocketAddr::from(([127, 0, 0, 1], 1883)));
        assert_eq!(c.http.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(c.data_dir, Path::new("./mast-data"));
        assert_eq!(c.storage, StorageConfig::default());
        assert!(c.mqtt.tls.is_none());
        let c = Config::parse(
            r#"
            data_dir = "/var/lib/mast"
            [mqtt]
            listen = "0.0.0.0:1884"
            slow_subscriber = "disconnect"
            allow_anonymous = false
            [[mqtt.acl]]
            user = "*"
            publish = ["devices/%c/#"]
            gateway = true
            [mqtt.tls]
            cert = "c.pem"
            key = "k.pem"
            [http]
            listen = "0.0.0.0:80"
            tokens = ["0123456789abcdef-grafana"]
            [query]
            timeout_ms = 5000
            memory_limit_mb = 64
            [storage]
            fsync = "always"
            shards = 4
            [storage.retention_tables]
            telemetry = 3600
            "#,
        )
        .unwrap();
        assert_eq!(c.mqtt.listen.port(), 1884);
        assert_eq!(c.mqtt.slow_subscriber, SlowSubscriber::Disconnect);
        assert!(c.mqtt.acl[0].gateway);
        assert_eq!(c.mqtt.tls.unwrap().listen.port(), 8883);
        assert_eq!(c.http.listen.port(), 80);
        assert_eq!(c.http.tokens, vec!["0123456789abcdef-grafana".to_string()]);
        assert_eq!(c.query.limits().timeout, std::time::Duration::from_secs(5));
        assert_eq!(c.query.limits().memory_limit, 64 << 20);
        assert_eq!(c.storage.fsync, FsyncMode::Always);
        assert_eq!(c.storage.shards, 4);
        assert_eq!(c.storage.retention_tables["telemetry"], 3600);
        assert_eq!(c.storage.fsync_interval_ms, 100);
    }

    #[test]
    fn mistakes_are_errors() {
        let e = |text: &str| Config::parse(text).unwrap_err().to_string();
        assert!(
            e("[mqtt]\nlisten_typo = 1")
                .starts_with("config: line 2, column 1: unknown field `listen_typo`"),
            "{}",
            e("[mqtt]\nlisten_typo = 1")
        );
        assert!(e("[[mqtt.users]]\nname = \"a\"\npassword_hash = \"plain\"").contains("PHC"));
        assert!(e("[[mqtt.acl]]\npublish = [\"a/#/b\"]").contains("mqtt.acl pattern"));
        assert!(e("[[mqtt.acl]]\ngateway = 1").contains("invalid type: integer `1`"));
        assert!(e("[storage]\nfsync = \"sometimes\"").contains("unknown variant `sometimes`"));
        assert!(e("[storage]\nshards = -1").contains("line 2"));
        assert!(e("[http]\nport = 1").contains("unknown field `port`"));
        assert!(
            e("[http]\nlisten = \"0.0.0.0:8080\"").contains("is not loopback and no http.tokens")
        );
        assert!(e("[http]\ntokens = [\"short\"]").contains("at least 16 characters"));
        assert!(e("[query]\ntimeout_ms = 0").contains("query.timeout_ms must be > 0"));
        assert!(e("[query]\nmax_concurrent = 0").contains("query.max_concurrent must be > 0"));
        // anonymous access, allowed explicitly, opens a public HTTP listener too
        assert!(
            Config::parse("[http]\nlisten = \"0.0.0.0:8080\"\n[mqtt]\nallow_anonymous = true")
                .is_ok()
        );
        assert_eq!(
            e("[mqtt]\nmax_packet_size = 10"),
            "config: mqtt.max_packet_size must be at least 64, not 10"
        );
    }

    #[test]
    fn each_section_is_checked() {
        let e = |text: &str| Config::parse(text).unwrap_err().to_string();
        assert_eq!(
            e("[mqtt]\nreceive_maximum = 0"),
            "config: mqtt.receive_maximum must be > 0"
        );
        assert_eq!(
            e("[storage]\nfsync_interval_ms = 0"),
            "config: storage.fsync_interval_ms must be between 1 and 60000, not 0"
        );
        assert_eq!(
            e("[storage]\nblock_rows = 4"),
            "config: storage.block_rows must be between 16 and 65536, not 4"
        );
        assert_eq!(
            e("[storage]\nqueue_capacity = 0"),
            "config: storage.queue_capacity must be > 0"
        );
        assert_eq!(
            e("[http]\nlisten = \"127.0.0.1:1883\""),
            "config: http.listen and mqtt.listen are both 127.0.0.1:1883; each listener needs its own"
        );
        // Port 0 (any free port) never clashes.
        Config::parse("[mqtt]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"")
            .unwrap();
    }

    #[test]
    fn provisioning_templates_in_the_file_are_checked() {
        let cfg = Config::parse(
            "[provisioning]\ncertificate_days = 30\n\
             [provisioning.templates.factory]\ndevice_id = \"sensor-{SerialNumber}\"\n\
             tags = { site = \"{Site}\" }\ndesired = { interval = 60 }\n",
        )
        .unwrap();
        assert_eq!(cfg.provisioning.certificate_days, 30);
        let t = &cfg.provisioning.templates["factory"];
        assert_eq!(t.device_id, "sensor-{SerialNumber}");
        assert!(t.enabled);
        assert_eq!(t.tags["site"], "{Site}");
        let e = |text: &str| Config::parse(text).unwrap_err().to_string();
        assert!(
            e("[provisioning.templates.\"a b\"]\ndevice_id = \"x\"").contains("template name"),
            "a name AWS would refuse"
        );
        assert!(e("[provisioning.templates.f]\ndevice_id = \"x-{\"").contains("without"));
        assert_eq!(
            e("[provisioning]\ntoken_lifetime_secs = 0"),
            "config: provisioning.token_lifetime_secs must be at least 1"
        );
    }

    #[test]
    fn file_errors_name_the_file_line_and_column_on_one_line() {
        let (_d, path) = file("data_dir = \"x\"\n[mqtt]\nlisten = \"nowhere\"\n");
        let e = Config::load(Some(&path), &[]).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "config {}: line 3, column 10: invalid socket address syntax",
                path.display()
            )
        );
        let (_d, path) = file("[mqtt\nlisten = 1\n");
        let e = Config::load(Some(&path), &[]).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("config {}: line 1, column 6: ", path.display())),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let e = Config::load(Some(Path::new("/nonexistent/mast.toml")), &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot read config /nonexistent/mast.toml: "),
            "{e}"
        );
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let (_d, path) = file(
            "data_dir = \"/file\"\n[mqtt]\nlisten = \"127.0.0.1:1001\"\nreactors = 3\n\
             [storage]\nfsync_interval_ms = 300\nblock_rows = 64\n",
        );
        let mut layers = env(&[
            ("MAST_MQTT_LISTEN", "127.0.0.1:2002"),
            ("MAST_DATA_DIR", "/env"),
            ("MAST_STORAGE_FSYNC_INTERVAL_MS", "250"),
        ]);
        layers.push(Override::flag("--mqtt-listen", "mqtt.listen", &"127.0.0.1:3003").unwrap());
        let c = Config::load(Some(&path), &layers).unwrap();
        assert_eq!(c.mqtt.listen.port(), 3003, "flag over env and file");
        assert_eq!(c.data_dir, Path::new("/env"), "env over file");
        assert_eq!(c.storage.fsync_interval_ms, 250, "env over file");
        assert_eq!(c.mqtt.reactors, 3, "file over default");
        assert_eq!(c.storage.block_rows, 64, "file over default");
        assert_eq!(c.storage.max_head_age_secs, 600, "default");
        assert_eq!(c.http.listen.port(), 8080, "default");
        // Without a file.
        let c = Config::load(None, &env(&[("MAST_HTTP_LISTEN", "127.0.0.1:9")])).unwrap();
        assert_eq!(c.http.listen.port(), 9);
        assert_eq!(c.data_dir, Path::new("./mast-data"));
    }

    #[test]
    fn ingest_tag_keys_per_table_add_to_the_global_ones() {
        let c = Config::parse(
            "[ingest]\ntag_keys = [\"site\"]\n[ingest.tables.readings]\ntag_keys = [\"name\"]\n",
        )
        .unwrap();
        let keys = c.ingest.tag_keys();
        let of = |t: &str| keys.of(t).iter().map(|k| k.to_string()).collect::<Vec<_>>();
        assert_eq!(of("readings"), ["name", "site"]);
        assert_eq!(of("telemetry"), ["site"]);
        assert!(
            Config::default()
                .ingest
                .tag_keys()
                .of("readings")
                .is_empty()
        );
        for (bad, says) in [
            (
                "[ingest]\ntag_keys = [\"device_id\"]",
                "ingest.tag_keys: \"device_id\" cannot",
            ),
            (
                "[ingest.tables.t]\ntag_keys = [\"ts\"]",
                "ingest.tables.t.tag_keys: \"ts\" cannot",
            ),
            (
                "[ingest.tables.\"iot.devices\"]\ntag_keys = [\"a\"]",
                "Mast's own tables",
            ),
            ("[ingest]\ntag_key = [\"a\"]", "unknown field `tag_key`"),
        ] {
            let e = Config::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn env_can_add_an_optional_section() {
        let c = Config::load(
            None,
            &env(&[
                ("MAST_MQTT_TLS_CERT", "/etc/mast/c.pem"),
                ("MAST_MQTT_TLS_KEY", "/etc/mast/k.pem"),
                ("MAST_MQTT_TLS_REQUIRE_CLIENT_CERT", "false"),
                ("MAST_MQTT_ALLOW_ANONYMOUS", "true"),
            ]),
        )
        .unwrap();
        let tls = c.mqtt.tls.unwrap();
        assert_eq!(tls.cert, Path::new("/etc/mast/c.pem"));
        assert_eq!(tls.key, Path::new("/etc/mast/k.pem"));
        assert_eq!(tls.require_client_cert, Some(false));
        assert_eq!(
            tls.managed_cas,
            vec![
                Path::new("./mast-data/ca/ca.crt"),
                Path::new("./mast-data/ca/enrolled.pem")
            ]
        );
        assert_eq!(tls.listen.port(), 8883);
        assert_eq!(c.mqtt.allow_anonymous, Some(true));
        let e = Config::load(None, &env(&[("MAST_MQTT_TLS_CERT", "c.pem")]))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "MAST_MQTT_TLS_CERT=\"c.pem\": missing field `key`");
    }

    #[test]
    fn bad_overrides_name_the_variable_or_flag() {
        let e = |o: &[Override]| Config::load(None, o).unwrap_err().to_string();
        assert_eq!(
            e(&env(&[("MAST_MQTT_LISTEN", "nope")])),
            "MAST_MQTT_LISTEN=\"nope\": invalid socket address syntax"
        );
        assert_eq!(
            e(&env(&[("MAST_MQTT_RECEIVE_MAXIMUM", "70000")])),
            "MAST_MQTT_RECEIVE_MAXIMUM=\"70000\": invalid value: integer `70000`, expected u16"
        );
        assert_eq!(
            e(&env(&[("MAST_STORAGE_FSYNC", "sometimes")])),
            "MAST_STORAGE_FSYNC=\"sometimes\": unknown variant `sometimes`, expected one of \
             `batched`, `always`, `never`"
        );
        assert_eq!(
            e(&env(&[("MAST_STORAGE_BLOCK_ROWS", "1")])),
            "MAST_STORAGE_BLOCK_ROWS=\"1\": storage.block_rows must be between 16 and 65536, not 1"
        );
        assert_eq!(
            e(&[Override::flag("--http-listen", "http.listen", &"127.0.0.1:1883").unwrap()]),
            "--http-listen: http.listen and mqtt.listen are both 127.0.0.1:1883; each listener \
             needs its own"
        );
        // A file error stays the file's even with (good) overrides on top.
        let (_d, path) = file("[storage]\nblock_rows = \"many\"\n");
        let e = Config::load(Some(&path), &env(&[("MAST_MQTT_REACTORS", "2")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "config {}: line 2, column 14: invalid type: string \"many\", expected usize",
                path.display()
            )
        );
        // An unknown key in the file is the file's, though a variable sets another key of
        // the same table.
        let (_d, unknown) = file("[mqtt]\nlistn = 1\n");
        let e = Config::load(Some(&unknown), &env(&[("MAST_MQTT_REACTORS", "2")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!(
                "config {}: line 2, column 1: unknown field `listn`",
                unknown.display()
            )),
            "{e}"
        );
        // A clash is blamed on the override that made it, whichever listener it set.
        assert_eq!(
            Config::load(None, &env(&[("MAST_MQTT_LISTEN", "127.0.0.1:8080")]))
                .unwrap_err()
                .to_string(),
            "MAST_MQTT_LISTEN=\"127.0.0.1:8080\": http.listen and mqtt.listen are both \
             127.0.0.1:8080; each listener needs its own"
        );
        // ... and an override fixes what the file got wrong.
        let c = Config::load(Some(&path), &env(&[("MAST_STORAGE_BLOCK_ROWS", "32")])).unwrap();
        assert_eq!(c.storage.block_rows, 32);
    }

    #[test]
    fn the_example_file_documents_the_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../mast.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let c = Config::parse(&text).unwrap();
        assert_eq!(format!("{c:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn the_example_file_documents_every_key() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../mast.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        // `key =` lines and `[section]` headers, commented out or not.
        let mut documented = BTreeSet::new();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim_start_matches(['#', ' ']);
            if let Some(name) = line.strip_prefix('[') {
                section = name.trim_matches(['[', ']']).to_owned();
                documented.insert(section.clone());
            } else if let Some((key, _)) = line.split_once(" = ")
                && !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                documented.insert(if section.is_empty() {
                    key.to_owned()
                } else {
                    format!("{section}.{key}")
                });
            }
        }
        let mut keys = Vec::new();
        layers::leaves(&Config::key_sample().unwrap(), "", &mut keys);
        let missing: Vec<_> = keys
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !documented.contains(*k))
            .collect();
        assert!(missing.is_empty(), "mast.example.toml lacks {missing:?}");
    }
}
