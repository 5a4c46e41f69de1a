#!/usr/bin/env bash
# Runs the whole suite on this machine: the four services against the local
# RabbitMQ and MongoDB (PALM_MONGO_URL, or the stand-in), each with its admin
# server on its own port. Ctrl-C (or SIGTERM) stops them gracefully.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
eval "$(scripts/test-deps.sh)"
: "${PALM_AMQP_URL:?}" "${PALM_MONGO_URL:?}"
# palmctl, the development CLI, is built alongside for the README's walkthrough.
cargo build --locked --bins -p palmdao -p palmvalidator -p palmvalidator-discord -p palmplatformmetrics -p palmctl

export PALM__AMQP__URL="$PALM_AMQP_URL" PALM__AMQP__PREFIX="${PALM__AMQP__PREFIX:-palm-local}"
export PALM__MONGO__URL="$PALM_MONGO_URL" PALM__MONGO__DATABASE="${PALM__MONGO__DATABASE:-palm_local}"
# A development-only session key; real deployments take it from a Secret.
export PALM__AUTH__SESSION_KEY="${PALM__AUTH__SESSION_KEY:-local-development-session-key-not-secret}"
export PALM__HTTP__ADDR="${PALM__HTTP__ADDR:-127.0.0.1:8080}"
# Creating a community takes PalmID level 3 (communities.create_min_level),
# which no one reaches yet with only the wallet and Discord verifiers: a local
# run lowers it to 1, so whoever signs in can create one.
export PALM__COMMUNITIES__CREATE_MIN_LEVEL="${PALM__COMMUNITIES__CREATE_MIN_LEVEL:-1}"
# palmvalidator-discord needs an OAuth2 application; these development
# placeholders let it start. Discord verifications wait (the service reports
# not-ready) until PALM__DISCORD__BASE_URL points at a Discord it can reach:
# a fake, or an egress proxy (this build's HTTP client has no TLS).
export PALM__DISCORD__CLIENT_ID="${PALM__DISCORD__CLIENT_ID:-100000000000000001}"
export PALM__DISCORD__CLIENT_SECRET="${PALM__DISCORD__CLIENT_SECRET:-local-development-client-secret}"
export PALM__DISCORD__BASE_URL="${PALM__DISCORD__BASE_URL:-http://127.0.0.1:9/api/v10}"
echo "run-local: palmdao public API on http://$PALM__HTTP__ADDR" >&2
# shellcheck source=scripts/lib/palm-services.sh
source scripts/lib/palm-services.sh
port=9091
for service in palmdao palmvalidator palmvalidator-discord palmplatformmetrics; do
  palm_start "$service" - PALM__ADMIN__ADDR="127.0.0.1:$port"
  echo "run-local: $service admin on http://127.0.0.1:$port (/healthz /readyz /metrics)" >&2
  port=$((port + 1))
done
stop() { kill -TERM "${palm_pids[@]}" 2>/dev/null || true; }
trap stop INT TERM
wait
