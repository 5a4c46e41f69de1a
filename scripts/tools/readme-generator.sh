#!/usr/bin/env bash
# Installs Bitnami's readme-generator-for-helm (README values tables from the
# `## @param` comments of a chart's values.yaml) and prints its path.
# Pinned, idempotent, installed into .tools/readme-generator.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v node >/dev/null || ensure_apt nodejs npm
ensure_npm readme-generator "@bitnami/readme-generator-for-helm@2.7.2"
echo "$PALM_TOOLS/readme-generator/node_modules/.bin/readme-generator"
