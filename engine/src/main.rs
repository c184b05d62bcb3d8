//! `mast`: the Mast server binary.
//!
//! `mast serve` opens (and recovers) the storage engine and runs the MQTT server on it; the HTTP
//! SQL API (issue 5) attaches as it lands. `mast passwd` prints an argon2 hash for the config.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use mast_engine::config::{Config, Override, env_overrides};
use mast_engine::http::{Api, HttpServer};
use mast_engine::mqtt::{MqttServer, hash_password};

/// Mast: an IoT time-series engine. Devices publish over MQTT; analysts query with SQL.
#[derive(Debug, Parser)]
#[command(name = "mast", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Shown after the options of `mast serve --help`.
const SERVE_HELP: &str = "\
Configuration, each layer overriding the one before:
  1. Embedded defaults: `mast serve` alone keeps data in ./mast-data, MQTT on 127.0.0.1:1883
     and HTTP on 127.0.0.1:8080.
  2. The --config file (TOML). mast.example.toml, at the top of the Mast source tree, lists
     every key with its default and what it does. Unknown keys are an error.
  3. MAST_* environment variables: MAST_<SECTION>_<KEY> in upper case sets any scalar key of
     the file, for example
       MAST_DATA_DIR=/var/lib/mast              sets data_dir
       MAST_STORAGE_FSYNC_INTERVAL_MS=50        sets fsync_interval_ms in [storage]
     An unknown MAST_* variable is an error. Lists and tables ([[mqtt.users]], [[mqtt.acl]],
     mqtt.tls.crl, storage.retention_tables) are set in the file only.
  4. The flags above.

Logging: records go to stderr, as text or JSON (--log-format). MAST_LOG takes a tracing filter
(default \"info\"), e.g. MAST_LOG=info,mast_engine=debug,mast_broker=debug.

SIGINT (Ctrl-C) or SIGTERM stops the server cleanly: connections are closed, the storage is
flushed, and mast exits with status 0. Any error exits with status 1 and one line on stderr.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (embedded defaults without a config file).
    #[command(after_help = SERVE_HELP)]
    Serve {
        /// Config file (TOML); every key is documented in mast.example.toml. MAST_* variables
        /// and flags override it. Without one, the embedded defaults apply.
        #[arg(long, env = "MAST_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Where data lives: WAL, segments, metadata. One mast at a time per directory
        /// [key: data_dir] [env: MAST_DATA_DIR] [default: ./mast-data]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// MQTT (plain TCP) listener. Loopback by default; listen more widely only with
        /// [[mqtt.users]] configured (or --allow-anonymous)
        /// [key: mqtt.listen] [env: MAST_MQTT_LISTEN] [default: 127.0.0.1:1883]
        #[arg(long, value_name = "IP:PORT")]
        mqtt_listen: Option<SocketAddr>,
        /// HTTP listener: SQL (POST /api/v1/sql), /health, /metrics
        /// [key: http.listen] [env: MAST_HTTP_LISTEN] [default: 127.0.0.1:8080]
        #[arg(long, value_name = "IP:PORT")]
        http_listen: Option<SocketAddr>,
        /// Accept MQTT clients without credentials even when users are configured or a listener
        /// is not on loopback [key: mqtt.allow_anonymous]
        #[arg(
            long,
            env = "MAST_ALLOW_ANONYMOUS",
            value_parser = clap::builder::BoolishValueParser::new()
        )]
        allow_anonymous: bool,
        /// Log format on stderr.
        #[arg(long, env = "MAST_LOG_FORMAT", value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Read a password from stdin and print its argon2id hash for `[[mqtt.users]]`.
    Passwd,
    /// Print the rows of a stopped server's data directory as JSON lines, one object per row
    /// ({"table", "time" (ns), "device_id", tags, fields}).
    Export {
        /// The data directory (the server must not be running on it).
        #[arg(long, value_name = "DIR", default_value = "./mast-data")]
        data_dir: PathBuf,
        /// Only this table (default: every table, e.g. iot.device_events too).
        #[arg(long)]
        table: Option<String>,
        /// Print "<table> <rows>" per table instead of the rows.
        #[arg(long)]
        count: bool,
    },
    /// The fleet certificate authority under the data directory (server running or not).
    Ca {
        /// Config file, for its data_dir (as `mast serve` reads it).
        #[arg(long, global = true, env = "MAST_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// The data directory [key: data_dir] [env: MAST_DATA_DIR] [default: ./mast-data]
        #[arg(long, global = true, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: CaCommand,
    },
    /// The device registry of a running server, over its REST API.
    Devices {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: DevicesCommand,
    },
    /// The firmware registry of a running server, over its REST API.
    Firmware {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: FirmwareCommand,
    },
    /// Jobs and rollouts of a running server, over its REST API.
    Jobs {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// The certificate registry of a running server, over its REST API.
    Certs {
        #[command(flatten)]
        remote: RemoteArgs,
        #[command(subcommand)]
        command: CertsCommand,
    },
}

/// A running server's REST API, for `mast devices` and `mast certs`.
#[derive(Debug, clap::Args)]
struct RemoteArgs {
    /// The server's HTTP API.
    #[arg(
        long,
        global = true,
        env = "MAST_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// A bearer token (http.tokens; http.read_tokens for list and show).
    #[arg(long, global = true, env = "MAST_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl RemoteArgs {
    fn remote(self) -> anyhow::Result<mast_engine::cli_devices::Remote> {
        mast_engine::cli_devices::Remote::new(&self.server, self.token)
    }
}

#[derive(Debug, Subcommand)]
enum FirmwareCommand {
    /// Uploads an artifact (streamed; its SHA-256 is computed by the server).
    Upload {
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// A semantic version (1.4.0).
        #[arg(long)]
        version: String,
        /// firmware, software or config.
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        device_type: Option<String>,
        #[arg(long)]
        hardware_revision: Option<String>,
        /// Base64 signature of the artifact's SHA-256.
        #[arg(long, requires = "key_id")]
        signature: Option<String>,
        /// The signing key (ota.signing_keys) the signature was made with.
        #[arg(long)]
        key_id: Option<String>,
        #[arg(long)]
        release_notes: Option<String>,
    },
    /// The firmware registry.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One firmware, as JSON.
    Show { id: String },
    /// Deletes a firmware (the record stays; the artifact is no longer served).
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// Creates a job: the whole job as JSON (--spec FILE, - or inline), or these flags
    /// (which win over it).
    Create {
        #[arg(long)]
        spec: Option<String>,
        #[arg(long)]
        job_id: Option<String>,
        /// A firmware id: the job installs it.
        #[arg(long)]
        firmware: Option<String>,
        /// The job document (JSON, inline or a file).
        #[arg(long)]
        document: Option<String>,
        /// A target device (repeat for more).
        #[arg(long = "device")]
        devices: Vec<String>,
        /// A target group (repeat for more).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Targets by a SQL predicate over iot.devices.
        #[arg(long = "where")]
        predicate: Option<String>,
        /// Devices that join the groups later get it too.
        #[arg(long)]
        continuous: bool,
        /// Devices notified per minute at most.
        #[arg(long)]
        max_per_minute: Option<u32>,
    },
    /// Every job: state, counts, rollout.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One job, as JSON.
    Show { id: String },
    /// A job's executions, one per device.
    Executions {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancels a job: its queued executions (with --force, those in progress too).
    Cancel {
        id: String,
        #[arg(long)]
        force: bool,
    },
    /// Lets the wave the rollout waits for start.
    Approve { id: String },
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Client certificates, newest first.
    List {
        /// Those acting for this device.
        #[arg(long)]
        device: Option<String>,
        /// Those with this status (PENDING_ACTIVATION, ACTIVE, INACTIVE, REVOKED).
        #[arg(long)]
        status: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One certificate, as JSON (by its fingerprint or a unique prefix of it).
    Show { id: String },
    /// Refuse a certificate from now on and end its live connections.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum DevicesCommand {
    /// Devices in id order, page after page.
    List {
        /// Members of this group (static or dynamic).
        #[arg(long)]
        group: Option<String>,
        /// Of this device type.
        #[arg(long = "type")]
        device_type: Option<String>,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One device, as JSON.
    Show { id: String },
    /// Set tags (key=value; a JSON value or text; a dotted key nests) and remove others.
    Tag {
        id: String,
        /// key=value pairs.
        tags: Vec<String>,
        /// Tags to remove.
        #[arg(long, value_name = "KEY")]
        remove: Vec<String>,
    },
    /// Add the device to static groups, or take it out.
    Group {
        id: String,
        #[arg(long, value_name = "GROUP")]
        add: Vec<String>,
        #[arg(long, value_name = "GROUP")]
        remove: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Make the fleet CA (P-256), or import an existing one: DATA/ca/ca.crt, and ca.key
    /// readable by its owner only.
    Init {
        /// The CA's common name.
        #[arg(long, default_value = "Mast fleet CA")]
        name: String,
        /// Validity of a new CA, in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Import this CA certificate and key (PEM) instead of making one.
        #[arg(long, num_args = 2, value_names = ["CERT", "KEY"])]
        import: Vec<PathBuf>,
    },
    /// Issue a device certificate and key: writes ID.crt and ID.key into --out.
    Issue {
        /// The device id (the certificate's CN, the client id it connects as).
        #[arg(long, value_name = "ID")]
        device: String,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Issue a claim certificate for a provisioning template: writes claim-NAME.crt and
    /// claim-NAME.key into --out.
    Claim {
        #[arg(long, value_name = "NAME")]
        template: String,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// Issue the server's TLS certificate: writes server.crt and server.key into --out.
    Server {
        /// A DNS name it serves (repeatable).
        #[arg(long, value_name = "NAME")]
        dns: Vec<String>,
        /// An IP address it serves (repeatable).
        #[arg(long, value_name = "ADDR")]
        ip: Vec<std::net::IpAddr>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

fn main() {
    if let Err(e) = run() {
        eprintln!("mast: {}", one_line(&e));
        std::process::exit(1);
    }
}

/// An error and its causes on one line: `context: cause: cause`. OS errors lose their
/// `(os error N)` suffix and capital ("address already in use"); a cause whose text its parent
/// already shows is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let mut text = cause.to_string();
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && let Some(code) = io.raw_os_error()
        {
            let suffix = format!(" (os error {code})");
            if let Some(bare) = text.strip_suffix(&suffix) {
                text = bare.to_owned();
            }
            if let Some(first) = text.chars().next() {
                text = first.to_lowercase().chain(text.chars().skip(1)).collect();
            }
        }
        if line.contains(&cause.to_string()) || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses the command line: `--help` and `--version` print and exit 0, `mast` alone prints the
/// help, and a usage error exits 1 with one line, like every other error.
fn parse_cli() -> Cli {
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if !e.use_stderr()
                || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            e.exit()
        }
        Err(e) => {
            let text = e.render().to_string();
            let parts: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("Usage:"))
                .map(|l| l.strip_prefix("error: ").unwrap_or(l))
                .collect();
            eprintln!("mast: {}", parts.join("; "));
            std::process::exit(1);
        }
    }
}

fn run() -> anyhow::Result<()> {
    match parse_cli().command {
        Command::Export {
            data_dir,
            table,
            count,
        } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            mast_engine::export::export(&data_dir, table.as_deref(), count, &mut out)?;
            Ok(())
        }
        Command::Devices { remote, command } => {
            use mast_engine::cli_devices as cli;
            let r = remote.remote()?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match command {
                DevicesCommand::List {
                    group,
                    device_type,
                    limit,
                    json,
                } => {
                    let a = cli::ListArgs {
                        group,
                        device_type,
                        limit,
                        json,
                    };
                    cli::list(&r, &a, &mut out)
                }
                DevicesCommand::Show { id } => cli::show(&r, &id, &mut out),
                DevicesCommand::Tag { id, tags, remove } => {
                    cli::tag(&r, &id, &tags, &remove, &mut out)
                }
                DevicesCommand::Group { id, add, remove } => {
                    cli::group(&r, &id, &add, &remove, &mut out)
                }
            }
        }
        Command::Firmware { remote, command } => {
            use mast_engine::cli_firmware as cli;
            let r = remote.remote()?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match command {
                FirmwareCommand::Upload {
                    file,
                    name,
                    version,
                    kind,
                    device_type,
                    hardware_revision,
                    signature,
                    key_id,
                    release_notes,
                } => {
                    let a = cli::UploadArgs {
                        name,
                        version,
                        kind,
                        device_type,
                        hardware_revision,
                        signature,
                        key_id,
                        release_notes,
                    };
                    cli::upload(&r, &file, &a, &mut out)
                }
                FirmwareCommand::List { json } => cli::list(&r, json, &mut out),
                FirmwareCommand::Show { id } => cli::show(&r, &id, &mut out),
                FirmwareCommand::Delete { id } => cli::delete(&r, &id, &mut out),
            }
        }
        Command::Jobs { remote, command } => {
            use mast_engine::cli_jobs as cli;
            let r = remote.remote()?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match command {
                JobsCommand::Create {
                    spec,
                    job_id,
                    firmware,
                    document,
                    devices,
                    groups,
                    predicate,
                    continuous,
                    max_per_minute,
                } => {
                    let a = cli::CreateArgs {
                        spec,
                        job_id,
                        firmware,
                        document,
                        devices,
                        groups,
                        predicate,
                        continuous,
                        max_per_minute,
                    };
                    cli::create(&r, &a, &mut out)
                }
                JobsCommand::List { json } => cli::list(&r, json, &mut out),
                JobsCommand::Show { id } => cli::show(&r, &id, &mut out),
                JobsCommand::Executions { id, json } => cli::executions(&r, &id, json, &mut out),
                JobsCommand::Cancel { id, force } => cli::act(&r, &id, "cancel", force, &mut out),
                JobsCommand::Approve { id } => cli::act(&r, &id, "approve", false, &mut out),
            }
        }
        Command::Certs { remote, command } => {
            use mast_engine::cli_certs as cli;
            let r = remote.remote()?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match command {
                CertsCommand::List {
                    device,
                    status,
                    json,
                } => cli::list(&r, device.as_deref(), status.as_deref(), json, &mut out),
                CertsCommand::Show { id } => cli::show(&r, &id, &mut out),
                CertsCommand::Revoke { id } => cli::revoke(&r, &id, &mut out),
            }
        }
        Command::Ca {
            config,
            data_dir,
            command,
        } => ca(config, data_dir, command),
        Command::Passwd => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let pw = line.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!pw.is_empty(), "empty password");
            println!("{}", hash_password(pw)?);
            Ok(())
        }
        Command::Serve {
            config,
            data_dir,
            mqtt_listen,
            http_listen,
            allow_anonymous,
            log_format,
        } => {
            let mut layers = layers(data_dir.as_deref())?;
            if let Some(l) = &mqtt_listen {
                layers.push(Override::flag("--mqtt-listen", "mqtt.listen", l)?);
            }
            if let Some(l) = &http_listen {
                layers.push(Override::flag("--http-listen", "http.listen", l)?);
            }
            if allow_anonymous {
                layers.push(Override::flag(
                    "--allow-anonymous",
                    "mqtt.allow_anonymous",
                    &true,
                )?);
            }
            let cfg = Config::load(config.as_deref(), &layers)?;
            init_logs(log_format);
            serve(cfg)
        }
    }
}

/// The config layers over the file: `MAST_*` variables, then `--data-dir`.
fn layers(data_dir: Option<&std::path::Path>) -> anyhow::Result<Vec<Override>> {
    let mut layers = env_overrides(std::env::vars_os())?;
    if let Some(d) = data_dir {
        layers.push(Override::flag("--data-dir", "data_dir", &d)?);
    }
    Ok(layers)
}

/// `mast ca ...`: prints what it wrote, one line each.
fn ca(
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    command: CaCommand,
) -> anyhow::Result<()> {
    use mast_devices::certs::ca::Leaf;
    let cfg = Config::load(config.as_deref(), &layers(data_dir.as_deref())?)?;
    let dir = mast_engine::ca::CaDir::new(&cfg.data_dir);
    let (leaf, stem, out, days) = match command {
        CaCommand::Init { name, days, import } => {
            let import = match import.as_slice() {
                [cert, key] => Some((cert.as_path(), key.as_path())),
                _ => None,
            };
            let info = dir.init(&name, days, import)?;
            println!("{}", dir.cert_path().display());
            println!("{}", dir.key_path().display());
            println!("fingerprint {}", info.fingerprint);
            return Ok(());
        }
        CaCommand::Issue { device, out, days } => {
            mast_devices::profile::check_device_id(&device)?;
            anyhow::ensure!(
                device != "." && device != "..",
                "device id {device:?} cannot name a file"
            );
            let stem = device.clone();
            (Leaf::Device(device), stem, out, days)
        }
        CaCommand::Claim {
            template,
            out,
            days,
        } => {
            mast_devices::certs::check_template_name(&template)?;
            let stem = format!("claim-{template}");
            (Leaf::Claim(template), stem, out, days)
        }
        CaCommand::Server { dns, ip, out, days } => {
            (Leaf::Server { dns, ips: ip }, "server".into(), out, days)
        }
    };
    let issued = dir.issue(&leaf, days)?;
    for p in mast_engine::ca::write_pair(&out, &stem, &issued)? {
        println!("{}", p.display());
    }
    println!("fingerprint {}", issued.info.fingerprint);
    Ok(())
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// The fleet provisioning service and its templates.
fn start_provisioning(
    cfg: &Config,
    mqtt: &MqttServer,
    meta: &Arc<mast_meta::MetaStore>,
    registry: &Arc<mast_engine::registry::Registry>,
) -> anyhow::Result<(
    mast_engine::provisioning::Provisioning,
    Arc<mast_engine::provisioning::Templates>,
)> {
    use mast_engine::provisioning::{Parts, Provisioning, Templates};
    let templates = Arc::new(Templates::load(
        meta,
        Arc::clone(mqtt.meta_writer()),
        &cfg.provisioning,
    )?);
    let service = Provisioning::start(Parts {
        broker: Arc::clone(mqtt.broker()),
        meta: Arc::clone(meta),
        writer: Arc::clone(mqtt.meta_writer()),
        certs: Arc::clone(mqtt.certificates()),
        registry: Arc::clone(registry),
        shadows: mqtt.shadows(),
        templates: Arc::clone(&templates),
        ca: mast_engine::ca::CaDir::new(&cfg.data_dir),
        certificate_days: cfg.provisioning.certificate_days,
        token_lifetime: Duration::from_secs(cfg.provisioning.token_lifetime_secs.into()),
    })?;
    Ok((service, templates))
}

/// The jobs service and the signer of its download URLs.
fn start_jobs(
    cfg: &Config,
    mqtt: &MqttServer,
    meta: &Arc<mast_meta::MetaStore>,
    store: &Arc<mast_storage::Store>,
    firmware: Arc<mast_engine::firmware::FirmwareRegistry>,
) -> anyhow::Result<(
    mast_engine::jobs::JobsService,
    Arc<mast_engine::jobs::DownloadUrls>,
)> {
    use mast_engine::jobs::{DownloadUrls, JobsService};
    let urls = Arc::new(
        DownloadUrls::open(
            &cfg.data_dir,
            &cfg.ota.download_base(cfg.http.listen),
            cfg.ota.download_url_secs,
        )
        .context("cannot open the download URL key")?,
    );
    let service = JobsService::start(
        mqtt.broker(),
        Arc::clone(meta),
        Arc::clone(store),
        Arc::clone(&urls),
        firmware,
        mqtt.job_events(),
    )
    .context("cannot start the jobs service")?;
    Ok((service, urls))
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let store = mast_storage::Store::open(cfg.storage.store_config(&cfg.data_dir))
        .with_context(|| format!("cannot open data directory {}", cfg.data_dir.display()))?;
    let store = Arc::new(store);
    // Opened after the store, whose LOCK keeps a second process out of the directory.
    let meta_path = cfg.data_dir.join(mast_meta::FILE);
    let meta = mast_meta::MetaStore::open(&meta_path)
        .with_context(|| format!("cannot open {}", meta_path.display()))?;
    let meta = Arc::new(meta);
    let mqtt = MqttServer::start(
        cfg.mqtt.clone(),
        cfg.ingest.tag_keys(),
        Arc::clone(&store),
        Arc::clone(&meta),
        &cfg.data_dir,
    )?;
    let engine = match mast_query::QueryEngine::new(Arc::clone(&store), cfg.query.limits()) {
        Ok(e) => e,
        Err(e) => {
            mqtt.shutdown();
            anyhow::bail!("cannot start the SQL engine: {e}");
        }
    };
    mast_engine::sql_tables::register(&engine, mqtt.broker(), &meta);
    let mut api = Api::new(
        &cfg.http,
        engine,
        Arc::clone(mqtt.broker()),
        Arc::clone(mqtt.ingest_counters()),
        Arc::clone(&store),
    );
    let registry = Arc::new(mast_engine::registry::Registry::new(
        Arc::clone(&meta),
        Some(Arc::clone(mqtt.meta_writer())),
    ));
    let provisioning = match start_provisioning(&cfg, &mqtt, &meta, &registry) {
        Ok(p) => p,
        Err(e) => {
            mqtt.shutdown();
            return Err(e);
        }
    };
    api.shadows = Some(mqtt.shadows());
    api.certs = Some(Arc::clone(mqtt.certificates()));
    api.templates = Some(Arc::clone(&provisioning.1));
    api.firmware = match mast_engine::firmware::FirmwareRegistry::new(
        Arc::clone(&meta),
        Arc::clone(mqtt.meta_writer()),
        &cfg.data_dir,
        &cfg.ota,
    ) {
        Ok(f) => Some(Arc::new(f)),
        Err(e) => {
            provisioning.0.shutdown();
            mqtt.shutdown();
            return Err(e.context("cannot start the firmware registry"));
        }
    };
    api.registry = Some(registry);
    let firmware = api.firmware.clone();
    let jobs = match firmware
        .ok_or_else(|| anyhow::anyhow!("no firmware registry"))
        .and_then(|f| start_jobs(&cfg, &mqtt, &meta, &store, f))
    {
        Ok((service, urls)) => {
            api.jobs = Some(service.handle());
            api.downloads = Some(urls);
            service
        }
        Err(e) => {
            provisioning.0.shutdown();
            mqtt.shutdown();
            return Err(e);
        }
    };
    let http = match HttpServer::start(cfg.http.listen, cfg.query.threads(), cfg.query.nice, api) {
        Ok(h) => h,
        Err(e) => {
            jobs.shutdown();
            provisioning.0.shutdown();
            mqtt.shutdown();
            return Err(e);
        }
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %cfg.data_dir.display(),
        mqtt = %mqtt.local_addr(),
        http = %http.local_addr(),
        "mast serving"
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!("shutting down");
    http.shutdown();
    jobs.shutdown();
    provisioning.0.shutdown();
    mqtt.shutdown();
    match Arc::try_unwrap(store) {
        Ok(store) => store.close(),
        Err(_) => tracing::warn!("storage still referenced at shutdown; WAL already durable"),
    }
    tracing::info!("stopped");
    Ok(())
}
