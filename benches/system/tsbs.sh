#!/usr/bin/env bash
# TSBS-IoT-like benchmark: ingest a truck fleet over MQTT, then time the 10 TSBS IoT queries in
# Mast (SQL over HTTP) beside DuckDB (in process, on Mast's own Parquet export of the same
# tables), check that both engines return the same results, and measure ingest while the queries
# run. The steps and every knob are described in benches/system/tsbs.py.
#
#   benches/system/tsbs.sh [--record]
#
# Default dataset: 1,000 trucks × 28 h = 10.08 M rows per table, 100.8 M points (each truck
# writes 7 + 3 points every 10 s: 3.6 M points per hour per 1,000 trucks); TSBS_TRUCKS and
# TSBS_HOURS set it. A quick check:
#   TSBS_TRUCKS=100 TSBS_HOURS=2 TSBS_LOAD_SECS=5 TSBS_PROFILE=debug benches/system/tsbs.sh
# --record appends the results to docs/benchmarks.md (set TSBS_MACHINE to name the machine).
# TSBS_PROFILE (or MAST_PROFILE) = release | debug; TSBS_SKIP_BUILD=1 (or SKIP_BUILD=1) uses the
# binaries as built.
# Needs python3 with duckdb and pyarrow (installed from PyPI with pip if missing).
set -euo pipefail
BENCH_VARS=TSBS # TSBS_PROFILE and TSBS_SKIP_BUILD before MAST_PROFILE and SKIP_BUILD
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
pip_ensure 'duckdb, pyarrow' duckdb pyarrow
exec python3 benches/system/tsbs.py --bin-dir "$BIN" --profile "$PROFILE" "$@"
