#!/usr/bin/env bash
# Vendors Swagger UI (npm package swagger-ui-dist, pinned below) into
# services/palmdao/assets/swagger-ui/, the copy palmdao embeds and serves at
# /docs (ADR 0026). Run it only to change the pinned version: the vendored
# files are committed, so builds and the running service need no network.
#
#   scripts/vendor-swagger-ui.sh           fetch, verify, write the files
#   scripts/vendor-swagger-ui.sh --check   verify the committed copy against
#                                          its VERSION file, offline
#
# The tarball comes from the npm registry through `npm pack` and must match
# the pinned npm integrity (sha512 of the tarball, as the registry's
# `dist.integrity` gives it) before anything is extracted. VERSION then names
# the version, that integrity and the sha256 of every vendored file; each
# .gz file is `gzip -9n` of its neighbour (no name, no time: reproducible),
# which is what the binary embeds.
set -euo pipefail

SWAGGER_UI_VERSION="5.35.0"
SWAGGER_UI_INTEGRITY="sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ=="

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/services/palmdao/assets/swagger-ui"
# Served files (embedded gzip-compressed), served as they are (already
# compressed), and the licence texts kept beside them.
served=(swagger-ui-bundle.js swagger-ui.css)
served_raw=(favicon-32x32.png)
licences=(LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt)
log() { echo "vendor-swagger-ui: $*" >&2; }

# Checks the committed copy: VERSION's hashes, and each .gz decompressing to
# its neighbour byte for byte.
check() {
  [[ -f "$dest/VERSION" ]] || { log "FAIL $dest/VERSION missing"; return 1; }
  grep -qx "version: $SWAGGER_UI_VERSION" "$dest/VERSION" \
    || { log "FAIL VERSION does not name $SWAGGER_UI_VERSION (the pin in this script)"; return 1; }
  grep -qx "npm-integrity: $SWAGGER_UI_INTEGRITY" "$dest/VERSION" \
    || { log "FAIL VERSION does not carry the pinned npm integrity"; return 1; }
  (cd "$dest" && sed -n 's/^sha256: //p' VERSION | sha256sum --check --quiet --strict) \
    || { log "FAIL a vendored file differs from its sha256 in VERSION"; return 1; }
  local file
  for file in "${served[@]}"; do
    gzip -dc "$dest/$file.gz" | cmp -s - "$dest/$file" \
      || { log "FAIL $file.gz does not decompress to $file"; return 1; }
  done
  log "ok: swagger-ui-dist $SWAGGER_UI_VERSION, every file matches VERSION"
}

if [[ "${1:-}" == --check ]]; then
  check
  exit
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
log "npm pack swagger-ui-dist@$SWAGGER_UI_VERSION"
(cd "$work" && npm pack --silent "swagger-ui-dist@$SWAGGER_UI_VERSION" >/dev/null)
tarball="$work/swagger-ui-dist-$SWAGGER_UI_VERSION.tgz"
[[ -f "$tarball" ]] || { log "FAIL npm pack gave no $tarball"; exit 1; }
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [[ "$actual" != "$SWAGGER_UI_INTEGRITY" ]]; then
  log "FAIL integrity mismatch: pinned $SWAGGER_UI_INTEGRITY, got $actual"
  exit 1
fi
log "integrity ok ($actual)"

tar -xzf "$tarball" -C "$work"
grep -q "\"version\": \"$SWAGGER_UI_VERSION\"" "$work/package/package.json" \
  || { log "FAIL the tarball's package.json is not version $SWAGGER_UI_VERSION"; exit 1; }
rm -rf "$dest"
mkdir -p "$dest"
for file in "${served[@]}" "${served_raw[@]}" "${licences[@]}"; do
  cp "$work/package/$file" "$dest/$file"
done
for file in "${served[@]}"; do
  gzip -9n -c "$dest/$file" >"$dest/$file.gz"
done
{
  echo "# Written by scripts/vendor-swagger-ui.sh; do not edit (re-run the script)."
  echo "package: swagger-ui-dist"
  echo "version: $SWAGGER_UI_VERSION"
  echo "tarball: https://registry.npmjs.org/swagger-ui-dist/-/swagger-ui-dist-$SWAGGER_UI_VERSION.tgz"
  echo "npm-integrity: $SWAGGER_UI_INTEGRITY"
  echo "licence: Apache-2.0 (LICENSE, NOTICE); bundled third-party notices in swagger-ui-bundle.js.LICENSE.txt"
  for file in "${served[@]}" "${served_raw[@]}" "${licences[@]}"; do
    echo "sha256: $(cd "$dest" && sha256sum "$file")"
  done
  for file in "${served[@]}"; do
    echo "sha256: $(cd "$dest" && sha256sum "$file.gz")"
  done
} >"$dest/VERSION"
check
ls -l "$dest" >&2
