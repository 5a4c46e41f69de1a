#!/usr/bin/env bash
# Installs check-jsonschema from PyPI into .tools/check-jsonschema and prints
# its path. It carries vendored schemas, among them the Compose
# specification's (`--builtin-schema vendor.compose-spec`), so compose files
# validate offline.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_venv check-jsonschema "check-jsonschema==0.39.0"
echo "$PALM_TOOLS/check-jsonschema/bin/check-jsonschema"
