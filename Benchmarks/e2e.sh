#!/usr/bin/env bash
# The whole pipeline end to end: the embedded broker (`twinctl broker`) and all six services as
# processes, `twinctl load` offering a fixed rate over N twins, probes measuring post → visible.
# For 10,000 twins and for 100: steps at 1k, 5k, 10k readings/s, a short search for the highest
# sustained rate, 60 s at it, every reading accounted for and the final state compared with the
# benchmark's own reference fold; beside it raw → valid alone and the raw relay ceiling.
# Results (markdown, SVG, JSON) in Benchmarks/results/. Not run in CI. See Benchmarks/README.md.
#
#   Benchmarks/e2e.sh                               # builds release (.build-release), then ~8-10 min
#   Benchmarks/e2e.sh --quick                       # ~5 min
#   Benchmarks/e2e.sh --rate 8000 --twins 10000 --seconds 60    # one rate, no search
#   TWINSTREAM_BIN_DIR=/path/.build/release Benchmarks/e2e.sh   # skip the build (or --bin DIR)
#   Benchmarks/e2e.sh --soak 30m [--rate R]         # the soak (= Benchmarks/soak.sh)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${TWINSTREAM_BIN_DIR:-}
for (( i = 1; i <= $#; i++ )); do
    if [[ "${!i}" == "--bin" ]]; then j=$(( i + 1 )); bin=${!j}; fi
done
if [[ -z "$bin" ]]; then
    # A build path of its own, so a benchmark never clashes with the debug build of the tree.
    for product in twinctl ingestor validator state-updater query-api simulator-worker drift-monitor; do
        (cd "$ROOT" && swift build -c release --build-path .build-release --product "$product" >&2)
    done
    bin="$ROOT/.build-release/release"
fi
for exe in twinctl ingestor validator state-updater query-api simulator-worker drift-monitor; do
    [[ -x "$bin/$exe" ]] || { echo "e2e: $bin/$exe is missing (build it, or give another --bin / TWINSTREAM_BIN_DIR)" >&2; exit 1; }
done
"$bin/twinctl" load --help 2>&1 | grep -q '^  load ' || { echo "e2e: $bin/twinctl has no 'load' command (build twinctl from this tree)" >&2; exit 1; }
export TWINSTREAM_BIN_DIR="$bin"
exec python3 "$ROOT/Benchmarks/e2e/e2e.py" "$@"
