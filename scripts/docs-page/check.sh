#!/usr/bin/env bash
# `make check-docs-page`: proves palmdao's API documentation page (/docs)
# works with no network beyond palmdao itself (issue 14, ADR 0026).
#   1. the vendored Swagger UI matches its VERSION file (pinned npm version
#      and integrity, sha256 of every file; scripts/vendor-swagger-ui.sh).
#   2. palmdao (target/debug/palmdao, built by `make test-rust`; built here if
#      missing) on free ports with its own AMQP prefix and database, against
#      the broker and database scripts/test-deps.sh provides.
#   3. headless Debian Chromium driven by playwright-core
#      (scripts/docs-page/docs-page.cjs) with every off-origin request
#      refused: /docs renders every operation of /openapi.json, with no CSP
#      violation, console error or failed request.
# Everything it starts, it stops (by PID) on exit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
log() { echo "check-docs-page: $*" >&2; }
started=$SECONDS

# --- tools -----------------------------------------------------------------
chromium="$(scripts/tools/chromium.sh)"
playwright="$(scripts/tools/playwright-core.sh)"
log "$("$chromium" --version 2>/dev/null | head -n1), playwright-core $(node -p "require('$playwright/package.json').version")"

# --- 1. the vendored copy ----------------------------------------------------
scripts/vendor-swagger-ui.sh --check

# --- 2. palmdao ----------------------------------------------------------------
eval "$(scripts/test-deps.sh)"
: "${PALM_AMQP_URL:?}" "${PALM_MONGO_URL:?}"
# shellcheck source=scripts/lib/palm-services.sh
source scripts/lib/palm-services.sh
palm_build_missing palmdao
state="$root/.palm-test/docs-page"
rm -rf "$state"
mkdir -p "$state"

prefix="palm-docs-check"
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
  local rc=$?
  palm_stop "${palm_pids[@]}"
  # The run's queues go with it.
  if [[ "$PALM_AMQP_URL" == *"@127.0.0.1:5672"* ]]; then palm_delete_queues "$prefix"; fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

api_port="$(palm_free_port)"
admin_port="$(palm_free_port)"
launched=$SECONDS
palm_start palmdao "$state/palmdao.log" \
  PALM__AMQP__URL="$PALM_AMQP_URL" PALM__AMQP__PREFIX="$prefix" \
  PALM__MONGO__URL="$PALM_MONGO_URL" PALM__MONGO__DATABASE="palm_docs_check" \
  PALM__AUTH__SESSION_KEY="docs-page-check-session-key-not-secret" \
  PALM__HTTP__ADDR="127.0.0.1:$api_port" PALM__ADMIN__ADDR="127.0.0.1:$admin_port"
palm_wait_ready palmdao "$admin_port" "$PALM_PID" "$state/palmdao.log" 60
log "palmdao ready on 127.0.0.1:$api_port in $((SECONDS - launched)) s (log in ${state#"$root"/}/palmdao.log)"

# --- 3. the browser ------------------------------------------------------------
browser_started=$SECONDS
node scripts/docs-page/docs-page.cjs "$playwright" "$chromium" "http://127.0.0.1:$api_port"
log "passed: browser part $((SECONDS - browser_started)) s, whole check $((SECONDS - started)) s"
