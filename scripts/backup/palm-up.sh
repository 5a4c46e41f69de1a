#!/usr/bin/env bash
# Starts palmdao and palmvalidator (the built debug binaries: under
# $CARGO_TARGET_DIR when set, else target/) in the background for the backup
# tests and the restore drill, against PALM_AMQP_URL and PALM_MONGO_URL, on
# free ports, with a database and queue prefix (fixed, re-used across runs);
# waits until both are ready, then prints the environment palmctl (and
# seed.sh) needs as `export` lines for eval.
#   palm-up.sh start STATE_DIR DATABASE    start; pids and logs in STATE_DIR
#   palm-up.sh stop STATE_DIR              SIGTERM both, wait for them to exit
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
log() { echo "palm-up: $*" >&2; }
# shellcheck source=scripts/lib/palm-services.sh
source "$root/scripts/lib/palm-services.sh"
# The built binaries: cargo's target directory, $CARGO_TARGET_DIR when set.
bin_dir="$(cd "$root" && realpath -m "${CARGO_TARGET_DIR:-target}")/debug"

start() {
  local state="$1" database="$2"
  mkdir -p "$state"
  : "${PALM_AMQP_URL:?PALM_AMQP_URL must name the broker}" "${PALM_MONGO_URL:?PALM_MONGO_URL must name MongoDB}"
  local http; http="$(palm_free_port)"
  export PALM_CONFIG_DIR=/nonexistent
  # One fixed queue prefix for every run: the queues are re-used, so runs
  # on a long-lived broker (CI's machine) do not pile up queues.
  export PALM__AMQP__URL="$PALM_AMQP_URL" PALM__AMQP__PREFIX=palm-backup-check
  export PALM__MONGO__URL="$PALM_MONGO_URL" PALM__MONGO__DATABASE="$database"
  export PALM__HTTP__ADDR="127.0.0.1:$http"
  export PALM__HTTP__RATE_LIMIT_PER_SECOND=10000 PALM__HTTP__RATE_LIMIT_BURST=10000
  export PALM__AUTH__SESSION_KEY="backup-drill-session-key-not-a-secret"
  export PALM__AUTH__DOMAIN=palm.test PALM__AUTH__URI=https://palm.test/v1/auth/siwe
  export PALM__COMMUNITIES__CREATE_MIN_LEVEL=1
  # Votes still undecided at a proposal's end are waited for this long.
  export PALM__PROPOSALS__CLOSE_GRACE_MS=20000
  export PALM__TELEMETRY__LOG_LEVEL=warn
  local service admin
  for service in palmdao palmvalidator; do
    admin="$(palm_free_port)"
    PALM__ADMIN__ADDR="127.0.0.1:$admin" "$bin_dir/$service" >"$state/$service.log" 2>&1 &
    echo "$!" >"$state/$service.pid"
    echo "$admin" >"$state/$service.admin"
  done
  for service in palmdao palmvalidator; do
    palm_wait_ready "$service" "$(cat "$state/$service.admin")" "$(cat "$state/$service.pid")" "$state/$service.log" 60
  done
  # palmdao reports ready once MongoDB and the broker are up, which can be
  # before its public API listens (it creates its indexes first).
  local deadline=$((SECONDS + 60))
  until curl -s -o /dev/null "http://127.0.0.1:$http/"; do
    ((SECONDS < deadline)) || { tail -n 20 "$state/palmdao.log" >&2; log "FAIL palmdao's API not listening on $http"; return 1; }
    sleep 0.2
  done
  log "palmdao on http://127.0.0.1:$http and palmvalidator ready (database $database)"
  echo "export PALMCTL_API='http://127.0.0.1:$http' PALMCTL_DOMAIN=palm.test PALMCTL_URI=https://palm.test/v1/auth/siwe"
}

stop() {
  local state="$1" service pid
  for service in palmdao palmvalidator; do
    [[ -f "$state/$service.pid" ]] || continue
    pid="$(cat "$state/$service.pid")"
    palm_stop "$pid"
    rm -f "$state/$service.pid"
  done
}

case "${1:-}" in
  start) start "${2:?state dir}" "${3:?database name}" ;;
  stop) stop "${2:?state dir}" ;;
  *) echo "usage: $0 start STATE_DIR DATABASE | stop STATE_DIR" >&2; exit 64 ;;
esac
