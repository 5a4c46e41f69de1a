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
installed="$(dpkg-query -W -f='${Version}' prometheus-alertmanager 2>/dev/null || true)"
if [[ "$installed" != "$ALERTMANAGER_VERSION" ]]; then
  tools_log "installing prometheus-alertmanager=$ALERTMANAGER_VERSION (apt)"
  (
    flock 9
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "prometheus-alertmanager=$ALERTMANAGER_VERSION" >&2
  ) 9>"$PALM_TOOLS/apt.lock"
fi
if [[ -x /etc/init.d/prometheus-alertmanager ]] && /etc/init.d/prometheus-alertmanager status >/dev/null 2>&1; then
  tools_log "stopping the system alertmanager service the package started"
  /etc/init.d/prometheus-alertmanager stop >&2 || true
fi
command -v amtool
