#!/usr/bin/env python3
"""Checks the observability assets under observability/ (docs/observability.md).

  check.py static   rules, runbooks, promtool tests, dashboards, Alertmanager
                    (amtool check-config and route tests); no services needed
  check.py live URL every PromQL expression of every dashboard and rule
                    evaluates against the real Prometheus at URL, and every
                    metric name they use is exported by a scraped target
  check.py selftest TMP URL
                    the checks above fail, naming the fault, on a copy of the
                    tree with one fault of each kind planted

Run by scripts/observability/check.sh (make check-observability), which
installs promtool, amtool and this script's pinned dependencies
(promql-parser, PyYAML) and starts the services and Prometheus.
Exits non-zero naming every failure.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import promql_parser
import yaml

# PALM_OBS_ROOT: another tree with the same layout (the self-test's broken copies).
ROOT = os.environ.get("PALM_OBS_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OBS = os.path.join(ROOT, "observability")
RULES = sorted(glob.glob(os.path.join(OBS, "prometheus", "rules", "*.rules.yml")))
TESTS = sorted(glob.glob(os.path.join(OBS, "prometheus", "tests", "*.test.yml")))
DASHBOARDS = sorted(glob.glob(os.path.join(OBS, "dashboards", "*.json")))
ALERTMANAGER = os.path.join(OBS, "alertmanager", "alertmanager.yml")
RUNBOOKS = os.path.join(ROOT, "docs", "runbooks")
RUNBOOK_URL = "https://github.com/palm-dao/palm/blob/main/docs/runbooks/{}.md"
RUNBOOK_SECTIONS = ("## What it means", "## Confirm", "## Mitigate", "## Recover")
SEVERITIES = {"critical", "warning"}
# The labels the log shipper attaches to every line (docs/observability.md).
LOKI_LABELS = {"service", "level", "namespace", "pod", "container"}
# The only template actions alertmanager.yml may hold: the ExternalSecret's keys.
ESO_KEYS = {"telegram_bot_token"}
RECEIVER = {"critical": "telegram-oncall", "warning": "chat"}
# Series Prometheus makes itself for each target.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
             "scrape_samples_post_metric_relabeling", "scrape_series_added", "ALERTS", "ALERTS_FOR_STATE"}

failures: list[str] = []


def fail(message: str) -> None:
    failures.append(message)
    print(f"  FAIL {message}", file=sys.stderr)


def rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


def load_rules() -> list[tuple[str, dict]]:
    """(file, rule) for every rule of every rule file."""
    out = []
    for path in RULES:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                out.append((path, rule))
    return out


# ---------------------------------------------------------------- static

def check_rules_and_runbooks() -> set[str]:
    alerts: set[str] = set()
    for path, rule in load_rules():
        name = rule.get("alert")
        if name is None:
            if not str(rule.get("record", "")).count(":"):
                fail(f"{rel(path)}: recording rule {rule.get('record')} does not follow level:metric:operations")
            continue
        alerts.add(name)
        labels, ann = rule.get("labels", {}), rule.get("annotations", {})
        if labels.get("severity") not in SEVERITIES:
            fail(f"{rel(path)}: {name} has severity {labels.get('severity')!r}, not critical|warning")
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                fail(f"{rel(path)}: {name} has no annotations.{key}")
        url = ann.get("runbook_url", "")
        if url != RUNBOOK_URL.format(name):
            fail(f"{rel(path)}: {name}'s runbook_url is {url!r}, expected {RUNBOOK_URL.format(name)}")
        # The runbook the URL names must exist in this repo.
        prefix = RUNBOOK_URL.format("")[: -len(".md")]
        if url.startswith(prefix):
            target = os.path.join(ROOT, "docs", "runbooks", url[len(prefix):])
            if not os.path.isfile(target):
                fail(f"{rel(path)}: {name}'s runbook_url has no file: {rel(target)}")
            else:
                with open(target, encoding="utf-8") as f:
                    text = f.read()
                for section in RUNBOOK_SECTIONS:
                    if section not in text:
                        fail(f"{rel(target)}: no '{section}' section")
    for runbook in glob.glob(os.path.join(RUNBOOKS, "*.md")):
        name = os.path.basename(runbook)[:-3]
        if name != "README" and name not in alerts:
            fail(f"{rel(runbook)}: no alert rule named {name}")
    print(f"rules: {len(alerts)} alerts in {len(RULES)} files, each with severity, summary, "
          f"description and a runbook in docs/runbooks/")
    return alerts


def check_unit_test_coverage(alerts: set[str]) -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    covered_files: set[str] = set()
    for path in TESTS:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for rule_file in doc.get("rule_files", []):
            covered_files.add(os.path.normpath(os.path.join(os.path.dirname(path), rule_file)))
        for test in doc.get("tests", []):
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    for path in RULES:
        if os.path.normpath(path) not in covered_files:
            fail(f"{rel(path)}: no test file loads it")
    for name in sorted(alerts):
        if name not in firing:
            fail(f"{name}: no promtool test shows it firing")
        if name not in quiet:
            fail(f"{name}: no promtool test shows it not firing")
    print(f"promtool tests: {len(TESTS)} files; every alert shown firing and not firing")


def dashboard_targets(dash: dict):
    """(panel title, target) for every target, rows' nested panels included."""
    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))
    for panel in panels(dash.get("panels", [])):
        for target in panel.get("targets", []):
            yield panel.get("title", "?"), target


def check_dashboards() -> None:
    for path in DASHBOARDS:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
        variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
        ds = variables.get("datasource")
        if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
            fail(f"{rel(path)}: no `datasource` variable of type datasource (prometheus)")
        svc = variables.get("service")
        query = svc and svc.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if not svc or query != "label_values(palm_build_info, service)":
            fail(f"{rel(path)}: no `service` variable from label_values(palm_build_info, service)")
        uses_loki = False
        for title, target in dashboard_targets(dash):
            uid = (target.get("datasource") or {}).get("uid")
            kind = (target.get("datasource") or {}).get("type")
            if kind == "prometheus" and uid != "${datasource}":
                fail(f"{rel(path)}: panel {title!r} uses datasource {uid!r}, not ${{datasource}}")
            elif kind == "loki":
                uses_loki = True
                if uid != "${loki}":
                    fail(f"{rel(path)}: panel {title!r} uses datasource {uid!r}, not ${{loki}}")
                for selector in re.findall(r"\{([^{}]*)\}", target["expr"]):
                    for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", selector):
                        if label not in LOKI_LABELS:
                            fail(f"{rel(path)}: panel {title!r} selects on label {label!r}, "
                                 f"not in the log label set {sorted(LOKI_LABELS)}")
            elif kind not in ("prometheus", "loki"):
                fail(f"{rel(path)}: panel {title!r} has a target without a prometheus/loki datasource")
        if uses_loki:
            lv = variables.get("loki")
            if not lv or lv.get("type") != "datasource" or lv.get("query") != "loki":
                fail(f"{rel(path)}: Loki panels but no `loki` datasource variable")
    print(f"dashboards: {len(DASHBOARDS)} ({', '.join(os.path.basename(p) for p in DASHBOARDS)}); "
          f"datasources as variables, Loki selectors within {sorted(LOKI_LABELS)}")


def amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["amtool", *args], capture_output=True, text=True, check=False)


def check_alertmanager(tmp: str) -> None:
    with open(ALERTMANAGER, encoding="utf-8") as f:
        text = f.read()
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    actions = re.findall(r"\{\{\s*(.*?)\s*\}\}", body)
    for action in actions:
        if not (action.startswith(".") and action[1:] in ESO_KEYS):
            fail(f"{rel(ALERTMANAGER)}: template action {{{{ {action} }}}} — only the ExternalSecret's "
                 f"{sorted(ESO_KEYS)} may appear (message formats belong in templates/)")
    # As committed, and as the ExternalSecret renders it.
    rendered = os.path.join(tmp, "alertmanager.rendered.yml")
    with open(rendered, "w", encoding="utf-8") as f:
        f.write(re.sub(r"\{\{\s*\.(\w+)\s*\}\}", lambda m: f"dummy-{m.group(1)}-0123456789", text))
    templates = os.path.join(tmp, "templates")
    if not os.path.islink(templates):
        os.symlink(os.path.join(OBS, "alertmanager", "templates"), templates)
    for path in (ALERTMANAGER, rendered):
        result = amtool("check-config", path)
        if result.returncode != 0:
            fail(f"amtool check-config {rel(path) if path == ALERTMANAGER else 'rendered config'}: "
                 f"{result.stdout}{result.stderr}")
    # Every alert reaches the receiver its severity names, and only that one.
    cases = 0
    for _, rule in load_rules():
        name = rule.get("alert")
        if not name:
            continue
        severity = rule["labels"]["severity"]
        labels = [f"alertname={name}", f"severity={severity}", "service=palmdao", "queue=q", "job=palmdao"]
        result = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER}", *labels)
        got = result.stdout.strip()
        cases += 1
        if result.returncode != 0 or got != RECEIVER[severity]:
            fail(f"route of {name} ({severity}): amtool answers {got!r}, expected {RECEIVER[severity]!r}")
        if severity != "critical" and "telegram" in got:
            fail(f"route of {name} ({severity}): a warning reaches Telegram")
    # Explicit assertions, independent of today's rules.
    for labels, want in (
        (["severity=critical", "alertname=Any"], "telegram-oncall"),
        (["severity=warning", "alertname=Any"], "chat"),
        (["alertname=NoSeverity"], "chat"),
    ):
        result = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER}",
                        f"--verify.receivers={want}", *labels)
        cases += 1
        if result.returncode != 0:
            fail(f"route of {' '.join(labels)}: {result.stdout.strip()!r}, expected {want!r}")
    print(f"alertmanager: check-config passes (as committed and as rendered by the ExternalSecret); "
          f"{cases} route tests: critical → telegram-oncall, warning → chat, none of them warnings on Telegram")


def static(tmp: str) -> None:
    alerts = check_rules_and_runbooks()
    check_unit_test_coverage(alerts)
    check_dashboards()
    check_alertmanager(tmp)


# ---------------------------------------------------------------- live

def substitute(expr: str, service: str) -> str:
    """Grafana's variables, as a Grafana with this service selected sends them."""
    escaped = re.escape(service)
    for pattern, value in (
        (r"\$\{service:regex\}", escaped), (r"\$\{service\}", service), (r"\$service\b", service),
        (r"\$__rate_interval\b", "1m"), (r"\$__interval\b", "30s"), (r"\$__range\b", "1h"),
    ):
        expr = re.sub(pattern, lambda _m, v=value: v, expr)
    return expr


def metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            elif node.matchers:
                for m in node.matchers.matchers:
                    if m.name == "__name__":
                        names.add(m.value)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def prom_get(base: str, path: str, params: dict) -> dict:
    url = f"{base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as error:
        return json.load(error)


def live(base: str) -> None:
    services = prom_get(base, "/api/v1/label/service/values", {"match[]": "palm_build_info"})["data"]
    print(f"live: services reporting palm_build_info: {', '.join(services) or 'none'}")
    if not services:
        fail("no scraped target exports palm_build_info{service}")
        services = ["palmdao"]
    # (where, expression) — dashboards per selected service, rules as written.
    exprs: list[tuple[str, str]] = []
    for path in DASHBOARDS:
        with open(path, encoding="utf-8") as f:
            dash = json.load(f)
        for var in dash.get("templating", {}).get("list", []):
            query = var.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            if var.get("type") == "query" and isinstance(query, str):
                m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query.strip())
                if not m:
                    fail(f"{rel(path)}: variable {var['name']}: cannot read {query!r}")
                    continue
                exprs.append((f"{rel(path)} variable {var['name']}", m.group(1)))
        for title, target in dashboard_targets(dash):
            if (target.get("datasource") or {}).get("type") != "prometheus":
                continue
            for service in services:
                exprs.append((f"{rel(path)} panel {title!r} [{service}]", substitute(target["expr"], service)))
    for path, rule in load_rules():
        exprs.append((f"{rel(path)} {rule.get('alert') or rule.get('record')}", str(rule["expr"])))

    exported = set(prom_get(base, "/api/v1/label/__name__/values", {})["data"])
    used: dict[str, set[str]] = {}
    evaluated = 0
    for where, expr in exprs:
        try:
            for name in metric_names(expr):
                used.setdefault(name, set()).add(where.split(" [")[0])
        except ValueError as error:
            fail(f"{where}: does not parse: {error}: {expr}")
            continue
        answer = prom_get(base, "/api/v1/query", {"query": expr})
        evaluated += 1
        if answer.get("status") != "success":
            fail(f"{where}: {answer.get('errorType')}: {answer.get('error')}: {expr}")
    print(f"live: {evaluated} expressions evaluated against Prometheus ({len(exprs)} collected)")

    missing = sorted(n for n in used if n not in exported and n not in SYNTHETIC)
    for name in missing:
        fail(f"metric {name} is exported by no scraped target; used by: " + "; ".join(sorted(used[name])))
    print(f"live: {len(used)} metric names used, {len(used) - len(missing)} exported, "
          f"{len(missing)} missing{': ' + ', '.join(missing) if missing else ''}")

    # The queue alerts join the services' `queue` label with RabbitMQ's.
    palm = prom_get(base, "/api/v1/query", {"query": "count by (queue) (palm_amqp_consumed_total)"})
    rabbit = prom_get(base, "/api/v1/query", {"query": "count by (queue) (rabbitmq_queue_consumers)"})
    rabbit_queues = {r["metric"].get("queue") for r in rabbit.get("data", {}).get("result", [])}
    palm_queues = {r["metric"].get("queue") for r in palm.get("data", {}).get("result", [])}
    for queue in sorted(palm_queues - rabbit_queues):
        fail(f"palm_amqp_consumed_total{{queue={queue!r}}} has no rabbitmq_queue_consumers series with that queue label")
    if palm_queues:
        print(f"live: the services' queue label matches RabbitMQ's for {len(palm_queues & rabbit_queues)} queues")

    # Prometheus evaluates the loaded rules itself: none may report an error.
    groups = prom_get(base, "/api/v1/rules", {})["data"]["groups"]
    loaded = 0
    for group in groups:
        for rule in group["rules"]:
            loaded += 1
            if rule.get("health") not in ("ok", "unknown") or rule.get("lastError"):
                fail(f"rule {rule.get('name')} in Prometheus: health {rule.get('health')}: {rule.get('lastError')}")
    print(f"live: Prometheus loaded {loaded} rules in {len(groups)} groups, none unhealthy")


# ---------------------------------------------------------------- self-test

def selftest(tmp: str, base: str) -> None:
    """Plants one fault of each kind in a copy of the tree; each must be named."""
    import shutil
    copy = os.path.join(tmp, "selftest")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(OBS, os.path.join(copy, "observability"))
    shutil.copytree(RUNBOOKS, os.path.join(copy, "docs", "runbooks"))
    am = os.path.join(copy, "observability", "alertmanager", "alertmanager.yml")
    with open(am, encoding="utf-8") as f:
        text = f.read()
    routed = text.replace('    - receiver: chat\n      matchers:\n        - severity="warning"',
                          '    - receiver: telegram-oncall\n      matchers:\n        - severity="warning"')
    routed = routed.replace("send_resolved: true\n  - name: chat",
                            "send_resolved: true\n        message: '{{ template \"x\" . }}'\n  - name: chat")
    with open(am, "w", encoding="utf-8") as f:
        f.write(routed)
    os.remove(os.path.join(copy, "docs", "runbooks", "PalmLeaseFlapping.md"))
    logs_path = os.path.join(copy, "observability", "dashboards", "logs.json")
    with open(logs_path, encoding="utf-8") as f:
        logs = json.load(f)
    logs["panels"][-1]["targets"][0]["expr"] = '{service=~"$service", trace_id="x"}'
    with open(logs_path, "w", encoding="utf-8") as f:
        json.dump(logs, f)
    svc_path = os.path.join(copy, "observability", "dashboards", "services.json")
    with open(svc_path, encoding="utf-8") as f:
        svc = json.load(f)
    panel = next(p for p in svc["panels"] if p.get("targets"))
    panel["targets"] += [
        {"datasource": {"type": "prometheus", "uid": "${datasource}"}, "refId": "Y",
         "expr": 'sum(rate(palm_no_such_metric_total{service=~"$service"}[$__rate_interval]))'},
        {"datasource": {"type": "prometheus", "uid": "${datasource}"}, "refId": "Z",
         "expr": 'histogram_quantile(0.99, rate(palm_ready[5m]), 1)'},
        {"datasource": {"type": "prometheus", "uid": "fixed-uid"}, "refId": "W", "expr": "palm_ready"},
    ]
    with open(svc_path, "w", encoding="utf-8") as f:
        json.dump(svc, f)
    env = dict(os.environ, PALM_OBS_ROOT=copy)
    me = os.path.abspath(__file__)
    out = ""
    for args in (["static", os.path.join(tmp, "selftest-static")], ["live", base]):
        os.makedirs(os.path.join(tmp, "selftest-static"), exist_ok=True)
        result = subprocess.run([sys.executable, me, *args], env=env, capture_output=True, text=True, check=False)
        out += result.stdout + result.stderr
        if result.returncode == 0:
            fail(f"self-test: `check.py {args[0]}` passed a tree with planted faults")
    expected = {
        "a warning routed to Telegram": "a warning reaches Telegram",
        "a template action in alertmanager.yml": "template action {{ template",
        "a missing runbook": "PalmLeaseFlapping's runbook_url has no file",
        "a Loki label outside the set": "selects on label 'trace_id'",
        "a fixed datasource uid": "uses datasource 'fixed-uid'",
        "an unexported metric": "metric palm_no_such_metric_total is exported by no scraped target",
        "an expression Prometheus refuses": "histogram_quantile(0.99, rate(palm_ready[5m]), 1)",
    }
    for fault, message in expected.items():
        if message not in out:
            fail(f"self-test: {fault} was not reported (expected {message!r})")
    if not failures:
        print(f"self-test: each of {len(expected)} planted faults is reported")
    else:
        print(out, file=sys.stderr)


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "static":
        static(sys.argv[2])
    elif len(sys.argv) >= 3 and sys.argv[1] == "live":
        live(sys.argv[2].rstrip("/"))
    elif len(sys.argv) >= 4 and sys.argv[1] == "selftest":
        selftest(sys.argv[2], sys.argv[3].rstrip("/"))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    if failures:
        print(f"check-observability: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
