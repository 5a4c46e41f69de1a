#!/usr/bin/env bash
# Installs Debian's Chromium (package `chromium`, for headless browser tests:
# `make check-docs-page`) and prints its path, /usr/bin/chromium.
#
# Not pinned to one build: Debian ships Chromium through bookworm-security
# only and keeps just the latest security build there, so an exact pin would
# stop installing at the next update. A floor on the major version is
# enforced instead, and callers print the version they ran.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CHROMIUM_MIN_MAJOR=120

ensure_apt chromium
binary=/usr/bin/chromium
[[ -x "$binary" ]] || { tools_log "$binary missing after installing chromium"; exit 1; }
version="$(dpkg-query -W -f='${Version}' chromium)"
major="${version%%.*}"
if ((major < CHROMIUM_MIN_MAJOR)); then
  tools_log "chromium $version is older than $CHROMIUM_MIN_MAJOR"
  exit 1
fi
echo "$binary"
