use proptest::prelude::*;

use super::*;

fn info(claim: Option<&str>) -> CertInfo {
    CertInfo {
        fingerprint: "ab".repeat(32),
        serial: "0102".into(),
        common_name: Some("dev-1".into()),
        issuer: Some("Fleet".into()),
        not_before: 10,
        not_after: 20,
        claim_template: claim.map(str::to_owned),
        is_ca: false,
        client_auth: true,
    }
}

#[test]
fn record_is_pinned_and_versioned() {
    let r = CertRecord::new(&info(None), Made::Issued, Status::Active, 5);
    assert_eq!(r.device_id.as_deref(), Some("dev-1"));
    let text = String::from_utf8(r.encode()).unwrap();
    // The bytes docs/formats/meta.md shows.
    assert_eq!(
        text,
        format!(
            r#"{{"common_name":"dev-1","created_at":5,"device_id":"dev-1","id":"{}","issuer":"Fleet","made":"issued","not_after":20000000000,"not_before":10000000000,"serial":"0102","status":"ACTIVE","v":1}}"#,
            "ab".repeat(32)
        )
    );
    assert_eq!(CertRecord::decode(text.as_bytes()).unwrap(), r);
    let v2 = text.replace(r#""v":1"#, r#""v":2"#);
    assert!(
        CertRecord::decode(v2.as_bytes())
            .unwrap_err()
            .contains("version 2")
    );
    assert!(CertRecord::decode(b"{}").is_err());
}

#[test]
fn a_claim_certificate_acts_for_no_device() {
    let r = CertRecord::new(&info(Some("factory")), Made::Issued, Status::Active, 1);
    assert_eq!(r.made, Made::Claim);
    assert_eq!(r.device_id, None);
    assert_eq!(r.template.as_deref(), Some("factory"));
    assert!(r.is_claim());
    let p = CertRecord::new(&info(None), Made::Csr, Status::PendingActivation, 1);
    assert_eq!(
        p.device_id, None,
        "a pending certificate gets its device when it registers"
    );
    let a = p.activate("dev-9").unwrap();
    assert_eq!(
        (a.status, a.device_id.as_deref()),
        (Status::Active, Some("dev-9"))
    );
    assert_eq!(a.activate("dev-9").unwrap_err().status, 409);
}

#[test]
fn last_used_is_written_once_a_minute() {
    let r = CertRecord::new(&info(None), Made::Seen, Status::Active, 1);
    let first = r.used(100).unwrap();
    assert_eq!(first.last_used_at, Some(100));
    assert!(first.used(100 + LAST_USED_GRANULARITY_NS - 1).is_none());
    assert_eq!(
        first
            .used(100 + LAST_USED_GRANULARITY_NS)
            .unwrap()
            .last_used_at,
        Some(100 + LAST_USED_GRANULARITY_NS)
    );
}

#[derive(Debug, Clone)]
enum Step {
    Revoke,
    Activate,
    Replaced,
    Used(i64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Revoke),
        Just(Step::Activate),
        Just(Step::Replaced),
        (0i64..1 << 40).prop_map(Step::Used),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::PendingActivation),
        Just(Status::Active),
        Just(Status::Inactive),
        Just(Status::Revoked),
    ]
}

proptest! {
    /// Whatever happens after it, a revoked certificate stays revoked with its first
    /// revocation time; only PENDING_ACTIVATION becomes ACTIVE, only ACTIVE becomes INACTIVE;
    /// nothing but a status change alters the identity fields.
    #[test]
    fn status_rules_hold(start in status(), steps in proptest::collection::vec(step(), 0..12)) {
        let mut r = CertRecord::new(&info(None), Made::Csr, start, 1);
        let mut revoked_at = r.revoked_at;
        for s in steps {
            let before = r.clone();
            r = match s {
                Step::Revoke => r.revoke(7),
                Step::Activate => r.activate("dev-2").unwrap_or(r),
                Step::Replaced => r.replaced("cd"),
                Step::Used(t) => r.used(t).unwrap_or(r),
            };
            if before.status == Status::Revoked {
                prop_assert_eq!(r.status, Status::Revoked);
                prop_assert_eq!(r.revoked_at, revoked_at);
            }
            if r.status == Status::Revoked && before.status != Status::Revoked {
                revoked_at = r.revoked_at;
                prop_assert_eq!(revoked_at, Some(7));
            }
            match (before.status, r.status) {
                (a, b) if a == b => {}
                (Status::PendingActivation, Status::Active)
                | (Status::Active, Status::Inactive)
                | (_, Status::Revoked) => {}
                (a, b) => prop_assert!(false, "{a} -> {b}"),
            }
            prop_assert_eq!(&r.id, &before.id);
            prop_assert_eq!(&r.serial, &before.serial);
            prop_assert_eq!(CertRecord::decode(&r.encode()).unwrap(), r.clone());
        }
    }
}
