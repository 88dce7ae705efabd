#!/usr/bin/env bash
# The test command: unit tests and integration tests against a real Apache Kafka broker
# (KRaft, from Maven artifacts; scripts/install-kafka.sh installs it when missing) and the
# project's Genesys Cloud / CMS simulators.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-kafka.sh >/dev/null
scripts/install-strapi.sh >/dev/null  # a real Strapi 5 for the Strapi adapter tests
scripts/install-browser.sh >/dev/null # the console tests drive headless Chromium
# One shared broker per test program, plus dedicated brokers for tests that stop or kill
# theirs; two tests at a time keeps a 2-core machine responsive.
# No backtraces by default: CI keeps only the end of a failing test's output, and a
# backtrace there pushes the panic message out of it (TEST_BACKTRACE=1 to get them).
export RUST_BACKTRACE="${TEST_BACKTRACE:-0}"
exec cargo test --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-2}" "$@"
