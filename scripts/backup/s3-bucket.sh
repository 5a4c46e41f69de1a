#!/usr/bin/env bash
# Applies the backup bucket's settings kept in ops/s3/ to S3_BUCKET, then
# reads them back and compares (exit 1 on any difference):
#   - lifecycle.json: dumps move to Glacier Instant Retrieval after 30 days
#     (still readable at once in a disaster) and expire after 400 days;
#     noncurrent versions after 30 days; unfinished multipart uploads after 2
#     (its prefix is rewritten to S3_PREFIX, default palm);
#   - encryption.json: SSE-KMS by default (S3_KMS_KEY_ID when set, else the
#     aws/s3 key), bucket key on;
#   - versioning on (an overwritten or deleted dump stays recoverable for
#     30 days), public access blocked, and a policy refusing plain HTTP.
# The bucket itself is created by the infrastructure (with Object Lock when
# available; see docs/adr/0016-backups-mongodump-pvc-s3.md). Run by an
# operator with bucket-admin rights, never by the backup job, whose IRSA role
# can only put, get and list objects.
set -euo pipefail
# shellcheck source=scripts/backup/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${S3_BUCKET:?S3_BUCKET must name the backup bucket}"
prefix="${S3_PREFIX:-palm}"
ops="$(cd "$BACKUP_LIB_DIR/../../ops/s3" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 - "$ops" "$work" "$prefix" "${S3_KMS_KEY_ID:-}" "$S3_BUCKET" <<'PY'
import json, sys
ops, work, prefix, kms, bucket = sys.argv[1:]
lifecycle = json.load(open(f"{ops}/lifecycle.json"))
for rule in lifecycle["Rules"]:
    rule["Filter"]["Prefix"] = prefix.rstrip("/") + "/"
json.dump(lifecycle, open(f"{work}/lifecycle.json", "w"))
encryption = json.load(open(f"{ops}/encryption.json"))
if kms:
    encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] = kms
json.dump(encryption, open(f"{work}/encryption.json", "w"))
policy = {"Version": "2012-10-17", "Statement": [{
    "Sid": "DenyPlainHttp", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
    "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}
json.dump(policy, open(f"{work}/policy.json", "w"))
PY

"$AWS" s3api put-bucket-versioning --bucket "$S3_BUCKET" --versioning-configuration Status=Enabled
"$AWS" s3api put-bucket-encryption --bucket "$S3_BUCKET" \
  --server-side-encryption-configuration "file://$work/encryption.json"
"$AWS" s3api put-public-access-block --bucket "$S3_BUCKET" \
  --public-access-block-configuration "file://$ops/public-access-block.json"
"$AWS" s3api put-bucket-policy --bucket "$S3_BUCKET" --policy "file://$work/policy.json"
"$AWS" s3api put-bucket-lifecycle-configuration --bucket "$S3_BUCKET" \
  --lifecycle-configuration "file://$work/lifecycle.json"

# Read back: what S3 holds must be what the repo says.
"$AWS" s3api get-bucket-lifecycle-configuration --bucket "$S3_BUCKET" >"$work/lifecycle.got.json"
"$AWS" s3api get-bucket-encryption --bucket "$S3_BUCKET" >"$work/encryption.got.json"
versioning="$("$AWS" s3api get-bucket-versioning --bucket "$S3_BUCKET" --query Status --output text)"
python3 - "$work" "$versioning" <<'PY'
import json, sys
work, versioning = sys.argv[1:]
want = json.load(open(f"{work}/lifecycle.json"))["Rules"]
got = json.load(open(f"{work}/lifecycle.got.json"))["Rules"]
problems = []
for w in want:
    g = next((r for r in got if r.get("ID") == w["ID"]), None)
    if g is None:
        problems.append(f"lifecycle rule {w['ID']} missing")
        continue
    for field in ("Status", "Filter", "Transitions", "Expiration", "NoncurrentVersionExpiration",
                  "AbortIncompleteMultipartUpload"):
        if g.get(field) != w.get(field):
            problems.append(f"lifecycle {w['ID']}.{field}: {g.get(field)} != {w.get(field)}")
enc = json.load(open(f"{work}/encryption.got.json"))["ServerSideEncryptionConfiguration"]["Rules"][0]
want_enc = json.load(open(f"{work}/encryption.json"))["Rules"][0]
if enc["ApplyServerSideEncryptionByDefault"] != want_enc["ApplyServerSideEncryptionByDefault"]:
    problems.append(f"default encryption {enc} != {want_enc}")
if versioning != "Enabled":
    problems.append(f"versioning is {versioning}")
for p in problems:
    print(f"s3-bucket: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
log "s3://$S3_BUCKET: lifecycle, encryption, versioning, public access block and TLS-only policy applied and read back"
