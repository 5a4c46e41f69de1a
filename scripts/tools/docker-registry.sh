#!/usr/bin/env bash
# Installs Debian's docker-registry (the CNCF distribution registry, v2) and
# prints its path. `make release-rehearsal` runs it on a loopback port, with a
# config under .palm-test/, as the stand-in for ECR. The package's own service
# is not started (no init system here, and /etc is left alone).
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_apt docker-registry
command -v docker-registry
