#!/usr/bin/env bash
# Assembles the images' runtime base from Debian's packages when the registry
# base (gcr.io/distroless/cc-debian12, pinned in docker/Dockerfile) cannot be
# pulled, as on these machines: libc6, libgcc-s1, ca-certificates, tzdata and
# netbase unpacked with dpkg-deb (no maintainer scripts run), the CA bundle
# concatenated as update-ca-certificates would, an /etc/passwd with
# nonroot:x:65532, and nothing that runs a command: no shell, no package
# manager, libc's helper programs removed. Committed with buildah as
#   localhost/palm/runtime-base:debian12
# and rebuilt only when the package versions or this script change (a label
# records both). Prints the image name on stdout; progress on stderr.
# Needs CONTAINERS_CONF / CONTAINERS_STORAGE_CONF from scripts/tools/podman.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
log() { echo "runtime-base: $*" >&2; }

image="localhost/palm/runtime-base:debian12"
packages=(libc6 libgcc-s1 ca-certificates tzdata netbase)
work="$root/.tools/runtime-base"
mkdir -p "$work/debs"

# What the base is made of: each package's candidate version, and this script.
versions="$(apt-cache policy "${packages[@]}" | awk '/^[a-z]/{name=$1} /Candidate:/{print name $2}' | tr '\n' ' ')"
if [[ "$versions" != *libc6:* ]] || [[ "$versions" == *"(none)"* ]]; then
  log "apt has no candidate for one of ${packages[*]}; running apt-get update"
  apt-get update -qq >&2
  versions="$(apt-cache policy "${packages[@]}" | awk '/^[a-z]/{name=$1} /Candidate:/{print name $2}' | tr '\n' ' ')"
fi
recipe="$(printf '%s %s' "$versions" "$(sha256sum "${BASH_SOURCE[0]}" | cut -c1-16)" | sha256sum | cut -c1-16)"
if [[ "$(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "dev.palm.base.recipe"}}' "$image" 2>/dev/null)" == "$recipe" ]]; then
  echo "$image"
  exit 0
fi

log "assembling $image from ${packages[*]}"
rm -f "$work/debs"/*.deb
(cd "$work/debs" && apt-get download -q -o APT::Sandbox::User=root "${packages[@]}" >&2)
rootfs="$work/rootfs"
rm -rf "$rootfs"
mkdir -p "$rootfs"
for deb in "$work/debs"/*.deb; do
  dpkg-deb -x "$deb" "$rootfs"
done

# Nothing that runs a command, nor what a Rust binary never reads.
(
  cd "$rootfs"
  rm -rf usr/bin usr/sbin sbin bin usr/libexec usr/lib/x86_64-linux-gnu/gconv \
    usr/share/doc usr/share/man usr/share/info usr/share/lintian usr/share/locale \
    usr/share/zoneinfo/right usr/share/zoneinfo/posix etc/ca-certificates.conf etc/ld.so.conf.d
)
# The CA bundle update-ca-certificates would write (rustls-native-certs and
# OpenSSL-style clients read it).
mkdir -p "$rootfs/etc/ssl/certs"
cat "$rootfs"/usr/share/ca-certificates/mozilla/*.crt >"$rootfs/etc/ssl/certs/ca-certificates.crt"
rm -rf "$rootfs/usr/share/ca-certificates"
ln -sf /usr/share/zoneinfo/Etc/UTC "$rootfs/etc/localtime"
cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
nogroup:x:65534:
nonroot:x:65532:
GROUP
echo "hosts: files dns" >"$rootfs/etc/nsswitch.conf"
mkdir -p "$rootfs/home/nonroot" "$rootfs/tmp" "$rootfs/root"
chown 65532:65532 "$rootfs/home/nonroot"
chmod 700 "$rootfs/root"
chmod 1777 "$rootfs/tmp"

container="$(buildah from scratch)"
trap 'buildah rm "$container" >/dev/null 2>&1 || true' EXIT
buildah copy --quiet "$container" "$rootfs" / >/dev/null
buildah config \
  --user 65532:65532 \
  --workingdir /home/nonroot \
  --env PATH=/usr/local/bin:/usr/bin:/bin \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --label "dev.palm.base.recipe=$recipe" \
  --label "dev.palm.base.packages=$versions" \
  --label "org.opencontainers.image.description=Palm runtime base: glibc, libgcc, CA certificates, tzdata, netbase from Debian 12; no shell" \
  "$container"
buildah commit --quiet --rm "$container" "$image" >/dev/null
trap - EXIT
log "$image: $(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1/1e6}')"
echo "$image"
