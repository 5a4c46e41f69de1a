#!/usr/bin/env bash
# Starts palmdao and palmvalidator (the built target/debug binaries) in the
# background for the backup tests and the restore drill, against
# PALM_AMQP_URL and PALM_MONGO_URL, on free ports, with a database and queue
# prefix (fixed, re-used across runs); waits until both are ready, then prints the
# environment palmctl (and seed.sh) needs as `export` lines for eval.
#   palm-up.sh start STATE_DIR DATABASE    start; pids and logs in STATE_DIR
#   palm-up.sh stop STATE_DIR              SIGTERM both, wait for them to exit
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
log() { echo "palm-up: $*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() {
  local state="$1" database="$2"
  mkdir -p "$state"
  : "${PALM_AMQP_URL:?PALM_AMQP_URL must name the broker}" "${PALM_MONGO_URL:?PALM_MONGO_URL must name MongoDB}"
  local http; http="$(free_port)"
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
    admin="$(free_port)"
    PALM__ADMIN__ADDR="127.0.0.1:$admin" "$root/target/debug/$service" >"$state/$service.log" 2>&1 &
    echo $! >"$state/$service.pid"
    echo "$admin" >"$state/$service.admin"
  done
  local deadline=$((SECONDS + 60))
  for service in palmdao palmvalidator; do
    admin="$(cat "$state/$service.admin")"
    until curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1; do
      if ! kill -0 "$(cat "$state/$service.pid")" 2>/dev/null; then
        log "$service exited; its log:"; tail -n 20 "$state/$service.log" >&2; exit 1
      fi
      ((SECONDS < deadline)) || { log "$service not ready after 60 s"; tail -n 20 "$state/$service.log" >&2; exit 1; }
      sleep 0.2
    done
  done
  log "palmdao on http://127.0.0.1:$http and palmvalidator ready (database $database)"
  echo "export PALMCTL_API='http://127.0.0.1:$http' PALMCTL_DOMAIN=palm.test PALMCTL_URI=https://palm.test/v1/auth/siwe"
}

stop() {
  local state="$1" service pid
  for service in palmdao palmvalidator; do
    [[ -f "$state/$service.pid" ]] || continue
    pid="$(cat "$state/$service.pid")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$state/$service.pid"
  done
}

case "${1:-}" in
  start) start "${2:?state dir}" "${3:?database name}" ;;
  stop) stop "${2:?state dir}" ;;
  *) echo "usage: $0 start STATE_DIR DATABASE | stop STATE_DIR" >&2; exit 64 ;;
esac
