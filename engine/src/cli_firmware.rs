//! `mast firmware upload|list|show|delete`: the firmware registry of a running server, through
//! its REST API (as `mast devices`). An upload streams the file; a signature is given as the
//! base64 of the artifact's signed SHA-256 (see `[ota]` in mast.example.toml).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cli_devices::{Remote, enc};

/// What `upload` sends beside the file.
#[derive(Debug, Clone, Default)]
pub struct UploadArgs {
    pub name: String,
    pub version: String,
    pub kind: Option<String>,
    pub device_type: Option<String>,
    pub hardware_revision: Option<String>,
    pub signature: Option<String>,
    pub key_id: Option<String>,
    pub release_notes: Option<String>,
}

/// `mast firmware upload FILE`: the record the server made, as JSON.
pub fn upload(r: &Remote, file: &Path, a: &UploadArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let mut f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let len = f.metadata()?.len();
    let mut q = vec![
        format!("name={}", enc(&a.name)),
        format!("version={}", enc(&a.version)),
    ];
    for (k, v) in [
        ("kind", &a.kind),
        ("device_type", &a.device_type),
        ("hardware_revision", &a.hardware_revision),
        ("signature", &a.signature),
        ("key_id", &a.key_id),
        ("release_notes", &a.release_notes),
    ] {
        if let Some(v) = v {
            q.push(format!("{k}={}", enc(v)));
        }
    }
    let path = format!("/api/v1/firmware?{}", q.join("&"));
    let (status, v) = r.call_raw("POST", &path, len, &mut f)?;
    if status != 201 {
        bail!(
            "upload refused: {status} {}: {}",
            v["code"].as_str().unwrap_or("?"),
            v["error"].as_str().unwrap_or("no message")
        );
    }
    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    Ok(())
}

/// `mast firmware list`: a table, or JSON lines.
pub fn list(r: &Remote, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let v = r.expect("GET", "/api/v1/firmware", None)?;
    let all = v["firmware"].as_array().cloned().unwrap_or_default();
    if json {
        for f in &all {
            writeln!(out, "{f}")?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<20} {:<24} {:<14} {:<10} {:>12} {:<16} STATE",
        "ID", "NAME", "VERSION", "KIND", "SIZE", "SIGNED BY"
    )?;
    for f in &all {
        let s = |k: &str| f[k].as_str().unwrap_or("-").to_owned();
        let signed = f["signature"]["key_id"].as_str().unwrap_or("-").to_owned();
        let state = if f["deleted_at"].is_null() {
            "live"
        } else {
            "deleted"
        };
        writeln!(
            out,
            "{:<20} {:<24} {:<14} {:<10} {:>12} {:<16} {state}",
            s("id"),
            s("name"),
            s("version"),
            s("kind"),
            f["size"].as_u64().unwrap_or(0),
            signed
        )?;
    }
    Ok(())
}

/// `mast firmware show ID`.
pub fn show(r: &Remote, id: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let v: Value = r.expect("GET", &format!("/api/v1/firmware/{}", enc(id)), None)?;
    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    Ok(())
}

/// `mast firmware delete ID` (soft: the record stays for the jobs' history).
pub fn delete(r: &Remote, id: &str, out: &mut impl Write) -> anyhow::Result<()> {
    r.expect("DELETE", &format!("/api/v1/firmware/{}", enc(id)), None)?;
    writeln!(out, "deleted {id}")?;
    Ok(())
}
