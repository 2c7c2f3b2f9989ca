#!/usr/bin/env bash
# Installs the Debian packages the distributed test runs (PostgreSQL, Redis) when they are missing.
# The test only needs their binaries: it starts throwaway servers itself and never uses the system services.
set -euo pipefail
missing=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ] || [ ! -x "$pg_bin/pg_ctl" ]; then
  missing+=(postgresql)
fi
if ! command -v redis-server >/dev/null 2>&1; then
  missing+=(redis-server)
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "==> postgresql and redis-server are installed"
  exit 0
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi
echo "==> installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
# --no-install-recommends: the test needs the server binaries, not the extras Debian recommends.
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
