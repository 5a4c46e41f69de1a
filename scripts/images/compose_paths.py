"""Checks docker/compose.yaml beyond the Compose specification's schema.

- every bind-mounted source exists (relative paths resolve from the compose
  file's folder), so the stack reuses the repo's dashboards, alert rules and
  Alertmanager config rather than copies, and a rename breaks this check
  instead of the stack;
- the Prometheus rule glob in docker/prometheus/prometheus.yml finds rule
  files in the folder compose mounts there;
- every service has a healthcheck, or is a one-shot job others wait for with
  `service_completed_successfully`, so `docker compose up --wait` means ready;
- every `depends_on` names a service, and the Palm images' healthchecks run
  the in-image probe.

Usage: python compose_paths.py docker/compose.yaml (the ruamel.yaml that
check-jsonschema brings parses it). Exit 1 with one line per problem.
"""

import fnmatch
import sys
from pathlib import Path

from ruamel.yaml import YAML

PROBE = "/healthcheck/palm-healthcheck"


def main() -> int:
    compose_file = Path(sys.argv[1]).resolve()
    base = compose_file.parent
    compose = YAML(typ="safe").load(compose_file.read_text())
    services = compose["services"]
    problems = []
    mounts = {}

    one_shot = {
        name
        for service in services.values()
        for name, dependency in (service.get("depends_on") or {}).items()
        if isinstance(dependency, dict)
        and dependency.get("condition") == "service_completed_successfully"
    }

    for name, service in services.items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                source = volume.split(":")[0]
                if not source.startswith((".", "/")):
                    continue  # a named volume
                target = volume.split(":")[1]
            elif volume.get("type") == "bind":
                source, target = volume["source"], volume["target"]
            else:
                continue
            path = (base / source).resolve() if not source.startswith("/") else Path(source)
            if source.startswith("/"):
                continue  # a host path (the Docker socket), not the repo's
            if not path.exists():
                problems.append(f"{name}: bind-mounted {source} does not exist ({path})")
            mounts[(name, target)] = path

        for dependency in service.get("depends_on") or {}:
            if dependency not in services:
                problems.append(f"{name}: depends on unknown service {dependency}")

        healthcheck = service.get("healthcheck")
        if healthcheck is None or healthcheck.get("disable"):
            if name not in one_shot:
                problems.append(f"{name}: no healthcheck, and no service waits for it to complete")
        elif str(service.get("image", "")).startswith("palm/"):
            if healthcheck["test"][:2] != ["CMD", PROBE]:
                problems.append(f"{name}: a Palm image's healthcheck must run {PROBE}")

    prometheus = base / "prometheus" / "prometheus.yml"
    rules_dir = mounts.get(("prometheus", "/etc/prometheus/rules"))
    if rules_dir is None:
        problems.append("prometheus: the repo's rule folder is not mounted at /etc/prometheus/rules")
    elif rules_dir.is_dir():
        config = YAML(typ="safe").load(prometheus.read_text())
        for pattern in config.get("rule_files", []):
            if not pattern.startswith("/etc/prometheus/rules/"):
                problems.append(f"prometheus.yml: rule_files {pattern} is outside the mounted folder")
                continue
            glob = pattern.removeprefix("/etc/prometheus/rules/")
            found = [p.name for p in rules_dir.iterdir() if fnmatch.fnmatch(p.name, glob)]
            if not found:
                problems.append(f"prometheus.yml: {pattern} matches no file in {rules_dir}")
            else:
                print(f"compose: Prometheus loads {', '.join(sorted(found))}", file=sys.stderr)

    for problem in problems:
        print(f"compose: {problem}", file=sys.stderr)
    if not problems:
        bind_count = len(mounts)
        print(
            f"compose: {len(services)} services, each healthchecked or awaited; "
            f"{bind_count} bind mounts, all present",
            file=sys.stderr,
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
