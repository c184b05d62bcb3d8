#!/usr/bin/env bash
# End-to-end telemetry ingest over loopback: Mast storing durably vs Mosquitto routing the same
# load to one subscriber, in one run.
#
#   benches/system/ingest.sh [DURATION_SECS] [RUNS]
#
# Load: mast-loadgen pub, 100 publishers as fast as the broker accepts, client id = device id,
# topic devices/{id}/telemetry. Payloads:
#   json-1     {"ts": ms, "values": {"f0": 21.3}}                       1 point per message
#   json-100   [{"ts": ms, "values": {"f0".."f9"}}, ... 10 rows]        100 points per message
#   line-100   10 lines of "m f0=..,..,f9=.. <ns>"                      100 points per message
# at QoS 0 and QoS 1. Mast: messages/s accepted (QoS 0: sent, the server reads only what it can
# store; QoS 1: PUBACKed, each after its WAL fsync), points/s, publish→PUBACK latency; after each
# run the server is stopped and the stored rows are counted (`mast export --count`) and checked
# against what was acknowledged. Mosquitto: the same publishers plus one subscriber on
# devices/# at the same QoS; messages/s delivered to it. A paced row measures QoS 1 latency at a
# moderate rate (20,000 msgs/s). Each saturated scenario runs RUNS times (default 3); the table
# shows medians. Needs mosquitto (Debian package). MAST_PROFILE=debug uses a debug build and
# SKIP_BUILD=1 the binaries as built (see lib.sh).
set -euo pipefail
DUR=${1:-10}
RUNS=${2:-3}
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
make_work
MAST_PORT=18871
MAST_HTTP_PORT=0
MOSQ_PORT=18872

payload_args() {
    case $1 in
    json-1) echo "--format json" ;;
    json-100) echo "--format json --rows 10 --fields 10" ;;
    line-100) echo "--format line --rows 10 --fields 10" ;;
    esac
}

declare -A R
run_mast() { # payload qos
    local p=$1 q=$2 key
    start_broker mast
    # shellcheck disable=SC2046
    $LG pub -V 4 -p "$PORT" -c 100 -q "$q" -d "$DUR" -F 64 --prefix dev -t 'devices/%c/telemetry' \
        $(payload_args "$p") --json >"$WORK/pub.json" 2>/dev/null
    stop_broker
    "$BIN/mast" export --data-dir "$WORK/data" --count >"$WORK/count.txt"
    local stored rows_per_msg acked
    # telemetry (JSON) or m (the line-protocol measurement); not iot.device_events
    stored=$(awk '$1 !~ /^iot\./ {n += $2} END {print n + 0}' "$WORK/count.txt")
    rows_per_msg=1; [ "$p" = json-1 ] || rows_per_msg=10
    key=sent; [ "$q" = 0 ] || key=acked
    acked=$(jget "$WORK/pub.json" "d['$key']")
    echo "{\"broker\":\"mast\",\"payload\":\"$p\",\"qos\":$q,\"pub\":$(cat "$WORK/pub.json"),\"stored_rows\":$stored}"
    if [ "$stored" -lt $((acked * rows_per_msg)) ]; then
        echo "LOSS: $p QoS $q: $((acked * rows_per_msg)) rows acknowledged, $stored stored" >&2
        exit 1
    fi
    R[mast,$p,$q]+=" $(jget "$WORK/pub.json" "round(d['${key}_per_sec'])")"
    R[mast,$p,$q,pts]+=" $(jget "$WORK/pub.json" "round(d['${key}_per_sec'] * d['points_per_message'])")"
    [ "$q" = 0 ] || R[mast,$p,$q,lat]+=" $(jget "$WORK/pub.json" "'%.1f / %.1f' % (d['ack_latency_us']['p50']/1000, d['ack_latency_us']['p99']/1000)")"
}
run_mosquitto() { # payload qos
    local p=$1 q=$2
    start_broker mosquitto
    bg_start "$LG" sub -V 4 -p "$PORT" -t 'devices/#' -q "$q" -d $((DUR + 10)) --idle-exit 2 --json >"$WORK/sub.json" 2>/dev/null
    local sub=$BG
    sleep 0.5
    # shellcheck disable=SC2046
    $LG pub -V 4 -p "$PORT" -c 100 -q "$q" -d "$DUR" -F 64 --prefix dev -t 'devices/%c/telemetry' \
        $(payload_args "$p") --json >"$WORK/pub.json" 2>/dev/null
    bg_wait "$sub" || true
    stop_broker
    echo "{\"broker\":\"mosquitto\",\"payload\":\"$p\",\"qos\":$q,\"pub\":$(cat "$WORK/pub.json"),\"sub\":$(cat "$WORK/sub.json")}"
    R[mosq,$p,$q]+=" $(jget "$WORK/sub.json" "round(d['received_per_sec'])")"
    R[mosq,$p,$q,pts]+=" $(jget "$WORK/sub.json" "round(d['received_per_sec'] * $(jget "$WORK/pub.json" "d['points_per_message']"))")"
    [ "$q" = 0 ] || R[mosq,$p,$q,lat]+=" $(jget "$WORK/pub.json" "'%.1f / %.1f' % (d['ack_latency_us']['p50']/1000, d['ack_latency_us']['p99']/1000)")"
}
run_paced() { # broker
    start_broker "$1"
    $LG pub -V 4 -p "$PORT" -c 100 -q 1 -d "$DUR" --rate 20000 --prefix dev -t 'devices/%c/telemetry' \
        --format json --json >"$WORK/pub.json" 2>/dev/null
    stop_broker
    echo "{\"broker\":\"$1\",\"payload\":\"json-1\",\"qos\":1,\"paced\":20000,\"pub\":$(cat "$WORK/pub.json")}"
    R[$1,paced]=$(jget "$WORK/pub.json" "'%.2f / %.2f' % (d['ack_latency_us']['p50']/1000, d['ack_latency_us']['p99']/1000)")
}

for _ in $(seq "$RUNS"); do
    for p in json-1 json-100 line-100; do
        for q in 0 1; do
            run_mast "$p" "$q"
            run_mosquitto "$p" "$q"
        done
    done
done
run_paced mast
run_paced mosquitto

# Median of the runs (values separated by spaces); latency pairs take the median of each half.
med() { python3 -c "
import statistics,sys
v=sys.argv[1:]
if '/' in ' '.join(v):
    a=[float(x) for x in v[0::3]]; b=[float(x) for x in v[2::3]]
    print('%.1f / %.1f' % (statistics.median(a), statistics.median(b)))
else:
    m=statistics.median(float(x) for x in v); print(int(m))" $1; }
for k in "${!R[@]}"; do R[$k]=$(med "${R[$k]}"); done

echo
echo "Medians of $RUNS runs; 100 publishers over loopback, $DUR s each."
echo "| payload, QoS | Mast msgs/s stored (acked) | Mast points/s | Mosquitto msgs/s routed to 1 subscriber | ratio | Mast p50 / p99 ack ms | Mosquitto p50 / p99 ack ms |"
echo "|---|---|---|---|---|---|---|"
for p in json-1 json-100 line-100; do
    for q in 0 1; do
        ratio=$(python3 -c "print('%.1f×' % (${R[mast,$p,$q]} / max(1, ${R[mosq,$p,$q]})))")
        echo "| $p, QoS $q | ${R[mast,$p,$q]} | ${R[mast,$p,$q,pts]} | ${R[mosq,$p,$q]} | $ratio | ${R[mast,$p,$q,lat]:-–} | ${R[mosq,$p,$q,lat]:-–} |"
    done
done
echo "| json-1, QoS 1 paced at 20,000 msgs/s: p50 / p99 ack ms | ${R[mast,paced]} | | ${R[mosquitto,paced]} | | | |"
