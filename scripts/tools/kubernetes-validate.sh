#!/usr/bin/env bash
# Installs kubernetes-validate from PyPI and prints its path: validates
# manifests against the Kubernetes JSON schemas (--strict refuses unknown
# fields on built-in kinds). Pinned, idempotent, installed into
# .tools/kubernetes-validate.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_venv kubernetes-validate "kubernetes-validate==1.37.0"
echo "$PALM_TOOLS/kubernetes-validate/bin/kubernetes-validate"
