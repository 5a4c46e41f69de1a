#!/usr/bin/env bash
# Installs Debian's shellcheck (used by `make check-workflows` on the `run:`
# blocks of every workflow and on the release scripts) and prints its path.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_apt shellcheck
command -v shellcheck
