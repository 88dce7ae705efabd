#!/usr/bin/env bash
# Installs the dev/test broker (Tansu, a Kafka-protocol broker from crates.io) into the
# project-local, git-ignored tools folder. Skips the build when the binary is already there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="${RELAY_TOOLS_DIR:-$root/.tools}"
version="0.6.0"
bin="$tools/bin/tansu"
if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null | awk '{print $2}')" = "$version" ]; then
  echo "tansu $version already installed at $bin"
  exit 0
fi
echo "installing tansu $version into $tools (about 10 minutes on 2 cores)"
cargo install tansu --version "$version" --locked --features libsql --root "$tools"
"$bin" --version
