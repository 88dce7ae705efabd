#!/usr/bin/env bash
# The in-process benchmarks, a development tool: the published figures come from
# scripts/bench-matrix.sh (separate processes, wrk; BENCHMARKS.md). This script measures what
# the matrix does not (memory, the CMS adapters, codec CPU; end to end and retry lateness are
# also the matrix's e2e scenario) with the load generator in the relay's own process, so its
# figures are not published; its `ingress` and `worker` scenarios run only when named. About
# 10-12 minutes on a 2-core machine, plus the release build.
# Each scenario run starts its own Apache Kafka node (KRaft) in a temp dir and the simulators
# in-process; the HTTP load generator is in-process too (reqwest, bounded concurrency), so no
# external load tool is needed. Output (markdown tables) goes to stdout and to .run/bench/<scenario>.txt.
#
#   scripts/bench.sh                 # e2e retry memory cms
#   scripts/bench.sh ingress worker  # some of them
#   RUNS=5 scripts/bench.sh ingress  # override the number of runs
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-kafka.sh >/dev/null
out=.run/bench
mkdir -p "$out"
scenarios=("$@")
[ ${#scenarios[@]} -eq 0 ] && scenarios=(e2e retry memory cms)
cargo bench --bench relay_bench --no-run
# The Benthos peer for the ingress comparison (benches/peer; Go module proxy). Skipped, and
# said so, when Go is missing or the build fails; BENCH_PEER_BIN may name a built peer.
if [ -z "${BENCH_PEER_BIN:-}" ]; then
  if command -v go >/dev/null && (cd benches/peer && go build -o "../../$out/peer" .); then
    export BENCH_PEER_BIN="$PWD/$out/peer"
  else
    echo "(the Benthos peer could not be built: ingress runs without it)" >&2
  fi
fi
for s in "${scenarios[@]}"; do
  case "$s" in
    ingress) args=(--runs "${RUNS:-5}" --events 20000 --concurrency 64 --rate 500 --seconds 10) ;;
    worker)  args=(--runs "${RUNS:-3}" --events 10000 --serial-events 200 --in-flight 1,32,256 --latency-ms 20) ;;
    e2e)     args=(--runs "${RUNS:-3}" --rate 500 --seconds 20 --latency-ms 20) ;;
    retry)   args=(--runs "${RUNS:-3}" --rate 200 --seconds 20 --latency-ms 20) ;;
    memory)  args=(--runs "${RUNS:-2}" --rate 500 --seconds 20 --events 20000 --concurrency 64 --latency-ms 20) ;;
    cms)     args=(--runs "${RUNS:-3}" --events 300 --latency-ms 20) ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
  echo "== $s: cargo bench --bench relay_bench -- $s ${args[*]}"
  cargo bench --bench relay_bench -- "$s" "${args[@]}" | tee "$out/$s.txt"
done
