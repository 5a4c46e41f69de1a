#!/usr/bin/env bash
# The restore drill, end to end against a real MongoDB replica set and the
# real mongodump/mongorestore (the palm-backup image): seed through the API,
# back up while the services keep writing, check the restore the way the
# scheduled restore check does (a throwaway mongod), wipe the database,
# restore it from the PVC copy, verify, and compare what the API serves
# before and after.
#
# It runs in GitHub Actions (.github/workflows/restore-drill.yml). It cannot
# run on the development machines: mongodump, mongorestore and mongod are
# not installable there (../shared/design/DELIVERY.md); `make check-ops`
# covers the S3 side and the verification against the MongoDB stand-in.
#
# Needs: docker; PALM_AMQP_URL; PALM_MONGO_URL (a replica set reachable from
# containers on the host network); DRILL_IMAGE (the built palm-backup
# image); target/debug/{palmdao,palmvalidator,palmctl} built. S3 is moto's
# server (scripts/tools/moto.sh): the drill needs no AWS account.
# Writes its timings and outcome to $GITHUB_STEP_SUMMARY when set.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
: "${PALM_AMQP_URL:?}" "${PALM_MONGO_URL:?}" "${DRILL_IMAGE:?name the palm-backup image}"
python="$(scripts/tools/pymongo.sh)"
moto="$(scripts/tools/moto.sh)"
AWS="$(scripts/tools/awscli.sh)"
log() { echo "drill: $*" >&2; }
summary() { [[ -n "${GITHUB_STEP_SUMMARY:-}" ]] && echo "$*" >>"$GITHUB_STEP_SUMMARY"; echo "$*"; }

database=palm_drill
work="$(mktemp -d)"
mkdir -p "$work/pvc" "$work/download"
chmod 0777 "$work/pvc" "$work/download" # the image runs as uid 999
s3_port=45123 throwaway_port=37017
"$moto" -H 0.0.0.0 -p "$s3_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
cleanup() {
  scripts/backup/palm-up.sh stop "$work/services" || true
  [[ -n "${writer_pid:-}" ]] && kill "$writer_pid" 2>/dev/null
  kill "$moto_pid" 2>/dev/null || true
  docker rm -f palm-drill-throwaway >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$s3_port") 2>/dev/null && break; sleep 0.1; done
export AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port" AWS_DEFAULT_REGION=eu-west-1
export AWS_ACCESS_KEY_ID=stand-in AWS_SECRET_ACCESS_KEY=stand-in # moto's, not AWS's
"$AWS" s3api create-bucket --bucket palm-drill --create-bucket-configuration LocationConstraint=eu-west-1 >/dev/null

in_image() { # in_image SCRIPT ARGS...: runs a script of the image as the CronJobs do
  docker run --rm --network host --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
    -v "$work/pvc:/backups" -v "$work/download:/scratch" \
    -e MONGO_URI="$PALM_MONGO_URL" -e PALM_DB="$database" -e BACKUP_DIR=/backups -e BACKUP_KEEP=3 \
    -e S3_BUCKET=palm-drill -e S3_PREFIX=palm -e S3_SSE=AES256 \
    -e AWS_ENDPOINT_URL -e AWS_DEFAULT_REGION -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
    "$DRILL_IMAGE" "/opt/palm/scripts/backup/$1" "${@:2}"
}
api_state() { # what the API serves: every seeded proposal's results
  local id
  for id in $(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["proposals"]))' "$work/seed.json"); do
    target/debug/palmctl get "/v1/proposals/$id/results"
  done
}

# 1. seed through the API
eval "$(scripts/backup/palm-up.sh start "$work/services" "$database")"
PALMCTL="$root/target/debug/palmctl" SEED_TAG=drill scripts/backup/seed.sh >"$work/seed.json"
log "seeded: $(cat "$work/seed.json")"
api_state >"$work/before.json"

# 2. back up while sign-ins keep writing (nonces, PalmIDs, identities): the
#    manifest's counts must still match what the archive restores
( i=0; while :; do PALMCTL_SEED="writer-$i" target/debug/palmctl login >/dev/null 2>&1 || true; i=$((i + 1)); done ) &
writer_pid=$!
started=$SECONDS
key="$(in_image backup.sh)"
backup_secs=$((SECONDS - started))
kill "$writer_pid"; wait "$writer_pid" 2>/dev/null || true; writer_pid=""
log "backed up to $key in $backup_secs s"
scripts/backup/palm-up.sh stop "$work/services"

# 3. the scheduled restore check's path: newest S3 dump into a throwaway mongod
docker run -d --name palm-drill-throwaway --network host --tmpfs /data/db:uid=999 --user 999:999 \
  --entrypoint mongod "$DRILL_IMAGE" --bind_ip=127.0.0.1 --port="$throwaway_port" --dbpath=/data/db \
  --nounixsocket --setParameter ttlMonitorEnabled=false >/dev/null
for _ in $(seq 1 60); do (exec 3<>"/dev/tcp/127.0.0.1/$throwaway_port") 2>/dev/null && break; sleep 1; done
started=$SECONDS
in_image restore.sh --from s3 --backup newest --work /scratch --keep-ttl-monitor --yes \
  --target-uri "mongodb://127.0.0.1:$throwaway_port/" --db "$database"
check_secs=$((SECONDS - started))
docker rm -f palm-drill-throwaway >/dev/null

# 4. wipe the database, then restore it from the PVC copy and verify
"$python" -c 'import sys, pymongo; pymongo.MongoClient(sys.argv[1]).drop_database(sys.argv[2])' "$PALM_MONGO_URL" "$database"
left="$("$python" -c 'import sys, pymongo; print(len(pymongo.MongoClient(sys.argv[1])[sys.argv[2]].list_collection_names()))' "$PALM_MONGO_URL" "$database")"
[[ "$left" == 0 ]] || { log "the wipe left $left collections"; exit 1; }
started=$SECONDS
in_image restore.sh --from pvc --backup newest --target-uri "$PALM_MONGO_URL" --db "$database" --yes
restore_secs=$((SECONDS - started))

# 5. the API serves what it served before the wipe
eval "$(scripts/backup/palm-up.sh start "$work/services" "$database")"
api_state >"$work/after.json"
if ! diff -u "$work/before.json" "$work/after.json"; then
  log "the restored API answers differently"
  exit 1
fi
summary "### Restore drill passed"
summary ""
summary "| step | seconds |"
summary "|---|---|"
summary "| backup (mongodump --oplog, manifest, S3 upload, record) | $backup_secs |"
summary "| restore check (S3 → throwaway mongod, verify) | $check_secs |"
summary "| wipe → restore from the PVC copy → verify | $restore_secs |"
summary ""
summary "Backup \`$key\`; the API's tallies after the restore equal those before the wipe."
