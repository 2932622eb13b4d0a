#!/usr/bin/env bash
# Two builds of the ingestor and validator compared side by side: each round runs
# `pipeline-throughput.sh` for both at the same time, each with its own embedded broker, and
# starts both pairs of services once both raw topics are full, so both meet the same load from the
# rest of the host over the same seconds (without the wait for both fills, a round's two
# measurements often did not overlap at all). On these shared 2-core machines the CPU per
# reading of one build moves by ±20% from run to run; side by side, two identical builds agree
# within about 5%. Compare the CPU per reading (the rate of each is about half of a lone run).
# Use it for code changes, not for batching settings: at half the rate each side's batches differ
# from a lone run's (KAFKA_LINGER_MS=20 saved 9% CPU here and lost 5-12% of the rate alone).
#
#   Benchmarks/pipeline-ab.sh /tmp/old-release .build/release [ROUNDS]
#   A_ENV="GLIBC_TUNABLES=..." Benchmarks/pipeline-ab.sh .build/release .build/release   # a setting, not a build
#   DRIFT=1 Benchmarks/pipeline-ab.sh /tmp/old-release .build/release   # with a drift-monitor each: its CPU per reading too
set -euo pipefail

A=$1
B=$2
ROUNDS=${3:-4}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(mktemp -d "${TMPDIR:-/tmp}/twinstream-ab.XXXXXX")
trap 'rm -rf "$OUT"' EXIT

for (( r = 1; r <= ROUNDS; r++ )); do
    gate="$OUT/go-$r"
    env ${A_ENV:-} N="${N:-300000}" BIN="$A" PORT=18181 START_GATE="$gate" "$ROOT/Benchmarks/pipeline-throughput.sh" >"$OUT/a" 2>&1 &
    a=$!
    env ${B_ENV:-} N="${N:-300000}" BIN="$B" PORT=28181 START_GATE="$gate" "$ROOT/Benchmarks/pipeline-throughput.sh" >"$OUT/b" 2>&1 &
    b=$!
    # Both raw topics full, then both pipelines start at once (else they may not overlap at all).
    while [[ ! -e "$gate.18181.filled" || ! -e "$gate.28181.filled" ]] && kill -0 "$a" 2>/dev/null && kill -0 "$b" 2>/dev/null; do sleep 0.05; done
    touch "$gate"
    status=0
    wait "$a" || status=$?
    wait "$b" || status=$?
    (( status == 0 )) || { cat "$OUT/a" "$OUT/b" >&2; exit "$status"; }
    for side in a b; do
        drift=$(grep -o 'readings/s (validator: [0-9]*); .*CPU [0-9.]* us per reading' "$OUT/$side" | grep -o 'CPU [0-9.]* us' | sed 's/CPU/drift-monitor/' || true)
        echo "round $r $side: $(grep -o '= [0-9]* readings/s' "$OUT/$side" | head -1) | $(grep 'CPU per reading:' "$OUT/$side")${drift:+, $drift}" | tee -a "$OUT/all"
    done
done
python3 - "$OUT/all" <<'PY'
import re, sys, statistics
cpu = {"a": {}, "b": {}}
for line in open(sys.argv[1]):
    side = line.split()[2].rstrip(":")
    for name, value in re.findall(r"(broker|ingestor|validator|drift-monitor) ([\d.]+) us", line):
        cpu[side].setdefault(name, []).append(float(value))
for side in "ab":
    print(f"{side}: mean CPU per reading " + ", ".join(f"{n} {statistics.mean(v):.2f} us" for n, v in cpu[side].items()))
PY
