#!/usr/bin/env bash
# The restore verification against the test database: builds palmdao,
# palmvalidator and palmctl, fills a fresh database through the API
# (scripts/backup/seed.sh), stops the services, then runs verify_test.py
# (passes on the intact data, fails naming the collection or proposal for
# each kind of damage). Needs RabbitMQ and MongoDB: scripts/test-deps.sh
# starts them, or PALM_AMQP_URL / PALM_MONGO_URL name them.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$root"
eval "$(scripts/test-deps.sh)"
python="$(scripts/tools/pymongo.sh)"
cargo build --locked --quiet --bins -p palmdao -p palmvalidator -p palmctl

database="palm_backup_check_$$"
state="$(mktemp -d)"
cleanup() {
  scripts/backup/palm-up.sh stop "$state"
  "$python" -c 'import sys, pymongo; pymongo.MongoClient(sys.argv[1])[sys.argv[2]].client.drop_database(sys.argv[2])' \
    "$PALM_MONGO_URL" "$database" || true
  rm -rf "$state"
}
trap cleanup EXIT

eval "$(scripts/backup/palm-up.sh start "$state" "$database")"
PALMCTL="$(realpath -m "${CARGO_TARGET_DIR:-target}")/debug/palmctl" SEED_TAG="$database" scripts/backup/seed.sh >"$state/seed.json"
echo "verify: seeded $(cat "$state/seed.json")" >&2
scripts/backup/palm-up.sh stop "$state"
"$python" scripts/backup/tests/verify_test.py --uri "$PALM_MONGO_URL" --db "$database" --work "$state/work"
