//! End-to-end and workspace-level tests live in `tests/tests/`, named `<area>_<behaviour>.rs`.
