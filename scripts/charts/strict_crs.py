#!/usr/bin/env python3
"""Strict validation of the KEDA and prometheus-operator custom resources.

The npm models (validate-crs.mjs) catch wrong types and missing fields but
accept unknown ones. For ScaledObject, TriggerAuthentication, ServiceMonitor
and PrometheusRule the cloudcoil pydantic models carry the CRDs' schemas:
their JSON schemas are made strict here (`additionalProperties: false` on
every object that lists its properties) and every such document in the
given files is validated against them, so a misspelt field fails.

    strict_crs.py FILE...     exit 1 on the first invalid document's report
"""
from __future__ import annotations

import sys
from pathlib import Path

import jsonschema
import yaml
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as monitoring

MODELS = {
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): monitoring.PrometheusRule,
}


def strict(node):
    """Refuses unknown keys wherever a schema object lists its properties."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)
    return node


def validators() -> dict:
    out = {}
    for key, model in MODELS.items():
        schema = strict(model.model_json_schema(by_alias=True))
        out[key] = jsonschema.Draft202012Validator(schema)
    return out


def main(files: list[str]) -> int:
    checks = validators()
    checked, failures = 0, []
    for file in files:
        for doc in yaml.safe_load_all(Path(file).read_text()):
            if not doc:
                continue
            validator = checks.get((doc.get("apiVersion"), doc.get("kind")))
            if validator is None:
                continue
            checked += 1
            for error in validator.iter_errors(doc):
                where = "/".join(str(p) for p in error.absolute_path)
                failures.append(f"{file}: {doc['kind']} {doc['metadata']['name']}: /{where}: {error.message}")
    for failure in failures:
        print(f"strict-crs: {failure}", file=sys.stderr)
    print(f"strict-crs: {checked} KEDA and prometheus-operator resources checked strictly, "
          f"{len(failures)} errors", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
