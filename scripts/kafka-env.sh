#!/usr/bin/env bash
# Where the test/dev Kafka lives; shared by install-kafka.sh, kafka-broker.sh and the tests.
#   kafka-env.sh libs   prints the libs folder (KAFKA_LIBS overrides)
set -euo pipefail
version="4.4.0"
case "${1:-libs}" in
  libs) echo "${KAFKA_LIBS:-${XDG_CACHE_HOME:-$HOME/.cache}/genesys-relay/kafka-$version/libs}" ;;
  version) echo "$version" ;;
  *) echo "usage: $0 libs|version" >&2; exit 2 ;;
esac
