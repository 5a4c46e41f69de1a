# shellcheck shell=bash
# Sourced, not run: starting Palm's services (cargo's debug binaries) for
# the checks and drills that need them running, in one place.
#   palm_target_dir / palm_bin              cargo's target directory as
#                                           `cargo metadata` reports it
#                                           (CARGO_TARGET_DIR honoured), and
#                                           its debug/ binaries
#   palm_free_port                          a free loopback TCP port
#   palm_build_missing BIN...               cargo build the crates of the
#                                           missing $palm_bin/BINs
#   palm_start SERVICE LOG [NAME=VALUE...]  $palm_bin/SERVICE in the
#                                           background with those variables
#                                           added, output to LOG ("-": left
#                                           as is); its PID in PALM_PID and
#                                           appended to palm_pids
#   palm_wait_ready SERVICE ADMIN_PORT PID LOG [SECONDS]
#                                           polls /readyz until 200; fails
#                                           (the log's tail on stderr) if the
#                                           process exits or SECONDS (60) pass
#   palm_stop PID...                        SIGTERM, up to 30 s, then SIGKILL
#   palm_delete_queues PREFIX               deletes the PREFIX.* queues of the
#                                           local broker, in one rabbitmqctl
#                                           call (each starts an Erlang VM)
# Messages go through the caller's `log` function when it has one.

palm_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
palm_pids=()
# Where cargo builds, wherever that is: a checkout built with
# CARGO_TARGET_DIR must not run stale binaries from its own target/.
palm_target_dir="$(cd "$palm_root" && cargo metadata --format-version 1 --no-deps --locked \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
palm_bin="$palm_target_dir/debug"

_palm_log() {
  if declare -F log >/dev/null; then log "$@"; else echo "$*" >&2; fi
}

palm_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

palm_build_missing() {
  local bin packages=()
  for bin in "$@"; do
    [[ -x "$palm_bin/$bin" ]] || packages+=(-p "$bin")
  done
  ((${#packages[@]})) || return 0
  _palm_log "missing in $palm_bin: building ${packages[*]}"
  (cd "$palm_root" && cargo build --locked --bins "${packages[@]}" >&2)
}

palm_start() {
  local service="$1" out="$2"
  shift 2
  if [[ "$out" == - ]]; then
    env "$@" "$palm_bin/$service" &
  else
    env "$@" "$palm_bin/$service" >"$out" 2>&1 &
  fi
  PALM_PID=$!
  palm_pids+=("$PALM_PID")
}

palm_wait_ready() {
  local service="$1" port="$2" pid="$3" out="$4" deadline=$((SECONDS + ${5:-60}))
  until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$out" >&2
      _palm_log "FAIL $service exited (log: $out)"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      tail -n 20 "$out" >&2
      _palm_log "FAIL $service not ready within ${5:-60} s (log: $out)"
      return 1
    fi
    sleep 0.2
  done
}

palm_stop() {
  local pid
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  for pid in "$@"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    # Reaps our own children; a PID from a file (another shell's) is not one.
    wait "$pid" 2>/dev/null || true
  done
}

palm_delete_queues() {
  local prefix="$1"
  command -v rabbitmqctl >/dev/null || return 0
  rabbitmqctl eval "length([rabbit_amqqueue:delete(Q, false, false, <<\"$prefix\">>)
    || Q <- rabbit_amqqueue:list(<<\"/\">>),
       binary:match(element(4, amqqueue:get_name(Q)), <<\"$prefix.\">>) =:= {0, ${#prefix} + 1}])." \
    >/dev/null 2>&1 || _palm_log "could not delete the $prefix.* queues"
}
