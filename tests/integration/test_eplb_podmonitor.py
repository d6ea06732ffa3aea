"""The operator's Kubernetes writer and the PodMonitor of the MoE telemetry, on the real API server.

Without the monitoring.coreos.com/v1 PodMonitor CRD, discovery says "not served" and the operator
renders only the prometheus.io annotations; once the CRD is served, discovery says so and the
rendered PodMonitor is applied and deleted through server-side apply. The CRD installed here is a
minimal stand-in (same group, version, kind and scope, schema left open): the Prometheus Operator
is not part of the test control plane, and the PodMonitor's fields (selector,
podMetricsEndpoints[].port/path/interval) were checked against prometheus-operator's
pkg/apis/monitoring/v1/podmonitor_types.go instead. The ConfigMap is applied with the real schema.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from breakeven.core import rendering
from breakeven.core.rendering import telemetry
from breakeven.shell import kube

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "rendering"))
import builders
import rendering_cases as cases

pytestmark = pytest.mark.integration

CRD_NAME = "podmonitors.monitoring.coreos.com"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {"plural": "podmonitors", "singular": "podmonitor", "kind": "PodMonitor",
                  "listKind": "PodMonitorList"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object",
                                           "x-kubernetes-preserve-unknown-fields": True}},
        }],
    },
}  # fmt: skip


def rendered(namespace: str) -> list[dict[str, Any]]:
    case = cases.CASES["moe-single-node"]()
    plan = builders.serving_plan(namespace=namespace, image="vllm/vllm-openai:v0.12.0")
    return rendering.render(plan, case.mode, case.estimate, case.pool, case.arch,
                            telemetry.Options(pod_monitor=True))  # fmt: skip


async def test_discovery_apply_and_delete_of_the_telemetry_objects(
    cluster: Any, namespace: str
) -> None:
    from kubernetes import client
    from kubernetes.aio import client as aio
    from kubernetes.aio import config as aio_config

    configuration = aio.Configuration()
    await aio_config.load_kube_config(config_file=str(cluster.kubeconfig),
                                      client_configuration=configuration)  # fmt: skip
    objects = rendered(namespace)
    config_map = next(o for o in objects if o["kind"] == "ConfigMap")
    monitor = next(o for o in objects if o["kind"] == "PodMonitor")
    async with aio.ApiClient(configuration) as api_client:
        writer = kube.Writer(api_client)
        args = (kube.PODMONITOR_GROUP, kube.PODMONITOR_VERSION, kube.PODMONITOR_PLURAL)
        assert await writer.serves(*args) is False

        applied = await writer.apply(config_map)
        assert applied["data"] == config_map["data"]
        assert await writer.delete("ConfigMap", namespace, config_map["metadata"]["name"])

        with cluster.api_client() as sync:
            ext = client.ApiextensionsV1Api(sync)
            ext.create_custom_resource_definition(CRD)
            try:
                deadline = time.monotonic() + 60
                while not await writer.serves(*args):
                    assert time.monotonic() < deadline, "the CRD never became served"
                    await asyncio.sleep(0.5)
                applied = await writer.apply(monitor)
                assert applied["spec"] == monitor["spec"]
                assert applied["metadata"]["name"] == "chat-moe-eplb"
                assert await writer.delete("PodMonitor", namespace, "chat-moe-eplb") is True
                assert await writer.delete("PodMonitor", namespace, "chat-moe-eplb") is False
            finally:
                ext.delete_custom_resource_definition(CRD_NAME)
