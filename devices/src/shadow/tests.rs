use super::*;

/// An accepted update with its replies as values: what the tests compare.
#[derive(Debug, Clone, PartialEq)]
struct Updated {
    shadow: Shadow,
    accepted: Value,
    delta: Option<Value>,
    documents: Option<Vec<u8>>,
}

impl Updated {
    /// `/update/documents` as a value.
    fn documents_value(&self) -> Value {
        self.documents
            .as_deref()
            .and_then(|d| serde_json::from_slice(d).ok())
            .unwrap_or(Value::Null)
    }
}

/// [`update_in`] on a copy of `current`.
fn update_with(
    current: Option<&Shadow>,
    payload: &[u8],
    source: Source,
    now: u64,
    documents: bool,
) -> Result<Updated, Rejected> {
    let mut shadow = current.cloned();
    let a = update_in(&mut shadow, payload, source, now, documents, None)?;
    let value = |b: &[u8]| serde_json::from_slice(b).unwrap_or(Value::Null);
    Ok(Updated {
        shadow: shadow.unwrap_or_default(),
        accepted: value(&a.accepted),
        delta: a.delta.as_deref().map(value),
        documents: a.documents,
    })
}

fn update(
    current: Option<&Shadow>,
    payload: &[u8],
    source: Source,
    now: u64,
) -> Result<Updated, Rejected> {
    update_with(current, payload, source, now, true)
}

const T0: u64 = 1_730_000_000;

fn up(current: Option<&Shadow>, doc: Value, now: u64) -> Result<Updated, Rejected> {
    update(current, doc.to_string().as_bytes(), Source::Device, now)
}

fn ok(current: Option<&Shadow>, doc: Value, now: u64) -> Updated {
    up(current, doc, now).unwrap_or_else(|r| panic!("rejected: {r:?}"))
}

#[test]
fn the_first_update_creates_the_shadow_at_version_1_and_echoes_only_what_it_set() {
    let u = ok(
        None,
        json!({"state": {"reported": {"color": "green"}}, "clientToken": "t1", "extra": 1}),
        T0,
    );
    assert_eq!(u.shadow.version, 1);
    assert_eq!(
        u.accepted,
        json!({
            "state": {"reported": {"color": "green"}},
            "metadata": {"reported": {"color": {"timestamp": T0}}},
            "version": 1, "timestamp": T0, "clientToken": "t1"
        })
    );
    assert_eq!(u.delta, None, "no desired, no delta");
    assert_eq!(
        u.documents_value(),
        json!({
            "current": {
                "state": {"reported": {"color": "green"}},
                "metadata": {"reported": {"color": {"timestamp": T0}}},
                "version": 1
            },
            "timestamp": T0, "clientToken": "t1"
        }),
        "no previous on the update that creates the shadow"
    );
}

#[test]
fn get_returns_the_documented_delta_example() {
    let a = ok(
        None,
        json!({"state": {"reported": {"color": "GREEN", "engine": "ON"}}}),
        T0,
    );
    let b = ok(
        Some(&a.shadow),
        json!({"state": {"desired": {"color": "RED", "state": "STOP"}}}),
        T0 + 5,
    );
    assert_eq!(
        b.delta,
        Some(json!({
            "state": {"color": "RED", "state": "STOP"},
            "metadata": {"color": {"timestamp": T0 + 5}, "state": {"timestamp": T0 + 5}},
            "version": 2, "timestamp": T0 + 5
        }))
    );
    let got = get(Some(&b.shadow), br#"{"clientToken":"g"}"#, "lamp", T0 + 9).unwrap();
    assert_eq!(
        got,
        json!({
            "state": {
                "desired": {"color": "RED", "state": "STOP"},
                "reported": {"color": "GREEN", "engine": "ON"},
                "delta": {"color": "RED", "state": "STOP"}
            },
            "metadata": {
                "desired": {"color": {"timestamp": T0 + 5}, "state": {"timestamp": T0 + 5}},
                "reported": {"color": {"timestamp": T0}, "engine": {"timestamp": T0}}
            },
            "version": 2, "timestamp": T0 + 9, "clientToken": "g"
        })
    );
    assert_eq!(
        b.documents_value()["previous"],
        a.shadow.snapshot(),
        "previous is the shadow before"
    );
}

#[test]
fn a_delta_carries_every_differing_key_with_the_desired_timestamps() {
    let a = ok(
        None,
        json!({"state": {"desired": {"Status": "Great", "n": 1}}}),
        T0,
    );
    // A reported update that opens a difference publishes the delta of the whole shadow.
    let b = ok(
        Some(&a.shadow),
        json!({"state": {"reported": {"Status": "Awful", "n": 1}}, "clientToken": "r"}),
        T0 + 60,
    );
    assert_eq!(
        b.delta,
        Some(json!({
            "state": {"Status": "Great"},
            "metadata": {"Status": {"timestamp": T0}},
            "version": 2, "timestamp": T0 + 60, "clientToken": "r"
        }))
    );
    // Reported catching up leaves no delta to publish.
    let c = ok(
        Some(&b.shadow),
        json!({"state": {"reported": {"Status": "Great"}}}),
        T0 + 61,
    );
    assert_eq!(c.delta, None);
    let got = get(Some(&c.shadow), b"", "x", T0 + 62).unwrap();
    assert!(got["state"].get("delta").is_none(), "{got}");
}

#[test]
fn null_removes_keys_and_sections_and_a_cleared_shadow_still_exists() {
    let a = ok(
        None,
        json!({"state": {"desired": {"a": 1, "b": 2}, "reported": {"a": 1}}}),
        T0,
    );
    let b = ok(
        Some(&a.shadow),
        json!({"state": {"desired": {"b": null}}}),
        T0 + 1,
    );
    assert_eq!(b.shadow.desired, Some(merge_obj(json!({"a": 1}))));
    assert_eq!(b.accepted["state"], json!({"desired": {"b": null}}));
    assert_eq!(
        b.accepted["metadata"],
        json!({"desired": {"b": {"timestamp": T0 + 1}}})
    );
    let c = ok(Some(&b.shadow), json!({"state": {"desired": null}}), T0 + 2);
    assert_eq!(
        (
            c.shadow.desired.as_ref(),
            c.shadow.desired_metadata.as_ref()
        ),
        (None, None)
    );
    assert!(c.shadow.reported.is_some());
    // Removing the last key of a section removes the section.
    let d = ok(
        Some(&c.shadow),
        json!({"state": {"reported": {"a": null}}}),
        T0 + 3,
    );
    assert_eq!(d.shadow.reported, None);
    let e = ok(Some(&d.shadow), json!({"state": null}), T0 + 4);
    assert_eq!(
        e.shadow.version, 5,
        "every accepted update counts, even one that changes nothing"
    );
    let got = get(Some(&e.shadow), b"{}", "x", T0 + 5).unwrap();
    assert_eq!(
        (&got["state"], &got["metadata"], &got["version"]),
        (&json!({}), &json!({}), &json!(5))
    );
}

fn merge_obj(v: Value) -> Object {
    v.as_object().cloned().unwrap()
}

#[test]
fn versions_lock_optimistically() {
    let a = ok(None, json!({"state": {"desired": {"x": 1}}}), T0);
    let stale = up(
        Some(&a.shadow),
        json!({"state": {"desired": {"x": 2}}, "version": 7, "clientToken": "c"}),
        T0,
    );
    assert_eq!(
        stale.map(|_| ()),
        Err(Rejected {
            error: ShadowError {
                code: 409,
                message: "Version conflict".into()
            },
            token: Some("c".into())
        })
    );
    let b = ok(
        Some(&a.shadow),
        json!({"state": {"desired": {"x": 2}}, "version": 1}),
        T0,
    );
    assert_eq!(b.shadow.version, 2);
    let create = up(
        None,
        json!({"state": {"desired": {"x": 1}}, "version": 1}),
        T0,
    );
    assert_eq!(
        create.map_err(|r| r.error.code).map(|_| ()),
        Err(409),
        "nothing to match yet"
    );
}

#[test]
fn a_deleted_shadow_is_gone_but_its_version_continues_for_48_hours() {
    let a = ok(None, json!({"state": {"reported": {"x": 1}}}), T0);
    let b = ok(
        Some(&a.shadow),
        json!({"state": {"reported": {"x": 2}}}),
        T0,
    );
    let (tomb, doc) = delete(
        Some(&b.shadow),
        br#"{"clientToken":"d"}"#,
        "thing1",
        T0 + 10,
    )
    .unwrap();
    assert_eq!(
        doc,
        json!({"version": 2, "timestamp": T0 + 10, "clientToken": "d"})
    );
    assert!(!tomb.exists());
    let missing = |r: Result<Value, Rejected>| r.map_err(|r| (r.error.code, r.error.message));
    assert_eq!(
        missing(get(Some(&tomb), b"", "thing1", T0 + 11)),
        Err((404, "No shadow exists with name: 'thing1'".into()))
    );
    assert_eq!(
        delete(Some(&tomb), b"", "thing1", T0 + 11)
            .map(|_| ())
            .map_err(|r| r.error.code),
        Err(404)
    );
    let again = ok(
        Some(&tomb),
        json!({"state": {"reported": {"x": 3}}}),
        T0 + 3600,
    );
    assert_eq!(again.shadow.version, 3);
    assert!(again.documents_value().get("previous").is_none());
    let later = ok(
        Some(&tomb),
        json!({"state": {"reported": {"x": 3}}}),
        T0 + 10 + VERSION_MEMORY_SECS + 1,
    );
    assert_eq!(later.shadow.version, 1);
}

#[test]
fn bad_requests_get_aws_codes_and_messages() {
    let deep = json!({"state": {"desired": {"1": {"2": {"3": {"4": {"5": {"6": {"7": 1}}}}}}}}});
    let long_token = "t".repeat(MAX_TOKEN_BYTES + 1);
    let big = "x".repeat(MAX_STATE_BYTES);
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            vec![b'{', 0xff, b'}'],
            415,
            "Unsupported documented encoding; supported encoding is UTF-8",
        ),
        (b"not json".to_vec(), 400, "Invalid JSON"),
        (b"[1]".to_vec(), 400, "Invalid JSON"),
        (b"{}".to_vec(), 400, "Missing required node: state"),
        (
            br#"{"state": 1}"#.to_vec(),
            400,
            "State node must be an object",
        ),
        (
            br#"{"state": {"desired": [1]}}"#.to_vec(),
            400,
            "Desired node must be an object",
        ),
        (
            br#"{"state": {"reported": "x"}}"#.to_vec(),
            400,
            "Reported node must be an object",
        ),
        (
            br#"{"state": {"other": {}}}"#.to_vec(),
            400,
            "State contains an invalid node",
        ),
        (
            br#"{"state": {}, "version": -1}"#.to_vec(),
            400,
            "Invalid version",
        ),
        (
            br#"{"state": {}, "version": "1"}"#.to_vec(),
            400,
            "Invalid version",
        ),
        (
            format!(r#"{{"state": {{}}, "clientToken": "{long_token}"}}"#).into_bytes(),
            400,
            "Invalid clientToken",
        ),
        (
            br#"{"state": {}, "clientToken": 5}"#.to_vec(),
            400,
            "Invalid clientToken",
        ),
        (
            deep.to_string().into_bytes(),
            400,
            "JSON contains too many levels of nesting; maximum is 6",
        ),
        (
            json!({"state": {"reported": {"big": big}}})
                .to_string()
                .into_bytes(),
            413,
            "The payload exceeds the maximum size allowed",
        ),
    ];
    for (payload, code, message) in cases {
        let r = update(None, &payload, Source::Device, T0).map(|_| ());
        let want = ShadowError {
            code,
            message: message.into(),
        };
        assert_eq!(
            r.map_err(|r| r.error),
            Err(want),
            "{}",
            String::from_utf8_lossy(&payload)
        );
    }
    // Six levels pass; "delta" in a request is ignored.
    ok(
        None,
        json!({"state": {"desired": {"1": {"2": {"3": {"4": {"5": 1}}}}}, "delta": {"x": 1}}}),
        T0,
    );
    // Get and delete read their payload too.
    assert_eq!(
        get(None, b"{oops", "x", T0).map_err(|r| r.error.code),
        Err(400)
    );
    assert_eq!(
        get(None, &[0xff], "x", T0).map_err(|r| r.error.code),
        Err(415)
    );
}

#[test]
fn the_size_limit_counts_the_merged_document() {
    let half = "x".repeat(MAX_STATE_BYTES / 2);
    let a = ok(None, json!({"state": {"desired": {"a": half}}}), T0);
    let r = up(
        Some(&a.shadow),
        json!({"state": {"reported": {"b": half}}, "clientToken": "s"}),
        T0,
    );
    let r = r.map(|_| ()).unwrap_err();
    assert_eq!((r.error.code, r.token.as_deref()), (413, Some("s")));
}

#[test]
fn the_error_document_echoes_the_token() {
    let r = up(None, json!({"clientToken": "abc"}), T0)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        r.document(T0),
        json!({"code": 400, "message": "Missing required node: state", "timestamp": T0, "clientToken": "abc"})
    );
    let r = Rejected::of(ShadowError::too_many_requests(), br#"{"clientToken":"z"}"#);
    assert_eq!(r.document(T0)["clientToken"], "z");
}

#[test]
fn only_the_device_reports() {
    let r = update(
        None,
        br#"{"state":{"reported":{"x":1}}}"#,
        Source::Operator,
        T0,
    );
    assert_eq!(r.map(|_| ()).map_err(|r| r.error.code), Err(403));
    let u = update(None, br#"{"state":{"desired":{"x":1}}}"#, Source::Fleet, T0).unwrap();
    assert_eq!(u.shadow.version, 1);
}

#[test]
fn names_are_checked_as_aws_allows_them() {
    assert!(check_names("thing-1:a_b", Some("$package")).is_ok());
    assert!(check_names("", None).is_err());
    assert!(check_names(&"a".repeat(MAX_THING_NAME + 1), None).is_err());
    assert!(check_names("a/b", None).is_err());
    assert!(check_names("a", Some(&"s".repeat(MAX_SHADOW_NAME + 1))).is_err());
    assert!(check_names("a", Some("")).is_err());
}

#[test]
fn the_stored_form_round_trips_and_is_versioned() {
    let a = ok(
        None,
        json!({"state": {"desired": {"x": [1, {"y": 2}]}, "reported": {"x": 1}}}),
        T0,
    );
    let bytes = a.shadow.encode();
    assert_eq!(Shadow::decode(&bytes), Some(a.shadow.clone()));
    assert_eq!(
        a.shadow.state_json(),
        a.shadow.state().to_string(),
        "the state as text is the state"
    );
    assert!(String::from_utf8_lossy(&bytes).contains(r#""v":1"#));
    assert_eq!(
        Shadow::decode(br#"{"v":2,"version":1,"updated_at":0}"#),
        None
    );
    assert_eq!(Shadow::decode(b"junk"), None);
}

#[test]
fn a_record_as_docs_formats_meta_shows_it_is_read() {
    let doc = r#"{"v":1,"version":3,"desired":{"led":"on"},"reported":{"led":"off"},"desired_metadata":{"led":{"timestamp":1730000005}},"reported_metadata":{"led":{"timestamp":1730000000}},"updated_at":1730000005}"#;
    let s = Shadow::decode(doc.as_bytes()).expect("readable");
    assert_eq!(
        String::from_utf8_lossy(&s.encode()),
        doc,
        "written as documented"
    );
    assert_eq!(s.version, 3);
    assert!(s.exists());
    assert_eq!(Value::Object(s.delta()), json!({"led": "on"}));
}

#[test]
fn documents_are_written_only_when_asked_for() {
    let p = json!({"state": {"reported": {"x": 1}}}).to_string();
    let without = update_with(None, p.as_bytes(), Source::Device, T0, false).unwrap();
    assert_eq!(without.documents, None);
    let with = update_with(None, p.as_bytes(), Source::Device, T0, true).unwrap();
    assert_eq!(
        (without.shadow, without.accepted),
        (with.shadow.clone(), with.accepted.clone()),
        "the rest is the same"
    );
    assert_eq!(with.documents_value()["current"], with.shadow.snapshot());
}

mod in_place {
    use super::*;
    use crate::shadow::merge::tests::{section, value};
    use proptest::prelude::*;

    fn patch() -> impl Strategy<Value = Object> {
        prop::collection::btree_map("[abcd]", value(), 0..4).prop_map(|m| m.into_iter().collect())
    }

    fn shadow(d: Object, r: Object) -> Shadow {
        let mut s = Shadow {
            version: 4,
            updated_at: T0,
            ..Shadow::default()
        };
        let meta = |o: &Object| (!o.is_empty()).then(|| merge::stamp_object(o, T0));
        s.desired_metadata = meta(&d);
        s.reported_metadata = meta(&r);
        s.desired = (!d.is_empty()).then_some(d);
        s.reported = (!r.is_empty()).then_some(r);
        s
    }

    proptest! {
        /// What a refused update must rely on: undoing a section's merge gives it back whole.
        #[test]
        fn undoing_a_merge_gives_the_section_back(d in section(), p in patch(), clear in any::<bool>()) {
            let before = shadow(d, Object::new());
            let mut s = before.clone();
            let p = if clear { Patch::Clear } else { Patch::Merge(&p) };
            let undo = apply(&mut s.desired, &mut s.desired_metadata, &p, T0 + 9, true);
            undo.undo(&mut s.desired, &mut s.desired_metadata);
            prop_assert_eq!(s, before);
        }

        /// The limit measured on the state text is the limit measured on the sections.
        #[test]
        fn the_state_size_read_off_the_state_text_is_the_sections_size(d in section(), r in section()) {
            let s = shadow(d, r);
            prop_assert_eq!(
                state_size_of(&s.state_json(), &s),
                merge::state_size(s.desired.as_ref(), s.reported.as_ref())
            );
        }

        /// The accepted reply, written from the request, is the document AWS describes: the
        /// request's state and each leaf it set stamped now.
        #[test]
        fn the_written_accepted_reply_is_the_documented_one(d in section(), r in section(), pd in patch(), pr in patch()) {
            let current = shadow(d, r);
            let state = json!({"desired": pd, "reported": pr});
            let payload = json!({"state": state, "clientToken": "c"}).to_string();
            let mut s = Some(current);
            let a = update_in(&mut s, payload.as_bytes(), Source::Device, T0 + 9, false, None).unwrap();
            let expected = json!({
                "state": state,
                "metadata": {
                    "desired": merge::stamp_object(&pd, T0 + 9),
                    "reported": merge::stamp_object(&pr, T0 + 9),
                },
                "version": 5, "timestamp": T0 + 9, "clientToken": "c",
            });
            let got: Value = serde_json::from_slice(&a.accepted).unwrap();
            prop_assert_eq!(got, expected);
            prop_assert_eq!(s.map(|s| s.state_json()), Some(a.state_json));
        }
    }

    #[test]
    fn a_refused_update_leaves_the_shadow_as_it_was() {
        let before = ok(
            None,
            json!({"state": {"desired": {"a": 1}, "reported": {"b": [1, 2]}}}),
            T0,
        )
        .shadow;
        let big = "x".repeat(MAX_STATE_BYTES);
        for doc in [
            json!({"state": {"reported": {"b": big, "c": 1}}}),
            json!({"state": {"desired": null, "reported": {"b": big}}}),
        ] {
            let mut s = Some(before.clone());
            let r = update_in(
                &mut s,
                doc.to_string().as_bytes(),
                Source::Device,
                T0 + 1,
                true,
                Some(&before.state_json()),
            );
            assert_eq!(r.map(|_| ()).unwrap_err().error.code, 413);
            assert_eq!(s.as_ref(), Some(&before));
        }
        // A tombstone stays a tombstone.
        let (tomb, _) = delete(Some(&before), b"", "Classic", T0 + 2).unwrap();
        let mut s = Some(tomb.clone());
        let doc = json!({"state": {"reported": {"b": big}}}).to_string();
        assert!(
            update_in(
                &mut s,
                doc.as_bytes(),
                Source::Device,
                T0 + 3,
                false,
                Some("{}")
            )
            .is_err()
        );
        assert_eq!(s, Some(tomb));
    }
}
