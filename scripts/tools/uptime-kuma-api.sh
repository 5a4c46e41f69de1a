#!/usr/bin/env bash
# Installs the pinned Uptime Kuma client (PyPI uptime-kuma-api) and PyYAML
# that ops/uptime-kuma/apply.py runs on, into .tools/uptime-kuma-api, and
# prints that virtualenv's python. The palm-backup image pins the same
# versions (scripts/backup/Containerfile).
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

UPTIME_KUMA_API_VERSION=1.2.1
PYYAML_VERSION=6.0.3

ensure_venv uptime-kuma-api "uptime-kuma-api==$UPTIME_KUMA_API_VERSION" "PyYAML==$PYYAML_VERSION"
echo "$PALM_TOOLS/uptime-kuma-api/bin/python"
