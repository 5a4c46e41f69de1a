"""What the release workflow, the tag script and the Helm values must agree on:

- the tag computed from the workspace version and the date has the format
  ^\\d+\\.\\d+\\.\\d+-\\d{4}-\\d{2}-\\d{2}$ (and scripts/release/tag prints it);
- the image repositories release.yml pushes to (<registry>/palm/<service>)
  are the ones helm-values/<service>/values-<env>.yaml pull from, for every
  service and environment, all from one ECR registry;
- the services release.yml builds are the four, and the values files carry
  the tag where the bump writes it (image.tag, no digest overriding it).
"""
from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from palm_release import (  # noqa: E402
    ENVIRONMENTS,
    IMAGE_NAMESPACE,
    ROOT,
    SERVICES,
    ReleaseError,
    compute_tag,
    values_file,
    workspace_version,
)

FORMAT = re.compile(r"^\d+\.\d+\.\d+-\d{4}-\d{2}-\d{2}$")
ECR_HOST = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z]{2}(-[a-z]+)+-\d\.amazonaws\.com$")
RELEASE = ROOT / ".github" / "workflows" / "release.yml"


def release_workflow() -> dict:
    with open(RELEASE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def step(job: dict, uses_prefix: str) -> dict:
    found = [s for s in job["steps"] if str(s.get("uses", "")).startswith(uses_prefix + "@")]
    assert len(found) == 1, f"expected one {uses_prefix} step, found {len(found)}"
    return found[0]


class TagTest(unittest.TestCase):
    def test_computed_tag_has_the_release_format(self) -> None:
        version = workspace_version()
        self.assertRegex(version, r"^\d+\.\d+\.\d+$")
        for day in (dt.date(2026, 1, 2), dt.date(2026, 11, 30), dt.date(2030, 12, 31)):
            tag = compute_tag(version, day)
            self.assertRegex(tag, FORMAT)
            self.assertEqual(tag, f"{version}-{day.isoformat()}")

    def test_tag_script_prints_version_and_utc_date(self) -> None:
        before = dt.datetime.now(dt.timezone.utc).date()
        out = subprocess.run([str(HERE.parent / "tag")], capture_output=True, text=True, check=True).stdout
        after = dt.datetime.now(dt.timezone.utc).date()
        tag = out.strip()
        self.assertEqual(out, tag + "\n")
        self.assertRegex(tag, FORMAT)
        self.assertIn(tag, {f"{workspace_version()}-{d.isoformat()}" for d in (before, after)})
        given = subprocess.run(
            [str(HERE.parent / "tag"), "--date", "2027-03-04"], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.assertEqual(given, f"{workspace_version()}-2027-03-04")

    def test_version_is_read_from_workspace_package(self) -> None:
        root = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, root)
        manifest = root / "Cargo.toml"
        manifest.write_text('[package]\nversion = "9.9.9"\n[workspace.package]\nversion = "3.4.5"\n')
        self.assertEqual(workspace_version(root), "3.4.5")
        for bad in ('version = "1.2.0-rc.1"', 'version = "1.2"', ""):
            manifest.write_text(f"[workspace.package]\n{bad}\n")
            with self.subTest(manifest=bad), self.assertRaises(ReleaseError):
                workspace_version(root)


class RepositoriesTest(unittest.TestCase):
    """release.yml pushes where the charts' values pull from."""

    def test_workflow_builds_the_four_services(self) -> None:
        wf = release_workflow()
        default = wf[True]["workflow_dispatch"]["inputs"]["services"]["default"]  # `on:` parses as True
        self.assertEqual(tuple(default.split()), SERVICES)
        plan = next(s for s in wf["jobs"]["prepare"]["steps"] if s.get("id") == "plan")
        listed = re.search(r'^\s*all="([^"]+)"', plan["run"], re.M)
        self.assertIsNotNone(listed)
        self.assertEqual(tuple(listed.group(1).split()), SERVICES)

    def workflow_repository(self, service: str) -> tuple[str, str]:
        """(registry expression, repository path) release.yml pushes `service` to."""
        job = release_workflow()["jobs"]["image"]
        build = step(job, "docker/build-push-action")
        tags = build["with"]["tags"]
        expr = {"${{ env.REPOSITORY }}": job["env"]["REPOSITORY"], "${{ env.TAG }}": "TAG"}
        for key, value in expr.items():
            tags = tags.replace(key, value)
        tags = tags.replace("${{ matrix.service }}", service)
        registry, _, rest = tags.partition("/")
        repository, _, tag = rest.rpartition(":")
        self.assertEqual(tag, "TAG", "the pushed tag is the computed one")
        return registry, repository

    def test_workflow_pushes_to_the_ecr_login_registry(self) -> None:
        registry, repository = self.workflow_repository("palmdao")
        ecr = step(release_workflow()["jobs"]["image"], "aws-actions/amazon-ecr-login")
        self.assertEqual(registry, f"${{{{ steps.{ecr['id']}.outputs.registry }}}}")
        self.assertEqual(repository, f"{IMAGE_NAMESPACE}/palmdao")

    def test_values_pull_what_the_workflow_pushes(self) -> None:
        hosts = set()
        for service in SERVICES:
            _, pushed = self.workflow_repository(service)
            chart = yaml.safe_load((ROOT / "charts" / service / "Chart.yaml").read_text())
            self.assertEqual(chart["name"], service, "chart name = image name")
            for env in ENVIRONMENTS:
                with self.subTest(service=service, env=env):
                    path = values_file(ROOT, service, env)
                    image = (yaml.safe_load(path.read_text()) or {}).get("image") or {}
                    host, _, repository = str(image.get("repository", "")).partition("/")
                    self.assertRegex(host, ECR_HOST, f"{path}: image.repository must be an ECR registry")
                    self.assertEqual(repository, pushed, f"{path}: image.repository")
                    self.assertRegex(str(image.get("tag", "")), FORMAT, f"{path}: image.tag")
                    self.assertFalse(image.get("digest"), f"{path}: a digest would override the bumped tag")
                    hosts.add(host)
        self.assertEqual(len(hosts), 1, f"one registry for every service and environment, found {sorted(hosts)}")


if __name__ == "__main__":
    unittest.main()
