#!/usr/bin/env python3
"""Every alert rule file and dashboard under observability/ is shipped by
exactly one chart: a chart ships a file by a symlink in its files/rules/ or
files/dashboards/ pointing into observability/ (ADR 0014). A rule file
linked from two charts would fire every alert twice; one linked from none
would never reach Prometheus. Links must resolve inside the repository.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"rules": ("prometheus/rules", "*.rules.yml"), "dashboards": ("dashboards", "*.json")}


def main() -> int:
    errors = []
    for kind, (folder, pattern) in KINDS.items():
        shipped = defaultdict(list)
        for link in sorted(ROOT.glob(f"charts/*/files/{kind}/*")):
            chart = link.relative_to(ROOT).parts[1]
            if not link.is_symlink():
                errors.append(f"{link.relative_to(ROOT)} is a copy, not a link into observability/")
                continue
            target = link.resolve()
            if not target.is_file() or ROOT / "observability" / folder not in target.parents:
                errors.append(f"{link.relative_to(ROOT)} does not resolve to a file in observability/{folder}")
                continue
            shipped[target.relative_to(ROOT)].append(chart)
        for source in sorted((ROOT / "observability" / folder).glob(pattern)):
            owners = shipped.get(source.relative_to(ROOT), [])
            if len(owners) != 1:
                errors.append(f"{source.relative_to(ROOT)} is shipped by {len(owners)} charts {owners}, not one")
        print(f"shipped-once: {kind}: " + ", ".join(f"{Path(s).name} → {c[0]}" for s, c in sorted(shipped.items())
                                                     if len(c) == 1), file=sys.stderr)
    for error in errors:
        print(f"shipped-once: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
