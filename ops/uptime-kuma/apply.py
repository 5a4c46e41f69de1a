#!/usr/bin/env python3
"""Applies ops/uptime-kuma/monitors.yaml to an Uptime Kuma server, or checks
it offline.

  apply.py --check [FILE]
      Parses the declaration and checks it is complete and applicable: every
      service listed has a readiness monitor on its admin port's /readyz;
      every monitor's options are ones the pinned client accepts for its
      type; every ${VAR} is one the Job sets; the notification is Telegram
      with its secrets from the environment; the status page shows every
      monitor, each group once. No server needed (make check-ops).
  apply.py [FILE]
      Logs in to $KUMA_URL as $KUMA_USERNAME / $KUMA_PASSWORD and makes the
      server match: the notification (added or edited, by name), each monitor
      (added or edited, by name, alerting through the notification), the
      status page and its groups. Idempotent: a second run edits in place.
      Monitors the file does not declare are listed, not deleted.

Environment for apply: KUMA_URL, KUMA_USERNAME, KUMA_PASSWORD,
TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID, and the ${VAR}s of the file
(PUBLIC_API_HOST, PALM_NAMESPACE).
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
from typing import Any

import yaml
from uptime_kuma_api import MonitorType, NotificationType, UptimeKumaApi

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_FILE = os.path.join(HERE, "monitors.yaml")
VARIABLES = {"PUBLIC_API_HOST", "PALM_NAMESPACE"}
# Keys of a monitor entry that are this file's, not Uptime Kuma's.
OWN_KEYS = {"group", "readiness_of", "type"}
TYPES = {"http": MonitorType.HTTP, "keyword": MonitorType.KEYWORD, "json-query": MonitorType.JSON_QUERY}
READINESS = re.compile(r"^http://([a-z0-9-]+)\.\$\{PALM_NAMESPACE\}\.svc\.cluster\.local:9090/readyz$")


class DeclarationError(Exception):
    pass


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        declaration = yaml.safe_load(f)
    if not isinstance(declaration, dict):
        raise DeclarationError(f"{path}: not a mapping")
    return declaration


def monitor_options() -> set[str]:
    """The options the pinned client's monitor builder takes."""
    return set(inspect.signature(UptimeKumaApi._build_monitor_data).parameters) - {"self", "type", "name"}


def check(declaration: dict) -> list[str]:
    problems: list[str] = []
    known = monitor_options()
    defaults = declaration.get("defaults") or {}
    for key in defaults:
        if key not in known:
            problems.append(f"defaults.{key}: not a monitor option of uptime-kuma-api")

    monitors = declaration.get("monitors") or []
    names = [m.get("name") for m in monitors]
    for name in {n for n in names if names.count(n) > 1}:
        problems.append(f"monitor {name!r} is declared twice (monitors are matched by name)")
    readiness: dict[str, str] = {}
    for index, monitor in enumerate(monitors):
        where = f"monitors[{index}] {monitor.get('name')!r}"
        if not monitor.get("name"):
            problems.append(f"{where}: no name")
        if monitor.get("type") not in TYPES:
            problems.append(f"{where}: type must be one of {sorted(TYPES)}")
        if not str(monitor.get("url", "")).startswith(("http://", "https://")):
            problems.append(f"{where}: url must be http(s)")
        if monitor.get("type") == "keyword" and not monitor.get("keyword"):
            problems.append(f"{where}: a keyword monitor needs `keyword`")
        for key in monitor:
            if key not in OWN_KEYS | {"name"} and key not in known:
                problems.append(f"{where}: {key} is not a monitor option of uptime-kuma-api")
        for variable in re.findall(r"\$\{([A-Z_]+)\}", str(monitor.get("url", ""))):
            if variable not in VARIABLES:
                problems.append(f"{where}: ${{{variable}}} is not set by the apply Job ({sorted(VARIABLES)})")
        if "group" not in monitor:
            problems.append(f"{where}: no status page group")
        service = monitor.get("readiness_of")
        if service:
            match = READINESS.match(str(monitor.get("url", "")))
            if not match or match.group(1) != service:
                problems.append(
                    f"{where}: the readiness monitor of {service} must GET "
                    f"http://{service}.${{PALM_NAMESPACE}}.svc.cluster.local:9090/readyz"
                )
            readiness[service] = monitor["name"]
    for service in declaration.get("services") or []:
        if service not in readiness:
            problems.append(f"service {service} has no readiness monitor")
    if not declaration.get("services"):
        problems.append("no services listed")
    if not any(str(m.get("url", "")).startswith("https://${PUBLIC_API_HOST}/") for m in monitors):
        problems.append("no monitor of the public API (https://${PUBLIC_API_HOST}/…)")

    notifications = declaration.get("notifications") or []
    if not any(n.get("type") == "telegram" and n.get("default") for n in notifications):
        problems.append("no default Telegram notification")
    for n in notifications:
        if n.get("type") != "telegram":
            problems.append(f"notification {n.get('name')!r}: only telegram is supported")
        for key in ("bot_token_env", "chat_id_env"):
            if not re.fullmatch(r"[A-Z_]+", str(n.get(key, ""))):
                problems.append(f"notification {n.get('name')!r}: {key} must name an environment variable")

    page = declaration.get("status_page") or {}
    if not re.fullmatch(r"[a-z0-9-]+", str(page.get("slug", ""))):
        problems.append("status_page.slug must be lower-case letters, digits and -")
    if not page.get("title"):
        problems.append("status_page.title missing")
    groups = page.get("groups") or []
    if len(groups) != len(set(groups)):
        problems.append("status_page.groups lists a group twice")
    for monitor in monitors:
        if monitor.get("group") not in groups:
            problems.append(f"monitor {monitor.get('name')!r}: group {monitor.get('group')!r} is not on the status page")
    for group in groups:
        if not any(m.get("group") == group for m in monitors):
            problems.append(f"status page group {group!r} has no monitor")
    return problems


def expand(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, str):
        def sub(match: re.Match) -> str:
            name = match.group(1)
            if not env.get(name):
                raise DeclarationError(f"${{{name}}} is used but not set")
            return env[name]
        return re.sub(r"\$\{([A-Z_]+)\}", sub, value)
    if isinstance(value, list):
        return [expand(v, env) for v in value]
    return value


def monitor_kwargs(monitor: dict, defaults: dict, env: dict[str, str], notification_ids: list[int]) -> dict:
    kwargs = {k: expand(v, env) for k, v in {**defaults, **monitor}.items() if k not in OWN_KEYS}
    kwargs["type"] = TYPES[monitor["type"]]
    kwargs["notificationIDList"] = notification_ids
    return kwargs


def apply(api, declaration: dict, env: dict[str, str]) -> dict[str, int]:
    """Makes the server match the declaration; returns what it did."""
    done = {"added": 0, "edited": 0}
    existing = {n["name"]: n for n in api.get_notifications()}
    notification_ids: list[int] = []
    for n in declaration["notifications"]:
        fields = dict(
            name=n["name"], type=NotificationType.TELEGRAM, isDefault=bool(n.get("default")),
            applyExisting=True,
            telegramBotToken=env[n["bot_token_env"]], telegramChatID=env[n["chat_id_env"]],
        )
        if n["name"] in existing:
            api.edit_notification(existing[n["name"]]["id"], **fields)
            notification_ids.append(existing[n["name"]]["id"])
            done["edited"] += 1
        else:
            notification_ids.append(api.add_notification(**fields)["id"])
            done["added"] += 1

    defaults = declaration.get("defaults") or {}
    by_name = {m["name"]: m for m in api.get_monitors()}
    ids: dict[str, int] = {}
    for monitor in declaration["monitors"]:
        kwargs = monitor_kwargs(monitor, defaults, env, notification_ids)
        if monitor["name"] in by_name:
            ids[monitor["name"]] = by_name[monitor["name"]]["id"]
            api.edit_monitor(ids[monitor["name"]], **kwargs)
            done["edited"] += 1
        else:
            ids[monitor["name"]] = api.add_monitor(**kwargs)["monitorID"]
            done["added"] += 1
    for name in sorted(set(by_name) - set(ids)):
        print(f"uptime-kuma: monitor {name!r} is not declared in monitors.yaml (left alone)", file=sys.stderr)

    page = declaration["status_page"]
    if page["slug"] not in {p["slug"] for p in api.get_status_pages()}:
        api.add_status_page(page["slug"], page["title"])
    groups = [
        {"name": group, "weight": weight,
         "monitorList": [{"id": ids[m["name"]]} for m in declaration["monitors"] if m.get("group") == group]}
        for weight, group in enumerate(page["groups"], start=1)
    ]
    api.save_status_page(page["slug"], title=page["title"], description=page.get("description"),
                         footerText=page.get("footerText"), publicGroupList=groups)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", default=DEFAULT_FILE)
    parser.add_argument("--check", action="store_true", help="validate offline, apply nothing")
    args = parser.parse_args(argv)
    declaration = load(args.file)
    problems = check(declaration)
    for problem in problems:
        print(f"uptime-kuma: {problem}", file=sys.stderr)
    if problems:
        return 1
    if args.check:
        monitors = declaration["monitors"]
        print(f"uptime-kuma: {args.file} is complete: {len(monitors)} monitors, "
              f"readiness of {', '.join(declaration['services'])}, status page /status/{declaration['status_page']['slug']}")
        return 0
    env = dict(os.environ)
    for key in ("KUMA_URL", "KUMA_USERNAME", "KUMA_PASSWORD"):
        if not env.get(key):
            print(f"uptime-kuma: {key} is not set", file=sys.stderr)
            return 1
    api = UptimeKumaApi(env["KUMA_URL"], timeout=30)
    try:
        api.login(env["KUMA_USERNAME"], env["KUMA_PASSWORD"])
        done = apply(api, declaration, env)
    finally:
        api.disconnect()
    print(f"uptime-kuma: applied to {env['KUMA_URL']}: {done['added']} added, {done['edited']} edited")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DeclarationError as error:
        print(f"uptime-kuma: {error}", file=sys.stderr)
        sys.exit(1)
