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
ensure_apt_version prometheus "$PROMETHEUS_VERSION"
stop_package_service prometheus
dirname "$(command -v promtool)"
