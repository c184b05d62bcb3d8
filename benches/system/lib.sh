# Shared by the scripts in benches/system/; sourced, not run. Sourcing it:
#   - changes to the repository root;
#   - picks PROFILE: ${BENCH_VARS}_PROFILE if the script set BENCH_VARS (tsbs.sh: TSBS), else
#     MAST_PROFILE, else release; then unsets MAST_PROFILE (mast refuses unknown MAST_* variables);
#   - builds mast and mast-loadgen (cargo output on stderr) unless SKIP_BUILD=1
#     (or ${BENCH_VARS}_SKIP_BUILD=1);
#   - sets BIN (the profile's target dir) and LG (the load generator) and checks both binaries.
# Functions:
#   make_work              WORK = a temp dir; the EXIT trap stops what bg_start started, removes it
#   bg_start CMD...        CMD in the background, tracked; its pid in BG (redirect the call itself)
#   bg_wait PID            waits for a tracked process; returns its exit status
#   start_broker mast|mosquitto [EXTRA]
#                          a fresh broker (new data dir), EXTRA appended to its config (TOML for
#                          Mast, mosquitto.conf lines for Mosquitto); ports from MAST_PORT,
#                          MAST_HTTP_PORT (0 = any) and MOSQ_PORT; waits until they accept; sets
#                          PID and PORT. KEEP_DATA=1 reuses Mast's data dir ($WORK/data).
#   stop_broker            SIGTERM to the broker, then waits for it (a clean stop)
#   rss_kb PID             resident set size in KiB
#   jget FILE EXPR         EXPR evaluated in Python over d = the JSON in FILE
#   machine                "BENCH_MACHINE (N vCPU MODEL, R GiB RAM)", or just the part in brackets
#   mosquitto_version      e.g. 2.0.11
#   pip_ensure MODULE PACKAGE...  installs the PyPI packages unless python3 can import MODULE
#   log, lg, emit, hold    for run.sh and compare.sh: see them at the end
# shellcheck shell=bash disable=SC2034 # sets variables for the scripts that source it

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1

_p='' _s=''
if [ -n "${BENCH_VARS:-}" ]; then
    _p=${BENCH_VARS}_PROFILE _s=${BENCH_VARS}_SKIP_BUILD
    _p=${!_p:-} _s=${!_s:-}
fi
PROFILE=${_p:-${MAST_PROFILE:-release}}
SKIP_BUILD=${_s:-${SKIP_BUILD:-0}}
unset MAST_PROFILE _p _s # not a server setting: mast refuses unknown MAST_* variables
case $PROFILE in
release) _flag=--release ;;
debug) _flag= ;;
*) echo "the profile must be release or debug, not $PROFILE" >&2; exit 2 ;;
esac
if [ "$SKIP_BUILD" != 1 ]; then
    # shellcheck disable=SC2086
    # `--bin mast` would apply to both packages and leave mast-loadgen unbuilt: name each bin.
    cargo build $_flag -p mast-engine -p mast-loadgen --bin mast --bin mast-loadgen >&2
fi
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE
LG=$BIN/mast-loadgen
for _b in mast mast-loadgen; do
    [ -x "$BIN/$_b" ] || { echo "no $BIN/$_b: build it first" >&2; exit 1; }
done
unset _b _flag

BG_PIDS=()
make_work() {
    WORK=$(mktemp -d)
    trap _cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
_cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${BG_PIDS[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    BG_PIDS=()
    [ -z "${WORK:-}" ] || rm -rf "$WORK"
}
bg_start() {
    "$@" &
    BG=$!
    BG_PIDS+=("$BG")
}
bg_wait() {
    local rc=0 p keep=()
    wait "$1" || rc=$?
    for p in "${BG_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    BG_PIDS=("${keep[@]}")
    return $rc
}

_accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
start_broker() { # mast|mosquitto [extra config] -> PID PORT
    local extra=${2:-} ports p
    for p in "$MAST_PORT" "${MAST_HTTP_PORT:-0}" "$MOSQ_PORT"; do
        [ "$p" = 0 ] || ! _accepts "$p" || { echo "port $p is taken: is another broker running?" >&2; exit 1; }
    done
    case $1 in
    mast)
        [ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$WORK/data"
        printf '%s\n' "$extra" >"$WORK/mast.toml"
        MAST_LOG=${MAST_LOG:-warn} bg_start "$BIN/mast" serve --config "$WORK/mast.toml" \
            --data-dir "$WORK/data" --mqtt-listen "127.0.0.1:$MAST_PORT" \
            --http-listen "127.0.0.1:${MAST_HTTP_PORT:-0}" 2>>"$WORK/mast.log"
        PORT=$MAST_PORT ports="$MAST_PORT ${MAST_HTTP_PORT:-0}" ;;
    mosquitto)
        printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 10000\nmax_inflight_messages 0\nset_tcp_nodelay true\n%s\n' \
            "$MOSQ_PORT" "$extra" >"$WORK/mosq.conf"
        bg_start mosquitto -c "$WORK/mosq.conf" 2>>"$WORK/mosq.log"
        PORT=$MOSQ_PORT ports=$MOSQ_PORT ;;
    *) echo "start_broker: no broker $1" >&2; exit 2 ;;
    esac
    PID=$BG
    for p in $ports; do
        [ "$p" != 0 ] || continue
        for _ in $(seq 200); do
            _accepts "$p" && continue 2
            kill -0 "$PID" 2>/dev/null || break
            sleep 0.05
        done
        echo "broker $1 did not start (port $p); its log:" >&2
        tail -20 "$WORK"/mast.log "$WORK"/mosq.log 2>/dev/null >&2
        exit 1
    done
}
stop_broker() { kill "$PID" 2>/dev/null || true; bg_wait "$PID" 2>/dev/null || true; }

rss_kb() { awk '/^VmRSS/ {print $2}' /proc/"$1"/status; }
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'d': d}))" "$@"; }

machine() {
    local model cores mem auto
    model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    cores=$(nproc)
    mem=$(awk '/^MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)
    auto="$cores vCPU ${model:-unknown CPU}, $mem GiB RAM"
    if [ -n "${BENCH_MACHINE:-}" ]; then echo "$BENCH_MACHINE ($auto)"; else echo "$auto"; fi
}
mosquitto_version() { { mosquitto -h 2>/dev/null || true; } | awk 'NR == 1 {print $3}'; }

pip_ensure() { # module package...
    local m=$1; shift
    python3 -c "import $m" 2>/dev/null && return
    python3 -m pip install --quiet "$@" >&2 ||
        python3 -m pip install --quiet --break-system-packages "$@" >&2
}

# ---- Shared by run.sh and compare.sh (they set RAW, DUR, HOLD, WORK and PID) ----
# log MSG: a time-stamped line on stderr.
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
# lg ERRFILE ARGS...: the load generator with a time limit (in case it hangs), stderr to ERRFILE.
lg() { local err=$1; shift; timeout -k 5 "$((DUR * 3 + 300))" "$LG" "$@" 2>"$err"; }

# emit HEAD [FILE]: one JSON line (stdout and $RAW): the object HEAD, with the JSON object(s)
# FILE holds under "result" (several lines are merged into one object) or "error" if none.
emit() {
    python3 - "$@" <<'EOF' | tee -a "$RAW"
import json, sys
d = json.loads(sys.argv[1])
if len(sys.argv) > 2:
    res = {}
    try:
        with open(sys.argv[2]) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    res.update(json.loads(line))
    except (OSError, ValueError) as e:
        d["error"] = f"unreadable output: {e}"
    if res:
        d["result"] = res
    else:
        d.setdefault("error", "no JSON output")
print(json.dumps(d, separators=(",", ":")))
EOF
}

# hold N ERRFILE: `mast-loadgen conn` holds N connections (client ids idle-0…) for HOLD s; RSS
# of the broker while they are up in HELD ("null" if they never all came up); exit status in RC.
hold() {
    local n=$1 err=$2 up=0 ifaddr=()
    [ "$n" -le 10000 ] || ifaddr=(--ifaddr 127.0.0.1-127.0.0.20)
    HELD=null RC=0
    bg_start timeout -k 5 $((HOLD + 600)) "$LG" conn -p "$PORT" -c "$n" "${ifaddr[@]}" -d "$HOLD" \
        --prefix idle --json >"$WORK/conn.json" 2>"$err"
    local l=$BG
    for _ in $(seq 3000); do # up to 5 minutes to connect
        if grep -q '^conn: .*connected' "$err"; then up=1; break; fi
        kill -0 "$l" 2>/dev/null || break
        sleep 0.1
    done
    if [ "$up" = 1 ]; then
        sleep "$(( HOLD > 3 ? 2 : 1 ))"
        HELD=$(rss_kb "$PID")
    fi
    bg_wait "$l" || RC=$?
}
