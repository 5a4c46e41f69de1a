"""The workflow checker (scripts/release/check_workflows.py) must fail on what
it exists to catch: an action referenced by anything but a full commit SHA
with its version comment, and a shell mistake in a `run:` block."""
from __future__ import annotations

import shutil
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from check_workflows import check_pins, check_shell, workflow_files  # noqa: E402

SHA = "11bd71901bbe5b1630ceea73d27597364c9af683"
DIGEST = "sha256:" + "a" * 64


def workflow(*steps: str, job_uses: str | None = None) -> str:
    text = "on: push\njobs:\n"
    if job_uses is not None:
        text += f"  reuse:\n    uses: {job_uses}\n"
    text += "  build:\n    runs-on: ubuntu-24.04\n    steps:\n"
    text += "".join(f"      - {s}\n" for s in steps)
    return text


def pins(text: str) -> list[str]:
    return [f.message for f in check_pins(Path("wf.yml"), text)]


class PinRuleTest(unittest.TestCase):
    def test_sha_with_version_comment_passes(self) -> None:
        self.assertEqual(pins(workflow(f"uses: actions/checkout@{SHA} # v4.2.2")), [])
        self.assertEqual(pins(workflow(f"uses: github/codeql-action/init@{SHA} # v3")), [])

    def test_local_actions_and_docker_digests_pass(self) -> None:
        self.assertEqual(pins(workflow("uses: ./.github/actions/setup", f"uses: docker://alpine@{DIGEST}")), [])

    def test_refused_references(self) -> None:
        for ref in (
            "actions/checkout@v4",
            "actions/checkout@v4.2.2",
            "actions/checkout@main",
            f"actions/checkout@{SHA[:12]}",
            f"actions/checkout@{SHA.upper()}",
            "actions/checkout",
            "docker://alpine:3.20",
        ):
            with self.subTest(ref=ref):
                self.assertEqual(len(pins(workflow(f"uses: {ref} # v4.2.2"))), 1, ref)

    def test_version_comment_required(self) -> None:
        self.assertEqual(len(pins(workflow(f"uses: actions/checkout@{SHA}"))), 1)
        self.assertEqual(len(pins(workflow(f"uses: actions/checkout@{SHA} # pinned"))), 1)

    def test_reusable_workflows_at_job_level_are_checked(self) -> None:
        bad = workflow("run: 'true'", job_uses="org/repo/.github/workflows/x.yml@main")
        self.assertEqual(len(pins(bad)), 1)
        good = workflow("run: 'true'", job_uses=f"org/repo/.github/workflows/x.yml@{SHA} # v1.0.0")
        self.assertEqual(pins(good), [])

    def test_flow_style_step_is_reported(self) -> None:
        # A `uses:` the raw-line rule cannot see with its comment is refused.
        text = workflow(f"{{uses: actions/checkout@{SHA}}}")
        self.assertEqual(len(pins(text)), 1)


@unittest.skipIf(shutil.which("shellcheck") is None, "shellcheck is not installed (scripts/tools/shellcheck.sh)")
class ShellRuleTest(unittest.TestCase):
    def shell(self, text: str) -> list[str]:
        return [str(f) for f in check_shell(Path("wf.yml"), "shellcheck", text)]

    def test_clean_blocks_pass(self) -> None:
        text = workflow('run: |\n          echo "${{ github.sha }}" "$HOME"\n          ls -- "$PWD"')
        self.assertEqual(self.shell(text), [])

    def test_findings_point_at_the_workflow_line(self) -> None:
        text = workflow("name: ok\n        run: |\n          echo hi\n          cd $HOME")
        found = self.shell(text)
        self.assertEqual(len(found), 2, found)  # SC2086 and SC2164 (cd without || exit)
        line = text.splitlines().index("          cd $HOME") + 1
        self.assertTrue(all(f.startswith(f"wf.yml:{line}:") for f in found), found)

    def test_other_shells_are_left_alone(self) -> None:
        text = workflow("shell: python\n        run: print($x)")
        self.assertEqual(self.shell(text), [])


class RealWorkflowsTest(unittest.TestCase):
    def test_every_workflow_is_pinned(self) -> None:
        files = workflow_files()
        self.assertIn("release.yml", [p.name for p in files])
        for path in files:
            with self.subTest(workflow=path.name):
                self.assertEqual([str(f) for f in check_pins(path)], [])


if __name__ == "__main__":
    unittest.main()
