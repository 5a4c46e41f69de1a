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
if [[ ! -x target/debug/palmdao ]]; then
  log "target/debug/palmdao missing: building it"
  cargo build --locked -p palmdao --bin palmdao >&2
fi
state="$root/.palm-test/docs-page"
rm -rf "$state"
mkdir -p "$state"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
prefix="palm-docs-check"
pid=""
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
  local rc=$?
  if [[ -n "$pid" ]]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  # The run's queues go with it, in one rabbitmqctl call.
  if [[ "$PALM_AMQP_URL" == *"@127.0.0.1:5672"* ]] && command -v rabbitmqctl >/dev/null; then
    rabbitmqctl eval "length([rabbit_amqqueue:delete(Q, false, false, <<\"$prefix\">>)
      || Q <- rabbit_amqqueue:list(<<\"/\">>),
         binary:match(element(4, amqqueue:get_name(Q)), <<\"$prefix.\">>) =:= {0, ${#prefix} + 1}])." \
      >/dev/null 2>&1 || log "could not delete the $prefix.* queues"
  fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

api_port="$(free_port)"
admin_port="$(free_port)"
PALM__AMQP__URL="$PALM_AMQP_URL" PALM__AMQP__PREFIX="$prefix" \
  PALM__MONGO__URL="$PALM_MONGO_URL" PALM__MONGO__DATABASE="palm_docs_check" \
  PALM__AUTH__SESSION_KEY="docs-page-check-session-key-not-secret" \
  PALM__HTTP__ADDR="127.0.0.1:$api_port" PALM__ADMIN__ADDR="127.0.0.1:$admin_port" \
  target/debug/palmdao >"$state/palmdao.log" 2>&1 &
pid=$!
launched=$SECONDS
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { tail -n 20 "$state/palmdao.log" >&2; log "FAIL palmdao exited"; exit 1; }
  sleep 0.5
done
curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null \
  || { tail -n 20 "$state/palmdao.log" >&2; log "FAIL palmdao not ready within 60 s"; exit 1; }
log "palmdao ready on 127.0.0.1:$api_port in $((SECONDS - launched)) s (log in ${state#"$root"/}/palmdao.log)"

# --- 3. the browser ------------------------------------------------------------
browser_started=$SECONDS
node scripts/docs-page/docs-page.cjs "$playwright" "$chromium" "http://127.0.0.1:$api_port"
log "passed: browser part $((SECONDS - browser_started)) s, whole check $((SECONDS - started)) s"
