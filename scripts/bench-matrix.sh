#!/usr/bin/env bash
# The benchmark matrix, unattended: every system under test, the brokers, the simulators and
# the load generator (wrk) run as separate processes (scripts/bench/matrix.py starts them).
#
#   scripts/bench-matrix.sh [ceiling] [ingress-1node] [ingress-3node] [worker] [e2e]   (all when none)
#
# Environment (defaults): RUNS=5 interleaved runs in seeded shuffled order (SEED=random,
# printed and recorded), WINDOW=30 seconds per window, CONNS="64 256 1024" wrk connections,
# WRK_THREADS=2, WARMUP=5 s per system before the first ingress window, BODY_BYTES=1024,
# PY_WORKERS=1 uvicorn processes, CEILING_NODES="1 3", SIM_LATENCY_MS=20, WORKER_EVENTS
# (default 4000 x WINDOW) events pre-filled per worker run, WORKER_VARIANTS (default all:
# attributes-1w get-default-budget get-raised-budget attributes-2w peer-python),
# BROKER_HEAP=1g, RETENTION_MB=128 per partition (keeps the disk bounded).
# The e2e scenario (an open-loop sender, benches/python/e2e_sender.py, instead of wrk):
# E2E_RATE=500 events/s, E2E_GRACE=90 s per event before it counts as never synced,
# E2E_ERROR_RATE=0.2 (CMS 503s of the retry variant), E2E_CONNS=256, E2E_TIMEOUT=10 s,
# E2E_LATE_MS=10, E2E_RETRY_DELAYS (unset: the relay's default).
# Output: markdown tables appended to .run/bench/results.md, raw windows in
# .run/bench/runs.tsv, process logs in .run/bench/logs/.
# Duration at the defaults: about 100 minutes (BENCHMARKS.md, "Running it").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-bench.sh >/dev/null
mkdir -p .run/bench
# Release builds of everything measured; the floor is an example of this crate so it uses
# the relay's exact warp, hyper and tokio.
cargo build --release -p genesys-relay --bin genesys-relay -p genesys-sim --bin genesys-sim
cargo build --release --example bench_floor
# The Benthos peer (benches/peer, Go modules from the module proxy).
(cd benches/peer && go build -o ../../.run/bench/peer .)
exec python3 scripts/bench/matrix.py "$@"
