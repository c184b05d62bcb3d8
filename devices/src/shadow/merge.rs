//! The rules of a shadow document, as AWS IoT Device Shadow documents them
//! (docs/plans/aws-shadow-contract.md §6): partial merge, metadata per leaf, delta, depth.
//!
//! - **Merge.** A request section is merged into the stored one key by key: `null` removes the
//!   key (and its metadata); an object merges into an object recursively; anything else (a
//!   scalar, an array, an object over a non-object) replaces the value whole. An object left
//!   empty by a merge is removed, at every level, so a section whose last key goes disappears
//!   (as AWS shows it) and `{}` never stands as a value.
//! - **Metadata** mirrors the state: a scalar leaf has `{"timestamp": secs}`, an object has an
//!   object of its keys' metadata, an array an array with one entry per element. A replaced
//!   value is stamped again whole.
//! - **Delta**: every desired key whose value differs from reported, nested to the leaf; arrays
//!   and scalars compare whole, numbers by value (`1` equals `1.0`).

use serde_json::{Map, Value, json};

/// A JSON object.
pub type Object = Map<String, Value>;

/// The metadata of `v` set at `now` (epoch seconds).
pub fn stamp(v: &Value, now: u64) -> Value {
    match v {
        Value::Object(m) => Value::Object(stamp_object(m, now)),
        Value::Array(a) => Value::Array(a.iter().map(|v| stamp(v, now)).collect()),
        _ => json!({ "timestamp": now }),
    }
}

/// The metadata of an object set at `now`.
pub fn stamp_object(m: &Object, now: u64) -> Object {
    m.iter().map(|(k, v)| (k.clone(), stamp(v, now))).collect()
}

/// Merges `patch` into `state`, keeping `meta` (the metadata of `state`) in step.
pub fn merge(state: &mut Object, meta: &mut Object, patch: &Object, now: u64) {
    for (k, p) in patch {
        match p {
            Value::Null => {
                state.remove(k);
                meta.remove(k);
            }
            Value::Object(po) => {
                let (mut s, mut m) = match (state.remove(k), meta.remove(k)) {
                    (Some(Value::Object(s)), Some(Value::Object(m))) => (s, m),
                    (Some(Value::Object(s)), _) => {
                        let m = stamp_object(&s, now);
                        (s, m)
                    }
                    _ => (Object::new(), Object::new()),
                };
                merge(&mut s, &mut m, po, now);
                if !s.is_empty() {
                    state.insert(k.clone(), Value::Object(s));
                    meta.insert(k.clone(), Value::Object(m));
                }
            }
            v => {
                state.insert(k.clone(), v.clone());
                meta.insert(k.clone(), stamp(v, now));
            }
        }
    }
}

/// Values equal as JSON documents, numbers compared by value.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                x.as_f64() == y.as_f64()
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// What of `desired` the device has not reported: empty when in sync.
pub fn delta(desired: &Object, reported: Option<&Object>) -> Object {
    let mut out = Object::new();
    for (k, d) in desired {
        match (d, reported.and_then(|r| r.get(k))) {
            (Value::Object(dob), Some(Value::Object(rob))) => {
                let sub = delta(dob, Some(rob));
                if !sub.is_empty() {
                    out.insert(k.clone(), Value::Object(sub));
                }
            }
            (d, Some(r)) if same(d, r) => {}
            (d, _) => {
                out.insert(k.clone(), d.clone());
            }
        }
    }
    out
}

/// The part of `meta` on the paths of `of` (the desired metadata of a delta).
pub fn restrict(meta: &Object, of: &Object) -> Object {
    let mut out = Object::new();
    for (k, v) in of {
        match (v, meta.get(k)) {
            (Value::Object(vo), Some(Value::Object(mo))) if !is_stamp(mo) => {
                out.insert(k.clone(), Value::Object(restrict(mo, vo)));
            }
            (_, Some(m)) => {
                out.insert(k.clone(), m.clone());
            }
            (_, None) => {}
        }
    }
    out
}

fn is_stamp(m: &Object) -> bool {
    m.len() == 1 && m.get("timestamp").is_some_and(Value::is_number)
}

/// Nesting depth as AWS counts it: the section itself is level 1, and each non-empty object or
/// array inside adds one; scalars and empty containers add nothing.
pub fn depth(section: &Object) -> usize {
    fn of(v: &Value) -> usize {
        match v {
            Value::Object(m) if !m.is_empty() => 1 + m.values().map(of).max().unwrap_or(0),
            Value::Array(a) if !a.is_empty() => 1 + a.iter().map(of).max().unwrap_or(0),
            _ => 0,
        }
    }
    1 + section.values().map(of).max().unwrap_or(0)
}

/// Bytes of state that count against the size limit: desired and reported as compact JSON
/// (metadata does not count).
pub fn state_size(desired: Option<&Object>, reported: Option<&Object>) -> usize {
    let len = |o: Option<&Object>| o.map_or(0, super::json_len);
    len(desired) + len(reported)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn obj(v: Value) -> Object {
        v.as_object().cloned().expect("an object")
    }

    /// (stored, patch, merged, merged metadata with 1 = old and 2 = new stamps)
    #[test]
    fn merge_follows_the_documented_rules() {
        let cases = [
            // A partial update touches only its keys.
            (
                json!({"color": "red", "on": true}),
                json!({"color": "blue"}),
                json!({"color": "blue", "on": true}),
                json!({"color": {"timestamp": 2}, "on": {"timestamp": 1}}),
            ),
            // null removes a key; an object left empty goes with it.
            (
                json!({"a": {"b": 1}, "c": 2}),
                json!({"a": {"b": null}}),
                json!({"c": 2}),
                json!({"c": {"timestamp": 1}}),
            ),
            // Nested objects merge to the leaf.
            (
                json!({"lights": {"color": {"r": 1, "g": 2}}}),
                json!({"lights": {"color": {"g": 255}}}),
                json!({"lights": {"color": {"r": 1, "g": 255}}}),
                json!({"lights": {"color": {"r": {"timestamp": 1}, "g": {"timestamp": 2}}}}),
            ),
            // Arrays are replaced whole, with metadata per element.
            (
                json!({"rgb": [1, 2, 3]}),
                json!({"rgb": [9]}),
                json!({"rgb": [9]}),
                json!({"rgb": [{"timestamp": 2}]}),
            ),
            // A type change replaces the value.
            (
                json!({"x": 5}),
                json!({"x": {"y": 1}}),
                json!({"x": {"y": 1}}),
                json!({"x": {"y": {"timestamp": 2}}}),
            ),
            (
                json!({"x": {"y": 1}}),
                json!({"x": [1]}),
                json!({"x": [1]}),
                json!({"x": [{"timestamp": 2}]}),
            ),
            // An empty object changes nothing; a new object of nulls stores nothing.
            (
                json!({"x": {"y": 1}}),
                json!({"x": {}, "z": {"q": null}}),
                json!({"x": {"y": 1}}),
                json!({"x": {"y": {"timestamp": 1}}}),
            ),
            // Removing a key that is not there is no error.
            (json!({}), json!({"gone": null}), json!({}), json!({})),
        ];
        for (stored, patch, want, want_meta) in cases {
            let mut s = obj(stored.clone());
            let mut m = obj(stamp(&stored, 1));
            merge(&mut s, &mut m, &obj(patch.clone()), 2);
            assert_eq!(Value::Object(s), want, "{stored} + {patch}");
            assert_eq!(Value::Object(m), want_meta, "{stored} + {patch}");
        }
    }

    #[test]
    fn delta_holds_what_desired_has_and_reported_lacks() {
        let cases = [
            // AWS's example: color differs, state missing, engine only reported.
            (
                json!({"color": "RED", "state": "STOP"}),
                Some(json!({"color": "GREEN", "engine": "ON"})),
                json!({"color": "RED", "state": "STOP"}),
            ),
            (json!({"a": 1}), Some(json!({"a": 1})), json!({})),
            (json!({"a": 1}), Some(json!({"a": 1.0})), json!({})),
            (json!({"a": 1}), None, json!({"a": 1})),
            (
                json!({"lights": {"color": {"r": 1, "g": 255}}}),
                Some(json!({"lights": {"color": {"r": 1, "g": 2}, "on": true}})),
                json!({"lights": {"color": {"g": 255}}}),
            ),
            (json!({"l": [1, 2]}), Some(json!({"l": [1, 2]})), json!({})),
            (
                json!({"l": [1, 2]}),
                Some(json!({"l": [2, 1]})),
                json!({"l": [1, 2]}),
            ),
            (
                json!({"o": {"a": 1}}),
                Some(json!({"o": 7})),
                json!({"o": {"a": 1}}),
            ),
        ];
        for (d, r, want) in cases {
            let r = r.map(obj);
            assert_eq!(
                Value::Object(delta(&obj(d.clone()), r.as_ref())),
                want,
                "{d}"
            );
        }
    }

    #[test]
    fn the_delta_metadata_is_the_desired_metadata_of_its_paths() {
        let desired = json!({"lights": {"color": {"r": 1, "g": 255}}, "fan": [1, 2]});
        let meta = obj(json!({
            "lights": {"color": {"r": {"timestamp": 1}, "g": {"timestamp": 5}}},
            "fan": [{"timestamp": 3}, {"timestamp": 3}]
        }));
        let d = delta(
            &obj(desired),
            Some(&obj(json!({"lights": {"color": {"r": 1}}}))),
        );
        assert_eq!(
            Value::Object(restrict(&meta, &d)),
            json!({
                "lights": {"color": {"g": {"timestamp": 5}}},
                "fan": [{"timestamp": 3}, {"timestamp": 3}]
            })
        );
    }

    #[test]
    fn depth_counts_the_section_and_each_non_empty_container() {
        assert_eq!(depth(&obj(json!({}))), 1);
        assert_eq!(depth(&obj(json!({"a": 1, "e": {}}))), 1);
        assert_eq!(depth(&obj(json!({"a": {"b": 1}}))), 2);
        assert_eq!(depth(&obj(json!({"a": [{"b": [1]}]}))), 4);
        let six = json!({"one": {"two": {"three": {"four": {"five": {"x": 1}}}}}});
        assert_eq!(depth(&obj(six)), 6);
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..3).prop_map(|n| json!(n)),
            "[ab]{0,2}".prop_map(Value::String),
        ]
    }

    pub(crate) fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[abc]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    pub(crate) fn section() -> impl Strategy<Value = Object> {
        prop::collection::btree_map("[abc]", value(), 0..4).prop_map(|m| {
            // A stored section is what merging produced: no nulls, no empty objects.
            let mut s = Object::new();
            merge(&mut s, &mut Object::new(), &m.into_iter().collect(), 0);
            s
        })
    }

    /// Reported contains desired: every desired leaf is there with the same value.
    fn contains(reported: &Object, desired: &Object) -> bool {
        desired.iter().all(|(k, d)| match (d, reported.get(k)) {
            (Value::Object(d), Some(Value::Object(r))) => contains(r, d),
            (d, Some(r)) => same(d, r),
            (_, None) => false,
        })
    }

    fn no_null_or_empty(o: &Object) -> bool {
        o.values().all(|v| match v {
            Value::Null => false,
            Value::Object(m) => !m.is_empty() && no_null_or_empty(m),
            _ => true,
        })
    }

    proptest! {
        /// What lets an update skip keeping what it replaces: merging adds at most the patch's
        /// own text to a section.
        #[test]
        fn a_merge_adds_at_most_the_patch_text(s in section(), p in prop::collection::btree_map("[abcd]", value(), 0..4)) {
            let p: Object = p.into_iter().collect();
            let mut merged = s.clone();
            merge(&mut merged, &mut Object::new(), &p, 0);
            let len = |o: &Object| if o.is_empty() { 0 } else { state_size(Some(o), None) };
            prop_assert!(len(&merged) <= len(&s) + state_size(Some(&p), None));
        }

        #[test]
        fn delta_is_empty_exactly_when_reported_contains_desired(d in section(), r in section()) {
            prop_assert_eq!(delta(&d, Some(&r)).is_empty(), contains(&r, &d));
            prop_assert!(delta(&d, Some(&d)).is_empty());
        }

        #[test]
        fn reporting_the_delta_brings_the_two_in_sync(d in section(), r in section()) {
            let mut r2 = r.clone();
            merge(&mut r2, &mut Object::new(), &delta(&d, Some(&r)), 1);
            prop_assert!(delta(&d, Some(&r2)).is_empty(), "{:?}", r2);
        }

        #[test]
        fn a_merge_stores_no_nulls_or_empty_objects_and_metadata_mirrors_state(
            s in section(),
            p in prop::collection::btree_map("[abc]", value(), 0..4),
        ) {
            let mut state = s.clone();
            let mut meta = stamp(&Value::Object(s), 1).as_object().cloned().unwrap_or_default();
            let patch: Object = p.into_iter().collect();
            merge(&mut state, &mut meta, &patch, 2);
            prop_assert!(no_null_or_empty(&state));
            // The same paths: a state leaf is a metadata leaf {"timestamp"}.
            prop_assert_eq!(
                keys(&Value::Object(state)),
                keys(&Value::Object(meta))
            );
        }

        #[test]
        fn merging_a_patch_twice_is_merging_it_once(
            s in section(),
            p in prop::collection::btree_map("[abc]", value(), 0..4),
        ) {
            let patch: Object = p.into_iter().collect();
            let mut once = s.clone();
            merge(&mut once, &mut Object::new(), &patch, 1);
            let mut twice = once.clone();
            merge(&mut twice, &mut Object::new(), &patch, 1);
            prop_assert_eq!(once, twice);
        }
    }

    /// The key paths of a state tree (metadata leaves `{"timestamp"}` count as leaves).
    fn keys(v: &Value) -> Vec<String> {
        fn walk(v: &Value, at: &str, out: &mut Vec<String>) {
            match v {
                Value::Object(m) if !(m.len() == 1 && m.contains_key("timestamp")) => {
                    for (k, v) in m {
                        walk(v, &format!("{at}/{k}"), out);
                    }
                }
                Value::Array(a) => {
                    for (i, v) in a.iter().enumerate() {
                        walk(v, &format!("{at}[{i}]"), out);
                    }
                }
                _ => out.push(at.to_owned()),
            }
        }
        let mut out = Vec::new();
        walk(v, "", &mut out);
        out
    }
}
