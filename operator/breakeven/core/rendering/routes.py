"""Gateway API exposure of a plan, and the Shadow trial's mirror (docs/operations.md, "The trial").

With `spec.gateway`, the operator owns one HTTPRoute (gateway.networking.k8s.io/v1) named like the
plan's stable Service, attached to the Gateways of `spec.gateway.parentRefs`, with one rule whose
backend is that Service on its port. While a Shadow trial runs, the rule also carries a
`RequestMirror` filter towards the trial's own Service (`<plan>-trial`, which selects only the
MoE trial's endpoint pods; the stable Service keeps selecting dense alone), so the trial sees
`spec.trial.mirrorPercent` of the requests and users never see its answers.

Schema (sigs.k8s.io/gateway-api v1.6.3): apis/v1/httproute_types.go, `HTTPRouteFilter.RequestMirror`
and `HTTPRequestMirrorFilter{BackendRef, Percent, Fraction}`, where `percent` is 0..100, at most one
of `percent` and `fraction`, and neither means 100%; both fields are in the standard channel's CRD
(config/crd/standard/gateway.networking.k8s.io_httproutes.yaml, bundle-version v1.6.3).

Mirrored requests must not count as user traffic: vLLM labels its metrics with the first
`--served-model-name` and answers to every name listed (vllm-ep-facts.md), so a Shadow trial's
vLLM is given `<model>` + SHADOW_SUFFIX first and the model name second. Its `vllm:*` series then
carry `model_name="<model>-breakeven-shadow"`, which the default traffic selector
(`model_name=<model>`) does not match; the EPLB exporter keeps labelling with the model name, so
the balance query still finds the trial.

Pure: dicts in, dicts out.
"""

from __future__ import annotations

from typing import Any

from breakeven.core import api
from breakeven.core.rendering import names
from breakeven.core.rendering.workloads import (
    MODE_LABEL,
    SERVICE_PORT,
    plan_labels,
    service,
    service_name,
)

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
HTTPROUTE_PLURAL = "httproutes"
SHADOW_SUFFIX = "-breakeven-shadow"
TRIAL_SERVICE_SUFFIX = "-trial"


def route_name(plan: api.ServingPlan) -> str:
    """The HTTPRoute: named like the plan's stable Service."""
    return service_name(plan)


def trial_service_name(plan: api.ServingPlan) -> str:
    """`<plan>-trial` (a DNS-1035 label, hashed when it would not fit)."""
    return names.dns1035_label(f"{plan.name}{TRIAL_SERVICE_SUFFIX}")


def shadow_model_name(served_name: str) -> str:
    """The name a Shadow trial's vLLM labels its metrics with."""
    return served_name + SHADOW_SUFFIX


def trial_service(plan: api.ServingPlan) -> dict[str, Any]:
    """The Shadow trial's Service: the MoE endpoint pods only, port 80 -> `http`."""
    svc = service(plan, api.ServingMode.MOE)
    svc["metadata"]["name"] = trial_service_name(plan)
    assert svc["spec"]["selector"][MODE_LABEL] == "moe"
    return svc


def _parent_ref(ref: api.ParentRef) -> dict[str, Any]:
    out: dict[str, Any] = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": ref.name}
    if ref.namespace is not None:
        out["namespace"] = ref.namespace
    if ref.section_name is not None:
        out["sectionName"] = ref.section_name
    if ref.port is not None:
        out["port"] = ref.port
    return out


def http_route(plan: api.ServingPlan, mirror_percent: int | None = None) -> dict[str, Any]:
    """The plan's HTTPRoute; with `mirror_percent`, mirroring that share to the trial's Service.

    Raises ValueError when the plan names no gateway or the percentage is outside 1..100 (the
    API bounds spec.trial.mirrorPercent the same way)."""
    gateway = plan.spec.gateway
    if gateway is None:
        raise ValueError("spec.gateway: the plan names no Gateway to route through")
    backend = {"group": "", "kind": "Service", "name": service_name(plan), "port": SERVICE_PORT}
    rule: dict[str, Any] = {"backendRefs": [backend]}
    if mirror_percent is not None:
        if not 1 <= mirror_percent <= 100:
            raise ValueError(
                f"spec.trial.mirrorPercent: {mirror_percent} is not a percentage in 1..100"
            )
        rule["filters"] = [
            {
                "type": "RequestMirror",
                "requestMirror": {
                    "backendRef": {
                        "group": "",
                        "kind": "Service",
                        "name": trial_service_name(plan),
                        "port": SERVICE_PORT,
                    },
                    "percent": mirror_percent,
                },
            }
        ]
    spec: dict[str, Any] = {
        "parentRefs": [_parent_ref(r) for r in gateway.parent_refs],
        "rules": [rule],
    }
    if gateway.hostnames:
        spec["hostnames"] = list(gateway.hostnames)
    return {
        "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
        "kind": "HTTPRoute",
        "metadata": {
            "name": route_name(plan),
            "namespace": plan.namespace,
            "labels": plan_labels(plan),
        },
        "spec": spec,
    }


def shadowed(objs: list[dict[str, Any]], served_name: str) -> list[dict[str, Any]]:
    """A Shadow trial's workload objects: every container that passes `--served-model-name
    <served_name>` passes `<served_name>-breakeven-shadow <served_name>` instead, so its metrics
    carry the shadow name and mirrored requests (for `<served_name>`) are still answered."""
    literal = served_name.replace("$", "$$")
    shadow = shadow_model_name(served_name).replace("$", "$$")

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: fix(v) for k, v in node.items()}
            args = out.get("args")
            if isinstance(args, list):
                out["args"] = _with_shadow(args, literal, shadow)
            return out
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return [fix(obj) for obj in objs]


def _with_shadow(args: list[Any], literal: str, shadow: str) -> list[Any]:
    out: list[Any] = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--served-model-name" and i + 1 < len(args) and args[i + 1] == literal:
            out.append(shadow)
    return out
