//! `mast`: the Mast server binary.
//!
//! Today `mast serve` opens (and recovers) the storage engine under `--data-dir` and keeps it open;
//! the MQTT listener (issue 3/4) and the HTTP SQL API (issue 5) attach to it as they land.

use std::path::PathBuf;

use anyhow::{Context, bail};

const USAGE: &str = "\
mast — IoT time-series engine

USAGE:
    mast serve [--data-dir DIR]
    mast --help | --version

OPTIONS:
    --data-dir DIR   where data lives (default ./mast-data; env MAST_DATA_DIR)
";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut data_dir: PathBuf = std::env::var_os("MAST_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("./mast-data"));
    match args.next().as_deref() {
        Some("serve") => {}
        Some("--help" | "-h" | "help") | None => {
            print!("{USAGE}");
            return Ok(());
        }
        Some("--version" | "-V") => {
            println!("mast {}", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Some(other) => bail!("unknown command {other:?}; see `mast --help`"),
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data-dir" => data_dir = args.next().context("--data-dir needs a value")?.into(),
            other => bail!("unknown option {other:?}; see `mast --help`"),
        }
    }
    let store = mast_storage::Store::open(mast_storage::StoreConfig::new(&data_dir))
        .with_context(|| format!("opening {}", data_dir.display()))?;
    let tables = store.catalog().tables().len();
    let segments = store.snapshot().segments().len();
    eprintln!(
        "mast {}: storage open at {} ({} shards, {tables} tables, {segments} segments); \
         MQTT and HTTP listeners are not built yet. Ctrl-C to stop.",
        env!("CARGO_PKG_VERSION"),
        data_dir.display(),
        store.shards()
    );
    loop {
        std::thread::park();
    }
}
