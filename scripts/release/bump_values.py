"""Sets image.tag in helm-values/<service>/values-<env>.yaml for the named
services, and nothing else: every comment, every other key and every other
byte of the file stays as it was.

How: PyYAML composes the file into nodes that carry their exact character
offsets; the `image.tag` scalar's span is replaced in the original text, in
the quoting style it already had. A round-trip YAML library would re-emit the
file (re-indenting, re-wrapping, re-quoting); this never re-emits anything.
The result is parsed again and must equal the old document with only
image.tag changed, or nothing is written.

A tag that does not match ^\\d+\\.\\d+\\.\\d+-\\d{4}-\\d{2}-\\d{2}$ (or whose date is
not a date) is refused before any file is touched. Running it twice changes
nothing the second time.

Run through scripts/release/bump-values (which provides PyYAML):
  scripts/release/bump-values --env dev --tag 0.1.0-2026-11-30 palmdao palmvalidator
"""
from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from palm_release import ENVIRONMENTS, ROOT, SERVICES, ReleaseError, check_tag, values_file  # noqa: E402


@dataclass
class Bump:
    path: Path
    old: str | None  # None: the file had no image.tag (it was added)
    new: str

    @property
    def changed(self) -> bool:
        return self.old != self.new


def _get(mapping: yaml.Node, key: str) -> yaml.Node | None:
    for k, v in mapping.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    return None


def _render(tag: str, style: str | None) -> str:
    if style == '"':
        return f'"{tag}"'
    if style == "'":
        return f"'{tag}'"
    return tag  # plain: a tag of this format always resolves to a string


def _line_end(text: str, index: int) -> int:
    """Index just past the end of the line holding `index` (before its line break)."""
    end = index
    while end < len(text) and text[end] not in "\r\n":
        end += 1
    return end


def set_image_tag(text: str, tag: str, where: str = "<values>") -> tuple[str, str | None]:
    """Returns (new text, previous tag or None). Raises ReleaseError."""
    check_tag(tag)
    try:
        doc = yaml.compose(text)
        before = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ReleaseError(f"{where}: not valid YAML: {err}") from None
    newline = "\r\n" if "\r\n" in text else "\n"

    if doc is None:
        # Empty, or comments only: add the section at the end.
        sep = newline if text and not text.endswith(("\n", "\r")) else ""
        new_text, old = f"{text}{sep}image:{newline}  tag: {tag}{newline}", None
    elif not isinstance(doc, yaml.MappingNode) or doc.flow_style:
        raise ReleaseError(f"{where}: the top level is not a block mapping")
    else:
        image = _get(doc, "image")
        if image is None:
            # No image: section yet; add one at the end of the file.
            sep = "" if text.endswith(("\n", "\r")) else newline
            new_text, old = f"{text}{sep}image:{newline}  tag: {tag}{newline}", None
        elif not isinstance(image, yaml.MappingNode) or image.flow_style:
            raise ReleaseError(f"{where}: `image` must be a block mapping to set image.tag")
        else:
            node = _get(image, "tag")
            if node is None:
                # Add `tag:` after the mapping's last entry, at its indentation.
                if not image.value:
                    raise ReleaseError(f"{where}: `image` is an empty mapping")
                indent = image.value[0][0].start_mark.column
                at = _line_end(text, image.value[-1][1].end_mark.index - 1)
                new_text, old = f"{text[:at]}{newline}{' ' * indent}tag: {tag}{text[at:]}", None
            elif not isinstance(node, yaml.ScalarNode) or node.style not in (None, '"', "'"):
                raise ReleaseError(f"{where}: image.tag must be a plain or quoted scalar")
            else:
                start, end = node.start_mark.index, node.end_mark.index
                value = (before.get("image") or {}).get("tag")
                old = None if value is None else str(node.value)
                rendered = _render(tag, node.style)
                if start == end and text[start - 1 : start] == ":":
                    rendered = " " + rendered  # `tag:` with no value
                new_text = text[:start] + rendered + text[end:]

    # Nothing but image.tag may differ.
    after = yaml.safe_load(new_text)
    expected = copy.deepcopy(before) if isinstance(before, dict) else {}
    image_section = expected.setdefault("image", {})
    image_section["tag"] = tag
    if after != expected:
        raise ReleaseError(f"{where}: the edit would change more than image.tag; nothing written")
    return new_text, old


def bump(root: Path, env: str, tag: str, services: list[str]) -> list[Bump]:
    """Sets image.tag for each service's values-<env>.yaml; returns what it did."""
    check_tag(tag)
    if env not in ENVIRONMENTS:
        raise ReleaseError(f"unknown environment {env!r} (one of {', '.join(ENVIRONMENTS)})")
    unknown = [s for s in services if s not in SERVICES]
    if unknown:
        raise ReleaseError(f"unknown service(s) {', '.join(unknown)} (one of {', '.join(SERVICES)})")
    # Compute every edit before writing any, so a refusal leaves no file half-done.
    edits: list[tuple[Path, str, Bump]] = []
    for service in dict.fromkeys(services):
        path = values_file(root, service, env)
        if not path.is_file():
            raise ReleaseError(f"{path.relative_to(root)} does not exist")
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
        new_text, old = set_image_tag(text, tag, str(path.relative_to(root)))
        edits.append((path, new_text, Bump(path, old, tag)))
    for path, new_text, result in edits:
        if result.changed:
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(new_text)
    return [b for _, _, b in edits]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Set image.tag in helm-values/<service>/values-<env>.yaml.")
    parser.add_argument("--env", required=True, choices=ENVIRONMENTS)
    parser.add_argument("--tag", required=True, help="<version>-<YYYY-MM-DD>")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    parser.add_argument("services", nargs="+", metavar="SERVICE", help=" | ".join(SERVICES))
    args = parser.parse_args(argv)
    try:
        results = bump(args.root.resolve(), args.env, args.tag, args.services)
    except ReleaseError as err:
        print(f"bump-values: {err}", file=sys.stderr)
        return 1
    for r in results:
        rel = r.path.relative_to(args.root.resolve())
        if r.changed:
            print(f"bumped {rel}: image.tag {r.old or '(unset)'} -> {r.new}")
        else:
            print(f"unchanged {rel}: image.tag already {r.new}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
