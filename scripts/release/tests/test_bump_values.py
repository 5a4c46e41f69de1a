"""Unit tests of the values bump (scripts/release/bump_values.py): only the
named service's file for the named environment changes, only the image.tag
scalar's bytes change in it, a second run changes nothing, and malformed tags
are refused before anything is written."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bump_values import bump, set_image_tag  # noqa: E402
from palm_release import ENVIRONMENTS, SERVICES, ReleaseError  # noqa: E402

OLD = "0.1.0-2026-01-05"
NEW = "0.2.0-2026-11-30"

# Shaped like a real per-environment file: a header, comments above and
# beside keys, odd spacing, quoted strings, a flow list and a trailing
# comment; the tag line carries its own comment.
VALUES = f"""# palmdao in dev: what differs from charts/palmdao/values.yaml.
# Keep this header.

replicaCount: 1   # one is enough in dev

image:
  # ECR repository; the release workflow pushes here.
  repository: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/palm/palmdao
  tag: {OLD}  # bumped by scripts/release/bump-values
  pullPolicy:   IfNotPresent

ingress:
  hosts: ["api.dev.palm.example"]
  annotations:
    alb.ingress.kubernetes.io/scheme: 'internet-facing'
config:
  log_level: "debug"
sidecar:
  image:
    tag: "must-not-change"
# trailing comment
"""


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class SetImageTagTest(unittest.TestCase):
    def test_only_the_tag_scalar_changes(self) -> None:
        new, old = set_image_tag(VALUES, NEW)
        self.assertEqual(old, OLD)
        self.assertEqual(new, VALUES.replace(f"tag: {OLD}  #", f"tag: {NEW}  #"))
        # Everything before and after the scalar is byte-identical.
        start = VALUES.index(OLD)
        self.assertEqual(new[:start], VALUES[:start])
        self.assertEqual(new[start + len(NEW) :], VALUES[start + len(OLD) :])

    def test_nested_image_tags_elsewhere_are_not_touched(self) -> None:
        new, _ = set_image_tag(VALUES, NEW)
        self.assertIn('    tag: "must-not-change"', new)

    def test_quoting_style_is_kept(self) -> None:
        for quoted in (f'"{OLD}"', f"'{OLD}'"):
            text = f"image:\n  repository: r\n  tag: {quoted}\n"
            new, old = set_image_tag(text, NEW)
            self.assertEqual(old, OLD)
            self.assertEqual(new, text.replace(OLD, NEW))

    def test_crlf_line_endings_are_kept(self) -> None:
        text = VALUES.replace("\n", "\r\n")
        new, _ = set_image_tag(text, NEW)
        self.assertEqual(new, text.replace(OLD, NEW))

    def test_empty_and_null_tags_are_filled_in_place(self) -> None:
        cases = {
            'image:\n  tag: ""  # chart default\n': f'image:\n  tag: "{NEW}"  # chart default\n',
            "image:\n  tag:\n  repository: r\n": f"image:\n  tag: {NEW}\n  repository: r\n",
            "image:\n  tag: null\n": f"image:\n  tag: {NEW}\n",
        }
        for text, want in cases.items():
            with self.subTest(text=text):
                self.assertEqual(set_image_tag(text, NEW)[0], want)

    def test_a_missing_tag_is_added_inside_image(self) -> None:
        text = "# c\nimage:\n  repository: r  # keep\n  pullPolicy: Always\nother: 1\n"
        new, old = set_image_tag(text, NEW)
        self.assertIsNone(old)
        self.assertEqual(new, f"# c\nimage:\n  repository: r  # keep\n  pullPolicy: Always\n  tag: {NEW}\nother: 1\n")

    def test_a_missing_image_section_is_added_at_the_end(self) -> None:
        new, old = set_image_tag("replicaCount: 2\n# end\n", NEW)
        self.assertIsNone(old)
        self.assertEqual(new, f"replicaCount: 2\n# end\nimage:\n  tag: {NEW}\n")

    def test_malformed_tags_are_refused(self) -> None:
        for bad in (
            "latest",
            "v0.2.0-2026-11-30",  # the git tag's v prefix
            "0.2-2026-11-30",
            "0.2.0-rc.1-2026-11-30",
            "0.2.0-20261130",
            "0.2.0-2026-11-30\n",
            "0.2.0-2026-11-30-1",
            "0.2.0-2026-13-30",  # not a date
            "0.2.0-2026-02-30",
            "０.2.0-2026-11-30",  # a non-ASCII digit
            "",
        ):
            with self.subTest(tag=bad), self.assertRaises(ReleaseError):
                set_image_tag(VALUES, bad)

    def test_a_non_scalar_tag_is_refused(self) -> None:
        with self.assertRaises(ReleaseError):
            set_image_tag("image:\n  tag:\n    nested: 1\n", NEW)


class BumpFilesTest(unittest.TestCase):
    def setUp(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bump-values-"))
        self.addCleanup(shutil.rmtree, self.root)
        for service in SERVICES:
            for env in ENVIRONMENTS:
                path = self.root / "helm-values" / service / f"values-{env}.yaml"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(VALUES.replace("palm/palmdao", f"palm/{service}").replace("dev", env))
        self.before = tree(self.root)

    def test_one_service_one_environment(self) -> None:
        results = bump(self.root, "stg", NEW, ["palmvalidator"])
        self.assertEqual([(r.old, r.new, r.changed) for r in results], [(OLD, NEW, True)])
        after = tree(self.root)
        changed = sorted(k for k in after if after[k] != self.before[k])
        self.assertEqual(changed, ["helm-values/palmvalidator/values-stg.yaml"])
        key = changed[0]
        self.assertEqual(after[key], self.before[key].replace(OLD.encode(), NEW.encode()))
        self.assertEqual(len(after[key]), len(self.before[key]))

    def test_second_run_changes_nothing(self) -> None:
        bump(self.root, "dev", NEW, ["palmdao", "palmplatformmetrics"])
        once = tree(self.root)
        mtimes = {p: p.stat().st_mtime_ns for p in self.root.rglob("*.yaml")}
        results = bump(self.root, "dev", NEW, ["palmdao", "palmplatformmetrics"])
        self.assertEqual([r.changed for r in results], [False, False])
        self.assertEqual(tree(self.root), once)
        # Not even rewritten with the same bytes.
        self.assertEqual({p: p.stat().st_mtime_ns for p in self.root.rglob("*.yaml")}, mtimes)

    def test_malformed_tag_writes_nothing(self) -> None:
        with self.assertRaises(ReleaseError):
            bump(self.root, "dev", "0.2.0", list(SERVICES))
        self.assertEqual(tree(self.root), self.before)

    def test_one_bad_file_writes_nothing(self) -> None:
        (self.root / "helm-values/palmvalidator/values-dev.yaml").write_text("image: [not, a, mapping]\n")
        self.before = tree(self.root)
        with self.assertRaises(ReleaseError):
            bump(self.root, "dev", NEW, ["palmdao", "palmvalidator"])
        self.assertEqual(tree(self.root), self.before)

    def test_unknown_service_and_environment_are_refused(self) -> None:
        with self.assertRaises(ReleaseError):
            bump(self.root, "dev", NEW, ["palmdoa"])
        with self.assertRaises(ReleaseError):
            bump(self.root, "qa", NEW, ["palmdao"])
        self.assertEqual(tree(self.root), self.before)

    def test_command_line(self) -> None:
        script = HERE.parent / "bump_values.py"
        ok = subprocess.run(
            [sys.executable, str(script), "--root", str(self.root), "--env", "prod", "--tag", NEW, "palmdao"],
            capture_output=True, text=True, check=False,
        )
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertEqual(ok.stdout, f"bumped helm-values/palmdao/values-prod.yaml: image.tag {OLD} -> {NEW}\n")
        again = subprocess.run(
            [sys.executable, str(script), "--root", str(self.root), "--env", "prod", "--tag", NEW, "palmdao"],
            capture_output=True, text=True, check=False,
        )
        self.assertEqual(again.stdout, f"unchanged helm-values/palmdao/values-prod.yaml: image.tag already {NEW}\n")
        bad = subprocess.run(
            [sys.executable, str(script), "--root", str(self.root), "--env", "prod", "--tag", "latest", "palmdao"],
            capture_output=True, text=True, check=False,
        )
        self.assertEqual(bad.returncode, 1)
        self.assertIn("does not match", bad.stderr)


if __name__ == "__main__":
    unittest.main()
