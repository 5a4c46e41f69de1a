#!/usr/bin/env bash
# One MongoDB backup, as the palm-backup CronJob runs it:
#   1. mongodump --archive --gzip --oplog of the whole replica set (the
#      oplog makes it a consistent point in time while writes go on) into
#      the PVC, under a partial name;
#   2. the manifest: the backup record with every collection's count at the
#      dump's point in time (palmbackup.py manifest);
#   3. rename both into place, upload both to S3 under the dated key with
#      server-side encryption, and check the uploaded objects;
#   4. the record in the `backups` collection (palmbackup.py record), which
#      palmplatformmetrics exports as
#      palm_platform_backup_last_success_timestamp_seconds;
#   5. prune the PVC to the newest BACKUP_KEEP dumps.
# Any failure exits non-zero before the record is written, so the stale-backup
# alert fires when no run succeeds.
#
# Environment: MONGO_URI (required, a secret: the backup user, role
# `backup`), PALM_DB (palm), BACKUP_DIR (/backups, the PVC), BACKUP_KEEP (7),
# S3_BUCKET (required), S3_PREFIX (palm), S3_SSE (aws:kms | AES256),
# S3_KMS_KEY_ID (optional), S3_STORAGE_CLASS (STANDARD); MONGODUMP, AWS,
# PYTHON name the programs; BACKUP_TIME (ISO 8601 UTC) fixes the dump's time
# for tests.
set -euo pipefail
# shellcheck source=scripts/backup/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${MONGO_URI:?MONGO_URI must name the replica set (the backup user)}"
: "${S3_BUCKET:?S3_BUCKET must name the backup bucket}"
export MONGO_URI
db="${PALM_DB:-palm}"
dir="${BACKUP_DIR:-/backups}"
keep="${BACKUP_KEEP:-7}"
prefix="${S3_PREFIX:-palm}"
mongodump="${MONGODUMP:-mongodump}"
[[ -d "$dir" && -w "$dir" ]] || die "$dir is not a writable directory (the PVC)"

when="${BACKUP_TIME:-$(date -u +%FT%TZ)}"
started_at="$(date -u -d "$when" +%FT%TZ)"
stamp="$(date -u -d "$when" +%Y%m%dT%H%M%SZ)"
name="$(dump_name "$stamp")"
key="$(dump_key "$prefix" "$name")"
partial="$dir/.palm-$stamp.partial"
[[ -e "$dir/$name" ]] && die "$dir/$name exists already"

# The URI (password included) goes to mongodump through a private config
# file, not its command line.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch" "$partial" "$partial.json"' EXIT
(umask 077 && printf "uri: '%s'\n" "${MONGO_URI//\'/\'\'}" >"$scratch/mongodump.yaml")

log "dumping to $partial"
"$mongodump" --config="$scratch/mongodump.yaml" --archive="$partial" --gzip --oplog --quiet
size="$(stat -c %s "$partial")"
log "dumped $size bytes"

"$PYTHON" "$PALMBACKUP" manifest --db "$db" --archive "$partial" --key "$key" \
  --started-at "$started_at" --out "$partial.json" >&2
mv -- "$partial" "$dir/$name"
mv -- "$partial.json" "$dir/$name.json"

s3_put "$dir/$name" "$S3_BUCKET" "$key"
s3_put "$dir/$name.json" "$S3_BUCKET" "$key.json"

"$PYTHON" "$PALMBACKUP" record --db "$db" --manifest "$dir/$name.json" >&2
prune_local "$dir" "$keep"
log "backup $key done"
echo "$key"
