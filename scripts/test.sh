#!/usr/bin/env bash
# The test command: unit tests and integration tests against a real Tansu broker and the
# project's Genesys Cloud / CMS simulators. Installs Tansu first when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-tansu.sh >/dev/null
# Each integration test starts its own broker; two at a time keeps a 2-core machine responsive.
exec cargo test --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-2}" "$@"
