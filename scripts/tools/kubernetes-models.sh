#!/usr/bin/env bash
# Installs the npm custom-resource models that validate rendered CRs against
# their CRD schemas (ExternalSecret, ClusterSecretStore, ScaledObject,
# TriggerAuthentication, ServiceMonitor, PrometheusRule, Application) and
# prints the folder holding node_modules. Pinned, idempotent, installed into
# .tools/kubernetes-models (../shared/design/DELIVERY.md).
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v node >/dev/null || ensure_apt nodejs npm
ensure_npm kubernetes-models \
  "kubernetes-models@5.1.0" \
  "@kubernetes-models/external-secrets@2.0.0" \
  "@kubernetes-models/keda@2.0.0" \
  "@kubernetes-models/prometheus-operator@6.0.0" \
  "@kubernetes-models/argo-cd@4.0.0" \
  "js-yaml@4.1.0"
echo "$PALM_TOOLS/kubernetes-models"
