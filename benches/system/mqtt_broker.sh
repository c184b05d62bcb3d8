#!/usr/bin/env bash
# Broker throughput and memory: Mast and Mosquitto under the same load from mast-loadgen, in one run.
#
#   benches/system/mqtt_broker.sh [DURATION_SECS] [RUNS]
#
# The fan-in and publishers-only scenarios run RUNS times (default 3) each and the table shows the
# median; the rate ladder and the idle connections run once.
#
# Scenarios (each against Mast, then Mosquitto, fresh broker each time):
#   fanin-q0 / fanin-q1   100 publishers (64 B payloads, as fast as they can) -> 1 subscriber on bench/#
#   sustained-q0          the same, paced: the highest offered rate (of a fixed ladder) that the
#                         subscriber receives at least 99.5 % of, 5 s per step
#   pubonly-q0 / -q1      100 publishers, no subscriber
#   idle-10k              10,000 idle connections: broker RSS growth / connection
# Prints one JSON line per measurement and a Markdown table at the end. Needs mosquitto (Debian).
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${1:-10}
RUNS=${2:-3}
cargo build --release -p mast-engine --bin mast -p mast-loadgen >/dev/null 2>&1
BIN=${CARGO_TARGET_DIR:-target}/release
LG=$BIN/mast-loadgen
work=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT
MAST_PORT=18851
MOSQ_PORT=18852

start_broker() { # name reactors -> sets PID PORT
    case $1 in
    mast)
        rm -rf "$work/data"
        printf 'data_dir = "%s"\n[http]\nlisten = "127.0.0.1:0"\n[mqtt]\nlisten = "127.0.0.1:%s"\nreactors = %s\n' "$work/data" $MAST_PORT "$2" >"$work/mast.toml"
        MAST_LOG=warn "$BIN/mast" serve --config "$work/mast.toml" 2>>"$work/mast.log" &
        PID=$! PORT=$MAST_PORT ;;
    mosquitto)
        printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 10000\nmax_inflight_messages 0\nset_tcp_nodelay true\n' $MOSQ_PORT >"$work/mosq.conf"
        mosquitto -c "$work/mosq.conf" 2>>"$work/mosq.log" &
        PID=$! PORT=$MOSQ_PORT ;;
    esac
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && return; sleep 0.05; done
    echo "broker $1 did not start" >&2; exit 1
}
stop_broker() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
rss_kb() { awk '/VmRSS/ {print $2}' /proc/"$1"/status; }

declare -A R
run_fanin() { # label qos
    local label=$1 q=$2
    $LG sub -p "$PORT" -t 'bench/#' -q "$q" -d $((DUR + 10)) --idle-exit 2 --json >"$work/sub.json" 2>/dev/null &
    local sub=$!
    sleep 0.5
    $LG pub -p "$PORT" -c 100 -q "$q" -s 64 -d "$DUR" --json >"$work/pub.json" 2>/dev/null
    wait $sub || true
    echo "{\"broker\":\"$label\",\"scenario\":\"fanin-q$q\",\"pub\":$(cat "$work/pub.json"),\"sub\":$(cat "$work/sub.json")}"
    R[$label,fanin$q]+=" $(python3 -c "import json,sys; print(round(json.load(open('$work/sub.json'))['received_per_sec']))")"
    R[$label,fanin$q,p99]+=" $(python3 -c "import json,sys; print(round(json.load(open('$work/pub.json'))['ack_latency_us']['p99']/1000,1))")"
}
run_sustained() { # label
    local label=$1 best=0 rate sent got
    for rate in 50000 100000 200000 300000 400000 600000 800000 1000000 1200000 1500000 2000000; do
        start_broker "$name" "$reactors"
        $LG sub -p "$PORT" -t 'bench/#' -q 0 -d 20 --idle-exit 2 --json >"$work/sub.json" 2>/dev/null &
        local sub=$!
        sleep 0.5
        $LG pub -p "$PORT" -c 100 -q 0 -s 64 -d 5 -R $rate --json >"$work/pub.json" 2>/dev/null
        wait $sub || true
        stop_broker
        sent=$(python3 -c "import json; print(json.load(open('$work/pub.json'))['sent'])")
        got=$(python3 -c "import json; print(json.load(open('$work/sub.json'))['received'])")
        echo "{\"broker\":\"$label\",\"scenario\":\"sustained-q0\",\"offered\":$rate,\"sent\":$sent,\"received\":$got}"
        if [ $((got * 1000)) -ge $((sent * 995)) ]; then best=$rate; else break; fi
    done
    R[$label,sustained0]=$best
}
run_pubonly() {
    local label=$1 q=$2
    $LG pub -p "$PORT" -c 100 -q "$q" -s 64 -d "$DUR" --json >"$work/pub.json" 2>/dev/null
    echo "{\"broker\":\"$label\",\"scenario\":\"pubonly-q$q\",\"pub\":$(cat "$work/pub.json")}"
    local key=sent_per_sec; [ "$q" = 0 ] || key=acked_per_sec
    R[$label,pub$q]+=" $(python3 -c "import json; print(round(json.load(open('$work/pub.json'))['$key']))")"
}
run_idle() {
    local label=$1 before after
    before=$(rss_kb "$PID")
    $LG conn -p "$PORT" -c 10000 -d 8 --json >"$work/conn.json" 2>/dev/null &
    local lg=$!
    sleep 6
    after=$(rss_kb "$PID")
    wait $lg || true
    echo "{\"broker\":\"$label\",\"scenario\":\"idle-10k\",\"rss_before_kb\":$before,\"rss_after_kb\":$after,\"conn\":$(cat "$work/conn.json")}"
    R[$label,idle]=$(( (after - before) * 1024 / 10000 ))
}

for b in "mast:2" "mast:1" "mosquitto:1"; do
    name=${b%%:*} reactors=${b##*:}
    label=$name; [ "$name" = mast ] && label="mast-r$reactors"
    for _ in $(seq "$RUNS"); do
        for q in 0 1; do
            start_broker "$name" "$reactors"; run_fanin "$label" $q; stop_broker
            start_broker "$name" "$reactors"; run_pubonly "$label" $q; stop_broker
        done
    done
    run_sustained "$label"
    start_broker "$name" "$reactors"; run_idle "$label"; stop_broker
done

# Median of the runs (values separated by spaces).
med() { python3 -c "import statistics,sys; v=[float(x) for x in sys.argv[1:]]; m=statistics.median(v); print(int(m) if m==int(m) else m)" $1; }
for k in "${!R[@]}"; do R[$k]=$(med "${R[$k]}"); done

echo
echo "Medians of $RUNS runs (fan-in and publishers-only rows); the ladder and idle rows ran once."
echo "| scenario (100 publishers, 64 B) | Mast, 2 reactors | Mast, 1 reactor | Mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}') |"
echo "|---|---|---|---|"
echo "| QoS 0 → 1 subscriber, highest lossless offered rate, msgs/s | ${R[mast-r2,sustained0]} | ${R[mast-r1,sustained0]} | ${R[mosquitto,sustained0]} |"
echo "| QoS 0 → 1 subscriber, saturated, msgs/s delivered | ${R[mast-r2,fanin0]} | ${R[mast-r1,fanin0]} | ${R[mosquitto,fanin0]} |"
echo "| QoS 1 → 1 subscriber, msgs/s delivered | ${R[mast-r2,fanin1]} | ${R[mast-r1,fanin1]} | ${R[mosquitto,fanin1]} |"
echo "| QoS 1 → 1 subscriber, publish→PUBACK p99 ms | ${R[mast-r2,fanin1,p99]} | ${R[mast-r1,fanin1,p99]} | ${R[mosquitto,fanin1,p99]} |"
echo "| QoS 0, publishers only, msgs/s | ${R[mast-r2,pub0]} | ${R[mast-r1,pub0]} | ${R[mosquitto,pub0]} |"
echo "| QoS 1, publishers only, msgs/s acked | ${R[mast-r2,pub1]} | ${R[mast-r1,pub1]} | ${R[mosquitto,pub1]} |"
echo "| idle connection, bytes of RSS each (10,000) | ${R[mast-r2,idle]} | ${R[mast-r1,idle]} | ${R[mosquitto,idle]} |"
