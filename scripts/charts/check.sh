#!/usr/bin/env bash
# `make check-charts`: every check of the Helm charts and the ArgoCD
# app-of-apps, against the real tools (installed pinned into .tools/ first):
#   1. schemas generated from scripts/charts/schemas.py are current; README
#      values tables match values.yaml (readme-generator); yamllint
#   2. helm lint --strict of every chart, with each environment and ci file
#      and the schemas refuse what must never be set (a second Discord
#      verifier, a secret in values, an unknown key)
#   3. every chart rendered (--kube-version 1.33) for dev/stg/prod and for
#      each charts/<chart>/ci/*.yaml scenario
#   4. kubernetes-validate --strict -k 1.33 on the built-in kinds; the custom
#      resources against their CRD schemas (npm models; strict for KEDA and
#      prometheus-operator); checkov with the skips of scripts/charts/checkov.yaml
#   5. invariants over the rendered output (scripts/charts/invariants.py),
#      with a self-test showing each invariant catches its break
#   6. the real service binaries accept every rendered environment
#      (--check-config), and refuse the broken fixtures naming the key
#   7. rule files and dashboards shipped once each; the app-of-apps rendered
#      and dry-run offline (argocheck) for every environment
# Options: --fix-readmes rewrites the README tables instead of checking them.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
tools=scripts/tools
started=$SECONDS
step() { echo "charts: $* ($((SECONDS - started)) s)" >&2; }

services=(palmdao palmvalidator palmvalidator-discord palmplatformmetrics)
charts=(palm-common palm-apps "${services[@]}")
envs=(dev stg prod)

step "installing pinned tools"
helm="$("$tools/helm.sh")"
kubernetes_validate="$("$tools/kubernetes-validate.sh")"
checkov="$("$tools/checkov.sh")"
argocheck="$("$tools/argocheck.sh")"
yamllint="$("$tools/yamllint.sh")"
models="$("$tools/kubernetes-models.sh")"
readme_generator="$("$tools/readme-generator.sh")"
python="$("$tools/chartcheck.sh")"
PATH="$(dirname "$helm"):$PATH"
export PATH

out="$root/.tools/charts-rendered"
rm -rf "$out" && mkdir -p "$out"
# helm logs an INFO line per followed symlink (ADR 0014): keep stderr for errors.
quiet_helm() { "$helm" "$@" 2> >(grep -v 'found symbolic link in path' >&2); }

step "schemas, README tables, YAML lint"
"$python" scripts/charts/schemas.py --check
for chart in palm-apps "${services[@]}"; do
  if [[ "${1:-}" == --fix-readmes ]]; then
    (cd "charts/$chart" && "$readme_generator" -v values.yaml -r README.md >/dev/null)
  else
    copy="$(mktemp)"
    cp "charts/$chart/README.md" "$copy"
    "$readme_generator" -v "charts/$chart/values.yaml" -r "$copy" >/dev/null
    if ! diff -u "charts/$chart/README.md" "$copy" >&2; then
      echo "charts: charts/$chart/README.md is not what values.yaml documents (run scripts/charts/check.sh --fix-readmes)" >&2
      exit 1
    fi
    rm -f "$copy"
  fi
done
"$yamllint" -c scripts/charts/yamllint.yaml helm-values charts/*/values.yaml charts/*/ci charts/palm-apps/bootstrap

step "helm lint --strict"
for chart in "${charts[@]}"; do
  quiet_helm lint --strict "charts/$chart" >/dev/null
done
for chart in palm-apps "${services[@]}"; do
  for env in "${envs[@]}"; do
    quiet_helm lint --strict "charts/$chart" -f "helm-values/$chart/values-$env.yaml" >/dev/null
  done
  for scenario in "charts/$chart"/ci/*.yaml; do
    [[ -e "$scenario" ]] || continue
    quiet_helm lint --strict "charts/$chart" -f "$scenario" >/dev/null
  done
done

step "the schemas refuse what must never be set"
refused() { # message, then helm template arguments
  local want=$1
  shift
  # helm's stderr straight to the file: quiet_helm filters it through a
  # process substitution that may still be writing when grep reads it.
  if "$helm" template "$@" >/dev/null 2>"$out/refused.log" || ! grep -q "$want" "$out/refused.log"; then
    echo "charts: expected helm template $* to be refused with '$want':" >&2
    grep -v 'found symbolic link in path' "$out/refused.log" >&2
    exit 1
  fi
  echo "charts: refused as expected: helm template $* ($want)" >&2
}
refused "maximum: got 2, want 1" x charts/palmvalidator-discord --set replicas=2
refused "additional properties 'autoscaling' not allowed" x charts/palmvalidator-discord --set autoscaling.enabled=true
refused "maximum: got 3, want 2" x charts/palmplatformmetrics --set replicas=3
refused "additional properties 'session_key' not allowed" x charts/palmdao --set config.auth.session_key=x
refused "additional properties 'url' not allowed" x charts/palmvalidator --set config.amqp.url=amqp://x
refused "additional properties 'replica' not allowed" x charts/palmdao --set replica=3

step "rendering every chart × environment and ci scenario (Kubernetes 1.33)"
render() { # chart release namespace output [values file]
  local chart=$1 release=$2 namespace=$3 output=$4
  shift 4
  quiet_helm template "$release" "charts/$chart" --namespace "$namespace" --kube-version 1.33 "$@" >"$output"
}
rendered=()
for chart in "${services[@]}"; do
  for env in "${envs[@]}"; do
    render "$chart" "$chart" "palm-$env" "$out/$chart--$env.yaml" -f "helm-values/$chart/values-$env.yaml"
    rendered+=("$out/$chart--$env.yaml")
  done
  for scenario in "charts/$chart"/ci/*.yaml; do
    name="$(basename "$scenario" .yaml)"
    render "$chart" "$chart" palm-ci "$out/$chart--ci-${name%-values}.yaml" -f "$scenario"
    rendered+=("$out/$chart--ci-${name%-values}.yaml")
  done
done
apps=()
for env in "${envs[@]}"; do
  render palm-apps palm-apps argocd "$out/palm-apps-$env.yaml" -f "helm-values/palm-apps/values-$env.yaml"
  apps+=("$out/palm-apps-$env.yaml")
done
echo "charts: ${#rendered[@]} service releases and ${#apps[@]} app-of-apps renders" >&2

step "kubernetes-validate --strict -k 1.33 (built-in kinds)"
if ! "$kubernetes_validate" --strict -k 1.33 --quiet "${rendered[@]}" "${apps[@]}" >"$out/kubernetes-validate.log" 2>&1; then
  grep -v '^WARN .*Couldn.t find schema for kind' "$out/kubernetes-validate.log" >&2
  exit 1
fi

step "custom resources against their CRD schemas"
node scripts/charts/validate-crs.mjs "$models/node_modules" "${rendered[@]}" "${apps[@]}"
"$python" scripts/charts/strict_crs.py "${rendered[@]}" "${apps[@]}"

step "checkov (skips: scripts/charts/checkov.yaml)"
"$checkov" --config-file scripts/charts/checkov.yaml -d "$out" >"$out/checkov.log" 2>&1 || {
  cat "$out/checkov.log" >&2
  exit 1
}
grep -E '^(Passed|kubernetes scan results)' "$out/checkov.log" | sed 's/^/charts: checkov: /' >&2 || true

step "invariants over the rendered output"
"$python" scripts/charts/invariants.py "${rendered[@]}"
"$python" scripts/charts/invariants.py --self-test "$out/palmvalidator-discord--prod.yaml" \
  "$out/palmdao--prod.yaml" "$out/palmvalidator--prod.yaml"
"$python" scripts/charts/shipped_once.py

step "--check-config of every rendered environment (the real binaries)"
# shellcheck source=scripts/lib/palm-services.sh
source scripts/lib/palm-services.sh
bins="$palm_bin"
for service in "${services[@]}"; do
  if [[ ! -x "$bins/$service" ]]; then
    step "$bins/$service is missing: cargo build --workspace --bins --locked"
    cargo build --workspace --bins --locked
    break
  fi
done
"$python" scripts/charts/check_config.py "$bins" "${rendered[@]}"
for fixture in scripts/charts/broken/*.yaml; do
  # The fixture's first line names the chart and the key the binary must name.
  read -r _ chart key < <(head -n 1 "$fixture")
  render "$chart" "$chart" palm-ci "$out/broken--$(basename "$fixture")" -f "$fixture"
  "$python" scripts/charts/check_config.py --expect-failure "$key" "$bins" "$out/broken--$(basename "$fixture")"
done

step "ArgoCD: offline dry run of the app-of-apps"
"$(dirname "$argocheck")/python" scripts/charts/argocd_dryrun.py "${envs[@]}" >"$out/argocd.log"
sed 's|values-dev.yaml|values-missing.yaml|' charts/palm-apps/bootstrap/root-dev.yaml >"$out/broken-root.yaml"
"$(dirname "$argocheck")/python" scripts/charts/argocd_dryrun.py --expect-failure "$out/broken-root.yaml" >/dev/null

step "all chart checks passed"
