#!/usr/bin/env bash
# Ingestion and validation throughput: readings per second from telemetry.raw.v1 to
# telemetry.valid.v1 through the real ingestor and validator (release builds) on the embedded
# broker, every reading accounted for as valid or dead-lettered. Not run in CI.
#
#   Benchmarks/pipeline-throughput.sh                  # N=200000 fleet readings
#   N=500000 PARTITIONS=48 Benchmarks/pipeline-throughput.sh
#   BIN=.build/release Benchmarks/pipeline-throughput.sh   # skip `swift build`
#
# The raw topic is filled first (the fleet simulator: pumps, rooms and batteries with valid
# values), then both services start; the rate is N over the time from the ingestor's first
# consumed message to the moment valid + dead-lettered readings reach N.
set -euo pipefail

N=${N:-200000}
TWINS=${TWINS:-1000}
PARTITIONS=${PARTITIONS:-24}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/twinstream-pipeline.XXXXXX")
PIDS=()

cleanup() {
    local status=$?
    # Services first (they commit and leave their group through the broker), the broker last.
    for (( i=${#PIDS[@]}-1; i>=0; i-- )); do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; wait "${PIDS[$i]}" 2>/dev/null || true; done
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT INT TERM

if [[ -z "${BIN:-}" ]]; then
    (cd "$ROOT" && swift build -c release --product twinctl >&2 && swift build -c release --product ingestor >&2 && swift build -c release --product validator >&2)
    BIN="$ROOT/.build/release"
fi

stdbuf -oL "$BIN/twinctl" broker --partitions "$PARTITIONS" --brokers-count "${BROKERS:-1}" >"$WORK/broker.out" 2>"$WORK/broker.err" &
PIDS+=($!)
for _ in $(seq 1 100); do
    B=$(grep -o 'bootstrap\.servers=[^[:space:]]*' "$WORK/broker.out" 2>/dev/null | cut -d= -f2- || true)
    [[ -n "$B" ]] && break
    sleep 0.1
done
[[ -n "$B" ]] || { cat "$WORK/broker.err" >&2; exit 1; }
echo "# broker at $B, $PARTITIONS partitions per topic; filling telemetry.raw.v1 with $N readings" >&2
"$BIN/twinctl" fleet --brokers "$B" --twins "$TWINS" --ticks $(( N / TWINS )) --interval-ms 0 >/dev/null
N=$(( N / TWINS * TWINS ))

metric() {  # metric PORT NAME FILTER → summed value of matching series
    { curl -s "http://127.0.0.1:$1/metrics" || true; } | awk -v name="$2" -v filter="$3" '
        index($0, name) == 1 && index($0, filter) > 0 { sum += $NF } END { printf "%d\n", sum }'
}

export KAFKA_BROKERS="$B" LOG_LEVEL=warning MODELS_DIR="$ROOT/Schemas/models"
HTTP_PORT=18181 "$BIN/ingestor" >"$WORK/ingestor.log" 2>&1 &
PIDS+=($!)
HTTP_PORT=18182 "$BIN/validator" >"$WORK/validator.log" 2>&1 &
PIDS+=($!)

cpu_ticks() {  # cpu_ticks PID... → user+system clock ticks of the processes, summed
    local sum=0 pid fields
    for pid in "$@"; do
        read -ra fields < <(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null || echo)
        (( ${#fields[@]} > 12 )) && sum=$(( sum + fields[11] + fields[12] ))
    done
    echo "$sum"
}

start=""
declare -a cpu_start_of cpu_end_of
while true; do
    consumed=$(metric 18181 twinstream_messages_consumed_total 'telemetry.raw.v1')
    if [[ -z "$start" && "$consumed" -gt 0 ]]; then start=$(date +%s.%N); cpu_start=$(cpu_ticks "${PIDS[@]}"); for i in 0 1 2; do cpu_start_of[$i]=$(cpu_ticks "${PIDS[$i]}"); done; fi
    valid=$(metric 18182 twinstream_messages_produced_total 'telemetry.valid.v1')
    dead_validator=$(metric 18182 twinstream_messages_produced_total 'telemetry.deadletter.v1')
    dead_ingestor=$(metric 18181 twinstream_messages_produced_total 'telemetry.deadletter.v1')
    total=$(( valid + dead_validator + dead_ingestor ))
    # Steady state: the rate between 10% and 90% of the readings accounted for (no group joins,
    # no warm-up, no tail), reported beside the whole-run figure.
    if [[ -n "$start" && -z "${t10:-}" && "$total" -ge $(( N / 10 )) ]]; then t10=$(date +%s.%N); n10=$total; fi
    if [[ -n "${t10:-}" && -z "${t90:-}" && "$total" -ge $(( N * 9 / 10 )) ]]; then t90=$(date +%s.%N); n90=$total; fi
    if [[ -n "$start" && "$total" -ge "$N" ]]; then end=$(date +%s.%N); cpu_end=$(cpu_ticks "${PIDS[@]}"); for i in 0 1 2; do cpu_end_of[$i]=$(cpu_ticks "${PIDS[$i]}"); done; break; fi
    sleep 0.05
done
awk -v n="$N" -v s="$start" -v e="$end" -v v="$valid" -v dv="$dead_validator" -v di="$dead_ingestor" \
    -v cpu=$(( cpu_end - cpu_start )) -v hz="$(getconf CLK_TCK)" 'BEGIN {
    printf "raw -> valid: %d readings in %.2f s = %.0f readings/s (valid %d, dead-lettered by validator %d, by ingestor %d); CPU of broker + ingestor + validator: %.1f us per reading (%.2f cores busy)\n",
        n, e - s, n / (e - s), v, dv, di, cpu / hz / n * 1e6, cpu / hz / (e - s) }'
awk -v n="$N" -v hz="$(getconf CLK_TCK)" -v b=$(( cpu_end_of[0] - cpu_start_of[0] )) -v i=$(( cpu_end_of[1] - cpu_start_of[1] )) \
    -v v=$(( cpu_end_of[2] - cpu_start_of[2] )) 'BEGIN {
    printf "CPU per reading: broker %.1f us, ingestor %.1f us, validator %.1f us\n", b / hz / n * 1e6, i / hz / n * 1e6, v / hz / n * 1e6 }'
batches_i=$(metric 18181 twinstream_batch_process_seconds_count '')
batches_v=$(metric 18182 twinstream_batch_process_seconds_count '')
echo "batches: ingestor $batches_i (mean $(( N / (batches_i > 0 ? batches_i : 1) )) messages), validator $batches_v (mean $(( N / (batches_v > 0 ? batches_v : 1) )) messages)"
if [[ -n "${t90:-}" ]]; then
    awk -v a="$t10" -v b="$t90" -v na="$n10" -v nb="$n90" 'BEGIN { printf "steady state (10%% to 90%% of the readings): %.0f readings/s\n", (nb - na) / (b - a) }'
fi
