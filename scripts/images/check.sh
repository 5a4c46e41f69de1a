#!/usr/bin/env bash
# `make check-images`: everything the container delivery must prove here.
#
# Static (always):
#   - hadolint on docker/Dockerfile; shellcheck on the image scripts and
#     docker/smoke.sh; the Dockerfile's Rust image = rust-toolchain.toml's;
#   - docker/compose.yaml against the Compose specification (offline, the
#     schema check-jsonschema vendors), every bind-mounted path exists, every
#     healthcheck is set, the Prometheus config's rule glob finds the repo's
#     rule files, and promtool accepts the compose stack's Prometheus config.
# Images (skipped, saying so, only where podman itself cannot run a container):
#   - `make images` (scripts/images/build.sh): the four images, built and
#     tagged; palmdao's at most 40 MB uncompressed;
#   - each image: user 65532, OCI labels (revision = HEAD), no shell; it runs
#     under podman with --read-only --user 65532 --cap-drop ALL
#     --security-opt no-new-privileges against this machine's RabbitMQ and
#     MongoDB (scripts/test-deps.sh), reports ready on its admin port, serves
#     /metrics, passes its in-image healthcheck probe, and exits 0 within its
#     grace period on `podman stop`;
#   - palmdao's container answers the README walkthrough's first calls from
#     outside: a nonce, then `palmctl login` (sign-in) and `palmctl get /v1/me`.
# Prints the wall time of each part.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
log() { echo "check-images: $*" >&2; }
fail() { echo "check-images: FAIL: $*" >&2; exit 1; }
started_all=$SECONDS

# ---- static checks ----------------------------------------------------------
hadolint="$(scripts/tools/hadolint.sh)"
shellcheck="$(scripts/tools/shellcheck.sh)"
check_jsonschema="$(scripts/tools/check-jsonschema.sh)"

"$hadolint" docker/Dockerfile || fail "hadolint docker/Dockerfile"
log "hadolint: docker/Dockerfile clean"
"$shellcheck" -x scripts/images/*.sh docker/smoke.sh \
  scripts/tools/podman.sh scripts/tools/hadolint.sh scripts/tools/check-jsonschema.sh \
  || fail "shellcheck"
log "shellcheck: image scripts and docker/smoke.sh clean"

toolchain="$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)"
grep -q "^ARG RUST_IMAGE=docker.io/library/rust:$toolchain-" docker/Dockerfile \
  || fail "docker/Dockerfile's RUST_IMAGE is not rust:$toolchain (rust-toolchain.toml)"
grep -q "^ENV RUSTUP_TOOLCHAIN=$toolchain " docker/Dockerfile \
  || fail "docker/Dockerfile's RUSTUP_TOOLCHAIN is not $toolchain (rust-toolchain.toml)"
grep -Eq '^ARG (RUST_IMAGE|RUNTIME_BASE)=[^ ]+@sha256:[0-9a-f]{64}$' docker/Dockerfile \
  || fail "docker/Dockerfile's base images are not pinned by digest"
log "Dockerfile: Rust $toolchain as in rust-toolchain.toml, bases pinned by digest"

"$check_jsonschema" --builtin-schema vendor.compose-spec docker/compose.yaml >&2 \
  || fail "docker/compose.yaml does not follow the Compose specification"
"$(dirname "$check_jsonschema")/python" scripts/images/compose_paths.py docker/compose.yaml \
  || fail "docker/compose.yaml"
prometheus_dir="$(scripts/tools/prometheus.sh)"
"$prometheus_dir/promtool" check config --syntax-only docker/prometheus/prometheus.yml >&2 \
  || fail "docker/prometheus/prometheus.yml"

# ---- images -----------------------------------------------------------------
eval "$(scripts/tools/podman.sh)"
# Can podman run a container here? The static probe, run in the runtime base
# under the flags the tests use, must get as far as its own "connection
# refused"; anything else means the container never started.
probe_dir="$(mktemp -d)"
trap 'rm -rf "$probe_dir"' EXIT
gcc -O2 -s -static -Wall -Wextra -Werror -o "$probe_dir/palm-healthcheck" docker/healthcheck.c
base="$(scripts/images/runtime-base.sh)"
podman_said="$(podman run --rm --network none --read-only --user 65532 --cap-drop ALL \
  --security-opt no-new-privileges -v "$probe_dir/palm-healthcheck:/probe:ro" \
  --entrypoint /probe "$base" http://127.0.0.1:1/ 2>&1 || true)"
if [[ "$podman_said" != *"palm-healthcheck: connection refused"* ]]; then
  log "SKIPPED the image tests: podman cannot run a container on this machine. It said:"
  echo "$podman_said" >&2
  log "static checks passed in $((SECONDS - started_all)) s"
  exit 0
fi
log "podman runs containers here (--read-only --user 65532 --cap-drop ALL --security-opt no-new-privileges)"

started=$SECONDS
mapfile -t images < <(scripts/images/build.sh)
build_seconds=$((SECONDS - started))
((${#images[@]} == 4)) || fail "make images built ${#images[@]} images, not 4"
log "make images: ${build_seconds} s"

revision="$(git rev-parse HEAD)"
for image in "${images[@]}"; do
  service="${image#palm/}"; service="${service%%:*}"
  config="$(podman image inspect --format '{{.Config.User}}|{{index .Config.Labels "org.opencontainers.image.revision"}}|{{index .Config.Labels "dev.palm.service"}}|{{json .Config.Entrypoint}}|{{.Size}}' "$image")"
  IFS='|' read -r user label_revision label_service entrypoint size <<<"$config"
  [[ "$user" == "65532:65532" ]] || fail "$image runs as '$user', not 65532:65532"
  [[ "$label_revision" == "$revision" ]] || fail "$image's revision label is '$label_revision', not $revision"
  [[ "$label_service" == "$service" ]] || fail "$image's service label is '$label_service'"
  [[ "$entrypoint" == '["/usr/local/bin/palm-service"]' ]] || fail "$image's entrypoint is $entrypoint"
  if podman run --rm --network none --entrypoint /bin/sh "$image" -c true >/dev/null 2>&1; then
    fail "$image has a shell"
  fi
  if [[ "$service" == palmdao ]]; then
    ((size <= 40 * 1000 * 1000)) || fail "palmdao's image is $((size / 1000000)) MB, over 40 MB"
    log "palmdao's image: $(awk -v s="$size" 'BEGIN{printf "%.1f", s/1e6}') MB uncompressed (limit 40 MB)"
  fi
done
log "images: user 65532, labels, exec-form entrypoint, no shell"

# ---- each image runs against the real broker and database -------------------
eval "$(scripts/test-deps.sh)"
run_id="img$$"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
containers=()
cleanup() {
  rm -rf "$probe_dir"
  for container in "${containers[@]}"; do podman rm -f "$container" >/dev/null 2>&1 || true; done
  # The queues this run declared (its own prefix).
  if command -v rabbitmqctl >/dev/null; then
    rabbitmqctl -q list_queues name 2>/dev/null | grep "^palm-$run_id" \
      | while read -r queue; do rabbitmqctl -q delete_queue "$queue" </dev/null >/dev/null 2>&1 || true; done
  fi
}
trap cleanup EXIT

grace_ms=10000
declare -A admin
api_port="$(free_port)"
started=$SECONDS
for image in "${images[@]}"; do
  service="${image#palm/}"; service="${service%%:*}"
  admin[$service]="$(free_port)"
  container="palm-check-$run_id-$service"
  podman run -d --name "$container" \
    --read-only --user 65532 --cap-drop ALL --security-opt no-new-privileges \
    --network host \
    -e PALM__AMQP__URL="$PALM_AMQP_URL" -e PALM__AMQP__PREFIX="palm-$run_id" \
    -e PALM__MONGO__URL="$PALM_MONGO_URL" -e PALM__MONGO__DATABASE="palm_$run_id" \
    -e PALM__ADMIN__ADDR="127.0.0.1:${admin[$service]}" \
    -e PALM__HTTP__ADDR="127.0.0.1:$api_port" \
    -e PALM__AUTH__SESSION_KEY=check-images-session-key-not-a-secret \
    -e PALM__DISCORD__CLIENT_ID=100000000000000001 \
    -e PALM__DISCORD__CLIENT_SECRET=check-images-client-secret \
    -e PALM__DISCORD__BASE_URL=http://127.0.0.1:9/api/v10 \
    -e PALM__SHUTDOWN__GRACE_MS="$grace_ms" \
    "$image" >/dev/null
  containers+=("$container")
done

for image in "${images[@]}"; do
  service="${image#palm/}"; service="${service%%:*}"
  container="palm-check-$run_id-$service"
  port="${admin[$service]}"
  ready=""
  for _ in $(seq 1 120); do
    if [[ "$(podman inspect --format '{{.State.Running}}' "$container")" != true ]]; then
      podman logs "$container" 2>&1 | tail -20 >&2
      fail "$service's container exited: $(podman inspect --format '{{.State.ExitCode}}' "$container")"
    fi
    if ready="$(curl -fsS "http://127.0.0.1:$port/readyz" 2>/dev/null)"; then break; fi
    ready=""
    sleep 0.5
  done
  [[ -n "$ready" ]] || { podman logs "$container" 2>&1 | tail -20 >&2; fail "$service not ready on its admin port"; }
  metrics="$(curl -fsS "http://127.0.0.1:$port/metrics")" || fail "$service: no /metrics"
  grep -q '^palm_' <<<"$metrics" || fail "$service's /metrics has no palm_ series"
  podman exec "$container" /healthcheck/palm-healthcheck "http://127.0.0.1:$port/readyz" \
    || fail "$service: the in-image healthcheck probe failed"
  log "$service: ready ($ready), $(grep -c '^palm_' <<<"$metrics") palm_ samples on /metrics, healthcheck probe passes"
done
log "four containers ready in $((SECONDS - started)) s"

# palmdao answers the walkthrough's first calls from outside its container.
api="http://127.0.0.1:$api_port"
nonce="$(curl -fsS "$api/v1/auth/nonce")" || fail "GET /v1/auth/nonce"
log "palmdao: GET /v1/auth/nonce → $nonce"
target_dir="$(cargo metadata --format-version 1 --no-deps --locked \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
palmctl="$target_dir/debug/palmctl"
[[ -x "$target_dir/release/palmctl" ]] && palmctl="$target_dir/release/palmctl"
if [[ ! -x "$palmctl" ]]; then
  cargo build --locked -p palmctl >&2
  palmctl="$target_dir/debug/palmctl"
fi
token="$(PALMCTL_API="$api" PALMCTL_SEED="check-images-$run_id" "$palmctl" login)" || fail "palmctl login against the container"
me="$(PALMCTL_API="$api" PALMCTL_TOKEN="$token" "$palmctl" get /v1/me)" || fail "palmctl get /v1/me"
grep -q '"level"' <<<"$me" || fail "GET /v1/me: $me"
log "palmdao: palmctl login signed in and GET /v1/me answered from outside the container"

# Each exits 0 within its grace period on `podman stop` (SIGTERM, then SIGKILL
# after the timeout, which would show as 137).
stop_timeout=$((grace_ms / 1000 + 5))
for image in "${images[@]}"; do
  service="${image#palm/}"; service="${service%%:*}"
  container="palm-check-$run_id-$service"
  stop_started=$(date +%s%N)
  podman stop --time "$stop_timeout" "$container" >/dev/null
  stop_ms=$((($(date +%s%N) - stop_started) / 1000000))
  code="$(podman inspect --format '{{.State.ExitCode}}' "$container")"
  [[ "$code" == 0 ]] || { podman logs "$container" 2>&1 | tail -20 >&2; fail "$service exited $code on podman stop"; }
  ((stop_ms < grace_ms)) || fail "$service took ${stop_ms} ms to stop (grace ${grace_ms} ms)"
  log "$service: podman stop → exit 0 in ${stop_ms} ms (grace ${grace_ms} ms)"
done

log "passed in $((SECONDS - started_all)) s (make images ${build_seconds} s of it)"
