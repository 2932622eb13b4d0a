#!/usr/bin/env bash
# Ingestion and validation throughput: readings per second from telemetry.raw.v1 to
# telemetry.valid.v1 through the real ingestor and validator (release builds) on the embedded
# broker, every reading accounted for as valid or dead-lettered. Not run in CI.
#
#   Benchmarks/pipeline-throughput.sh                  # N=200000 fleet readings
#   N=500000 PARTITIONS=48 Benchmarks/pipeline-throughput.sh
#   BIN=.build/release Benchmarks/pipeline-throughput.sh   # skip `swift build`
#   PORT=28181 ...                                          # HTTP ports PORT and PORT+1 (two runs at once)
#   DRIFT=1 Benchmarks/pipeline-throughput.sh              # also one drift-monitor on telemetry.valid.v1 (HTTP PORT+2)
#
# The raw topic is filled first (the fleet simulator: pumps, rooms and batteries with valid
# values), then both services start; the rate is N over the time from the ingestor's first
# consumed message to the moment valid + dead-lettered readings reach N. When nothing more is
# accounted for during STALL_SECONDS (default 60; e.g. a mock broker whose partitions are full),
# it says how far it got and fails instead of waiting forever.
#
# With DRIFT=1 one drift-monitor (default settings) follows telemetry.valid.v1 from the start, as in
# production, and the run waits until it has taken every valid reading: its rate, its lag behind the
# validator (readings valid but not yet taken by the monitor) when the validator finished and at
# most, how long it needed after that, and its CPU per reading are printed beside the validator's.
# It keeps up when its lag stays bounded and it finishes about when the validator does.
set -euo pipefail

N=${N:-200000}
PORT=${PORT:-18181}
VPORT=$(( PORT + 1 ))
DPORT=$(( PORT + 2 ))
DRIFT=${DRIFT:-0}
TWINS=${TWINS:-1000}
# The embedded (mock) broker keeps only the last ~5 MiB of each partition. A drift-monitor joins
# after restoring its 24 partitions and may be far behind: once telemetry.valid.v1 holds more than
# that per partition, the readings it has not reached are gone and librdkafka moves it to the new
# start: it reaches the end (lag 0) without them, idle and with nothing to log, while this script
# waited for every valid reading (session 13's "stall" with DRIFT_STEP=30s at N=300000; reproduced
# with the default step: 297,488 of 300,000 taken, lag 0, for 50 s). So with DRIFT=1 the partitions
# are chosen to keep ~8,000 valid readings each (38 for N=300000 still lost ~2,500 once), and a
# monitor at lag 0 that stops progressing ends its measurement with the loss named.
if [[ "${DRIFT:-0}" == 1 ]]; then PARTITIONS=${PARTITIONS:-$(( N / 8000 > 24 ? (N + 7999) / 8000 : 24 ))}; fi
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
    if [[ "$DRIFT" == 1 ]]; then (cd "$ROOT" && swift build -c release --product drift-monitor >&2); fi
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
# A backlog is a minute of simulated time per tick: it starts that many minutes ago, so no reading
# is further ahead of the clock than the ingestor's MAX_FUTURE_SKEW (5 min) — from now on, all but
# the first five ticks would be dead-lettered as future_timestamp and the run would measure that.
"$BIN/twinctl" fleet --brokers "$B" --twins "$TWINS" --ticks $(( N / TWINS )) --interval-ms 0 \
    --start $(( $(date +%s%3N) - N / TWINS * 60000 )) >/dev/null
N=$(( N / TWINS * TWINS ))
# Side by side (pipeline-ab.sh): say the raw topic is full, and start the services only when the
# other run's is too, so both measure over the same seconds (filling takes longer than measuring).
if [[ -n "${START_GATE:-}" ]]; then
    touch "$START_GATE.$PORT.filled"
    for _ in $(seq 1 6000); do [[ -e "$START_GATE" ]] && break; sleep 0.05; done
    [[ -e "$START_GATE" ]] || { echo "pipeline-throughput: no start signal at $START_GATE within 5 minutes" >&2; exit 1; }
fi

export KAFKA_BROKERS="$B" LOG_LEVEL=warning MODELS_DIR="$ROOT/Schemas/models"
# The fleet fills ticks × reporting interval of event time ahead of the clock (--interval-ms 0):
# with the ingestor's default 5-minute MAX_FUTURE_SKEW all but the first ticks were dead-lettered
# as future_timestamp, and the run measured dead-lettering.
export MAX_FUTURE_SKEW=${MAX_FUTURE_SKEW:-1000h}
# As `twinctl up` runs them (EmbeddedBroker.clientProperties): the mock broker holds a fetch that
# found nothing for the whole fetch.wait.max.ms even when data arrives meanwhile (a real broker
# answers at once), so with the 500 ms default the validator starts half a second late.
export KAFKA_FETCH_WAIT_MAX_MS=${KAFKA_FETCH_WAIT_MAX_MS:-50}
HTTP_PORT=$PORT "$BIN/ingestor" >"$WORK/ingestor.log" 2>&1 &
PIDS+=($!)
HTTP_PORT=$VPORT "$BIN/validator" >"$WORK/validator.log" 2>&1 &
PIDS+=($!)
if [[ "$DRIFT" == 1 ]]; then
    HTTP_PORT=$DPORT "$BIN/drift-monitor" >"$WORK/drift-monitor.log" 2>&1 &
    PIDS+=($!)
else
    DPORT=0
fi

# One long-lived poller (Python's standard library, keep-alive connections) measures: a shell loop
# spawning curl and awk twenty times a second used a quarter of this 2-core machine itself.
python3 - "$N" "${STALL_SECONDS:-60}" "$PORT" "$VPORT" "$DPORT" "${PIDS[@]}" <<'EOF'
import http.client, os, sys, time

n, stall_seconds = int(sys.argv[1]), float(sys.argv[2])
ingestor_port, validator_port, drift_port = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
pids = [int(p) for p in sys.argv[6:10]]  # broker, ingestor, validator (, drift-monitor)
hz = os.sysconf("SC_CLK_TCK")
connections = {}

def metric(port, name, filter=""):
    """The summed value of the series of `name` whose line contains `filter`."""
    for attempt in (0, 1):
        try:
            c = connections.get(port) or connections.setdefault(port, http.client.HTTPConnection("127.0.0.1", port, timeout=5))
            c.request("GET", "/metrics")
            text = c.getresponse().read().decode()
            break
        except (OSError, http.client.HTTPException):
            connections.pop(port, None)
            if attempt: return 0
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and filter in line))

def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])

start = t10 = t90 = end = drift_start = None
lost = 0
max_lag, drift_progress = 0, -1
progress, progress_at = -1, time.monotonic()  # readings accounted for, and since when
while True:
    now = time.monotonic()
    if now - progress_at > stall_seconds:
        behind = ""
        if drift_port and progress >= n:
            behind = (f"; the drift-monitor took {max(drift_progress, 0)} of them (a consumer that far behind on the embedded broker, "
                      "which keeps ~5 MiB per partition, has lost its position: more PARTITIONS or a smaller N)")
        sys.exit(f"pipeline-throughput: no progress for {stall_seconds:g} s: "
                 f"{max(progress, 0)} of {n} readings accounted for" + ("" if start else " (the ingestor consumed nothing)") + behind)
    if start is None:
        if metric(ingestor_port, "twinstream_messages_consumed_total", "telemetry.raw.v1") > 0:
            start, cpu_start = now, [ticks(p) for p in pids]
        else:
            time.sleep(0.02)
            continue
    valid = metric(validator_port, "twinstream_messages_produced_total", "telemetry.valid.v1")
    dead_validator = metric(validator_port, "twinstream_messages_produced_total", "telemetry.deadletter.v1")
    dead_ingestor = metric(ingestor_port, "twinstream_messages_produced_total", "telemetry.deadletter.v1")
    total = valid + dead_validator + dead_ingestor
    if total != progress: progress, progress_at = total, now
    # Steady state: the rate between 10% and 90% of the readings accounted for (no group joins,
    # no warm-up, no tail), reported beside the whole-run figure.
    if t10 is None and total >= n // 10: t10, n10 = now, total
    if t90 is None and total >= n * 9 // 10: t90, n90 = now, total
    if drift_port:
        drift = metric(drift_port, "twinstream_messages_consumed_total", "telemetry.valid.v1")
        if drift_start is None and drift > 0: drift_start = now
        max_lag = max(max_lag, valid - drift)
        if drift != drift_progress: drift_progress, progress_at = drift, now
    if total >= n and end is None:
        end, cpu_end = now, [ticks(p) for p in pids]
        if drift_port: lag_at_end = valid - drift
    if end is not None and (not drift_port or drift >= valid):
        drift_end, drift_cpu_end = now, [ticks(p) for p in pids]
        break
    # The monitor at the end of its partitions (lag 0) for 5 s without having taken every valid
    # reading: the embedded broker dropped the rest (its retention) before the monitor, which joins
    # after restoring its partitions, read them. Nothing will come: measure up to its last progress.
    if end is not None and drift_port and now - progress_at > 5 and metric(drift_port, "twinstream_consumer_lag_messages", "twinstream-drift-monitor") == 0:
        lost = valid - drift
        drift_end, drift_cpu_end = progress_at, [ticks(p) for p in pids]
        break
    time.sleep(0.02)

cpu = [b - a for a, b in zip(cpu_start, cpu_end)]
us = lambda t: t / hz / n * 1e6
print(f"raw -> valid: {n} readings in {end - start:.2f} s = {n / (end - start):.0f} readings/s (valid {valid}, "
      f"dead-lettered by validator {dead_validator}, by ingestor {dead_ingestor}); CPU of broker + ingestor + validator: "
      f"{us(sum(cpu)):.1f} us per reading ({sum(cpu) / hz / (end - start):.2f} cores busy)")
print(f"CPU per reading: broker {us(cpu[0]):.1f} us, ingestor {us(cpu[1]):.1f} us, validator {us(cpu[2]):.1f} us")
batches = [metric(port, "twinstream_batch_process_seconds_count") for port in (ingestor_port, validator_port)]
print(f"batches: ingestor {batches[0]} (mean {n // max(batches[0], 1)} messages), validator {batches[1]} (mean {n // max(batches[1], 1)} messages)")
if t90 is not None and t90 > t10:
    print(f"steady state (10% to 90% of the readings): {(n90 - n10) / (t90 - t10):.0f} readings/s")
if drift_port:
    d_cpu = drift_cpu_end[3] - cpu_start[3]
    updates = metric(drift_port, "twinstream_drift_detector_updates_total")
    d_batches = metric(drift_port, "twinstream_batch_process_seconds_count")
    d_logic = metric(drift_port, "twinstream_batch_process_seconds_sum")
    d_states = metric(drift_port, "twinstream_messages_produced_total", "drift.state.v1")
    alerts = metric(drift_port, "twinstream_drift_alerts_total")
    taken = valid - lost
    print(f"drift-monitor on telemetry.valid.v1: {taken} readings in {drift_end - start:.2f} s = {taken / (drift_end - start):.0f} readings/s "
          f"(validator: {valid / (end - start):.0f}); lag behind the validator {lag_at_end} readings when it finished, at most {max_lag}; "
          f"done {drift_end - end:.2f} s after it; CPU {d_cpu / hz / max(taken, 1) * 1e6:.1f} us per reading "
          f"({d_cpu / hz / (drift_end - start):.2f} cores busy); {updates} detector updates, {alerts} alert messages, "
          f"{d_states} drift.state documents; {d_batches} batches, about {d_logic} s in the stage's logic")
    if lost:
        print(f"drift-monitor: {lost} valid readings were gone (the embedded broker's ~5 MiB per partition) before it read them; "
              "its figures are over the readings it took (more PARTITIONS or a smaller N avoids it)")
    print("drift-monitor keeps up" if drift_end - end <= max(1.0, 0.1 * (end - start)) else "drift-monitor does NOT keep up")
EOF
