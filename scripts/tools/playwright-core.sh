#!/usr/bin/env bash
# Installs npm's playwright-core (the Playwright library without its browser
# downloads, which cannot run here) into .tools/playwright-core and prints
# the module's folder, for `require()`. It drives Debian's Chromium
# (scripts/tools/chromium.sh) through executablePath.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PLAYWRIGHT_CORE_VERSION=1.65.1

ensure_npm playwright-core "playwright-core@$PLAYWRIGHT_CORE_VERSION"
module="$PALM_TOOLS/playwright-core/node_modules/playwright-core"
[[ -f "$module/package.json" ]] || { tools_log "$module missing after npm install"; exit 1; }
echo "$module"
