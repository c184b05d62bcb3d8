//! Criterion benchmarks live in `benches/benches/`, one file per hot path. Run them with
//! `cargo bench -p mast-benches --bench <name>`; figures go into `docs/benchmarks.md`.
