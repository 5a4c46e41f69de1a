"""Shared facts of the release path (scripts/release/): the services that are
released, the image tag format and how a tag is computed. One place, so the
tag script, the values bump, the rehearsal and their tests cannot disagree.
"""
from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Package name = binary = image = chart (STYLE.md, rule 1).
SERVICES = ("palmdao", "palmvalidator", "palmvalidator-discord", "palmplatformmetrics")
ENVIRONMENTS = ("dev", "stg", "prod")
# Images live at <registry>/palm/<service> (ECR repository `palm/<service>`).
IMAGE_NAMESPACE = "palm"

# <version>-<YYYY-MM-DD>: ASCII digits only; a newline at the end does not
# sneak through (fullmatch, no `$`).
TAG_PATTERN = r"\d+\.\d+\.\d+-\d{4}-\d{2}-\d{2}"
TAG_RE = re.compile(TAG_PATTERN, re.ASCII)


class ReleaseError(Exception):
    """A refusal with a message meant for the person releasing."""


def check_tag(tag: str) -> str:
    """Returns the tag if it has the release format and a real date."""
    if not TAG_RE.fullmatch(tag):
        raise ReleaseError(f"tag {tag!r} does not match ^{TAG_PATTERN}$ (<version>-<YYYY-MM-DD>)")
    try:
        dt.date.fromisoformat(tag[-10:])
    except ValueError as err:
        raise ReleaseError(f"tag {tag!r}: {tag[-10:]} is not a date ({err})") from None
    return tag


def workspace_version(root: Path = ROOT) -> str:
    """[workspace.package] version from the root Cargo.toml."""
    with open(root / "Cargo.toml", "rb") as f:
        manifest = tomllib.load(f)
    try:
        version = manifest["workspace"]["package"]["version"]
    except KeyError:
        raise ReleaseError("Cargo.toml has no [workspace.package] version") from None
    if not re.fullmatch(r"\d+\.\d+\.\d+", version, re.ASCII):
        # A pre-release or build suffix (1.2.0-rc.1) would make the tag
        # ambiguous to parse back: refuse it rather than invent a mapping.
        raise ReleaseError(f"workspace version {version!r} is not MAJOR.MINOR.PATCH")
    return version


def compute_tag(version: str, date: dt.date) -> str:
    return check_tag(f"{version}-{date.isoformat()}")


def utc_today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()


def values_file(root: Path, service: str, env: str) -> Path:
    return root / "helm-values" / service / f"values-{env}.yaml"
