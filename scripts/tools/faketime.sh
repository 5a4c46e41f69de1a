#!/usr/bin/env bash
# Installs Debian's `libfaketime` (pinned to bookworm's version) and prints
# the path of its preload library, libfaketime.so.1. The lease tests run a
# real palmdao binary with `LD_PRELOAD=<that path> FAKETIME=+15s` to give one
# replica a clock 15 s ahead of the others (tests/tests/lease_clock_skew.rs).
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FAKETIME_VERSION="0.9.10-2.1"
ensure_apt_version libfaketime "$FAKETIME_VERSION"
library="$(dpkg -L libfaketime | grep -E '/libfaketime\.so\.1$' | head -n1)"
[[ -n "$library" && -f "$library" ]] || { tools_log "libfaketime.so.1 not found after installing libfaketime"; exit 1; }
echo "$library"
