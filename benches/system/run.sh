#!/usr/bin/env bash
# The standard side-by-side suite: Mast and Mosquitto under the same load on the same machine,
# then Mast's own ingest and storage figures, then the TSBS query comparison with DuckDB.
#
#   benches/system/run.sh [--record] [--quick]
#
# Each step starts a fresh broker. Mast runs on its defaults. Mosquitto is the Debian package,
# configured with persistence false, max_queued_messages 10000, max_inflight_messages 0 and
# set_tcp_nodelay true. The steps:
#   1. Throughput and latency (`mast-loadgen bench`, 100 connections, 64-byte payloads):
#      p2p (100 publishers, each to its own topic with its own subscriber) and fan-in
#      (100 publishers, 1 subscriber on bench/#), at QoS 0 and QoS 1.
#      Max: unthrottled publishers, received_per_sec (what reached the subscribers), median of
#      RUNS runs of DUR s. A run lasts until the subscribers have had everything: unthrottled at
#      QoS 0, Mosquitto takes in millions of messages in the first second and needs about a
#      minute to deliver them, whatever DUR is.
#      Latency: one run paced at 50 % of that broker's max (`--rate`); e2e and ack p50/p99.
#      Then both brokers paced at the same rate (half the lower max), for latency like for like.
#   2. Memory per idle connection: broker RSS before and while `mast-loadgen conn` holds 10,000
#      connections, and again with the most this machine allows: N = fd limit - 500 (the script
#      raises the soft limit to the hard one). Then, once they have closed, the RSS growth while
#      the same client ids connect again (state a broker keeps per device is paid once).
#   3. Mast only: `mast-loadgen iot --fast-forward` (1,000 trucks × IOT_HOURS [6] h, --verify) for points/s
#      and missing points. Then bytes per point: on disk after a clean stop (du -sb; at this size
#      the data is still in the WAL, the head has not sealed), and in segments (system.segments)
#      once a restart with max_head_age_secs = 1 has sealed the head, with du -sb again after it.
#   4. benches/system/tsbs.sh (TSBS_TRUCKS, TSBS_HOURS; it prints its own table).
#
# Output: one JSON line per measurement on stdout, also saved to
# target/bench-results/DATE/raw.jsonl, and the plots (benches/system/plot.py). At the end, a
# Markdown section, rendered by benches/system/report.py (section.md in the same directory).
# --record appends that section to docs/benchmarks.md and puts the plots in docs/img/, then runs
# tsbs.sh with --record, which appends its own section after it.
# --quick: 1 run of 3 s per scenario, a 3 s hold, 1 h of fleet, TSBS_TRUCKS=100 TSBS_HOURS=2.
#
# Environment: RUNS [3], DUR [10 s], HOLD [5 s: how long the idle connections stay up], IOT_HOURS [6],
# CONNS_MAX [fd limit - 500], BENCH_MACHINE (names the machine in the heading; TSBS_MACHINE
# follows it), MAST_PROFILE, SKIP_BUILD=1 (see lib.sh), TSBS_* (see tsbs.py).
# Needs mosquitto (Debian package), curl, python3; matplotlib, duckdb and pyarrow are installed
# from PyPI if missing.
set -euo pipefail
RECORD=0 QUICK=0
for arg in "$@"; do
    case $arg in
    --record) RECORD=1 ;;
    --quick) QUICK=1 ;;
    *) echo "usage: benches/system/run.sh [--record] [--quick]" >&2; exit 2 ;;
    esac
done
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
make_work
for c in mosquitto curl; do
    command -v "$c" >/dev/null || { echo "needs $c (apt-get install $c)" >&2; exit 1; }
done

if [ "$QUICK" = 1 ]; then
    RUNS=${RUNS:-1} DUR=${DUR:-3} HOLD=${HOLD:-3} IOT_HOURS=${IOT_HOURS:-1}
    export TSBS_TRUCKS=${TSBS_TRUCKS:-100} TSBS_HOURS=${TSBS_HOURS:-2}
    export TSBS_LOAD_SECS=${TSBS_LOAD_SECS:-5}
else
    RUNS=${RUNS:-3} DUR=${DUR:-10} HOLD=${HOLD:-5} IOT_HOURS=${IOT_HOURS:-6}
fi
MAST_PORT=18881
MOSQ_PORT=18882
MAST_HTTP_PORT=18883
SIZE=64
CONNS=100

hard=$(ulimit -Hn)
[ "$hard" != unlimited ] || hard=$(cat /proc/sys/fs/nr_open)
ulimit -n "$hard"
CONNS_MAX=${CONNS_MAX:-$((hard - 500))}

DATE=$(date -u +%Y-%m-%d)
STARTED=$(date -u +%H:%M)
RESULTS=target/bench-results/$DATE
[ ! -e "$RESULTS/raw.jsonl" ] || RESULTS=$RESULTS-$(date -u +%H%M%S)
mkdir -p "$RESULTS/logs"
RAW=$RESULTS/raw.jsonl
: >"$RAW"
echo "results in $RESULTS" >&2


# bench BROKER SCENARIO QOS KIND RUN RATE: one `mast-loadgen bench` run on a fresh broker;
# RATE = total msgs/s (--rate), 0 = unthrottled.
bench() {
    local b=$1 s=$2 q=$3 kind=$4 run=$5 rate=$6 rc=0 args=()
    [ "$s" != fanin ] || args+=(--subs 1)
    [ "$rate" = 0 ] || args+=(--rate "$rate")
    log "$b $s QoS $q: $kind run $run${args[*]:+ (${args[*]})}"
    start_broker "$b"
    lg "$RESULTS/logs/$b-$s-q$q-$kind-$run.stderr" bench "$s" -p "$PORT" -c "$CONNS" "${args[@]}" \
        -q "$q" -s "$SIZE" -d "$DUR" --json >"$WORK/out.json" || rc=$?
    stop_broker
    emit "{\"broker\":\"$b\",\"kind\":\"$kind\",\"scenario\":\"$s\",\"qos\":$q,\"run\":$run,\"rate\":$rate,\"exit\":$rc}" "$WORK/out.json"
}
# Median received_per_sec of the unthrottled runs, rounded down.
max_rate() { # broker scenario qos
    python3 - "$RAW" "$@" <<'EOF'
import json, statistics, sys
raw, b, s, q = sys.argv[1:]
v = []
for line in open(raw):
    d = json.loads(line)
    if (d.get("kind"), d.get("broker"), d.get("scenario"), str(d.get("qos"))) == ("max", b, s, q) \
            and d.get("result", {}).get("received_per_sec") is not None:
        v.append(d["result"]["received_per_sec"])
print(int(statistics.median(v)) if v else 0)
EOF
}


# idle BROKER N: RSS growth while N connections are held; then, after they closed, RSS growth
# while the same client ids connect again (a broker that keeps per-device state pays once).
idle() {
    local b=$1 n=$2 before after closed=null again=null rc
    log "$b: $n idle connections"
    start_broker "$b"
    sleep 1
    before=$(rss_kb "$PID")
    hold "$n" "$RESULTS/logs/$b-conn-$n.stderr"
    after=$HELD rc=$RC
    cp "$WORK/conn.json" "$WORK/conn-first.json"
    if [ "$after" != null ]; then
        sleep 2
        closed=$(rss_kb "$PID")
        hold "$n" "$RESULTS/logs/$b-conn-$n-again.stderr"
        again=$HELD
    fi
    stop_broker
    emit "{\"broker\":\"$b\",\"kind\":\"idle\",\"connections\":$n,\"rss_before_kb\":$before,\"rss_after_kb\":$after,\"rss_closed_kb\":$closed,\"rss_again_kb\":$again,\"exit\":$rc}" "$WORK/conn-first.json"
}

sql() { # query -> JSON rows on stdout
    curl -sS --max-time 120 -X POST --data-binary @- "http://127.0.0.1:$MAST_HTTP_PORT/api/v1/sql" <<<"$1"
}

# 1 and 2, Mast then Mosquitto.
for b in mast mosquitto; do
    for s in p2p fanin; do
        for q in 0 1; do
            for r in $(seq "$RUNS"); do bench "$b" "$s" "$q" max "$r" 0; done
            max=$(max_rate "$b" "$s" "$q")
            if [ "$max" -ge 2 ]; then
                bench "$b" "$s" "$q" paced 1 $((max / 2))
            else
                log "$b $s QoS $q: no max rate, so no paced run"
            fi
        done
    done
    idle "$b" 10000
    idle "$b" "$CONNS_MAX"
done

# 1b. Latency like for like: both brokers paced at the same rate, half the lower of their maxima.
for s in p2p fanin; do
    for q in 0 1; do
        a=$(max_rate mast "$s" "$q") m=$(max_rate mosquitto "$s" "$q")
        same=$(( (a < m ? a : m) / 2 ))
        [ "$same" -ge 1 ] || { log "$s QoS $q: no common rate"; continue; }
        for b in mast mosquitto; do bench "$b" "$s" "$q" same 1 "$same"; done
    done
done

# 3. Mast: IoT ingest, then bytes per point.
IOT_ARGS=(--fast-forward --trucks 1000 --duration "${IOT_HOURS}h" --batch 60 --format line -q 1 --threads 2)
log "mast: iot ${IOT_ARGS[*]}"
start_broker mast
rc=0
lg "$RESULTS/logs/mast-iot.stderr" iot -p "$PORT" "${IOT_ARGS[@]}" --json --verify \
    --http "127.0.0.1:$MAST_HTTP_PORT" >"$WORK/iot.json" || rc=$?
stop_broker
emit "{\"broker\":\"mast\",\"kind\":\"iot\",\"args\":\"${IOT_ARGS[*]}\",\"exit\":$rc}" "$WORK/iot.json"
disk=$(du -sb "$WORK/data" | cut -f1)
# The head (128 MiB per shard by default) holds all of it: restart with a 1 s head age so the
# replayed head seals into segments, and wait until every stored row is in one.
KEEP_DATA=1 start_broker mast $'[storage]\nmax_head_age_secs = 1'
total=$(head -1 "$WORK/iot.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rows"])' 2>/dev/null || echo 0)
for _ in $(seq 120); do
    sealed=$(sql "SELECT coalesce(sum(rows), 0) AS n FROM system.segments WHERE table_name IN ('readings', 'diagnostics')" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["n"])' 2>/dev/null || echo 0)
    [ "$sealed" -lt "$total" ] || break
    sleep 0.5
done
sql 'SELECT table_name, sum(rows) AS rows, sum(bytes) AS bytes, count(*) AS segments FROM system.segments GROUP BY table_name' >"$WORK/segments.json" || true
sql 'SELECT (SELECT count(*) FROM readings) AS readings, (SELECT count(*) FROM diagnostics) AS diagnostics' >"$WORK/counts.json" || true
stop_broker
python3 - "$WORK/segments.json" "$WORK/counts.json" "$disk" "$(du -sb "$WORK/data" | cut -f1)" \
    >"$WORK/storage.json" <<'EOF'
import json, sys
out = {"disk_bytes": int(sys.argv[3]), "disk_bytes_sealed": int(sys.argv[4])}
for key, path in (("segments", sys.argv[1]), ("stored_rows", sys.argv[2])):
    text = ""
    try:
        with open(path) as f:
            text = f.read()
        v = json.loads(text)
        if not isinstance(v, list):
            raise ValueError("not a list of rows")
        out[key] = v if key == "segments" else v[0]
    except (OSError, ValueError, IndexError) as e:
        out[key + "_error"] = f"{e}: {text[:500]}"
print(json.dumps(out))
EOF
emit '{"broker":"mast","kind":"storage"}' "$WORK/storage.json"

# Plots.
if [ "$RECORD" = 1 ]; then
    IMG_DIR=docs/img RATE_PNG=bench-$DATE-rate.png LAT_PNG=bench-$DATE-latency.png
    mkdir -p "$IMG_DIR"
else
    IMG_DIR=$RESULTS RATE_PNG=rate.png LAT_PNG=latency_cdf.png
fi
plotted=0
if pip_ensure matplotlib matplotlib &&
    python3 benches/system/plot.py "$RESULTS" "$IMG_DIR" --names "$RATE_PNG" "$LAT_PNG" >&2; then
    plotted=1
else
    log "plotting failed; the section goes without images"
fi

# The section.
cmd="benches/system/run.sh$([ "$RECORD" = 0 ] || echo ' --record')$([ "$QUICK" = 0 ] || echo ' --quick')"
TSBS_CMD="TSBS_TRUCKS=${TSBS_TRUCKS:-1000} TSBS_HOURS=${TSBS_HOURS:-28} benches/system/tsbs.sh"
heading_machine=${BENCH_MACHINE:-$(machine)}
# Image links relative to the section's file: docs/benchmarks.md, or section.md beside them.
if [ "$RECORD" = 1 ]; then img_link=img/; else img_link=; fi
python3 - "$cmd" "$DATE" "$STARTED" "$(date -u +%H:%M)" "$heading_machine" "$(machine)" \
    "$(mosquitto_version)" "$PROFILE" "$RUNS" "$DUR" "$HOLD" "$CONNS" "$SIZE" "$hard" \
    "$CONNS_MAX" "$plotted" "$img_link$RATE_PNG" "$img_link$LAT_PNG" "$TSBS_CMD" "$RECORD" \
    >"$WORK/meta.json" <<'EOF'
import json, sys
keys = ["command", "date", "started", "finished", "heading_machine", "machine", "mosquitto",
        "profile", "runs", "dur", "hold", "connections", "size", "fd_limit", "conns_max",
        "plotted", "rate_png", "latency_png", "tsbs_command", "record"]
m = dict(zip(keys, sys.argv[1:]))
for k in ("runs", "dur", "hold", "connections", "size", "fd_limit", "conns_max", "plotted",
          "record"):
    m[k] = int(m[k])
print(json.dumps(m))
EOF
emit '{"kind":"meta"}' "$WORK/meta.json" >/dev/null
python3 benches/system/report.py "$RESULTS" >"$RESULTS/section.md"
if [ "$RECORD" = 1 ]; then
    { echo; cat "$RESULTS/section.md"; } >>docs/benchmarks.md
    log "appended to docs/benchmarks.md"
fi

# 4. TSBS beside DuckDB: its own table, on stderr and in tsbs.md.
log "tsbs: $TSBS_CMD"
tsbs_env=(TSBS_PROFILE="$PROFILE" TSBS_SKIP_BUILD=1)
[ -z "${TSBS_MACHINE:-${BENCH_MACHINE:-}}" ] || tsbs_env+=(TSBS_MACHINE="${TSBS_MACHINE:-$BENCH_MACHINE}")
tsbs_args=()
[ "$RECORD" = 0 ] || tsbs_args=(--record)
rc=0
env "${tsbs_env[@]}" benches/system/tsbs.sh "${tsbs_args[@]}" 2>&1 | tee "$RESULTS/tsbs.md" >&2 || rc=$?
[ "$rc" = 0 ] || log "tsbs.sh failed (exit $rc); see $RESULTS/tsbs.md"

echo
cat "$RESULTS/section.md"
log "results in $RESULTS"
