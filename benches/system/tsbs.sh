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
# TSBS_PROFILE (or MAST_PROFILE) = release | debug; TSBS_SKIP_BUILD=1 uses the binaries as built.
# Needs python3 with duckdb and pyarrow (installed from PyPI with pip if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
PROFILE=${TSBS_PROFILE:-${MAST_PROFILE:-release}}
unset MAST_PROFILE # not a server setting: mast refuses unknown MAST_* variables
case $PROFILE in
release) flag=--release ;;
debug) flag= ;;
*) echo "TSBS_PROFILE must be release or debug, not $PROFILE" >&2; exit 2 ;;
esac
if [ "${TSBS_SKIP_BUILD:-0}" != 1 ]; then
    # shellcheck disable=SC2086
    cargo build $flag -p mast-engine --bin mast -p mast-loadgen
fi
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE
for b in mast mast-loadgen; do
    [ -x "$BIN/$b" ] || { echo "no $BIN/$b: build it first" >&2; exit 1; }
done
if ! python3 -c 'import duckdb, pyarrow' 2>/dev/null; then
    python3 -m pip install --quiet duckdb pyarrow ||
        python3 -m pip install --quiet --break-system-packages duckdb pyarrow
fi
exec python3 benches/system/tsbs.py --bin-dir "$BIN" --profile "$PROFILE" "$@"
