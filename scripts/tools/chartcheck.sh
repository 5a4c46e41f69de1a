#!/usr/bin/env bash
# Installs the Python environment of the chart checks (scripts/charts/*.py):
# PyYAML to read rendered manifests, jsonschema and the cloudcoil KEDA and
# prometheus-operator models, whose JSON schemas are made strict (unknown
# fields refused) for those custom resources. Prints the venv's python.
# Pinned, idempotent, installed into .tools/chartcheck. (The newest cloudcoil
# models need Python 3.14; these are the newest for the machine's 3.11.)
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_venv chartcheck \
  "PyYAML==6.0.3" \
  "jsonschema==4.25.1" \
  "cloudcoil-models-keda==2.16.1.0" \
  "cloudcoil-models-prometheus-operator==0.80.1.0"
echo "$PALM_TOOLS/chartcheck/bin/python"
