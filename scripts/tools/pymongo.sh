#!/usr/bin/env bash
# Installs the pinned pymongo the backup tooling (scripts/backup/palmbackup.py:
# manifest, record, verify) runs on, into .tools/pymongo, and prints that
# virtualenv's python. The palm-backup image pins the same version
# (scripts/backup/Containerfile).
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PYMONGO_VERSION=4.20.1

ensure_venv pymongo "pymongo==$PYMONGO_VERSION"
echo "$PALM_TOOLS/pymongo/bin/python"
