#!/usr/bin/env bash
# Simulation at scale (not in CI), run by `Benchmarks/simulation.sh --scale` from the package root:
#
# 1. A 10,000-sample Monte Carlo of the room model (24 h at 1-minute output) through Kafka (the
#    embedded broker) with 1 and 2 simulator-workers in one group (SIM_SHARD_SIZE 1000: 12 shards),
#    and once unsharded on one worker: wall time from producing the request to its completed result,
#    and the second worker's speed-up. Workers are not pinned: on a 2-core machine the second
#    worker shares the cores with the broker, the first worker and anything else running.
# 2. The fleet's cost per reading: `twinctl fleet` for FLEET_TWINS twins (default 3000), one reading
#    per twin a second for FLEET_SECONDS (default 30), CPU seconds read from /proc/PID/stat.
#
# Prints markdown tables. Release builds of simulator-worker and twinctl.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
swift build -c release --product simulator-worker >/dev/null
swift build -c release --product twinctl >/dev/null
bin="$(swift build -c release --show-bin-path)"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$bin/twinctl" broker >"$work/broker.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q bootstrap.servers= "$work/broker.out" 2>/dev/null && break; sleep 0.1; done
brokers="$(grep -o 'bootstrap.servers=[^ ]*' "$work/broker.out" | cut -d= -f2)"
export KAFKA_BROKERS="$brokers" MODELS_DIR="$root/Schemas/models" LOG_LEVEL=warning
export KAFKA_SESSION_TIMEOUT_MS=3000 KAFKA_HEARTBEAT_INTERVAL_MS=500 KAFKA_FETCH_WAIT_MAX_MS=50
base=$((20000 + RANDOM % 5000))
# One group for every case: each starts from the offsets the previous one committed (a new group
# would read every earlier request again from the beginning).
group="bench-$RANDOM"

metric() { curl -fsS "http://127.0.0.1:$1/metrics" 2>/dev/null | awk -v m="$2" '$1 == m { print $2 }'; }

# run_case LABEL WORKERS SHARD_SIZE: starts the workers, submits one request, prints a table row.
run_case() {
    local label="$1" count="$2" shard="$3" wpids=() ports=()
    for i in $(seq 0 $((count - 1))); do
        local port=$((base + i))
        CONSUMER_GROUP="$group" HTTP_PORT="$port" SIM_SHARD_SIZE="$shard" "$bin/simulator-worker" >"$work/worker-$label-$i.log" 2>&1 &
        wpids+=($!); pids+=($!); ports+=("$port")
    done
    # Ready, and the group settled (every partition of both topics held, each worker holding some).
    for _ in $(seq 600); do
        local total=0 ok=1
        for port in "${ports[@]}"; do
            local held; held="$(metric "$port" twinstream_simulation_assigned_partitions || true)"
            [ -n "$held" ] && [ "${held%.*}" -gt 0 ] || { ok=0; break; }
            total=$((total + ${held%.*}))
        done
        [ "$ok" = 1 ] && [ "$total" = 12 ] && break
        sleep 0.1
    done
    local id="bench-$label-$RANDOM" now; now="$(date -u +%Y-%m-%dT%H:%M:%S.000Z)"
    local request="{\"simulationId\":\"$id\",\"tenant\":\"bench\",\"twinId\":\"room-1\",\"requestedAt\":\"$now\",\"start\":\"$now\",\"twin\":{\"model\":\"room@1\",\"values\":{\"temperature\":21,\"hvacPower\":800},\"parameters\":{}},\"kind\":\"monteCarlo\",\"horizon\":\"24h\",\"step\":\"1m\",\"samples\":10000,\"seed\":7,\"uncertain\":{\"tau\":{\"normal\":[7200,600]},\"Ta\":{\"uniform\":[0,10]}},\"threshold\":{\"series\":\"temperature\",\"above\":22}}"
    "$bin/twinctl" tail --brokers "$brokers" --topic simulation.results.v1 --count 1000000 --timeout 600 >"$work/results-$label.jsonl" 2>/dev/null &
    local tailpid=$!; pids+=($tailpid)
    sleep 1
    local t0; t0="$(date +%s.%N)"
    "$bin/twinctl" produce --brokers "$brokers" --topic simulation.requests.v1 --key bench/room-1 --header contract=simulation-request/1 --value "$request" >/dev/null
    for _ in $(seq 6000); do grep -q "\"$id\".*\"status\":\"completed\"" "$work/results-$label.jsonl" 2>/dev/null && break; sleep 0.05; done
    local t1; t1="$(date +%s.%N)"
    local run; run="$(grep -m1 "\"$id\".*\"status\":\"completed\"" "$work/results-$label.jsonl" | grep -o '"runSeconds":[0-9.e+-]*' | cut -d: -f2)"
    local shards=0 cpu=0
    for port in "${ports[@]}"; do shards=$((shards + $(metric "$port" twinstream_simulation_shard_seconds_count | cut -d. -f1 || echo 0))); done
    for p in "${wpids[@]}"; do cpu="$(awk -v c="$cpu" -v hz="$(getconf CLK_TCK)" '{ print c + ($14 + $15) / hz }' "/proc/$p/stat")"; done
    kill "$tailpid" "${wpids[@]}" 2>/dev/null || true
    wait "${wpids[@]}" 2>/dev/null || true
    awk -v l="$label" -v w="$count" -v s="$shards" -v e="$t0" -v f="$t1" -v r="${run:-nan}" -v c="$cpu" \
        'BEGIN { printf "| %s | %d | %d | %.2f | %.2f | %.2f |\n", l, w, s, f - e, r, c }' | tee -a "$work/rows"
}

echo "Monte Carlo, room model, 24 h at 1 min (1,441 points), 10,000 samples, threshold; embedded broker; $(nproc) cores shared with everything else on the machine"
echo
echo "| run | workers | shards run | wall s (request → result) | worker runSeconds | workers' CPU s |"
echo "|---|---:|---:|---:|---:|---:|"
run_case unsharded 1 1000000
run_case sharded-1 1 1000
run_case sharded-2 2 1000
awk -F'|' '$2 ~ /sharded-1/ { one = $5 } $2 ~ /sharded-2/ { two = $5 } END { if (two > 0) printf "\nspeed-up from the second worker: %.2fx (wall, sharded-1 / sharded-2)\n", one / two }' "$work/rows"

# The fleet's cost per reading: exactly twins × seconds readings (--ticks); the CPU is the child's
# user + system time as the kernel accounts it (/proc/PID/stat utime + stime, through `times`).
twins="${FLEET_TWINS:-3000}" seconds="${FLEET_SECONDS:-30}"
cpu="$( ( "$bin/twinctl" fleet --brokers "$brokers" --twins "$twins" --interval-ms 1000 --ticks "$seconds" >"$work/fleet.out" 2>&1; times ) | tail -1 \
    | awk '{ split($1, u, "m"); split($2, s, "m"); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' )"
echo
echo "| fleet | twins | readings | CPU s | CPU µs per reading |"
echo "|---|---:|---:|---:|---:|"
awk -v n="$twins" -v s="$seconds" -v c="$cpu" \
    'BEGIN { printf "| twinctl fleet (1 reading/twin/s: models stepped by the solver, noise, JSON, Kafka) | %d | %d | %.2f | %.1f |\n", n, n * s, c, c / (n * s) * 1e6 }'
