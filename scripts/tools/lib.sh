#!/usr/bin/env bash
# Shared helpers for the pinned tool installers in scripts/tools/*.sh.
# Source it; every installer is idempotent and installs into the
# project-local .tools/ folder (never /usr/local), so a fresh clone gets the
# same versions and a second run changes nothing:
#   - ensure_apt PKG...             Debian packages (system-wide; only when missing)
#   - ensure_apt_version PKG VER    Debian's PKG at exactly VER (pinned)
#   - stop_package_service NAME     stops the system service a package's
#                                   install started (/etc/init.d/NAME)
#   - ensure_venv NAME SPEC...      a Python virtualenv .tools/NAME with pinned pip specs
#   - ensure_npm NAME SPEC...       an npm prefix .tools/NAME with pinned packages
# The installers print nothing on stdout but the paths they are asked for,
# so `$(scripts/tools/helm.sh)` style use works; progress goes to stderr.
set -euo pipefail

PALM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PALM_TOOLS="$PALM_ROOT/.tools"
mkdir -p "$PALM_TOOLS/bin"

tools_log() { echo "tools: $*" >&2; }

# Installs the Debian packages that are not installed yet (one apt run).
ensure_apt() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  apt_install "${missing[@]}"
}

# apt_install PKG[=VERSION]...: one apt run, whatever is installed already.
apt_install() {
  tools_log "installing $* (apt)"
  # A lock file keeps parallel installers from racing on dpkg.
  (
    flock 9
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
  ) 9>"$PALM_TOOLS/apt.lock"
}

# ensure_apt_version PKG VERSION: installs PKG=VERSION unless that very
# version is installed.
ensure_apt_version() {
  local pkg="$1" version="$2" installed
  installed="$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)"
  [[ "$installed" == "$version" ]] || apt_install "$pkg=$version"
}

# stop_package_service NAME: a Debian install may start the package's own
# system service (where policy-rc.d allows it); the checks start their own
# instances, so it is never left running.
stop_package_service() {
  local init="/etc/init.d/$1"
  if [[ -x "$init" ]] && "$init" status >/dev/null 2>&1; then
    tools_log "stopping the system $1 service the package started"
    "$init" stop >&2 || true
  fi
}

# installed_with DIR SPEC...: DIR was installed with exactly these SPECs
# (recorded by record_specs in DIR/.palm-specs).
installed_with() {
  local dir="$1"; shift
  [[ "$(cat "$dir/.palm-specs" 2>/dev/null)" == "$(printf '%s\n' "$@")" ]]
}

record_specs() {
  local dir="$1"; shift
  printf '%s\n' "$@" | head -c -1 >"$dir/.palm-specs"
}

# ensure_venv NAME SPEC...: .tools/NAME is a virtualenv holding exactly the
# pinned SPECs; reinstalls only when the spec list changes.
ensure_venv() {
  local name="$1"; shift
  local venv="$PALM_TOOLS/$name"
  [[ -x "$venv/bin/python" ]] && installed_with "$venv" "$@" && return 0
  tools_log "installing $* into .tools/$name"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "$@" >&2
  record_specs "$venv" "$@"
}

# ensure_npm NAME SPEC...: .tools/NAME is an npm prefix with the pinned SPECs.
ensure_npm() {
  local name="$1"; shift
  local prefix="$PALM_TOOLS/$name"
  [[ -d "$prefix/node_modules" ]] && installed_with "$prefix" "$@" && return 0
  tools_log "installing $* into .tools/$name"
  mkdir -p "$prefix"
  npm install --silent --no-audit --no-fund --prefix "$prefix" "$@" >&2
  record_specs "$prefix" "$@"
}
