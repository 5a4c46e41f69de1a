#!/usr/bin/env bash
# Installs yamllint from PyPI and prints its path: the YAML linter. Pinned,
# idempotent, installed into .tools/yamllint.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_venv yamllint "yamllint==1.38.0"
echo "$PALM_TOOLS/yamllint/bin/yamllint"
