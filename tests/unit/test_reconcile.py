"""The reconcile's I/O steps (shell/reconcile.py) against an in-memory API server.

`FakeApi` keeps objects by (kind, namespace, name) and can refuse chosen writes, so a test sees
what the operator writes, in which order, and what it leaves behind when a write fails.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes.aio.client.exceptions import ApiException

from breakeven.core import api, facts, planning, statuses, switching
from breakeven.shell import inputs
from breakeven.shell.reconcile import Reconciler
from breakeven.shell.runtime import Config, PlanState

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
MOE, DENSE = api.ServingMode.MOE, api.ServingMode.DENSE
Key = tuple[str, str, str]


class FakeApi:
    """The parts of kube.Writer the reconcile uses."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.pod_list: list[dict[str, Any]] = []
        self.log: list[tuple[str, str, str]] = []
        self.refuse: Callable[[Mapping[str, Any]], bool] = lambda obj: False
        self.status: dict[str, Any] = {}
        self.events: list[str] = []
        self.plan: dict[str, Any] | None = None  # what get_plan answers (None: deleted)
        self.status_versions: list[str | None] = []

    async def claim(self, objs: Sequence[Mapping[str, Any]]) -> None:
        return None  # the raw writer checks no names (kube.Writer.claim)

    async def apply(self, obj: Mapping[str, Any], claimed: bool = False) -> dict[str, Any]:
        meta = obj["metadata"]
        if self.refuse(obj):
            self.log.append(("refused", obj["kind"], meta["name"]))
            raise ApiException(status=403, reason="Forbidden")
        self.log.append(("apply", obj["kind"], meta["name"]))
        key = (obj["kind"], meta["namespace"], meta["name"])
        old = self.objects.get(key, {})
        self.objects[key] = {**old, **dict(obj), "status": old.get("status", {})}
        return self.objects[key]

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    async def delete(self, kind: str, namespace: str, name: str) -> bool:
        self.log.append(("delete", kind, name))
        return self.objects.pop((kind, namespace, name), None) is not None

    async def pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        return list(self.pod_list)

    async def serves(self, group: str, version: str, plural: str) -> bool:
        return False  # no Prometheus Operator: MoE telemetry goes by annotations

    async def patch_status(
        self,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        resource_version: str | None = None,
    ) -> None:
        self.status_versions.append(resource_version)
        self.status = {**self.status, **status}

    async def get_plan(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.plan

    async def post_event(
        self, plan: Mapping[str, Any], type: str, reason: str, message: str
    ) -> None:
        self.events.append(reason)

    def workload(self, kind: str, name: str, replicas: int, ready: int) -> None:
        """An object the plan owns, as the cluster shows it."""
        self.objects[(kind, "default", name)] = {
            "kind": kind,
            "metadata": {"name": name, "namespace": "default", "ownerReferences": [{"uid": "u"}]},
            "spec": {"replicas": replicas},
            "status": {"readyReplicas": ready},
        }

    def replicas(self, kind: str, name: str) -> int | None:
        obj = self.objects.get((kind, "default", name))
        return None if obj is None else int(obj["spec"]["replicas"])


def plan_and_evaluation(
    replicas: int = 2, nodes: int = 2
) -> tuple[api.ServingPlan, planning.Evaluation]:
    plan = inputs.load_plans(ROOT / "examples/plans/deepseek-v3-sustained.yaml")[0]
    serving = plan.spec.serving.model_copy(update={"replicas": replicas})
    plan = plan.model_copy(
        update={
            "spec": plan.spec.model_copy(update={"serving": serving}),
            "metadata": plan.metadata.model_copy(
                update={"uid": "u", "generation": 1, "namespace": "default"}
            ),
        }
    )
    all_nodes = inputs.load_nodes(ROOT / "examples/nodes/h200-infiniband.yaml")[0][:nodes]
    cluster = facts.Cluster.from_nodes(all_nodes)
    ev = planning.evaluate(
        plan, cluster, inputs.load_traffic(ROOT / "examples/traffic/sustained.yaml")
    )
    return plan, ev


def rendered_kind(ev: planning.Evaluation, mode: api.ServingMode, name: str) -> str:
    wanted = statuses.expected(ev, mode, None)
    assert wanted is not None
    return next(kind for kind, n in wanted if n == name)


def reconciler(fake: FakeApi) -> Reconciler:
    r = Reconciler(Config(), lambda: None)
    r.connect(fake)  # type: ignore[arg-type]  # the fake has the methods the reconcile calls
    return r


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_stepwise_switch_whose_target_is_refused_keeps_the_active_mode_whole() -> None:
    plan, ev = plan_and_evaluation(replicas=2, nodes=2)
    assert not switching.room_for_both(ev, 2)
    fake = FakeApi()
    dense, moe = f"{plan.name}-dense", f"{plan.name}-moe"
    fake.workload("Deployment", dense, 2, 2)
    month_ago = switching.rfc3339(T0 - dt.timedelta(days=30))
    rows = [r.model_copy(update={"since": month_ago}) for r in ev.decision.rows]
    prev = api.ServingPlanStatus(mode=DENSE, target_mode=DENSE, criteria=rows)
    seen = {DENSE: switching.Observed(mode=DENSE, exists=True, replicas=2, ready_replicas=2)}
    step = switching.step(ev, prev, seen, T0)
    assert step.switch is not None and step.switch.step == api.SwitchStep.STEPWISE
    fake.refuse = lambda obj: obj["metadata"]["name"] == moe  # the target's apply is refused
    carried = run(reconciler(fake).carry_out(plan, ev, step, prev))
    assert carried.error is not None and "403" in carried.error
    assert fake.replicas("Deployment", dense) == 2, fake.log  # dense still has both replicas


def test_a_single_replica_restarting_its_pods_is_not_broken_until_the_grace_passes() -> None:
    plan, ev = plan_and_evaluation(replicas=1, nodes=4)
    fake = FakeApi()
    moe = f"{plan.name}-moe"
    kind = rendered_kind(ev, MOE, moe)  # one LWS group or one Deployment replica
    fake.workload(kind, moe, 1, 0)  # its one replica lost its ready pods
    served = api.ServingPlanStatus(
        mode=MOE,
        workloads=[
            api.WorkloadStatus(
                kind=kind,
                name=moe,
                mode=MOE,
                replicas=1,
                ready_replicas=1,
                serving=True,
            )
        ],
    )
    r = reconciler(fake)
    seen = run(r.observe(plan, ev, served, T0))
    assert seen[MOE].broken is None and seen[MOE].down_since == switching.rfc3339(T0)
    step = switching.step(ev, served, seen, T0)
    assert step.target == MOE and not step.fallback  # no move to a cold dense workload
    grace = api.parse_duration(plan.spec.policy.demotion_grace)
    down = served.model_copy(
        update={
            "workloads": [
                served.workloads[0].model_copy(
                    update={"ready_replicas": 0, "down_since": seen[MOE].down_since}
                )
            ]
        }
    )
    past = run(r.observe(plan, ev, down, T0 + dt.timedelta(seconds=grace + 1)))
    assert past[MOE].broken is not None and "no ready pods" in past[MOE].broken


def test_a_workload_of_a_stale_kind_is_not_counted_and_goes_once_its_successor_is_ready() -> None:
    plan, ev = plan_and_evaluation(replicas=1, nodes=4)
    fake = FakeApi()
    dense = f"{plan.name}-dense"
    kind = rendered_kind(ev, DENSE, dense)
    old_kind = "LeaderWorkerSet" if kind == "Deployment" else "Deployment"
    fake.workload(old_kind, dense, 1, 1)  # rendered before the dtype changed its kind
    prev = api.ServingPlanStatus(mode=DENSE, target_mode=DENSE, criteria=list(ev.decision.rows))
    r = reconciler(fake)
    seen = run(r.observe(plan, ev, prev, T0))
    assert not seen[DENSE].exists and seen[DENSE].ready_replicas == 0  # not counted as ready
    assert seen[DENSE].stale == (f"{old_kind}/{dense}",)
    step = switching.step(ev, prev, seen, T0)
    assert not [a for a in step.actions if a.kind == "prune"]  # it serves until the new is up
    run(r.carry_out(plan, ev, step, prev))
    assert fake.replicas(old_kind, dense) == 1 and fake.replicas(kind, dense) == 1
    fake.objects[(kind, "default", dense)]["status"] = {"readyReplicas": 1}
    seen = run(r.observe(plan, ev, prev, T0))
    assert seen[DENSE].exists and seen[DENSE].kind == kind and seen[DENSE].ready_replicas == 1
    step = switching.step(ev, prev, seen, T0)
    run(r.carry_out(plan, ev, step, prev))
    assert fake.replicas(old_kind, dense) is None, fake.log  # the stale object is gone
    assert fake.replicas(kind, dense) == 1


async def test_a_whole_reconcile_writes_status_once_and_announces_each_thing_once() -> None:
    plan, ev = plan_and_evaluation(replicas=1, nodes=4)
    fake = FakeApi()
    nodes = inputs.load_nodes(ROOT / "examples/nodes/h200-infiniband.yaml")[0]
    mapping = facts.LabelMapping()
    index = {"gpu": [facts.node_info(n, mapping) for n in nodes]}
    r = Reconciler(Config(), lambda: index)
    r.connect(fake)  # type: ignore[arg-type]
    body = plan.model_dump(by_alias=True, mode="json", exclude_none=True)
    state = PlanState(body=body, traffic=ev.traffic)

    async def reconcile() -> None:
        fake.plan = state.body
        await r.reconcile(state)
        await asyncio.gather(*r.publisher._posting)
        state.body = {**state.body, "status": dict(fake.status)}

    await reconcile()
    assert fake.status["mode"] == "Dense" and fake.status["reason"] == "PromotionPending"
    assert fake.events == ["Deploying"]
    assert ("apply", "Service", plan.name) in fake.log
    await reconcile()
    assert fake.events == ["Deploying"]  # nothing new to say
    # A spec the API would refuse (an older CRD let it in): reported, nothing touched.
    bad = {**state.body, "spec": {**state.body["spec"], "mode": "Sometimes"}}
    state.body = bad
    writes = len(fake.log)
    await reconcile()
    assert fake.status["phase"] == "Invalid" and "spec.mode" in fake.status["message"]
    assert fake.status["mode"] == "Dense"  # what runs is still said
    assert fake.events == ["Deploying", "InvalidSpec"] and len(fake.log) == writes


async def test_a_conflicting_status_write_reconciles_again_on_either_path() -> None:
    """A 409 on the status write (the plan changed after it was read) is no failed reconcile:
    the plan is queued again at once, from a fresh read, for a valid spec and an invalid one."""
    plan, ev = plan_and_evaluation(replicas=1, nodes=4)
    fake = FakeApi()
    nodes = inputs.load_nodes(ROOT / "examples/nodes/h200-infiniband.yaml")[0]
    index = {"gpu": [facts.node_info(n, facts.LabelMapping()) for n in nodes]}
    r = Reconciler(Config(), lambda: index)
    r.connect(fake)  # type: ignore[arg-type]

    async def conflict(*args: object, **kwargs: object) -> None:
        raise ApiException(status=409, reason="Conflict")

    fake.patch_status = conflict  # type: ignore[method-assign]
    body = plan.model_dump(by_alias=True, mode="json", exclude_none=True)
    bad = {**body, "spec": {**body["spec"], "mode": "Sometimes"}}
    for sent in (body, bad):
        state = PlanState(body=sent, traffic=ev.traffic)
        fake.plan, fake.events = sent, []
        assert await r.reconcile(state) is False
        await asyncio.gather(*r.publisher._posting)
        assert state.pending, sent["spec"]["mode"]
        assert fake.events == []  # nothing announced from a status that was not written
