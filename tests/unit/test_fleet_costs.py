"""Child events that change nothing a reconcile reads trigger no reconcile (docs/performance.md)."""

from __future__ import annotations

import asyncio
from typing import Any

from breakeven.shell import kube
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
    runtime = Runtime(Config())
    try:
        assert not runtime.child_changed("ADDED", deployment(0))
        # conditions and observedGeneration are not read: a new resourceVersion alone
        assert not runtime.child_changed(
            "MODIFIED", deployment(0, observedGeneration=1, conditions=[{"type": "Available"}])
        )
        assert runtime.child_changed("MODIFIED", deployment(1))  # readiness
        hand_edit = deployment(1)
        hand_edit["metadata"]["generation"] = 2
        assert runtime.child_changed("MODIFIED", hand_edit)
        assert runtime.child_changed("DELETED", hand_edit)
        # Never seen (a watch restart's re-list missed it): reconcile, to be safe.
        assert runtime.child_changed("MODIFIED", deployment(0))
        assert kube.read_part(deployment(0), "Deployment") != kube.read_part(
            deployment(1), "Deployment"
        )
    finally:
        asyncio.run(runtime.http.aclose())
