//! Jobs, sans IO: the job an operator creates (`ota_jobs`, `iot.ota_jobs`), the device's topics
//! of the AWS IoT Jobs API and the documents Mast answers on them
//! (docs/plans/aws-jobs-contract.md §1–§4, decisions §9).
//!
//! - Topics: `$aws/things/{thing}/jobs/get`, `…/start-next`, `…/{jobId}/get` (`$next` too) and
//!   `…/{jobId}/update`; replies on the request topic plus `/accepted` or `/rejected`; `notify`
//!   and `notify-next` are the server's. Only the server publishes on a reply or event topic.
//! - A thing's pending executions are its QUEUED and IN_PROGRESS ones: IN_PROGRESS first, then
//!   by queue time (the job id breaks ties). The first is "next".
//! - Every time is integer epoch seconds on the wire; Mast keeps nanoseconds.
//! - A job is a document (any JSON object up to 32 KB) or a firmware (its document is made
//!   from the firmware record), its targets resolved when it is created (`snapshot`) or also
//!   as devices join its groups later (`continuous`), its timeouts and its retries.

use std::collections::BTreeMap;

use mast_meta::Op;
use mast_meta::tables::{OTA_EXECUTIONS, OTA_JOBS};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::execution::{Execution, MAX_STEP_MINUTES, Rejection, Status};
use super::firmware::Firmware;
use super::rollout::{AbortCriterion, Exponential, Rate, Rules, Schedule, Wave};
use crate::profile::{RegistryError, decode_versioned, encode_versioned};

const JOB_VERSION: u64 = 1;
const EXECUTION_VERSION: u64 = 1;

/// The longest job id (AWS: 64, `[a-zA-Z0-9_-]`).
pub const MAX_JOB_ID: usize = 64;
/// The largest job document, bytes (AWS: 32 KB).
pub const MAX_DOCUMENT: usize = 32 * 1024;
/// At most this many retries per device (AWS: 10).
pub const MAX_RETRIES: u32 = 10;
/// The placeholder a document's string values may hold for a firmware's download URL; each
/// reply that carries the document puts a URL with a fresh token in its place.
pub const URL_PLACEHOLDER: &str = "${mast:firmware-url}";

const PREFIX: &str = "$aws/things/";

/// What a request on a jobs topic asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOp {
    GetPending,
    StartNext,
    /// `None`: `$next`.
    Describe(Option<String>),
    Update(String),
    /// In the jobs namespace, but no API (`InvalidTopic`).
    Invalid,
}

/// A request topic, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub thing: &'a str,
    pub op: JobOp,
    /// The topic it came on (the replies are on it plus `/accepted` or `/rejected`).
    pub topic: &'a str,
}

/// The filter the jobs service subscribes to.
pub const REQUEST_FILTER: &str = "$aws/things/+/jobs/#";

/// Whether `s` is a job id AWS allows (the topic then cannot be ambiguous).
pub fn valid_job_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_JOB_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl<'a> Request<'a> {
    /// A request of `$aws/things/{thing}/jobs/…`; `None` for a topic outside the namespace or
    /// a reply or event topic (the server's own).
    pub fn parse(topic: &'a str) -> Option<Request<'a>> {
        let rest = topic.strip_prefix(PREFIX)?;
        let (thing, rest) = rest.split_once('/')?;
        let rest = rest.strip_prefix("jobs")?;
        if thing.is_empty() || !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        if is_server_topic(topic) {
            return None;
        }
        let levels: Vec<&str> = rest.split('/').skip(1).collect();
        let op = match levels.as_slice() {
            ["get"] => JobOp::GetPending,
            ["start-next"] => JobOp::StartNext,
            ["$next", "get"] => JobOp::Describe(None),
            [job, "get"] if valid_job_id(job) => JobOp::Describe(Some((*job).to_owned())),
            [job, "update"] if valid_job_id(job) => JobOp::Update((*job).to_owned()),
            _ => JobOp::Invalid,
        };
        Some(Request { thing, op, topic })
    }

    pub fn reply_topic(&self, accepted: bool) -> String {
        let suffix = if accepted { "accepted" } else { "rejected" };
        format!("{}/{suffix}", self.topic)
    }
}

/// Whether only the server may publish on `topic`: a reply (`…/accepted`, `…/rejected`) or
/// event (`notify`, `notify-next`) topic of the jobs namespace.
pub fn is_server_topic(topic: &str) -> bool {
    let Some(rest) = topic.strip_prefix(PREFIX) else {
        return false;
    };
    let Some((_, rest)) = rest.split_once('/') else {
        return false;
    };
    let Some(rest) = rest.strip_prefix("jobs/") else {
        return false;
    };
    rest == "notify"
        || rest == "notify-next"
        || rest.ends_with("/accepted")
        || rest.ends_with("/rejected")
}

/// `$aws/things/{thing}/jobs/notify` or `…/notify-next`.
pub fn event_topic(thing: &str, next: bool) -> String {
    let e = if next { "notify-next" } else { "notify" };
    format!("{PREFIX}{thing}/jobs/{e}")
}

/// Snapshot: the targets when the job is created; continuous: also devices that join its
/// groups (or come to match its predicate) later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    #[default]
    Snapshot,
    Continuous,
}

/// Whom a job is for: the union of the devices named, the members of the groups named, and
/// the devices of `iot.devices` the predicate holds for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, rename = "where", skip_serializing_if = "Option::is_none")]
    pub predicate: Option<String>,
}

impl Targets {
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty() && self.groups.is_empty() && self.predicate.is_none()
    }
}

/// Which failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureType {
    Failed,
    TimedOut,
    All,
}

impl FailureType {
    fn covers(self, s: Status) -> bool {
        match self {
            FailureType::Failed => s == Status::Failed,
            FailureType::TimedOut => s == Status::TimedOut,
            FailureType::All => matches!(s, Status::Failed | Status::TimedOut),
        }
    }
}

/// Retry a failure type up to `number_of_retries` times per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryCriterion {
    pub failure_type: FailureType,
    pub number_of_retries: u32,
}

/// What `POST /api/v1/jobs` takes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Made from the time and randomness when absent.
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Any JSON object; with `firmware`, merged over the firmware's document.
    #[serde(default)]
    pub document: Option<Value>,
    /// A firmware id: the job installs it; incompatible targets are left out and counted.
    #[serde(default)]
    pub firmware: Option<String>,
    pub targets: Targets,
    #[serde(default)]
    pub target_selection: Selection,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub retries: Vec<RetryCriterion>,
    /// `{max_per_minute?, exponential?, waves?, abort?, schedule?}` (schedule times RFC 3339).
    #[serde(default)]
    pub rollout: Option<Value>,
    /// Abort criteria (also accepted inside `rollout`).
    #[serde(default)]
    pub abort: Vec<AbortCriterion>,
}

/// A job's timers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// The in-progress timer, minutes (1 to 10,080), as AWS has it.
    #[serde(default)]
    pub in_progress_minutes: Option<i64>,
    /// Or in seconds (Mast's finer grain; 1 to 604,800).
    #[serde(default)]
    pub in_progress_secs: Option<i64>,
}

/// `rollout` as a request gives it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutSpec {
    #[serde(default)]
    max_per_minute: Option<u32>,
    #[serde(default)]
    exponential: Option<Exponential>,
    #[serde(default)]
    waves: Vec<Wave>,
    #[serde(default)]
    abort: Vec<AbortCriterion>,
    #[serde(default)]
    schedule: Schedule,
}

/// A job's own state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    #[default]
    InProgress,
    Canceled,
    /// Every execution terminal, and (snapshot) nobody left to target.
    Completed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::InProgress => "IN_PROGRESS",
            JobStatus::Canceled => "CANCELED",
            JobStatus::Completed => "COMPLETED",
        }
    }
}

/// A job (`ota_jobs`, key = its id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What devices get (the firmware's document with the placeholder URL, for a firmware job).
    pub document: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
    pub targets: Targets,
    pub target_selection: Selection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress_timeout_minutes: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress_timeout_secs: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<RetryCriterion>,
    #[serde(default)]
    pub rollout: Rules,
    pub status: JobStatus,
    /// ns since the epoch.
    pub created_at: i64,
    pub updated_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<i64>,
    /// Targets left out because the firmware does not fit them.
    #[serde(default)]
    pub incompatible: u64,
    /// Canceled with `force` (IN_PROGRESS executions canceled too).
    #[serde(default)]
    pub forced: bool,
    /// Targets notified so far: the first `released` of the job's target list.
    #[serde(default)]
    pub released: u64,
    /// Waves an operator approved.
    #[serde(default)]
    pub approved: u32,
    /// Why the job canceled itself (an abort criterion), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_reason: Option<String>,
    /// The schedule's end stopped the rollout (the job goes on for those notified).
    #[serde(default)]
    pub rollout_stopped: bool,
}

fn check_text(what: &str, s: &str, max: usize) -> Result<(), RegistryError> {
    if s.len() > max || s.chars().any(char::is_control) {
        return Err(RegistryError::bad(format!(
            "{what}: at most {max} bytes, no control characters"
        )));
    }
    Ok(())
}

/// The document a firmware job gives devices: what to install and how to check it; the URL is
/// the placeholder each reply fills in.
pub fn firmware_document(fw: &Firmware) -> Value {
    let mut f = json!({
        "id": fw.id,
        "name": fw.name,
        "version": fw.version,
        "kind": fw.kind.as_str(),
        "size": fw.size,
        "sha256": fw.sha256,
        "url": URL_PLACEHOLDER,
        // The same bytes over MQTT in blocks ($aws/things/{id}/streams/{stream}/get/json).
        "stream": fw.id,
    });
    if let Some(s) = &fw.signature {
        f["signature"] = json!({"alg": s.alg.as_str(), "key_id": s.key_id, "value": s.value});
    }
    json!({"operation": "firmware_update", "firmware": f})
}

/// The rollout rules of a request: as [`Rules`], with the schedule's times in RFC 3339.
fn rules_from_json(v: &Value) -> Result<Rules, RegistryError> {
    let mut v = v.clone();
    if let Some(s) = v.get_mut("schedule").and_then(Value::as_object_mut) {
        for k in ["start_at", "end_at"] {
            if let Some(t) = s.get(k).cloned() {
                let ns = t.as_str().and_then(crate::rfc3339_ns).ok_or_else(|| {
                    RegistryError::bad(format!(
                        "rollout.schedule.{k}: an RFC 3339 time such as 2026-12-08T02:00:00Z"
                    ))
                })?;
                s.insert(k.into(), Value::from(ns));
            }
        }
    }
    let r: RolloutSpec =
        serde_json::from_value(v).map_err(|e| RegistryError::bad(format!("rollout: {e}")))?;
    let rate = (r.max_per_minute.is_some() || r.exponential.is_some()).then_some(Rate {
        max_per_minute: r.max_per_minute,
        exponential: r.exponential,
    });
    Ok(Rules {
        rate,
        waves: r.waves,
        abort: r.abort,
        schedule: r.schedule,
    })
}

impl JobSpec {
    /// The job it creates at `now_ns`, with `firmware` the record `self.firmware` names (the
    /// caller looked it up) and `job_id` the id to use when none is given.
    pub fn job(
        &self,
        firmware: Option<&Firmware>,
        job_id: String,
        now_ns: i64,
    ) -> Result<Job, RegistryError> {
        let job_id = self.job_id.clone().unwrap_or(job_id);
        if !valid_job_id(&job_id) {
            return Err(RegistryError::bad(format!(
                "job_id: 1 to {MAX_JOB_ID} characters of a-z, A-Z, 0-9, - and _"
            )));
        }
        if let Some(d) = &self.description {
            check_text("description", d, 2048)?;
        }
        if self.targets.is_empty() {
            return Err(RegistryError::bad(
                "targets: name devices, groups or a where predicate",
            ));
        }
        for d in self.targets.devices.iter().chain(&self.targets.groups) {
            if d.is_empty() || d.len() > 128 {
                return Err(RegistryError::bad(
                    "targets: device and group names have 1 to 128 bytes",
                ));
            }
        }
        let t = self.timeouts;
        if let Some(m) = t.in_progress_minutes
            && !(1..=MAX_STEP_MINUTES).contains(&m)
        {
            return Err(RegistryError::bad(format!(
                "timeouts.in_progress_minutes: 1 to {MAX_STEP_MINUTES}"
            )));
        }
        if let Some(s) = t.in_progress_secs
            && (!(1..=MAX_STEP_MINUTES * 60).contains(&s) || t.in_progress_minutes.is_some())
        {
            return Err(RegistryError::bad(format!(
                "timeouts.in_progress_secs: 1 to {}, instead of in_progress_minutes",
                MAX_STEP_MINUTES * 60
            )));
        }
        let mut rollout = match &self.rollout {
            None => Rules::default(),
            Some(v) => rules_from_json(v)?,
        };
        rollout.abort.extend(self.abort.iter().cloned());
        rollout.check()?;
        let total: u32 = self.retries.iter().map(|r| r.number_of_retries).sum();
        if total > MAX_RETRIES {
            return Err(RegistryError::bad(format!(
                "retries: at most {MAX_RETRIES} in all"
            )));
        }
        let mut document = match (firmware, &self.document) {
            (Some(fw), _) => firmware_document(fw),
            (None, Some(_)) => Value::Object(Map::new()),
            (None, None) => {
                return Err(RegistryError::bad(
                    "a job has a document, a firmware, or both",
                ));
            }
        };
        match &self.document {
            Some(Value::Object(extra)) => {
                if let Value::Object(d) = &mut document {
                    for (k, v) in extra {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
            Some(_) => return Err(RegistryError::bad("document: a JSON object")),
            None => {}
        }
        if serde_json::to_vec(&document).map_or(usize::MAX, |v| v.len()) > MAX_DOCUMENT {
            return Err(RegistryError::bad(format!(
                "document: at most {MAX_DOCUMENT} bytes"
            )));
        }
        Ok(Job {
            job_id,
            description: self.description.clone(),
            document,
            firmware: firmware.map(|f| f.id.clone()),
            targets: self.targets.clone(),
            target_selection: self.target_selection,
            in_progress_timeout_minutes: t.in_progress_minutes,
            in_progress_timeout_secs: t.in_progress_secs,
            retries: self.retries.clone(),
            rollout,
            status: JobStatus::InProgress,
            created_at: now_ns,
            updated_at: now_ns,
            completed_at: None,
            incompatible: 0,
            forced: false,
            released: 0,
            approved: 0,
            abort_reason: None,
            rollout_stopped: false,
        })
    }
}

impl Job {
    pub fn encode(&self) -> Vec<u8> {
        encode_versioned(self, JOB_VERSION)
    }

    pub fn decode(bytes: &[u8]) -> Result<Job, String> {
        decode_versioned(bytes, JOB_VERSION, "job")
    }

    pub fn put(&self) -> Op {
        Op::Put {
            table: OTA_JOBS,
            key: self.job_id.as_bytes().to_vec(),
            value: self.encode(),
        }
    }

    /// The in-progress timer, ns.
    pub fn in_progress_timeout_ns(&self) -> Option<i64> {
        self.in_progress_timeout_secs
            .map(|s| s.saturating_mul(1_000_000_000))
            .or(self
                .in_progress_timeout_minutes
                .map(|m| m.saturating_mul(60_000_000_000)))
    }

    /// Whether the failed `e` is tried again: a new QUEUED execution, number + 1.
    pub fn retries_after(&self, e: &Execution) -> bool {
        if self.status != JobStatus::InProgress {
            return false;
        }
        let allowed: u32 = self
            .retries
            .iter()
            .filter(|r| r.failure_type.covers(e.status))
            .map(|r| r.number_of_retries)
            .sum::<u32>()
            .min(MAX_RETRIES);
        // Attempts of this failure type so far are not told apart from the others': the
        // execution number counts every attempt, as AWS's cap of 10 across both types does.
        u64::from(allowed) >= e.execution_number
    }
}

/// The key of an execution in `ota_executions`: `{job}\0{thing}`.
pub fn execution_key(job_id: &str, thing: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(job_id.len() + thing.len() + 1);
    k.extend_from_slice(job_id.as_bytes());
    k.push(0);
    k.extend_from_slice(thing.as_bytes());
    k
}

pub fn encode_execution(e: &Execution) -> Vec<u8> {
    encode_versioned(e, EXECUTION_VERSION)
}

pub fn decode_execution(bytes: &[u8]) -> Result<Execution, String> {
    decode_versioned(bytes, EXECUTION_VERSION, "job execution")
}

pub fn put_execution(e: &Execution) -> Op {
    Op::Put {
        table: OTA_EXECUTIONS,
        key: execution_key(&e.job_id, &e.thing),
        value: encode_execution(e),
    }
}

fn secs(ns: i64) -> i64 {
    ns.div_euclid(1_000_000_000)
}

/// A thing's pending executions in AWS's order: IN_PROGRESS first, then by queue time.
pub fn pending<'a>(executions: impl IntoIterator<Item = &'a Execution>) -> Vec<&'a Execution> {
    let mut v: Vec<&Execution> = executions
        .into_iter()
        .filter(|e| !e.status.is_terminal())
        .collect();
    v.sort_by(|a, b| {
        (a.status != Status::InProgress, a.queued_at, &a.job_id).cmp(&(
            b.status != Status::InProgress,
            b.queued_at,
            &b.job_id,
        ))
    });
    v
}

/// Which execution is next: (job, execution number).
pub fn front<'a>(executions: impl IntoIterator<Item = &'a Execution>) -> Option<(String, u64)> {
    pending(executions)
        .first()
        .map(|e| (e.job_id.clone(), e.execution_number))
}

/// `JobExecutionSummary`.
pub fn summary_json(e: &Execution) -> Value {
    let mut v = json!({
        "jobId": e.job_id,
        "queuedAt": secs(e.queued_at),
        "lastUpdatedAt": secs(e.last_updated_at),
        "versionNumber": e.version_number,
        "executionNumber": e.execution_number,
    });
    if let Some(s) = e.started_at {
        v["startedAt"] = Value::from(secs(s));
    }
    v
}

/// `JobExecution`, with its document when `document` is given; `now_ns` for the time left.
pub fn execution_json(e: &Execution, document: Option<Value>, now_ns: i64) -> Value {
    let mut v = summary_json(e);
    v["thingName"] = Value::from(e.thing.as_str());
    v["status"] = Value::from(e.status.as_str());
    if !e.status_details.is_empty() {
        v["statusDetails"] = json!(e.status_details);
    }
    let deadline = [e.step_deadline, e.in_progress_deadline]
        .into_iter()
        .flatten()
        .min();
    if let Some(d) = deadline {
        v["approximateSecondsBeforeTimedOut"] = Value::from(secs(d - now_ns).max(0));
    }
    if let Some(d) = document {
        v["jobDocument"] = d;
    }
    v
}

/// Adds `timestamp` and the echoed `clientToken` to a reply.
pub fn stamped(mut v: Value, client_token: Option<&str>, now_ns: i64) -> Value {
    v["timestamp"] = Value::from(secs(now_ns));
    if let Some(t) = client_token {
        v["clientToken"] = Value::from(t);
    }
    v
}

/// GetPendingJobExecutions' answer (both lists always present).
pub fn pending_json<'a>(executions: impl IntoIterator<Item = &'a Execution>) -> Value {
    let p = pending(executions);
    let (running, queued): (Vec<&Execution>, Vec<&Execution>) =
        p.into_iter().partition(|e| e.status == Status::InProgress);
    json!({
        "inProgressJobs": running.into_iter().map(summary_json).collect::<Vec<_>>(),
        "queuedJobs": queued.into_iter().map(summary_json).collect::<Vec<_>>(),
    })
}

/// `notify`'s body: the pending executions by status (at most 10; a status with none is left
/// out), without its timestamp.
pub fn notify_json<'a>(executions: impl IntoIterator<Item = &'a Execution>) -> Value {
    let mut jobs: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
    for e in pending(executions).into_iter().take(10) {
        jobs.entry(e.status.as_str())
            .or_default()
            .push(summary_json(e));
    }
    json!({ "jobs": jobs })
}

/// The request fields of StartNext and Describe (UpdateJobExecution has its own parser).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ask {
    pub client_token: Option<String>,
    pub status_details: Option<BTreeMap<String, String>>,
    pub step_timeout_minutes: Option<i64>,
    pub execution_number: Option<u64>,
    pub include_job_document: bool,
}

/// Parses StartNext's or Describe's request (`{}` for an empty payload).
pub fn parse_ask(payload: &[u8]) -> Result<Ask, Rejection> {
    let m = super::execution::parse_object(payload)?;
    // The same field rules as an update's.
    let u = super::execution::parse_fields(&m)?;
    super::execution::check_step(u.step_timeout_minutes)?;
    Ok(Ask {
        client_token: u.client_token,
        status_details: u.status_details,
        step_timeout_minutes: u.step_timeout_minutes,
        execution_number: u.execution_number,
        // Unlike an update's, Describe's default is to include it.
        include_job_document: m
            .get("includeJobDocument")
            .and_then(Value::as_bool)
            .unwrap_or(true),
    })
}

/// The client token of a request that could not be read otherwise (to echo in its refusal).
pub fn token_of(payload: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(payload)
        .ok()?
        .get("clientToken")?
        .as_str()
        .map(str::to_owned)
}

/// Puts `url(firmware id)` wherever a string value of `doc` is the placeholder (or holds it).
pub fn fill_urls(doc: &Value, url: &dyn Fn() -> String) -> Value {
    match doc {
        Value::String(s) if s.contains(URL_PLACEHOLDER) => {
            Value::String(s.replace(URL_PLACEHOLDER, &url()))
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| fill_urls(v, url)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), fill_urls(v, url)))
                .collect(),
        ),
        v => v.clone(),
    }
}

#[cfg(test)]
mod tests;
