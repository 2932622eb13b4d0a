#!/bin/sh
# Instructions per reading of the state-updater and of the query API's views, counted by callgrind
# over `StateBench per-reading` (see Benchmarks/StateBench/PerReading.swift): exact for one binary
# and one input, so two builds compare without the noise of a shared machine.
#
#   Benchmarks/per-reading.sh                     # builds StateBench (release); 10,000 twins, 2 rounds
#   BIN=/tmp/StateBench.old Benchmarks/per-reading.sh   # another binary (A/B)
#   TWINS=100 ROUNDS=100 RATE=5000 FLUSH_MS=250 Benchmarks/per-reading.sh
#
# Variables: TWINS (10000), ROUNDS (2: measured readings per twin), BATCH (250 messages per batch),
# RATE (10000 readings/s: how fast the simulated clock runs), FLUSH_MS (250: STATE_FLUSH_INTERVAL).
set -eu
cd "$(dirname "$0")/.."
TWINS=${TWINS:-10000} ROUNDS=${ROUNDS:-2} BATCH=${BATCH:-250} RATE=${RATE:-10000} FLUSH_MS=${FLUSH_MS:-250}
if [ -z "${BIN:-}" ]; then
    swift build -c release --product StateBench >&2
    BIN=.build/release/StateBench
fi
# KEEP=dir keeps the callgrind outputs there (for callgrind_annotate --inclusive=yes).
if [ -n "${KEEP:-}" ]; then out=$KEEP; mkdir -p "$out"; else out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; fi
readings=$((TWINS * ROUNDS))
"$BIN" per-reading "$TWINS" "$ROUNDS" "$BATCH" "$RATE" "$FLUSH_MS"
for part in measuredStateUpdaterPass measuredQueryViewsPass; do
    # Swift mangles `measuredStateUpdaterPass` in module StateBench as `measuredA11UpdaterPass`
    # (the module name's "State" is a substitution), so the pattern skips that word.
    pattern=$(echo "$part" | sed 's/State/*/')
    valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$out/$part.out" --collect-atstart=no --toggle-collect="*$pattern*" \
        "$BIN" per-reading "$TWINS" "$ROUNDS" "$BATCH" "$RATE" "$FLUSH_MS" > "$out/$part.log" 2>&1 &
done
wait
for part in measuredStateUpdaterPass measuredQueryViewsPass; do
    total=$(sed -n 's/.*I *refs: *//p' "$out/$part.log" | tr -d ,)
    echo "$part: $total instructions, $((total / readings)) per reading"
done
