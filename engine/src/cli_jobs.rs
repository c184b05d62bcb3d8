//! `mast jobs create|list|show|executions|cancel|approve`: the jobs of a running server, through
//! its REST API (as `mast devices`). `create` takes the whole job as JSON (a file, `-` for
//! stdin, or inline) and flags for the common parts, which win over it.

use std::io::{Read, Write};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cli_devices::{Remote, enc};

/// What `create` was given.
#[derive(Debug, Clone, Default)]
pub struct CreateArgs {
    /// A job as JSON: a path, `-` (stdin) or the JSON itself.
    pub spec: Option<String>,
    pub job_id: Option<String>,
    pub firmware: Option<String>,
    pub document: Option<String>,
    pub devices: Vec<String>,
    pub groups: Vec<String>,
    pub predicate: Option<String>,
    pub continuous: bool,
    pub max_per_minute: Option<u32>,
}

fn read_json(what: &str, s: &str) -> anyhow::Result<Value> {
    let text = if s == "-" {
        let mut t = String::new();
        std::io::stdin().read_to_string(&mut t)?;
        t
    } else if s.trim_start().starts_with('{') {
        s.to_owned()
    } else {
        std::fs::read_to_string(s).with_context(|| format!("reading {what} {s}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{what} is not JSON"))
}

impl CreateArgs {
    /// The request body.
    pub fn body(&self) -> anyhow::Result<Value> {
        let mut v = match &self.spec {
            Some(s) => read_json("the job", s)?,
            None => json!({}),
        };
        if !v.is_object() {
            bail!("the job is a JSON object");
        }
        let set = |v: &mut Value, k: &str, x: Value| v[k] = x;
        if let Some(j) = &self.job_id {
            set(&mut v, "job_id", json!(j));
        }
        if let Some(f) = &self.firmware {
            set(&mut v, "firmware", json!(f));
        }
        if let Some(d) = &self.document {
            set(&mut v, "document", read_json("the document", d)?);
        }
        if !self.devices.is_empty() {
            v["targets"]["devices"] = json!(self.devices);
        }
        if !self.groups.is_empty() {
            v["targets"]["groups"] = json!(self.groups);
        }
        if let Some(p) = &self.predicate {
            v["targets"]["where"] = json!(p);
        }
        if self.continuous {
            set(&mut v, "target_selection", json!("continuous"));
        }
        if let Some(m) = self.max_per_minute {
            v["rollout"]["max_per_minute"] = json!(m);
        }
        Ok(v)
    }
}

fn refused(status: u16, v: &Value) -> anyhow::Error {
    anyhow::anyhow!(
        "{status} {}: {}",
        v["code"].as_str().unwrap_or("?"),
        v["error"].as_str().unwrap_or("no message")
    )
}

/// `mast jobs create`: the job the server made, as JSON.
pub fn create(r: &Remote, a: &CreateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let (status, v) = r.call("POST", "/api/v1/jobs", Some(&a.body()?))?;
    if status != 201 {
        return Err(refused(status, &v).context("job refused"));
    }
    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    Ok(())
}

/// `mast jobs list`: a table, or JSON lines.
pub fn list(r: &Remote, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let v = r.expect("GET", "/api/v1/jobs", None)?;
    let all = v["jobs"].as_array().cloned().unwrap_or_default();
    if json {
        for j in &all {
            writeln!(out, "{j}")?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<28} {:<12} {:>9} {:>9} {:>9} {:>7} {:>9}  ROLLOUT",
        "JOB", "STATUS", "TARGETED", "RELEASED", "SUCCEEDED", "FAILED", "RUNNING"
    )?;
    for j in &all {
        let n = |k: &str| j["counts"][k].as_u64().unwrap_or(0);
        writeln!(
            out,
            "{:<28} {:<12} {:>9} {:>9} {:>9} {:>7} {:>9}  {}",
            j["job_id"].as_str().unwrap_or("-"),
            j["status"].as_str().unwrap_or("-"),
            j["targeted"].as_u64().unwrap_or(0),
            j["released"].as_u64().unwrap_or(0),
            n("SUCCEEDED"),
            n("FAILED") + n("TIMED_OUT") + n("REJECTED"),
            n("QUEUED") + n("IN_PROGRESS"),
            j["abort_reason"]
                .as_str()
                .or(j["rollout_state"].as_str())
                .unwrap_or("")
        )?;
    }
    Ok(())
}

/// `mast jobs show ID`.
pub fn show(r: &Remote, id: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let v = r.expect("GET", &format!("/api/v1/jobs/{}", enc(id)), None)?;
    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    Ok(())
}

/// `mast jobs executions ID`: one line per device.
pub fn executions(r: &Remote, id: &str, json: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let v = r.expect("GET", &format!("/api/v1/jobs/{}/executions", enc(id)), None)?;
    let all = v["executions"].as_array().cloned().unwrap_or_default();
    if json {
        for e in &all {
            writeln!(out, "{e}")?;
        }
        return Ok(());
    }
    writeln!(
        out,
        "{:<32} {:<12} {:>7} {:>9}  DETAILS",
        "DEVICE", "STATUS", "VERSION", "ATTEMPT"
    )?;
    for e in &all {
        writeln!(
            out,
            "{:<32} {:<12} {:>7} {:>9}  {}",
            e["device_id"].as_str().unwrap_or("-"),
            e["status"].as_str().unwrap_or("-"),
            e["version_number"].as_u64().unwrap_or(0),
            e["execution_number"].as_u64().unwrap_or(0),
            e["status_details"]
        )?;
    }
    Ok(())
}

/// `mast jobs cancel ID [--force]` and `mast jobs approve ID`: the job after, as JSON.
pub fn act(
    r: &Remote,
    id: &str,
    action: &str,
    force: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let q = if force { "?force=true" } else { "" };
    let v = r.expect(
        "POST",
        &format!("/api/v1/jobs/{}/{action}{q}", enc(id)),
        None,
    )?;
    writeln!(
        out,
        "{} {}: {} ({} released of {})",
        id,
        action,
        v["status"].as_str().unwrap_or("?"),
        v["released"],
        v["targeted"]
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_spec() {
        let a = CreateArgs {
            spec: Some(
                r#"{"job_id": "a", "document": {"x": 1}, "targets": {"devices": ["d0"]}}"#.into(),
            ),
            job_id: Some("b".into()),
            groups: vec!["g".into()],
            continuous: true,
            max_per_minute: Some(5),
            ..CreateArgs::default()
        };
        let v = a.body().unwrap();
        assert_eq!(v["job_id"], "b");
        assert_eq!(v["targets"], json!({"devices": ["d0"], "groups": ["g"]}));
        assert_eq!(v["rollout"]["max_per_minute"], 5);
        assert_eq!(v["target_selection"], "continuous");
        assert!(
            CreateArgs {
                spec: Some("[1]".into()),
                ..CreateArgs::default()
            }
            .body()
            .is_err()
        );
    }
}
