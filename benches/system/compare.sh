#!/usr/bin/env bash
# An OLD and a NEW build of the server measured side by side in one run, on a subset of
# ingest.sh and run.sh: telemetry ingest, fan-in throughput, memory per idle connection.
#
#   benches/system/compare.sh OLD_MAST_BIN NEW_MAST_BIN [RUNS] [DURATION_SECS]
#
# Both servers are driven by the same mast-loadgen (the one lib.sh finds and builds). The two
# mast binaries are copied into the work dir when the script starts, so a rebuild by lib.sh (of
# target/PROFILE/mast, if NEW is that) does not change what is measured; lib.sh's start_broker
# runs "$BIN/mast", and BIN points at the copy of the build under test. Every run starts a
# fresh server (a new data dir, the embedded defaults: an empty config file) and stops it.
# Scenarios; within each, OLD and NEW alternate (old, new, old, new…), RUNS [3] runs each:
#   json-1, json-100 at QoS 0 and QoS 1: ingest.sh's Mast runs. `mast-loadgen pub`, 100
#      publishers as fast as the server accepts, client id = device id, topic
#      devices/{id}/telemetry, -V 4 -F 64, for DUR [10] s; json-1 = 1 point per message,
#      json-100 = 10 rows × 10 fields. msgs/s and points/s accepted (QoS 0: sent; QoS 1:
#      PUBACKed, each after its WAL fsync). Then the server is stopped, the stored rows are
#      counted with the same build's `mast export --count` and checked against what was
#      acknowledged: on a loss the script says so and exits 1.
#   fan-in QoS 1 → 1 subscriber: run.sh's step 1 max run. `mast-loadgen bench fanin -c 100
#      --subs 1 -q 1 -s 64 -d DUR`: 100 publishers, each to its own topic, one subscriber on
#      bench/#, unthrottled; msgs/s that reached the subscriber (received_per_sec). A run lasts
#      until the subscriber has had everything, so it can take longer than DUR.
#   idle connections: run.sh's step 2 first measurement. The server's RSS (VmRSS) 1 s after it
#      starts and while `mast-loadgen conn` holds 10,000 connections (client ids idle-0…, MQTT 5,
#      keep-alive 300 s) for HOLD [5] s; bytes per connection = the growth / connections held.
#      The soft fd limit is raised to the hard one, as run.sh does.
#
# Output: one JSON line per measurement on stdout (build "old" or "new", the loadgen's JSON
# under "pub" or "result"). At the end, a Markdown section for docs/benchmarks.md: the command
# line, the machine (nproc, CPU model, RAM, kernel), the date, and a table of the medians,
# scenario | old | new | new/old (higher is better, except for bytes per idle connection).
# Exits 1 if a run failed (after the table), or at once on an ingest loss.
#
# Environment: HOLD [5 s], BENCH_MACHINE (names the machine), MAST_PROFILE (the loadgen's
# profile) and SKIP_BUILD=1 (see lib.sh; lib.sh also wants target/PROFILE/mast to exist).
set -euo pipefail
usage() { echo "usage: benches/system/compare.sh OLD_MAST_BIN NEW_MAST_BIN [RUNS=3] [DUR=10]" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 4 ] || usage
RUNS=${3:-3} DUR=${4:-10} HOLD=${HOLD:-5}
for n in "$RUNS" "$DUR" "$HOLD"; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || usage
done
# The command line as given, with the settings lib.sh reads (before it unsets MAST_PROFILE).
CMD=
for v in SKIP_BUILD MAST_PROFILE CARGO_TARGET_DIR HOLD; do
    [ -z "${!v:-}" ] || CMD+="$v=${!v} "
done
CMD+="benches/system/compare.sh$(printf ' %q' "$@")"
# Paths are the caller's: resolve them before lib.sh changes to the repository root.
OLD_SRC=$(readlink -f "$1") NEW_SRC=$(readlink -f "$2")
for b in "$OLD_SRC" "$NEW_SRC"; do
    [ -f "$b" ] && [ -x "$b" ] || { echo "not an executable file: $b" >&2; exit 1; }
done
SNAP=$(mktemp -d)
trap 'rm -rf "$SNAP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir "$SNAP/old" "$SNAP/new"
cp "$OLD_SRC" "$SNAP/old/mast"
cp "$NEW_SRC" "$SNAP/new/mast"

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
make_work # its EXIT trap replaces the one above: move the copies where it cleans up
mv "$SNAP" "$WORK/bins"
# shellcheck disable=SC2034 # read by start_broker (lib.sh)
MAST_PORT=18861 MAST_HTTP_PORT=0 MOSQ_PORT=0 KEEP_DATA=0
RAW=$WORK/raw.jsonl
: >"$RAW"
FAILED=0
CONNS=100 SIZE=64 IDLE_N=10000

hard=$(ulimit -Hn)
[ "$hard" != unlimited ] || hard=$(cat /proc/sys/fs/nr_open)
ulimit -n "$hard"
[ "$hard" -gt $((IDLE_N + 500)) ] ||
    echo "the fd limit is $hard: fewer than $IDLE_N idle connections may come up" >&2

DATE=$(date -u +%Y-%m-%d)
STARTED=$(date -u +%H:%M)
# use old|new: the build start_broker (and `mast export`) run.
use() { BIN=$WORK/bins/$1; }
declare -A SRC=([old]="$OLD_SRC" [new]="$NEW_SRC")

# 1, 2. Ingest, as ingest.sh's run_mast.
payload_args() {
    case $1 in
    json-1) echo "--format json" ;;
    json-100) echo "--format json --rows 10 --fields 10" ;;
    esac
}
ingest() { # build payload qos run
    local build=$1 p=$2 q=$3 run=$4 key stored rows_per_msg acked msgs pts
    log "$build: ingest $p QoS $q, run $run"
    use "$build"
    start_broker mast
    # shellcheck disable=SC2046
    $LG pub -V 4 -p "$PORT" -c 100 -q "$q" -d "$DUR" -F 64 --prefix dev -t 'devices/%c/telemetry' \
        $(payload_args "$p") --json >"$WORK/pub.json" 2>/dev/null
    stop_broker
    "$BIN/mast" export --data-dir "$WORK/data" --count >"$WORK/count.txt"
    # telemetry; not iot.device_events
    stored=$(awk '$1 !~ /^iot\./ {n += $2} END {print n + 0}' "$WORK/count.txt")
    rows_per_msg=1; [ "$p" = json-1 ] || rows_per_msg=10
    key=sent; [ "$q" = 0 ] || key=acked
    acked=$(jget "$WORK/pub.json" "d['$key']")
    msgs=$(jget "$WORK/pub.json" "round(d['${key}_per_sec'])")
    pts=$(jget "$WORK/pub.json" "round(d['${key}_per_sec'] * d['points_per_message'])")
    echo "{\"build\":\"$build\",\"case\":\"ingest-$p-q$q\",\"kind\":\"ingest\",\"payload\":\"$p\",\"qos\":$q,\"run\":$run,\"msgs_per_sec\":$msgs,\"points_per_sec\":$pts,\"stored_rows\":$stored,\"acked_rows\":$((acked * rows_per_msg)),\"pub\":$(cat "$WORK/pub.json")}" |
        tee -a "$RAW"
    if [ "$stored" -lt $((acked * rows_per_msg)) ]; then
        echo "LOSS: $build build (${SRC[$build]}), $p QoS $q: $((acked * rows_per_msg)) rows acknowledged, $stored stored" >&2
        exit 1
    fi
}

# 3. Fan-in QoS 1 → 1 subscriber, as run.sh's bench (a max run: unthrottled).
bench() { # build scenario qos run
    local build=$1 s=$2 q=$3 run=$4 rc=0 args=() v
    [ "$s" != fanin ] || args+=(--subs 1)
    log "$build: bench $s QoS $q, run $run${args[*]:+ (${args[*]})}"
    use "$build"
    start_broker mast
    lg "$WORK/bench.stderr" bench "$s" -p "$PORT" -c "$CONNS" "${args[@]}" \
        -q "$q" -s "$SIZE" -d "$DUR" --json >"$WORK/out.json" || rc=$?
    stop_broker
    v=$(jget "$WORK/out.json" "d['received_per_sec']" 2>/dev/null) || v=null
    [ "$rc" = 0 ] && [ "$v" != null ] || { FAILED=$((FAILED + 1)); tail -5 "$WORK/bench.stderr" >&2 || true; }
    emit "{\"build\":\"$build\",\"case\":\"bench-$s-q$q\",\"kind\":\"bench\",\"scenario\":\"$s\",\"qos\":$q,\"run\":$run,\"msgs_per_sec\":$v,\"exit\":$rc}" "$WORK/out.json"
}

# 4. Idle connections, as the first half of run.sh's idle.
idle() { # build n run
    local build=$1 n=$2 run=$3 before after rc held bytes=null
    log "$build: $n idle connections, run $run"
    use "$build"
    start_broker mast
    sleep 1
    before=$(rss_kb "$PID")
    hold "$n" "$WORK/conn.stderr"
    after=$HELD rc=$RC
    stop_broker
    held=$(jget "$WORK/conn.json" "d['connected']" 2>/dev/null) || held=0
    if [ "$after" != null ] && [ "$held" -gt 0 ]; then
        bytes=$(python3 -c "print(round(($after - $before) * 1024 / $held))")
    else
        FAILED=$((FAILED + 1)); tail -5 "$WORK/conn.stderr" >&2 || true
    fi
    emit "{\"build\":\"$build\",\"case\":\"idle-$n\",\"kind\":\"idle\",\"connections\":$n,\"run\":$run,\"rss_before_kb\":$before,\"rss_after_kb\":$after,\"bytes_per_conn\":$bytes,\"exit\":$rc}" "$WORK/conn.json"
}

for p in json-1 json-100; do
    for q in 0 1; do
        for r in $(seq "$RUNS"); do
            for b in old new; do ingest "$b" "$p" "$q" "$r"; done
        done
    done
done
for r in $(seq "$RUNS"); do
    for b in old new; do bench "$b" fanin 1 "$r"; done
done
for r in $(seq "$RUNS"); do
    for b in old new; do idle "$b" "$IDLE_N" "$r"; done
done

# The section: medians per case and build, new/old.
sum() { sha256sum "$1" | cut -c1-12; }
ver() { "$1" --version 2>/dev/null | head -1 || true; }
python3 - "$RAW" "$CMD" "$DATE" "$STARTED" "$(date -u +%H:%M)" "$(machine)" "$(nproc)" \
    "$(uname -r)" "$PROFILE" "$LG" "$RUNS" "$DUR" "$HOLD" \
    "$OLD_SRC" "$(ver "$WORK/bins/old/mast")" "$(sum "$WORK/bins/old/mast")" \
    "$NEW_SRC" "$(ver "$WORK/bins/new/mast")" "$(sum "$WORK/bins/new/mast")" <<'EOF'
import json, statistics, sys
(raw, cmd, date, started, finished, machine, nproc, kernel, profile, lg, runs, dur, hold,
 old, old_ver, old_sum, new, new_ver, new_sum) = sys.argv[1:]
lines = [json.loads(l) for l in open(raw) if l.strip()]

def values(case, build, key):
    return [d[key] for d in lines
            if d["case"] == case and d["build"] == build and d.get(key) is not None]

def med(v):
    return statistics.median(v) if v else None

def num(x):
    return f"{round(x):,}"

rows = []
for p in ("json-1", "json-100"):
    for q in (0, 1):
        case = f"ingest-{p}-q{q}"
        what = "sent" if q == 0 else "PUBACKed"
        cells = []
        for b in ("old", "new"):
            m, pt = med(values(case, b, "msgs_per_sec")), med(values(case, b, "points_per_sec"))
            cells.append((pt, "failed" if m is None else f"{num(pt)} points/s ({num(m)} msgs/s)"))
        rows.append((f"ingest {p}, QoS {q} (100 publishers, {what})", cells))
cells = []
for b in ("old", "new"):
    m = med(values("bench-fanin-q1", b, "msgs_per_sec"))
    cells.append((m, "failed" if m is None else f"{num(m)} msgs/s"))
rows.append(("fan-in QoS 1 → 1 subscriber (100 publishers, received)", cells))
cells = []
for b in ("old", "new"):
    m = med(values("idle-10000", b, "bytes_per_conn"))
    short = [d["result"]["connected"] for d in lines
             if d["case"] == "idle-10000" and d["build"] == b
             and d.get("result", {}).get("connected", 10000) != 10000]
    cell = "failed" if m is None else f"{num(m)} bytes per idle connection"
    if short:
        cell += f" ({min(short):,} connected in a run)"
    cells.append((m, cell))
rows.append(("memory per idle connection (10,000 held; lower is better)", cells))

out = []
out.append(f"### Old and new build side by side — {date}, {started}–{finished} UTC")
out.append("")
out.append(f"`{cmd}`. Machine: {machine}; `nproc` {nproc}, `uname -r` {kernel}; the server "
           f"and the load generator share it. Old: `{old}` ({old_ver or 'mast'}, sha256 {old_sum}); new: `{new}` ({new_ver or 'mast'}, "
           f"sha256 {new_sum}); the same `{lg}` ({profile}) drives both. Every run starts a "
           f"fresh server on its defaults with a fresh data dir; old and new alternate, {runs} "
           f"runs each, medians. Ingest: `mast-loadgen pub -c 100 -V 4 -F 64 --format json` "
           f"(json-100: `--rows 10 --fields 10`) for {dur} s, every acknowledged row found by "
           f"`mast export --count`. Fan-in: `mast-loadgen bench fanin -c 100 --subs 1 -q 1 -s 64 "
           f"-d {dur}`, one subscriber on `bench/#`. Idle: VmRSS growth while `mast-loadgen conn "
           f"-c 10000` holds its connections ({hold} s), per connection held.")
out.append("")
out.append("| scenario | old (median) | new (median) | new/old |")
out.append("|---|---|---|---|")
for name, ((a, ta), (b, tb)) in rows:
    ratio = f"{100 * b / a:.1f} %" if a and b is not None else "–"
    out.append(f"| {name} | {ta} | {tb} | {ratio} |")
print()
print("\n".join(out))
EOF
if [ "$FAILED" != 0 ]; then
    echo "$FAILED run(s) failed: see their JSON lines" >&2
    exit 1
fi
