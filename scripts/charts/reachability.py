#!/usr/bin/env python3
"""Who must reach the services, and whether the rendered NetworkPolicies let them.

Used by invariants.py over the releases of one scenario (one environment):

- every monitor of ops/uptime-kuma/monitors.yaml: an in-cluster URL
  (http://<service>.${PALM_NAMESPACE}.svc.cluster.local:<port>/...) must be
  reachable from the Uptime Kuma pods; the public API (${PUBLIC_API_HOST})
  through palmdao's Ingress, whose ALB (target type ip) reaches the backend
  port from an ipBlock;
- every ServiceMonitor's endpoint must be reachable from the Prometheus pods
  of kube-prometheus-stack.

Traffic follows Kubernetes: URL host → Service (name, namespace) → Service
port → targetPort (by name or number) → the pods the Service selects and
their container port → the NetworkPolicies selecting those pods. A pod no
Ingress policy selects is open; otherwise some rule of some selecting
policy must admit the source on that port (ports by number or name, peers
by namespaceSelector and/or podSelector with matchLabels/matchExpressions,
namespaces carrying kubernetes.io/metadata.name). The sources' namespaces
come from charts/palm-apps (values.yaml + helm-values/palm-apps/values-<env>.yaml),
their pod labels from the upstream charts' release names there.
"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORS = ROOT / "ops" / "uptime-kuma" / "monitors.yaml"
ENVS = ("dev", "stg", "prod")
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}


def merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def sources(scenario: str) -> dict[str, tuple[str, dict]]:
    """name → (namespace, pod labels) of the in-cluster clients, for the scenario."""
    values = yaml.safe_load((ROOT / "charts/palm-apps/values.yaml").read_text())
    env_file = ROOT / f"helm-values/palm-apps/values-{scenario}.yaml"
    if env_file.exists():
        values = merged(values, yaml.safe_load(env_file.read_text()))
    ns = values["namespaces"]
    return {
        # dirsigler/uptime-kuma-helm: app.kubernetes.io/{name: <chart>, instance: <release>}
        "uptime-kuma": (ns["uptimeKuma"], {"app.kubernetes.io/name": "uptime-kuma",
                                           "app.kubernetes.io/instance": "uptime-kuma"}),
        # prometheus-operator labels the pods of the Prometheus object of the
        # kube-prometheus-stack release (<release>-prometheus).
        "prometheus": (ns["monitoring"], {"app.kubernetes.io/name": "prometheus",
                                          "app.kubernetes.io/instance": "kube-prometheus-stack-prometheus",
                                          "prometheus": "kube-prometheus-stack-prometheus",
                                          "operator.prometheus.io/name": "kube-prometheus-stack-prometheus"}),
    }


def selects(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector; {} selects everything."""
    selector = selector or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, vals = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and key in labels and labels[key] in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def peer_admits(peer: dict, policy_ns: str, src_ns: str, src_labels: dict) -> bool:
    if "ipBlock" in peer:
        return False  # pod-to-pod traffic is matched by selectors, not by pod IPs
    ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
    if ns_sel is None and src_ns != policy_ns:
        return False
    if ns_sel is not None and not selects(ns_sel, {"kubernetes.io/metadata.name": src_ns}):
        return False
    return pod_sel is None or selects(pod_sel, src_labels)


def port_admits(ports: list | None, port: dict) -> bool:
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != port.get("protocol", "TCP"):
            continue
        if "port" not in p or p["port"] in (port["containerPort"], port.get("name")):
            return True
    return False


def ip_block_admits(ports: list | None, peers: list | None, port: dict) -> bool:
    return port_admits(ports, port) and any("ipBlock" in p for p in peers or [])


def admitted(policies: list[dict], pod_ns: str, pod_labels: dict, port: dict, src) -> tuple[bool, str]:
    """src: (namespace, labels) of a pod, or "ipBlock" for traffic from outside the pods."""
    selecting = [p for p in policies if p["metadata"]["namespace"] == pod_ns
                 and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                 and selects(p["spec"].get("podSelector"), pod_labels)]
    if not selecting:
        return True, "no NetworkPolicy isolates the pods"
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            if src == "ipBlock":
                if ip_block_admits(rule.get("ports"), rule.get("from"), port):
                    return True, policy["metadata"]["name"]
            elif port_admits(rule.get("ports"), port) and (
                    not rule.get("from") or any(peer_admits(peer, pod_ns, *src) for peer in rule["from"])):
                return True, policy["metadata"]["name"]
    return False, ", ".join(p["metadata"]["name"] for p in selecting)


class Scenario:
    def __init__(self, releases: dict[str, list[dict]]):
        self.docs = [d for docs in releases.values() for d in docs]
        self.policies = [d for d in self.docs if d["kind"] == "NetworkPolicy"]

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def service(self, name: str, namespace: str) -> dict | None:
        return next((s for s in self.of_kind("Service")
                     if s["metadata"]["name"] == name and s["metadata"]["namespace"] == namespace), None)

    def endpoints(self, svc: dict, port_ref) -> list[tuple[dict, dict, str]]:
        """(pod labels, container port, namespace) behind a Service port (by number or name)."""
        sport = next((p for p in svc["spec"].get("ports", []) if port_ref in (p.get("port"), p.get("name"))), None)
        if sport is None:
            return []
        target = sport.get("targetPort", sport["port"])
        out = []
        ns = svc["metadata"]["namespace"]
        for w in self.of_kind("Deployment") + self.of_kind("StatefulSet") + self.of_kind("DaemonSet"):
            labels = w["spec"]["template"]["metadata"].get("labels", {})
            if w["metadata"]["namespace"] != ns or not svc["spec"].get("selector") \
                    or not selects({"matchLabels": svc["spec"]["selector"]}, labels):
                continue
            for c in w["spec"]["template"]["spec"]["containers"]:
                for cp in c.get("ports", []):
                    if target in (cp["containerPort"], cp.get("name")):
                        out.append((labels, cp, ns))
        return out

    def reach(self, what: str, svc: dict, port_ref, src, src_name: str) -> list[str]:
        pods = self.endpoints(svc, port_ref)
        if not pods:
            return [f"{what}: Service {svc['metadata']['name']} has no port {port_ref} leading to a pod's container port"]
        errors = []
        for labels, cport, ns in pods:
            ok, why = admitted(self.policies, ns, labels, cport, src)
            if not ok:
                errors.append(f"{what}: {src_name} may not reach {svc['metadata']['name']}'s pods on port "
                              f"{cport['containerPort']} ({cport.get('name')}): NetworkPolicy {why} admits no such traffic")
        return errors


def check(scenario: str, releases: dict[str, list[dict]], complete: bool | None = None) -> list[str]:
    """Every monitor target and every ServiceMonitor endpoint is reachable from its client.

    complete: every service of the suite is among the releases (default: for
    an environment; a ci scenario renders one chart), so a monitor whose
    Service is missing is an error rather than skipped."""
    sc = Scenario(releases)
    src = sources(scenario)
    errors: list[str] = []
    if complete is None:
        complete = scenario in ENVS
    namespaces = {d["metadata"]["namespace"] for d in sc.docs if d["kind"] == "Deployment"}
    monitors = yaml.safe_load(MONITORS.read_text())["monitors"]
    for namespace in sorted(namespaces):
        for m in monitors:
            if m.get("type") not in ("http", "keyword", "json-query"):
                continue
            url = urlsplit(m["url"].replace("${PALM_NAMESPACE}", namespace))
            what = f"{scenario}: Uptime Kuma monitor {m['name']!r}"
            if "${PUBLIC_API_HOST}" in m["url"]:
                ingresses = [i for i in sc.of_kind("Ingress") if i["metadata"]["namespace"] == namespace]
                if not ingresses:
                    if complete:
                        errors.append(f"{what}: no Ingress serves the public API in {namespace}")
                    continue
                for ing in ingresses:
                    for rule in ing["spec"].get("rules", []):
                        for path in rule.get("http", {}).get("paths", []):
                            backend = path["backend"]["service"]
                            svc = sc.service(backend["name"], namespace)
                            port = backend["port"].get("number", backend["port"].get("name"))
                            if svc is None:
                                errors.append(f"{what}: the Ingress's backend Service {backend['name']} is not rendered")
                                continue
                            errors += sc.reach(what, svc, port, "ipBlock", "the ALB (an ipBlock peer)")
                continue
            m_host = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?", url.hostname or "")
            if not m_host:
                errors.append(f"{what}: cannot tell which Service {m['url']} names")
                continue
            name, ns = m_host.group(1), m_host.group(2)
            svc = sc.service(name, ns)
            if svc is None:
                if complete or name in releases:
                    errors.append(f"{what}: no Service {name} in {ns} is rendered")
                continue
            port = url.port or (443 if url.scheme == "https" else 80)
            errors += sc.reach(what, svc, port, src["uptime-kuma"], "Uptime Kuma")
    for sm in sc.of_kind("ServiceMonitor"):
        sm_ns = sm["metadata"]["namespace"]
        ns_sel = sm["spec"].get("namespaceSelector") or {}
        allowed = set(ns_sel.get("matchNames") or [sm_ns])
        svcs = [s for s in sc.of_kind("Service")
                if (ns_sel.get("any") or s["metadata"]["namespace"] in allowed)
                and selects(sm["spec"]["selector"], s["metadata"].get("labels", {}))]
        what = f"{scenario}: ServiceMonitor {sm_ns}/{sm['metadata']['name']}"
        if not svcs:
            errors.append(f"{what} selects no Service")
        for svc in svcs:
            for ep in sm["spec"].get("endpoints", []):
                ref = ep.get("port") or ep.get("targetPort")
                errors += sc.reach(f"{what} endpoint {ref}", svc, ref, src["prometheus"], "Prometheus")
    return errors
