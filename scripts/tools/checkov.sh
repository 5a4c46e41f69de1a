#!/usr/bin/env bash
# Installs checkov from PyPI and prints its path: the policy checker for
# rendered Kubernetes manifests (run with --skip-download: offline). Pinned,
# idempotent, installed into .tools/checkov.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_venv checkov "checkov==3.3.30"
echo "$PALM_TOOLS/checkov/bin/checkov"
