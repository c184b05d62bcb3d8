#!/usr/bin/env bash
# Fleet provisioning and TLS with per-device certificates, Mast beside Mosquitto:
#
#   benches/system/provision.sh [DEVICES] [HOLD_SECS]
#
# 1. Enrolment (Mast): DEVICES devices (default 1,000) connect over TLS with one claim
#    certificate and provision at once, the AWS SDK's way: CreateCertificateFromCsr with a CSR of
#    their own P-256 key, then RegisterThing with the ownership token (template `factory`,
#    device id = SerialNumber). Enrolments/s and CSR → registered latency (each reply is sent
#    once what it names is durable). Then the CreateKeysAndCertificate variant.
# 2. TLS handshakes: the DEVICES certificates issued in 1 connect, one connection each (TLS 1.3,
#    ECDSA P-256, mutual): TCP connect → CONNACK per second and latency; Mast, then Mosquitto
#    with TLS on the same CA and certificates (require_certificate, use_identity_as_username).
# 3. Memory per idle TLS connection: the broker's RSS with the DEVICES connections held (HOLD_SECS,
#    default 10), minus its RSS before they connected (a fresh process), per connection.
# Prints one JSON line per measurement and a summary.
set -euo pipefail
N=${1:-1000}
HOLD=${2:-10}
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "$0")/lib.sh"
make_work
MAST_PORT=18891
MAST_HTTP_PORT=18892
MOSQ_PORT=18893
TLS_PORT=18894
MOSQ_TLS_PORT=18895
command -v mosquitto >/dev/null || { echo "mosquitto is not installed" >&2; exit 1; }

log "machine: $(machine); mosquitto $(mosquitto_version)"
# The fleet CA, the server's certificate and a claim certificate, all from `mast ca`.
"$BIN/mast" ca init --data-dir "$WORK/data" >/dev/null
"$BIN/mast" ca server --dns localhost --ip 127.0.0.1 --out "$WORK/tls" --data-dir "$WORK/data" >/dev/null
"$BIN/mast" ca claim --template factory --out "$WORK/claim" --data-dir "$WORK/data" >/dev/null
CA=$WORK/data/ca/ca.crt
TLS_ARGS=(--ssl --cacertfile "$CA" --sni localhost)
CLAIM=(--certfile "$WORK/claim/claim-factory.crt" --keyfile "$WORK/claim/claim-factory.key")

KEEP_DATA=1 start_broker mast "$(cat <<EOF
[mqtt.tls]
listen = "127.0.0.1:$TLS_PORT"
cert = "$WORK/tls/server.crt"
key = "$WORK/tls/server.key"
[provisioning.templates.factory]
device_id = "{SerialNumber}"
device_type = "sensor"
EOF
)"

log "enrolment: $N devices by CSR"
"$LG" provision -p "$TLS_PORT" "${TLS_ARGS[@]}" "${CLAIM[@]}" -c "$N" --prefix dev \
    --out "$WORK/certs" --json >"$WORK/csr.json" 2>"$WORK/csr.err"
echo "{\"case\":\"enrolment\",\"broker\":\"mast\",\"result\":$(cat "$WORK/csr.json")}"
log "enrolment: $N devices by CreateKeysAndCertificate"
"$LG" provision -p "$TLS_PORT" "${TLS_ARGS[@]}" "${CLAIM[@]}" -c "$N" --prefix keys --keys \
    --json >"$WORK/keys.json" 2>"$WORK/keys.err"
echo "{\"case\":\"enrolment-keys\",\"broker\":\"mast\",\"result\":$(cat "$WORK/keys.json")}"

# hold_tls BROKER PORT: the issued certificates connect and are held; prints the JSON line.
hold_tls() {
    local name=$1 port=$2 up=0 before after
    before=$(rss_kb "$PID")
    bg_start "$LG" conn -p "$port" "${TLS_ARGS[@]}" --certdir "$WORK/certs" -c "$N" --prefix dev \
        -d "$HOLD" --json >"$WORK/conn.json" 2>"$WORK/conn.err"
    local l=$BG
    for _ in $(seq 3000); do
        if grep -q '^conn: .*connected' "$WORK/conn.err"; then up=1; break; fi
        kill -0 "$l" 2>/dev/null || break
        sleep 0.1
    done
    after=null
    if [ "$up" = 1 ]; then
        sleep 2
        after=$(rss_kb "$PID")
    fi
    bg_wait "$l" || true
    python3 - "$name" "$before" "$after" "$WORK/conn.json" <<'PY'
import json, sys
name, before, after, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
r = json.loads(open(path).read().splitlines()[0])
per = None if after == "null" or not r["connected"] else round((int(after) - before) * 1024 / r["connected"])
print(json.dumps({"case": "tls-connections", "broker": name, "rss_before_kb": before,
                  "rss_held_kb": None if after == "null" else int(after), "bytes_per_connection": per,
                  "result": r}, separators=(",", ":")))
PY
}

# A fresh process (same data: the certificates stay registered), so its RSS before is a
# baseline, not what the enrolment runs left allocated.
stop_broker
KEEP_DATA=1 start_broker mast "$(cat "$WORK/mast.toml")"
sleep 1
log "TLS: $N per-device certificates connect to Mast and are held ${HOLD}s"
hold_tls mast "$TLS_PORT" | tee "$WORK/mast-tls.json"
stop_broker

log "TLS: the same to Mosquitto"
start_broker mosquitto "$(cat <<EOF
listener $MOSQ_TLS_PORT 127.0.0.1
cafile $CA
certfile $WORK/tls/server.crt
keyfile $WORK/tls/server.key
require_certificate true
use_identity_as_username true
# The key and the CA are readable by their owner only (mast ca): stay root to read them.
user root
EOF
)"
hold_tls mosquitto "$MOSQ_TLS_PORT" | tee "$WORK/mosq-tls.json"
stop_broker

python3 - "$WORK" "$(machine)" <<'PY'
import json, sys
w, machine = sys.argv[1], sys.argv[2]
csr, keys = (json.load(open(f"{w}/{n}.json")) for n in ("csr", "keys"))
m, q = (json.loads(open(f"{w}/{n}-tls.json").read()) for n in ("mast", "mosq"))
print(f"# {machine}", file=sys.stderr)
for name, r in (("CSR", csr), ("CreateKeysAndCertificate", keys)):
    l = r["enrolment_latency_us"]
    print(f"enrolment by {name}: {r['enrolled']}/{r['devices']} in {r['seconds']} s = "
          f"{r['enrolments_per_sec']}/s; p50 {l['p50']/1000:.0f} ms, p99 {l['p99']/1000:.0f} ms",
          file=sys.stderr)
for b in (m, q):
    r = b["result"]
    l = r["connect_latency_us"]
    print(f"TLS {b['broker']}: {r['connected']} connected, {r['connects_per_sec']}/s, "
          f"p50 {l['p50']/1000:.1f} ms p99 {l['p99']/1000:.1f} ms; "
          f"{b['bytes_per_connection']} bytes RSS per idle TLS connection", file=sys.stderr)
PY
