#!/usr/bin/env bash
# Installs Debian's container tools (buildah builds the images, podman runs
# them in `make check-images`, skopeo inspects and copies them, runc is the
# runtime this VM needs) and writes the project's own podman settings, since
# podman's defaults fail here (see ../shared/design/DELIVERY.md):
#   .tools/containers/containers.conf  runc, cgroupfs, explicit ulimits
#   .tools/containers/storage.conf     the vfs driver, storage under .tools/
# /etc is never touched. It prints `export` lines for `eval`, so a caller gets
# CONTAINERS_CONF and CONTAINERS_STORAGE_CONF pointing at those files.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_apt buildah podman skopeo runc

conf_dir="$PALM_TOOLS/containers"
mkdir -p "$conf_dir/storage" "$conf_dir/run"
cat >"$conf_dir/containers.conf.new" <<CONF
# Written by scripts/tools/podman.sh: what podman needs on this VM.
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
cat >"$conf_dir/storage.conf.new" <<CONF
# Written by scripts/tools/podman.sh: vfs (no overlay mounts on this VM),
# images and containers kept under .tools/containers.
[storage]
driver = "vfs"
graphroot = "$conf_dir/storage"
runroot = "$conf_dir/run"
CONF
mv "$conf_dir/containers.conf.new" "$conf_dir/containers.conf"
mv "$conf_dir/storage.conf.new" "$conf_dir/storage.conf"
echo "export CONTAINERS_CONF='$conf_dir/containers.conf'"
echo "export CONTAINERS_STORAGE_CONF='$conf_dir/storage.conf'"
