#!/usr/bin/env bash
# Checks what ships for operating the relay, without a cluster or a container engine:
#   1. the alert rules (grafana/alerts): `promtool check rules`, the `promtool test rules`
#      unit tests, only metric names src/metrics.rs registers, a runbook section per alert;
#   2. the Helm chart (deploy/helm/genesys-relay): `helm lint --strict` and `helm template`
#      with the default values and with ci/full-values.yaml; every rendered object decoded
#      strictly into its Kubernetes / prometheus-operator / KEDA type and cross-checked by
#      deploy/validate; the rendered PrometheusRule through `promtool check rules`; values
#      the chart must refuse are refused; the validator itself rejects broken objects;
#   3. the Dockerfile: its build commands run in the dev profile against this clone's
#      target directory, and the runtime stage's packages cover the libraries the binary links.
#
# Tools are cached outside the clone: Helm (built with `go install` from the Go module
# proxy, pinned below) in ~/.cache/genesys-relay/helm-<version>/, the validator in the Go
# build cache. promtool comes with Debian's prometheus package (scripts/install-prometheus.sh).
# CHECK_DEPLOY_SKIP_BUILD=1 skips step 3 (no cargo).
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v3.22.0
KUBE_VERSION=1.31.0 # what `helm template` assumes (the chart needs >= 1.25)
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/genesys-relay"
CHART=deploy/helm/genesys-relay
RULES=grafana/alerts/genesys-relay.rules.yml
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

step() { echo "== [${SECONDS}s] $*"; }
die() { echo "check-deploy: $*" >&2; exit 1; }

# --- tools -------------------------------------------------------------------------------
step "tools"
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH="$PATH:/usr/local/go/bin"; fi
command -v go >/dev/null || die "go is required (Helm and the validator are built with it)"
HELM="$CACHE/helm-$HELM_VERSION/helm"
if [ ! -x "$HELM" ]; then
  echo "building Helm $HELM_VERSION with go install (first run only)"
  GOBIN="$CACHE/helm-$HELM_VERSION" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi
if ! command -v promtool >/dev/null; then
  scripts/install-prometheus.sh
fi
VALIDATE="$CACHE/deploy-validate/validate"
mkdir -p "$(dirname "$VALIDATE")"
(cd deploy/validate && go build -mod=readonly -buildvcs=false -o "$VALIDATE" .)
echo "helm $HELM_VERSION, $(promtool --version 2>&1 | head -1)"

# --- 1. alert rules ------------------------------------------------------------------------
step "alert rules: promtool check rules, promtool test rules"
promtool check rules "$RULES"
(cd grafana/alerts/tests && promtool test rules ./*.yml)

step "alert rules: loaded by the local stack's Prometheus (grafana/prometheus.yml)"
grep -q -- '- ./grafana/alerts:/etc/prometheus/alerts:ro' docker-compose.yml ||
  die "docker-compose.yml does not mount grafana/alerts into the prometheus service"
sed "s|/etc/prometheus/alerts/|$PWD/grafana/alerts/|" grafana/prometheus.yml >"$WORK/prometheus.yml"
promtool check config "$WORK/prometheus.yml" | tee "$WORK/config.out"
grep -q "SUCCESS: $(grep -c '^ *- alert: ' "$RULES") rules found" "$WORK/config.out" ||
  die "grafana/prometheus.yml's rule_files do not load $RULES"

step "alert rules: metric names registered by src/metrics.rs"
registered=$(grep -o '"relay_[a-z0-9_]*"' src/metrics.rs | tr -d '"' | sort -u)
# Added by another change; the rule is shipped ahead of it (docs/runbook.md says so).
pending="relay_listen_topics_rejected"
for name in $(grep -o 'relay_[a-z0-9_]*' "$RULES" | sort -u); do
  if ! grep -qx "$name" <<<"$registered"; then
    if grep -qx "$name" <<<"$pending"; then
      echo "note: $name is not registered by src/metrics.rs yet; its alert stays silent until it is"
    else
      die "$RULES uses $name, which src/metrics.rs does not register"
    fi
  fi
done

step "alert rules: a runbook section for every alert"
slug() { tr '[:upper:]' '[:lower:]' | tr -cd 'a-z0-9 _-' | tr ' ' '-'; }
headings=$(grep -E '^#+ ' docs/runbook.md | sed -E 's/^#+ +//' | while IFS= read -r h; do printf '%s\n' "$h" | slug; echo; done)
alerts=$(grep -E '^ *- alert: ' "$RULES" | sed -E 's/.*alert: *//')
for alert in $alerts; do
  anchor=$(awk -v a="$alert" '$0 ~ "alert: "a"$" {f=1} f && /runbook:/ {sub(/.*runbook: */, ""); print; exit}' "$RULES")
  case "$anchor" in docs/runbook.md#*) ;; *) die "$alert: runbook annotation '$anchor' does not point into docs/runbook.md" ;; esac
  grep -qx "${anchor#docs/runbook.md#}" <<<"$headings" || die "$alert: docs/runbook.md has no section #${anchor#*#}"
done
echo "$(wc -w <<<"$alerts") alerts, each with a runbook section"

# --- 2. Helm chart ---------------------------------------------------------------------------
step "chart: shipped copies of the rules and the dashboard are current"
cmp "$RULES" "$CHART/files/genesys-relay.rules.yml" || die "copy $RULES to $CHART/files/"
cmp grafana/dashboards/genesys-relay.json "$CHART/files/genesys-relay.json" ||
  die "copy grafana/dashboards/genesys-relay.json to $CHART/files/"

render() { "$HELM" template relay "$CHART" --kube-version "$KUBE_VERSION" "$@"; }

step "chart: helm lint --strict (default values, full values)"
"$HELM" lint --strict "$CHART"
"$HELM" lint --strict "$CHART" -f "$CHART/ci/full-values.yaml"

step "chart: helm template + strict validation, default values"
render >"$WORK/default.yaml"
"$VALIDATE" -require Deployment,Service,ConfigMap,HorizontalPodAutoscaler,PodDisruptionBudget "$WORK/default.yaml"

step "chart: helm template + strict validation, full values"
render -f "$CHART/ci/full-values.yaml" >"$WORK/full.yaml"
"$VALIDATE" -rules-out "$WORK/rendered.rules.yml" \
  -require Deployment,Service,ConfigMap,HorizontalPodAutoscaler,PodDisruptionBudget,Ingress,ScaledObject,ServiceMonitor,PrometheusRule \
  "$WORK/full.yaml"
promtool check rules "$WORK/rendered.rules.yml"
[ "$(grep -c '^kind: Deployment' "$WORK/full.yaml")" = 3 ] || die "full values should render 3 Deployments"
grep -q 'maxReplicaCount: 7$' "$WORK/full.yaml" ||
  die "full values: the worker ScaledObject's maxReplicaCount should be min(12, floor((1200 - 2 x 60) / 150)) = 7"

step "chart: values it must refuse"
refuse() { # refuse <expected message part> <helm args>...
  local want=$1; shift
  if render "$@" >"$WORK/refused.yaml" 2>"$WORK/refused.err"; then
    die "helm template $* rendered; it should have failed with '$want'"
  fi
  grep -q -- "$want" "$WORK/refused.err" || { cat "$WORK/refused.err" >&2; die "helm template $*: expected '$want'"; }
  echo "refused: $* ($want)"
}
refuse "worker.replicas 2 is above 1" --set worker.replicas=2
refuse "no worker fits the Genesys budget" --set listen.enabled=true --set genesys.orgRequestsPerMinute=200
refuse "worker.autoscaling.minReplicas 3 is above the computed maximum 2" \
  --set worker.autoscaling.enabled=true --set worker.autoscaling.minReplicas=3 --set worker.genesysRequestsPerMinute=150
refuse "RELAY_SHUTDOWN_TIMEOUT is derived by the chart" --set config.RELAY_SHUTDOWN_TIMEOUT=5s
refuse "RELAY_GENESYS_RATE_LIMIT is derived by the chart" --set worker.env.RELAY_GENESYS_RATE_LIMIT=1000
refuse "leaves 1 channels per process" --set worker.enabled=false --set listen.enabled=true --set listen.replicas=3 --set listen.channelsPerClient=5

step "validator: broken objects are rejected"
reject() { # reject <expected message part> <sed expression on the full render>
  sed -e "$2" "$WORK/full.yaml" >"$WORK/broken.yaml"
  cmp -s "$WORK/full.yaml" "$WORK/broken.yaml" && die "mutation '$2' changed nothing"
  if "$VALIDATE" "$WORK/broken.yaml" >/dev/null 2>"$WORK/broken.err"; then
    die "validator accepted a render with '$2'"
  fi
  grep -q -- "$1" "$WORK/broken.err" || { cat "$WORK/broken.err" >&2; die "mutation '$2': expected '$1'"; }
  echo "rejected: $1"
}
reject 'unknown field "spec.template.spec.containers\[0\].livenesProbe"' '0,/livenessProbe:/s//livenesProbe:/'
reject 'unknown field "spec.maxReplicas"' 's/^  maxReplicaCount:/  maxReplicas:/'
reject 'unknown field "spec.endpoints\[0\].intervall"' 's/^      interval: 15s/      intervall: 15s/'
reject 'cannot unmarshal' '0,/^  replicas: 2$/s//  replicas: two/'
reject 'unknown field "Metadata"' '0,/^metadata:/s//Metadata:/'
reject 'unknown apiVersion/kind' '0,/^kind: Service$/s//kind: Servce/'
reject 'is not above the worst-case stop' 's/terminationGracePeriodSeconds: 75/terminationGracePeriodSeconds: 65/'
reject 'is not a port of Service' 's/^    - port: admin$/    - port: metrics/'
reject 'selects no rendered Service' 's/^      app.kubernetes.io\/component: metrics$/      app.kubernetes.io\/component: metric/'
reject 'is not a parameter of KEDA' 's/lagThreshold: "1000"/lagTreshold: "1000"/'
reject 'not one of the relay' 's/args: \["worker"\]/args: ["work"]/'

# --- 3. Dockerfile ---------------------------------------------------------------------------
if [ "${CHECK_DEPLOY_SKIP_BUILD:-0}" = 1 ]; then
  step "Dockerfile: skipped (CHECK_DEPLOY_SKIP_BUILD=1)"
  echo "check-deploy: all other checks passed in ${SECONDS} s"
  exit 0
fi
step "Dockerfile: the builder stage's build commands, in the dev profile"
# The RUN instruction of the builder stage that calls cargo, continuation lines joined,
# cache mounts dropped, split at `&&`. `cargo build --release` runs as `cargo build` (dev
# profile: the target directory the tests already built), `install ... target/release/X`
# becomes a check that target/debug/X was produced.
joined=$(sed -e ':a' -e '/\\$/{N;s/\\\n/ /;ba}' Dockerfile)
run=$(awk '/^FROM /{builder = ($0 ~ / AS builder$/)} builder && /^RUN / && /cargo build/' <<<"$joined" |
  sed -e 's/^RUN //' -e 's/--mount=[^ ]*//g')
[ -n "$run" ] && grep -q 'cargo build' <<<"$run" || die "no cargo build RUN in the Dockerfile's builder stage"
built=()
IFS=$'\n'
for cmd in $(sed 's/&&/\n/g' <<<"$run"); do
  cmd=$(sed -E 's/^ +| +$//g; s/ +/ /g' <<<"$cmd")
  case "$cmd" in
    "cargo build "*)
      dev=$(sed -e 's/ --release//' <<<"$cmd")
      echo "Dockerfile: $cmd"
      echo "running:    $dev"
      unset IFS
      $dev
      IFS=$'\n'
      ;;
    "install "*)
      src=$(grep -o 'target/release/[^ ]*' <<<"$cmd") || die "Dockerfile install without target/release: $cmd"
      bin=target/debug/${src#target/release/}
      [ -x "$bin" ] || die "Dockerfile installs $src, but the dev build produced no $bin"
      built+=("$bin")
      ;;
    *) die "unexpected command in the Dockerfile's build RUN: $cmd" ;;
  esac
done
unset IFS
[ "${#built[@]}" -ge 1 ] || die "the Dockerfile's build RUN installs no binary"

step "Dockerfile: the runtime stage's packages cover the relay's shared libraries"
# debian:*-slim holds the Essential packages and their dependencies; the runtime stage
# adds its `apt-get install` list. Every library the relay links must come from one of them.
runtime_pkgs=$(awk '/^FROM /{runtime = ($0 ~ / AS runtime$/)} runtime && /^RUN / && /apt-get install/' <<<"$joined" |
  sed -e 's/.*apt-get install//' -e 's/&&.*//' | tr ' ' '\n' | grep -E '^[a-z0-9][a-z0-9.+-]*$' || true)
[ -n "$runtime_pkgs" ] || die "no apt-get install in the Dockerfile's runtime stage"
essential=$(dpkg-query -W -f='${Package} ${Essential}\n' | awk '$2=="yes"{print $1}')
# shellcheck disable=SC2086
base=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances $essential 2>/dev/null | grep -v '^ ' | sort -u)
relay=target/debug/genesys-relay
grep -qx "$relay" < <(printf '%s\n' "${built[@]}") || die "the Dockerfile does not build $relay"
# The Debian package owning a library: dpkg knows it under the path it shipped (with
# merged /usr, /lib/... rather than /usr/lib/...).
owner() {
  local f p
  for f in "$1" "$(readlink -f "$1")" "$(readlink -f "$1" | sed 's|^/usr||')" "$(dirname "$1")/$(basename "$(readlink -f "$1")")"; do
    p=$(dpkg -S "$f" 2>/dev/null | head -1 | cut -d: -f1 || true)
    if [ -n "$p" ]; then echo "$p"; return; fi
  done
}
for lib in $(ldd "$relay" | awk '/=>/ {print $3}'); do
  pkg=$(owner "$lib")
  [ -n "$pkg" ] || die "$relay links $lib, which no Debian package provides"
  if grep -qx "$pkg" <<<"$runtime_pkgs"; then
    echo "$lib: $pkg (runtime stage)"
  elif grep -qx "$pkg" <<<"$base"; then
    echo "$lib: $pkg (in the slim base image)"
  else
    die "$relay links $lib from $pkg, which the Dockerfile's runtime stage does not install"
  fi
done
echo "check-deploy: all checks passed in ${SECONDS} s"
