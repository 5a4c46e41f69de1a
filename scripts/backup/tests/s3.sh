#!/usr/bin/env bash
# `pass` only prints, so `test && pass … || fail …` is an if-then-else here.
# shellcheck disable=SC2015
# The S3 side of the backups, against a local S3 stand-in (moto's server)
# with the real AWS CLI, and the MongoDB test database (PALM_MONGO_URL or
# the stand-in) for counts, records and the restore's verification.
# mongodump/mongorestore are stand-ins (fake_mongo_tools.py) that check the
# flags they get: the real tools cannot be installed here and run in the
# restore drill (.github/workflows/restore-drill.yml).
#
# Proves: the bucket settings in ops/s3 apply and read back; each backup
# uploads the archive and its manifest under the dated key, encrypted
# (SSE-KMS with a key, SSE-KMS default, AES256), and records it in `backups`;
# the PVC keeps only the newest BACKUP_KEEP dumps and loses partial files; a
# failed upload or dump writes no record; restore.sh chooses the newest dump
# with a manifest (ignoring a newer one whose upload is incomplete), or a
# named one, from S3 or the PVC, restores it with --oplogReplay --drop and
# verifies it; it refuses to restore without --yes.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"
eval "$(scripts/test-deps.sh)"
PYTHON="$(scripts/tools/pymongo.sh)"
AWS="$(scripts/tools/awscli.sh)"
moto="$(scripts/tools/moto.sh)"
export PYTHON AWS
# shellcheck source=scripts/backup/lib.sh
source scripts/backup/lib.sh

work="$(mktemp -d)"
database="palm_backup_s3_$$"
failures=0
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; failures=$((failures + 1)); }
expect() { # expect NAME COMMAND...: the command succeeds
  local name="$1"; shift
  if "$@" >"$work/out" 2>"$work/err"; then pass "$name"; else fail "$name"; cat "$work/err" >&2; fi
}
mongo() { "$PYTHON" -c "import sys, json, pymongo; db = pymongo.MongoClient(sys.argv[1])[sys.argv[2]]; print(json.dumps($1, default=str))" "$PALM_MONGO_URL" "$database"; }

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$moto" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
cleanup() {
  kill "$moto_pid" 2>/dev/null || true
  "$PYTHON" -c 'import sys, pymongo; pymongo.MongoClient(sys.argv[1]).drop_database(sys.argv[2])' "$PALM_MONGO_URL" "$database" || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_DEFAULT_REGION=eu-west-1
export AWS_ACCESS_KEY_ID=stand-in AWS_SECRET_ACCESS_KEY=stand-in # moto's, not AWS's
export S3_BUCKET=palm-backups-test S3_PREFIX=palm
export MONGO_URI="$PALM_MONGO_URL" PALM_DB="$database"
export BACKUP_DIR="$work/pvc" BACKUP_KEEP=2
mkdir -p "$BACKUP_DIR"
printf '#!/usr/bin/env bash\nexec "%s" "%s" mongodump "$@"\n' "$PYTHON" "$root/scripts/backup/tests/fake_mongo_tools.py" >"$work/mongodump"
printf '#!/usr/bin/env bash\nexec "%s" "%s" mongorestore "$@"\n' "$PYTHON" "$root/scripts/backup/tests/fake_mongo_tools.py" >"$work/mongorestore"
chmod +x "$work/mongodump" "$work/mongorestore"
export MONGODUMP="$work/mongodump" MONGORESTORE="$work/mongorestore" FAKE_RESTORE_LOG="$work/restored"

"$AWS" s3api create-bucket --bucket "$S3_BUCKET" \
  --create-bucket-configuration LocationConstraint=eu-west-1 >/dev/null
kms_key="$("$AWS" kms create-key --query KeyMetadata.Arn --output text)"
"$PYTHON" -c 'import sys, pymongo; db = pymongo.MongoClient(sys.argv[1])[sys.argv[2]]; db.palm_ids.insert_many([{"_id": str(i)} for i in range(3)]); db.communities.insert_one({"_id": "c"})' \
  "$PALM_MONGO_URL" "$database"

# ---- bucket settings
# On a bucket of its own: its TLS-only policy refuses the stand-in's plain
# HTTP (as S3 would), so the backups below go to a second bucket.
"$AWS" s3api create-bucket --bucket palm-backups-settings \
  --create-bucket-configuration LocationConstraint=eu-west-1 >/dev/null
expect "s3-bucket.sh applies ops/s3 (lifecycle, SSE-KMS, versioning, public access block, TLS policy) and reads it back" \
  env S3_BUCKET=palm-backups-settings S3_KMS_KEY_ID="$kms_key" scripts/backup/s3-bucket.sh
if "$AWS" s3 cp --only-show-errors /etc/hostname s3://palm-backups-settings/palm/x 2>/dev/null; then
  fail "the TLS-only policy let a plain-HTTP upload through"
else
  pass "the bucket policy refuses plain HTTP"
fi
transition="$("$AWS" s3api get-bucket-lifecycle-configuration --bucket palm-backups-settings \
  --query 'Rules[0].[Filter.Prefix, Transitions[0].Days, Transitions[0].StorageClass, Expiration.Days]' --output text)"
[[ "$transition" == $'palm/\t30\tGLACIER_IR\t400' ]] && pass "lifecycle: palm/ to GLACIER_IR at 30 days, expiry at 400" || fail "lifecycle read back as '$transition'"

# ---- four backups on four days: SSE-KMS with a key, the default KMS key, AES256
days=(2026-01-01T02:00:00Z 2026-01-02T02:00:00Z 2026-01-03T02:00:00Z 2026-01-04T02:00:00Z)
sses=("aws:kms" "aws:kms" "AES256" "aws:kms")
kms_ids=("$kms_key" "" "" "$kms_key")
touch -d '-10 minutes' "$BACKUP_DIR/.palm-20251231T020000Z.partial" # a crashed run's leftover
for i in 0 1 2 3; do
  if key="$(BACKUP_TIME="${days[$i]}" S3_SSE="${sses[$i]}" S3_KMS_KEY_ID="${kms_ids[$i]}" scripts/backup/backup.sh 2>"$work/err")"; then
    pass "backup.sh on ${days[$i]} (${sses[$i]}${kms_ids[$i]:+ with a key}) → $key"
  else
    fail "backup.sh on ${days[$i]}"; cat "$work/err" >&2
  fi
done
want_key="palm/2026/01/04/palm-20260104T020000Z.archive.gz"
[[ "${key:-}" == "$want_key" ]] && pass "the S3 key is dated: $want_key" || fail "key ${key:-none}, wanted $want_key"

mapfile -t listed < <(scripts/backup/restore.sh --list)
((${#listed[@]} == 4)) && pass "the bucket holds the four dumps (restore.sh --list)" || fail "listed ${listed[*]}"
for i in 0 2 3; do
  k="$(dump_key palm "$(dump_name "$(date -u -d "${days[$i]}" +%Y%m%dT%H%M%SZ)")")"
  got="$("$AWS" s3api head-object --bucket "$S3_BUCKET" --key "$k" --query '[ServerSideEncryption, SSEKMSKeyId]' --output text)"
  case "${sses[$i]}:${kms_ids[$i]}" in
    "aws:kms:$kms_key") [[ "$got" == "aws:kms"*"${kms_key##*/}"* ]] && pass "$k is SSE-KMS with the given key" || fail "$k: $got" ;;
    AES256:) [[ "$got" == AES256* ]] && pass "$k is SSE-S3 (AES256)" || fail "$k: $got" ;;
  esac
  "$AWS" s3api head-object --bucket "$S3_BUCKET" --key "$k.json" >/dev/null && pass "$k.json (the manifest) is beside it" || fail "$k.json missing"
done

mapfile -t pvc < <(cd "$BACKUP_DIR" && ls -A)
want_pvc="palm-20260103T020000Z.archive.gz palm-20260103T020000Z.archive.gz.json palm-20260104T020000Z.archive.gz palm-20260104T020000Z.archive.gz.json"
[[ "${pvc[*]}" == "$want_pvc" ]] && pass "the PVC keeps the newest 2 dumps, partial leftovers pruned" || fail "PVC holds: ${pvc[*]}"

records="$(mongo 'sorted(d["_id"] for d in db.backups.find({"status": "ok"}))')"
[[ "$records" == *"palm/2026/01/01/"*"palm/2026/01/04/palm-20260104T020000Z.archive.gz\"]" ]] && [[ "$(mongo 'db.backups.count_documents({})')" == 4 ]] \
  && pass "each backup recorded in backups under its S3 key" || fail "records: $records"
record="$(mongo "db.backups.find_one({'_id': '$want_key'})")"
python3 - "$record" "$BACKUP_DIR/palm-20260104T020000Z.archive.gz" <<'PY' && pass "the record: status ok, finished_at, size_bytes = the archive's, counts per collection" || fail "record $record"
import json, os, sys
r = json.loads(sys.argv[1])
assert r["status"] == "ok" and r["s3_key"] == r["_id"], r
assert r["size_bytes"] == os.path.getsize(sys.argv[2]), r
assert r["counts"]["palm_ids"] == 3 and r["counts"]["communities"] == 1, r
assert r["finished_at"] >= r["started_at"], r
PY

# ---- failures write no record
before="$(mongo 'db.backups.count_documents({})')"
if BACKUP_TIME=2026-01-05T02:00:00Z S3_BUCKET=no-such-bucket scripts/backup/backup.sh >/dev/null 2>"$work/err"; then
  fail "backup.sh succeeded with an unreachable bucket"
else
  [[ "$(mongo 'db.backups.count_documents({})')" == "$before" ]] && pass "a failed upload fails the run and records nothing" || fail "a failed upload wrote a record"
fi
rm -f "$BACKUP_DIR"/palm-20260105T*
if BACKUP_TIME=2026-01-06T02:00:00Z FAKE_DUMP_FAIL=1 scripts/backup/backup.sh >/dev/null 2>&1; then
  fail "backup.sh succeeded although mongodump failed"
else
  [[ -z "$(find "$BACKUP_DIR" -name '*20260106*')" && "$(mongo 'db.backups.count_documents({})')" == "$before" ]] \
    && pass "a failed dump fails the run, leaves no partial file and records nothing" || fail "a failed dump left traces"
fi

# ---- choosing the newest
# A newer archive whose manifest never arrived (an interrupted run) is skipped.
"$AWS" s3 cp --only-show-errors --sse AES256 "$BACKUP_DIR/palm-20260104T020000Z.archive.gz" \
  "s3://$S3_BUCKET/palm/2026/01/09/palm-20260109T020000Z.archive.gz"
got="$(scripts/backup/restore.sh --from s3 --fetch-only --work "$work/fetch" 2>"$work/err")" || cat "$work/err" >&2
[[ "$got" == "$work/fetch/palm-20260104T020000Z.archive.gz" && -f "$got.json" ]] \
  && pass "restore.sh picks the newest S3 dump with a manifest (skips a newer incomplete upload)" || fail "picked '$got'"
got="$(scripts/backup/restore.sh --from s3 --backup palm-20260102T020000Z.archive.gz --fetch-only --work "$work/fetch2" 2>"$work/err")" || cat "$work/err" >&2
[[ "$got" == "$work/fetch2/palm-20260102T020000Z.archive.gz" ]] && pass "restore.sh fetches a named dump from S3" || fail "named: '$got'"
got="$(scripts/backup/restore.sh --from pvc --fetch-only 2>/dev/null)"
[[ "$got" == "$BACKUP_DIR/palm-20260104T020000Z.archive.gz" ]] && pass "restore.sh picks the newest PVC dump" || fail "pvc newest: '$got'"

# ---- the restore itself (mongorestore stand-in) and its verification
if scripts/backup/restore.sh --from s3 --target-uri "$PALM_MONGO_URL" --db "$database" >/dev/null 2>"$work/err"; then
  fail "restore.sh ran without --yes"
else
  grep -q 'pass --yes' "$work/err" && pass "restore.sh refuses to replace data without --yes" || fail "no --yes: $(cat "$work/err")"
fi
# The stand-in mongorestore leaves the target as it is: make it what the
# newest dump holds. A dump precedes its own record in `backups`.
"$PYTHON" -c 'import sys, pymongo; pymongo.MongoClient(sys.argv[1])[sys.argv[2]].backups.delete_one({"_id": sys.argv[3]})' \
  "$PALM_MONGO_URL" "$database" "$want_key"
expect "restore.sh restores the newest S3 dump and verifies it" \
  scripts/backup/restore.sh --from s3 --target-uri "$PALM_MONGO_URL" --db "$database" --yes
[[ "$(cat "$FAKE_RESTORE_LOG")" == "palm-20260104T020000Z.archive.gz" ]] && grep -q '"verify": "ok"' "$work/out" \
  && pass "mongorestore got the newest archive with --oplogReplay --drop; verify ok" || fail "restored $(cat "$FAKE_RESTORE_LOG"); $(cat "$work/out")"
"$PYTHON" -c 'import sys, pymongo; pymongo.MongoClient(sys.argv[1])[sys.argv[2]].palm_ids.delete_one({})' "$PALM_MONGO_URL" "$database"
if scripts/backup/restore.sh --from pvc --target-uri "$PALM_MONGO_URL" --db "$database" --yes >/dev/null 2>"$work/err"; then
  fail "restore.sh passed although a document is missing after the restore"
else
  grep -q 'collection palm_ids: 2 documents, the backup recorded 3' "$work/err" \
    && pass "restore.sh fails when the restored data does not match the manifest, naming the collection" || fail "$(cat "$work/err")"
fi

if ((failures)); then echo "s3: $failures failed" >&2; exit 1; fi
echo "s3: all passed"
