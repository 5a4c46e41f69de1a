#!/usr/bin/env bash
# The compose stack's smoke test, for a GitHub Actions job (an ubuntu runner
# with Docker, the Compose plugin, Rust and jq).
#
# IT CANNOT RUN ON THE PROJECT'S DEVELOPMENT MACHINES: they have no Docker
# daemon. There, `make check-images` validates docker/compose.yaml against the
# Compose specification and runs each image under podman instead.
#
#   1. `docker compose up --build --wait`: every healthcheck passes (the
#      replica set initiated, RabbitMQ, the four services, the fake Discord,
#      Prometheus, Alertmanager, Grafana, Loki, Alloy, the collector, Jaeger);
#   2. the README walkthrough with palmctl against it: alice signs in, creates
#      a community and an open proposal; bob signs in, joins and votes; the
#      vote must become `valid` (decided by a palmvalidator replica) and be
#      counted in the results;
#   3. Prometheus scrapes every Palm service (both palmvalidator replicas);
#   4. tear down (`down --volumes`), also on failure, after printing the
#      stack's state and logs. SMOKE_KEEP=1 leaves the stack up.
#
# PALMCTL names the palmctl binary (default: target/debug/palmctl, built if
# missing). SMOKE_TIMEOUT bounds the wait for the stack (seconds, default 900).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { echo "smoke: $*" >&2; }
fail() { echo "smoke: FAIL: $*" >&2; exit 1; }

compose=(docker compose --file docker/compose.yaml)
export PALM_REVISION="${PALM_REVISION:-$(git rev-parse HEAD)}"

palmctl="${PALMCTL:-$root/target/debug/palmctl}"
if [[ ! -x "$palmctl" ]]; then
  log "building palmctl"
  cargo build --locked -p palmctl
  palmctl="$root/target/debug/palmctl"
fi

teardown() {
  local status=$?
  if ((status != 0)); then
    log "failed; the stack's state and recent logs:"
    "${compose[@]}" ps --all >&2 || true
    "${compose[@]}" logs --no-color --tail 80 >&2 || true
  fi
  if [[ "${SMOKE_KEEP:-0}" == 1 ]]; then
    log "SMOKE_KEEP=1: leaving the stack up (docker compose -f docker/compose.yaml down -v)"
  else
    "${compose[@]}" down --volumes --remove-orphans >&2 || true
  fi
  exit "$status"
}
trap teardown EXIT

started=$SECONDS
log "docker compose up --build --wait"
"${compose[@]}" up --build --detach --wait --wait-timeout "${SMOKE_TIMEOUT:-900}"
log "stack healthy in $((SECONDS - started)) s"
"${compose[@]}" ps >&2

# ---- the README walkthrough --------------------------------------------------
export PALMCTL_API=http://127.0.0.1:8080
curl -fsS "$PALMCTL_API/v1/auth/nonce" >/dev/null || fail "GET /v1/auth/nonce"

PALMCTL_TOKEN="$(PALMCTL_SEED=alice "$palmctl" login)"
export PALMCTL_TOKEN
"$palmctl" get /v1/me | jq -e '.level >= 1' >/dev/null || fail "alice's PalmID"
"$palmctl" post /v1/communities '{"slug": "garden", "name": "Community garden"}' \
  | jq -e '.slug == "garden"' >/dev/null || fail "creating the community"
start="$(date -u +%FT%TZ)"
end="$(date -u -d '+7 days' +%FT%TZ)"
proposal="$("$palmctl" post /v1/communities/garden/proposals \
  '{"title": "Plant apple trees?", "choices": ["yes", "no"], "voting_type": "single-choice", "start": "'"$start"'", "end": "'"$end"'"}' \
  | jq -er .id)" || fail "opening the proposal"
log "alice signed in, created garden and proposal $proposal"

PALMCTL_TOKEN="$(PALMCTL_SEED=bob "$palmctl" login)"
"$palmctl" post /v1/communities/garden/join | jq -e '.role == "member"' >/dev/null || fail "bob joining"
vote="$("$palmctl" vote "$proposal" 1 | jq -er .id)" || fail "bob's vote"
log "bob joined and voted: vote $vote"

status=pending
for _ in $(seq 1 120); do
  status="$("$palmctl" get "/v1/votes/$vote" | jq -r .status)"
  [[ "$status" == pending ]] || break
  sleep 0.5
done
[[ "$status" == valid ]] || fail "vote $vote is '$status', not valid"
log "vote $vote is valid"
"$palmctl" get "/v1/proposals/$proposal/results" | tee /dev/stderr \
  | jq -e '.voters == 1' >/dev/null || fail "the results do not count bob's vote"

# ---- Prometheus scrapes every Palm service -----------------------------------
up=""
for _ in $(seq 1 60); do
  up="$(curl -fsS http://127.0.0.1:9090/api/v1/query --data-urlencode 'query=up{job=~"palm.*"}' \
    | jq -r '[.data.result[] | select(.value[1] == "1")] | length')"
  [[ "$up" == 5 ]] && break
  sleep 2
done
[[ "$up" == 5 ]] || fail "Prometheus has $up of 5 Palm targets up (palmdao, 2 palmvalidator, palmvalidator-discord, palmplatformmetrics)"
log "Prometheus scrapes all 5 Palm instances"

log "passed in $((SECONDS - started)) s"
