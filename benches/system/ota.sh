#!/usr/bin/env bash
# OTA: a job rolled out to a simulated fleet, and artifact downloads, on Mast (no peer here runs
# AWS IoT Jobs; Mosquitto has no jobs):
#
#   benches/system/ota.sh [DEVICES] [DOWNLOADERS] [ARTIFACT_MIB]
#
# 1. Rollout: DEVICES (default 10,000) `mast-loadgen ota` devices, one MQTT 5 connection each,
#    subscribed to their notify-next. One job for all of them (a document; no rate limit, so the
#    jobs service releases every execution at once); each device answers notify-next with
#    start-next, works 50 ms, and reports SUCCEEDED. Figures: executions finished per second
#    over the active span (first notify-next → last update accepted), request → reply latency
#    (start-next and update; each reply waits for its commit), and the server's RSS: fresh,
#    with the fleet connected, after the job.
# 2. The same fleet, a second job with `max_per_minute` = 60 × DEVICES / 20 (the whole fleet in
#    ~20 s): the rate the rollout held, per second.
# 3. Downloads: DOWNLOADERS devices (default 100) at once, a firmware job of ARTIFACT_MIB MiB
#    (default 8): each fetches the artifact with the tokened URL of its job document in three
#    Range requests (the last with If-Range), checks the SHA-256 and reports. Aggregate MB/s
#    over the active span, and per download.
# Prints one JSON line per measurement.
set -euo pipefail
N=${1:-10000}
DL=${2:-100}
MIB=${3:-8}
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
make_work
MAST_PORT=18901
MAST_HTTP_PORT=18902
MOSQ_PORT=18903
API=http://127.0.0.1:$MAST_HTTP_PORT

log "machine: $(machine)"
start_broker mast ""
fresh=$(rss_kb "$PID")

sql() { curl -s --get "$API/api/v1/sql" --data-urlencode "q=$1" --data-urlencode format=jsonl; }
connected() { sql "SELECT count(*) AS n FROM iot.devices WHERE connected AND device_id LIKE '$1\\_%' ESCAPE '\\'" | jq -r .n; }
wait_connected() { # prefix count loadgen-pid
    for _ in $(seq 1200); do
        [ "$(connected "$1")" = "$2" ] && { sleep 2; return 0; }
        kill -0 "$3" 2>/dev/null || { echo "the fleet stopped early" >&2; return 1; }
        sleep 0.25
    done
    echo "the fleet did not connect" >&2
    return 1
}
job() { curl -s -X POST "$API/api/v1/jobs" -H 'content-type: application/json' -d "$1" >"$WORK/job.json"; }

log "rollout: $N devices"
bg_start "$LG" ota -p "$MAST_PORT" -c "$N" --prefix fleet --threads 2 -R 2000 --work-ms 50 \
    -d 600 --idle-exit 6 --json >"$WORK/rollout.json" 2>"$WORK/rollout.err"
lgp=$BG
wait_connected fleet "$N" "$lgp"
held=$(rss_kb "$PID")
job '{"job_id": "bench-1", "document": {"op": "update"}, "targets": {"where": "device_id LIKE '"'"'fleet\\_%'"'"' ESCAPE '"'"'\\'"'"'"}}'
bg_wait "$lgp" || true
after=$(rss_kb "$PID")
echo "{\"case\":\"rollout\",\"devices\":$N,\"rss_kb\":{\"fresh\":$fresh,\"connected\":$held,\"after_job\":$after},\"job\":$(curl -s "$API/api/v1/jobs/bench-1" | jq -c '{status, targeted, counts}'),\"result\":$(jq -c 'del(.timeline)' "$WORK/rollout.json")}"

log "rate-limited rollout: $N devices at $((N * 3)) per minute"
bg_start "$LG" ota -p "$MAST_PORT" -c "$N" --prefix rated --threads 2 -R 2000 --work-ms 50 \
    -d 600 --idle-exit 6 --json >"$WORK/rated.json" 2>"$WORK/rated.err"
lgp=$BG
wait_connected rated "$N" "$lgp"
job '{"job_id": "bench-2", "document": {"op": "update"}, "rollout": {"max_per_minute": '"$((N * 3))"'}, "targets": {"where": "device_id LIKE '"'"'rated\\_%'"'"' ESCAPE '"'"'\\'"'"'"}}'
bg_wait "$lgp" || true
rate=$(sql "SELECT date_bin(INTERVAL '1 second', time) AS s, count(*) AS n FROM iot.ota_events WHERE job_id = 'bench-2' AND reason = 'targeted' GROUP BY 1 ORDER BY 1" | jq -s -c '{seconds: length, max_per_second: (map(.n) | max), median_per_second: (map(.n) | sort | .[length / 2 | floor])}')
echo "{\"case\":\"rollout-rate\",\"devices\":$N,\"max_per_minute\":$((N * 3)),\"notified\":$rate,\"result\":$(jq -c 'del(.timeline)' "$WORK/rated.json")}"

log "downloads: $DL devices, $MIB MiB each"
head -c "$((MIB << 20))" /dev/urandom >"$WORK/fw.bin"
fw=$(curl -s -X POST "$API/api/v1/firmware?name=bench-fw&version=1.0.0" --data-binary @"$WORK/fw.bin" | jq -r .id)
bg_start "$LG" ota -p "$MAST_PORT" -c "$DL" --prefix dl --download --downloaders "$DL" --work-ms 0 \
    -d 600 --idle-exit 6 --json >"$WORK/dl.json" 2>"$WORK/dl.err"
lgp=$BG
wait_connected dl "$DL" "$lgp"
job '{"job_id": "bench-3", "firmware": "'"$fw"'", "targets": {"where": "device_id LIKE '"'"'dl\\_%'"'"' ESCAPE '"'"'\\'"'"'"}}'
bg_wait "$lgp" || true
echo "{\"case\":\"downloads\",\"devices\":$DL,\"artifact_mib\":$MIB,\"result\":$(jq -c 'del(.timeline)' "$WORK/dl.json")}"
stop_broker
