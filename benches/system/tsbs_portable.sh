#!/usr/bin/env bash
# TSBS IoT in plain, portable SQL beside DuckDB: three ingests of the same fleet (tags as JSON
# strings, the same JSON with those keys declared tags, tags as line-protocol tags), each with
# the data unsealed and then sealed, results
# compared row for row. The steps and every knob are described in benches/system/tsbs_portable.py.
#
#   benches/system/tsbs_portable.sh [--out results.json]
#
# Default dataset: 100 trucks × 24 h at 10 s (864,000 rows per table); TSBS_TRUCKS=1000 for the
# larger one. TSBS_PROFILE (or MAST_PROFILE) = release | debug; TSBS_SKIP_BUILD=1 uses the
# binaries as built. Needs python3 with duckdb and pyarrow (installed from PyPI if missing).
set -euo pipefail
BENCH_VARS=TSBS
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
pip_ensure 'duckdb, pyarrow' duckdb pyarrow
exec python3 benches/system/tsbs_portable.py --bin-dir "$BIN" "$@"
