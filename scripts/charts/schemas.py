#!/usr/bin/env python3
"""Writes values.schema.json for the four service charts and charts/palm-apps.

The schemas share most of their shape (image, pod, probes, monitoring,
network peers, ExternalSecret), so they are built here from one description
rather than kept as four hand-edited copies. Every object is strict
(`additionalProperties: false`), so a misspelt or unknown key is refused by
`helm lint`/`helm template`. The `config` part mirrors each service's
settings (the PALM__ keys, README "Configuration") without its secrets, which
only the ExternalSecret can provide.

    schemas.py            rewrite the files
    schemas.py --check    exit 1 if a committed file differs (make check-charts)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def obj(props: dict, required: list[str] | None = None, **extra) -> dict:
    schema = {"type": "object", "additionalProperties": False, "properties": props}
    schema["required"] = sorted(props) if required is None else required
    schema.update(extra)
    return schema


def string(**extra) -> dict:
    return {"type": "string", **extra}


def integer(minimum: int | None = None, maximum: int | None = None, nullable: bool = False) -> dict:
    schema: dict = {"type": ["integer", "null"] if nullable else "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def opt(schema: dict) -> dict:
    """The same schema, null allowed (null: the service's default)."""
    schema = dict(schema)
    kind = schema["type"]
    schema["type"] = [kind, "null"] if isinstance(kind, str) else kind
    return schema


BOOL = {"type": "boolean"}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
LABELS = {"type": "object", "additionalProperties": {"type": "string"},
          "propertyNames": {"not": {"enum": ["app.kubernetes.io/name", "app.kubernetes.io/instance"]}}}
QUANTITY = {"type": ["string", "number"], "pattern": "^[0-9.]+[a-zA-Z]*$"}
DURATION = string(pattern=r"^[0-9]+(ms|s|m|h)$")
PORT = integer(1, 65535)
DURATION_DAYS = string(pattern=r"^[0-9]+(d|h|w|y)$")
SNOWFLAKE = string(pattern=r"^[0-9]{1,20}$")

RESOURCES = obj({
    "requests": obj({"cpu": QUANTITY, "memory": QUANTITY}),
    "limits": obj({"cpu": QUANTITY, "memory": QUANTITY}),
})
PROBE = obj({"periodSeconds": integer(1), "failureThreshold": integer(1), "timeoutSeconds": integer(1)})
PEER = obj({"namespace": string(minLength=1), "podLabels": STRING_MAP})
PORT_PEER = obj({"namespace": string(minLength=1), "podLabels": STRING_MAP, "port": PORT})
OTLP_PEER = obj({"enabled": BOOL, "namespace": string(minLength=1), "podLabels": STRING_MAP, "port": PORT})
CIDR = string(pattern=r"^[0-9.]+/[0-9]{1,2}$")

# Settings sections (without secrets), shared where the services share them.
TELEMETRY = obj({"log_level": string(minLength=1), "otlp_endpoint": opt(string(pattern="^https?://")),
                 "sample_ratio": {"type": ["number", "null"], "minimum": 0, "maximum": 1}})
SHUTDOWN = obj({"grace_ms": integer(1000, 600000)})
AMQP = obj({
    "prefix": string(pattern=r"^[A-Za-z0-9._-]+$"),
    "prefetch": integer(1, 65535, True), "concurrency": integer(1, 65535, True),
    "publish_window": integer(1, 65535, True), "publish_timeout_ms": integer(1, None, True),
    "delivery_limit": integer(1, None, True), "redelivery_limit": integer(1, None, True),
    "retry_delays_ms": {"type": ["array", "null"], "minItems": 1, "items": integer(1)},
    "reconnect_min_ms": integer(1, None, True), "reconnect_max_ms": integer(1, None, True),
})
MONGO = obj({"database": string(pattern=r'^[^/\\. "$]+$'), "secondary_preferred": opt(BOOL),
             "server_selection_timeout_ms": integer(1, None, True), "command_metrics": opt(BOOL)})
SIWE = {"domain": string(minLength=1), "uri": string(pattern="^https?://"),
        "chain_ids": {"type": "array", "minItems": 1, "items": integer(1)},
        "clock_skew_secs": integer(0, None, True)}


def common(service: str) -> dict:
    return {
        "nameOverride": string(), "fullnameOverride": string(), "commonLabels": LABELS,
        "image": obj({
            "repository": string(minLength=1),
            # <version>-<YYYY-MM-DD> as the release job writes it; empty: appVersion
            "tag": string(pattern=r"^$|^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$"),
            "digest": string(pattern=r"^$|^sha256:[0-9a-f]{64}$"),
            "pullPolicy": {"enum": ["IfNotPresent", "Always"]},
        }),
        "imagePullSecrets": {"type": "array", "items": obj({"name": string(minLength=1)})},
        "ports": obj({"admin": PORT}),
        "resources": RESOURCES,
        "securityContext": obj({"runAsUser": integer(1000)}),
        "probes": obj({"startup": PROBE, "liveness": PROBE, "readiness": PROBE}),
        "lifecycle": obj({"preStopSleepSeconds": integer(1, 120), "terminationMarginSeconds": integer(1, 120)}),
        "topologySpread": obj({"maxSkew": integer(1),
                               "whenUnsatisfiable": {"enum": ["ScheduleAnyway", "DoNotSchedule"]}}),
        "podAnnotations": STRING_MAP, "podLabels": LABELS, "priorityClassName": string(),
        "nodeSelector": STRING_MAP, "tolerations": {"type": "array", "items": {"type": "object"}},
        "affinity": {"type": "object"},
        "serviceAccount": obj({"create": BOOL, "name": string(),
                               "roleArn": string(pattern=r"^$|^arn:aws:iam::[0-9]{12}:role/.+$"),
                               "annotations": STRING_MAP}),
        "metrics": obj({
            "serviceMonitor": obj({"enabled": BOOL, "interval": DURATION, "scrapeTimeout": DURATION,
                                   "labels": STRING_MAP}),
            "prometheusRule": obj({"enabled": BOOL, "labels": STRING_MAP}),
            "dashboards": obj({"enabled": BOOL, "sidecarLabel": string(minLength=1),
                               "sidecarLabelValue": string(), "folder": string()}),
        }),
    }


def external_secret(keys: dict[str, bool]) -> dict:
    """keys: environment variable → required."""
    return obj({
        "secretStore": obj({"kind": {"enum": ["ClusterSecretStore", "SecretStore"]}, "name": string(minLength=1)}),
        "refreshInterval": DURATION,
        "remoteKey": string(minLength=1),
        "keys": obj({key: string(minLength=1) for key in keys},
                    required=sorted(k for k, needed in keys.items() if needed)),
    })


def network(peers: dict) -> dict:
    return obj({"enabled": BOOL, "dns": PEER, "prometheus": PEER, "uptimeKuma": PEER, "otlp": OTLP_PEER, **peers})


def strategy() -> dict:
    return obj({"type": {"const": "RollingUpdate"},
                "rollingUpdate": obj({"maxSurge": {"type": ["integer", "string"]},
                                      "maxUnavailable": {"type": ["integer", "string"]}})})


def hpa(extra: dict | None = None) -> dict:
    props = {"enabled": BOOL, "minReplicas": integer(1), "maxReplicas": integer(1),
             "targetCPUUtilizationPercentage": integer(1, 100), "scaleDownStabilizationSeconds": integer(0, 3600)}
    props.update(extra or {})
    return obj(props)


def palmdao() -> dict:
    props = common("palmdao")
    props["ports"] = obj({"http": PORT, "admin": PORT})
    props.update({
        "replicas": integer(1), "strategy": strategy(), "autoscaling": hpa(),
        "pdb": obj({"minAvailable": integer(0)}),
        "ingress": obj({
            "enabled": BOOL, "className": string(minLength=1), "host": string(pattern=r"^[a-z0-9.-]+$"),
            "certificateArn": string(pattern=r"^$|^arn:aws:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$"),
            "wafAclArn": string(pattern=r"^$|^arn:aws:wafv2:[a-z0-9-]+:[0-9]{12}:regional/webacl/.+$"),
            "sslPolicy": string(minLength=1), "groupName": string(),
            "sourceCIDRs": {"type": "array", "minItems": 1, "items": CIDR}, "annotations": STRING_MAP,
        }),
        "externalSecret": external_secret({"PALM__AMQP__URL": True, "PALM__MONGO__URL": True,
                                           "PALM__AUTH__SESSION_KEY": True}),
        "networkPolicy": network({"rabbitmq": PORT_PEER, "mongodb": PORT_PEER}),
        "config": obj({
            "telemetry": TELEMETRY, "shutdown": SHUTDOWN, "amqp": AMQP, "mongo": MONGO,
            "outbox": obj({"batch_size": integer(1, None, True), "poll_interval_ms": integer(1, None, True),
                           "prompt_grace_ms": integer(100, None, True),
                           "lease_ttl_ms": integer(300, None, True),
                           "idempotency_retention_hours": integer(1, None, True)}),
            "http": obj({"body_limit_bytes": integer(1024, None, True), "request_timeout_ms": integer(1, None, True),
                         "rate_limit_per_second": integer(1, None, True), "rate_limit_burst": integer(1, None, True)}),
            "auth": obj({**SIWE, "nonce_ttl_secs": integer(1, None, True), "session_ttl_secs": integer(1, None, True)}),
            "communities": obj({"create_min_level": integer(1, 10, True)}),
            "proposals": obj({"scheduler_interval_ms": integer(1, None, True),
                              "close_grace_ms": integer(0, None, True), "lease_ttl_ms": integer(300, None, True),
                              "tally_max_age_ms": integer(0, None, True)}),
        }),
    })
    return props


def palmvalidator() -> dict:
    props = common("palmvalidator")
    props.update({
        "replicas": integer(1), "strategy": strategy(),
        "autoscaling": hpa({"queueLength": integer(1), "activationQueueLength": integer(0),
                            "pollingInterval": integer(1), "cooldownPeriod": integer(0)}),
        "pdb": obj({"minAvailable": integer(0)}),
        "externalSecret": external_secret({"PALM__AMQP__URL": True}),
        "networkPolicy": network({"rabbitmq": PORT_PEER}),
        "config": obj({
            "telemetry": TELEMETRY, "shutdown": SHUTDOWN, "amqp": AMQP, "auth": obj(SIWE),
            "votes": obj({"domain_name": opt(string(minLength=1)), "domain_version": opt(string(minLength=1)),
                          "chain_id": integer(1, None, True)}),
        }),
    })
    return props


def palmvalidator_discord() -> dict:
    props = common("palmvalidator-discord")
    props.update({
        # One process owns the bot token's limits: 0 (stopped) or 1, never more,
        # and no autoscaling or strategy keys exist for this chart.
        "replicas": integer(0, 1),
        "pdb": obj({"maxUnavailable": integer(1)}),
        "externalSecret": external_secret({"PALM__AMQP__URL": True, "PALM__DISCORD__CLIENT_SECRET": True,
                                           "PALM__DISCORD__BOT_TOKEN": False}),
        "networkPolicy": network({"rabbitmq": PORT_PEER, "discord": obj({
            "cidr": CIDR, "except": {"type": "array", "items": CIDR}, "port": PORT})}),
        "config": obj({
            "telemetry": TELEMETRY, "shutdown": SHUTDOWN, "amqp": AMQP,
            "discord": obj({
                "base_url": opt(string(pattern="^https?://")), "client_id": SNOWFLAKE,
                "min_account_age_days": integer(0, None, True), "guild_id": opt(SNOWFLAKE),
                "require_guild_membership": opt(BOOL), "grant_role_id": opt(SNOWFLAKE),
                "max_requests_per_second": integer(1, 49, True), "invalid_request_budget": integer(1, 9999, True),
                "request_timeout_ms": integer(1, None, True), "max_retries": integer(0, None, True),
                "retry_min_ms": integer(1, None, True), "retry_max_ms": integer(1, None, True),
                "probe_interval_ms": integer(1, None, True),
            }),
        }),
    })
    return props


def palmplatformmetrics() -> dict:
    props = common("palmplatformmetrics")
    props.update({
        "replicas": integer(1, 2), "strategy": strategy(),
        "pdb": obj({"maxUnavailable": integer(1)}),
        "externalSecret": external_secret({"PALM__MONGO__URL": True}),
        "networkPolicy": network({"mongodb": PORT_PEER}),
        "config": obj({"telemetry": TELEMETRY, "shutdown": SHUTDOWN, "mongo": MONGO}),
    })
    return props


def palm_apps() -> dict:
    def upstream(**extra) -> dict:
        return obj({"enabled": BOOL, "repoURL": string(pattern=r"^(https://|oci://)"), "chart": string(minLength=1),
                    # pinned: an exact version, never a range
                    "version": string(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$"), "syncWave": integer(-100, 100), **extra})
    service = obj({"enabled": BOOL, "syncWave": integer(-100, 100)})
    ns = string(pattern=r"^[a-z0-9-]+$")
    return {
        "environment": {"enum": ["dev", "stg", "prod"]},
        "repoURL": string(pattern=r"^https://"), "targetRevision": string(minLength=1),
        "project": string(minLength=1), "argocdNamespace": ns, "destinationServer": string(pattern=r"^https://"),
        "namespaces": obj({k: ns if k != "palm" else string(pattern=r"^$|^[a-z0-9-]+$") for k in
                           ["palm", "monitoring", "rabbitmq", "mongodb", "externalSecrets", "keda", "uptimeKuma"]}),
        "syncPolicy": obj({"prune": BOOL, "selfHeal": BOOL, "retryLimit": integer(0, 20)}),
        "services": obj({name: service for name in
                         ["palmdao", "palmvalidator", "palmvalidator-discord", "palmplatformmetrics", "palm-backup"]}),
        "secretStore": obj({"name": string(minLength=1), "region": string(pattern=r"^[a-z]{2}-[a-z]+-[0-9]$"),
                            "roleArn": string(pattern=r"^arn:aws:iam::[0-9]{12}:role/.+$"), "syncWave": integer(-100, 100),
                            "remoteKeys": obj({k: string() for k in ["alertmanager", "grafana", "rabbitmq", "mongodb"]})}),
        "platform": obj({
            "externalSecrets": upstream(), "keda": upstream(),
            "kubePrometheusStack": upstream(retention=DURATION_DAYS, storageSize=QUANTITY,
                                            alertmanagerReplicas=integer(1, 5)),
            "loki": upstream(replicas=integer(1, 10), bucket=string(minLength=3),
                             roleArn=string(pattern=r"^arn:aws:iam::[0-9]{12}:role/.+$"), retention=DURATION),
            "alloy": upstream(),
            "rabbitmq": upstream(replicas={"const": 3}, storageSize=QUANTITY, resources=RESOURCES),
            "mongodb": upstream(replicas={"const": 3}, replicaSetName=string(pattern=r"^[A-Za-z0-9_-]+$"),
                                database=string(pattern=r'^[^/\\. "$]+$'), storageSize=QUANTITY, resources=RESOURCES),
            "uptimeKuma": upstream(storageSize=QUANTITY),
        }),
        "monitoring": obj({"rules": BOOL, "dashboards": BOOL}),
    }


CHARTS = {"palm-apps": palm_apps, "palmdao": palmdao, "palmvalidator": palmvalidator,
          "palmvalidator-discord": palmvalidator_discord, "palmplatformmetrics": palmplatformmetrics}


def render(name: str) -> str:
    schema = obj(CHARTS[name]())
    schema = {"$schema": "https://json-schema.org/draft-07/schema#",
              "title": f"{name} chart values (generated by scripts/charts/schemas.py)", **schema}
    # Helm adds `global` to every chart's values, and the library chart's
    # (empty) values under its name.
    schema["properties"]["global"] = {"type": "object"}
    schema["properties"]["palm-common"] = {"type": "object"}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    check = sys.argv[1:] == ["--check"]
    stale = []
    for name in CHARTS:
        path = ROOT / "charts" / name / "values.schema.json"
        text = render(name)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
    if stale:
        print("schemas: out of date (run scripts/charts/schemas.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
