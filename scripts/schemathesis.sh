#!/usr/bin/env bash
# The query API against its own OpenAPI document: starts the local stack (`twinctl up` on free
# ports, a small fleet so there are twins to read), makes an API key of every scope, and runs
# Schemathesis (PyPI, in a venv this script creates) with every check against /openapi.json once
# per key. Prints each run's summary and ends with the total of failures; exit 0 when there are
# none beyond the deliberate exceptions named below.
#
#   scripts/schemathesis.sh                    # after `swift build`; ~3 minutes
#   MAX_EXAMPLES=200 scripts/schemathesis.sh   # deeper (default 40 cases per operation and key)
#   SEED=7 scripts/schemathesis.sh             # another seed (default 1: reproducible)
#
# The deliberate exceptions to Schemathesis's checks are named, with why, in
# scripts/schemathesis.toml (the 503 of ?minVersion=, and requests whose validity depends on the
# twin's model or on the filter grammar).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin=${TWINSTREAM_BIN_DIR:-$root/.build/debug}
version=4.32.5
venv=$root/.venv-schemathesis
max_examples=${MAX_EXAMPLES:-40}
seed=${SEED:-1}

[ -x "$bin/twinctl" ] || { echo "no $bin/twinctl: run swift build first (or set TWINSTREAM_BIN_DIR)" >&2; exit 2; }
if [ ! -x "$venv/bin/st" ] || [ "$("$venv/bin/st" --version 2>/dev/null)" != "st, version $version" ]; then
    echo "installing schemathesis $version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==$version"
fi

work=$(mktemp -d /tmp/twinstream-schemathesis.XXXXXX)
# Six consecutive free ports, below the ephemeral range.
base=$(python3 - <<'EOF'
import random, socket
for _ in range(2000):
    base = random.randrange(20000, 31000)
    ok = True
    for port in range(base, base + 6):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            ok = False
        s.close()
        if not ok:
            break
    if ok:
        print(base)
        break
EOF
)

# A key of every scope, in the file the stack reads at start-up.
keys=$work/api-keys.json
declare -A key
for scope in read write ingest simulate admin; do
    key[$scope]=$("$bin/twinctl" keys add --tenant default --scopes "$scope" --file "$keys" 2>/dev/null)
done

up_pid=
stop() {
    if [ -n "$up_pid" ] && kill -0 "$up_pid" 2>/dev/null; then
        kill -INT "$up_pid"
        wait "$up_pid" || true
    fi
}
trap stop EXIT
# No request rate limit (Schemathesis sends fast); minVersion waits short by default.
(cd "$work" && API_KEYS_FILE=$keys RATE_LIMIT_PER_KEY=0 MIN_VERSION_WAIT=200ms exec "$bin/twinctl" up --base-port "$base" --twins 6 --interval-ms 250 \
    >"$work/up.log" 2>&1) &
up_pid=$!
for _ in $(seq 1 600); do
    grep -q '^platform up' "$work/up.log" && break
    kill -0 "$up_pid" 2>/dev/null || { cat "$work/up.log"; echo "twinctl up stopped" >&2; exit 1; }
    sleep 0.2
done
grep -q '^platform up; Ctrl-C' "$work/up.log" || { cat "$work/up.log"; echo "the stack did not start" >&2; exit 1; }
echo "stack up on ports $base-$((base + 5)) (logs: $work)"

api=http://127.0.0.1:$base
failures=0
start=$(date +%s)
for scope in ${SCOPES:-admin read write simulate ingest}; do
    echo "=== key with scope $scope"
    set +e
    # Run from the work folder: Schemathesis keeps its cache (.schemathesis/) in the current one.
    (cd "$work" && "$venv/bin/st" --config-file "$root/scripts/schemathesis.toml" run "$api/openapi.json" --url "$api" \
        --header "Authorization: Bearer ${key[$scope]}" \
        --max-examples "$max_examples" --seed "$seed" --workers 1 \
        --report junit --report-junit-path "$work/junit-$scope.xml" >"$work/st-$scope.log" 2>&1)
    status=$?
    set -e
    tail -n 25 "$work/st-$scope.log"
    if [ "$status" -ne 0 ]; then failures=$((failures + 1)); fi
done
echo "schemathesis: $((($(date +%s) - start))) s for 5 keys x ${max_examples} cases per operation; logs in $work"
if [ "$failures" -ne 0 ]; then
    echo "FAILED: $failures of 5 runs reported failures (see $work/st-*.log)"
    exit 1
fi
echo "OK: no failures"
