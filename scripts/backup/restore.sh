#!/usr/bin/env bash
# Restores a Palm backup into a target MongoDB replica set and verifies it.
#
#   restore.sh [--from s3|pvc] [--backup newest|NAME|KEY] [--list]
#              [--target-uri URI] [--db palm] [--work DIR] [--fetch-only]
#              [--keep-ttl-monitor] --yes
#
#   --from       where the dump comes from: the bucket (S3_BUCKET, S3_PREFIX;
#                the default) or the PVC copies (BACKUP_DIR, default /backups)
#   --backup     `newest` (default), a dump name (palm-…archive.gz) or an S3 key
#   --list       print the available dumps, oldest first, and stop
#   --target-uri the replica set to restore into (default $TARGET_MONGO_URI);
#                its collections that the dump holds are DROPPED and replaced
#   --fetch-only download (from S3) and print the archive's path; no restore
#   --yes        required for a restore: this replaces data
#
# Steps: pick the dump, fetch it and its manifest, pause TTL deletions on the
# target (restored nonces and processed-message records past their TTL
# would otherwise vanish before the counts are checked), mongorestore --drop
# --oplogReplay (the dump's consistent point in time), then palmbackup.py
# verify: collection counts against the manifest, every closed proposal's
# tally recounted from its frozen ballots, each checked against its vote.
# TTL deletions resume on exit. Exit 0 only when the restore is verified.
# See docs/disaster-recovery.md.
set -euo pipefail
# shellcheck source=scripts/backup/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

from=s3 backup=newest list=false fetch_only=false yes=false keep_ttl=false
target="${TARGET_MONGO_URI:-}" db="${PALM_DB:-palm}" work=""
while (($#)); do
  case "$1" in
    --from) from="$2"; shift 2 ;;
    --backup) backup="$2"; shift 2 ;;
    --list) list=true; shift ;;
    --target-uri) target="$2"; shift 2 ;;
    --db) db="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --fetch-only) fetch_only=true; shift ;;
    --keep-ttl-monitor) keep_ttl=true; shift ;;
    --yes) yes=true; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (--help)" ;;
  esac
done
dir="${BACKUP_DIR:-/backups}"
prefix="${S3_PREFIX:-palm}"

case "$from" in
  s3)
    : "${S3_BUCKET:?S3_BUCKET must name the backup bucket}"
    if $list; then s3_dumps "$S3_BUCKET" "$prefix"; exit 0; fi
    case "$backup" in
      newest) key="$(newest_s3 "$S3_BUCKET" "$prefix")" ;;
      */*) key="$backup" ;;
      *) key="$(dump_key "$prefix" "$backup")" ;;
    esac
    work="${work:-$(mktemp -d)}"
    mkdir -p "$work"
    archive="$work/${key##*/}"
    log "fetching s3://$S3_BUCKET/$key"
    s3_get "$S3_BUCKET" "$key" "$archive"
    s3_get "$S3_BUCKET" "$key.json" "$archive.json"
    ;;
  pvc)
    if $list; then local_dumps "$dir"; exit 0; fi
    case "$backup" in
      newest) name="$(newest_local "$dir")" ;;
      *) name="${backup##*/}" ;;
    esac
    archive="$dir/$name"
    [[ -f "$archive" && -f "$archive.json" ]] || die "$archive or its manifest is missing"
    ;;
  *) die "--from must be s3 or pvc" ;;
esac
log "chose ${archive##*/}"
if $fetch_only; then echo "$archive"; exit 0; fi

[[ -n "$target" ]] || die "no target: pass --target-uri or set TARGET_MONGO_URI"
$yes || die "a restore drops and replaces the target's collections: pass --yes"
export MONGO_URI="$target"
scratch="$(mktemp -d)"
resume_ttl() {
  $keep_ttl || "$PYTHON" "$PALMBACKUP" ttl-monitor on >&2 || log "could not resume TTL deletions: run 'palmbackup.py ttl-monitor on'"
  rm -rf "$scratch"
}
trap resume_ttl EXIT
$keep_ttl || "$PYTHON" "$PALMBACKUP" ttl-monitor off >&2
(umask 077 && printf "uri: '%s'\n" "${target//\'/\'\'}" >"$scratch/mongorestore.yaml")

log "restoring ${archive##*/} (point in time $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["oplog_end"])' "$archive.json"))"
started=$SECONDS
"${MONGORESTORE:-mongorestore}" --config="$scratch/mongorestore.yaml" --archive="$archive" --gzip \
  --oplogReplay --drop --stopOnError --quiet
log "restored in $((SECONDS - started)) s; verifying"
"$PYTHON" "$PALMBACKUP" verify --db "$db" --manifest "$archive.json"
log "restore of ${archive##*/} verified"
