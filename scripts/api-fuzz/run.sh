#!/usr/bin/env bash
# API fuzzing of palmdao (make check-api): runs the pinned schemathesis
# (scripts/tools/schemathesis.sh) over palmdao's own /openapi.json, every
# operation, every check, twice: once without a session and once with
# `Authorization: Bearer <token>` from a real Sign-In with Ethereum
# (palmctl login). Any failure fails the run.
#
# It starts cargo's debug palmdao (built by `make test-rust`; `make check-api`
# builds it) against the broker and database of scripts/test-deps.sh, on free
# ports, with its own AMQP prefix (reused) and database (dropped afterwards).
# Settings are in scripts/api-fuzz/schemathesis.toml; the choices (and the
# checks switched off for single operations, with their reasons) are in
# docs/adr/0025-api-fuzzing-with-schemathesis.md.
#
# Environment:
#   API_FUZZ_EXAMPLES   test cases per operation and phase (default 25)
#   API_FUZZ_SEED       schemathesis seed (default: a fresh one, printed)
#   API_FUZZ_REPORTS    keep the JUnit reports here (default: a temp dir)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
log() { echo "api-fuzz: $*" >&2; }

examples="${API_FUZZ_EXAMPLES:-25}"
seed="${API_FUZZ_SEED:-$(( (RANDOM << 15) | RANDOM ))}"

# shellcheck source=scripts/lib/palm-services.sh
source scripts/lib/palm-services.sh
for bin in palmdao palmctl; do
  if [[ ! -x "$palm_bin/$bin" ]]; then
    log "$palm_bin/$bin is missing: run 'make test-rust' (or cargo build -p $bin) first"
    exit 1
  fi
done
st="$(scripts/tools/schemathesis.sh)"
eval "$(scripts/test-deps.sh)"
http_port="$(palm_free_port)"
admin_port="$(palm_free_port)"
run_id="apifuzz-$$-$(date +%s)"
# One fixed prefix: the queues palmdao declares are reused run after run
# instead of piling up on the shared broker (no other service consumes
# them, so two runs at once do not disturb each other).
prefix="palm-apifuzz"
database="palm_${run_id//-/_}"
work="$(mktemp -d)"
reports="${API_FUZZ_REPORTS:-$work/reports}"
mkdir -p "$reports"
base="http://127.0.0.1:$http_port"

cleanup() {
  local status=$?
  palm_stop "${palm_pids[@]}"
  # The run's database (best effort; the stand-in keeps one per run otherwise).
  "$(scripts/tools/pymongo.sh)" -c 'import sys, pymongo
pymongo.MongoClient(sys.argv[1], serverSelectionTimeoutMS=3000).drop_database(sys.argv[2])' \
    "$PALM_MONGO_URL" "$database" >/dev/null 2>&1 || true
  if ((status != 0)); then
    log "palmdao's log: $work/palmdao.log"
  else
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT

log "palmdao on $base (prefix $prefix, database $database)"
palm_start palmdao "$work/palmdao.log" \
  PALM__HTTP__ADDR="127.0.0.1:$http_port" \
  PALM__ADMIN__ADDR="127.0.0.1:$admin_port" \
  PALM__AMQP__URL="$PALM_AMQP_URL" PALM__AMQP__PREFIX="$prefix" \
  PALM__MONGO__URL="$PALM_MONGO_URL" PALM__MONGO__DATABASE="$database" \
  PALM__AUTH__SESSION_KEY="api-fuzz-session-key-for-tests-only-0123456789" \
  PALM__AUTH__DOMAIN="127.0.0.1:$http_port" PALM__AUTH__URI="$base/v1/auth/siwe" \
  PALM__COMMUNITIES__CREATE_MIN_LEVEL=1 \
  PALM__HTTP__RATE_LIMIT_PER_SECOND=100000 PALM__HTTP__RATE_LIMIT_BURST=100000 \
  RUST_LOG="${RUST_LOG:-warn}"
palm_wait_ready palmdao "$admin_port" "$PALM_PID" "$work/palmdao.log" 30

# A real session: palmctl signs the SIWE message with a development key.
export PALMCTL_API="$base" PALMCTL_SEED="api-fuzz-$run_id" \
  PALMCTL_DOMAIN="127.0.0.1:$http_port" PALMCTL_URI="$base/v1/auth/siwe"
token="$("$palm_bin/palmctl" login)"
[[ -n "$token" ]] || { log "palmctl login printed no token"; exit 1; }
export PALMCTL_TOKEN="$token"

# Seeded resources, named in the config's dictionaries so most requests
# reach existing ones: a community this PalmID administers, a discussion,
# one proposal per voting type, a vote, a verification, the PalmID.
ctl() { "$palm_bin/palmctl" "$@"; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
seeded="$work/config/seeded"
mkdir -p "$seeded"
cp "$root/scripts/api-fuzz/schemathesis.toml" "$work/config/"
dict() { local name="$1"; shift; printf '"%s"\n' "$@" >"$seeded/$name.dict"; }
slug="fuzz-garden"
ctl post /v1/communities "{\"slug\": \"$slug\", \"name\": \"Fuzz garden\"}" >/dev/null
discussion="$(ctl post "/v1/communities/$slug/discussions" '{"title": "Seeded"}' | field id)"
start="$(date -u -d '-1 minute' +%FT%TZ)" end="$(date -u -d '+1 day' +%FT%TZ)"
labels="$(python3 -c 'import json; print(json.dumps([f"option {i}" for i in range(1, 21)]))')"
proposals=()
for type in single-choice approval weighted; do
  proposals+=("$(ctl post "/v1/communities/$slug/proposals" \
    "{\"title\": \"Seeded $type\", \"choices\": $labels, \"voting_type\": \"$type\", \"start\": \"$start\", \"end\": \"$end\"}" | field id)")
done
vote="$(ctl vote "${proposals[0]}" 1 | field id)"
verification="$(ctl post /v1/me/verifications \
  '{"kind": "discord", "code": "seeded-code", "redirect_uri": "https://127.0.0.1/callback"}' | field id)"
palm_id="$(ctl get /v1/me | field id)"
dict slugs "$slug"
dict discussions "$discussion"
dict proposals "${proposals[@]}"
dict votes "$vote"
dict verifications "$verification"
dict palm_ids "$palm_id"
config="$work/config/schemathesis.toml"
export SCHEMATHESIS_HOOKS="$root/scripts/api-fuzz/hooks.py"

started=$SECONDS
failed=0
run_mode() {
  local mode="$1"; shift
  log "schemathesis $mode: every operation, every check, $examples examples per operation and phase, seed $seed"
  if ! "$st" --config-file "$config" run "$base/openapi.json" \
      --checks all --max-examples "$examples" --seed "$seed" \
      --report junit --report-junit-path "$reports/$mode.xml" \
      "$@"; then
    failed=1
  fi
}
run_mode without-session
run_mode with-session --header "Authorization: Bearer $token"
log "both runs took $((SECONDS - started)) s"
if grep -qiE "panicked|request failed" "$work/palmdao.log"; then
  log "palmdao logged errors during the run:"
  grep -iE "panicked|request failed" "$work/palmdao.log" | head -20 >&2
  failed=1
fi
((failed == 0)) || { log "FAILED (reports in $reports)"; exit 1; }
log "passed: no failures in either mode"
