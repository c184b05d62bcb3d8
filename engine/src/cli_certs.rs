//! `mast certs list|show|revoke`: the certificate registry of a running server, through its
//! REST API (as `mast devices`). A certificate is named by its SHA-256 fingerprint or by a
//! prefix of it that names one certificate alone (as git names commits).

use std::io::Write;

use anyhow::bail;
use serde_json::Value;

use crate::cli_devices::{Remote, enc};

/// `mast certs list`: the certificates, newest first, as a table or JSON lines.
pub fn list(
    r: &Remote,
    device: Option<&str>,
    status: Option<&str>,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut q = Vec::new();
    if let Some(d) = device {
        q.push(format!("device={}", enc(d)));
    }
    if let Some(s) = status {
        q.push(format!("status={}", enc(s)));
    }
    let path = match q.is_empty() {
        true => "/api/v1/certificates".to_owned(),
        false => format!("/api/v1/certificates?{}", q.join("&")),
    };
    let v = r.expect("GET", &path, None)?;
    let certs = v["certificates"].as_array().cloned().unwrap_or_default();
    if json {
        for c in &certs {
            writeln!(out, "{c}")?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<16} {:<24} {:<18} {:<8} {:<24} LAST_USED",
        "ID", "DEVICE", "STATUS", "MADE", "NOT_AFTER"
    )?;
    for c in &certs {
        let s = |k: &str| c[k].as_str().unwrap_or("-").to_owned();
        let device = c["device_id"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| c["template"].as_str().map(|t| format!("(claim {t})")))
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{:<16} {:<24} {:<18} {:<8} {:<24} {}",
            &s("id")[..16.min(s("id").len())],
            device,
            s("status"),
            s("made"),
            s("not_after"),
            s("last_used_at")
        )?;
    }
    Ok(())
}

/// The full id `id_or_prefix` names.
fn resolve(r: &Remote, id_or_prefix: &str) -> anyhow::Result<String> {
    let p = id_or_prefix.to_ascii_lowercase();
    if p.len() < 4 || p.len() > 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "{id_or_prefix:?}: give a certificate id (its SHA-256 fingerprint, or 4 or more of its first hex digits)"
        );
    }
    if p.len() == 64 {
        return Ok(p);
    }
    let v = r.expect("GET", "/api/v1/certificates", None)?;
    let matches: Vec<String> = v["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str())
        .filter(|id| id.starts_with(&p))
        .map(str::to_owned)
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no certificate id starts with {p}"),
        _ => bail!(
            "{} certificates start with {p}; give more digits",
            matches.len()
        ),
    }
}

/// `mast certs show`: one certificate, as JSON.
pub fn show(r: &Remote, id: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let id = resolve(r, id)?;
    let v = r.expect("GET", &format!("/api/v1/certificates/{id}"), None)?;
    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    Ok(())
}

/// `mast certs revoke`: refused from then on, its live connections ended.
pub fn revoke(r: &Remote, id: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let id = resolve(r, id)?;
    let v: Value = r.expect("POST", &format!("/api/v1/certificates/{id}/revoke"), None)?;
    writeln!(
        out,
        "revoked {} ({})",
        id,
        v["device_id"]
            .as_str()
            .or(v["template"].as_str())
            .unwrap_or("no device")
    )?;
    Ok(())
}
