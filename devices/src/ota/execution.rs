//! A job execution — one job on one device — and the rules a device's updates follow, sans IO,
//! as AWS IoT Jobs has them (docs/plans/aws-jobs-contract.md §5–§6, decisions §9.5–§9.8):
//!
//! - States QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, TIMED_OUT, REJECTED, REMOVED, CANCELED; the
//!   device may set IN_PROGRESS, SUCCEEDED, FAILED and REJECTED (another status is
//!   `InvalidRequest`); nothing leaves a terminal state (`InvalidStateTransition`).
//! - `versionNumber` starts at 1 and grows by one with every accepted device update, start-next
//!   included; a start-next of an execution already IN_PROGRESS changes nothing.
//! - `expectedVersion` that is not the current version is `VersionMismatch`, with the current
//!   state in the error.
//! - `statusDetails` given replaces the old ones (absent: unchanged); at most
//!   [`MAX_STATUS_DETAILS`] entries, keys and values as AWS limits them.
//! - Timers: the in-progress timer starts at IN_PROGRESS and does not move; a step timeout
//!   (minutes) replaces the previous step timer, never past the in-progress deadline, and -1
//!   cancels it. Either passing while IN_PROGRESS makes it TIMED_OUT.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// At most this many `statusDetails` entries (AWS's limit is on bytes; Mast also counts).
pub const MAX_STATUS_DETAILS: usize = 10;
/// Longest `statusDetails` key and value (AWS: 128 and 1,024 characters).
pub const MAX_DETAIL_KEY: usize = 128;
pub const MAX_DETAIL_VALUE: usize = 1024;
/// The longest step timeout, minutes (AWS: 10,080, a week).
pub const MAX_STEP_MINUTES: i64 = 10_080;

const NS_PER_MIN: i64 = 60_000_000_000;

/// An execution's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    TimedOut,
    Rejected,
    Removed,
    Canceled,
}

pub const ALL: [Status; 8] = [
    Status::Queued,
    Status::InProgress,
    Status::Succeeded,
    Status::Failed,
    Status::TimedOut,
    Status::Rejected,
    Status::Removed,
    Status::Canceled,
];

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "QUEUED",
            Status::InProgress => "IN_PROGRESS",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED_OUT",
            Status::Rejected => "REJECTED",
            Status::Removed => "REMOVED",
            Status::Canceled => "CANCELED",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Queued | Status::InProgress)
    }

    /// Whether a device may report it.
    pub fn device_settable(self) -> bool {
        matches!(
            self,
            Status::InProgress | Status::Succeeded | Status::Failed | Status::Rejected
        )
    }
}

/// A refusal, as the `/rejected` document says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
    /// The current state, for `InvalidStateTransition` and `VersionMismatch`.
    pub state: Option<Box<Execution>>,
}

impl Rejection {
    fn new(code: &'static str, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
            state: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Rejection {
        Rejection::new("InvalidRequest", message)
    }

    /// The error document, with `clientToken` echoed and `timestamp` in epoch seconds.
    pub fn document(&self, client_token: Option<&str>, now_ns: i64) -> Value {
        let mut v = json!({
            "code": self.code,
            "message": self.message,
            "timestamp": now_ns.div_euclid(1_000_000_000),
        });
        if let Some(t) = client_token {
            v["clientToken"] = Value::from(t);
        }
        if let Some(s) = &self.state {
            v["executionState"] = s.state_json();
        }
        v
    }
}

/// One job on one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub job_id: String,
    pub thing: String,
    pub status: Status,
    #[serde(default)]
    pub status_details: BTreeMap<String, String>,
    pub version_number: u64,
    pub execution_number: u64,
    /// ns since the epoch.
    pub queued_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    pub last_updated_at: i64,
    /// When the in-progress timer ends (set at IN_PROGRESS, never moved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress_deadline: Option<i64>,
    /// When the current step timer ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_deadline: Option<i64>,
}

/// A device's UpdateJobExecution (or the part of StartNext that matters here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub status: Option<Status>,
    pub status_details: Option<BTreeMap<String, String>>,
    pub expected_version: Option<u64>,
    pub execution_number: Option<u64>,
    pub step_timeout_minutes: Option<i64>,
    pub include_job_execution_state: bool,
    pub include_job_document: bool,
    pub client_token: Option<String>,
}

/// A number, or a string holding one (AWS's own examples quote `expectedVersion`).
fn lenient_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn details(v: &Value) -> Result<BTreeMap<String, String>, Rejection> {
    let Value::Object(m) = v else {
        return Err(Rejection::invalid_request(
            "statusDetails must be an object of strings",
        ));
    };
    if m.len() > MAX_STATUS_DETAILS {
        return Err(Rejection::invalid_request(format!(
            "statusDetails has at most {MAX_STATUS_DETAILS} entries"
        )));
    }
    let mut out = BTreeMap::new();
    for (k, v) in m {
        let Value::String(s) = v else {
            return Err(Rejection::invalid_request(format!(
                "statusDetails.{k} must be a string"
            )));
        };
        if k.is_empty()
            || k.chars().count() > MAX_DETAIL_KEY
            || s.chars().count() > MAX_DETAIL_VALUE
        {
            return Err(Rejection::invalid_request(format!(
                "statusDetails keys have 1 to {MAX_DETAIL_KEY} characters, values at most {MAX_DETAIL_VALUE}"
            )));
        }
        out.insert(k.clone(), s.clone());
    }
    Ok(out)
}

/// A request document: `{}` for an empty payload; `InvalidJson` for anything not an object.
pub fn parse_object(payload: &[u8]) -> Result<Map<String, Value>, Rejection> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(payload) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Rejection::new(
            "InvalidJson",
            "the payload is not a JSON object",
        )),
    }
}

/// UpdateJobExecution's request.
pub fn parse_update(payload: &[u8]) -> Result<Update, Rejection> {
    let m = parse_object(payload)?;
    let mut u = parse_fields(&m)?;
    u.status = match m.get("status") {
        None => return Err(Rejection::invalid_request("status is required")),
        Some(Value::String(s)) => Some(Status::parse(s).ok_or_else(|| {
            Rejection::invalid_request(format!("status {s:?} is not a job execution status"))
        })?),
        Some(_) => return Err(Rejection::invalid_request("status must be a string")),
    };
    Ok(u)
}

/// The fields every request of an execution may carry, `status` aside (StartNext and
/// Describe read them too).
pub fn parse_fields(m: &Map<String, Value>) -> Result<Update, Rejection> {
    let mut u = Update {
        client_token: m
            .get("clientToken")
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..Update::default()
    };
    if let Some(d) = m.get("statusDetails").filter(|v| !v.is_null()) {
        u.status_details = Some(details(d)?);
    }
    let num = |k: &str| -> Result<Option<i64>, Rejection> {
        match m.get(k).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(v) => lenient_i64(v)
                .map(Some)
                .ok_or_else(|| Rejection::invalid_request(format!("{k} must be a number"))),
        }
    };
    u.expected_version = num("expectedVersion")?.map(|n| n.max(0) as u64);
    u.execution_number = num("executionNumber")?.map(|n| n.max(0) as u64);
    u.step_timeout_minutes = num("stepTimeoutInMinutes")?;
    u.include_job_execution_state = m
        .get("includeJobExecutionState")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    u.include_job_document = m
        .get("includeJobDocument")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(u)
}

pub(crate) fn check_step(minutes: Option<i64>) -> Result<(), Rejection> {
    match minutes {
        None | Some(-1) => Ok(()),
        Some(m) if (1..=MAX_STEP_MINUTES).contains(&m) => Ok(()),
        Some(_) => Err(Rejection::invalid_request(format!(
            "stepTimeoutInMinutes is 1 to {MAX_STEP_MINUTES}, or -1 to cancel the step timer"
        ))),
    }
}

impl Execution {
    /// A new execution of `job_id` on `thing`, queued at `now_ns`.
    pub fn queued(job_id: &str, thing: &str, execution_number: u64, now_ns: i64) -> Execution {
        Execution {
            job_id: job_id.to_owned(),
            thing: thing.to_owned(),
            status: Status::Queued,
            status_details: BTreeMap::new(),
            version_number: 1,
            execution_number,
            queued_at: now_ns,
            started_at: None,
            last_updated_at: now_ns,
            in_progress_deadline: None,
            step_deadline: None,
        }
    }

    /// The step timer after a request for `minutes` at `now` (capped by the in-progress
    /// deadline; -1 cancels; absent keeps it).
    fn step(
        &self,
        minutes: Option<i64>,
        now: i64,
        in_progress_deadline: Option<i64>,
    ) -> Option<i64> {
        let wanted = match minutes {
            None => self.step_deadline,
            Some(-1) => None,
            Some(m) => Some(now.saturating_add(m.saturating_mul(NS_PER_MIN))),
        };
        match (wanted, in_progress_deadline) {
            (Some(s), Some(d)) => Some(s.min(d)),
            (w, _) => w,
        }
    }

    /// The execution after the device's `u` at `now_ns`; `in_progress_timeout_ns` is the job's
    /// in-progress timer, started when the execution goes IN_PROGRESS.
    pub fn apply(
        &self,
        u: &Update,
        now_ns: i64,
        in_progress_timeout_ns: Option<i64>,
    ) -> Result<Execution, Rejection> {
        let Some(status) = u.status else {
            return Err(Rejection::invalid_request("status is required"));
        };
        if !status.device_settable() {
            return Err(Rejection::invalid_request(format!(
                "a device reports IN_PROGRESS, SUCCEEDED, FAILED or REJECTED, not {}",
                status.as_str()
            )));
        }
        check_step(u.step_timeout_minutes)?;
        if let Some(n) = u.execution_number
            && n != self.execution_number
        {
            return Err(Rejection::new(
                "ResourceNotFound",
                format!(
                    "no execution number {n} of job {} on this thing",
                    self.job_id
                ),
            ));
        }
        if let Some(v) = u.expected_version
            && v != self.version_number
        {
            return Err(Rejection {
                state: Some(Box::new(self.clone())),
                ..Rejection::new(
                    "VersionMismatch",
                    format!(
                        "expected version {v}, the execution is at {}",
                        self.version_number
                    ),
                )
            });
        }
        if self.status.is_terminal() {
            return Err(Rejection {
                state: Some(Box::new(self.clone())),
                ..Rejection::new(
                    "InvalidStateTransition",
                    format!(
                        "the execution is {}: a terminal state does not change",
                        self.status.as_str()
                    ),
                )
            });
        }
        let mut next = self.clone();
        next.status = status;
        if let Some(d) = &u.status_details {
            next.status_details.clone_from(d);
        }
        next.version_number += 1;
        next.last_updated_at = now_ns;
        if self.status == Status::Queued && status == Status::InProgress {
            next.started_at = Some(now_ns);
            next.in_progress_deadline = in_progress_timeout_ns.map(|t| now_ns.saturating_add(t));
        }
        if status.is_terminal() {
            next.in_progress_deadline = None;
            next.step_deadline = None;
        } else {
            next.step_deadline =
                next.step(u.step_timeout_minutes, now_ns, next.in_progress_deadline);
        }
        Ok(next)
    }

    /// StartNextPendingJobExecution on this execution: QUEUED → IN_PROGRESS (version + 1, the
    /// timers started); one already IN_PROGRESS is returned as it is.
    pub fn start(
        &self,
        status_details: Option<BTreeMap<String, String>>,
        step_timeout_minutes: Option<i64>,
        now_ns: i64,
        in_progress_timeout_ns: Option<i64>,
    ) -> Result<Execution, Rejection> {
        if self.status == Status::InProgress {
            return Ok(self.clone());
        }
        let u = Update {
            status: Some(Status::InProgress),
            status_details,
            step_timeout_minutes,
            ..Update::default()
        };
        self.apply(&u, now_ns, in_progress_timeout_ns)
    }

    /// TIMED_OUT, if one of its timers has passed at `now_ns`.
    pub fn timed_out(&self, now_ns: i64) -> Option<Execution> {
        if self.status != Status::InProgress {
            return None;
        }
        let due = [self.step_deadline, self.in_progress_deadline]
            .into_iter()
            .flatten()
            .any(|d| now_ns >= d);
        due.then(|| Execution {
            status: Status::TimedOut,
            last_updated_at: now_ns,
            step_deadline: None,
            in_progress_deadline: None,
            ..self.clone()
        })
    }

    /// Operators and rollouts: CANCELED, or REMOVED (`removed`: no longer a target). An
    /// IN_PROGRESS execution only with `force`; a terminal one stays.
    pub fn canceled(&self, removed: bool, force: bool, now_ns: i64) -> Option<Execution> {
        let allowed = match self.status {
            Status::Queued => true,
            Status::InProgress => force,
            _ => false,
        };
        allowed.then(|| Execution {
            status: if removed {
                Status::Removed
            } else {
                Status::Canceled
            },
            last_updated_at: now_ns,
            step_deadline: None,
            in_progress_deadline: None,
            ..self.clone()
        })
    }

    /// `executionState` of the replies: `{status, statusDetails, versionNumber}`.
    pub fn state_json(&self) -> Value {
        json!({
            "status": self.status.as_str(),
            "statusDetails": self.status_details,
            "versionNumber": self.version_number,
        })
    }
}

#[cfg(test)]
mod tests;
