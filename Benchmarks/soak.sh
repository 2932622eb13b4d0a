#!/usr/bin/env bash
# Soak: the whole stack for 30 minutes (or $1: 3m, 1h) at half the highest sustained rate of the
# last e2e results (or --rate R), sampling RSS, freshness, errors and lag; a table and an SVG in
# Benchmarks/results/soak-*; exits 1 on growth, errors, lost readings or a state that differs from
# the reference fold. Not run in CI.
#
#   Benchmarks/soak.sh                 # 30 min
#   Benchmarks/soak.sh 3m --rate 4000 --twins 10000
set -euo pipefail
duration=30m
if [[ $# -gt 0 && "$1" != --* ]]; then duration=$1; shift; fi
exec "$(dirname "${BASH_SOURCE[0]}")/e2e.sh" --soak "$duration" "$@"
