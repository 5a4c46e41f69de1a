#!/usr/bin/env bash
# Installs argocheck from PyPI and prints its path: renders an ArgoCD app-of-
# apps offline, each child Application with its $values file (needs helm on
# PATH). Pinned, idempotent, installed into .tools/argocheck.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_venv argocheck "argocheck==0.5.0"
echo "$PALM_TOOLS/argocheck/bin/argocheck"
