"""The plan's HTTPRoute on the real API server with Gateway API's HTTPRoute CRD (pinned: v1.6.3,
standard channel, copied from the Go module sigs.k8s.io/gateway-api by e2e/controlplane/build.sh).

The rendered route, plain and with the Shadow trial's RequestMirror filter, is created for real
(not only dry-run) and read back with its filter and percentage intact; the CRD's own validation
refuses a percentage outside 0..100, `percent` beside `fraction`, and a host name that is none.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from bad_input import plan_object, spec_with
from crd_checks import dry_run_create

from breakeven.core import api
from breakeven.core.rendering import routes
from e2e.cluster import install_gateway_api
from e2e.fixtures import ClusterHandle

pytestmark = pytest.mark.integration

GATEWAY = {
    "parentRefs": [
        {"name": "inference", "namespace": "gateways", "sectionName": "http"},
        {"name": "internal", "port": 8080},
    ],
    "hostnames": ["llm.example.com", "*.llm.example.com"],
}


@pytest.fixture(scope="module")
def gateway_api(cluster: ClusterHandle) -> ClusterHandle:
    with cluster.api_client() as client:
        install_gateway_api(client)
    return cluster


def shadow_plan(namespace: str) -> api.ServingPlan:
    return api.ServingPlan.model_validate(
        {
            "metadata": {"name": f"shadow-{uuid.uuid4().hex[:6]}", "namespace": namespace},
            "spec": {
                "model": {"name": "deepseek-ai/DeepSeek-V3"},
                "trial": {"mode": "Shadow", "mirrorPercent": 25},
                "gateway": GATEWAY,
            },
        }
    )


def create(cluster: ClusterHandle, namespace: str, route: dict[str, Any]) -> dict[str, Any]:
    from kubernetes import client

    with cluster.api_client() as api_client:
        custom = client.CustomObjectsApi(api_client)
        created: dict[str, Any] = custom.create_namespaced_custom_object(
            routes.GATEWAY_GROUP, routes.GATEWAY_VERSION, namespace, routes.HTTPROUTE_PLURAL,
            route, field_validation="Strict",
        )  # fmt: skip
        read: dict[str, Any] = custom.get_namespaced_custom_object(
            routes.GATEWAY_GROUP, routes.GATEWAY_VERSION, namespace, routes.HTTPROUTE_PLURAL,
            route["metadata"]["name"],
        )  # fmt: skip
    assert created["metadata"]["uid"] == read["metadata"]["uid"]
    return read


def refusal(cluster: ClusterHandle, namespace: str, route: dict[str, Any]) -> str:
    from kubernetes import client

    with cluster.api_client() as api_client:
        try:
            client.CustomObjectsApi(api_client).create_namespaced_custom_object(
                routes.GATEWAY_GROUP, routes.GATEWAY_VERSION, namespace, routes.HTTPROUTE_PLURAL,
                route, field_validation="Strict",
            )  # fmt: skip
        except client.ApiException as exc:
            assert exc.status == 422, exc.body
            return str(exc.body)
    raise AssertionError(f"the API server accepted {route['spec']}")


def test_the_api_server_stores_the_mirroring_route_as_rendered(
    gateway_api: ClusterHandle, namespace: str
) -> None:
    plan = shadow_plan(namespace)
    route = routes.http_route(plan, plan.spec.trial.mirror_percent)
    stored = create(gateway_api, namespace, route)
    [rule] = stored["spec"]["rules"]
    assert rule["filters"] == [
        {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {
                    "group": "",
                    "kind": "Service",
                    "name": f"{plan.name}-trial",
                    "port": 80,
                },
                "percent": 25,
            },
        }
    ]
    assert rule["backendRefs"][0]["name"] == plan.name
    assert rule["backendRefs"][0]["port"] == 80
    assert [p["name"] for p in stored["spec"]["parentRefs"]] == ["inference", "internal"]
    assert stored["spec"]["hostnames"] == GATEWAY["hostnames"]


def test_the_api_server_stores_the_plain_route(gateway_api: ClusterHandle, namespace: str) -> None:
    plan = shadow_plan(namespace)
    stored = create(gateway_api, namespace, routes.http_route(plan))
    [rule] = stored["spec"]["rules"]
    assert "filters" not in rule
    assert rule["backendRefs"][0]["name"] == plan.name


def _mirrored(namespace: str) -> dict[str, Any]:
    plan = shadow_plan(namespace)
    return routes.http_route(plan, 50)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda r: r["spec"]["rules"][0]["filters"][0]["requestMirror"].update(percent=101),
         "percent"),
        (lambda r: r["spec"]["rules"][0]["filters"][0]["requestMirror"].update(
            fraction={"numerator": 1, "denominator": 2}),
         "Only one of percent or fraction"),
        (lambda r: r["spec"].update(hostnames=["not a host"]), "hostnames"),
        (lambda r: r["spec"]["parentRefs"][0].update(port=0), "port"),
    ],
    ids=["percent-over-100", "percent-and-fraction", "bad-hostname", "port-zero"],
)  # fmt: skip
def test_the_crd_refuses_bad_routes(
    gateway_api: ClusterHandle, namespace: str, change: Any, says: str
) -> None:
    route = copy.deepcopy(_mirrored(namespace))
    change(route)
    assert says in refusal(gateway_api, namespace, route)


def test_the_plan_crd_refuses_shadow_without_a_gateway_naming_the_field(
    crd_installed: ClusterHandle, namespace: str
) -> None:
    shadow = spec_with({"trial": {"mode": "Shadow"}})
    message = dry_run_create(crd_installed, namespace, plan_object(shadow))
    assert message is not None and api.SHADOW_NEEDS_GATEWAY in message
    with_gateway = spec_with(
        {"trial": {"mode": "Shadow"}, "gateway": {"parentRefs": [{"name": "g"}]}}
    )
    assert dry_run_create(crd_installed, namespace, plan_object(with_gateway)) is None
