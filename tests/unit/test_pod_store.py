"""The pod informer's projection and index (shell/kube.py pod_projection, PodIndex; runtime.py):
what `statuses.broken` reads of a pod survives the projection, and a reconcile's selector finds
exactly the pods a LIST would."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest

from breakeven.core import statuses
from breakeven.shell import kube
from breakeven.shell.informer import Informer
from breakeven.shell.runtime import Config, Runtime

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
PLAN = "breakeven.dev/plan"
MODE = "breakeven.dev/mode"
ENDPOINT = "breakeven.dev/endpoint"


def pod(
    name: str,
    plan: str = "web",
    mode: str = "dense",
    namespace: str = "default",
    phase: str = "Running",
    waiting: str | None = None,
    unscheduled: str | None = None,
    endpoint: str = "true",
) -> dict[str, Any]:
    """A pod as the API server sends it (managedFields, spec and all)."""
    status: dict[str, Any] = {
        "phase": phase,
        "podIP": "10.0.0.1",
        "containerStatuses": [
            {"name": "sidecar", "ready": True, "state": {"running": {"startedAt": "x"}}},
            {
                "name": "vllm",
                "ready": False,
                "restartCount": 7,
                "state": {"waiting": {"reason": waiting, "message": "back-off"}}
                if waiting
                else {"running": {}},
            },
        ],
        "conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "True"},
        ],
    }
    if unscheduled is not None:
        status["conditions"][1] = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": unscheduled,
        }
        del status["containerStatuses"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "resourceVersion": "7",
            "labels": {
                PLAN: plan,
                MODE: mode,
                ENDPOINT: endpoint,
                "app.kubernetes.io/managed-by": "breakeven",
                "pod-template-hash": "5d8f",
            },
            "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {"f:phase": {}}}}],
        },
        "spec": {"containers": [{"name": "vllm", "args": ["--model", "x"] * 50}]},
        "status": status,
    }


BODIES = [
    pod("web-dense-1"),
    pod("web-dense-2", waiting="CrashLoopBackOff"),
    pod("web-dense-3", waiting="ContainerCreating"),
    pod("web-dense-4", phase="Failed"),
    pod("web-dense-5", phase="Pending", unscheduled="0/3 nodes are available: " + "x" * 400),
    pod("web-dense-6", phase="Pending", unscheduled=""),
]


@pytest.mark.parametrize("body", BODIES, ids=[b["metadata"]["name"] for b in BODIES])
def test_broken_reads_the_same_of_a_projection_as_of_the_whole_pod(body: dict[str, Any]) -> None:
    projected = kube.pod_projection(body)
    down = "2025-12-31T00:00:00Z"  # down for a day: past any grace
    for args in [(None, 300.0), (down, 300.0), (None, 300.0, down)]:
        kwargs = {"coming_up_since": args[2]} if len(args) == 3 else {}
        assert statuses.broken([projected], args[0], args[1], T0, **kwargs) == statuses.broken(
            [body], args[0], args[1], T0, **kwargs
        )
    # Small: no managedFields, spec, other labels or other conditions.
    assert len(json.dumps(projected)) < 600 < len(json.dumps(body))
    assert set(projected["metadata"]["labels"]) == {PLAN, MODE, ENDPOINT}
    assert "spec" not in projected and "managedFields" not in projected["metadata"]


def test_a_projection_is_equal_across_status_changes_it_does_not_keep() -> None:
    # The informer keeps the held object when the projection is unchanged: a pod's readiness
    # probe flipping, its IP or restart count changing moves nothing.
    a, b = pod("web-dense-1"), pod("web-dense-1")
    b["status"]["podIP"], b["status"]["conditions"][0]["status"] = "10.0.0.2", "True"
    b["metadata"]["resourceVersion"] = "8"
    assert kube.pod_projection(a) == kube.pod_projection(b)
    with pytest.raises(ValueError, match=r"metadata\.name"):
        kube.pod_projection({"metadata": {"namespace": "default"}})


def test_the_index_answers_a_selector_as_a_list_would() -> None:
    index = kube.PodIndex()
    bodies = [
        pod("web-dense-b"),
        pod("web-dense-a"),
        pod("web-dense-w", endpoint="false"),
        pod("web-moe-0", mode="moe"),
        pod("other-dense-0", plan="other"),
        pod("web-dense-x", namespace="elsewhere"),
    ]
    for body in bodies:
        index.change("ADDED", None, None, kube.pod_projection(body))
    selector = {PLAN: "web", MODE: "dense", ENDPOINT: "true"}

    def names(found: list[dict[str, Any]] | None) -> list[str] | None:
        return None if found is None else [p["metadata"]["name"] for p in found]

    expected = sorted(
        b["metadata"]["name"]
        for b in bodies
        if b["metadata"]["namespace"] == "default" and kube.pod_matches(b, selector)
    )
    assert names(index.find("default", selector)) == expected == ["web-dense-a", "web-dense-b"]
    assert names(index.find("default", {MODE: "moe"})) == ["web-moe-0"]  # no plan label: a scan
    assert names(index.find("nowhere", selector)) == []
    # A label the projection drops: the store cannot answer, the caller LISTs.
    assert index.find("default", {**selector, "pod-template-hash": "5d8f"}) is None
    # Relabelled out of the plan, then deleted.
    old = kube.pod_projection(bodies[0])
    moved = kube.pod_projection(pod("web-dense-b", plan="other"))
    index.change("MODIFIED", None, old, moved)
    assert names(index.find("default", selector)) == ["web-dense-a"]
    assert names(index.find("default", {PLAN: "other"})) == ["other-dense-0", "web-dense-b"]
    index.change("DELETED", None, moved, None)
    index.change("DELETED", None, kube.pod_projection(bodies[4]), None)
    assert index.find("default", {PLAN: "other"}) == []
    assert ("default", "other") not in index.by_plan  # empty buckets go
    # Per --namespace: a namespace no pod informer watches is not answered.
    scoped = kube.PodIndex(["default"])
    assert scoped.find("default", selector) == [] and scoped.find("elsewhere", selector) is None


def test_pods_are_read_from_the_store_once_the_pod_informers_first_list_is_in() -> None:
    runtime = Runtime(Config())
    try:
        assert runtime.pod_lookup() is None  # no pod informer: a LIST
        informer = Informer(None, "/api/v1/pods", kube.pod_projection)  # type: ignore[arg-type]
        runtime.pod_informers.append(informer)
        runtime.pods.change("ADDED", None, None, kube.pod_projection(pod("web-dense-1")))
        assert runtime.pod_lookup() is None
        assert runtime.synced() is False  # reconciling does not wait for the pods
        informer.synced.set()
        find = runtime.pod_lookup()
        assert find is not None
        found = find("default", {PLAN: "web"})
        assert found is not None and [p["metadata"]["name"] for p in found] == ["web-dense-1"]
    finally:
        asyncio.run(runtime.http.aclose())


async def test_the_cached_writer_copies_what_it_hands_out_and_lists_until_synced() -> None:
    calls: list[str] = []

    class Inner:
        async def pods(self, namespace: str, selector: Any) -> list[dict[str, Any]]:
            calls.append(namespace)
            return []

    index = kube.PodIndex()
    index.change("ADDED", None, None, kube.pod_projection(pod("web-dense-1")))
    ready = [False]
    writer = kube.CachedWriter(
        Inner(),  # type: ignore[arg-type]
        lambda: None,
        lambda: index.find if ready[0] else None,
    )
    assert await writer.pods("default", {PLAN: "web"}) == [] and calls == ["default"]
    ready[0] = True
    got = await writer.pods("default", {PLAN: "web"})
    assert [p["metadata"]["name"] for p in got] == ["web-dense-1"] and calls == ["default"]
    got[0]["metadata"]["labels"].clear()  # the caller's copy, not the store's object
    assert index.find("default", {PLAN: "web"}) != []
    assert await writer.pods("default", {"app": "x"}) == [] and len(calls) == 2
