#!/usr/bin/env bash
# Installs what TwinStream needs on a fresh Debian machine (idempotent): librdkafka-dev for the
# build, kcat for benchmarks, docker-compose to validate the compose file. Needs root or sudo.
set -euo pipefail
need=()
dpkg -s librdkafka-dev >/dev/null 2>&1 || need+=(librdkafka-dev)
command -v kcat >/dev/null 2>&1 || need+=(kcat)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
command -v swift >/dev/null 2>&1 || { echo "swift 6 toolchain not found on PATH" >&2; exit 1; }
