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

from breakeven.core import api as api_types
from breakeven.core import facts, rendering, statuses
from breakeven.shell import inputs, kube, runtime
from breakeven.shell.reconcile import Reconciler, batches
from breakeven.shell.runtime import Config, PlanState, Scheduler

ROOT = Path(__file__).resolve().parents[2]
Key = tuple[str, str, str]


class CountingApi:
    """The raw writer's methods, each call recorded; objects kept as the API server would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.objects: dict[Key, dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.plan: dict[str, Any] = {}
        self.pod_bodies: list[dict[str, Any]] = []  # what a pod LIST answers

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
        return [
            copy.deepcopy(p)
            for p in self.pod_bodies
            if p["metadata"]["namespace"] == namespace and kube.pod_matches(p, selector)
        ]

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
    # The names are checked together, before anything is written (CachedWriter.claim).
    assert first.index(("apply", "Deployment")) > max(i for i, c in enumerate(first) if c in gets)
    assert ("list", "Pod") not in first and first.count(("patch", "ServingPlan/status")) == 1
    api.settle()
    await reconcile(r, state, api)  # readiness changed: the status says so
    # Nothing changed: only the plan's own GET (no child read, apply, status or Event).
    assert await reconcile(r, state, api) == [("get", "ServingPlan")]
    assert await reconcile(r, state, api) == [("get", "ServingPlan")]


def crashing_pod(plan: api_types.ServingPlan, name: str) -> dict[str, Any]:
    """A pod of the plan's dense workload, as the API server would list it, crash-looping."""
    labels = {
        **rendering.selector_labels(plan, api_types.ServingMode.DENSE),
        "app.kubernetes.io/managed-by": "breakeven",
        "pod-template-hash": "abc",
    }
    return {
        "metadata": {
            "name": name,
            "namespace": plan.namespace,
            "labels": labels,
            "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}],
        },
        "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "vllm", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ],
            "conditions": [{"type": "PodScheduled", "status": "True"}],
        },
    }


async def test_an_unsettled_workloads_pods_come_from_the_pod_store_once_it_is_synced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = CountingApi()
    r, state = setup(api)
    plan = api_plan(api)
    api.pod_bodies = [crashing_pod(plan, "web-dense-b"), crashing_pod(plan, "web-dense-a")]
    seen: list[list[str]] = []
    real = statuses.broken

    def broken(pods: Any, *args: Any, **kwargs: Any) -> str | None:
        seen.append([p["metadata"]["name"] for p in pods])
        return real(pods, *args, **kwargs)

    monkeypatch.setattr(statuses, "broken", broken)
    await reconcile(r, state, api)  # creates the Deployment: its pods are not ready
    synced = False
    index = kube.PodIndex()
    for body in api.pod_bodies:
        index.change("ADDED", None, None, kube.pod_projection(body))
    writer = kube.CachedWriter(api, lambda: api.index, lambda: index.find if synced else None)  # type: ignore[arg-type]
    r.connect(writer)
    seen.clear()
    before = await reconcile(r, state, api)  # the pod informer's first list is not in: a LIST
    assert before.count(("list", "Pod")) == 1 and seen == [["web-dense-b", "web-dense-a"]]
    synced, seen[:] = True, []
    calls = await reconcile(r, state, api)
    # The same pods, from the store (in a LIST's order, by name), and no request for them.
    assert ("list", "Pod") not in calls and seen == [["web-dense-a", "web-dense-b"]], calls
    assert not [c for c in calls if c[0] in ("apply", "get") and c[1] != "ServingPlan"], calls
    # Unsettled on every reconcile, still no LIST: 0 LISTs per sweep, whatever the plans.
    assert ("list", "Pod") not in await reconcile(r, state, api)


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


class VersionedApi(CountingApi):
    """The plan's resourceVersion moves with each status write, and a status write whose
    precondition is not the current version is refused (409), as the API server does."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 1

    async def patch_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> None:
        if resource_version != str(self.version):
            self.calls.append(("conflict", "ServingPlan/status"))
            raise ApiException(status=409, reason="Conflict")
        await super().patch_status(namespace, name, status, resource_version)
        self.version += 1

    async def get_plan(self, namespace: str, name: str) -> dict[str, Any] | None:
        fresh = await super().get_plan(namespace, name)
        assert fresh is not None
        fresh["metadata"]["resourceVersion"] = str(self.version)
        return fresh


def event(api: VersionedApi, generation: int = 1, status: bool = False) -> dict[str, Any]:
    """A watch event's body of the plan as the API server has it now."""
    body = copy.deepcopy(api.plan)
    body["metadata"].update(generation=generation, resourceVersion=str(api.version))
    body["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    if status:
        body["status"] = copy.deepcopy(api.status)
    return body


async def test_a_new_plans_first_reconcile_takes_its_event_body_instead_of_a_get() -> None:
    api = VersionedApi()
    r, _ = setup(api)
    scheduler = Scheduler(Config(), r.reconcile, NoTraffic(), lambda: True)
    scheduler.remember(event(api))  # ADDED: a plan just created, no status yet
    state = scheduler.plans[("default", api.plan["metadata"]["name"])]
    assert state.event_body is not None and "managedFields" not in state.event_body["metadata"]
    calls = await reconcile(r, state, api)
    # No GET of the plan: the name checks (together), the applies, the status, the Events.
    assert ("get", "ServingPlan") not in calls, calls
    assert sorted(c for c in calls if c[0] == "get") == [("get", "Deployment"), ("get", "Service")]
    assert sorted(c for c in calls if c[0] == "apply") == [
        ("apply", "Deployment"),
        ("apply", "Service"),
    ]
    assert (
        calls.count(("patch", "ServingPlan/status")) == 1
        and ("conflict", "ServingPlan/status") not in calls
    )
    assert ("create", "Event") in calls
    assert state.event_body is None and state.generation_read == 1  # dropped once taken
    # The next reconcile (periodic, or a child's event) GETs the plan again.
    assert ("get", "ServingPlan") in await reconcile(r, state, api)


async def test_a_spec_change_is_reconciled_from_its_event_and_an_older_event_is_not() -> None:
    api = VersionedApi()
    r, _ = setup(api)
    scheduler = Scheduler(Config(), r.reconcile, NoTraffic(), lambda: True)
    scheduler.remember(event(api))
    state = scheduler.plans[("default", api.plan["metadata"]["name"])]
    await reconcile(r, state, api)
    # A late event of the generation already reconciled (its status predates our write) is
    # held while it waits, but the reconcile GETs the plan: the body may be behind our write.
    state.event_body = runtime.held(event(api, generation=1))
    assert ("get", "ServingPlan") in await reconcile(r, state, api)
    api.plan["metadata"]["generation"] = 2
    scheduler.remember(event(api, generation=2, status=True))  # the spec changed
    assert state.event_body is not None
    calls = await reconcile(r, state, api)
    assert ("get", "ServingPlan") not in calls and ("conflict", "ServingPlan/status") not in calls
    assert state.generation_read == 2


async def test_a_stale_event_body_fails_the_status_precondition_and_is_reconciled_from_a_get() -> (
    None
):
    api = VersionedApi()
    r, _ = setup(api)
    scheduler = Scheduler(Config(), r.reconcile, NoTraffic(), lambda: True)
    scheduler.remember(event(api))
    state = scheduler.plans[("default", api.plan["metadata"]["name"])]
    api.version += 1  # the plan changed after the event (one not seen yet)
    calls = await reconcile(r, state, api)
    assert ("get", "ServingPlan") not in calls and ("conflict", "ServingPlan/status") in calls
    assert state.pending and ("patch", "ServingPlan/status") not in calls  # nothing written
    calls = await reconcile(r, state, api)  # again, at once: from a GET
    assert calls[0] == ("get", "ServingPlan") and ("patch", "ServingPlan/status") in calls


async def test_a_name_held_by_someone_else_fails_the_step_before_anything_is_applied() -> None:
    api = CountingApi()
    r, state = setup(api)
    service = rendering.service_name(api_plan(api))
    api.objects[("Service", "default", service)] = {
        "kind": "Service",
        "metadata": {"name": service, "namespace": "default", "ownerReferences": [{"uid": "x"}]},
        "applied": {},
    }
    writer = kube.CachedWriter(api, lambda: lambda kind, ns, name: None)  # type: ignore[arg-type]
    r.connect(writer)
    calls = await reconcile(r, state, api)
    assert ("get", "Service") in calls and ("get", "Deployment") in calls
    assert not [c for c in calls if c[0] == "apply"], calls  # not even the Deployment
    messages = " ".join(c["message"] for c in api.status["conditions"])
    assert "409" in messages and "not owned by this plan" in messages, messages


def api_plan(api: CountingApi) -> api_types.ServingPlan:
    return api_types.ServingPlan.model_validate(api.plan)


class NoTraffic:
    def stale(self, state: PlanState) -> bool:
        return False

    async def refresh(self, states: list[PlanState]) -> None:
        return None


def test_applies_go_together_unless_one_waits_for_an_object_before_it() -> None:
    def obj(kind: str) -> tuple[str, Any]:
        return ("apply", {"kind": kind, "metadata": {"name": kind.lower()}})

    def kinds(writes: list[tuple[str, Any]]) -> list[list[str]]:
        return [[w["kind"] if v == "apply" else v for v, w in b] for b in batches(writes)]

    # A new plan: its workload (first) and its Service in one round trip.
    assert kinds([obj("Deployment"), obj("Service")]) == [["Deployment", "Service"]]
    # The pods mount the telemetry ConfigMap; the route's backend is the mirror Service.
    assert kinds([obj("ConfigMap"), obj("LeaderWorkerSet"), obj("PodMonitor")]) == [
        ["ConfigMap"],
        ["LeaderWorkerSet", "PodMonitor"],
    ]
    assert kinds([obj("Service"), obj("Service"), obj("HTTPRoute")]) == [
        ["Service", "Service"],
        ["HTTPRoute"],
    ]
    # A stepwise switch: the active mode shrinks only after the target was applied.
    assert kinds([obj("LeaderWorkerSet"), obj("Deployment")]) == [
        ["LeaderWorkerSet"],
        ["Deployment"],
    ]
    # A delete or prune waits for everything before it, and everything after waits for it.
    assert kinds([obj("Service"), ("delete", "Dense"), obj("Service")]) == [
        ["Service"],
        ["delete"],
        ["Service"],
    ]
