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
use mast_engine::config::Config;
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
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (embedded defaults without a config file).
    Serve {
        /// Config file (TOML); see mast.example.toml. Flags and MAST_* variables override it.
        #[arg(long, env = "MAST_CONFIG")]
        config: Option<PathBuf>,
        /// Where data lives [default: ./mast-data].
        #[arg(long, env = "MAST_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// MQTT listener address [default: 127.0.0.1:1883].
        #[arg(long, env = "MAST_MQTT_LISTEN")]
        mqtt_listen: Option<SocketAddr>,
        /// Allow clients without credentials even when users are configured.
        #[arg(long, env = "MAST_ALLOW_ANONYMOUS")]
        allow_anonymous: bool,
        /// Log format.
        #[arg(long, env = "MAST_LOG_FORMAT", value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Read a password from stdin and print its argon2id hash for `[[mqtt.users]]`.
    Passwd,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("mast: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
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
            allow_anonymous,
            log_format,
        } => {
            init_logs(log_format);
            let mut cfg = match &config {
                Some(path) => Config::load(path)?,
                None => Config::default(),
            };
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            if let Some(l) = mqtt_listen {
                cfg.mqtt.listen = l;
            }
            if allow_anonymous {
                cfg.mqtt.allow_anonymous = Some(true);
            }
            serve(cfg)
        }
    }
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

fn serve(cfg: Config) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let store = mast_storage::Store::open(mast_storage::StoreConfig::new(&cfg.data_dir))
        .with_context(|| format!("opening {}", cfg.data_dir.display()))?;
    let store = Arc::new(store);
    let mqtt = MqttServer::start(cfg.mqtt.clone(), Arc::clone(&store))?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %cfg.data_dir.display(),
        mqtt = %mqtt.local_addr(),
        "mast serving"
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!("shutting down");
    mqtt.shutdown();
    match Arc::try_unwrap(store) {
        Ok(store) => store.close(),
        Err(_) => tracing::warn!("storage still referenced at shutdown; WAL already durable"),
    }
    tracing::info!("stopped");
    Ok(())
}
