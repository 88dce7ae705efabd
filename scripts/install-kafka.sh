#!/usr/bin/env bash
# Installs the test/dev broker: Apache Kafka 4.4.0 (KRaft) assembled from its Maven artifacts
# (org.apache.kafka:kafka_2.13, the command-line tools org.apache.kafka:kafka-tools, and every
# runtime dependency, see scripts/kafka/pom.xml) into a
# per-user cache, and a Java runtime >= 17 (Debian openjdk-17-jre-headless when java is
# missing). Skips what is present. Prints the libs folder on its last line.
# Maven itself comes from Debian when missing. Cold install: about 10 s (43 MB of jars).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="4.4.0"
libs="$(bash "$root/scripts/kafka-env.sh" libs)"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi

apt_install() {
  echo "installing Debian packages: $*" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >&2
}

java_major() {
  # `java -version` prints e.g. `openjdk version "17.0.15" 2025-04-15` (or "1.8.0_x" for 8).
  java -version 2>&1 | awk -F'"' '/version/ {split($2, v, "."); print (v[1] == 1 ? v[2] : v[1]); exit}'
}

if ! command -v java >/dev/null 2>&1; then
  apt_install openjdk-17-jre-headless
fi
major="$(java_major)"
if [ -z "$major" ] || [ "$major" -lt 17 ]; then
  echo "Kafka $version needs Java >= 17; \`java\` on PATH is version ${major:-unknown}." >&2
  echo "Install openjdk-17-jre-headless (or point PATH/JAVA_HOME at a newer JDK)." >&2
  exit 1
fi

# kafka-tools came later than the broker: an install without it is completed.
if [ -f "$libs/kafka_2.13-$version.jar" ] && [ -f "$libs/kafka-tools-$version.jar" ] \
   && [ -f "$libs/.complete" ]; then
  echo "kafka $version already installed at $libs" >&2
  echo "$libs"
  exit 0
fi
command -v mvn >/dev/null 2>&1 || apt_install maven

echo "installing kafka $version into $libs" >&2
start=$(date +%s)
tmp="$libs.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
# Batch mode and quiet: no progress bars in CI logs. The local repository is Maven's default
# (~/.m2), so a second project on the machine reuses the downloads.
# (Maven 3.8 still prints colour resets with -B; they are stripped.)
mvn -B -q -Dstyle.color=never -f "$root/scripts/kafka/pom.xml" dependency:copy-dependencies \
  -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2
touch "$tmp/.complete"
rm -rf "$libs"
mkdir -p "$(dirname "$libs")"
mv "$tmp" "$libs"
trap - EXIT
echo "kafka $version installed in $(( $(date +%s) - start )) s" >&2
echo "$libs"
