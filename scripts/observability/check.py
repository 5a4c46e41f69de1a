#!/usr/bin/env python3
"""Checks the observability assets under observability/ (docs/observability.md).

  check.py static   rules, runbooks, promtool tests, dashboards, Alertmanager
                    (amtool check-config and route tests); no services needed
  check.py live URL every PromQL expression of every dashboard and rule
                    evaluates against the real Prometheus at URL, and every
                    metric name they use is exported by a scraped target
  check.py alertmanager TMP
                    a real Alertmanager with this config, receivers pointed at
                    a loopback sink: critical alerts reach Telegram, warnings
                    the chat, the inhibition rules hold, the templates render
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
METRICS_DOC = os.path.join(ROOT, "docs", "metrics.md")
EXTERNAL_SECTION = "## Series from outside the services"


def external_names() -> set[str]:
    """The names docs/metrics.md lists as exported by something other than the
    services (kube-state-metrics, a chart's recording rule): the first column
    of the table under EXTERNAL_SECTION. Nothing else is excused."""
    try:
        with open(METRICS_DOC, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return set()
    _, found, section = text.partition(EXTERNAL_SECTION)
    if not found:
        return set()
    section = section.split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Za-z_:][A-Za-z0-9_:]*)` \|", section, re.M))

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
    # Grafana's regex format escapes these (not '-'); none occurs in a service name.
    escaped = re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), service)
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

    used: dict[str, set[str]] = {}
    parsed: list[tuple[str, str]] = []
    for where, expr in exprs:
        try:
            for name in metric_names(expr):
                used.setdefault(name, set()).add(where.split(" [")[0])
            parsed.append((where, expr))
        except ValueError as error:
            fail(f"{where}: does not parse: {error}: {expr}")
    # Series born of the check's traffic (a decided vote, a Discord call)
    # appear once the events went through and a scrape saw them: wait for
    # them rather than for a fixed time.
    import time
    deadline = time.time() + float(os.environ.get("PALM_OBS_NAME_WAIT_SECS", "30"))
    while True:
        exported = set(prom_get(base, "/api/v1/label/__name__/values", {})["data"])
        if all(n in exported or n in SYNTHETIC or n in external_names() for n in used) or time.time() > deadline:
            break
        time.sleep(1)
    evaluated = 0
    for where, expr in parsed:
        answer = prom_get(base, "/api/v1/query", {"query": expr})
        evaluated += 1
        if answer.get("status") != "success":
            fail(f"{where}: {answer.get('errorType')}: {answer.get('error')}: {expr}")
    print(f"live: {evaluated} expressions evaluated against Prometheus ({len(exprs)} collected)")

    external = external_names()
    excused = sorted(n for n in used if n not in exported and n in external)
    missing = sorted(n for n in used if n not in exported and n not in SYNTHETIC and n not in external)
    for name in missing:
        fail(f"metric {name} is exported by no scraped target; used by: " + "; ".join(sorted(used[name])))
    for name in sorted(external - set(used)):
        fail(f"docs/metrics.md lists {name} under '{EXTERNAL_SECTION}' but no rule or dashboard uses it")
    print(f"live: {len(used)} metric names used, {len(used) - len(missing) - len(excused)} exported, "
          f"{len(excused)} from outside the services as docs/metrics.md lists ({', '.join(excused) or 'none'}), "
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


# ---------------------------------------------------------------- alertmanager

def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alertmanager_live(tmp: str) -> None:
    """Runs Debian's Alertmanager on loopback with alertmanager.yml as the
    ExternalSecret renders it, the receivers' URLs pointed at a local sink
    and the group waits shortened; posts alerts and reads what it did."""
    import shutil
    import time
    work = os.path.join(tmp, "alertmanager")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    sink_port, am_port = free_port(), free_port()
    sink_log = os.path.join(work, "sink.jsonl")
    with open(ALERTMANAGER, encoding="utf-8") as f:
        text = f.read()
    webhook_file = os.path.join(work, "chat_webhook_url")
    with open(webhook_file, "w", encoding="utf-8") as f:
        f.write(f"http://127.0.0.1:{sink_port}/chat-webhook")
    text = re.sub(r"\{\{\s*\.telegram_bot_token\s*\}\}", "123456:dummy-token", text)
    text = text.replace("/etc/alertmanager/secrets/chat_webhook_url", webhook_file)
    text = re.sub(r"(\n(\s*)- bot_token: .*\n)", lambda m: m.group(1) + f"{m.group(2)}  api_url: http://127.0.0.1:{sink_port}\n", text)
    text = re.sub(r"group_wait: \S+", "group_wait: 1s", text)
    config = os.path.join(work, "alertmanager.yml")
    with open(config, "w", encoding="utf-8") as f:
        f.write(text)
    os.symlink(os.path.join(OBS, "alertmanager", "templates"), os.path.join(work, "templates"))
    here = os.path.dirname(os.path.abspath(__file__))
    procs = [
        subprocess.Popen([sys.executable, os.path.join(here, "notification_sink.py"), str(sink_port), sink_log],
                         stderr=open(os.path.join(work, "sink.log"), "w")),
        subprocess.Popen(["prometheus-alertmanager", f"--config.file={config}",
                          f"--storage.path={os.path.join(work, 'data')}",
                          f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
                         stderr=open(os.path.join(work, "alertmanager.log"), "w")),
    ]
    base = f"http://127.0.0.1:{am_port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        alerts = [
            ("down", {"alertname": "PalmServiceDown", "severity": "critical", "job": "palmdao", "service": "palmdao", "instance": "a:9090"}),
            ("notready", {"alertname": "PalmServiceNotReady", "severity": "warning", "job": "palmdao", "service": "palmdao", "instance": "a:9090"}),
            ("err-crit", {"alertname": "PalmHTTPErrorRatioHigh", "severity": "critical", "service": "palmdao"}),
            ("err-warn", {"alertname": "PalmHTTPErrorRatioHigh", "severity": "warning", "service": "palmdao"}),
            ("latency", {"alertname": "PalmHTTPLatencyP99High", "severity": "warning", "service": "palmdao"}),
            ("dlq", {"alertname": "PalmDeadLetterQueueNotEmpty", "severity": "warning", "vhost": "/", "queue": "palm.palmvalidator.jobs.dlq"}),
            ("other-ready", {"alertname": "PalmServiceNotReady", "severity": "warning", "job": "palmvalidator", "service": "palmvalidator", "instance": "b:9090"}),
        ]
        payload = [{"labels": labels, "annotations": {
            "summary": f"{labels['alertname']} <{key}> & co", "description": f"test alert {key}",
            "runbook_url": RUNBOOK_URL.format(labels["alertname"])}} for key, labels in alerts]
        request = urllib.request.Request(f"{base}/api/v2/alerts", data=json.dumps(payload).encode(),
                                         headers={"content-type": "application/json"}, method="POST")
        urllib.request.urlopen(request, timeout=5)
        want_inhibited = {"notready", "err-warn", "latency"}
        deadline = time.time() + 20
        delivered: list[dict] = []
        while time.time() < deadline:
            time.sleep(0.5)
            if os.path.exists(sink_log):
                with open(sink_log, encoding="utf-8") as f:
                    delivered = [json.loads(line) for line in f if line.strip()]
            telegram = [d for d in delivered if d["path"].endswith("/sendMessage")]
            chat = [d for d in delivered if d["path"] == "/chat-webhook"]
            if len(telegram) >= 2 and len(chat) >= 2:
                break
        state = json.load(urllib.request.urlopen(f"{base}/api/v2/alerts", timeout=5))
        by_key = {}
        for alert in state:
            for key, labels in alerts:
                if alert["labels"] == labels:
                    by_key[key] = alert
        for key, _ in alerts:
            inhibited = bool(by_key.get(key, {}).get("status", {}).get("inhibitedBy"))
            if inhibited != (key in want_inhibited):
                fail(f"alertmanager: alert {key} inhibited={inhibited}, expected {key in want_inhibited}")
        telegram_text = " ".join(json.loads(d["body"]).get("text", "") for d in delivered if d["path"].endswith("/sendMessage"))
        chat_text = " ".join(d["body"] for d in delivered if d["path"] == "/chat-webhook")
        for needle, where, text_ in (("PalmServiceDown", "Telegram", telegram_text),
                                     ("PalmHTTPErrorRatioHigh", "Telegram", telegram_text),
                                     ("&lt;down&gt; &amp; co", "Telegram (HTML-escaped)", telegram_text),
                                     (RUNBOOK_URL.format("PalmServiceDown"), "Telegram", telegram_text),
                                     ("PalmDeadLetterQueueNotEmpty", "the chat", chat_text),
                                     ("PalmServiceNotReady", "the chat", chat_text)):
            if needle not in text_:
                fail(f"alertmanager: {needle!r} never reached {where}")
        for warning in ("PalmDeadLetterQueueNotEmpty", "PalmServiceNotReady", "[warning]"):
            if warning in telegram_text:
                fail(f"alertmanager: a warning ({warning}) reached Telegram")
        if "PalmServiceDown" in chat_text:
            fail("alertmanager: a critical alert went to the chat instead of Telegram")
        with open(os.path.join(work, "alertmanager.log"), encoding="utf-8") as f:
            errors = [line for line in f if "level=error" in line]
        for line in errors[:5]:
            fail(f"alertmanager logged an error: {line.strip()}")
        print(f"alertmanager (real, loopback receivers): {len(delivered)} notifications; critical → Telegram, "
              f"warnings → chat; inhibited as designed: {', '.join(sorted(want_inhibited))}; templates render")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


# ---------------------------------------------------------------- self-test

def selftest(tmp: str, base: str) -> None:
    """Plants one fault of each kind in a copy of the tree; each must be named."""
    import shutil
    copy = os.path.join(tmp, "selftest")
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(OBS, os.path.join(copy, "observability"))
    shutil.copytree(RUNBOOKS, os.path.join(copy, "docs", "runbooks"))
    shutil.copy(METRICS_DOC, os.path.join(copy, "docs", "metrics.md"))
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
        # kube-state-metrics, but not among docs/metrics.md's listed names
        {"datasource": {"type": "prometheus", "uid": "${datasource}"}, "refId": "V",
         "expr": 'sum(kube_job_status_succeeded{job_name=~".+-restore-check.*"})'},
    ]
    with open(svc_path, "w", encoding="utf-8") as f:
        json.dump(svc, f)
    env = dict(os.environ, PALM_OBS_ROOT=copy, PALM_OBS_NAME_WAIT_SECS="0")
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
        "a kube-state-metrics name docs/metrics.md does not list":
            "metric kube_job_status_succeeded is exported by no scraped target",
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
    elif len(sys.argv) >= 3 and sys.argv[1] == "alertmanager":
        alertmanager_live(sys.argv[2])
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
