#!/usr/bin/env bash
# Installs the Debian packages the build needs (librdkafka is built from source by the
# rdkafka crate: cmake, TLS, SASL, zstd, zlib and curl headers). Skips what is present.
set -euo pipefail
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
need=()
for p in cmake pkg-config build-essential libssl-dev libsasl2-dev libzstd-dev libcurl4-openssl-dev zlib1g-dev curl; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
