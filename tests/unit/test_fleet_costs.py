"""Child events that change nothing a reconcile reads trigger no reconcile (docs/performance.md)."""

from __future__ import annotations

import asyncio
from typing import Any

from breakeven.shell import kube
from breakeven.shell.informer import Informer
from breakeven.shell.runtime import Config, Runtime


def deployment(ready: int, **status: Any) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {
            "name": "web-dense",
            "namespace": "default",
            "labels": {"breakeven.dev/plan": "web"},
            "generation": 1,
            "resourceVersion": str(100 + ready + len(status)),
        },
        "spec": {"replicas": 1},
        "status": {"replicas": 1, "readyReplicas": ready, **status},
    }


def test_only_child_events_that_change_what_a_reconcile_reads_trigger_it() -> None:
    changed = Runtime.child_changed
    project = kube.projection
    assert not changed("ADDED", None, project(deployment(0), "Deployment"))
    # conditions and observedGeneration are not read: a new resourceVersion alone
    quiet = deployment(0, observedGeneration=1, conditions=[{"type": "Available"}])
    assert not changed(
        "MODIFIED", project(deployment(0), "Deployment"), project(quiet, "Deployment")
    )
    ready = project(deployment(1), "Deployment")
    assert changed("MODIFIED", project(quiet, "Deployment"), ready)  # readiness
    hand_edit = deployment(1)
    hand_edit["metadata"]["generation"] = 2
    assert changed("MODIFIED", ready, project(hand_edit, "Deployment"))
    assert changed("DELETED", project(hand_edit, "Deployment"), None)
    # Never seen (a list missed it): reconcile, to be safe.
    assert changed("MODIFIED", None, ready)
    assert kube.read_part(deployment(0), "Deployment") != kube.read_part(
        deployment(1), "Deployment"
    )


def test_a_child_change_triggers_its_plan_soon() -> None:
    runtime = Runtime(Config())
    triggered: list[tuple[str, str, bool]] = []
    runtime.trigger = lambda ns, name, soon=False: triggered.append((ns, name, soon))  # type: ignore[method-assign]
    try:
        key = ("default", "web-dense")
        old, new = kube.projection(deployment(0), "Deployment"), None
        runtime._child_event("ADDED", key, None, old)
        assert triggered == []
        new = kube.projection(deployment(1), "Deployment")
        runtime._child_event("MODIFIED", key, old, new)
        assert triggered == [("default", "web", True)]
        runtime._child_event("DELETED", key, new, None)
        assert triggered[-1] == ("default", "web", True) and len(triggered) == 2
        unlabelled = kube.projection(deployment(1), "Deployment")
        unlabelled["metadata"]["labels"] = {}
        runtime._child_event("DELETED", key, unlabelled, None)
        assert len(triggered) == 2
    finally:
        asyncio.run(runtime.http.aclose())


def test_children_are_read_from_the_informers_stores_once_every_list_is_in() -> None:
    runtime = Runtime(Config())
    try:
        assert runtime.lookup() is None  # no informer yet: reads go to the API server
        informer = Informer(None, "/apis/apps/v1/deployments", dict)  # type: ignore[arg-type]
        runtime.informers.append(informer)
        store = {("default", "web-dense"): kube.projection(deployment(1), "Deployment")}
        runtime.children = {"Deployment": [{}, store]}
        assert runtime.lookup() is None  # its first list is not in
        informer.synced.set()
        find = runtime.lookup()
        assert find is not None
        found = find("Deployment", "default", "web-dense")
        assert found is not None and found["status"]["readyReplicas"] == 1
        assert find("Deployment", "other", "web-dense") is None
        assert find("Service", "default", "web-dense") is None
    finally:
        asyncio.run(runtime.http.aclose())
