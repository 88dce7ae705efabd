#!/usr/bin/env bash
# The one-command local stack, no Docker needed: installs what is missing (Debian packages,
# Java and Apache Kafka from Maven artifacts), builds the relay, then runs the dev broker, the Genesys Cloud and CMS
# simulators and `genesys-relay serve` until Ctrl-C. The relay also listens on Genesys
# notification channels (pull mode, `RELAY_LISTEN_QUEUES=all` over the simulator's queues).
#
#   scripts/local-stack.sh            # human-readable logs
#   RELAY_LOG_FORMAT=json scripts/local-stack.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
run="$root/.run"
mkdir -p "$run"
broker_port="${BROKER_PORT:-9092}"
secret="${RELAY_WEBHOOK_SECRET:-local-dev-secret}"

scripts/install-deps.sh
if [ "${RELAY_DEV_BROKER:-kafka}" = tansu ]; then scripts/install-tansu.sh; else scripts/install-kafka.sh >/dev/null; fi
echo "== building genesys-relay (first build: about 4 minutes on 2 cores)"
cargo build --locked --bin genesys-relay --bin genesys-sim
relay="${CARGO_TARGET_DIR:-$root/target}/debug/genesys-relay"
sim="${CARGO_TARGET_DIR:-$root/target}/debug/genesys-sim"

pids=()
cleanup() {
  # SIGTERM lets the relay drain and commit; the broker and simulators stop after it.
  [ ${#pids[@]} -gt 0 ] || return 0
  local relay_pid="${pids[-1]}"
  kill -TERM "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

echo "== dev broker on 127.0.0.1:$broker_port (log: .run/broker.log, .run/kafka/logs/server.log)"
PORT="$broker_port" scripts/dev-broker.sh > "$run/broker.log" 2>&1 &
pids+=($!)
# A JVM broker takes ~5 s to listen on an idle machine; allow a minute on a busy one.
for _ in $(seq 1 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$broker_port") 2>/dev/null && break
  sleep 0.2
done

echo "== simulators: Genesys Cloud 127.0.0.1:8181, CMS 127.0.0.1:8282 (log: .run/sim.log)"
"$sim" --genesys-addr 127.0.0.1:8181 --cms-addr 127.0.0.1:8282 > "$run/sim.log" 2>&1 &
pids+=($!)

# Three queues in the simulator, so `RELAY_LISTEN_QUEUES=all` has topics to subscribe.
for _ in $(seq 1 100); do
  curl -fs -X POST http://127.0.0.1:8181/__sim/queues -H 'Content-Type: application/json' \
    -d '{"count":3}' > /dev/null && break
  sleep 0.2
done

export RELAY_KAFKA_BROKERS="127.0.0.1:$broker_port"
export RELAY_HTTP_ADDR="${RELAY_HTTP_ADDR:-127.0.0.1:8080}"
export RELAY_ADMIN_ADDR="${RELAY_ADMIN_ADDR:-127.0.0.1:9464}"
export RELAY_WEBHOOK_SECRET="$secret"
export RELAY_GENESYS_API_BASE="http://127.0.0.1:8181"
export RELAY_GENESYS_LOGIN_BASE="http://127.0.0.1:8181"
export RELAY_GENESYS_CLIENT_ID="sim-client"
export RELAY_GENESYS_CLIENT_SECRET="sim-secret"
export RELAY_CMS_URL="http://127.0.0.1:8282/v1/entries"
export RELAY_FORWARD_URL="http://127.0.0.1:8282/v1/events"
export RELAY_RETRY_DELAYS="${RELAY_RETRY_DELAYS:-5s,60s,600s}"
export RELAY_LISTEN_QUEUES="${RELAY_LISTEN_QUEUES:-all}"

cat <<MSG

== genesys-relay is starting.

== Pull mode (no public endpoint needed): the relay listens on Genesys notification
   channels for every queue. Publish a queue conversation notification as Genesys would:

  curl -s -X POST http://127.0.0.1:8181/__sim/notify -H 'Content-Type: application/json' \
    -d '{"topicName":"v2.routing.queues.5a1e0000-0000-4000-8000-000000000000.conversations","version":"2","eventBody":{"id":"conv-2","participants":[{"id":"p-2","purpose":"customer","attributes":{"cart_value":"42.50","last_page":"/checkout"}}]},"metadata":{"CorrelationId":"demo-2"}}'; echo

== and see its customer attributes arrive in the CMS simulator:

  curl -s http://127.0.0.1:8282/v1/entries/conv-2; echo

== Push mode: send a guest event to the ingress:

  curl -i -X POST http://$RELAY_HTTP_ADDR/webhooks/genesys \\
    -H 'Content-Type: application/json' -H 'X-Relay-Secret: $secret' \\
    -d '{"eventType":"conversation:updated","eventId":"demo-1","timestamp":"2026-11-24T08:00:00Z","data":{"conversationId":"conv-1","guestId":"guest-1"}}'

== and see conv-1's customer attributes arrive in the CMS simulator:

  curl -s http://127.0.0.1:8282/v1/entries/conv-1; echo
  curl -s http://127.0.0.1:8282/__sim/stats; echo

== metrics: curl -s http://$RELAY_ADMIN_ADDR/metrics   (Ctrl-C stops everything)

MSG
"$relay" serve &
pids+=($!)
wait "${pids[-1]}"
