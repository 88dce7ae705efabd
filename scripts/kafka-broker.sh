#!/usr/bin/env bash
# Runs one Apache Kafka KRaft node (combined broker + controller) on loopback, in the
# foreground (exec java: signals reach the JVM; SIGTERM is a controlled shutdown). Formats the
# storage on first start; a later start with the same --dir keeps the data.
#
#   kafka-broker.sh --dir DIR --port PORT [--controller-port PORT] [--node-id N]
#                   [--voters 1@127.0.0.1:C1,2@127.0.0.1:C2,...] [--cluster-id ID]
#                   [--heap 512m] [--set key=value]...
#
# Single node: defaults are node 1 voting alone (controller port = PORT+1). A 3-node cluster is
# three invocations with distinct --dir/--port/--controller-port/--node-id, the same --voters
# and the same --cluster-id. The settings favour fast tests (no initial rebalance delay, small
# heap and thread pools); with more than one voter, internal topics get replication 3.
# Install first: scripts/install-kafka.sh. The broker logs to DIR/logs/server.log.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
libs="$(bash "$here/kafka-env.sh" libs)"
dir="" port="" cport="" node=1 voters="" cluster="" heap="512m"
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --controller-port) cport="$2"; shift 2 ;;
    --node-id) node="$2"; shift 2 ;;
    --voters) voters="$2"; shift 2 ;;
    --cluster-id) cluster="$2"; shift 2 ;;
    --heap) heap="$2"; shift 2 ;;
    --set) extra+=("$2"); shift 2 ;;
    *) echo "unknown argument: $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ -n "$dir" ] && [ -n "$port" ] || { echo "--dir and --port are required" >&2; exit 2; }
[ -f "$libs/.complete" ] || { echo "Kafka is not installed: run scripts/install-kafka.sh" >&2; exit 1; }
cport="${cport:-$((port + 1))}"
voters="${voters:-$node@127.0.0.1:$cport}"
nvoters=$(tr ',' '\n' <<<"$voters" | grep -c .)
rf=$(( nvoters >= 3 ? 3 : 1 ))
misr=$(( nvoters >= 3 ? 2 : 1 ))
mkdir -p "$dir/data" "$dir/logs"
dir="$(cd "$dir" && pwd)"
if [ -z "$cluster" ]; then
  # A Kafka cluster id is 16 random bytes in URL-safe base64 without padding (22 characters).
  [ -f "$dir/cluster.id" ] || head -c 16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22 >"$dir/cluster.id"
  cluster="$(cat "$dir/cluster.id")"
fi

cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
# The relay creates its topics itself (src/kafka/admin.rs); a missing one is a bug to see.
auto.create.topics.enable=false
num.partitions=1
group.initial.rebalance.delay.ms=0
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$misr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$misr
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.dedupe.buffer.size=16777216
PROPS
for kv in ${extra[@]+"${extra[@]}"}; do echo "$kv" >>"$dir/server.properties"; done

jvm=(-Xms64m "-Xmx$heap" -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
     "-Dlog4j2.configurationFile=$here/kafka/log4j2.yaml" "-Dkafka.logs.dir=$dir/logs")
if [ ! -f "$dir/data/meta.properties" ]; then
  java "${jvm[@]}" -cp "$libs/*" kafka.tools.StorageTool format --ignore-formatted \
    --cluster-id="$cluster" -c "$dir/server.properties" >>"$dir/logs/format.log" 2>&1 \
    || { cat "$dir/logs/format.log" >&2; exit 1; }
fi
exec java "${jvm[@]}" -cp "$libs/*" kafka.Kafka "$dir/server.properties"
