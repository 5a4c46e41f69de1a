#!/usr/bin/env bash
# `make release-rehearsal`: the release path of .github/workflows/release.yml,
# run end to end on this machine, with a loopback registry standing in for ECR.
#
#   1. tag        scripts/release/tag: <version>-<YYYY-MM-DD> (UTC)
#   2. images     `make images` (buildah): palm/<service>:<tag>, four of them
#   3. registry   Debian's docker-registry on 127.0.0.1:<free port>, config and
#                 storage under .palm-test/release-rehearsal/ (never /etc)
#   4. push       skopeo copy to 127.0.0.1:<port>/palm/<service>:<tag>, after
#                 the workflow's rule for an existing tag (ADR 0018): reuse
#                 only if built from this commit, otherwise refuse
#   5. bump       scripts/release/bump-values --env dev on a scratch copy of
#                 helm-values/ (the working tree is never touched; checked)
#   6. render     helm template of each dev chart with the scratch values and
#                 the loopback registry as image.repository; every Deployment's
#                 containers must reference exactly the pushed image
#   7. pull, run  podman pulls each image from the registry into a separate,
#                 empty storage (every layer really comes from the registry),
#                 checks the pulled digest is the pushed one, runs it with
#                 --read-only --user 65532 --cap-drop ALL against this
#                 machine's RabbitMQ and MongoDB until /readyz answers, and
#                 stops it (exit 0)
#
# Prints the pushed digests, the bumped files (as a diff) and the rendered
# image references, and the time of each part. Not part of `make check`: it
# builds release binaries and images (see README, "Releasing").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
log() { echo "rehearsal: $*" >&2; }
fail() { echo "rehearsal: FAIL: $*" >&2; exit 1; }
started_all=$SECONDS
declare -A took

# ---- tools ------------------------------------------------------------------
# shellcheck source=scripts/tools/lib.sh
source scripts/tools/lib.sh
# shellcheck source=scripts/release/python-deps.sh
source scripts/release/python-deps.sh
eval "$(scripts/tools/podman.sh)"
registry_bin="$(scripts/tools/docker-registry.sh)"
helm="$(scripts/tools/helm.sh)"
services=(palmdao palmvalidator palmvalidator-discord palmplatformmetrics)
state="$root/.palm-test/release-rehearsal"

# The rehearsal must not change the repository: fingerprint what it could
# touch (the values files; the charts are only read).
fingerprint() { sha256sum helm-values/*/values-*.yaml; }
repo_before="$(fingerprint)"

# ---- 1. the tag ---------------------------------------------------------------
tag="$(scripts/release/tag)"
revision="$(git rev-parse HEAD)"
log "release tag $tag (workspace version $(scripts/release/tag --version), UTC date), commit $revision"

# ---- 2. the images (make images) ---------------------------------------------
started=$SECONDS
make --no-print-directory images
took[images]=$((SECONDS - started))
images=()
for service in "${services[@]}"; do
  podman image exists "localhost/palm/$service:$tag" || fail "make images did not build palm/$service:$tag"
  images+=("palm/$service:$tag")
done
log "make images: ${images[*]} (${took[images]} s)"

# ---- 3. the registry standing in for ECR --------------------------------------
rm -rf "$state"
mkdir -p "$state/registry/data" "$state/pull"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
registry="127.0.0.1:$port"
cat >"$state/registry/config.yml" <<CONF
# Written by scripts/release/rehearsal.sh: a throwaway loopback registry.
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $state/registry/data
http:
  addr: $registry
CONF
"$registry_bin" serve "$state/registry/config.yml" >"$state/registry/log" 2>&1 &
registry_pid=$!
run_id="rh$$"
# podman refuses a runroot path over 50 characters: keep that one in /tmp.
pull_runroot="$(mktemp -d /tmp/palm-rh.XXXXXX)"
pull_podman=(podman --root "$state/pull/storage" --runroot "$pull_runroot" --storage-driver vfs)
containers=()
cleanup() {
  set +e # clean up everything, whatever fails on the way
  for container in "${containers[@]}"; do "${pull_podman[@]}" rm -f "$container" >/dev/null 2>&1 || true; done
  "${pull_podman[@]}" rmi -a -f >/dev/null 2>&1 || true
  kill "$registry_pid" 2>/dev/null || true
  wait "$registry_pid" 2>/dev/null || true
  if command -v rabbitmqctl >/dev/null; then
    rabbitmqctl -q list_queues name 2>/dev/null | grep "^palm-$run_id" \
      | while read -r queue; do rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1 || true; done
  fi
  rm -rf "$state/pull" "$pull_runroot"
}
trap cleanup EXIT
for _ in $(seq 1 50); do
  curl -fsS "http://$registry/v2/" >/dev/null 2>&1 && break
  kill -0 "$registry_pid" 2>/dev/null || { cat "$state/registry/log" >&2; fail "docker-registry exited"; }
  sleep 0.2
done
curl -fsS "http://$registry/v2/" >/dev/null || fail "docker-registry does not answer on $registry"
log "registry: docker-registry $("$registry_bin" --version 2>/dev/null | awk '{print $3}') on $registry (pid $registry_pid, storage $state/registry/data)"

# ---- 4. push, under the workflow's rule for an existing tag -------------------
# ADR 0018: a tag that exists is reused if its revision label is this commit,
# and refused otherwise; it is never pushed over.
released_revision() {
  skopeo inspect --tls-verify=false --no-tags --format '{{index .Labels "org.opencontainers.image.revision"}}' \
    "docker://$1" 2>/dev/null
}
push_guard() { # prints "push" or "reuse", or fails
  local ref="$1" existing
  if ! existing="$(released_revision "$ref")"; then
    echo push
  elif [[ "$existing" == "$revision" ]]; then
    echo reuse
  else
    fail "$ref already released from ${existing:-an unknown commit}, not $revision"
  fi
}
started=$SECONDS
declare -A digest
for service in "${services[@]}"; do
  ref="$registry/palm/$service:$tag"
  [[ "$(push_guard "$ref")" == push ]] || fail "$ref exists in a fresh registry"
  skopeo copy --quiet --dest-tls-verify=false --digestfile "$state/$service.digest" \
    "containers-storage:localhost/palm/$service:$tag" "docker://$ref" >&2
  digest[$service]="$(cat "$state/$service.digest")"
  [[ "${digest[$service]}" =~ ^sha256:[0-9a-f]{64}$ ]] || fail "no digest for $ref"
  # A second run of the same release: the rule reuses, it does not push again.
  [[ "$(push_guard "$ref")" == reuse ]] || fail "$ref: the existing-tag rule did not reuse this commit's image"
done
took[push]=$((SECONDS - started))
echo
echo "== pushed (skopeo copy → $registry; a re-run would reuse them: same revision) =="
for service in "${services[@]}"; do
  printf '%-62s %s\n' "$registry/palm/$service:$tag" "${digest[$service]}"
done

# ---- 5. the values bump for dev, on a scratch copy ----------------------------
scratch="$state/repo"
mkdir -p "$scratch"
cp -a helm-values "$scratch/"
echo
echo "== bumped (scripts/release/bump-values --env dev, on a scratch copy of helm-values/) =="
scripts/release/bump-values --root "$scratch" --env dev --tag "$tag" "${services[@]}"
for service in "${services[@]}"; do
  diff -u --label "a/helm-values/$service/values-dev.yaml" --label "b/helm-values/$service/values-dev.yaml" \
    "helm-values/$service/values-dev.yaml" "$scratch/helm-values/$service/values-dev.yaml" || true
  # Only the tag line may differ.
  changed="$(diff "helm-values/$service/values-dev.yaml" "$scratch/helm-values/$service/values-dev.yaml" \
    | grep -c '^[<>]' || true)"
  [[ "$changed" =~ ^(0|2)$ ]] || fail "the bump changed $changed lines of $service's values-dev.yaml"
done
scripts/release/bump-values --root "$scratch" --env dev --tag "$tag" "${services[@]}" | grep -q '^bumped' \
  && fail "a second bump changed something"
log "second bump: unchanged (idempotent)"

# ---- 6. render the dev charts and check every Deployment's image ---------------
started=$SECONDS
echo
echo "== rendered (helm template, dev values, image.repository=$registry/palm/<service>) =="
for service in "${services[@]}"; do
  rendered="$state/rendered-$service.yaml"
  "$helm" template "$service" "charts/$service" --namespace "palm-dev" --kube-version 1.33.0 \
    -f "$scratch/helm-values/$service/values-dev.yaml" \
    --set "image.repository=$registry/palm/$service" >"$rendered" 2>"$state/helm-$service.log" \
    || { cat "$state/helm-$service.log" >&2; fail "helm template $service"; }
  "$RELEASE_PYTHON" - "$rendered" "$registry/palm/$service:$tag" <<'PY' || fail "$service's rendered images"
import sys, yaml
path, want = sys.argv[1], sys.argv[2]
workloads = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
deployments, bad = 0, []
for doc in yaml.safe_load_all(open(path)):
    if not doc or doc.get("kind") not in workloads:
        continue
    deployments += doc["kind"] == "Deployment"
    spec = doc["spec"]
    pod = spec["jobTemplate"]["spec"]["template"]["spec"] if doc["kind"] == "CronJob" else spec["template"]["spec"]
    for c in pod.get("initContainers", []) + pod.get("containers", []):
        print(f"{doc['kind']}/{doc['metadata']['name']} container {c['name']}: {c['image']}")
        if c["image"] != want:
            bad.append(f"{doc['kind']}/{doc['metadata']['name']} {c['name']}: {c['image']} != {want}")
if deployments != 1:
    bad.append(f"expected one Deployment, rendered {deployments}")
for b in bad:
    print(f"MISMATCH {b}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
done
took[render]=$((SECONDS - started))

# ---- 7. podman pulls from the registry and runs each image --------------------
eval "$(scripts/test-deps.sh)"
started=$SECONDS
echo
echo "== pulled and run (podman, from $registry, into an empty storage) =="
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
grace_ms=10000
# All four start together, as in a cluster: a service's readiness may wait on
# queues another one declares.
declare -A admin_port pulled
for service in "${services[@]}"; do
  ref="$registry/palm/$service:$tag"
  "${pull_podman[@]}" pull --quiet --tls-verify=false "$ref" >/dev/null || fail "podman pull $ref"
  pulled[$service]="$("${pull_podman[@]}" image inspect --format '{{.Digest}}' "$ref")"
  [[ "${pulled[$service]}" == "${digest[$service]}" ]] \
    || fail "$ref pulled as ${pulled[$service]}, pushed as ${digest[$service]}"
  admin_port[$service]="$(free_port)"
  container="palm-rehearsal-$run_id-$service"
  "${pull_podman[@]}" run -d --name "$container" \
    --read-only --user 65532 --cap-drop ALL --security-opt no-new-privileges --network host \
    -e PALM__AMQP__URL="$PALM_AMQP_URL" -e PALM__AMQP__PREFIX="palm-$run_id" \
    -e PALM__MONGO__URL="$PALM_MONGO_URL" -e PALM__MONGO__DATABASE="palm_$run_id" \
    -e PALM__ADMIN__ADDR="127.0.0.1:${admin_port[$service]}" -e PALM__HTTP__ADDR="127.0.0.1:$(free_port)" \
    -e PALM__AUTH__SESSION_KEY=release-rehearsal-session-key-not-a-secret \
    -e PALM__DISCORD__CLIENT_ID=100000000000000001 \
    -e PALM__DISCORD__CLIENT_SECRET=release-rehearsal-client-secret \
    -e PALM__DISCORD__BASE_URL=http://127.0.0.1:9/api/v10 \
    -e PALM__SHUTDOWN__GRACE_MS="$grace_ms" \
    "$ref" >/dev/null
  containers+=("$container")
done
declare -A ready
for service in "${services[@]}"; do
  container="palm-rehearsal-$run_id-$service"
  # Up to 3 minutes: on a loaded machine the broker's queue declarations can
  # take several of the service's 15 s connect attempts.
  for _ in $(seq 1 360); do
    if [[ "$("${pull_podman[@]}" inspect --format '{{.State.Running}}' "$container")" != true ]]; then
      "${pull_podman[@]}" logs "$container" 2>&1 | tail -20 >&2
      fail "$service's container exited"
    fi
    ready[$service]="$(curl -fsS "http://127.0.0.1:${admin_port[$service]}/readyz" 2>/dev/null)" && break
    ready[$service]=""
    sleep 0.5
  done
  [[ -n "${ready[$service]}" ]] \
    || { "${pull_podman[@]}" logs "$container" 2>&1 | tail -20 >&2; fail "$service not ready"; }
done
for service in "${services[@]}"; do
  container="palm-rehearsal-$run_id-$service"
  "${pull_podman[@]}" stop --time $((grace_ms / 1000 + 5)) "$container" >/dev/null
  code="$("${pull_podman[@]}" inspect --format '{{.State.ExitCode}}' "$container")"
  [[ "$code" == 0 ]] || fail "$service exited $code on podman stop"
  printf '%-62s pulled %s, ready %s, stopped with exit 0\n' "$registry/palm/$service:$tag" \
    "${pulled[$service]:7:12}" "${ready[$service]}"
done
took[run]=$((SECONDS - started))

# ---- the repository is as it was ----------------------------------------------
[[ "$(fingerprint)" == "$repo_before" ]] || fail "helm-values/ changed during the rehearsal"
echo
log "the working tree's helm-values/ is unchanged (the bump ran on $scratch)"
log "passed in $((SECONDS - started_all)) s: make images ${took[images]} s, push ${took[push]} s, render ${took[render]} s, pull+run ${took[run]} s"
