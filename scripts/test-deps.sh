#!/usr/bin/env bash
# Makes sure the tests' dependencies are reachable and prints the environment
# the tests need, as `export` lines for `eval`:
#   - RabbitMQ: PALM_AMQP_URL if given; else 127.0.0.1:5672, starting the
#     installed server if it is stopped (installing it with apt on a machine
#     that lacks it).
#   - MongoDB: PALM_MONGO_URL if given; else the wire-compatible stand-in
#     nx-27017, from a project-local virtualenv, on a free port.
# Idempotent: a stand-in this script started earlier is reused while alive.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$root/.palm-test"
mkdir -p "$state"
log() { echo "test-deps: $*" >&2; }

ensure_rabbitmq() {
  if [[ -n "${PALM_AMQP_URL:-}" ]]; then
    echo "export PALM_AMQP_URL='$PALM_AMQP_URL'"
    return
  fi
  if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
    if ! command -v rabbitmq-server >/dev/null; then
      log "installing rabbitmq-server"
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >&2
    fi
    log "starting rabbitmq-server"
    rabbitmq-server -detached >&2 || true
    for _ in $(seq 1 120); do
      (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break
      sleep 0.5
    done
    (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null || { log "rabbitmq did not start"; exit 1; }
  fi
  echo "export PALM_AMQP_URL='amqp://guest:guest@127.0.0.1:5672/%2f'"
}

ensure_mongo() {
  if [[ -n "${PALM_MONGO_URL:-}" ]]; then
    echo "export PALM_MONGO_URL='$PALM_MONGO_URL'"
    return
  fi
  local venv="$root/.venv"
  if [[ ! -x "$venv/bin/nx-27017" ]]; then
    log "installing nx-27017 into $venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check 'nx-27017==0.8.1' >&2
  fi
  # A live stand-in is reused unless its launcher (and so its patches)
  # changed since it started.
  local launcher; launcher="$(sha256sum "$root/scripts/mongo-standin.py" | cut -d' ' -f1)"
  if [[ -f "$state/mongo.port" ]]; then
    local port; port="$(cat "$state/mongo.port")"
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      if [[ "$(cat "$state/mongo.launcher" 2>/dev/null)" == "$launcher" ]]; then
        echo "export PALM_MONGO_URL='mongodb://127.0.0.1:$port/'"
        return
      fi
      log "the stand-in launcher changed; restarting nx-27017"
      kill "$(cat "$state/mongo.pid")" 2>/dev/null || true
      for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || break
        sleep 0.2
      done
    fi
  fi
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  mkdir -p "$state/mongo-data"
  log "starting nx-27017 on port $port"
  # nx-27017 keeps a PID file in /tmp by default and refuses to start while
  # it names a live process; each checkout gets its own.
  (cd "$state" && exec "$venv/bin/python" "$root/scripts/mongo-standin.py" \
    --data-dir "$state/mongo-data" --host 127.0.0.1 -p "$port" \
    --pid-file "$state/mongo.nx.pid" --log-file "$state/mongo.nx.log") \
    >"$state/mongo.log" 2>&1 </dev/null &
  echo $! >"$state/mongo.pid"
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.2
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { log "nx-27017 did not start; see $state/mongo.log"; exit 1; }
  echo "$port" >"$state/mongo.port"
  echo "$launcher" >"$state/mongo.launcher"
  echo "export PALM_MONGO_URL='mongodb://127.0.0.1:$port/'"
}

ensure_rabbitmq
ensure_mongo
