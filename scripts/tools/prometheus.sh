#!/usr/bin/env bash
# Installs Debian's `prometheus` package (the server and promtool, used by
# `make check-observability`) and prints the directory holding both binaries.
# The package's own service is never left running: a Debian install may start
# a system Prometheus on :9090, which the checks do not use (they start their
# own on a free port with their own config and data dir), so it is stopped.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pinned to bookworm's version; the check relies on its PromQL and promtool.
PROMETHEUS_VERSION="2.42.0+ds-5+deb12u1"
installed="$(dpkg-query -W -f='${Version}' prometheus 2>/dev/null || true)"
if [[ "$installed" != "$PROMETHEUS_VERSION" ]]; then
  tools_log "installing prometheus=$PROMETHEUS_VERSION (apt)"
  (
    flock 9
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "prometheus=$PROMETHEUS_VERSION" >&2
  ) 9>"$PALM_TOOLS/apt.lock"
fi
# A system Prometheus started by the package (where policy-rc.d allows it).
if [[ -x /etc/init.d/prometheus ]] && /etc/init.d/prometheus status >/dev/null 2>&1; then
  tools_log "stopping the system prometheus service the package started"
  /etc/init.d/prometheus stop >&2 || true
fi
dirname "$(command -v promtool)"
