#!/usr/bin/env bash
# The one-command local stack, no Docker needed: installs what is missing (Debian packages,
# Java and Apache Kafka from Maven artifacts), builds the relay, then runs the dev broker, the Genesys Cloud and CMS
# simulators and `genesys-relay serve` until Ctrl-C. The relay also listens on Genesys
# notification channels (pull mode, `RELAY_LISTEN_QUEUES=all` over the simulator's queues).
#
#   scripts/local-stack.sh                     # human-readable logs
#   RELAY_LOG_FORMAT=json scripts/local-stack.sh
#   RELAY_CMS_KIND=strapi scripts/local-stack.sh # guest sessions go to a real Strapi 5
#                                              # (scripts/install-strapi.sh) on 127.0.0.1:1337
#                                              # instead of the CMS simulator
#   LOCAL_STACK_SMOKE=1 scripts/local-stack.sh # unattended (CI): start everything, run the
#                                              # printed demo commands, check both CMS entries,
#                                              # stop with SIGTERM, exit 0 when all of it held
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
run="$root/.run"
mkdir -p "$run"
broker_port="${BROKER_PORT:-9092}"
secret="${RELAY_WEBHOOK_SECRET:-local-dev-secret}"

cms_kind="${RELAY_CMS_KIND:-json}"
case "$cms_kind" in
  json) ;;
  strapi)
    if [ "${LOCAL_STACK_SMOKE:-0}" = 1 ]; then
      echo "LOCAL_STACK_SMOKE checks the CMS simulator's entries; run it with the default RELAY_CMS_KIND" >&2
      exit 2
    fi
    strapi_dir="$(scripts/install-strapi.sh)" ;;
  *) echo "local-stack.sh runs RELAY_CMS_KIND=json (the CMS simulator) or strapi, not $cms_kind" >&2; exit 2 ;;
esac

scripts/install-deps.sh
if [ "${RELAY_DEV_BROKER:-kafka}" = tansu ]; then scripts/install-tansu.sh; else scripts/install-kafka.sh >/dev/null; fi
echo "== building genesys-relay and its simulators (first build: a few minutes on 2 cores)"
# The simulators are another workspace member: name both packages, or cargo looks for
# `genesys-sim` in the root package only and stops.
cargo build --locked -p genesys-relay --bin genesys-relay -p genesys-sim --bin genesys-sim
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

if [ "${LOCAL_STACK_SMOKE:-0}" = 1 ]; then
  # The demo's event ids are fixed, and a kept broker remembers them as synced (that is the
  # idempotency promise): an unattended run starts from an empty broker of its own.
  export RELAY_BROKER_DATA="$run/smoke-kafka"
  rm -rf "$RELAY_BROKER_DATA"
fi
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

if [ "$cms_kind" = strapi ]; then
  strapi_port="${STRAPI_PORT:-1337}"
  strapi_token="${RELAY_CMS_API_KEY:-local-dev-strapi-token}"
  echo "== Strapi 5 on 127.0.0.1:$strapi_port, SQLite in .run/strapi (log: .run/strapi.log; first start ~15 s)"
  mkdir -p "$run/strapi"
  (cd "$strapi_dir" && HOST=127.0.0.1 PORT="$strapi_port" NODE_ENV=production \
    DATABASE_FILENAME="$run/strapi/data.db" RELAY_FIXTURE_API_TOKEN="$strapi_token" \
    STRAPI_TELEMETRY_DISABLED=true STRAPI_DISABLE_UPDATE_NOTIFICATION=true \
    exec node_modules/.bin/strapi start) > "$run/strapi.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 1200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$strapi_port/_health")" = 204 ] && break
    sleep 0.2
  done
fi

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
if [ "$cms_kind" = strapi ]; then
  export RELAY_CMS_KIND=strapi
  export RELAY_CMS_URL="http://127.0.0.1:$strapi_port"
  export RELAY_CMS_API_KEY="$strapi_token"
fi

# The demo commands, printed for a person and run as printed by LOCAL_STACK_SMOKE=1.
pull_demo="curl -s -X POST http://127.0.0.1:8181/__sim/notify -H 'Content-Type: application/json' \\
    -d '{\"topicName\":\"v2.routing.queues.5a1e0000-0000-4000-8000-000000000000.conversations\",\"version\":\"2\",\"eventBody\":{\"id\":\"conv-2\",\"participants\":[{\"id\":\"p-2\",\"purpose\":\"customer\",\"attributes\":{\"cart_value\":\"42.50\",\"last_page\":\"/checkout\"}}]},\"metadata\":{\"CorrelationId\":\"demo-2\"}}'; echo"
pull_check="curl -s http://127.0.0.1:8282/v1/entries/conv-2; echo"
push_demo="curl -i -X POST http://$RELAY_HTTP_ADDR/webhooks/genesys \\
    -H 'Content-Type: application/json' -H 'X-Relay-Secret: $secret' \\
    -d '{\"eventType\":\"conversation:updated\",\"eventId\":\"demo-1\",\"timestamp\":\"2026-11-24T08:00:00Z\",\"data\":{\"conversationId\":\"conv-1\",\"guestId\":\"guest-1\"}}'"
push_check="curl -s http://127.0.0.1:8282/v1/entries/conv-1; echo
  curl -s http://127.0.0.1:8282/__sim/stats; echo"
if [ "$cms_kind" = strapi ]; then
  strapi_entry() { echo "curl -s -H 'Authorization: Bearer $strapi_token' 'http://127.0.0.1:$strapi_port/api/guest-sessions?filters%5BconversationId%5D%5B%24eq%5D=$1'; echo"; }
  pull_check="$(strapi_entry conv-2)"
  push_check="$(strapi_entry conv-1)"
fi

cat <<MSG

== genesys-relay is starting.

== Pull mode (no public endpoint needed): the relay listens on Genesys notification
   channels for every queue. Publish a queue conversation notification as Genesys would:

  $pull_demo

== and see its customer attributes arrive in the CMS simulator:

  $pull_check

== Push mode: send a guest event to the ingress:

  $push_demo

== and see conv-1's customer attributes arrive in the CMS simulator:

  $push_check

== metrics: curl -s http://$RELAY_ADMIN_ADDR/metrics   (Ctrl-C stops everything)

MSG
"$relay" serve &
pids+=($!)
relay_pid="${pids[-1]}"

if [ "${LOCAL_STACK_SMOKE:-0}" != 1 ]; then
  wait "$relay_pid"
  exit $?
fi

# Unattended run: the demo as a person would do it, then a graceful stop. Every step is
# bounded, so a broken stack fails here instead of hanging CI.
smoke_fail() { echo "== LOCAL_STACK_SMOKE: FAILED: $*" >&2; tail -n 40 "$run/sim.log" >&2 || true; exit 1; }
started=$(date +%s)
ready=""
for _ in $(seq 1 600); do
  kill -0 "$relay_pid" 2>/dev/null || smoke_fail "genesys-relay serve exited during start-up"
  if curl -fs "http://$RELAY_ADMIN_ADDR/readyz" > /dev/null 2>&1; then ready=1; break; fi
  sleep 0.2
done
[ -n "$ready" ] || smoke_fail "genesys-relay not ready after 120 s"
echo "== LOCAL_STACK_SMOKE: relay ready after $(( $(date +%s) - started )) s"

# Pull mode: the listener subscribes asynchronously; publish until the simulator has a
# subscriber for the queue topic (it answers how many sockets it queued the notification on).
for _ in $(seq 1 150); do
  delivered=$(bash -c "$pull_demo" 2>/dev/null || true)
  echo "$delivered" | grep -q '"queued":[1-9]' && break
  sleep 0.2
done
echo "   pull demo: $delivered"
push_answer=$(bash -c "$push_demo" 2>&1 || true)
echo "$push_answer" | grep -q '202 Accepted' || smoke_fail "push demo not accepted: $push_answer"
echo "   push demo: 202 Accepted"

check_entry() {
  local conv="$1" expect="$2" body=""
  for _ in $(seq 1 300); do
    body=$(curl -fs "http://127.0.0.1:8282/v1/entries/$conv" 2>/dev/null || true)
    if echo "$body" | grep -q "$expect"; then echo "   CMS entry $conv: $body"; return 0; fi
    sleep 0.2
  done
  smoke_fail "CMS entry $conv never showed $expect (last answer: ${body:-none})"
}
check_entry conv-2 '"cart_value"'
check_entry conv-1 '"conv-1"'
echo "== LOCAL_STACK_SMOKE: both CMS entries present $(( $(date +%s) - started )) s after start"

kill -TERM "$relay_pid"
status=0
wait "$relay_pid" || status=$?
pids=("${pids[@]:0:${#pids[@]}-1}")
[ "$status" = 0 ] || smoke_fail "genesys-relay serve exited $status on SIGTERM"
echo "== LOCAL_STACK_SMOKE: passed (relay exited 0 on SIGTERM)"
