#!/usr/bin/env bash
# HTTP ingest throughput: wrk posting a JSON array of READINGS readings to POST /v1/telemetry on
# a release ingestor against the embedded broker (`twinctl broker`). Every 202 means the broker
# acknowledged all readings. Prints requests/s and readings/s. Not run in CI.
#
#   Benchmarks/http-ingest.sh                           # 100 readings per request, 64 connections, 30 s
#   READINGS=500 CONNECTIONS=32 DURATION=60s Benchmarks/http-ingest.sh
#   BIN=/path/to/release/bin Benchmarks/http-ingest.sh  # skip `swift build -c release`
#
# Needs wrk (apt-get install wrk). Keep CONNECTIONS at or below HTTP_MAX_INFLIGHT_REQUESTS (64):
# beyond it the ingestor answers 429 by design, which wrk counts as non-2xx.
set -euo pipefail

READINGS=${READINGS:-100}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
DURATION=${DURATION:-30s}
PORT=${PORT:-18091}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/twinstream-http-bench.XXXXXX")
BROKER_PID=
INGESTOR_PID=

cleanup() {
    [ -n "$INGESTOR_PID" ] && kill "$INGESTOR_PID" 2>/dev/null && wait "$INGESTOR_PID" 2>/dev/null
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "http-ingest: wrk not found (apt-get install wrk)" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
    (cd "$ROOT" && swift build -c release --product ingestor >&2 && swift build -c release --product twinctl >&2)
    BIN="$ROOT/.build/release"
fi

"$BIN/twinctl" keys add --tenant bench --scopes ingest --file "$WORK/keys.json" > "$WORK/key" 2>/dev/null
"$BIN/twinctl" broker > "$WORK/broker.out" 2> "$WORK/broker.err" &
BROKER_PID=$!
for _ in $(seq 50); do grep -q bootstrap.servers= "$WORK/broker.out" && break; sleep 0.1; done
BROKERS=$(sed -n 's/bootstrap.servers=//p' "$WORK/broker.out")
API_KEYS_FILE="$WORK/keys.json" KAFKA_BROKERS="$BROKERS" HTTP_PORT="$PORT" LOG_LEVEL=warning \
    "$BIN/ingestor" > "$WORK/ingestor.log" 2>&1 &
INGESTOR_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

# READINGS readings of distinct twins, three values each (~95 bytes per reading).
NOW=$(( $(date +%s) * 1000 ))
{
    printf '['
    for i in $(seq 0 $((READINGS - 1))); do
        [ "$i" -gt 0 ] && printf ','
        printf '{"twinId":"pump-%d","ts":%d,"values":{"temperature":%d.5,"pressure":3.2,"rpm":1450}}' "$i" $((NOW - 1000 + i)) $((20 + i % 50))
    done
    printf ']'
} > "$WORK/body.json"
cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $(cat "$WORK/key")"
local f = io.open("$WORK/body.json", "rb"); wrk.body = f:read("*a"); f:close()
LUA

status=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $(cat "$WORK/key")" \
    -H 'Content-Type: application/json' --data-binary @"$WORK/body.json" "http://127.0.0.1:$PORT/v1/telemetry")
[ "$status" = 202 ] || { echo "http-ingest: warm-up POST answered $status" >&2; cat "$WORK/ingestor.log" >&2; exit 1; }

echo "# $(wc -c < "$WORK/body.json") byte body, $READINGS readings; wrk -t$THREADS -c$CONNECTIONS -d$DURATION" >&2
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$WORK/post.lua" "http://127.0.0.1:$PORT/v1/telemetry" | tee "$WORK/wrk.out"
rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")
awk -v rps="$rps" -v n="$READINGS" 'BEGIN { printf "readings/s: %.0f (%s requests/s x %d)\n", rps * n, rps, n }'
curl -s "http://127.0.0.1:$PORT/metrics" | grep '^twinstream_ingest_http_requests_total' >&2
