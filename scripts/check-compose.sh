#!/usr/bin/env bash
# Validates docker-compose.yml with `docker compose config` when a Docker engine is
# reachable. Without one (as on the dev machines), says so and exits 0: the wiring is then
# checked by `cargo test --test it deploy_files` (tests/it/deploy_files.rs).
set -euo pipefail

cd "$(dirname "$0")/.."

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo "check-compose: validating docker-compose.yml with docker compose config"
    docker compose -f docker-compose.yml config -q
    echo "check-compose: docker-compose.yml is valid"
else
    echo "check-compose: no Docker engine available; skipping 'docker compose config'."
    echo "check-compose: the compose wiring is checked by tests/it/deploy_files.rs (cargo test --test it deploy_files)."
fi
