//! Jobs over REST (docs/architecture.md, "Jobs"):
//!
//! - `POST /api/v1/jobs`: `{job_id?, description?, document?, firmware?, targets: {devices,
//!   groups, where}, target_selection: snapshot|continuous, timeouts?: {in_progress_minutes |
//!   in_progress_secs}, retries?: [{failure_type, number_of_retries}], rollout?, abort?}`.
//!   The targets are resolved here (named devices must exist; groups' members, a predicate's
//!   devices); with a firmware, devices it does not fit are left out and counted
//!   (`incompatible`). 201 with the job and its counts, once durable.
//! - `GET /api/v1/jobs`, `GET /api/v1/jobs/{id}` (with `counts` per state),
//!   `GET /api/v1/jobs/{id}/executions`, `GET /api/v1/devices/{id}/jobs`.
//! - `POST /api/v1/jobs/{id}/cancel[?force=true]`: QUEUED executions become CANCELED; with
//!   `force`, IN_PROGRESS ones too.
//! - `POST /api/v1/jobs/{id}/approve`: the wave the rollout waits for may start (409 when it
//!   waits for none).
//!
//! `rollout`: `{max_per_minute, exponential: {base_per_minute, increment_factor, notified |
//! succeeded}, waves: [{percent, success_threshold_percent, approval}], abort, schedule:
//! {start_at, end_at, end_behavior, maintenance_windows: [{days, start, duration_minutes}]}}`;
//! `abort`: `[{failure_type, min_executed, threshold_percent}]` (`mast_devices::ota::rollout`).
//!
//! Continuous jobs: every [`FOLLOW_EVERY`], their groups and predicates are resolved again and
//! the devices that joined get an execution.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mast_devices::ota::firmware::Firmware;
use mast_devices::ota::job::{JobSpec, Targets};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api_devices::{body_json, ids_where, members, parse_predicate};
use crate::api_error::{ApiError, blocking};
use crate::http::{Api, json_response};
use crate::jobs::JobsHandle;

/// How often continuous jobs look for devices that joined their targets.
pub(crate) const FOLLOW_EVERY: Duration = Duration::from_secs(2);

fn service(api: &Api) -> Result<JobsHandle, ApiError> {
    api.jobs.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the jobs service is not running",
        )
    })
}

fn answer(status: StatusCode, r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => json_response(status, v.to_string()),
        Err(e) => e.into_response(),
    }
}

/// The devices `targets` names now, in id order; with `check`, named devices and groups must
/// exist (a job for nobody by mistake is refused).
async fn resolve(api: &Api, targets: &Targets, check: bool) -> Result<Vec<String>, ApiError> {
    let Some(reg) = api.registry.clone() else {
        return Err(ApiError::internal("the device registry is not running"));
    };
    let mut out: BTreeSet<String> = BTreeSet::new();
    let named = targets.devices.clone();
    let groups = targets.groups.clone();
    let (known, found_groups) = blocking("registry", move || {
        let mut known = Vec::new();
        for d in &named {
            if reg.device(d, false)?.is_some() {
                known.push(d.clone());
            }
        }
        let mut gs = Vec::new();
        for g in &groups {
            gs.push((g.clone(), reg.group(g)?));
        }
        Ok((known, gs))
    })
    .await?;
    if check && known.len() != targets.devices.len() {
        let missing: Vec<&String> = targets
            .devices
            .iter()
            .filter(|d| !known.contains(d))
            .collect();
        return Err(ApiError::not_found(format!(
            "targets: no device {missing:?}"
        )));
    }
    out.extend(known);
    for (name, g) in found_groups {
        match g {
            Some(g) => out.extend(members(api, &name, &g).await?),
            None if check => {
                return Err(ApiError::not_found(format!("targets: no group {name:?}")));
            }
            None => {}
        }
    }
    if let Some(p) = &targets.predicate {
        let text = parse_predicate(p)?;
        out.extend(ids_where(api, &text, None, None).await?);
    }
    Ok(out.into_iter().collect())
}

/// `targets` split into the devices `fw` fits and the count of those it does not.
async fn compatible(
    api: &Api,
    fw: &Firmware,
    targets: Vec<String>,
) -> Result<(Vec<String>, u64), ApiError> {
    if fw.device_type.is_none() && fw.hardware_revision.is_none() {
        return Ok((targets, 0));
    }
    let Some(reg) = api.registry.clone() else {
        return Err(ApiError::internal("the device registry is not running"));
    };
    let fw = fw.clone();
    blocking("registry", move || {
        let mut fit = Vec::new();
        let mut left = 0;
        for t in targets {
            let d = reg.device(&t, false)?;
            let p = d.as_ref().and_then(|d| d.profile.as_ref());
            let ok = fw.compatible(
                p.and_then(|p| p.device_type.as_deref()),
                p.and_then(|p| p.hardware_revision.as_deref()),
            );
            if ok {
                fit.push(t);
            } else {
                left += 1;
            }
        }
        Ok((fit, left))
    })
    .await
}

async fn firmware(api: &Api, id: &str) -> Result<Firmware, ApiError> {
    let Some(reg) = api.firmware.clone() else {
        return Err(ApiError::internal("the firmware registry is not running"));
    };
    let key = id.to_owned();
    let f = blocking("firmware", move || reg.get(&key))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no firmware {id:?}")))?;
    if f.deleted_at.is_some() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "gone",
            format!("firmware {id} was deleted"),
        ));
    }
    Ok(f)
}

/// A job id when none is given: `job-` and 16 random hex digits.
fn new_job_id() -> String {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    format!("job-{}", mast_devices::hex(&b))
}

pub(crate) async fn create(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let r = async {
        let jobs = service(&api)?;
        let spec: JobSpec = body_json(&body, "a job")?;
        let fw = match &spec.firmware {
            Some(id) => Some(firmware(&api, id).await?),
            None => None,
        };
        let now = mast_broker::message::now_ns();
        let mut job = spec.job(fw.as_ref(), new_job_id(), now)?;
        if let Some(p) = &job.targets.predicate {
            job.targets.predicate = Some(crate::api_devices::check_predicate(&api, p).await?);
        }
        let targets = resolve(&api, &job.targets, true).await?;
        let targets = match &fw {
            Some(fw) => {
                let (fit, left) = compatible(&api, fw, targets).await?;
                job.incompatible = left;
                fit
            }
            None => targets,
        };
        Ok(jobs.create(job, targets).await?)
    }
    .await;
    answer(StatusCode::CREATED, r)
}

pub(crate) async fn list(State(api): State<Arc<Api>>) -> Response {
    let r = async { Ok(json!({"jobs": service(&api)?.get(None).await?})) }.await;
    answer(StatusCode::OK, r)
}

pub(crate) async fn get(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let r = async { Ok(service(&api)?.get(Some(id)).await?) }.await;
    answer(StatusCode::OK, r)
}

pub(crate) async fn executions(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let r = async {
        let jobs = service(&api)?;
        jobs.get(Some(id.clone())).await?;
        Ok(json!({"executions": jobs.executions(Some(id), None).await?}))
    }
    .await;
    answer(StatusCode::OK, r)
}

pub(crate) async fn device_jobs(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let r =
        async { Ok(json!({"executions": service(&api)?.executions(None, Some(id)).await?})) }.await;
    answer(StatusCode::OK, r)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelParams {
    #[serde(default)]
    force: bool,
}

pub(crate) async fn cancel(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    params: Result<Query<CancelParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let r = async {
        let Query(p) =
            params.map_err(|e| ApiError::bad_request(format!("{e}; the parameter is force")))?;
        Ok(service(&api)?.cancel(id, p.force).await?)
    }
    .await;
    answer(StatusCode::OK, r)
}

pub(crate) async fn approve(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    let r = async { Ok(service(&api)?.approve(id).await?) }.await;
    answer(StatusCode::OK, r)
}

/// The ids of the jobs in progress that use firmware `id`.
pub(crate) async fn jobs_using(api: &Api, id: &str) -> Result<Vec<String>, ApiError> {
    let Some(jobs) = api.jobs.clone() else {
        return Ok(Vec::new());
    };
    let all = jobs.get(None).await?;
    Ok(all
        .as_array()
        .into_iter()
        .flatten()
        .filter(|j| j["firmware"] == id && j["status"] == "IN_PROGRESS")
        .filter_map(|j| j["job_id"].as_str().map(str::to_owned))
        .collect())
}

/// Tells continuous jobs who their targets are now, until the runtime stops: devices that
/// joined get an execution, those that left lose a QUEUED one (REMOVED).
pub(crate) async fn follow_continuous(api: Arc<Api>) {
    let Some(jobs) = api.jobs.clone() else {
        return;
    };
    let mut firmware_cache: BTreeMap<String, Firmware> = BTreeMap::new();
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let Ok(list) = jobs.continuous().await else {
            continue;
        };
        for j in list.as_array().into_iter().flatten() {
            let (Some(id), Ok(targets)) = (
                j["job_id"].as_str(),
                serde_json::from_value::<Targets>(j["targets"].clone()),
            ) else {
                continue;
            };
            // A failed resolution changes nothing (it is not "everyone left").
            let Ok(mut now) = resolve(&api, &targets, false).await else {
                continue;
            };
            let mut misfits = 0;
            if let Some(fw_id) = j["firmware"].as_str() {
                if !firmware_cache.contains_key(fw_id)
                    && let Ok(f) = firmware(&api, fw_id).await
                {
                    firmware_cache.insert(fw_id.to_owned(), f);
                }
                let Some(f) = firmware_cache.get(fw_id) else {
                    continue;
                };
                match compatible(&api, f, now).await {
                    Ok((fit, left)) => (now, misfits) = (fit, left),
                    Err(_) => continue,
                }
            }
            jobs.members(id.to_owned(), now, misfits).await;
        }
    }
}
