"""Every golden manifest is valid against the Kubernetes OpenAPI schema, offline.

The schemas are the published ones of the versions the e2e control plane runs (Kubernetes
v1.36.3, the LeaderWorkerSet v0.9.0 CRD), trimmed by schemas/trim.py. The API server ignores or
prunes unknown fields instead of rejecting them, so a misspelt field would pass it silently; here
every object schema that lists its properties is closed (additionalProperties: false), which turns
a typo into a failure. tests/integration/test_rendering_dryrun.py asks the real API server.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import jsonschema
import pytest
import rendering_cases as cases
import yaml

KINDS = {
    ("apps/v1", "Deployment"): "io.k8s.api.apps.v1.Deployment",
    ("v1", "Service"): "io.k8s.api.core.v1.Service",
    ("v1", "ConfigMap"): "io.k8s.api.core.v1.ConfigMap",
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): "x-lws.v1.LeaderWorkerSet",
    ("resource.nvidia.com/v1beta1", "ComputeDomain"): "x-nvidia.v1beta1.ComputeDomain",
}
OBJECT_META = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def _closed(node: Any) -> Any:
    """The schema with every object that lists its properties closed to other properties."""
    if isinstance(node, list):
        return [_closed(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _closed(v) for k, v in node.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@functools.cache
def _root() -> dict[str, Any]:
    kube = json.loads((cases.SCHEMAS / "kubernetes-v1.36.3.json").read_text())
    lws = json.loads((cases.SCHEMAS / "lws-v0.9.0.json").read_text())["schema"]
    lws = copy.deepcopy(lws)
    lws["properties"]["metadata"] = {"$ref": OBJECT_META}  # the CRD leaves it to the server
    schemas = dict(kube["components"]["schemas"])
    schemas[KINDS[("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")]] = lws
    crd = yaml.safe_load((cases.SCHEMAS / "computedomain-crd.yaml").read_text())
    domain = copy.deepcopy(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    domain["properties"]["metadata"] = {"$ref": OBJECT_META}
    domain["properties"]["spec"].pop("x-kubernetes-validations")
    schemas[KINDS[("resource.nvidia.com/v1beta1", "ComputeDomain")]] = domain
    return {"components": {"schemas": _closed(schemas)}}


def validate(obj: dict[str, Any]) -> None:
    kind = KINDS[(obj["apiVersion"], obj["kind"])]
    schema = {**_root(), "$ref": f"#/components/schemas/{kind}"}
    jsonschema.Draft202012Validator(schema).validate(obj)


GOLDEN = cases.all_golden()


@pytest.mark.parametrize("obj", [o for _, o in GOLDEN], ids=[f"{n}:{o['kind']}" for n, o in GOLDEN])
def test_golden_object_matches_openapi_schema(obj: dict[str, Any]) -> None:
    validate(obj)


def test_every_rendered_kind_has_a_schema() -> None:
    assert {(o["apiVersion"], o["kind"]) for _, o in GOLDEN} == set(KINDS)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o["spec"].update(replica=2),  # misspelt field
        lambda o: o["spec"]["template"]["spec"]["containers"][0].update(args="serve"),
        lambda o: o["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(
            containerPort="8000"
        ),
    ],
    ids=["unknown-field", "args-not-a-list", "port-not-an-int"],
)
def test_schema_rejects_broken_manifests(mutate: Any) -> None:
    deployment = copy.deepcopy(cases.load_golden("dense-tp8")[0])
    mutate(deployment)
    with pytest.raises(jsonschema.ValidationError):
        validate(deployment)


def test_schema_rejects_a_broken_leader_worker_set() -> None:
    [lws] = [o for o in cases.load_golden("moe-two-node-lws") if o["kind"] == "LeaderWorkerSet"]
    lws = copy.deepcopy(lws)
    lws["spec"]["leaderWorkerTemplate"]["sizee"] = 2
    with pytest.raises(jsonschema.ValidationError):
        validate(lws)
