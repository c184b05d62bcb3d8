use proptest::prelude::*;
use serde_json::json;

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn patch(v: Value) -> Patch {
    serde_json::from_value(v).unwrap()
}

/// The bytes of a profile and a group as this version writes them (docs/formats/meta.md),
/// and what it refuses to read.
#[test]
fn records_are_pinned_and_versioned() {
    let p = DeviceProfile {
        device_type: Some("sensor".into()),
        hardware_revision: None,
        tags: obj(json!({"site": "plant-7", "line": 3})),
        groups: vec!["north".into()],
        created_at: 5,
    };
    let written = r#"{"created_at":5,"device_type":"sensor","groups":["north"],"tags":{"line":3,"site":"plant-7"},"v":1}"#;
    assert_eq!(String::from_utf8(p.encode()).unwrap(), written);
    assert_eq!(DeviceProfile::decode(written.as_bytes()), Ok(p));
    assert!(
        DeviceProfile::decode(br#"{"created_at":5,"v":2}"#)
            .unwrap_err()
            .contains("version 2")
    );
    assert!(DeviceProfile::decode(br#"{"created_at":5}"#).is_err());
    assert!(DeviceProfile::decode(b"\xff").is_err());

    let g = Group {
        description: None,
        predicate: Some("device_type = 'sensor'".into()),
        created_at: 9,
    };
    let written = r#"{"created_at":9,"v":1,"where":"device_type = 'sensor'"}"#;
    assert_eq!(String::from_utf8(g.encode()).unwrap(), written);
    assert_eq!(Group::decode(written.as_bytes()), Ok(g));
}

#[test]
fn a_patch_merges_tags_and_replaces_the_rest() {
    let old = DeviceProfile {
        device_type: Some("sensor".into()),
        hardware_revision: Some("r1".into()),
        tags: obj(json!({"site": "plant-7", "loc": {"x": 1, "y": 2}, "line": 3})),
        groups: vec!["a".into(), "b".into()],
        created_at: 1,
    };
    let p = patch(json!({
        "hardware_revision": null,
        "tags": {"line": null, "loc": {"y": 5, "z": 6}, "owner": "ops"},
        "groups": ["c", "a", "c"]
    }))
    .apply(Some(old.clone()), 99)
    .unwrap();
    assert_eq!(p.device_type.as_deref(), Some("sensor"), "absent: kept");
    assert_eq!(p.hardware_revision, None, "null: removed");
    assert_eq!(
        Value::Object(p.tags),
        json!({"site": "plant-7", "loc": {"x": 1, "y": 5, "z": 6}, "owner": "ops"})
    );
    assert_eq!(p.groups, ["a", "c"], "replaced, sorted, no duplicates");
    assert_eq!(p.created_at, 1);

    let cleared = patch(json!({"tags": null, "groups": null}))
        .apply(Some(old.clone()), 99)
        .unwrap();
    assert!(cleared.tags.is_empty() && cleared.groups.is_empty());
    assert_eq!(patch(json!({})).apply(Some(old.clone()), 99).unwrap(), old);

    let fresh = patch(json!({"device_type": "gw"})).apply(None, 42).unwrap();
    assert_eq!(fresh.created_at, 42, "a patch may create the device");
}

#[test]
fn bad_profiles_are_refused_with_a_reason() {
    let bad = |v: Value| match serde_json::from_value::<Patch>(v) {
        Ok(p) => p.apply(None, 0).unwrap_err(),
        Err(e) => RegistryError::bad(e.to_string()),
    };
    assert_eq!(bad(json!({"groups": ["no spaces"]})).status, 400);
    assert_eq!(bad(json!({"device_type": ""})).status, 400);
    assert_eq!(bad(json!({"tags": {"": 1}})).status, 400);
    let big = "x".repeat(MAX_TAGS_BYTES);
    let e = bad(json!({"tags": {"a": big}}));
    assert_eq!((e.status, e.code), (413, "too_large"));
    let deep = json!({"tags": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}});
    let five_levels = json!({"tags": {"a": {"b": {"c": {"d": {"e": 1}}}}}});
    assert!(patch(five_levels).apply(None, 0).is_ok());
    assert!(bad(deep).message.contains("levels deep"));
    assert!(
        serde_json::from_value::<Patch>(json!({"colour": "red"})).is_err(),
        "unknown members are refused, so a typo is not silently ignored"
    );
    let many: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
    assert_eq!(bad(json!({ "groups": many })).status, 400);

    assert!(check_device_id("sensor-1.a:b").is_ok());
    for id in ["", "a/b", "a+b", "a#", "a\nb"] {
        assert!(check_device_id(id).is_err(), "{id:?}");
    }
    assert!(check_device_id(&"d".repeat(MAX_DEVICE_ID + 1)).is_err());
}

#[test]
fn replace_keeps_only_the_creation_time() {
    let old = patch(json!({"device_type": "a", "tags": {"k": 1}}))
        .apply(None, 7)
        .unwrap();
    let body: Replace = serde_json::from_value(json!({"groups": ["z"]})).unwrap();
    let new = body.apply(Some(&old), 100).unwrap();
    assert_eq!(new.device_type, None);
    assert!(new.tags.is_empty());
    assert_eq!(new.groups, ["z"]);
    assert_eq!(new.created_at, 7);
}

#[test]
fn groups_are_static_or_dynamic_and_stay_so() {
    let body = |v: Value| serde_json::from_value::<GroupBody>(v).unwrap();
    let dynamic = body(json!({"where": "device_type = 'gw'"}))
        .group(None, 3)
        .unwrap();
    assert!(dynamic.is_dynamic());
    assert!(
        body(json!({"where": "x", "devices": ["a"]}))
            .group(None, 3)
            .is_err()
    );
    assert!(body(json!({"where": "  "})).group(None, 3).is_err());
    let e = body(json!({"description": "now static"}))
        .group(Some(&dynamic), 4)
        .unwrap_err();
    assert_eq!(e.status, 409);
    let again = body(json!({"where": "true", "description": "all"}))
        .group(Some(&dynamic), 4)
        .unwrap();
    assert_eq!(again.created_at, 3);

    let mut p = DeviceProfile::created(0);
    assert!(set_member(&mut p, "b", true).unwrap());
    assert!(set_member(&mut p, "a", true).unwrap());
    assert!(!set_member(&mut p, "a", true).unwrap());
    assert_eq!(p.groups, ["a", "b"]);
    assert!(p.in_group("b") && !p.in_group("c"));
    assert!(set_member(&mut p, "a", false).unwrap());
    assert!(!set_member(&mut p, "a", false).unwrap());
    assert_eq!(p.groups, ["b"]);
    assert!(check_group_name("plant-7.line:3_a").is_ok());
    assert!(check_group_name("a b").is_err());
}

#[test]
fn firmware_version_is_read_under_common_names() {
    let fw = |v: Value| firmware_version(&obj(v));
    assert_eq!(
        fw(json!({"fw": {"version": "2.1"}})).as_deref(),
        Some("2.1")
    );
    assert_eq!(
        fw(json!({"firmware": {"version": 3}})).as_deref(),
        Some("3")
    );
    assert_eq!(fw(json!({"firmware": "1.0.4"})).as_deref(), Some("1.0.4"));
    assert_eq!(fw(json!({"fw_version": "9"})).as_deref(), Some("9"));
    assert_eq!(fw(json!({"firmwareVersion": "8"})).as_deref(), Some("8"));
    assert_eq!(fw(json!({"temp": 1, "fw": {"build": 7}})), None);
}

fn small_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (0i64..5).prop_map(Value::from),
        "[a-c]{0,2}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop::collection::btree_map("[a-d]", inner, 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    })
}

fn small_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-d]", small_value(), 0..4).prop_map(|m| m.into_iter().collect())
}

fn has_null(m: &Map<String, Value>) -> bool {
    m.values().any(|v| match v {
        Value::Null => true,
        Value::Object(o) => has_null(o),
        _ => false,
    })
}

proptest! {
    /// RFC 7396: applying a patch twice is applying it once; the result holds no null; a key
    /// the patch does not name keeps its value; a key it sets to a non-object value has it.
    #[test]
    fn merge_patch_rules(target in small_object(), p in small_object()) {
        let mut once = target.clone();
        merge_patch(&mut once, p.clone());
        let mut twice = once.clone();
        merge_patch(&mut twice, p.clone());
        prop_assert_eq!(&once, &twice);
        let mut clean = target.clone();
        clean.retain(|_, v| !v.is_null());
        if !has_null(&target) {
            prop_assert!(!has_null(&once));
        }
        for (k, v) in &target {
            if !p.contains_key(k) {
                prop_assert_eq!(once.get(k), Some(v));
            }
        }
        for (k, v) in &p {
            match v {
                Value::Null => prop_assert!(!once.contains_key(k)),
                Value::Object(_) => prop_assert!(once.get(k).is_some_and(Value::is_object)),
                v => prop_assert_eq!(once.get(k), Some(v)),
            }
        }
    }
}
