#!/usr/bin/env bash
# `make images`: builds the four service images locally with buildah and
# tags them palm/<service>:<version>-<YYYY-MM-DD> (version from the workspace
# Cargo.toml, date UTC: the release tag format).
#
#   1. release binaries: cargo build --release --locked --bins for the four
#      services, PALM_REVISION set from git (timed);
#   2. a build context holding just those and the healthcheck probe
#      (docker/healthcheck.c, static);
#   3. the runtime base: the pinned distroless image when the registry
#      answers, otherwise one assembled from Debian's packages
#      (scripts/images/runtime-base.sh);
#   4. docker/Dockerfile's `prebuilt` target per service.
#
# Prints each image's uncompressed size on stderr and the image names on
# stdout (one per line), so scripts/images/check.sh can test exactly these.
# PALM_IMAGE_SERVICES narrows the list; PALM_RUNTIME_BASE forces a base.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
log() { echo "images: $*" >&2; }
eval "$(scripts/tools/podman.sh)"

read -r -a services <<<"${PALM_IMAGE_SERVICES:-palmdao palmvalidator palmvalidator-discord palmplatformmetrics}"
version="$(awk -F'"' '/^\[workspace.package\]/{p=1} p && /^version *=/{print $2; exit}' Cargo.toml)"
[[ -n "$version" ]] || { log "no [workspace.package] version in Cargo.toml"; exit 1; }
tag="$version-$(date -u +%F)"
revision="$(git rev-parse HEAD)"

# 1. Release binaries (the expensive part; cargo skips what is up to date).
packages=()
for service in "${services[@]}"; do packages+=(-p "$service"); done
log "cargo build --release --locked --bins ${packages[*]} (PALM_REVISION=$revision)"
started=$SECONDS
PALM_REVISION="$revision" cargo build --release --locked --bins "${packages[@]}" >&2
log "release build: $((SECONDS - started)) s"

# 2. The build context of the `prebuilt` target: just the binaries, where the
#    Dockerfile expects them (target/release/), wherever cargo's target
#    directory is (CARGO_TARGET_DIR is honoured). Small, so buildah has
#    nothing else to walk.
# shellcheck source=scripts/lib/palm-services.sh
source scripts/lib/palm-services.sh
target_dir="$palm_target_dir"
context="$root/.tools/images/context"
rm -rf "$context"
mkdir -p "$context/target/release"
# Debug info stripped (the release profile's line tables would more than
# quadruple the image); the symbol table stays, so backtraces name functions.
for service in "${services[@]}"; do
  strip --strip-debug -o "$context/target/release/$service" "$target_dir/release/$service"
done
# The probe compose's healthchecks run (no shell in the image).
gcc -O2 -s -static -Wall -Wextra -Werror -o "$context/target/release/palm-healthcheck" docker/healthcheck.c

# 3. The runtime base.
base="${PALM_RUNTIME_BASE:-}"
if [[ -z "$base" ]]; then
  registry_base="$(sed -n 's/^ARG RUNTIME_BASE=//p' docker/Dockerfile)"
  if timeout 30 podman pull --quiet "$registry_base" >/dev/null 2>&1; then
    base="$registry_base"
  else
    log "cannot pull ${registry_base%@*}; assembling the runtime base from Debian's packages"
    base="$(scripts/images/runtime-base.sh)"
  fi
fi
log "runtime base: $base"

# 4. One image per service.
started=$SECONDS
for service in "${services[@]}"; do
  image="palm/$service:$tag"
  log "building $image"
  buildah bud --quiet --layers=false \
    --file docker/Dockerfile --target prebuilt \
    --build-arg "SERVICE=$service" \
    --build-arg "RUNTIME_BASE=$base" \
    --build-arg "VERSION=$version" \
    --build-arg "PALM_REVISION=$revision" \
    --tag "$image" "$context" >/dev/null
done
log "images built in $((SECONDS - started)) s"

printf '%-40s %10s\n' image "size (MB)" >&2
for service in "${services[@]}"; do
  image="palm/$service:$tag"
  size="$(podman image inspect --format '{{.Size}}' "$image")"
  printf '%-40s %10.1f\n' "$image" "$(echo "$size" | awk '{print $1/1e6}')" >&2
  echo "$image"
done
