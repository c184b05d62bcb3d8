#!/usr/bin/env bash
# The TSBS IoT query set through `mast-loadgen query`: latency percentiles per query in a closed
# loop (1 and 2 clients) and in an open loop (queries due at a fixed rate, latency counted from
# when each was due), over a fleet loaded with `mast-loadgen iot`.
#
#   benches/system/query.sh [--record]
#
# QUERY_TRUCKS [1000] × QUERY_HOURS [6] h of fleet at 10 s; QUERY_SECS [30] per loop;
# QUERY_RATE [5] queries/s for the open loop (8 clients). --record appends a section to
# docs/benchmarks.md (BENCH_MACHINE names the machine). SKIP_BUILD=1: see lib.sh.
set -euo pipefail
RECORD=0
for arg in "$@"; do
    case $arg in
    --record) RECORD=1 ;;
    *) echo "usage: benches/system/query.sh [--record]" >&2; exit 2 ;;
    esac
done
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
make_work
TRUCKS=${QUERY_TRUCKS:-1000} HOURS=${QUERY_HOURS:-6} SECS=${QUERY_SECS:-30} RATE=${QUERY_RATE:-5}
# shellcheck disable=SC2034 # read by start_broker (lib.sh)
MAST_PORT=18891 MAST_HTTP_PORT=18892 MOSQ_PORT=18893
STARTED=$(date -u +%H:%M)
start_broker mast
echo "loading $TRUCKS trucks × $HOURS h" >&2
"$LG" iot -p "$PORT" --fast-forward -c "$TRUCKS" -d "${HOURS}h" --batch 60 --threads 2 --json \
    --verify --http "127.0.0.1:$MAST_HTTP_PORT" >"$WORK/iot.json" 2>/dev/null
runs=(
    "closed loop, 1 client|-c 1"
    "closed loop, 2 clients|-c 2"
    "open loop, $RATE queries/s|--rate $RATE -c 8"
)
for r in "${runs[@]}"; do
    label=${r%%|*} args=${r#*|}
    echo "query: $label" >&2
    # shellcheck disable=SC2086
    "$LG" query --http "127.0.0.1:$MAST_HTTP_PORT" $args -d "$SECS" --json 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); d["label"]=sys.argv[1]; print(json.dumps(d))' "$label" \
            >>"$WORK/query.jsonl"
done
stop_broker
FINISHED=$(date -u +%H:%M)

section=$(python3 - "$WORK/iot.json" "$WORK/query.jsonl" <<EOF
import json, sys, textwrap
iot = {}
for line in open(sys.argv[1]):  # the summary, then the --verify line
    iot.update(json.loads(line))
runs = [json.loads(l) for l in open(sys.argv[2])]
ms = lambda us: f"{us / 1000:.1f}"
print(f"## TSBS queries through mast-loadgen query — $(date -u +%Y-%m-%d), $(machine)")
print()
missing = iot.get("verify", {}).get("missing_points", "?")
print(textwrap.fill(
      f"\`QUERY_TRUCKS=$TRUCKS QUERY_HOURS=$HOURS benches/system/query.sh{' --record' if $RECORD else ''}\` "
      f"($STARTED–$FINISHED UTC, $PROFILE build). Mast on its defaults with {iot['points']:,} "
      f"points ({iot['trucks']:,} trucks × $HOURS h, loaded by \`mast-loadgen iot --fast-forward\`, "
      f"{missing} missing). \`mast-loadgen query\` ran the ten TSBS IoT queries round robin for "
      "$SECS s per loop: closed loops with 1 and 2 clients, and an open loop with queries due at "
      "$RATE/s (8 clients; latency from when each query was due). Latency in ms, p50 / p99.",
      100, break_long_words=False, break_on_hyphens=False))
print()
print("| query | " + " | ".join(r["label"] for r in runs) + " |")
print("|---|" + "---|" * len(runs))
names = ["last-loc", "low-fuel", "high-load", "stationary-trucks", "long-driving-sessions",
         "avg-vs-projected-fuel-consumption", "avg-daily-driving-duration", "avg-load",
         "daily-activity", "breakdown-frequency"]
for n in names:
    cells = []
    for r in runs:
        q = r["by_query"].get(n)
        cells.append(f"{ms(q['latency_us']['p50'])} / {ms(q['latency_us']['p99'])} ({q['count']})" if q else "–")
    print(f"| {n} | " + " | ".join(cells) + " |")
cells = [f"{ms(r['latency_us']['p50'])} / {ms(r['latency_us']['p99'])}" for r in runs]
print("| **all** | " + " | ".join(cells) + " |")
print("| queries/s | " + " | ".join(f"{r['queries_per_sec']}" for r in runs) + " |")
print("| errors | " + " | ".join(str(sum(r['errors'].values())) for r in runs) + " |")
print()
print("In brackets: how many times the query ran in that loop.")
EOF
)
echo "$section"
if [ "$RECORD" = 1 ]; then
    printf '\n%s\n' "$section" >>docs/benchmarks.md
    echo "appended to docs/benchmarks.md" >&2
fi
