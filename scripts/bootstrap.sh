#!/usr/bin/env bash
# Installs what TwinStream needs on a fresh Debian machine (idempotent): librdkafka-dev for the
# build, kcat for benchmarks, docker-compose to validate the compose file, prometheus (promtool
# and the server: Tests/DeployTests check the shipped rules and run every dashboard query) and
# prometheus-alertmanager (amtool checks the shipped routing), python3-venv (scripts/schemathesis.sh
# makes its virtual environment). Needs root or sudo.
set -euo pipefail
need=()
dpkg -s librdkafka-dev >/dev/null 2>&1 || need+=(librdkafka-dev)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v amtool >/dev/null 2>&1 || need+=(prometheus-alertmanager)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
command -v swift >/dev/null 2>&1 || { echo "swift 6 toolchain not found on PATH" >&2; exit 1; }
