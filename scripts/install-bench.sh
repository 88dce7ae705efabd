#!/usr/bin/env bash
# Installs what scripts/bench-matrix.sh needs besides the relay's own build, skipping what is
# present:
#   - wrk (Debian package), the HTTP load generator;
#   - Apache Kafka 4.4.0 with its command-line tools (scripts/install-kafka.sh): the broker,
#     TopicCommand, GetOffsetShell and ProducerPerformance (the producer ceiling);
#   - the Python peers' virtualenv (benches/python/requirements.txt, pinned: the ingress
#     receiver and the worker peer) in ~/.cache/genesys-relay/bench-venv (BENCH_VENV);
#   - Go, when missing (Debian golang-go), for the Benthos peer (benches/peer).
# The binaries themselves (relay, simulator, floor, peer) are built by bench-matrix.sh.
# Prints nothing on stdout but the venv path on its last line.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/genesys-relay"
venv="${BENCH_VENV:-$cache/bench-venv}"
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
updated=""
apt_install() {
  echo "installing Debian packages: $*" >&2
  [ -n "$updated" ] || { $SUDO apt-get update -qq; updated=1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >&2
}

command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v go >/dev/null 2>&1 || apt_install golang-go
command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
bash "$root/scripts/install-kafka.sh" >/dev/null

req="$root/benches/python/requirements.txt"
if ! cmp -s "$req" "$venv/.requirements" 2>/dev/null; then
  echo "installing the Python peer's packages into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" || { apt_install python3-venv; python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req" >&2
  cp "$req" "$venv/.requirements"
fi
echo "$venv"
