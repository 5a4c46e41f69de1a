#!/usr/bin/env bash
# `make check-workflows`: everything the release path and the workflows must
# prove, against the real tools (installed first, pinned, into .tools/):
#   1. actionlint on every .github/workflows file, as committed;
#   2. actionlint again on a copy whose SHA pins are rewritten to the major
#      version in their `# vX.Y.Z` comment, so actionlint's knowledge of the
#      popular actions' inputs and outputs applies (it has none for a SHA);
#   3. check_workflows.py: every `uses:` pinned to a full commit SHA with its
#      version comment, and shellcheck on every `run:` block (the WASM
#      actionlint cannot start shellcheck itself);
#   4. shellcheck on the release scripts and the installers they use;
#   5. the unit tests: the values bump, the tag, the workflow checker, and
#      the workflow/values repository contract.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=scripts/tools/lib.sh
source "$root/scripts/tools/lib.sh"
# shellcheck source=scripts/release/python-deps.sh
source "$here/python-deps.sh"
cd "$root"

actionlint="$(scripts/tools/actionlint.sh)"
shellcheck="$(scripts/tools/shellcheck.sh)"
mapfile -t workflows < <(find .github/workflows -maxdepth 1 -type f \( -name '*.yml' -o -name '*.yaml' \) | sort)
if ((${#workflows[@]} == 0)); then
  echo "check-workflows: no workflow files under .github/workflows" >&2
  exit 1
fi
echo "check-workflows: ${#workflows[@]} workflows: ${workflows[*]##*/}"

echo "check-workflows: actionlint"
"$actionlint" '.github/workflows/*.{yml,yaml}'

echo "check-workflows: actionlint with the pins read as their major versions (action inputs checked)"
majors="$(mktemp -d)"
trap 'rm -rf "$majors"' EXIT
mkdir -p "$majors/.github/workflows"
for wf in "${workflows[@]}"; do
  sed -E 's/@[0-9a-f]{40}([[:space:]]+#[[:space:]]*)(v[0-9]+)[0-9.]*/@\2\1\2/' "$wf" >"$majors/$wf"
done
(cd "$majors" && "$actionlint" '.github/workflows/*.{yml,yaml}')

echo "check-workflows: SHA pins and shellcheck on run: blocks"
"$RELEASE_PYTHON" scripts/release/check_workflows.py --shellcheck "$shellcheck"

echo "check-workflows: shellcheck on the release scripts"
"$shellcheck" -x scripts/release/*.sh scripts/release/bump-values \
  scripts/tools/actionlint.sh scripts/tools/shellcheck.sh scripts/tools/docker-registry.sh

echo "check-workflows: unit tests (bump, tag, workflow checker, repository contract)"
"$RELEASE_PYTHON" -m unittest discover -s scripts/release/tests
