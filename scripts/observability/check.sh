#!/usr/bin/env bash
# `make check-observability`: proves the dashboards, alert rules, runbooks and
# Alertmanager routing under observability/ against the real tools.
#   1. static: every alert has severity/summary/description/runbook_url and
#      its runbook file; promtool check rules + test rules (each alert firing
#      and not firing); dashboards' variables and Loki labels; amtool
#      check-config and route tests (critical → Telegram, warnings not).
#   2. live: the four services (cargo's debug/, built by `make test-rust`; built
#      here if missing) on free ports with their own AMQP prefix and database,
#      RabbitMQ with rabbitmq_prometheus, and a private Prometheus (own port,
#      config and data dir under .palm-test/observability/) scraping them all;
#      traffic through palmdao's API and the real event path; then every
#      dashboard and rule expression must evaluate and every metric name they
#      use must be exported by a scraped target.
# Everything it starts, it stops (by PID) on exit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
log() { echo "check-observability: $*" >&2; }
started=$SECONDS

# --- tools -----------------------------------------------------------------
prom_bin="$(scripts/tools/prometheus.sh)"
scripts/tools/alertmanager.sh >/dev/null
# shellcheck source=scripts/tools/lib.sh
source scripts/tools/lib.sh
ensure_venv observability "promql-parser==0.11.0" "PyYAML==6.0.2"
py="$PALM_TOOLS/observability/bin/python"
state="$root/.palm-test/observability"
rm -rf "$state"
mkdir -p "$state"

# --- static ----------------------------------------------------------------
log "promtool check rules"
"$prom_bin/promtool" check rules observability/prometheus/rules/*.rules.yml >"$state/promtool-check.log" 2>&1 \
  || { cat "$state/promtool-check.log" >&2; log "FAIL promtool check rules"; exit 1; }
log "promtool test rules"
"$prom_bin/promtool" test rules observability/prometheus/tests/*.test.yml >"$state/promtool-test.log" 2>&1 \
  || { cat "$state/promtool-test.log" >&2; log "FAIL promtool test rules"; exit 1; }
grep -c SUCCESS "$state/promtool-test.log" | xargs -I{} echo "promtool: check rules passes; test rules: {} test files pass" >&2
static_rc=0
"$py" scripts/observability/check.py static "$state" || static_rc=$?
# A real Alertmanager (Debian's, loopback receivers): routing, inhibition, templates.
"$py" scripts/observability/check.py alertmanager "$state" || static_rc=1

# --- live ------------------------------------------------------------------
eval "$(scripts/test-deps.sh)"
: "${PALM_AMQP_URL:?}" "${PALM_MONGO_URL:?}"
# RabbitMQ's own metrics endpoint (idempotent; the plugin stays enabled).
if ! (exec 3<>/dev/tcp/127.0.0.1/15692) 2>/dev/null; then
  log "enabling rabbitmq_prometheus"
  rabbitmq-plugins enable rabbitmq_prometheus >&2
  for _ in $(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/15692) 2>/dev/null && break; sleep 0.5; done
fi
rabbitmq_metrics="127.0.0.1:15692"
if [[ "$PALM_AMQP_URL" != *"@127.0.0.1:5672"* && "$PALM_AMQP_URL" != *"@localhost:5672"* ]]; then
  rabbitmq_metrics="${PALM_RABBITMQ_METRICS:?PALM_AMQP_URL is not the local broker: set PALM_RABBITMQ_METRICS=host:port of its rabbitmq_prometheus endpoint}"
fi

services=(palmdao palmvalidator palmvalidator-discord palmplatformmetrics)
# shellcheck source=scripts/lib/palm-services.sh
source scripts/lib/palm-services.sh
palm_build_missing "${services[@]}" palmctl

prefix="palm-obs-check"
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
  local rc=$?
  palm_stop "${palm_pids[@]}"
  # The run's queues go with it (fixed prefix, so nothing accumulates either
  # way).
  if [[ "$rabbitmq_metrics" == 127.0.0.1:15692 ]]; then palm_delete_queues "$prefix"; fi
  exit "$rc"
}
trap cleanup EXIT INT TERM

export PALM__AMQP__URL="$PALM_AMQP_URL" PALM__AMQP__PREFIX="$prefix"
export PALM__MONGO__URL="$PALM_MONGO_URL" PALM__MONGO__DATABASE="palm_obs_check"
export PALM__AUTH__SESSION_KEY="observability-check-session-key-not-secret"
export PALM__COMMUNITIES__CREATE_MIN_LEVEL=1
# Every MongoDB command counted (palm_mongo_commands_total), as the benches do.
export PALM__MONGO__COMMAND_METRICS=true
# Placeholder Discord application, against a fake Discord on loopback that
# answers one 429, then refuses codes (scripts/observability/fake_discord.py).
discord_port="$(palm_free_port)"
python3 scripts/observability/fake_discord.py "$discord_port" >"$state/fake-discord.log" 2>&1 &
palm_pids+=($!)
export PALM__DISCORD__CLIENT_ID=100000000000000001 PALM__DISCORD__CLIENT_SECRET=observability-check-secret
export PALM__DISCORD__BASE_URL="http://127.0.0.1:$discord_port/api/v10"
api_port="$(palm_free_port)"
targets=""
for service in "${services[@]}"; do
  port="$(palm_free_port)"
  vars=(PALM__ADMIN__ADDR="127.0.0.1:$port")
  [[ "$service" != palmdao ]] || vars+=(PALM__HTTP__ADDR="127.0.0.1:$api_port")
  palm_start "$service" "$state/$service.log" "${vars[@]}"
  targets+="  - job_name: $service
    static_configs: [{targets: ['127.0.0.1:$port']}]
"
done

prom_port="$(palm_free_port)"
cat >"$state/prometheus.yml" <<EOF
# Written by scripts/observability/check.sh; jobs named as docs/observability.md says.
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $root/observability/prometheus/rules/*.rules.yml
scrape_configs:
$targets  - job_name: rabbitmq
    metrics_path: /metrics/per-object
    static_configs: [{targets: ['$rabbitmq_metrics']}]
EOF
"$prom_bin/prometheus" --config.file="$state/prometheus.yml" --storage.tsdb.path="$state/data" \
  --web.listen-address="127.0.0.1:$prom_port" >"$state/prometheus.log" 2>&1 &
palm_pids+=($!)
prom="http://127.0.0.1:$prom_port"
log "prometheus on $prom, services' logs in ${state#"$root"/}/"

# Every target up (each service ready too), for a few scrapes.
up_count() {
  curl -sf "$prom/api/v1/query" --data-urlencode 'query=count(up == 1)' \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)' 2>/dev/null || echo 0
}
for _ in $(seq 1 120); do
  [[ "$(up_count)" == "$((${#services[@]} + 1))" ]] && break
  sleep 0.5
done
if [[ "$(up_count)" != "$((${#services[@]} + 1))" ]]; then
  curl -s "$prom/api/v1/targets" | python3 -c 'import json,sys; [print(t["labels"]["job"], t["health"], t["lastError"], file=sys.stderr) for t in json.load(sys.stdin)["data"]["activeTargets"]]'
  log "FAIL not every target came up within 60 s (services' logs in $state)"
  exit 1
fi
log "all $((${#services[@]} + 1)) targets up ($((SECONDS - started)) s into the check)"

# Traffic through the public API and the event path, so the request,
# delivery and Discord series have samples: sign-ins, a community, a
# proposal, a vote decided by palmvalidator, a wallet link, a Discord
# verification (refused by the fake Discord after one 429), and a 404.
palmctl() {
  "$palm_bin/palmctl" --api "http://127.0.0.1:$api_port" --domain localhost:8080 \
    --uri http://localhost:8080/v1/auth/siwe "$@"
}
slug="obs-$(date +%s)"
log "traffic through palmdao's API (a palmctl failure here stops the check)"
alice="$(palmctl --seed obs-alice login 2>/dev/null)"
palmctl --token "$alice" post /v1/communities "{\"slug\": \"$slug\", \"name\": \"Observability check\"}" >/dev/null
start="$(date -u -d '-1 minute' +%FT%TZ)" end="$(date -u -d '+1 day' +%FT%TZ)"
proposal="$(palmctl --token "$alice" post "/v1/communities/$slug/proposals" \
  "{\"title\": \"Check\", \"choices\": [\"yes\", \"no\"], \"voting_type\": \"single-choice\", \"start\": \"$start\", \"end\": \"$end\"}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
bob="$(palmctl --seed obs-bob login 2>/dev/null)"
palmctl --token "$bob" post "/v1/communities/$slug/join" >/dev/null
palmctl --token "$bob" --seed obs-bob vote "$proposal" 1 >/dev/null
palmctl --token "$alice" --seed obs-alice link-wallet --with-seed "obs-alice-$slug" >/dev/null
palmctl --token "$bob" post /v1/me/verifications \
  '{"kind": "discord", "code": "observability-check", "redirect_uri": "http://localhost/cb"}' >/dev/null
palmctl get /v1/no-such-route >/dev/null 2>&1 || true
# check.py live waits (up to 30 s) for the series this traffic creates.
"$py" scripts/observability/check.py live "$prom" || static_rc=1
# The checks above must be able to fail: one planted fault of each kind.
"$py" scripts/observability/check.py selftest "$state" "$prom" || static_rc=1
log "done in $((SECONDS - started)) s"
exit "$static_rc"
