#!/usr/bin/env bash
# Simulation benchmark (not in CI): the Simulation module (SimBench, release build) beside SciPy
# on the room model, pinned to one core. Prints a markdown table.
#
#   Benchmarks/simulation.sh            (from the package root)
#   Benchmarks/simulation.sh --scale    one large request through Kafka over 1 and 2 workers, and
#                                       the simulated fleet's CPU per reading (see scale.sh)
#
# Needs python3 with venv; creates Benchmarks/simulation/.venv (git-ignored) with pinned SciPy.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if [ "${1:-}" = "--scale" ]; then shift; exec Benchmarks/simulation/scale.sh "$@"; fi
venv="Benchmarks/simulation/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet numpy==2.1.3 scipy==1.14.1
fi
# SIM_PACKAGE lets the benchmark build from another package that links these sources.
package="${SIM_PACKAGE:-$root}"
swift build -c release --product SimBench --package-path "$package"
bin="$(swift build -c release --product SimBench --package-path "$package" --show-bin-path)/SimBench"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pin=""
command -v taskset >/dev/null && pin="taskset -c 0"
$pin "$bin" "$root/Schemas/models" "$work/data.json" "$work/ours.json" >/dev/null
$pin "$venv/bin/python" Benchmarks/simulation/peer.py "$work/data.json" "$work/ours.json"
# The worker's own path (no Kafka) for the Monte Carlo row: decode, plan, run, encode.
"$venv/bin/python" -c 'import json,sys; r=json.load(open(sys.argv[1])); print("\nworker path (request JSON -> plan -> 10,000-sample Monte Carlo -> result JSON): %.3f s, result %d bytes" % (r["worker_mc_seconds"], r["worker_result_bytes"]))' "$work/ours.json"
