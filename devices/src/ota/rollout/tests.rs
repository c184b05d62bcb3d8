use super::*;
use crate::rfc3339_ns as parse_rfc3339;
use proptest::prelude::*;
use serde_json::json;

fn rules(v: serde_json::Value) -> Rules {
    let r: Rules = serde_json::from_value(v).unwrap();
    r.check().unwrap();
    r
}

fn progress(total: u64, released: u64) -> Progress {
    Progress {
        total,
        released,
        ..Progress::default()
    }
}

const T0: i64 = 1_765_000_000 * NS_PER_SEC;

#[test]
fn a_constant_rate_is_spread_over_the_minute() {
    let r = rules(json!({"rate": {"max_per_minute": 120}}));
    let mut p = progress(1000, 0);
    assert_eq!(r.decide(&p, T0), Decision::Release(2));
    p.last_second = 2;
    assert!(matches!(
        r.decide(&p, T0),
        Decision::Wait("the rollout rate", Some(_))
    ));
    p.last_second = 0;
    p.last_minute = 119;
    assert_eq!(r.decide(&p, T0), Decision::Release(1));
    p.last_minute = 120;
    assert!(matches!(r.decide(&p, T0), Decision::Wait(..)));
    // No rate: everything at once.
    assert_eq!(
        rules(json!({})).decide(&progress(1000, 10), T0),
        Decision::Release(990)
    );
    assert_eq!(
        rules(json!({})).decide(&progress(10, 10), T0),
        Decision::Done
    );
}

#[test]
fn an_exponential_rate_grows_with_notified_or_succeeded_devices_up_to_its_cap() {
    let r = rules(json!({"rate": {"max_per_minute": 500,
        "exponential": {"base_per_minute": 10, "increment_factor": 2.0, "notified": 50}}}));
    assert_eq!(r.per_minute(&progress(10_000, 0)), Some(10));
    assert_eq!(r.per_minute(&progress(10_000, 49)), Some(10));
    assert_eq!(r.per_minute(&progress(10_000, 50)), Some(20));
    assert_eq!(r.per_minute(&progress(10_000, 150)), Some(80));
    assert_eq!(r.per_minute(&progress(10_000, 5000)), Some(500));
    let s = rules(
        json!({"rate": {"exponential": {"base_per_minute": 10, "increment_factor": 1.5, "succeeded": 10}}}),
    );
    let mut p = progress(10_000, 100);
    assert_eq!(s.per_minute(&p), Some(10));
    p.succeeded = 20;
    assert_eq!(s.per_minute(&p), Some(22));
    p.succeeded = 10_000;
    assert_eq!(s.per_minute(&p), Some(u64::from(DEFAULT_MAX_PER_MINUTE)));
}

#[test]
fn waves_wait_for_their_success_threshold_and_approval() {
    let r = rules(json!({"waves": [
        {"percent": 10, "success_threshold_percent": 90},
        {"percent": 50, "success_threshold_percent": 80, "approval": true},
        {"percent": 100}]}));
    let mut p = progress(100, 0);
    assert_eq!(r.decide(&p, T0), Decision::Release(10));
    p.released = 10;
    p.succeeded = 8;
    assert_eq!(
        r.decide(&p, T0),
        Decision::Wait("the wave's success threshold", None)
    );
    p.succeeded = 9;
    assert_eq!(r.decide(&p, T0), Decision::Release(40));
    p.released = 50;
    p.succeeded = 40;
    assert_eq!(r.decide(&p, T0), Decision::AwaitApproval(2));
    p.approved = 2;
    assert_eq!(r.decide(&p, T0), Decision::Release(50));
    // Small fleets round up: one device is 10% of 3.
    let mut q = progress(3, 0);
    assert_eq!(r.decide(&q, T0), Decision::Release(1));
    q.released = 1;
    q.succeeded = 1;
    assert_eq!(r.decide(&q, T0), Decision::Release(1));
}

#[test]
fn abort_criteria_need_their_minimum_and_threshold() {
    let r = rules(
        json!({"abort": [{"failure_type": "FAILED", "min_executed": 10, "threshold_percent": 20}]}),
    );
    let mut p = progress(100, 20);
    p.executed = 9;
    p.failed = 9;
    assert_eq!(r.decide(&p, T0), Decision::Release(80));
    p.executed = 10;
    p.failed = 1;
    assert_eq!(r.decide(&p, T0), Decision::Release(80));
    p.failed = 2;
    assert!(matches!(r.decide(&p, T0), Decision::Abort(m) if m.contains("2 of 10")));
    // REJECTED is not FAILED; ALL counts both, and timeouts.
    let all = rules(
        json!({"abort": [{"failure_type": "ALL", "min_executed": 1, "threshold_percent": 50}]}),
    );
    let mut q = progress(10, 4);
    q.executed = 4;
    q.rejected = 1;
    q.timed_out = 1;
    assert!(matches!(all.decide(&q, T0), Decision::Abort(_)));
    p.failed = 0;
    p.rejected = 10;
    assert_eq!(r.decide(&p, T0), Decision::Release(80));
}

#[test]
fn schedules_and_maintenance_windows_hold_the_release() {
    let start = T0 + 3600 * NS_PER_SEC;
    let r = rules(
        json!({"schedule": {"start_at": start, "end_at": start + NS_PER_DAY,
        "end_behavior": "cancel"}}),
    );
    let p = progress(10, 0);
    assert_eq!(r.decide(&p, T0), Decision::Wait("scheduled", Some(start)));
    assert_eq!(r.decide(&p, start), Decision::Release(10));
    assert_eq!(
        r.decide(&p, start + NS_PER_DAY),
        Decision::End(EndBehavior::Cancel)
    );
    // 2026-12-08 is a Tuesday; a window on Tuesdays 02:00–03:00 UTC.
    let tue_0100 = parse_rfc3339("2026-12-08T01:00:00Z").unwrap();
    let w = rules(json!({"schedule": {"maintenance_windows": [
        {"days": ["tue"], "start": "02:00", "duration_minutes": 60}]}}));
    let opens = parse_rfc3339("2026-12-08T02:00:00Z").unwrap();
    assert_eq!(
        w.decide(&p, tue_0100),
        Decision::Wait("outside a maintenance window", Some(opens))
    );
    assert_eq!(w.decide(&p, opens + 59 * NS_PER_MIN), Decision::Release(10));
    let next = parse_rfc3339("2026-12-15T02:00:00Z").unwrap();
    assert_eq!(
        w.decide(&p, opens + 60 * NS_PER_MIN),
        Decision::Wait("outside a maintenance window", Some(next))
    );
    // A window past midnight is still open the next day.
    let late = rules(json!({"schedule": {"maintenance_windows": [
        {"start": "23:00", "duration_minutes": 120}]}}));
    assert_eq!(
        late.decide(&p, parse_rfc3339("2026-12-09T00:30:00Z").unwrap()),
        Decision::Release(10)
    );
}

#[test]
fn bad_rules_are_refused() {
    for bad in [
        json!({"rate": {"max_per_minute": 0}}),
        json!({"rate": {"exponential": {"base_per_minute": 10, "increment_factor": 1.0, "notified": 5}}}),
        json!({"rate": {"exponential": {"base_per_minute": 10, "increment_factor": 2.0}}}),
        json!({"rate": {"exponential": {"base_per_minute": 10, "increment_factor": 2.0, "notified": 5, "succeeded": 5}}}),
        json!({"waves": [{"percent": 50}, {"percent": 40}]}),
        json!({"waves": [{"percent": 50}]}),
        json!({"abort": [{"failure_type": "FAILED", "min_executed": 1, "threshold_percent": 0}]}),
        json!({"schedule": {"start_at": 10, "end_at": 5}}),
        json!({"schedule": {"maintenance_windows": [{"start": "25:00", "duration_minutes": 5}]}}),
        json!({"schedule": {"maintenance_windows": [{"days": ["someday"], "start": "01:00", "duration_minutes": 5}]}}),
    ] {
        let r: Rules = serde_json::from_value(bad.clone()).unwrap();
        assert!(r.check().is_err(), "{bad}");
    }
}

#[test]
fn rfc3339_times_parse() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        parse_rfc3339("2000-02-29T00:00:00.5Z"),
        Some(951_782_400 * NS_PER_SEC + 500_000_000)
    );
    assert_eq!(
        parse_rfc3339("2026-12-08T03:00:00+01:00"),
        parse_rfc3339("2026-12-08T02:00:00Z")
    );
    for bad in [
        "2026-12-08",
        "2026-13-01T00:00:00Z",
        "2026-12-08T00:00:00",
        "2026-12-08T00:00:00.Z",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad}");
    }
}

proptest! {
    /// Whatever the progress, a decision never releases more than is left, more than the
    /// current wave allows, or more than the rate allows in the minute and the second.
    #[test]
    fn releases_stay_within_every_bound(
        total in 0u64..5000, released_share in 0u64..=100, rate in 1u32..2000,
        last_minute in 0u64..2000, last_second in 0u64..50, succeeded_share in 0u64..=100,
    ) {
        let r = rules(json!({"rate": {"max_per_minute": rate},
            "waves": [{"percent": 25, "success_threshold_percent": 50}, {"percent": 100}]}));
        let released = total * released_share / 100;
        let p = Progress { total, released, succeeded: released * succeeded_share / 100,
            last_minute, last_second, ..Progress::default() };
        if let Decision::Release(n) = r.decide(&p, T0) {
            prop_assert!(n >= 1);
            prop_assert!(released + n <= total);
            prop_assert!(last_minute + n <= u64::from(rate));
            prop_assert!(last_second + n <= u64::from(rate).div_ceil(60));
            let wave1 = (total as f64 * 0.25).ceil() as u64;
            if released < wave1 {
                prop_assert!(released + n <= wave1);
            }
        }
    }
}
