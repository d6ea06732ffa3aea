"""API requests per reconcile (shell/kube.py CachedWriter in front of a counting fake writer).

The fake index stands in for kopf's watch indexes of our children: it holds what the API server
would show after each apply (generation moving when the applied object changed). A settled plan
re-evaluated on its interval must cost no request at all; these tests keep it so.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from kubernetes.aio.client.exceptions import ApiException

from breakeven.core import facts
from breakeven.shell import inputs, kube
from breakeven.shell.reconcile import Reconciler
from breakeven.shell.runtime import Config, PlanState

ROOT = Path(__file__).resolve().parents[2]
Key = tuple[str, str, str]


class CountingApi:
    """The raw writer's methods, each call recorded; objects kept as the API server would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.objects: dict[Key, dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.plan: dict[str, Any] = {}

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("apply", obj["kind"]))
        key = (obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        old = self.objects.get(key)
        body = copy.deepcopy(dict(obj))
        generation = 1 if old is None else old["metadata"]["generation"]
        if old is not None and kube.digest(old["applied"]) != kube.digest(body):
            generation += 1
        meta = body["metadata"]
        meta["generation"] = generation
        meta["resourceVersion"] = str(generation)
        self.objects[key] = {**body, "applied": copy.deepcopy(dict(obj))}
        return copy.deepcopy(self.objects[key])

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(("get", kind))
        return copy.deepcopy(self.objects.get((kind, namespace, name)))

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        self.calls.append(("delete", kind))
        return self.objects.pop((kind, namespace, name), None) is not None

    async def serves(self, group: str, version: str, plural: str) -> bool:
        self.calls.append(("discovery", group))
        return False

    async def pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        self.calls.append(("list", "Pod"))
        return []

    async def patch_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> None:
        self.calls.append(("patch", "ServingPlan/status"))
        self.status = {**self.status, **status}

    async def get_plan(self, namespace: str, name: str) -> dict[str, Any] | None:
        # The reconcile reads its plan fresh (deletions a watch restart hid; the status
        # precondition): one GET each time, the only request a settled plan costs.
        self.calls.append(("get", "ServingPlan"))
        return {**copy.deepcopy(self.plan), "status": copy.deepcopy(self.status)}

    async def post_event(
        self, plan: Mapping[str, Any], type: str, reason: str, message: str
    ) -> None:
        self.calls.append(("create", "Event"))

    def index(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """kopf's index of our children: what the watch has delivered (here: everything)."""
        obj = self.objects.get((kind, namespace, name))
        if obj is None or kind not in kube.INDEXED:
            return None
        return kube.projection(obj, kind)

    def settle(self) -> None:
        """Every workload's pods come up (the controllers write status; no generation change)."""
        for (kind, _, _), obj in self.objects.items():
            if kind in ("Deployment", "LeaderWorkerSet"):
                want = int(obj.get("spec", {}).get("replicas", 1))
                obj["status"] = {"replicas": want, "readyReplicas": want, "updatedReplicas": want}


def setup(api: CountingApi) -> tuple[Reconciler, PlanState]:
    plan = inputs.load_plans(ROOT / "examples/plans/deepseek-v3-pinned-dense.yaml")[0]
    plan = plan.model_copy(
        update={
            "metadata": plan.metadata.model_copy(
                update={"uid": "u", "generation": 1, "namespace": "default"}
            )
        }
    )
    nodes = inputs.load_nodes(ROOT / "examples/nodes/h200-infiniband.yaml")[0]
    index = {"gpu": [facts.node_info(n, facts.LabelMapping()) for n in nodes]}
    r = Reconciler(Config(), lambda: index)
    r.connect(kube.CachedWriter(api, lambda: api.index))  # type: ignore[arg-type]
    body = plan.model_dump(by_alias=True, mode="json", exclude_none=True)
    api.plan = copy.deepcopy(body)
    return r, PlanState(body=body, traffic=facts.Traffic(source="test"))


async def reconcile(r: Reconciler, state: PlanState, api: CountingApi) -> list[tuple[str, str]]:
    """One reconcile; the requests it sent. The plan's status is read back as kopf would."""
    api.calls.clear()
    await r.reconcile(state)
    await asyncio.gather(*r.publisher._posting)
    state.body = {**state.body, "status": copy.deepcopy(api.status)}
    return list(api.calls)


async def test_a_settled_plan_re_evaluated_sends_one_request() -> None:
    api = CountingApi()
    r, state = setup(api)
    first = await reconcile(r, state, api)
    # A new plan: its own GET, one GET per child it creates (is the name someone else's?), one
    # apply each, the status, its Events. No GET of the other mode's names, no pod LIST.
    applies = [c for c in first if c[0] == "apply"]
    assert {k for _, k in applies} == {"Deployment", "Service"}, first
    gets = sorted(c for c in first if c[0] == "get")
    assert gets == sorted([("get", "ServingPlan"), *(("get", k) for _, k in applies)])
    assert ("list", "Pod") not in first and first.count(("patch", "ServingPlan/status")) == 1
    api.settle()
    await reconcile(r, state, api)  # readiness changed: the status says so
    # Nothing changed: only the plan's own GET (no child read, apply, status or Event).
    assert await reconcile(r, state, api) == [("get", "ServingPlan")]
    assert await reconcile(r, state, api) == [("get", "ServingPlan")]


async def test_a_hand_edited_child_is_applied_again_and_a_deleted_one_recreated() -> None:
    api = CountingApi()
    r, state = setup(api)
    await reconcile(r, state, api)
    api.settle()
    await reconcile(r, state, api)
    deployment = next(k for k in api.objects if k[0] == "Deployment")
    api.objects[deployment]["metadata"]["generation"] += 1  # someone changed its spec
    assert ("apply", "Deployment") in await reconcile(r, state, api)
    del api.objects[deployment]  # someone deleted it
    calls = await reconcile(r, state, api)
    assert ("get", "Deployment") in calls and ("apply", "Deployment") in calls


async def test_a_name_held_by_someone_elses_object_is_never_taken_over() -> None:
    api = CountingApi()
    r, state = setup(api)
    await reconcile(r, state, api)
    deployment = next(k for k in api.objects if k[0] == "Deployment")
    foreign = api.objects.pop(deployment)
    foreign["metadata"]["ownerReferences"] = [{"uid": "someone-else"}]
    api.objects[deployment] = foreign
    writer = kube.CachedWriter(api, lambda: lambda kind, ns, name: None)  # type: ignore[arg-type]
    with pytest.raises(ApiException) as refused:
        await writer.apply(foreign["applied"])
    assert refused.value.status == 409 and "not owned by this plan" in str(refused.value.reason)
    assert ("apply", "Deployment") not in api.calls[-1:]
