#!/usr/bin/env bash
# Installs moto's server (a local S3 and KMS stand-in, PyPI moto[server])
# for the backup tests (scripts/backup/tests/s3.sh) into .tools/moto and
# prints the path of moto_server. Pinned, idempotent.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MOTO_VERSION=5.2.5

ensure_venv moto "moto[server]==$MOTO_VERSION"
echo "$PALM_TOOLS/moto/bin/moto_server"
