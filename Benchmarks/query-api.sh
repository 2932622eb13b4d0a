#!/usr/bin/env bash
# Query API benchmark: a release query-api whose view holds N seeded twins (`twinctl seed-twins`
# straight to twin.state.v1 on the embedded broker), measured three ways. Not run in CI.
#   a. throughput: wrk GET /v1/twins/{random seeded id}, -t2 -c64 (random-twin.lua)
#   b. latency at a fixed rate: the same GETs paced to RATE req/s with wrk's delay() hook
#      (paced.lua; Debian's wrk has no -R), p50/p90/p99 from --latency
#   c. filter: GET /v1/twins?filter=temperature>80 and model=pump&limit=100, FILTER_RUNS curls
# Prints a summary with the targets (>= 20,000 req/s; p99 < 10 ms at 5,000 req/s; filter < 50 ms)
# and appends it to Benchmarks/results/query-api.txt.
#
#   Benchmarks/query-api.sh                       # N=100000, 15 s per wrk run
#   N=20000 DURATION=30 RATE=2000 Benchmarks/query-api.sh
#   BIN=.build/release Benchmarks/query-api.sh    # skip `swift build -c release`
#   AUTH=none Benchmarks/query-api.sh             # query-api with AUTH_DISABLED=true DEFAULT_TENANT=$TENANT,
#                                                 # no Authorization header (a query-api without API keys)
#   STRICT=1 Benchmarks/query-api.sh              # exit 1 when a target is missed
#   QUERY_API_ENV="VAR=value ..." Benchmarks/query-api.sh   # extra environment for query-api
#
# When a wrk run has non-2xx answers, a 3 s rerun with WRK_STATUSES=1 tells which statuses
# (404: the seeded twins are not visible to the key's tenant; 429: the per-key rate limit).
#
# Needs wrk (apt-get install wrk), curl, awk. The broker and query-api are stopped on exit,
# whatever the exit.
set -euo pipefail

N=${N:-100000}
PREFIX=${PREFIX:-pump-}
MODEL=${MODEL:-pump@1}
TENANT=${TENANT:-bench}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
DURATION=${DURATION:-15}               # seconds per wrk run
RATE=${RATE:-5000}                     # target req/s of the fixed-rate run
PACED_CONNECTIONS=${PACED_CONNECTIONS:-$CONNECTIONS}
FILTER=${FILTER:-temperature>80 and model=pump}
FILTER_LIMIT=${FILTER_LIMIT:-100}
FILTER_RUNS=${FILTER_RUNS:-20}
AUTH=${AUTH:-key}                      # key: API key with scope read; none: AUTH_DISABLED=true
PORT=${PORT:-18080}
READY_TIMEOUT=${READY_TIMEOUT:-300}    # seconds for /readyz to answer 200
STRICT=${STRICT:-0}
TARGET_RPS=20000
TARGET_P99_MS=10
TARGET_FILTER_MS=50

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LUA="$ROOT/Benchmarks/query-api"
RESULTS=${RESULTS:-$ROOT/Benchmarks/results/query-api.txt}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/twinstream-query-bench.XXXXXX")
PIDS=()
API=127.0.0.1:$PORT

die() { echo "query-api bench: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local status=$?
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1 ]] || die "N must be a positive integer (got $N)"
[[ "$AUTH" == key || "$AUTH" == none ]] || die "AUTH must be key or none (got $AUTH)"
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
command -v curl >/dev/null || die "curl not found"

if [[ -z "${BIN:-}" ]]; then
    log "building twinctl and query-api (release)"
    (cd "$ROOT" && swift build -c release --product twinctl >&2 && swift build -c release --product query-api >&2) || die "swift build failed"
    BIN="$(cd "$ROOT" && swift build -c release --show-bin-path)"
fi
[[ -x "$BIN/twinctl" && -x "$BIN/query-api" ]] || die "no twinctl or query-api in $BIN"

# ---------------------------------------------------------------------------------------------
# Broker and seeded twins. twin.state.v1 keeps the platform's 6 partitions (the query view reads
# partitions 0..5); the mock broker keeps ~5 MiB per partition, so seed-twins compresses (lz4).

stdbuf -oL "$BIN/twinctl" broker >"$WORK/broker.out" 2>"$WORK/broker.err" &
PIDS+=($!)
B=
for _ in $(seq 1 100); do
    B=$(sed -n 's/^bootstrap\.servers=//p' "$WORK/broker.out" 2>/dev/null || true)
    [[ -n "$B" ]] && break
    sleep 0.1
done
[[ -n "$B" ]] || { cat "$WORK/broker.err" >&2; die "the broker did not start"; }

log "broker at $B; seeding $N twins ($MODEL, tenant $TENANT, ids ${PREFIX}000000...)"
seed_start=$(date +%s.%N)
"$BIN/twinctl" seed-twins --brokers "$B" --count "$N" --tenant "$TENANT" --model "$MODEL" --prefix "$PREFIX" \
    --models-dir "$ROOT/Schemas/models" >"$WORK/seed.out" 2>"$WORK/seed.err" &
PIDS+=($!)
wait "${PIDS[-1]}" || { cat "$WORK/seed.out" "$WORK/seed.err" >&2; die "seed-twins failed"; }
unset 'PIDS[-1]'
seed_s=$(awk -v s="$seed_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
cat "$WORK/seed.out" >&2

# ---------------------------------------------------------------------------------------------
# query-api

AUTH_ARGS=()
# One key drives all the load, so its per-key rate limit (RATE_LIMIT_PER_KEY, default 1000/s) is
# lifted: this measures the server, not the limiter. QUERY_API_ENV can set it back.
QUERY_ENV=(KAFKA_BROKERS="$B" HTTP_PORT="$PORT" LOG_LEVEL=warning MODELS_DIR="$ROOT/Schemas/models" RATE_LIMIT_PER_KEY=0)
KEY=
if [[ "$AUTH" == key ]]; then
    "$BIN/twinctl" keys add --tenant "$TENANT" --scopes read --file "$WORK/keys.json" >"$WORK/key" 2>"$WORK/keys.err" \
        || { cat "$WORK/keys.err" >&2; die "twinctl keys add failed"; }
    KEY=$(head -n1 "$WORK/key")
    [[ "$KEY" == tsk_* ]] || die "twinctl keys add printed no key"
    AUTH_ARGS=(-H "Authorization: Bearer $KEY")
    QUERY_ENV+=(API_KEYS_FILE="$WORK/keys.json")
else
    QUERY_ENV+=(AUTH_DISABLED=true DEFAULT_TENANT="$TENANT")
fi
read -ra extra_env <<<"${QUERY_API_ENV:-}"
QUERY_ENV+=("${extra_env[@]}")

query_start=$(date +%s.%N)
env "${QUERY_ENV[@]}" "$BIN/query-api" >"$WORK/query-api.log" 2>&1 &
QUERY_PID=$!
PIDS+=("$QUERY_PID")
ready=
deadline=$(( $(date +%s) + READY_TIMEOUT ))
while [[ $(date +%s) -lt $deadline ]]; do
    kill -0 "$QUERY_PID" 2>/dev/null || { tail -n 20 "$WORK/query-api.log" >&2; die "query-api exited during start-up"; }
    if [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$API/readyz" || true)" == 200 ]]; then ready=1; break; fi
    sleep 0.05
done
[[ -n "$ready" ]] || { tail -n 20 "$WORK/query-api.log" >&2; die "/readyz not 200 within ${READY_TIMEOUT}s"; }
ready_s=$(awk -v s="$query_start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

metric() {  # metric NAME → the value of the first series named NAME (empty when absent)
    { curl -s "http://$API/metrics" || true; } | awk -v name="$1" '$1 == name || index($1, name "{") == 1 { print $NF; exit }'
}
rss_mb() {  # rss_mb FIELD → VmRSS / VmHWM of query-api in MiB
    awk -v f="$1:" '$1 == f { printf "%.0f", $2 / 1024 }' "/proc/$QUERY_PID/status" 2>/dev/null || echo "?"
}
view_twins=$(metric twinstream_view_twins)
view_twins=${view_twins%.*}
rss_ready=$(rss_mb VmRSS)
log "query-api ready after ${ready_s}s; view holds ${view_twins:-?} twins; RSS ${rss_ready} MiB"
notes=()
if [[ "${view_twins:-0}" != "$N" ]]; then
    notes+=("the view holds ${view_twins:-?} twins, not the $N seeded (broker dropped messages, or VIEW_MAX_TWINS)")
    log "WARNING: ${notes[-1]}"
fi

# A seeded twin must answer 200 before anything is measured (all-404 runs measure nothing).
probe_id=$(printf '%s%06d' "$PREFIX" $(( N / 2 )))
status=$(curl -s -o "$WORK/probe.json" -w '%{http_code}' "${AUTH_ARGS[@]}" "http://$API/v1/twins/$probe_id" || true)
if [[ "$status" != 200 ]]; then
    head -c 400 "$WORK/probe.json" >&2; echo >&2
    [[ "$AUTH" == key && "$status" == 404 ]] && log "a 404 with a valid key: this query-api may not read the tenant from the key yet; try AUTH=none"
    die "GET /v1/twins/$probe_id answered $status"
fi
auth_check="no key needed (AUTH=none)"
if [[ "$AUTH" == key ]]; then
    unauth=$(curl -s -o /dev/null -w '%{http_code}' "http://$API/v1/twins/$probe_id" || true)
    if [[ "$unauth" == 401 ]]; then auth_check="Bearer key; 401 without it"
    else auth_check="Bearer key; WITHOUT a key: $unauth (auth not enforced)"; notes+=("requests without a key answer $unauth, not 401"); fi
fi

# ---------------------------------------------------------------------------------------------
# wrk runs

to_ms() {  # wrk duration (512.00us, 1.23ms, 1.05s, 2.00m) → milliseconds
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) printf "%.2f", v / 1000; else if (v ~ /ms$/) printf "%.2f", v + 0
        else if (v ~ /m$/) printf "%.2f", v * 60000; else if (v ~ /s$/) printf "%.2f", v * 1000; else print "?" }'
}
wrk_field() {  # wrk_field FILE WHAT
    case "$2" in
        rps) awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$1" ;;
        p50|p75|p90|p99) to_ms "$(awk -v p="${2#p}%" '$1 == p { print $2; exit }' "$1")" ;;
        non2xx) awk '/Non-2xx or 3xx responses:/ { n = $NF } END { print n + 0 }' "$1" ;;
        errors) awk '/Socket errors:/ { gsub(",", ""); n = $4 + $6 + $8 + $10 } END { print n + 0 }' "$1" ;;
        requests) awk '/requests in/ { print $1; exit }' "$1" ;;
    esac
}

run_wrk() {  # run_wrk OUTFILE ARGS… — in the background, so a signal stops the run at once
    API_KEY="$KEY" WRK_STATUSES="${WRK_STATUSES:-0}" wrk "${@:2}" >"$1" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait "$pid" || { cat "$1" >&2; die "wrk failed"; }
    unset 'PIDS[-1]'
    cat "$1" >&2
}

log "throughput: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, random seeded twin per request"
run_wrk "$WORK/wrk-throughput.out" -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$LUA/random-twin.lua" \
    "http://$API" -- "$N" "$PREFIX"
rps=$(wrk_field "$WORK/wrk-throughput.out" rps)
t_p50=$(wrk_field "$WORK/wrk-throughput.out" p50)
t_p99=$(wrk_field "$WORK/wrk-throughput.out" p99)
t_non2xx=$(wrk_field "$WORK/wrk-throughput.out" non2xx)
t_errors=$(wrk_field "$WORK/wrk-throughput.out" errors)

log "fixed rate: $RATE req/s over $PACED_CONNECTIONS connections (each waits $PACED_CONNECTIONS/$RATE s between requests)"
run_wrk "$WORK/wrk-paced.out" -t"$THREADS" -c"$PACED_CONNECTIONS" -d"${DURATION}s" --latency -s "$LUA/paced.lua" \
    "http://$API" -- "$N" "$PREFIX" "$RATE" "$PACED_CONNECTIONS" "$THREADS"
p_rps=$(wrk_field "$WORK/wrk-paced.out" rps)
p_p50=$(wrk_field "$WORK/wrk-paced.out" p50)
p_p90=$(wrk_field "$WORK/wrk-paced.out" p90)
p_p99=$(wrk_field "$WORK/wrk-paced.out" p99)
p_non2xx=$(wrk_field "$WORK/wrk-paced.out" non2xx)
p_errors=$(wrk_field "$WORK/wrk-paced.out" errors)
if [[ "$t_non2xx" != 0 || "$p_non2xx" != 0 ]]; then
    log "non-2xx answers: counting statuses in a 3 s rerun (WRK_STATUSES=1)"
    WRK_STATUSES=1 run_wrk "$WORK/wrk-statuses.out" -t"$THREADS" -c"$CONNECTIONS" -d3s -s "$LUA/random-twin.lua" \
        "http://$API" -- "$N" "$PREFIX"
    notes+=("non-2xx answers; statuses in a 3 s rerun: $(awk '/^status / { printf "%s%s %s", sep, $2, $3; sep = ", " }' "$WORK/wrk-statuses.out")")
fi
rss_after=$(rss_mb VmRSS)
rss_peak=$(rss_mb VmHWM)

# ---------------------------------------------------------------------------------------------
# Filter query

filter_get() {  # filter_get OUTFILE → "status seconds"
    curl -s -G -o "$1" -w '%{http_code} %{time_total}\n' "${AUTH_ARGS[@]}" \
        --data-urlencode "filter=$FILTER" --data-urlencode "limit=$FILTER_LIMIT" "http://$API/v1/twins"
}
log "filter: GET /v1/twins?filter=$FILTER&limit=$FILTER_LIMIT, $FILTER_RUNS runs"
read -r f_status _ < <(filter_get "$WORK/filter.json")   # warm-up, also the status check
f_min='' f_med='' f_max='' f_total='' f_items='' f_note=''
if [[ "$f_status" == 200 ]]; then
    for _ in $(seq 1 "$FILTER_RUNS"); do
        read -r s t < <(filter_get "$WORK/filter.json")
        [[ "$s" == 200 ]] || { f_note="a run answered $s"; break; }
        echo "$t"
    done >"$WORK/filter-times"
    read -r f_min f_med f_max < <(sort -g "$WORK/filter-times" | awk '{ t[NR] = $1 * 1000 } END {
        if (NR == 0) { print "? ? ?"; exit }
        m = NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2; printf "%.1f %.1f %.1f\n", t[1], m, t[NR] }')
    f_total=$(grep -o '"total": *[0-9]*' "$WORK/filter.json" | head -n1 | tr -dc 0-9 || true)
    f_items=$(grep -o '"twinId" *:' "$WORK/filter.json" | wc -l || true)
else
    f_note="HTTP $f_status: $(head -c 200 "$WORK/filter.json" | tr -d '\n')"
    [[ "$f_status" == 404 ]] && f_note="HTTP 404: no GET /v1/twins list route in this query-api (the v1 API has not landed)"
    log "filter query not measured: $f_note"
fi

# ---------------------------------------------------------------------------------------------
# Summary

verdict() { if [[ "$1" == 1 ]]; then echo PASS; else echo FAIL; fi; }
missed=0
ok_rps=$(awk -v r="${rps:-0}" -v t="$TARGET_RPS" -v n="$t_non2xx" 'BEGIN { print (r >= t && n == 0) ? 1 : 0 }')
ok_p99=$(awk -v p="${p_p99:-999}" -v t="$TARGET_P99_MS" -v r="${p_rps:-0}" -v R="$RATE" -v n="$p_non2xx" \
    'BEGIN { print (p != "?" && p < t && r >= 0.95 * R && n == 0) ? 1 : 0 }')
v_rps=$(verdict "$ok_rps"); v_p99=$(verdict "$ok_p99")
[[ "$ok_rps" == 1 ]] || missed=1
[[ "$ok_p99" == 1 ]] || missed=1
if [[ -n "$f_med" && -z "$f_note" ]]; then
    v_filter=$(verdict "$(awk -v m="$f_med" -v t="$TARGET_FILTER_MS" 'BEGIN { print (m < t) ? 1 : 0 }')")
    filter_value="${f_med} ms median"
else
    v_filter="NOT MEASURED"; filter_value="-"
fi
[[ "$v_filter" == PASS ]] || missed=1

rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || rev="$rev+changes"
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo "?")
{
    echo
    echo "query-api benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), git $rev, $(nproc) cpus ($cpu); wrk, broker and query-api on one host"
    echo "  view:       $N twins seeded ($MODEL, tenant $TENANT) in ${seed_s} s; view holds ${view_twins:-?}; /readyz 200 ${ready_s} s after start"
    echo "  seed:       $(cat "$WORK/seed.out")"
    echo "  memory:     query-api RSS ${rss_ready} MiB when ready, ${rss_after} MiB after the wrk runs (peak ${rss_peak} MiB)"
    echo "  auth:       $auth_check"
    echo "  throughput: wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s: ${rps:-?} req/s, p50 ${t_p50} ms, p99 ${t_p99} ms, non-2xx ${t_non2xx}, socket errors ${t_errors}"
    echo "  fixed rate: target $RATE req/s, -c$PACED_CONNECTIONS: ${p_rps:-?} req/s achieved, p50 ${p_p50} ms, p90 ${p_p90} ms, p99 ${p_p99} ms, non-2xx ${p_non2xx}, socket errors ${p_errors}"
    if [[ -z "$f_note" ]]; then
        echo "  filter:     '$FILTER' limit $FILTER_LIMIT, $FILTER_RUNS runs: min ${f_min} ms, median ${f_med} ms, max ${f_max} ms (total ${f_total:-?}, ${f_items} items)"
    else
        echo "  filter:     '$FILTER': $f_note"
    fi
    for n in "${notes[@]}"; do echo "  note:       $n"; done
    printf '  %-36s %-16s %s\n' "target" "measured" "verdict"
    printf '  %-36s %-16s %s\n' "throughput >= $TARGET_RPS req/s, all 2xx" "${rps:-?} req/s" "$v_rps"
    printf '  %-36s %-16s %s\n' "p99 < $TARGET_P99_MS ms at $RATE req/s" "${p_p99} ms" "$v_p99"
    printf '  %-36s %-16s %s\n' "filter < $TARGET_FILTER_MS ms (median of $FILTER_RUNS)" "$filter_value" "$v_filter"
} >"$WORK/summary"
cat "$WORK/summary"
mkdir -p "$(dirname "$RESULTS")"
cat "$WORK/summary" >>"$RESULTS"
log "appended to $RESULTS"
[[ "$STRICT" == 1 && "$missed" == 1 ]] && exit 1
exit 0
