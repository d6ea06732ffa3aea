"""Every golden manifest passes server-side dry-run on the real API server.

The API server (with the LeaderWorkerSet CRD and its webhooks, as e2e/ starts them) is the final
judge of what tests/unit/rendering checks offline: its validation of names, labels, probes, ports
and pod templates, the LWS admission webhooks, and, with fieldValidation=Strict, unknown fields.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

GOLDEN = Path(__file__).resolve().parents[1] / "unit" / "rendering" / "golden"
# The NVIDIA DRA driver's ComputeDomain CRD (a trimmed copy; its header names the upstream file).
# Pods claim its channel through spec.resourceClaims, core API fields in Kubernetes 1.36
# (resource.k8s.io is GA): no feature gate or runtime-config is needed on the test control plane.
COMPUTE_DOMAIN_CRD = GOLDEN.parent / "schemas" / "computedomain-crd.yaml"
LWS_GROUP, LWS_VERSION, LWS_PLURAL = "leaderworkerset.x-k8s.io", "v1", "leaderworkersets"
CD_GROUP, CD_VERSION, CD_PLURAL = "resource.nvidia.com", "v1beta1", "computedomains"

pytestmark = pytest.mark.integration


def _golden() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{path.stem}:{doc['kind']}", doc)
        for path in sorted(GOLDEN.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


GOLDEN_OBJECTS = _golden()


def test_golden_files_exist() -> None:
    assert len(GOLDEN_OBJECTS) >= 7


@pytest.fixture(scope="module")
def compute_domain_crd(cluster: Any) -> None:
    from kubernetes import client

    crd = yaml.safe_load(COMPUTE_DOMAIN_CRD.read_text())
    with cluster.api_client() as api:
        ext = client.ApiextensionsV1Api(api)
        try:
            ext.create_custom_resource_definition(crd)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        for _ in range(120):
            status = ext.read_custom_resource_definition(crd["metadata"]["name"]).status
            if any(c.type == "Established" and c.status == "True" for c in status.conditions or []):
                return
            time.sleep(0.5)
    pytest.fail("the ComputeDomain CRD never became Established")


@pytest.mark.parametrize("obj", [o for _, o in GOLDEN_OBJECTS], ids=[i for i, _ in GOLDEN_OBJECTS])
def test_server_side_dry_run(
    cluster: Any, namespace: str, obj: dict[str, Any], compute_domain_crd: None
) -> None:
    from kubernetes import client

    body = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    options = {"dry_run": "All", "field_validation": "Strict"}
    with cluster.api_client() as api:
        if obj["kind"] == "Deployment":
            client.AppsV1Api(api).create_namespaced_deployment(namespace, body, **options)
        elif obj["kind"] == "Service":
            client.CoreV1Api(api).create_namespaced_service(namespace, body, **options)
        elif obj["kind"] == "ConfigMap":
            client.CoreV1Api(api).create_namespaced_config_map(namespace, body, **options)
        elif obj["kind"] == "LeaderWorkerSet":
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                LWS_GROUP, LWS_VERSION, namespace, LWS_PLURAL, body, **options
            )
        elif obj["kind"] == "ComputeDomain":
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                CD_GROUP, CD_VERSION, namespace, CD_PLURAL, body, **options
            )
        else:
            pytest.fail(f"no dry-run for kind {obj['kind']}")
