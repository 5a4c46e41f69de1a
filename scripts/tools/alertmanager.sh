#!/usr/bin/env bash
# Installs Debian's `prometheus-alertmanager` package for its `amtool`
# (`check-config`, `config routes test`, used by `make check-observability`)
# and prints amtool's path. The package's own Alertmanager service (:9093,
# which `make run` gives to palmvalidator-discord's admin server) is never
# left running.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pinned to bookworm's version (0.25: telegram_configs, no bot_token_file).
ALERTMANAGER_VERSION="0.25.0-1+b4"
ensure_apt_version prometheus-alertmanager "$ALERTMANAGER_VERSION"
stop_package_service prometheus-alertmanager
command -v amtool
