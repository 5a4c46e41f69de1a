#!/usr/bin/env python3
"""Offline ArgoCD dry run of the app-of-apps, one environment at a time.

Runs argocheck (scripts/tools/argocheck.sh; it renders each Application the
way ArgoCD does, multi-source `$values` files included) on
charts/palm-apps/bootstrap/root-<env>.yaml, with a plugin that:

- resolves this repository's repoURL to the working tree (so the check sees
  uncommitted changes, and no network is needed): every child Application's
  `path` must be a chart here and every `$values/...` file must exist, or
  helm fails and so does the run;
- stands in for the upstream platform charts (Helm repositories cannot be
  reached here) with a stub chart that only records chart, version and
  values: their Applications are checked for shape, their charts are not
  rendered (that happens on the first real sync).

Then it asserts what the suite needs: every expected Application of the
environment is present and rendered without error, and each Palm service's
rendered Deployment runs the image from helm-values/<service>/values-<env>.yaml.

    argocd_dryrun.py ENV...
    argocd_dryrun.py --expect-failure ROOT_APP   a broken root must fail
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml
from argocheck import cli, plugins

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["palmdao", "palmvalidator", "palmvalidator-discord", "palmplatformmetrics", "palm-backup"]
PLATFORM = ["external-secrets", "keda", "kube-prometheus-stack", "loki", "alloy", "rabbitmq", "mongodb", "uptime-kuma"]


class PalmRepo(plugins.ArgocheckPlugin):
    name = "palm-repo"

    def __init__(self, repo_url: str, stubs: Path):
        self.repo_url = repo_url
        self.stubs = stubs
        self.nodes = []
        self.upstream = []
        self.missing = []

    def resolve_source(self, source, context):
        if source.repo_url == self.repo_url:
            if source.is_ref_only:
                return ROOT
            path = ROOT / (source.path or "")
            if not (path / "Chart.yaml").exists():
                # argocheck would render a missing folder as zero manifests.
                self.missing.append(source.path)
            return path
        if source.chart:
            self.upstream.append(f"{source.chart}@{source.target_revision} from {source.repo_url}")
            stub = self.stubs / f"{source.chart}-{source.target_revision}"
            (stub / "templates").mkdir(parents=True, exist_ok=True)
            (stub / "Chart.yaml").write_text(yaml.safe_dump(
                {"apiVersion": "v2", "name": source.chart, "version": str(source.target_revision)}))
            (stub / "templates" / "upstream.yaml").write_text(
                "# Stand-in: the upstream chart is not reachable offline.\n"
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
                "  name: upstream-{{ .Chart.Name }}\n"
                "data:\n  version: {{ .Chart.Version | quote }}\n"
                "  values: {{ toYaml .Values | quote }}\n")
            return stub
        return None

    def after_walk(self, node):
        self.nodes.append(node)


def dry_run(env: str, root_app: Path | None = None) -> list[str]:
    root_app = root_app or ROOT / "charts" / "palm-apps" / "bootstrap" / f"root-{env}.yaml"
    doc = yaml.safe_load(root_app.read_text())
    repo_url = doc["spec"]["sources"][0]["repoURL"]
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="palm-argocd-") as stubs:
        plugin = PalmRepo(repo_url, Path(stubs))
        registry = plugins.get_registry()
        registry.plugins[:] = [plugin]
        try:
            cli.main.main(args=[str(root_app)], standalone_mode=False)
        except SystemExit as exit_:
            if exit_.code:
                errors.append(f"{env}: argocheck exited {exit_.code}")
    errors += [f"{env}: an Application names {path}, which is not a chart in this repository (ArgoCD would "
               "fail to sync it; disable it in helm-values/palm-apps/values-<env>.yaml under `services`)"
               for path in plugin.missing]
    by_name = {node.name: node for node in plugin.nodes}
    for node in plugin.nodes:
        if node.error:
            errors.append(f"{env}: {node.name}: {node.error}")
    for name in [f"{n}-{env}" for n in SERVICES + PLATFORM]:
        if name not in by_name:
            errors.append(f"{env}: Application {name} is missing from the tree")
    for service in SERVICES[:-1]:
        node = by_name.get(f"{service}-{env}")
        if node is None or node.error:
            continue
        values = yaml.safe_load((ROOT / "helm-values" / service / f"values-{env}.yaml").read_text())
        want = f"{values['image']['repository']}:{values['image']['tag']}"
        images = [c["image"] for m in node.manifests if m.get("kind") == "Deployment"
                  for c in m["spec"]["template"]["spec"]["containers"]]
        if images != [want]:
            errors.append(f"{env}: {service} runs {images}, not {want} from its helm-values file")
    print(f"argocd: {env}: {len(plugin.nodes)} Applications rendered offline; upstream charts checked for shape "
          f"only (not reachable here): {', '.join(sorted(set(plugin.upstream)))}", file=sys.stderr)
    return errors


def main(envs: list[str]) -> int:
    if envs[:1] == ["--expect-failure"]:
        # A root Application that must not pass (the self-test of this check).
        errors = dry_run("dev", Path(envs[1]))
        print(f"argocd: broken root {envs[1]} {'refused' if errors else 'ACCEPTED'}: {errors[:2]}", file=sys.stderr)
        return 0 if errors else 1
    errors = [e for env in envs for e in dry_run(env)]
    for error in errors:
        print(f"argocd: {error}", file=sys.stderr)
    print(f"argocd: dry run of {len(envs)} environments, {len(errors)} errors", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
