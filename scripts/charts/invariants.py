#!/usr/bin/env python3
"""Invariants over the rendered charts, per environment.

Input: rendered releases, each a YAML file named <chart>--<scenario>.yaml,
grouped by scenario so that the releases of one environment are checked
together (a Service must not select another release's pods).

- every container (and init container) runs non-root, with a read-only root
  file system, no privilege escalation, all capabilities dropped, and cpu
  and memory limits; no pod mounts a service-account token;
- palmvalidator-discord: at most one replica, strategy Recreate, and no
  autoscaler; palmplatformmetrics: one or two replicas, no autoscaler;
- no Deployment is the target of two autoscalers (HPA + KEDA ScaledObject,
  which makes its own HPA); a Deployment with an autoscaler has no
  `replicas`, one without has;
- every Service's selector matches exactly its own release's pods, and so do
  the ServiceMonitor's (the Service), PDB's and NetworkPolicy's selectors;
- secrets only from the ExternalSecret: no Secret rendered, no env value or
  ConfigMap key holding a secret setting, the ExternalSecret carries only
  secret settings and its Secret is what the pod reads;
- probes on the admin port (/healthz, /readyz, a startup probe), a preStop
  pause, and terminationGracePeriodSeconds above pause + shutdown.grace_ms;
- palmdao trusts X-Forwarded-For exactly when its ALB Ingress exists;
- palmvalidator's ScaledObject has a CPU and a RabbitMQ trigger on its jobs
  queue, authenticated from the ExternalSecret's Secret;
- per environment, the NetworkPolicies let Uptime Kuma reach every target of
  ops/uptime-kuma/monitors.yaml (the public API through the ALB's ipBlock)
  and Prometheus every ServiceMonitor endpoint (reachability.py).

    invariants.py FILE...        check; exit 1 listing every violation
    invariants.py --self-test FILE   break a good release in each way and
                                 show every break is caught
"""
from __future__ import annotations

import copy
import sys
from collections import defaultdict
from pathlib import Path

import yaml

import reachability

SECRET_SETTINGS = {"PALM__AMQP__URL", "PALM__MONGO__URL", "PALM__AUTH__SESSION_KEY",
                   "PALM__DISCORD__CLIENT_SECRET", "PALM__DISCORD__BOT_TOKEN"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def pod_templates(doc):
    if doc["kind"] in WORKLOADS:
        yield doc["spec"]["template"]
    elif doc["kind"] == "CronJob":
        yield doc["spec"]["jobTemplate"]["spec"]["template"]


def matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_release(chart: str, docs: list[dict], where: str) -> list[str]:
    errors: list[str] = []
    err = errors.append
    kinds = defaultdict(list)
    for d in docs:
        kinds[d["kind"]].append(d)
        if not d["metadata"].get("namespace") and d["kind"] not in ("ClusterSecretStore",):
            err(f"{where}: {d['kind']} {d['metadata']['name']} has no namespace")
    if kinds["Secret"]:
        err(f"{where}: renders a Secret ({kinds['Secret'][0]['metadata']['name']}): secrets come from the ExternalSecret only")

    # Containers: non-root, read-only root fs, limits, no token.
    for doc in docs:
        for template in pod_templates(doc):
            spec = template["spec"]
            pod_sc = spec.get("securityContext", {})
            if spec.get("automountServiceAccountToken") is not False:
                err(f"{where}: {doc['kind']} {doc['metadata']['name']} mounts a service-account token")
            for c in spec.get("containers", []) + spec.get("initContainers", []):
                sc = c.get("securityContext", {})
                name = f"{where}: container {c['name']}"
                if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")) or \
                        sc.get("runAsUser", pod_sc.get("runAsUser", 0)) == 0:
                    err(f"{name} may run as root")
                if sc.get("readOnlyRootFilesystem") is not True:
                    err(f"{name} has a writable root file system")
                if sc.get("allowPrivilegeEscalation") is not False:
                    err(f"{name} allows privilege escalation")
                if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                    err(f"{name} keeps capabilities")
                limits = c.get("resources", {}).get("limits", {})
                if not ("cpu" in limits and "memory" in limits):
                    err(f"{name} lacks cpu and memory limits")
                for item in c.get("env", []):
                    if item["name"] in SECRET_SETTINGS and "valueFrom" not in item:
                        err(f"{name} sets secret {item['name']} from a value")

    # Secrets only through the ExternalSecret.
    secret_targets = {}
    for es in kinds["ExternalSecret"]:
        keys = {item["secretKey"] for item in es["spec"]["data"]}
        secret_targets[es["spec"]["target"]["name"]] = keys
        if keys - SECRET_SETTINGS:
            err(f"{where}: ExternalSecret carries non-secret keys {sorted(keys - SECRET_SETTINGS)}")
    for cm in kinds["ConfigMap"]:
        leaked = set(cm.get("data", {})) & SECRET_SETTINGS
        if leaked:
            err(f"{where}: ConfigMap {cm['metadata']['name']} holds secret settings {sorted(leaked)}")

    deployments = kinds["Deployment"]
    if len(deployments) != 1:
        err(f"{where}: expected one Deployment, found {len(deployments)}")
        return errors
    dep = deployments[0]
    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    config = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config.update(next(cm.get("data", {}) for cm in kinds["ConfigMap"]
                               if cm["metadata"]["name"] == source["configMapRef"]["name"]))
        if "secretRef" in source and source["secretRef"]["name"] not in secret_targets:
            err(f"{where}: the pod reads Secret {source['secretRef']['name']}, which no ExternalSecret writes")
    if container["name"] != chart:
        err(f"{where}: container {container['name']} is not named after the chart ({chart})")

    # Probes, drain, grace period.
    probes = {p: container.get(p, {}).get("httpGet", {}) for p in ("startupProbe", "livenessProbe", "readinessProbe")}
    if probes["livenessProbe"].get("path") != "/healthz" or probes["readinessProbe"].get("path") != "/readyz" \
            or not probes["startupProbe"] or any(p.get("port") != "admin" for p in probes.values()):
        err(f"{where}: probes must be /healthz (startup, liveness) and /readyz (readiness) on the admin port")
    pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace_ms = int(config.get("PALM__SHUTDOWN__GRACE_MS", 25000))
    tgps = pod["spec"].get("terminationGracePeriodSeconds", 30)
    if pause < 1:
        err(f"{where}: no preStop pause")
    if tgps * 1000 <= pause * 1000 + grace_ms:
        err(f"{where}: terminationGracePeriodSeconds {tgps} is not above the {pause} s pause + shutdown.grace_ms {grace_ms}")

    # Autoscalers.
    targets = defaultdict(list)
    for hpa in kinds["HorizontalPodAutoscaler"]:
        targets[(hpa["spec"]["scaleTargetRef"]["kind"], hpa["spec"]["scaleTargetRef"]["name"])].append("HPA")
    for so in kinds["ScaledObject"]:
        ref = so["spec"]["scaleTargetRef"]
        targets[(ref.get("kind", "Deployment"), ref["name"])].append("ScaledObject")
    scalers = targets.get(("Deployment", dep["metadata"]["name"]), [])
    if len(scalers) > 1:
        err(f"{where}: Deployment {dep['metadata']['name']} has {len(scalers)} autoscalers ({', '.join(scalers)})")
    if scalers and "replicas" in dep["spec"]:
        err(f"{where}: an autoscaled Deployment must not set replicas (it would fight the autoscaler)")
    if not scalers and "replicas" not in dep["spec"]:
        err(f"{where}: a Deployment without an autoscaler must set replicas")
    for (kind, name) in targets:
        if (kind, name) != ("Deployment", dep["metadata"]["name"]):
            err(f"{where}: an autoscaler targets {kind} {name}, not this release's Deployment")

    if chart == "palmvalidator-discord":
        if dep["spec"].get("replicas", 1) > 1 or scalers:
            err(f"{where}: palmvalidator-discord must run at most one replica and never be autoscaled")
        if dep["spec"].get("strategy", {}).get("type") != "Recreate":
            err(f"{where}: palmvalidator-discord must use strategy Recreate")
    if chart == "palmplatformmetrics" and (scalers or dep["spec"].get("replicas") not in (1, 2)):
        err(f"{where}: palmplatformmetrics runs one or two replicas, not autoscaled")
    if chart == "palmdao":
        trusted = config.get("PALM__HTTP__TRUST_FORWARDED_FOR") == "true"
        if trusted != bool(kinds["Ingress"]):
            err(f"{where}: http.trust_forwarded_for must be true exactly when the ALB Ingress exists")
        for ing in kinds["Ingress"]:
            ann = ing["metadata"].get("annotations", {})
            for key, want in (("alb.ingress.kubernetes.io/scheme", "internet-facing"),
                              ("alb.ingress.kubernetes.io/target-type", "ip")):
                if ann.get(key) != want:
                    err(f"{where}: Ingress needs {key}: {want}")
            for key in ("certificate-arn", "wafv2-acl-arn", "healthcheck-path"):
                if not ann.get(f"alb.ingress.kubernetes.io/{key}"):
                    err(f"{where}: Ingress lacks alb.ingress.kubernetes.io/{key}")
    if chart == "palmvalidator" and kinds["ScaledObject"]:
        so = kinds["ScaledObject"][0]
        types = {t["type"]: t for t in so["spec"]["triggers"]}
        prefix = config.get("PALM__AMQP__PREFIX", "palm")
        rabbit = types.get("rabbitmq", {})
        if "cpu" not in types or rabbit.get("metadata", {}).get("queueName") != f"{prefix}.palmvalidator.jobs":
            err(f"{where}: the ScaledObject needs a cpu trigger and a rabbitmq trigger on {prefix}.palmvalidator.jobs")
        auth = {t["metadata"]["name"]: t for t in kinds["TriggerAuthentication"]}
        ta = auth.get(rabbit.get("authenticationRef", {}).get("name"))
        if not ta or any(ref["name"] not in secret_targets or ref["key"] not in secret_targets[ref["name"]]
                         for ref in ta["spec"].get("secretTargetRef", [])):
            err(f"{where}: the rabbitmq trigger must authenticate from the ExternalSecret's Secret")

    # Selectors of this release's objects select exactly its pods.
    for pdb in kinds["PodDisruptionBudget"]:
        if not matches(pdb["spec"]["selector"]["matchLabels"], pod_labels):
            err(f"{where}: PDB {pdb['metadata']['name']} does not select the pods")
    for np in kinds["NetworkPolicy"]:
        if not matches(np["spec"]["podSelector"]["matchLabels"], pod_labels):
            err(f"{where}: NetworkPolicy {np['metadata']['name']} does not select the pods")
    for sm in kinds["ServiceMonitor"]:
        selected = [s for s in kinds["Service"]
                    if matches(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        if len(selected) != 1:
            err(f"{where}: ServiceMonitor {sm['metadata']['name']} selects {len(selected)} Services")
    return errors


def check_environment(releases: dict[str, list[dict]], where: str) -> list[str]:
    """Every Service selects the pods of exactly one workload: its own release's."""
    errors = []
    pods = [(chart, d["metadata"]["namespace"], t["metadata"]["labels"])
            for chart, docs in releases.items() for d in docs for t in pod_templates(d)]
    for chart, docs in releases.items():
        for svc in (d for d in docs if d["kind"] == "Service"):
            selector = svc["spec"].get("selector", {})
            owners = [c for c, ns, labels in pods
                      if ns == svc["metadata"]["namespace"] and matches(selector, labels)]
            if owners != [chart]:
                errors.append(f"{where}: Service {svc['metadata']['name']} ({chart}) selects the pods of {owners or 'nothing'}")
    return errors


def load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def scenario_of(path: Path) -> tuple[str, str]:
    chart, _, scenario = path.stem.partition("--")
    return chart, scenario


def run(paths: list[Path]) -> list[str]:
    errors = []
    by_scenario: dict[str, dict[str, list[dict]]] = defaultdict(dict)
    for path in paths:
        chart, scenario = scenario_of(path)
        docs = load(path)
        errors += check_release(chart, docs, path.name)
        by_scenario[scenario][chart] = docs
    for scenario, releases in by_scenario.items():
        errors += check_environment(releases, scenario)
        errors += reachability.check(scenario, releases)
    return errors


def self_test_reachability(paths: list[Path]) -> int:
    """Each way of shutting a monitor or a scrape out must be reported."""
    good = {scenario_of(p)[0]: load(p) for p in paths}
    scenario = scenario_of(paths[0])[1]
    errors = reachability.check(scenario, good, complete=False)
    assert not errors, f"the reachability self-test needs reachable releases: {errors}"

    def policy(docs):
        return next(d for d in docs if d["kind"] == "NetworkPolicy")

    def admin_rule(docs):
        return next(r for r in policy(docs)["spec"]["ingress"] if r["ports"][0]["port"] == 9090 and
                    any("podSelector" in peer for peer in r["from"]))

    chart = "palmdao" if "palmdao" in good else next(iter(good))
    breaks = {
        "Uptime Kuma's peer dropped": ("Uptime Kuma may not reach", lambda d: admin_rule(d).update(
            {"from": [p for p in admin_rule(d)["from"]
                      if p["podSelector"]["matchLabels"].get("app.kubernetes.io/name") != "uptime-kuma"]})),
        "Uptime Kuma's namespace misspelt": ("Uptime Kuma may not reach", lambda d: next(
            p for p in admin_rule(d)["from"] if p["podSelector"]["matchLabels"].get("app.kubernetes.io/name") ==
            "uptime-kuma")["namespaceSelector"]["matchLabels"].update({"kubernetes.io/metadata.name": "uptimekuma"})),
        "Prometheus's pod labels wrong": ("Prometheus may not reach", lambda d: next(
            p for p in admin_rule(d)["from"] if p["podSelector"]["matchLabels"].get("app.kubernetes.io/name") ==
            "prometheus")["podSelector"]["matchLabels"].update({"app.kubernetes.io/name": "prometheus-server"})),
        "admin port closed": ("may not reach", lambda d: admin_rule(d)["ports"][0].update(port=9091)),
        "the admin Service port gone": ("has no port 9090", lambda d: next(
            x for x in d if x["kind"] == "Service")["spec"].update(
            ports=[p for p in next(x for x in d if x["kind"] == "Service")["spec"]["ports"] if p["name"] != "admin"])),
    }
    if any(d["kind"] == "Ingress" for d in good[chart]):
        breaks["the ALB's ipBlock dropped"] = ("the ALB (an ipBlock peer) may not reach", lambda d: [
            r.update({"from": [p for p in r["from"] if "ipBlock" not in p]})
            for r in policy(d)["spec"]["ingress"]])
    missed = []
    for name, (message, apply) in breaks.items():
        releases = copy.deepcopy(good)
        apply(releases[chart])
        if not any(message in e for e in reachability.check(scenario, releases, complete=False)):
            missed.append(name)
            print(f"invariants: reachability self-test: '{name}' went unnoticed (expected '{message}')", file=sys.stderr)
    print(f"invariants: reachability self-test on {chart} ({scenario}): {len(breaks) - len(missed)} of "
          f"{len(breaks)} breaks caught", file=sys.stderr)
    return 1 if missed else 0


def self_test(path: Path) -> int:
    """Each break of a good release must be reported."""
    chart, _ = scenario_of(path)
    good = load(path)
    assert not check_release(chart, good, path.name), "the self-test needs a valid release"

    def first(docs, kind):
        return next(d for d in docs if d["kind"] == kind)

    def container(docs):
        return first(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]

    breaks = {
        "root user": lambda d: container(d)["securityContext"].update(runAsNonRoot=False, runAsUser=0)
        or first(d, "Deployment")["spec"]["template"]["spec"]["securityContext"].update(runAsNonRoot=False, runAsUser=0),
        "writable root fs": lambda d: container(d)["securityContext"].update(readOnlyRootFilesystem=False),
        "no limits": lambda d: container(d)["resources"].pop("limits"),
        "secret from a value": lambda d: container(d).setdefault("env", []).append(
            {"name": "PALM__AMQP__URL", "value": "amqp://guest:guest@x/"}),
        "secret in the ConfigMap": lambda d: first(d, "ConfigMap")["data"].update(PALM__MONGO__URL="mongodb://x"),
        "a Secret rendered": lambda d: d.append({"apiVersion": "v1", "kind": "Secret",
                                                "metadata": {"name": "x", "namespace": "n"}, "stringData": {}}),
        "second autoscaler": lambda d: d.append({"kind": "HorizontalPodAutoscaler", "metadata": {"name": "x", "namespace": "n"},
                                                 "spec": {"scaleTargetRef": {"kind": "Deployment",
                                                                             "name": first(d, "Deployment")["metadata"]["name"]}}})
        or d.append({"kind": "ScaledObject", "metadata": {"name": "y", "namespace": "n"},
                     "spec": {"scaleTargetRef": {"name": first(d, "Deployment")["metadata"]["name"]}, "triggers": []}}),
        "grace period too short": lambda d: first(d, "Deployment")["spec"]["template"]["spec"].update(
            terminationGracePeriodSeconds=1),
        "token mounted": lambda d: first(d, "Deployment")["spec"]["template"]["spec"].pop("automountServiceAccountToken"),
        "PDB selects nothing": lambda d: first(d, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].update(x="y"),
    }
    if chart == "palmvalidator-discord":
        breaks["two discord replicas"] = lambda d: first(d, "Deployment")["spec"].update(replicas=2)
        breaks["rolling discord"] = lambda d: first(d, "Deployment")["spec"].update(strategy={"type": "RollingUpdate"})
    missed = []
    for name, apply in breaks.items():
        docs = copy.deepcopy(good)
        apply(docs)
        if not check_release(chart, docs, path.name):
            missed.append(name)
    # A Service selecting another release's pods too.
    other = copy.deepcopy(good)
    for d in other:
        d["metadata"]["name"] = "other-" + d["metadata"]["name"]
    if not check_environment({chart: good, "other": other}, "self-test"):
        missed.append("Service selecting another release's pods")
    for name in missed:
        print(f"invariants: self-test: breaking '{name}' went unnoticed", file=sys.stderr)
    print(f"invariants: self-test on {path.name}: {len(breaks) + 1 - len(missed)} of {len(breaks) + 1} breaks caught",
          file=sys.stderr)
    return 1 if missed else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--self-test"]:
        return max([self_test(Path(p)) for p in argv[1:]] + [self_test_reachability([Path(p) for p in argv[1:]])])
    paths = [Path(p) for p in argv]
    errors = run(paths)
    for error in errors:
        print(f"invariants: {error}", file=sys.stderr)
    print(f"invariants: {len(paths)} rendered releases, {len(errors)} violations", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
