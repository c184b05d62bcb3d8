use super::*;
use proptest::prelude::*;

const S: i64 = 1_000_000_000;

#[test]
fn topics_parse_by_level_count() {
    let r = Request::parse("$aws/things/t1/jobs/get").unwrap();
    assert_eq!((r.thing, &r.op), ("t1", &JobOp::GetPending));
    assert_eq!(r.reply_topic(true), "$aws/things/t1/jobs/get/accepted");
    let r = Request::parse("$aws/things/t1/jobs/start-next").unwrap();
    assert_eq!(r.op, JobOp::StartNext);
    // A job may be called get or start-next: two levels are a describe or an update.
    let r = Request::parse("$aws/things/t1/jobs/get/get").unwrap();
    assert_eq!(r.op, JobOp::Describe(Some("get".into())));
    let r = Request::parse("$aws/things/t1/jobs/start-next/update").unwrap();
    assert_eq!(r.op, JobOp::Update("start-next".into()));
    let r = Request::parse("$aws/things/t1/jobs/$next/get").unwrap();
    assert_eq!(r.op, JobOp::Describe(None));
    assert_eq!(
        r.reply_topic(false),
        "$aws/things/t1/jobs/$next/get/rejected"
    );
    for t in [
        "$aws/things/t1/jobs",
        "$aws/things/t1/jobs/j1",
        "$aws/things/t1/jobs/j1/delete",
        "$aws/things/t1/jobs/bad.id/get",
        "$aws/things/t1/jobs/a/b/c",
    ] {
        assert_eq!(Request::parse(t).unwrap().op, JobOp::Invalid, "{t}");
    }
    for t in [
        "$aws/things/t1/jobs/get/accepted",
        "$aws/things/t1/jobs/j1/update/rejected",
        "$aws/things/t1/jobs/notify",
        "$aws/things/t1/jobs/notify-next",
        "$aws/things/t1/jobsx/get",
        "$aws/things/t1/shadow/get",
        "$aws/things//jobs/get",
        "devices/t1/jobs/get",
    ] {
        assert!(Request::parse(t).is_none(), "{t}");
    }
    assert!(is_server_topic("$aws/things/t1/jobs/notify-next"));
    assert!(is_server_topic("$aws/things/t1/jobs/$next/get/accepted"));
    assert!(!is_server_topic("$aws/things/t1/jobs/get"));
    assert!(!is_server_topic("$aws/things/t1/shadow/get/accepted"));
}

fn exec(job: &str, status: Status, queued: i64) -> Execution {
    let mut e = Execution::queued(job, "t1", 1, queued * S);
    e.status = status;
    if status != Status::Queued {
        e.started_at = Some(queued * S + S);
    }
    e
}

#[test]
fn pending_puts_in_progress_first_then_queue_order() {
    let v = [
        exec("a", Status::Queued, 10),
        exec("b", Status::Succeeded, 1),
        exec("c", Status::InProgress, 20),
        exec("d", Status::Queued, 5),
    ];
    let ids: Vec<&str> = pending(&v).iter().map(|e| e.job_id.as_str()).collect();
    assert_eq!(ids, ["c", "d", "a"]);
    assert_eq!(front(&v), Some(("c".into(), 1)));
    let p = pending_json(&v);
    assert_eq!(p["inProgressJobs"][0]["jobId"], "c");
    assert_eq!(p["inProgressJobs"][0]["startedAt"], 21);
    assert_eq!(p["queuedJobs"].as_array().unwrap().len(), 2);
    assert_eq!(p["queuedJobs"][0]["queuedAt"], 5);
    let n = notify_json(&v);
    assert_eq!(n["jobs"]["QUEUED"][1]["jobId"], "a");
    assert_eq!(n["jobs"]["IN_PROGRESS"][0]["jobId"], "c");
    // Nothing pending: both lists present and empty; notify's jobs empty.
    let none = [exec("b", Status::Failed, 1)];
    assert_eq!(
        pending_json(&none),
        json!({"inProgressJobs": [], "queuedJobs": []})
    );
    assert_eq!(notify_json(&none), json!({"jobs": {}}));
    assert_eq!(front(&none), None);
}

#[test]
fn documents_use_epoch_seconds_and_leave_out_what_is_not_there() {
    let e = exec("a", Status::Queued, 1_700_000_000);
    let v = execution_json(&e, Some(json!({"x": 1})), 1_700_000_005 * S);
    assert_eq!(v["queuedAt"], 1_700_000_000);
    assert_eq!(v["versionNumber"], 1);
    assert_eq!(v["jobDocument"], json!({"x": 1}));
    assert!(v.get("startedAt").is_none() && v.get("statusDetails").is_none());
    let s = stamped(json!({}), Some("tok"), 1_700_000_009 * S + 999);
    assert_eq!(s, json!({"timestamp": 1_700_000_009, "clientToken": "tok"}));
}

fn spec(v: Value) -> Result<Job, RegistryError> {
    let s: JobSpec = serde_json::from_value(v).map_err(|e| RegistryError::bad(e.to_string()))?;
    s.job(None, "generated".into(), 5)
}

#[test]
fn job_specs_are_checked() {
    let j = spec(json!({"document": {"a": 1}, "targets": {"devices": ["t1"]}})).unwrap();
    assert_eq!(j.job_id, "generated");
    assert_eq!(j.document, json!({"a": 1}));
    assert_eq!(j.target_selection, Selection::Snapshot);
    for bad in [
        json!({"document": {"a": 1}, "targets": {}}),
        json!({"targets": {"devices": ["t1"]}}),
        json!({"document": [1], "targets": {"devices": ["t1"]}}),
        json!({"job_id": "no spaces", "document": {}, "targets": {"devices": ["t1"]}}),
        json!({"document": {}, "targets": {"devices": ["t1"]}, "timeouts": {"in_progress_minutes": 0}}),
        json!({"document": {}, "targets": {"devices": ["t1"]},
               "timeouts": {"in_progress_minutes": 1, "in_progress_secs": 5}}),
        json!({"document": {}, "targets": {"devices": ["t1"]}, "rollout": {"max_per_minute": 0}}),
        json!({"document": {}, "targets": {"devices": ["t1"]}, "rollout": {"rate": 5}}),
        json!({"document": {}, "targets": {"devices": ["t1"]},
               "rollout": {"schedule": {"start_at": "tomorrow"}}}),
        json!({"document": {}, "targets": {"devices": ["t1"]},
               "retries": [{"failure_type": "FAILED", "number_of_retries": 11}]}),
        json!({"document": {"big": "x".repeat(MAX_DOCUMENT)}, "targets": {"devices": ["t1"]}}),
    ] {
        assert!(spec(bad.clone()).is_err(), "{bad}");
    }
    let j = spec(json!({"document": {}, "targets": {"devices": ["t1"]},
        "timeouts": {"in_progress_secs": 3},
        "rollout": {"max_per_minute": 60, "waves": [{"percent": 100}],
                    "schedule": {"start_at": "2026-12-08T02:00:00Z"},
                    "abort": [{"failure_type": "FAILED", "min_executed": 1, "threshold_percent": 50}]},
        "abort": [{"failure_type": "ALL", "min_executed": 10, "threshold_percent": 20}]}))
    .unwrap();
    assert_eq!(j.in_progress_timeout_ns(), Some(3 * S));
    assert_eq!(j.rollout.rate.as_ref().unwrap().max_per_minute, Some(60));
    assert_eq!(
        j.rollout.abort.len(),
        2,
        "top-level and rollout criteria both hold"
    );
    assert_eq!(
        j.rollout.schedule.start_at,
        crate::rfc3339_ns("2026-12-08T02:00:00Z")
    );
    // Unknown fields are refused (a misspelt option would otherwise be silently ignored).
    assert!(serde_json::from_value::<JobSpec>(json!({"targets": {}, "bogus": 1})).is_err());
}

#[test]
fn firmware_jobs_carry_what_a_device_checks() {
    let fw = Firmware {
        id: "fw-0011223344556677".into(),
        name: "app".into(),
        version: "1.2.0".into(),
        kind: super::super::firmware::Kind::Firmware,
        device_type: None,
        hardware_revision: None,
        size: 42,
        sha256: "ab".repeat(32),
        signature: None,
        release_notes: None,
        created_at: 0,
        deleted_at: None,
    };
    let s: JobSpec = serde_json::from_value(
        json!({"firmware": fw.id, "document": {"reboot": true}, "targets": {"groups": ["g"]}}),
    )
    .unwrap();
    let j = s.job(Some(&fw), "j".into(), 0).unwrap();
    assert_eq!(j.document["firmware"]["sha256"], fw.sha256);
    assert_eq!(j.document["firmware"]["size"], 42);
    assert_eq!(j.document["reboot"], true);
    let filled = fill_urls(&j.document, &|| "https://m/x?token=1".into());
    assert_eq!(filled["firmware"]["url"], "https://m/x?token=1");
    assert_eq!(j.document["firmware"]["url"], URL_PLACEHOLDER);
}

#[test]
fn retries_count_every_attempt_and_never_rejections() {
    let mut j = spec(json!({"document": {}, "targets": {"devices": ["t1"]},
        "retries": [{"failure_type": "FAILED", "number_of_retries": 2}]}))
    .unwrap();
    let mut e = exec("a", Status::Failed, 1);
    assert!(j.retries_after(&e));
    e.execution_number = 2;
    assert!(j.retries_after(&e));
    e.execution_number = 3;
    assert!(!j.retries_after(&e));
    e.execution_number = 1;
    e.status = Status::TimedOut;
    assert!(!j.retries_after(&e));
    e.status = Status::Rejected;
    assert!(!j.retries_after(&e));
    j.retries = vec![RetryCriterion {
        failure_type: FailureType::All,
        number_of_retries: 1,
    }];
    e.status = Status::TimedOut;
    assert!(j.retries_after(&e));
    j.status = JobStatus::Canceled;
    assert!(!j.retries_after(&e));
}

#[test]
fn ask_defaults_to_the_document_and_reads_lenient_numbers() {
    let a = parse_ask(b"").unwrap();
    assert!(a.include_job_document && a.client_token.is_none());
    let a = parse_ask(br#"{"clientToken":"t","executionNumber":"2","includeJobDocument":false,"stepTimeoutInMinutes":5,"statusDetails":{"k":"v"}}"#).unwrap();
    assert_eq!(a.client_token.as_deref(), Some("t"));
    assert_eq!(a.execution_number, Some(2));
    assert!(!a.include_job_document);
    assert_eq!(a.step_timeout_minutes, Some(5));
    assert_eq!(a.status_details.unwrap()["k"], "v");
    assert_eq!(parse_ask(b"[1]").unwrap_err().code, "InvalidJson");
    assert_eq!(
        parse_ask(br#"{"stepTimeoutInMinutes":0}"#)
            .unwrap_err()
            .code,
        "InvalidRequest"
    );
    assert_eq!(
        token_of(br#"{"clientToken":"x","status":5}"#).as_deref(),
        Some("x")
    );
}

#[test]
fn records_round_trip() {
    let j = spec(
        json!({"document": {"a": [1, 2]}, "targets": {"where": "device_type = 'x'"},
        "target_selection": "continuous"}),
    )
    .unwrap();
    assert_eq!(Job::decode(&j.encode()).unwrap(), j);
    let e = exec("a", Status::InProgress, 3);
    assert_eq!(decode_execution(&encode_execution(&e)).unwrap(), e);
    assert_eq!(execution_key("j", "t"), b"j\0t");
}

proptest! {
    /// Whatever the statuses and times, the pending list holds exactly the non-terminal
    /// executions, IN_PROGRESS ones before QUEUED ones, and the front is its first.
    #[test]
    fn pending_is_ordered(v in proptest::collection::vec((0usize..8, 0i64..100), 0..20)) {
        let all: Vec<Execution> = v.iter().enumerate()
            .map(|(i, (s, t))| exec(&format!("j{i}"), super::super::execution::ALL[*s], *t))
            .collect();
        let p = pending(&all);
        prop_assert_eq!(p.len(), all.iter().filter(|e| !e.status.is_terminal()).count());
        for w in p.windows(2) {
            let key = |e: &Execution| (e.status != Status::InProgress, e.queued_at);
            prop_assert!(key(w[0]) <= key(w[1]));
        }
        prop_assert_eq!(front(&all), p.first().map(|e| (e.job_id.clone(), 1)));
        let n = notify_json(&all);
        let listed: usize = n["jobs"].as_object().unwrap().values()
            .map(|l| l.as_array().unwrap().len()).sum();
        prop_assert_eq!(listed, p.len().min(10));
    }
}
