#!/usr/bin/env bash
# Starts the dev broker (Tansu, Kafka protocol) on 127.0.0.1:${PORT:-9092} with sqlite storage
# under .run/tansu, installing it first when missing. Runs in the foreground; Ctrl-C stops it.
# The sqlite engine keeps data across restarts (the memory engine of 0.6.0 mis-serves fetches
# that start inside a batch).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
port="${PORT:-9092}"
data="${RELAY_BROKER_DATA:-$root/.run/tansu}"
"$root/scripts/install-tansu.sh" >&2
mkdir -p "$data"
# Tansu 0.6 resolves the sqlite path against its working directory.
cd "$data"
exec "$root/.tools/bin/tansu" broker \
  --listener-url "tcp://127.0.0.1:$port" \
  --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine "sqlite://tansu.db"
