#!/usr/bin/env bash
# Installs Debian's `prometheus` package for tests/it/prometheus_dashboard.rs, which runs
# /usr/bin/prometheus itself against a test relay and evaluates the Grafana dashboard's
# queries. Skips when the binary is present.
#
# Kept apart from install-deps.sh (which scripts/local-stack.sh runs on developer machines)
# because the package enables a prometheus.service: on a host with systemd it would start
# a system Prometheus on :9090. In containers without an init system (CI) the package's
# postinst cannot start it. --no-install-recommends leaves out prometheus-node-exporter
# and its collectors (about 20 more packages and timers).
set -euo pipefail
if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
if [ -x /usr/bin/prometheus ]; then
  exit 0
fi
echo "installing Debian package: prometheus"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus
/usr/bin/prometheus --version 2>&1 | head -1
