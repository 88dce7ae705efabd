#!/usr/bin/env bash
# Contract check of the Genesys Cloud simulator against the official Genesys Cloud Python SDK:
# starts the built genesys-sim, requests every Platform API answer genesys-relay relies on
# (token, conversation, channels, subscriptions incl. rejected topics, queues page 1 of 3 with
# nextUri, triggers, trigger topics, rate-limit headers and 429) and deserializes each into the
# SDK's model (scripts/contract/check.py). Exits non-zero naming every failed check.
#
# The SDK (PureCloudPlatformClientV2, pinned below) lives in a venv cached outside the clone
# ($GENESYS_CONTRACT_VENV, default ~/.cache/genesys-relay/contract-venv), installed with pip on
# first use. Settings: GENESYS_SDK_VERSION (default pinned), GENESYS_SIM_BIN (a genesys-sim
# binary to check instead of building this clone's).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
sdk_version="${GENESYS_SDK_VERSION:-269.0.0}"
venv="${GENESYS_CONTRACT_VENV:-$HOME/.cache/genesys-relay/contract-venv}"
python="${PYTHON:-python3}"

# --- the SDK, pinned, in a cached venv ---------------------------------------------------------
if ! "$venv/bin/python" - "$sdk_version" >/dev/null 2>&1 <<'EOF'
import importlib.metadata, sys
sys.exit(0 if importlib.metadata.version("PureCloudPlatformClientV2") == sys.argv[1] else 1)
EOF
then
  echo "installing PureCloudPlatformClientV2==$sdk_version into $venv" >&2
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "PureCloudPlatformClientV2==$sdk_version"
fi

# --- the simulator -------------------------------------------------------------------------------
if [ -n "${GENESYS_SIM_BIN:-}" ]; then
  sim_bin="$GENESYS_SIM_BIN"
else
  (cd "$root" && cargo build --quiet -p genesys-sim --bin genesys-sim)
  target_dir="${CARGO_TARGET_DIR:-$root/target}"
  sim_bin="$target_dir/debug/genesys-sim"
fi
[ -x "$sim_bin" ] || { echo "genesys-sim binary not found at $sim_bin" >&2; exit 1; }

# Two free ports on 127.0.0.1 (the simulator binds the CMS too).
read -r genesys_port cms_port < <("$venv/bin/python" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
for s in socks:
    s.close()
EOF
)
log="$(mktemp -t genesys-contract-sim.XXXXXX)"
"$sim_bin" --genesys-addr "127.0.0.1:$genesys_port" --cms-addr "127.0.0.1:$cms_port" \
  --client-id sim-client --client-secret sim-secret >"$log" 2>&1 &
sim_pid=$!
cleanup() {
  kill "$sim_pid" 2>/dev/null || true
  wait "$sim_pid" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT
base="http://127.0.0.1:$genesys_port"
for _ in $(seq 1 100); do
  if "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
    "$base/__sim/stats" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$sim_pid" 2>/dev/null; then
    echo "genesys-sim exited at start-up:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done

"$venv/bin/python" "$root/scripts/contract/check.py" --base "$base" \
  --client-id sim-client --client-secret sim-secret
