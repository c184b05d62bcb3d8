#!/usr/bin/env bash
# Device shadows over the AWS IoT shadow topics, against a fresh Mast:
#
#   benches/system/shadows.sh [DURATION_SECS] [DEVICES] [SHADOWS]
#
# 1. Highest accepted rate: DEVICES devices (default 10,000; one connection each, client id =
#    thing name) in a closed loop, each keeping 1, then 4, updates unanswered. An update is
#    counted when its /update/accepted reply arrives, which Mast sends only once the change is
#    durable (metadata commit and history row).
# 2. Steady load (run first, on a fresh server): the same devices at 1 update per device per
#    second, with 1 telemetry message per device per second beside it (QoS 1, JSON), then
#    without: update→accepted latency p50/p99.
# 3. SHADOWS devices with a shadow each (default 100,000, made 10,000 at a time): server RSS
#    (beside a baseline of the same devices connecting once, without shadows),
#    restart time with them in the store, `SELECT * FROM iot.shadows WHERE device_id = ...`
#    over HTTP (median and p99 of 200), and a full scan (count, and every column as Arrow).
# Update shape: {"state": {"reported": {"seq": n, "k0".."k3": numbers}}, "clientToken": "t…"},
# QoS 1, as the AWS SDKs send it. Prints one JSON line per measurement and a summary.
set -euo pipefail
DUR=${1:-20}
N=${2:-10000}
M=${3:-100000}
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
make_work
MAST_PORT=18881
MAST_HTTP_PORT=18882
MOSQ_PORT=0
HTTP="http://127.0.0.1:$MAST_HTTP_PORT"
sql_time() { # SQL FORMAT -> seconds
    curl -s -o /dev/null -w '%{time_total}' -X POST "$HTTP/api/v1/sql?format=$2" --data-binary "$1"
}

log "machine: $(machine)"
start_broker mast
for tel in 1 0; do
    log "steady: $N devices, 1 update/s and $tel telemetry messages/s each, ${DUR}s"
    "$LG" shadow -p "$PORT" -c "$N" --prefix "steady$tel" --rate 1 --telemetry "$tel" -d "$DUR" \
        --json >"$WORK/steady.json" 2>"$WORK/steady.err"
    echo "{\"case\":\"steady\",\"telemetry\":$tel,\"result\":$(cat "$WORK/steady.json")}"
done
stop_broker
start_broker mast
for f in 1 4; do
    log "closed loop: $N devices, $f in flight each, ${DUR}s"
    "$LG" shadow -p "$PORT" -c "$N" --prefix "cl$f" --rate 0 -F "$f" -d "$DUR" --json \
        >"$WORK/closed-$f.json" 2>"$WORK/closed-$f.err"
    echo "{\"case\":\"closed-loop\",\"inflight\":$f,\"result\":$(cat "$WORK/closed-$f.json")}"
done
stop_broker

# Baseline: the same number of devices connecting once each, no shadows (what the registry and
# the presence history cost by themselves).
start_broker mast
for b in $(seq 0 $(( (M + 9999) / 10000 - 1 ))); do
    n=$(( M - b * 10000 < 10000 ? M - b * 10000 : 10000 ))
    "$LG" conn -p "$PORT" -c "$n" --prefix "s$b" -d 1 --json >/dev/null 2>"$WORK/conn.err"
done
stop_broker
KEEP_DATA=1 start_broker mast
rss_base=$(rss_kb "$PID")
stop_broker

start_broker mast
made=0
b=0
while [ "$made" -lt "$M" ]; do
    n=$(( M - made < 10000 ? M - made : 10000 ))
    # One update per device, the fleet's spread over the first second.
    "$LG" shadow -p "$PORT" -c "$n" --prefix "s$b" --rate 1 -d 1 --json >"$WORK/make.json" \
        2>"$WORK/make.err"
    made=$(( made + $(jget "$WORK/make.json" "d['accepted']") ))
    b=$(( b + 1 ))
done
count=$(curl -s -X POST "$HTTP/api/v1/sql" --data-binary 'SELECT count(*) AS n FROM iot.shadows' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["n"])')
log "$count shadows"
rss_made=$(rss_kb "$PID")
stop_broker
t0=$(date +%s.%N)
KEEP_DATA=1 start_broker mast
t1=$(date +%s.%N)
rss_start=$(rss_kb "$PID")
first=$(sql_time "SELECT * FROM iot.shadows WHERE device_id = 's0_17'" json)
for i in $(seq 200); do
    sql_time "SELECT * FROM iot.shadows WHERE device_id = 's$(( i % b ))_$(( i * 37 % 10000 ))'" json
    echo
done | sort -n >"$WORK/by-id.txt"
scan_count=$(sql_time 'SELECT count(*) FROM iot.shadows' json)
scan_all=$(sql_time 'SELECT * FROM iot.shadows' arrow)
scan_all2=$(sql_time 'SELECT * FROM iot.shadows' arrow)
rss_end=$(rss_kb "$PID")
python3 - "$WORK/by-id.txt" "$count" "$rss_made" "$rss_start" "$rss_end" "$rss_base" "$t0" "$t1" \
    "$first" "$scan_count" "$scan_all" "$scan_all2" <<'EOF'
import json, sys
ts = [float(x) for x in open(sys.argv[1]) if x.strip()]
count, rss_made, rss_start, rss_end, rss_base = (int(x) for x in sys.argv[2:7])
t0, t1, first, scan_count, scan_all, scan_all2 = (float(x) for x in sys.argv[7:13])
print(json.dumps({
    "case": "100k-shadows", "shadows": count,
    "rss_mib_after_restart_devices_only": round(rss_base / 1024, 1),
    "rss_mib_after_making": round(rss_made / 1024, 1),
    "rss_mib_after_restart": round(rss_start / 1024, 1),
    "rss_mib_after_scans": round(rss_end / 1024, 1),
    "restart_seconds": round(t1 - t0, 3),
    "by_id_first_ms": round(first * 1000, 2),
    "by_id_ms": {"p50": round(ts[len(ts) // 2] * 1000, 2),
                 "p99": round(ts[int(len(ts) * 0.99)] * 1000, 2), "n": len(ts)},
    "full_scan_count_ms": round(scan_count * 1000, 1),
    "full_scan_all_columns_arrow_ms": [round(scan_all * 1000, 1), round(scan_all2 * 1000, 1)],
}))
EOF
stop_broker
