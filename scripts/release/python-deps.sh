# Sourced (after scripts/tools/lib.sh) by the release scripts: the pinned
# Python packages they need, in the .tools/release virtualenv, and
# RELEASE_PYTHON pointing at its interpreter.
# shellcheck shell=bash
ensure_venv release "PyYAML==6.0.2"
RELEASE_PYTHON="$PALM_TOOLS/release/bin/python"
export RELEASE_PYTHON
