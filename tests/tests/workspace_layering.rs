//! The crate dependency order of ARCHITECTURE.md §2 is law: this test reads `cargo metadata` and
//! fails when a crate depends on a Mast crate it may not see.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// For each Mast crate, the Mast crates it may depend on (normal, dev or build dependencies).
fn allowed() -> BTreeMap<&'static str, BTreeSet<&'static str>> {
    let mut m = BTreeMap::new();
    m.insert("mast-protocol", BTreeSet::new());
    m.insert("mast-meta", BTreeSet::new());
    m.insert(
        "mast-broker",
        BTreeSet::from(["mast-protocol", "mast-meta"]),
    );
    m.insert("mast-devices", BTreeSet::from(["mast-meta"]));
    m.insert("mast-storage", BTreeSet::new());
    m.insert("mast-query", BTreeSet::from(["mast-storage"]));
    m.insert(
        "mast-engine",
        BTreeSet::from([
            "mast-protocol",
            "mast-meta",
            "mast-broker",
            "mast-devices",
            "mast-storage",
            "mast-query",
        ]),
    );
    m.insert("mast-loadgen", BTreeSet::from(["mast-protocol"]));
    m.insert(
        "mast-benches",
        BTreeSet::from(["mast-protocol", "mast-storage", "mast-query", "mast-engine"]),
    );
    m.insert(
        "mast-tests",
        BTreeSet::from(["mast-protocol", "mast-storage", "mast-query", "mast-engine"]),
    );
    m
}

fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn crates_depend_only_downwards() {
    let allowed = allowed();
    let meta = metadata();
    let packages = meta["packages"].as_array().expect("packages array");
    let mut seen = BTreeSet::new();
    for p in packages {
        let name = p["name"].as_str().expect("package name");
        let Some(may) = allowed.get(name) else {
            panic!("crate {name} is not in the layering table; add it to ARCHITECTURE order first");
        };
        seen.insert(name);
        for d in p["dependencies"].as_array().expect("dependencies array") {
            let dep = d["name"].as_str().expect("dependency name");
            if dep.starts_with("mast-") {
                assert!(
                    may.contains(dep),
                    "{name} depends on {dep}, which the layering forbids (allowed: {may:?})"
                );
            }
        }
    }
    let expected: BTreeSet<&str> = allowed.keys().copied().collect();
    assert_eq!(
        seen, expected,
        "workspace members differ from the layering table"
    );
}

#[test]
fn protocol_and_storage_never_see_each_other() {
    let allowed = allowed();
    assert!(!allowed["mast-protocol"].contains("mast-storage"));
    assert!(!allowed["mast-storage"].contains("mast-protocol"));
    // and the real graph agrees (the first test checks the table; this pins the table itself)
    let meta = metadata();
    for p in meta["packages"].as_array().expect("packages") {
        let name = p["name"].as_str().unwrap_or_default();
        if name == "mast-protocol" || name == "mast-storage" {
            let internal: Vec<&str> = p["dependencies"]
                .as_array()
                .expect("deps")
                .iter()
                .filter_map(|d| d["name"].as_str())
                .filter(|d| d.starts_with("mast-"))
                .collect();
            assert!(internal.is_empty(), "{name} depends on {internal:?}");
        }
    }
}

/// The direct dependencies of workspace member `name`.
fn dependencies(meta: &serde_json::Value, name: &str) -> BTreeSet<String> {
    let package = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} is a workspace member"));
    package["dependencies"]
        .as_array()
        .expect("deps")
        .iter()
        .filter_map(|d| d["name"].as_str().map(str::to_owned))
        .collect()
}

fn internal(deps: &BTreeSet<String>) -> BTreeSet<&str> {
    deps.iter()
        .map(String::as_str)
        .filter(|d| d.starts_with("mast-"))
        .collect()
}

/// The broker knows MQTT and the metadata store, nothing of telemetry or devices: neither the
/// storage engine nor SQL is among its dependencies, in the table or in the real graph.
#[test]
fn the_broker_sees_neither_storage_nor_query() {
    let allowed = allowed();
    for forbidden in ["mast-storage", "mast-query", "mast-engine"] {
        assert!(!allowed["mast-broker"].contains(forbidden));
    }
    let deps = dependencies(&metadata(), "mast-broker");
    assert_eq!(
        internal(&deps),
        BTreeSet::from(["mast-protocol", "mast-meta"])
    );
}

/// The device domain is sans IO: it sees the metadata store's types, not the broker, the
/// storage engine or SQL.
#[test]
fn the_device_domain_sees_only_the_metadata_types() {
    let deps = dependencies(&metadata(), "mast-devices");
    assert_eq!(internal(&deps), BTreeSet::from(["mast-meta"]));
    for io in ["tokio", "mio", "redb", "rustls"] {
        assert!(!deps.contains(io), "mast-devices depends on {io}");
    }
}
