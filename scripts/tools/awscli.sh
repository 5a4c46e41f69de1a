#!/usr/bin/env bash
# Installs the AWS CLI (v1, from PyPI: v2 is not on any registry reachable
# here) into .tools/awscli and prints the path of `aws`. The backup scripts
# use only commands both versions share (s3 cp, s3api list-objects-v2 /
# head-object / put-bucket-*), and the palm-backup image pins the same
# version (scripts/backup/Containerfile). Pinned, idempotent.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

AWSCLI_VERSION=1.46.3

ensure_venv awscli "awscli==$AWSCLI_VERSION"
echo "$PALM_TOOLS/awscli/bin/aws"
