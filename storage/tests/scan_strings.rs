//! String fields in scans: they come back dictionary-encoded with the values written, blocks
//! whose dictionaries hold none of the wanted strings are skipped (and only those), and a
//! latest-row scan keyed by a string field returns one row for a series where that field never
//! changes and the whole series where it does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use arrow::datatypes::DataType;
use common::{Cell, config, rows, write};
use mast_storage::{ScanError, ScanRequest, Store, StringSet, WriteBatch};
use proptest::prelude::*;

const STATES: [&str; 3] = ["idle", "moving", "fault"];

/// (device, time) -> state (None: the row has no state).
type Model = BTreeMap<(u8, i64), Option<&'static str>>;

/// Writes `writes` (device, time, state index, seal after) in batches; a device whose `fixed`
/// bit is set always writes the same state. Times are unique per device.
fn load(store: &Store, writes: &[(u8, i64, Option<usize>, bool)], fixed: u8) -> Model {
    let mut model = Model::new();
    for chunk in writes.chunks(7) {
        let mut b = WriteBatch::new();
        for &(dev, t, state, _) in chunk {
            if model.contains_key(&(dev, t)) {
                continue;
            }
            let state = if fixed & (1 << dev) != 0 {
                Some(STATES[dev as usize % 3])
            } else {
                state.map(|i| STATES[i])
            };
            model.insert((dev, t), state);
            let s = b.series("m", &[("device_id", &format!("d{dev}"))]);
            let mut r = b.row(s, t);
            r.i64("v", t);
            if let Some(st) = state {
                r.str("state", st);
            }
        }
        write(store, b, chunk.last().is_some_and(|w| w.3));
    }
    model
}

fn state_of(row: &BTreeMap<String, Cell>) -> Option<String> {
    match row.get("state") {
        Some(Cell::S(s)) => Some(s.clone()),
        _ => None,
    }
}

fn device_of(row: &BTreeMap<String, Cell>) -> u8 {
    match &row["device_id"] {
        Cell::S(d) => d[1..].parse().unwrap(),
        other => panic!("device_id {other:?}"),
    }
}

fn writes() -> impl Strategy<Value = Vec<(u8, i64, Option<usize>, bool)>> {
    prop::collection::vec(
        (
            0u8..4,
            0i64..300,
            prop::option::weighted(0.9, 0usize..3),
            prop::bool::weighted(0.1),
        ),
        1..150,
    )
}

fn store(dir: &std::path::Path) -> Store {
    let mut c = config(dir);
    c.block_rows = 16;
    Store::open(c).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn strings_read_back_and_prune_only_blocks_without_the_value(
        writes in writes(),
        wanted in prop::collection::vec(0usize..3, 0..3),
        null in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let model = load(&store, &writes, 0);
        let full = rows(&store.snapshot().scan(&ScanRequest::table("m")).unwrap());
        prop_assert_eq!(full.len(), model.len());
        for r in &full {
            let Cell::T(t) = r["time"] else { panic!("time") };
            let want = model[&(device_of(r), t)].map(str::to_string);
            prop_assert_eq!(state_of(r), want);
        }
        let values: Vec<String> = wanted.iter().map(|&i| STATES[i].to_string()).collect();
        let mut req = ScanRequest::table("m");
        req.string_sets.push(StringSet { column: "state".into(), values: values.clone(), null });
        if writes.iter().all(|w| w.2.is_none()) {
            // No row ever had a state: there is no such column, and a condition on it says so.
            let refused = matches!(
                store.snapshot().scan(&req),
                Err(ScanError::UnknownColumn { .. })
            );
            prop_assert!(refused, "a condition on a column no row has is refused");
            return Ok(());
        }
        let batches = store.snapshot().scan(&req).unwrap();
        let matches = |r: &BTreeMap<String, Cell>| match state_of(r) {
            Some(s) => values.contains(&s),
            None => null,
        };
        let pruned: Vec<_> = rows(&batches).into_iter().filter(|r| matches(r)).collect();
        let expected: Vec<_> = full.iter().filter(|r| matches(r)).cloned().collect();
        prop_assert_eq!(pruned, expected);
    }

    #[test]
    fn latest_by_a_string_is_one_row_where_it_is_constant_and_the_series_where_not(
        writes in writes(),
        fixed in 0u8..16,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let model = load(&store, &writes, fixed);
        let full = rows(&store.snapshot().scan(&ScanRequest::table("m")).unwrap());
        let mut req = ScanRequest::table("m");
        req.latest = true;
        req.latest_by = vec!["state".into()];
        let latest = rows(&store.snapshot().scan(&req).unwrap());
        for dev in 0u8..4 {
            let series: Vec<_> = full.iter().filter(|r| device_of(r) == dev).cloned().collect();
            let got: Vec<_> = latest.iter().filter(|r| device_of(r) == dev).cloned().collect();
            let states: Vec<_> = model
                .iter()
                .filter(|((d, _), _)| *d == dev)
                .map(|(_, s)| *s)
                .collect();
            let constant = states.windows(2).all(|w| w[0] == w[1]);
            if constant {
                prop_assert_eq!(got, series.last().cloned().into_iter().collect::<Vec<_>>());
            } else {
                prop_assert_eq!(got, series);
            }
        }
    }
}

#[test]
fn string_fields_are_dictionary_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let writes: Vec<_> = (0..100)
        .map(|t| (0u8, t, Some(t as usize % 3), t == 50))
        .collect();
    load(&store, &writes, 0);
    let batches = store
        .snapshot()
        .scan(&ScanRequest::table("m").columns(&["state"]))
        .unwrap();
    let ty = batches[0].schema().field(0).data_type().clone();
    assert_eq!(
        ty,
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
    );
    let states: Vec<_> = rows(&batches).iter().map(state_of).collect();
    let want: Vec<_> = (0..100).map(|t| Some(STATES[t % 3].to_string())).collect();
    assert_eq!(states, want);
}

#[test]
fn a_value_no_block_holds_prunes_every_block() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let writes: Vec<_> = (0..200)
        .map(|t| ((t % 4) as u8, t, Some(0), t == 120))
        .collect();
    load(&store, &writes, 0);
    let mut req = ScanRequest::table("m");
    req.string_sets.push(StringSet {
        column: "state".into(),
        values: vec!["fault".into()],
        null: false,
    });
    let (batches, m) = store.snapshot().scan_with_metrics(&req).unwrap();
    assert_eq!(rows(&batches).len(), 0);
    assert_eq!(m.blocks_decoded, 0);
    assert!(m.blocks_pruned > 0);
}

#[test]
fn latest_with_a_string_set_on_the_constant_column_reads_only_matching_series() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    // four devices, each with one state throughout (d0 idle, d1 moving, d2 fault, d3 idle),
    // part sealed and part in the head
    let writes: Vec<_> = (0..200)
        .map(|t| ((t % 4) as u8, t, None, t == 120))
        .collect();
    load(&store, &writes, 0b1111);
    let mut req = ScanRequest::table("m");
    req.latest = true;
    req.latest_by = vec!["state".into()];
    req.string_sets.push(StringSet {
        column: "state".into(),
        values: vec!["moving".into()],
        null: false,
    });
    let (batches, m) = store.snapshot().scan_with_metrics(&req).unwrap();
    let got = rows(&batches);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(device_of(&got[0]), 1);
    assert_eq!(got[0]["time"], Cell::T(197));
    assert_eq!(state_of(&got[0]).as_deref(), Some("moving"));
    assert!(m.blocks_pruned > 0, "{m:?}");

    // a wanted null matches no device (every row has a state)
    req.string_sets[0] = StringSet {
        column: "state".into(),
        values: vec![],
        null: true,
    };
    assert_eq!(rows(&store.snapshot().scan(&req).unwrap()).len(), 0);
}
