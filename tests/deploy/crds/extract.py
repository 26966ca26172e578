"""Writes the openAPIV3Schema of a CustomResourceDefinition, trimmed, as the JSON the deploy tests validate against.

Usage: python tests/deploy/crds/extract.py CRD.yaml SOURCE > tests/deploy/crds/<Kind>.json
Descriptions are dropped (most of a CRD's size). Pod templates inside a RayJob become "any object": the tests
validate each of them as a Pod against Kubernetes' own schema instead (test_rayjob_pod_templates_are_valid_pods).
"""

from __future__ import annotations

import json
import sys

import yaml

POD_TEMPLATES = {"template", "submitterPodTemplate"}


def trim(schema, name: str = ""):
    if isinstance(schema, dict):
        if name in POD_TEMPLATES and schema.get("type") == "object":
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        out = {}
        for key, value in schema.items():
            if key == "description":
                continue
            if key == "properties":
                out[key] = {prop: trim(sub, prop) for prop, sub in value.items()}
            else:
                out[key] = trim(value)
        return out
    if isinstance(schema, list):
        return [trim(item) for item in schema]
    return schema


def main(path: str, source: str) -> None:
    crd = yaml.safe_load(open(path))
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    out = {"source": source, "group": crd["spec"]["group"], "version": version["name"], "kind": crd["spec"]["names"]["kind"],
           "schema": trim(version["schema"]["openAPIV3Schema"])}
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
