#!/usr/bin/env bash
# Installs Debian's `chromium` and `chromium-driver` for tests/it/console.rs, which drives
# the operator console in headless Chromium over WebDriver. Skips when both binaries are
# present. --no-install-recommends leaves out fonts and desktop integration the headless
# browser does not need; fonts-dejavu-core gives pages and screenshots readable glyphs.
set -euo pipefail
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
echo "installing Debian packages: chromium chromium-driver fonts-dejavu-core"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends -o=Dpkg::Use-Pty=0 \
  chromium chromium-driver fonts-dejavu-core
chromium --version
chromedriver --version
