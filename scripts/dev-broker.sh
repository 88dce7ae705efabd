#!/usr/bin/env bash
# Starts the dev broker on 127.0.0.1:${PORT:-9092}: Apache Kafka 4.4.0 in KRaft mode, one node
# (its controller on PORT+1), data under .run/kafka kept across restarts; installs Kafka
# first when missing. Runs in the foreground; Ctrl-C (SIGTERM) stops it cleanly.
# RELAY_DEV_BROKER=tansu runs Tansu instead (scripts/install-tansu.sh builds it, ~10 min).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
port="${PORT:-9092}"
if [ "${RELAY_DEV_BROKER:-kafka}" = tansu ]; then
  data="${RELAY_BROKER_DATA:-$root/.run/tansu}"
  "$root/scripts/install-tansu.sh" >&2
  mkdir -p "$data" && cd "$data" # Tansu 0.6 resolves the sqlite path against its cwd.
  exec "$root/.tools/bin/tansu" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine "sqlite://tansu.db"
fi
"$root/scripts/install-kafka.sh" >/dev/null
exec "$root/scripts/kafka-broker.sh" --dir "${RELAY_BROKER_DATA:-$root/.run/kafka}" --port "$port"
