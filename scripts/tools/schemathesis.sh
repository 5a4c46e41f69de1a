#!/usr/bin/env bash
# Installs the pinned API fuzzer schemathesis (PyPI) into .tools/schemathesis
# and prints its `st` command. scripts/api-fuzz/run.sh runs it over palmdao's
# /openapi.json (make check-api).
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SCHEMATHESIS_VERSION=4.32.5

ensure_venv schemathesis "schemathesis==$SCHEMATHESIS_VERSION"
echo "$PALM_TOOLS/schemathesis/bin/st"
