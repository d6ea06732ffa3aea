"""Smoke tests of the local control plane: fake GPU nodes, scheduling, LeaderWorkerSet, RBAC.

They show that the harness behaves like a GPU cluster where it matters to Breakeven: pods that ask
for GPUs land on the right fake nodes, LeaderWorkerSet groups come up through its webhooks, and RDMA
requests keep pods off nodes without RDMA.
"""

from typing import Any

import pytest
from kubernetes import client
from kubernetes.utils import parse_quantity

from e2e.fixtures import ClusterHandle, wait_for

pytestmark = pytest.mark.integration

H200 = "NVIDIA-H200"
GPU = "nvidia.com/gpu"
RDMA = "rdma/rdma_shared_device_a"


def _pods(api: Any, namespace: str, selector: str = "") -> list[Any]:
    return list(client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items)


def _node_products(api: Any) -> dict[str, str]:
    nodes = client.CoreV1Api(api).list_node().items
    return {n.metadata.name: n.metadata.labels.get("nvidia.com/gpu.product", "") for n in nodes}


def _all_running(api: Any, namespace: str, selector: str, count: int) -> bool:
    pods = _pods(api, namespace, selector)
    return len(pods) == count and all(p.status.phase == "Running" for p in pods)


def test_fake_gpu_nodes_carry_labels_and_resources(cluster: ClusterHandle) -> None:
    with cluster.api_client() as api:
        nodes = {n.metadata.name: n for n in client.CoreV1Api(api).list_node().items}
    h200 = nodes["h200-ib-0"]
    assert h200.metadata.labels["nvidia.com/gpu.product"] == H200
    assert h200.metadata.labels["feature.node.kubernetes.io/rdma.available"] == "true"
    assert h200.status.allocatable[GPU] == "8"
    assert parse_quantity(h200.status.allocatable[RDMA]) == 1000  # the API server writes "1k"
    l40s = nodes["l40s-0"]
    assert RDMA not in l40s.status.allocatable
    assert "feature.node.kubernetes.io/rdma.capable" not in l40s.metadata.labels
    cliques = {
        nodes[f"gb200-nvl72-{i}"].metadata.labels["nvidia.com/gpu.clique"] for i in range(18)
    }
    assert len(cliques) == 1
    ready = [
        name for name, n in nodes.items()
        if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions)
    ]  # fmt: skip
    assert len(ready) >= 24


def test_gpu_deployment_runs_on_h200(cluster: ClusterHandle, namespace: str) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "dense"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "dense"}},
            "template": {
                "metadata": {"labels": {"app": "dense"}},
                "spec": {
                    "nodeSelector": {"nvidia.com/gpu.product": H200},
                    "containers": [
                        {
                            "name": "vllm",
                            "image": "vllm/vllm-openai",
                            "resources": {"limits": {GPU: "8"}},
                        }
                    ],
                },
            },
        },
    }
    with cluster.api_client() as api:
        client.AppsV1Api(api).create_namespaced_deployment(namespace, deployment)
        wait_for(
            "the Deployment's pod to run", lambda: _all_running(api, namespace, "app=dense", 1)
        )
        products = _node_products(api)
        for pod in _pods(api, namespace, "app=dense"):
            assert products[pod.spec.node_name] == H200, pod.spec.node_name


def test_leaderworkerset_with_rdma_runs_on_h200_only(
    cluster: ClusterHandle, namespace: str
) -> None:
    lws = {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": "moe"},
        "spec": {
            "replicas": 1,
            "leaderWorkerTemplate": {
                "size": 2,
                "workerTemplate": {
                    "spec": {
                        "containers": [{
                            "name": "vllm",
                            "image": "vllm/vllm-openai",
                            "resources": {
                                "limits": {GPU: "8", RDMA: "1"},
                                "requests": {GPU: "8", RDMA: "1"},
                            },
                        }]
                    }
                },
            },
        },
    }  # fmt: skip
    selector = "leaderworkerset.sigs.k8s.io/name=moe"
    with cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(
            "leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets", lws
        )
        wait_for("both LWS pods to run", lambda: _all_running(api, namespace, selector, 2), 90)
        products = _node_products(api)
        pods = _pods(api, namespace, selector)
        # The pod webhook sets the worker index; the pod controller made the worker from it.
        indices = sorted(
            p.metadata.labels["leaderworkerset.sigs.k8s.io/worker-index"] for p in pods
        )
        assert indices == ["0", "1"]
        for pod in pods:
            assert products[pod.spec.node_name] == H200, (pod.metadata.name, pod.spec.node_name)
        assert not any(products[p.spec.node_name] == "NVIDIA-L40S" for p in pods)

        # Garbage collection: deleting the LWS removes its StatefulSets and pods.
        custom.delete_namespaced_custom_object(
            "leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets", "moe"
        )
        wait_for(
            "the LWS pods to be garbage-collected", lambda: not _pods(api, namespace, selector), 90
        )


def test_rdma_pod_stays_off_l40s(cluster: ClusterHandle, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "rdma-on-l40s"},
        "spec": {
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-L40S"},
            "containers": [
                {"name": "c", "image": "x", "resources": {"limits": {GPU: "1", RDMA: "1"}}}
            ],
        },
    }
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, pod)

        def unschedulable() -> bool:
            p = core.read_namespaced_pod("rdma-on-l40s", namespace)
            return any(
                c.type == "PodScheduled" and c.reason == "Unschedulable"
                for c in (p.status.conditions or [])
            )

        wait_for("the scheduler to report the RDMA pod Unschedulable", unschedulable, 30)
        assert core.read_namespaced_pod("rdma-on-l40s", namespace).spec.node_name is None


def test_rbac_is_enforced(cluster: ClusterHandle, namespace: str) -> None:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{namespace}:default",
            "resourceAttributes": {"namespace": namespace, "verb": "list", "resource": "pods"},
        },
    }
    with cluster.api_client() as api:
        answer = client.AuthorizationV1Api(api).create_subject_access_review(review)
    assert answer.status.allowed is False
