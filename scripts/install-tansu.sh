#!/usr/bin/env bash
# Installs the dev/test broker (Tansu 0.6.0, a Kafka-protocol broker from crates.io, with
# the libsql feature for sqlite storage) into the project-local, git-ignored .tools folder.
# Skips the build when the binary is already there, or when a copy built earlier on this
# machine sits in the user cache (a build takes about 10 minutes on 2 cores).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="${RELAY_TOOLS_DIR:-$root/.tools}"
version="0.6.0"
bin="$tools/bin/tansu"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/genesys-relay/tansu-$version"
is_ok() { [ -x "$1" ] && [ "$("$1" --version 2>/dev/null | awk '{print $2}')" = "$version" ]; }

if is_ok "$bin"; then
  echo "tansu $version already installed at $bin"
  exit 0
fi
mkdir -p "$tools/bin"
if ! is_ok "$cache/bin/tansu"; then
  echo "installing tansu $version (about 10 minutes on 2 cores)"
  cargo install tansu --version "$version" --locked --features libsql --root "$cache"
fi
cp "$cache/bin/tansu" "$bin"
"$bin" --version
