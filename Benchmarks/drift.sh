#!/usr/bin/env bash
# Drift detectors: Swift `Drift` module vs River, side by side (not run in CI).
#
#   Benchmarks/drift.sh              benchmark: 100 seeds × 100,000 N(0,1) samples with a +1σ shift at 50,000
#                                    and 100 seeds without; median/max delay, false alarms per 100k and
#                                    samples/s on one core for ADWIN, Page–Hinkley and CUSUM; markdown table.
#   Benchmarks/drift.sh --fixtures   regenerate Tests/DriftTests/Fixtures with the pinned River/SciPy/NumPy.
#   Benchmarks/drift.sh --monitor    only the drift monitor's own rate (DriftMonitorBench, no Python): readings/s
#                                    per core through the residual path in process, memory per twin, the cost
#                                    of a drift.state document. The full run prints it after the detector table.
#
# Environment: MONITOR_TWINS (2000) and MONITOR_READINGS (600 per twin) for DriftMonitorBench, SEEDS (100), LENGTH (100000), CHANGE (50000), RIVER_TIMED_STREAMS (all) to time River on fewer
# streams, DRIFT_DATA (scratch dir, default /tmp/twinstream-drift), PACKAGE_DIR (package root to build
# DriftBench in; default the repository root), PYTHON (python3 used to create the venv).
# The virtual environment lives in Benchmarks/drift/.venv-drift (git-ignored).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="$HERE/drift/.venv-drift"
PACKAGE_DIR="${PACKAGE_DIR:-$ROOT}"
DATA="${DRIFT_DATA:-/tmp/twinstream-drift}"
SEEDS="${SEEDS:-100}"
LENGTH="${LENGTH:-100000}"
CHANGE="${CHANGE:-50000}"
RIVER_TIMED_STREAMS="${RIVER_TIMED_STREAMS:-$((2 * SEEDS))}"

# Versions the fixtures were generated with; the Swift tests assert the River version.
PINS=(river==0.26.1 scipy==1.17.1 numpy==2.4.6)

venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        "${PYTHON:-python3}" -m venv "$VENV"
    fi
    if ! "$VENV/bin/python" -c 'import river, scipy, numpy, sys; sys.exit(0 if (river.__version__, scipy.__version__, numpy.__version__) == ("0.26.1", "1.17.1", "2.4.6") else 1)' 2>/dev/null; then
        "$VENV/bin/pip" install --quiet "${PINS[@]}"
    fi
}

monitor() {
    echo "building DriftMonitorBench (release) in $PACKAGE_DIR" >&2
    (cd "$PACKAGE_DIR" && swift build -c release --product DriftMonitorBench >&2)
    local bin
    bin="$(cd "$PACKAGE_DIR" && swift build -c release --product DriftMonitorBench --show-bin-path)/DriftMonitorBench"
    (cd "$PACKAGE_DIR" && taskset -c 0 "$bin" "${MONITOR_TWINS:-2000}" "${MONITOR_READINGS:-600}")
}

if [[ "${1:-}" == "--monitor" ]]; then
    monitor
    exit 0
fi

if [[ "${1:-}" == "--fixtures" ]]; then
    venv
    "$VENV/bin/python" "$HERE/drift/make_fixtures.py"
    exit 0
fi

venv
mkdir -p "$DATA"
STREAMS_FILE="$DATA/streams-$SEEDS-$LENGTH-$CHANGE.f64"
if [[ ! -s "$STREAMS_FILE" ]]; then
    echo "generating $((2 * SEEDS)) streams of $LENGTH values -> $STREAMS_FILE" >&2
    "$VENV/bin/python" "$HERE/drift/bench_streams.py" "$STREAMS_FILE" "$SEEDS" "$LENGTH" "$CHANGE"
fi

echo "building DriftBench (release) in $PACKAGE_DIR" >&2
(cd "$PACKAGE_DIR" && swift build -c release --product DriftBench >&2)
BIN="$(cd "$PACKAGE_DIR" && swift build -c release --product DriftBench --show-bin-path)/DriftBench"

echo "running Swift detectors on core 0" >&2
taskset -c 0 "$BIN" "$STREAMS_FILE" "$((2 * SEEDS))" "$LENGTH" "$DATA/swift.json"
echo "running River detectors on core 0 (this takes a few minutes)" >&2
taskset -c 0 "$VENV/bin/python" "$HERE/drift/river_peer.py" "$STREAMS_FILE" "$((2 * SEEDS))" "$LENGTH" "$DATA/river.json" "$RIVER_TIMED_STREAMS"
"$VENV/bin/python" "$HERE/drift/report.py" "$DATA/swift.json" "$DATA/river.json" "$SEEDS" "$LENGTH" "$CHANGE"
echo
monitor
