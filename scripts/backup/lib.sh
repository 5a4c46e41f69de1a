#!/usr/bin/env bash
# Shared by backup.sh and restore.sh: naming of dumps, choosing the newest,
# pruning the PVC copies, and the S3 calls (AWS CLI; credentials from the
# pod's IRSA web identity, never static keys; AWS_ENDPOINT_URL points the
# CLI at a stand-in in tests). Source it; it defines functions only.
#
# A dump is `palm-YYYYMMDDTHHMMSSZ.archive.gz` with its manifest (the backup
# record, counts included) beside it as `<name>.json`; in S3 both live under
# `<prefix>/YYYY/MM/DD/`. Names sort by time, so "newest" is the last in
# lexical order, on the PVC and in the bucket alike.

BACKUP_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
AWS="${AWS:-aws}"
PYTHON="${PYTHON:-python3}"
PALMBACKUP="${PALMBACKUP:-$BACKUP_LIB_DIR/palmbackup.py}"

log() { echo "$(date -u +%FT%TZ) ${0##*/}: $*" >&2; }
die() { log "$*"; exit 1; }

# dump_name STAMP → palm-STAMP.archive.gz (STAMP is YYYYMMDDTHHMMSSZ)
dump_name() { echo "palm-$1.archive.gz"; }

# dump_key PREFIX NAME → PREFIX/YYYY/MM/DD/NAME, dated by the name's stamp
dump_key() {
  local prefix="${1%/}" name="$2" stamp
  stamp="${name#palm-}"
  [[ "$stamp" =~ ^([0-9]{4})([0-9]{2})([0-9]{2})T[0-9]{6}Z\.archive\.gz$ ]] || die "not a dump name: $name"
  echo "$prefix/${BASH_REMATCH[1]}/${BASH_REMATCH[2]}/${BASH_REMATCH[3]}/$name"
}

# local_dumps DIR → the complete dumps in DIR (archive and manifest both
# present), oldest first, one name a line
local_dumps() {
  local dir="$1" path name
  for path in "$dir"/palm-*.archive.gz; do
    [[ -f "$path" && -f "$path.json" ]] || continue
    name="${path##*/}"
    [[ "$name" =~ ^palm-[0-9]{8}T[0-9]{6}Z\.archive\.gz$ ]] && echo "$name"
  done | LC_ALL=C sort
}

# newest_local DIR → the newest complete dump's name (fails when none)
newest_local() {
  local newest
  newest="$(local_dumps "$1" | tail -n 1)"
  [[ -n "$newest" ]] || die "no complete dump in $1"
  echo "$newest"
}

# prune_local DIR KEEP: deletes all but the KEEP newest complete dumps and
# any partial file a failed run left behind (never the newest KEEP)
prune_local() {
  local dir="$1" keep="$2" name
  ((keep >= 1)) || die "keep must be at least 1, got $keep"
  local -a all
  mapfile -t all < <(local_dumps "$dir")
  local excess=$((${#all[@]} - keep))
  for ((i = 0; i < excess; i++)); do
    name="${all[$i]}"
    rm -f -- "$dir/$name" "$dir/$name.json"
    log "pruned $name from $dir"
  done
  find "$dir" -maxdepth 1 -name '.palm-*.partial*' -mmin +1 -print -delete | while read -r stale; do
    log "removed the partial file $stale"
  done
}

# s3_dumps BUCKET PREFIX → every dump key under PREFIX, oldest first
s3_dumps() {
  local bucket="$1" prefix="${2%/}"
  "$AWS" s3api list-objects-v2 --bucket "$bucket" --prefix "$prefix/" \
    --query 'Contents[].Key' --output text |
    tr '\t' '\n' | grep -E '/palm-[0-9]{8}T[0-9]{6}Z\.archive\.gz$' | LC_ALL=C sort || true
}

# newest_s3 BUCKET PREFIX → the newest dump key that has its manifest
newest_s3() {
  local bucket="$1" prefix="$2" keys key
  keys="$("$AWS" s3api list-objects-v2 --bucket "$bucket" --prefix "${prefix%/}/" \
    --query 'Contents[].Key' --output text | tr '\t' '\n')"
  key="$(grep -E '/palm-[0-9]{8}T[0-9]{6}Z\.archive\.gz$' <<<"$keys" | LC_ALL=C sort |
    while read -r k; do grep -qxF "$k.json" <<<"$keys" && echo "$k"; done | tail -n 1)"
  [[ -n "$key" ]] || die "no dump with a manifest under s3://$bucket/${prefix%/}/"
  echo "$key"
}

# s3_put FILE BUCKET KEY: uploads with server-side encryption (S3_SSE:
# aws:kms, the default, with S3_KMS_KEY_ID when set; or AES256), then reads
# the object back (head) to prove it landed encrypted and whole
s3_put() {
  local file="$1" bucket="$2" key="$3"
  local sse="${S3_SSE:-aws:kms}"
  local -a args=(--sse "$sse" --storage-class "${S3_STORAGE_CLASS:-STANDARD}" --only-show-errors)
  case "$sse" in
    aws:kms) [[ -n "${S3_KMS_KEY_ID:-}" ]] && args+=(--sse-kms-key-id "$S3_KMS_KEY_ID") ;;
    AES256) ;;
    *) die "S3_SSE must be aws:kms or AES256, got '$sse'" ;;
  esac
  "$AWS" s3 cp "${args[@]}" -- "$file" "s3://$bucket/$key"
  local head size encryption
  head="$("$AWS" s3api head-object --bucket "$bucket" --key "$key" \
    --query '[ContentLength, ServerSideEncryption]' --output text)"
  read -r size encryption <<<"$head"
  [[ "$size" == "$(stat -c %s "$file")" ]] || die "s3://$bucket/$key holds $size bytes, $file $(stat -c %s "$file")"
  [[ "$encryption" == "$sse" ]] || die "s3://$bucket/$key is encrypted with '$encryption', not $sse"
  log "uploaded s3://$bucket/$key ($size bytes, $encryption)"
}

# s3_get BUCKET KEY FILE
s3_get() {
  "$AWS" s3 cp --only-show-errors "s3://$1/$2" "$3"
}
