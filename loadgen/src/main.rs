//! `mast-loadgen`: the fleet simulator. Its verbs (`pub`, `sub`, `conn`, `iot`, `query`) land with
//! issue 6; this binary only fixes its place in the workspace.

fn main() {
    eprintln!(
        "mast-loadgen {}: no verbs yet (MQTT {:?} codec lands first)",
        env!("CARGO_PKG_VERSION"),
        mast_protocol::ProtocolVersion::V5
    );
    std::process::exit(2);
}
