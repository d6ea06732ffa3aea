"""What a reconcile may skip at fleet scale, and when it must not (docs/performance.md):

- the plan's GET, while the watch's cached body is known current;
- grouping the nodes into pools, while no node changed;
- child events that change nothing a reconcile reads.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

from test_api_calls import CountingApi, reconcile, setup

from breakeven.shell import kube
from breakeven.shell.runtime import Config, PlanState, Runtime


class VersionedApi(CountingApi):
    """CountingApi whose plan has a resourceVersion that every status write moves."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 1

    async def patch_status(
        self,
        namespace: str,
        name: str,
        status: Any,
        resource_version: str | None = None,
    ) -> None:
        await super().patch_status(namespace, name, status, resource_version)
        self.version += 1
        self.plan["metadata"]["resourceVersion"] = str(self.version)

    def watch(self) -> dict[str, Any]:
        """The plan as the watch delivers it now."""
        return {**copy.deepcopy(self.plan), "status": copy.deepcopy(self.status)}


def versioned() -> tuple[VersionedApi, Any, PlanState]:
    api = VersionedApi()
    r, state = setup(api)
    api.plan["metadata"]["resourceVersion"] = "1"
    state.body = api.watch()
    state.read_at = time.monotonic()  # just seen on the watch (Scheduler.remember)
    return api, r, state


async def test_a_new_plan_is_read_from_the_watch_and_read_again_while_its_write_is_unseen() -> None:
    api, r, state = versioned()
    first = await r_calls(r, state, api, watch=False)
    assert ("get", "ServingPlan") not in first  # the ADDED event's body is current
    assert ("patch", "ServingPlan/status") in first
    # The watch has not delivered our write: the cached body is the one written over.
    assert ("get", "ServingPlan") in await r_calls(r, state, api)
    # Once it has, the cached body stands for a GET again.
    assert ("get", "ServingPlan") not in await r_calls(r, state, api)


async def test_the_plan_is_read_again_after_an_interval_a_conflict_or_a_deleted_child() -> None:
    api, r, state = versioned()
    await r_calls(r, state, api)
    state.read_at -= Config().interval  # seen longer ago than an interval
    assert ("get", "ServingPlan") in await r_calls(r, state, api)
    assert ("get", "ServingPlan") not in await r_calls(r, state, api)
    state.must_read = True  # a 409, an exception, or a child deleted (Scheduler.trigger)
    assert ("get", "ServingPlan") in await r_calls(r, state, api)


async def r_calls(r: Any, state: PlanState, api: VersionedApi, watch: bool = True) -> list[Any]:
    """One reconcile; then, with `watch`, the watch delivers the plan as it is now."""
    calls = await reconcile(r, state, api)
    if watch:
        state.body = api.watch()
    return calls


def test_nodes_are_grouped_again_only_when_one_changed() -> None:
    api = CountingApi()
    r, _ = setup(api)
    index = r.nodes()
    assert index is not None
    first = r.cluster(None)
    assert r.cluster(None) is first
    assert r.cluster({"no": "such-label"}).pools == ()
    # A node's projection changed (kopf's index then holds a new object): grouped again.
    nodes = list(index["gpu"])
    nodes[0] = nodes[0].model_copy(update={"schedulable": False})
    index["gpu"][:] = nodes  # type: ignore[index]
    again = r.cluster(None)
    assert again is not first
    assert again.gpu_nodes == first.gpu_nodes - 1


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
