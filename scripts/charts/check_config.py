#!/usr/bin/env python3
"""Runs each service's real binary with `--check-config` under the container
environment a rendered chart gives it.

For every rendered release (one YAML file: a chart × an environment or ci
scenario) it takes the Deployment's container, its envFrom ConfigMap (the
PALM__ settings) and the Secret the ExternalSecret writes (each key replaced
by a placeholder of the right shape: a real secret never leaves AWS), and
runs target/debug/<container name> --check-config in an otherwise empty
environment. The binary must exit 0, and every PALM__ key the chart sets
must appear in the settings it prints with the same value: a chart can
neither set a key the service refuses or ignores, nor omit one it requires.

    check_config.py [--expect-failure KEY] BIN_DIR FILE...

With --expect-failure, each file must instead be refused (exit 78) with a
message naming KEY: the broken fixtures prove the check can fail.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

# The shape of each secret a chart may take from the ExternalSecret. A key
# without a placeholder here fails: a new secret must be added knowingly.
PLACEHOLDERS = {
    "PALM__AMQP__URL": "amqp://palm:placeholder@rabbitmq.rabbitmq.svc:5672/palm",
    "PALM__MONGO__URL": "mongodb://palm:placeholder@mongodb-0.mongodb-headless.mongodb.svc:27017,"
    "mongodb-1.mongodb-headless.mongodb.svc:27017,mongodb-2.mongodb-headless.mongodb.svc:27017/"
    "?replicaSet=rs0&authSource=admin",
    "PALM__AUTH__SESSION_KEY": "placeholder-session-key-of-at-least-32-bytes-0123456789",
    "PALM__DISCORD__CLIENT_SECRET": "placeholder-client-secret",
    "PALM__DISCORD__BOT_TOKEN": "placeholder-bot-token",
}
EXIT_CONFIG = 78


def printed_settings(text: str) -> dict[str, str]:
    """The leaves of the binary's `{:#?}` settings, by dotted key (the
    flattened `runtime` level dropped, as the service reads it)."""
    leaves: dict[str, str] = {}
    stack: list[str] = []
    list_key, list_items, closer = None, [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if list_key is not None:
            if line in (closer + ",", closer):
                leaves[list_key] = ",".join(list_items)
                list_key, list_items = None, []
            else:
                list_items.append(line.rstrip(","))
            continue
        if line in ("}", "},"):
            if stack:
                stack.pop()
            continue
        match = re.match(r"^(\w+): (.*?),?$", line)
        if not match:
            continue
        name, value = match.groups()
        if value.endswith("{"):
            stack.append(name)
            continue
        path = ".".join([p for p in stack if p != "runtime"] + [name])
        if value == "[":
            list_key, list_items, closer = path, [], "]"
            continue
        if value.endswith("("):  # Some(\n value,\n) and SecretBox<str>(\n …\n)
            list_key, list_items, closer = path, [], ")"
            continue
        if value == "[]":
            value = ""
        leaves[path] = value
    return leaves


def normalise(value: str) -> str:
    value = value.strip()
    some = re.fullmatch(r"Some\((.*)\)", value)
    if some:
        value = some.group(1)
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"')
    if re.fullmatch(r"-?[0-9]+\.0", value):
        value = value[:-2]
    return value


def release_env(docs: list[dict]) -> tuple[str, dict[str, str], dict[str, str]]:
    """(binary, PALM__ settings, secret placeholders) of the release's Deployment."""
    by_kind: dict[tuple[str, str], dict] = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    if len(deployments) != 1:
        raise SystemExit(f"expected one Deployment, found {len(deployments)}")
    container = deployments[0]["spec"]["template"]["spec"]["containers"][0]
    settings: dict[str, str] = {}
    secrets: dict[str, str] = {}
    secret_keys: dict[str, list[str]] = {}
    for es in (d for d in docs if d["kind"] == "ExternalSecret"):
        secret_keys[es["spec"]["target"]["name"]] = [item["secretKey"] for item in es["spec"]["data"]]
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            cm = by_kind[("ConfigMap", source["configMapRef"]["name"])]
            settings.update({k: str(v) for k, v in cm.get("data", {}).items()})
        elif "secretRef" in source:
            name = source["secretRef"]["name"]
            if name not in secret_keys:
                raise SystemExit(f"secretRef {name} is not written by an ExternalSecret of the release")
            for key in secret_keys[name]:
                if key not in PLACEHOLDERS:
                    raise SystemExit(f"no placeholder shape for secret key {key} (add it to PLACEHOLDERS)")
                secrets[key] = PLACEHOLDERS[key]
    for item in container.get("env", []):
        if "value" in item:
            settings[item["name"]] = str(item["value"])
    return container["name"], settings, secrets


def run(binary: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as empty:
        # cwd and PALM_CONFIG_DIR point at an empty folder, as in the image:
        # nothing but the environment configures the service.
        clean = {"PATH": "/usr/bin:/bin", "HOSTNAME": "check-config-0", "PALM_CONFIG_DIR": empty, **env}
        return subprocess.run([str(binary), "--check-config"], env=clean, cwd=empty,
                              capture_output=True, text=True, timeout=60)


def check(bin_dir: Path, file: str, expect_failure: str | None) -> list[str]:
    docs = [d for d in yaml.safe_load_all(Path(file).read_text()) if d]
    binary, settings, secrets = release_env(docs)
    result = run(bin_dir / binary, {**settings, **secrets})
    errors = []
    if expect_failure:
        if result.returncode != EXIT_CONFIG or f"`{expect_failure}`" not in result.stderr:
            errors.append(f"{file}: expected exit {EXIT_CONFIG} naming `{expect_failure}`, got "
                          f"{result.returncode}: {result.stderr.strip()}")
        else:
            print(f"check-config: {file}: refused as expected: {result.stderr.strip()}", file=sys.stderr)
        return errors
    if result.returncode != 0:
        return [f"{file}: {binary} --check-config exited {result.returncode}: {result.stderr.strip()}"]
    leaves = printed_settings(result.stdout)
    for name, value in sorted(settings.items()):
        if not name.startswith("PALM__"):
            continue
        key = ".".join(part.lower() for part in name[len("PALM__"):].split("__"))
        if key not in leaves:
            errors.append(f"{file}: {name} sets `{key}`, which {binary} does not have (ignored)")
        elif normalise(leaves[key]) != value and key not in ("admin.addr", "http.addr"):
            errors.append(f"{file}: {name}={value!r} but {binary} took `{key}` = {leaves[key]}")
    for name in secrets:
        key = ".".join(part.lower() for part in name[len("PALM__"):].split("__"))
        if key not in leaves or "REDACTED" not in leaves[key]:
            errors.append(f"{file}: secret {name} is not a redacted secret setting of {binary}")
    return errors


def main(argv: list[str]) -> int:
    expect = None
    if argv[:1] == ["--expect-failure"]:
        expect, argv = argv[1], argv[2:]
    bin_dir, files = Path(argv[0]).resolve(), argv[1:]
    errors = []
    for file in files:
        errors += check(bin_dir, file, expect)
    for error in errors:
        print(f"check-config: {error}", file=sys.stderr)
    if not expect:
        print(f"check-config: {len(files) - len({e.split(':')[0] for e in errors})} of {len(files)} rendered "
              "environments accepted by the real binaries", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
