"""The operator end to end: API server, scheduler, controllers, kwok GPU nodes, LWS, Prometheus.

The operator runs as its own ServiceAccount under manifests/rbac.yaml. Plans read traffic from
14 days of backfilled history (tests/e2e/conftest.py) and use short hysteresis windows so a test
sees promotion and fallback in seconds; everything else is the shipped default.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from breakeven.core import api

pytestmark = pytest.mark.e2e

H200 = {"nvidia.com/gpu.product": "NVIDIA-H200"}
RDMA_LABELS = (
    "feature.node.kubernetes.io/rdma.capable",
    "feature.node.kubernetes.io/rdma.available",
    "feature.node.kubernetes.io/pci-15b3.present",
)
RDMA_RESOURCE = "rdma/rdma_shared_device_a"
FAST = {"promotionWindow": "10s", "demotionGrace": "3s", "minDwell": "0s", "drainPeriod": "3s"}


def plan(
    name: str,
    namespace: str,
    *,
    profile: str = "sustained",
    mode: str = "Auto",
    team: str = "Dedicated",
    dry_run: bool = False,
    dtype: str = "bf16",
    model: str = "deepseek-ai/DeepSeek-V3",
) -> dict[str, Any]:
    """A ServingPlan for DeepSeek-V3 in bf16 (too big for one node: EP groups span two)."""
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": model, "dtype": dtype},
            "mode": mode,
            "dryRun": dry_run,
            "operations": {"platformTeam": team},
            # The harness's generator writes a per-expert counter (e2e/traffic.py): these plans
            # read it through the user-supplied path. The EPLB exporter's series is the trial's.
            "traffic": {
                "selector": {"model_name": f"e2e/{profile}", "namespace": "traffic"},
                "expertLoadMetric": "moe_expert_tokens_total",
            },
            "policy": dict(FAST),
            "serving": {"nodeSelector": dict(H200)},
        },
    }


def custom(k8s: Any) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(k8s)


def create(k8s: Any, body: dict[str, Any]) -> None:
    custom(k8s).create_namespaced_custom_object(
        api.GROUP, api.VERSION, body["metadata"]["namespace"], api.PLURAL, body
    )


def get_plan(k8s: Any, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom(k8s).get_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, name
    )
    return obj


def status(k8s: Any, namespace: str, name: str) -> dict[str, Any]:
    return get_plan(k8s, namespace, name).get("status") or {}


def lws(k8s: Any, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = custom(k8s).list_namespaced_custom_object(
        "leaderworkerset.x-k8s.io", "v1", namespace, "leaderworkersets"
    )["items"]
    return items


def deployments(k8s: Any, namespace: str) -> list[Any]:
    return list(client.AppsV1Api(k8s).list_namespaced_deployment(namespace).items)


def pods(k8s: Any, namespace: str, mode: str) -> list[Any]:
    return list(
        client.CoreV1Api(k8s)
        .list_namespaced_pod(namespace, label_selector=f"breakeven.dev/mode={mode}")
        .items
    )


def service_selector(k8s: Any, namespace: str, name: str) -> dict[str, str]:
    return dict(client.CoreV1Api(k8s).read_namespaced_service(name, namespace).spec.selector)


def ready_endpoints(k8s: Any, namespace: str, service: str) -> int:
    slices = (
        client.DiscoveryV1Api(k8s)
        .list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={service}"
        )
        .items
    )
    return sum(
        1
        for s in slices
        for e in (s.endpoints or [])
        if e.conditions is not None and e.conditions.ready
    )


def running_on(k8s: Any, namespace: str, mode: str, product: str) -> bool:
    found = pods(k8s, namespace, mode)
    if not found:
        return False
    core = client.CoreV1Api(k8s)
    for pod in found:
        if pod.status.phase != "Running" or not pod.spec.node_name:
            return False
        labels = core.read_node(pod.spec.node_name).metadata.labels or {}
        if labels.get("nvidia.com/gpu.product") != product:
            return False
    return True


class EndpointWatch:
    """Polls a Service's ready endpoints in the background; records every count it saw."""

    def __init__(self, k8s: Any, namespace: str, service: str) -> None:
        self.k8s, self.namespace, self.service = k8s, namespace, service
        self.counts: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.counts.append(ready_endpoints(self.k8s, self.namespace, self.service))
            time.sleep(0.1)

    def __enter__(self) -> EndpointWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def h200_nodes(k8s: Any) -> list[str]:
    return [
        n.metadata.name
        for n in client.CoreV1Api(k8s)
        .list_node(label_selector="nvidia.com/gpu.product=NVIDIA-H200")
        .items
    ]


@pytest.fixture
def rdma_removed(k8s: Any, h200_nodes: list[str]) -> Iterator[Callable[[], None]]:
    """Call to strip RDMA labels and resources from the H200 nodes; restored afterwards."""
    core = client.CoreV1Api(k8s)
    saved = {n: core.read_node(n) for n in h200_nodes}

    def remove() -> None:
        for name in h200_nodes:
            core.patch_node(name, {"metadata": {"labels": dict.fromkeys(RDMA_LABELS)}})
            core.patch_node_status(
                name,
                {
                    "status": {
                        "capacity": {RDMA_RESOURCE: None},
                        "allocatable": {RDMA_RESOURCE: None},
                    }
                },
            )

    yield remove
    for name, node in saved.items():
        labels = {k: node.metadata.labels[k] for k in RDMA_LABELS if k in node.metadata.labels}
        core.patch_node(name, {"metadata": {"labels": labels}})
        core.patch_node_status(
            name,
            {
                "status": {
                    "capacity": {RDMA_RESOURCE: node.status.capacity[RDMA_RESOURCE]},
                    "allocatable": {RDMA_RESOURCE: node.status.allocatable[RDMA_RESOURCE]},
                }
            },
        )


def test_sustained_traffic_goes_moe_then_falls_back_when_rdma_lapses(
    k8s: Any, namespace: str, until: Callable[..., None], rdma_removed: Callable[[], None]
) -> None:
    create(k8s, plan("ds", namespace))
    until(
        "the plan to serve MoE",
        lambda: (
            status(k8s, namespace, "ds").get("mode") == "MoE"
            and status(k8s, namespace, "ds").get("phase") == "Serving"
        ),
    )
    groups = lws(k8s, namespace)
    assert [g["metadata"]["name"] for g in groups] == ["ds-moe"]
    assert groups[0]["spec"]["leaderWorkerTemplate"]["size"] == 2
    # EPLB telemetry: vLLM's logging config is applied beside the MoE workload
    assert (
        "logging.json"
        in client.CoreV1Api(k8s).read_namespaced_config_map("ds-moe-eplb", namespace).data
    )
    until(
        "MoE pods Running on H200 nodes", lambda: running_on(k8s, namespace, "moe", "NVIDIA-H200")
    )
    assert service_selector(k8s, namespace, "ds")["breakeven.dev/mode"] == "moe"
    until("ready endpoints behind the Service", lambda: ready_endpoints(k8s, namespace, "ds") > 0)
    rows = {r["name"]: r["verdict"] for r in status(k8s, namespace, "ds")["criteria"]}
    assert rows["interconnect"] == rows["sustainedLoad"] == "Go"

    with EndpointWatch(k8s, namespace, "ds") as watch:
        rdma_removed()
        until(
            "the fallback to dense",
            lambda: status(k8s, namespace, "ds").get("mode") == "Dense",
            timeout=120,
        )
        assert service_selector(k8s, namespace, "ds")["breakeven.dev/mode"] == "dense"
        until(
            "the MoE workload to be deleted after the drain period",
            lambda: not [g for g in lws(k8s, namespace) if g["metadata"]["name"] == "ds-moe"],
        )
        until(
            "the telemetry ConfigMap to be deleted with it",
            lambda: (
                "ds-moe-eplb"
                not in {
                    c.metadata.name
                    for c in client.CoreV1Api(k8s).list_namespaced_config_map(namespace).items
                }
            ),
        )
        until("dense pods Running", lambda: running_on(k8s, namespace, "dense", "NVIDIA-H200"))
    assert watch.counts and min(watch.counts) > 0, (
        f"the Service had no ready endpoints during the switch: {watch.counts}"
    )
    final = status(k8s, namespace, "ds")
    rows = {r["name"]: r["verdict"] for r in final["criteria"]}
    assert rows["interconnect"] == "StayDense"
    switching = {c["type"]: c for c in final["conditions"]}
    assert switching["MoEPrerequisitesMet"]["status"] == "False"


def test_bursty_traffic_stays_dense(k8s: Any, namespace: str, until: Callable[..., None]) -> None:
    create(k8s, plan("bursty", namespace, profile="bursty"))
    until(
        "a dense decision",
        lambda: (
            status(k8s, namespace, "bursty").get("mode") == "Dense"
            and bool(status(k8s, namespace, "bursty").get("criteria"))
        ),
    )
    st = status(k8s, namespace, "bursty")
    rows = {r["name"]: r for r in st["criteria"]}
    assert rows["sustainedLoad"]["verdict"] == "StayDense"
    assert "bursty" in rows["sustainedLoad"]["reason"]
    assert st["reason"] == "SustainedLoad"
    assert not lws(k8s, namespace) or all(
        g["metadata"]["name"] == "bursty-dense" for g in lws(k8s, namespace)
    )


def test_pinned_modes_win_but_the_rubric_is_reported(
    k8s: Any, namespace: str, until: Callable[..., None]
) -> None:
    create(k8s, plan("pin-dense", namespace, mode="Dense"))
    create(k8s, plan("pin-moe", namespace, mode="MoE", profile="bursty"))
    until(
        "the pinned modes",
        lambda: (
            status(k8s, namespace, "pin-dense").get("mode") == "Dense"
            and status(k8s, namespace, "pin-moe").get("mode") == "MoE"
        ),
    )
    dense = status(k8s, namespace, "pin-dense")
    assert dense["decidedMode"] == "MoE" and dense["reason"] == "PinnedDense"
    moe = status(k8s, namespace, "pin-moe")
    assert moe["decidedMode"] == "Dense" and moe["reason"] == "PinnedMoE"
    events = (
        client.CoreV1Api(k8s)
        .list_namespaced_event(namespace, field_selector="involvedObject.name=pin-moe")
        .items
    )
    until(
        "a Warning event on the pinned MoE plan",
        lambda: any(
            e.type == "Warning" and e.reason == "PinnedMoEPrerequisitesNotMet"
            for e in client.CoreV1Api(k8s)
            .list_namespaced_event(namespace, field_selector="involvedObject.name=pin-moe")
            .items
        ),
    )
    del events


def test_dry_run_applies_nothing(k8s: Any, namespace: str, until: Callable[..., None]) -> None:
    create(k8s, plan("dry", namespace, dry_run=True))
    until("a planned status", lambda: status(k8s, namespace, "dry").get("phase") == "Planned")
    st = status(k8s, namespace, "dry")
    kinds = sorted(o["kind"] for o in st["rendered"])
    assert "Service" in kinds and ("LeaderWorkerSet" in kinds or "Deployment" in kinds)
    time.sleep(3)  # another reconcile or two
    assert deployments(k8s, namespace) == []
    assert lws(k8s, namespace) == []
    assert client.CoreV1Api(k8s).list_namespaced_service(namespace).items == []


def test_deleting_the_plan_removes_every_child(
    k8s: Any, namespace: str, until: Callable[..., None]
) -> None:
    create(k8s, plan("gone", namespace, profile="bursty"))
    until("children", lambda: bool(lws(k8s, namespace) or deployments(k8s, namespace)))
    custom(k8s).delete_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, "gone"
    )
    until(
        "garbage collection of every child",
        lambda: (
            not lws(k8s, namespace)
            and not deployments(k8s, namespace)
            and not client.CoreV1Api(k8s).list_namespaced_service(namespace).items
            and not pods(k8s, namespace, "dense")
        ),
        timeout=120,
    )


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"mode": "Sometimes"}, "spec.mode"),
        ({"traffic": {"window": "two weeks"}}, "spec.traffic.window"),
        ({"model": {"name": "x", "experts": 8}}, "expertsPerToken"),
        ({"serving": {"disaggregation": {"enabled": True}}, "mode": "Dense"}, "disaggregation"),
    ],
)
def test_invalid_plans_are_rejected_by_the_api_server(
    k8s: Any, namespace: str, patch: dict[str, Any], field: str
) -> None:
    body = plan("bad", namespace)
    body["spec"].update(patch)
    with pytest.raises(client.ApiException) as caught:
        create(k8s, body)
    assert caught.value.status == 422
    assert field in caught.value.body


def test_operator_killed_mid_switch_completes_it_on_restart(
    k8s: Any, namespace: str, until: Callable[..., None], operator: Any
) -> None:
    create(k8s, plan("crash", namespace, mode="Dense"))
    until(
        "dense serving",
        lambda: (
            status(k8s, namespace, "crash").get("mode") == "Dense"
            and status(k8s, namespace, "crash").get("phase") == "Serving"
        ),
    )
    custom(k8s).patch_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, "crash", {"spec": {"mode": "MoE"}}
    )
    until(
        "the switch to start",
        lambda: (
            bool(status(k8s, namespace, "crash").get("switch"))
            or status(k8s, namespace, "crash").get("targetMode") == "MoE"
        ),
        timeout=60,
    )
    operator.restart_after_kill()
    until(
        "the switch to complete",
        lambda: (
            status(k8s, namespace, "crash").get("mode") == "MoE"
            and not status(k8s, namespace, "crash").get("switch")
            and not [d for d in deployments(k8s, namespace) if d.metadata.name == "crash-dense"]
            and not [g for g in lws(k8s, namespace) if g["metadata"]["name"] == "crash-dense"]
        ),
        timeout=120,
    )
    uid = get_plan(k8s, namespace, "crash")["metadata"]["uid"]
    children = [*lws(k8s, namespace)]
    assert [g["metadata"]["name"] for g in children] == ["crash-moe"]
    for child in children:
        owners = child["metadata"]["ownerReferences"]
        assert [o["uid"] for o in owners] == [uid]
    services = client.CoreV1Api(k8s).list_namespaced_service(namespace).items
    owned = [
        s.metadata.name
        for s in services
        if any(o.uid == uid for o in s.metadata.owner_references or [])
    ]
    assert owned == ["crash"]  # the LWS controller adds its own headless Service per LWS
    deployments_left = [d.metadata.name for d in deployments(k8s, namespace)]
    assert deployments_left == []


def test_a_crash_looping_pod_degrades_its_plan(
    k8s: Any, namespace: str, until: Callable[..., None]
) -> None:
    """A serving pod starts crash-looping: its workload's status says a pod is not ready, that
    triggers a reconcile, which reads the pods (from the operator's pod informer, watched under
    manifests/rbac.yaml's `list, watch` on pods) and finds the CrashLoopBackOff."""
    body = plan("crashloop", namespace, mode="Dense")
    # A long grace: "no ready pods" (statuses.broken) cannot degrade it within this test, only
    # the pod's own waiting reason can.
    body["spec"]["policy"]["demotionGrace"] = "10m"
    create(k8s, body)
    until(
        "the pinned dense plan serving",
        lambda: status(k8s, namespace, "crashloop").get("phase") == "Serving",
        timeout=120,
    )
    core = client.CoreV1Api(k8s)
    serving = core.list_namespaced_pod(
        namespace, label_selector="breakeven.dev/plan=crashloop,breakeven.dev/mode=dense"
    ).items
    assert serving
    victim = serving[0]
    # kwok's pod-ready stage only moves Pending pods, so this status stays as written. No
    # restartCount: a LeaderWorkerSet would recreate the whole group on a restart.
    core.patch_namespaced_pod_status(
        victim.metadata.name,
        namespace,
        {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "False"},
                    {"type": "ContainersReady", "status": "False"},
                ],
                "containerStatuses": [
                    {
                        "name": c.name,
                        "image": c.image,
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "e2e"}},
                    }
                    for c in victim.spec.containers
                ],
            }
        },
    )
    until(
        "the plan Degraded by the crash-looping pod",
        lambda: status(k8s, namespace, "crashloop").get("phase") == "Degraded",
        timeout=60,
    )
    assert status(k8s, namespace, "crashloop").get("reason") != "ApplyFailed"


def test_a_plan_never_takes_over_an_object_it_does_not_own(
    k8s: Any, namespace: str, until: Callable[..., None]
) -> None:
    client.CoreV1Api(k8s).create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "taken"},
            "spec": {"selector": {"app": "someone-else"}, "ports": [{"port": 80}]},
        },
    )
    create(k8s, plan("taken", namespace, profile="bursty"))
    until(
        "the plan to report the clash",
        lambda: status(k8s, namespace, "taken").get("phase") in ("Invalid", "Degraded"),
    )
    st = status(k8s, namespace, "taken")
    assert "Service taken already exists" in st["message"], st["message"]
    svc = client.CoreV1Api(k8s).read_namespaced_service("taken", namespace)
    assert svc.spec.selector == {"app": "someone-else"}
    assert not svc.metadata.owner_references


def test_a_plan_cannot_point_the_operator_at_an_arbitrary_url(
    k8s: Any, namespace: str, until: Callable[..., None]
) -> None:
    body = plan("ssrf", namespace)
    body["spec"]["traffic"]["prometheusUrl"] = "http://127.0.0.1:1/"
    create(k8s, body)
    until("a decision", lambda: bool(status(k8s, namespace, "ssrf").get("criteria")))
    rows = {r["name"]: r for r in status(k8s, namespace, "ssrf")["criteria"]}
    assert rows["sustainedLoad"]["verdict"] == "Unknown"
    assert "not one the operator may read" in rows["sustainedLoad"]["observed"]
