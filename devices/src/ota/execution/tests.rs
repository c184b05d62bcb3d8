use proptest::prelude::*;

use super::*;

const MIN: i64 = NS_PER_MIN;

fn update(status: Status) -> Update {
    Update {
        status: Some(status),
        ..Update::default()
    }
}

#[test]
fn a_device_runs_an_execution_through_to_success() {
    let q = Execution::queued("job-1", "dev-1", 1, 0);
    assert_eq!(
        (q.status, q.version_number, q.execution_number),
        (Status::Queued, 1, 1)
    );
    let s = q.start(None, Some(5), 10 * MIN, Some(20 * MIN)).unwrap();
    assert_eq!((s.status, s.version_number), (Status::InProgress, 2));
    assert_eq!(s.started_at, Some(10 * MIN));
    assert_eq!(s.in_progress_deadline, Some(30 * MIN));
    assert_eq!(s.step_deadline, Some(15 * MIN));
    assert_eq!(
        s.start(None, None, 11 * MIN, Some(20 * MIN)).unwrap(),
        s,
        "start-next of one in progress changes nothing"
    );
    let mut p = update(Status::InProgress);
    p.status_details = Some([("step".to_owned(), "download".to_owned())].into());
    p.expected_version = Some(2);
    let d = s.apply(&p, 12 * MIN, Some(20 * MIN)).unwrap();
    assert_eq!(d.version_number, 3);
    assert_eq!(d.status_details["step"], "download");
    assert_eq!(
        d.step_deadline,
        Some(15 * MIN),
        "no new step timeout: unchanged"
    );
    let done = d
        .apply(&update(Status::Succeeded), 13 * MIN, Some(20 * MIN))
        .unwrap();
    assert_eq!((done.status, done.version_number), (Status::Succeeded, 4));
    assert_eq!(
        done.status_details["step"], "download",
        "absent details: kept"
    );
    assert_eq!(
        (done.step_deadline, done.in_progress_deadline),
        (None, None)
    );
    let e = done
        .apply(&update(Status::InProgress), 14 * MIN, None)
        .unwrap_err();
    assert_eq!(e.code, "InvalidStateTransition");
    assert_eq!(e.state.as_ref().unwrap().status, Status::Succeeded);
    let doc = e.document(Some("tok"), 14 * MIN);
    assert_eq!(doc["executionState"]["status"], "SUCCEEDED");
    assert_eq!(doc["clientToken"], "tok");
    assert_eq!(doc["timestamp"], 14 * 60, "epoch seconds");
}

#[test]
fn the_step_timer_follows_aws_worked_example() {
    // In-progress timer to 12:20 (started 12:00, 20 min); steps of 7 at 12:05 → 12:12,
    // 5 at 12:10 → 12:15, 9 at 12:13 → still 12:20.
    let at = |m: i64| m * MIN;
    let s = Execution::queued("j", "d", 1, 0)
        .start(None, None, at(0), Some(at(20)))
        .unwrap();
    let step = |e: &Execution, minutes: i64, now: i64| {
        let u = Update {
            step_timeout_minutes: Some(minutes),
            ..update(Status::InProgress)
        };
        e.apply(&u, now, Some(at(20))).unwrap()
    };
    let a = step(&s, 7, at(5));
    assert_eq!(a.step_deadline, Some(at(12)));
    let b = step(&a, 5, at(10));
    assert_eq!(b.step_deadline, Some(at(15)));
    let c = step(&b, 9, at(13));
    assert_eq!(c.step_deadline, Some(at(20)));
    let cancel = step(&c, -1, at(14));
    assert_eq!(cancel.step_deadline, None);
    assert_eq!(
        cancel.in_progress_deadline,
        Some(at(20)),
        "the in-progress timer stays"
    );
    assert_eq!(c.timed_out(at(19)), None);
    let t = c.timed_out(at(20)).unwrap();
    assert_eq!(t.status, Status::TimedOut);
    assert_eq!(t.timed_out(at(30)), None, "once");
    let bad = Update {
        step_timeout_minutes: Some(0),
        ..update(Status::InProgress)
    };
    assert_eq!(
        c.apply(&bad, at(14), None).unwrap_err().code,
        "InvalidRequest"
    );
}

#[test]
fn refusals_name_their_aws_code() {
    let q = Execution::queued("j", "d", 2, 0);
    for s in [
        Status::Queued,
        Status::Canceled,
        Status::TimedOut,
        Status::Removed,
    ] {
        assert_eq!(
            q.apply(&update(s), 1, None).unwrap_err().code,
            "InvalidRequest"
        );
    }
    let stale = Update {
        expected_version: Some(7),
        ..update(Status::InProgress)
    };
    let e = q.apply(&stale, 1, None).unwrap_err();
    assert_eq!(e.code, "VersionMismatch");
    assert_eq!(e.state.unwrap().version_number, 1);
    let other = Update {
        execution_number: Some(1),
        ..update(Status::InProgress)
    };
    assert_eq!(
        q.apply(&other, 1, None).unwrap_err().code,
        "ResourceNotFound"
    );
    // QUEUED may be rejected by the device outright.
    assert_eq!(
        q.apply(&update(Status::Rejected), 1, None).unwrap().status,
        Status::Rejected
    );
    // Operators: a queued one cancels; an in-progress one only by force.
    let s = q.start(None, None, 1, None).unwrap();
    assert!(s.canceled(false, false, 2).is_none());
    assert_eq!(s.canceled(false, true, 2).unwrap().status, Status::Canceled);
    assert_eq!(q.canceled(true, false, 2).unwrap().status, Status::Removed);
}

#[test]
fn update_documents_parse_as_devices_send_them() {
    let u = parse_update(
        br#"{"status": "IN_PROGRESS", "statusDetails": {"step": "flash"}, "expectedVersion": "3",
             "stepTimeoutInMinutes": 10, "clientToken": "t1", "includeJobExecutionState": true}"#,
    )
    .unwrap();
    assert_eq!(u.status, Some(Status::InProgress));
    assert_eq!(
        u.expected_version,
        Some(3),
        "a quoted number, as AWS's examples send it"
    );
    assert_eq!(u.step_timeout_minutes, Some(10));
    assert_eq!(u.client_token.as_deref(), Some("t1"));
    assert!(u.include_job_execution_state && !u.include_job_document);
    assert_eq!(parse_update(b"{").unwrap_err().code, "InvalidJson");
    assert_eq!(parse_update(b"{}").unwrap_err().code, "InvalidRequest");
    assert_eq!(
        parse_update(br#"{"status": "DONE"}"#).unwrap_err().code,
        "InvalidRequest"
    );
    assert_eq!(
        parse_update(br#"{"status": "FAILED", "statusDetails": {"a": 1}}"#)
            .unwrap_err()
            .code,
        "InvalidRequest"
    );
    let many: String = (0..=MAX_STATUS_DETAILS)
        .map(|i| format!(r#""k{i}": "v""#))
        .collect::<Vec<_>>()
        .join(",");
    let doc = format!(r#"{{"status": "FAILED", "statusDetails": {{{many}}}}}"#);
    assert_eq!(
        parse_update(doc.as_bytes()).unwrap_err().code,
        "InvalidRequest"
    );
    assert_eq!(parse_object(b"").unwrap(), Map::new());
}

fn status() -> impl Strategy<Value = Status> {
    prop::sample::select(ALL.to_vec())
}

proptest! {
    /// Whatever a device sends, in any order: a terminal state never changes, an accepted
    /// update adds exactly one to the version, a refused one changes nothing, and the step
    /// deadline never passes the in-progress deadline.
    #[test]
    fn device_updates_keep_the_rules(
        steps in prop::collection::vec((status(), prop::option::of(-1i64..20), any::<bool>()), 1..20),
        timeout in prop::option::of(1i64..60),
    ) {
        let mut e = Execution::queued("j", "d", 1, 0);
        let mut now = 0;
        for (s, step, stale) in steps {
            now += MIN;
            let u = Update {
                status: Some(s),
                step_timeout_minutes: step,
                expected_version: stale.then_some(e.version_number + 1),
                ..Update::default()
            };
            match e.apply(&u, now, timeout.map(|t| t * MIN)) {
                Ok(next) => {
                    prop_assert!(!e.status.is_terminal());
                    prop_assert!(s.device_settable());
                    prop_assert!(!stale);
                    prop_assert_eq!(next.version_number, e.version_number + 1);
                    prop_assert_eq!(next.status, s);
                    if let (Some(a), Some(b)) = (next.step_deadline, next.in_progress_deadline) {
                        prop_assert!(a <= b);
                    }
                    e = next;
                }
                Err(r) => {
                    prop_assert!(["InvalidRequest", "InvalidStateTransition", "VersionMismatch"].contains(&r.code));
                }
            }
        }
    }

    /// Any bytes parse or are refused with an AWS code, never a panic.
    #[test]
    fn any_update_document(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Err(r) = parse_update(&bytes) {
            prop_assert!(["InvalidJson", "InvalidRequest"].contains(&r.code));
        }
    }
}
