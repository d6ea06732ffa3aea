"""The "To verify" items of issue 10, each reproduced (docs/reliability.md, Verified).

- a plan deleted during a watch restart (kopf's re-list reports no deletion) stayed in the
  scheduler and had its children applied again every interval;
- status was a merge patch computed from the watch's cached body and sent without a
  resourceVersion, so a stale cache restarted clocks and a concurrent write was overwritten;
- a status written by a newer operator (extra fields, new values) was unreadable after a
  rollback, and every clock restarted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

import pytest
from kubernetes.aio.client.exceptions import ApiException
from test_reconcile import ROOT, FakeApi, plan_and_evaluation, rendered_kind

from breakeven.core import api, facts, statuses, switching
from breakeven.shell import inputs
from breakeven.shell.reconcile import Reconciler
from breakeven.shell.runtime import Config, PlanState, Scheduler

MONTH_AGO = "2026-10-01T00:00:00Z"


def setup() -> tuple[Reconciler, FakeApi, dict[str, Any], facts.Traffic]:
    plan, ev = plan_and_evaluation(replicas=1, nodes=4)
    fake = FakeApi()
    nodes = inputs.load_nodes(ROOT / "examples/nodes/h200-infiniband.yaml")[0]
    mapping = facts.LabelMapping()
    index = {"gpu": [facts.node_info(n, mapping) for n in nodes]}
    r = Reconciler(Config(), lambda: index)
    r.connect(fake)  # type: ignore[arg-type]
    body = plan.model_dump(by_alias=True, mode="json", exclude_none=True)
    body["metadata"]["resourceVersion"] = "1"
    return r, fake, body, ev.traffic


class FreshFacts:
    """A traffic source whose facts are never stale."""

    def stale(self, state: PlanState) -> bool:
        return False

    async def refresh(self, states: list[PlanState]) -> None:
        return None


async def test_a_plan_deleted_while_the_watch_was_away_is_forgotten_and_nothing_is_applied() -> (
    None
):
    r, fake, body, traffic = setup()
    fake.plan = None  # deleted; the watch's re-list never said so
    scheduler = Scheduler(Config(), r.reconcile, FreshFacts(), lambda: True)
    # A plan the operator knew (listed with its status): no event body is held for it, so the
    # reconcile GETs it (a new plan's first reconcile takes its ADDED event's body instead).
    scheduler.remember({**body, "status": {"observedGeneration": 1}})
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    scheduler.plans[key].traffic = traffic
    await scheduler._work(key, scheduler.plans[key])
    assert key not in scheduler.plans
    assert fake.log == [] and fake.status == {}


async def test_a_plan_recreated_under_the_same_name_is_not_reconciled_from_the_old_body() -> None:
    r, fake, body, traffic = setup()
    fake.plan = {**body, "metadata": {**body["metadata"], "uid": "another"}}
    state = PlanState(body=body, traffic=traffic)
    await r.reconcile(state)
    assert state.gone and fake.log == []


async def test_status_comes_from_the_api_server_not_a_stale_cache_and_names_its_version() -> None:
    r, fake, body, traffic = setup()
    fake.plan = body
    state = PlanState(body=body, traffic=traffic)
    await r.reconcile(state)
    await asyncio.gather(*r.publisher._posting)
    rows = fake.status["criteria"]
    assert rows and all(row["since"] != MONTH_AGO for row in rows)
    # What the API server holds now: clocks a month old, at resourceVersion 42. The cache
    # (state.body) still has no status, as right after a write whose event has not come yet.
    held = {**fake.status, "criteria": [{**row, "since": MONTH_AGO} for row in rows]}
    fake.plan = {**body, "metadata": {**body["metadata"], "resourceVersion": "42"}, "status": held}
    fake.status = held
    await r.reconcile(state)
    assert [row["since"] for row in fake.status["criteria"]] == [MONTH_AGO] * len(rows)
    assert fake.status_versions[-1] == "42"


async def test_a_status_write_refused_as_a_conflict_is_retried_at_once() -> None:
    r, fake, body, traffic = setup()
    fake.plan = body

    async def conflict(
        namespace: str, name: str, status: Mapping[str, Any], resource_version: str | None = None
    ) -> None:
        raise ApiException(status=409, reason="Conflict")

    fake.patch_status = conflict  # type: ignore[method-assign]
    state = PlanState(body=body, traffic=traffic)
    assert await r.reconcile(state) is False  # no exception: the scheduler retries it
    assert state.pending and not state.gone


def newer_status(status: dict[str, Any]) -> dict[str, Any]:
    """`status` as a newer operator might write it: new fields at every level, a row of a
    criterion this version does not know, a phase it does not know."""
    rows = [{**row, "confidence": 0.9} for row in status["criteria"]]
    rows.append({"name": "kvCacheHeadroom", "verdict": "Go", "since": MONTH_AGO})
    workloads = [{**w, "trialOf": "x"} for w in status.get("workloads") or []]
    return {
        **status,
        "criteria": rows,
        "workloads": workloads,
        "phase": "Trialing",
        "trial": {"startedAt": MONTH_AGO},
    }


async def test_a_status_from_a_newer_operator_keeps_every_clock_after_a_rollback() -> None:
    r, fake, body, traffic = setup()
    fake.plan = body
    await r.reconcile(PlanState(body=body, traffic=traffic))
    await asyncio.gather(*r.publisher._posting)
    rows = [{**row, "since": MONTH_AGO} for row in fake.status["criteria"]]
    written = newer_status({**fake.status, "criteria": rows})
    prev = statuses.previous({**body, "status": written})
    assert prev is not None, "the whole status was dropped: every clock restarts"
    assert [row.since for row in prev.criteria] == [MONTH_AGO] * len(rows)
    assert [row.name for row in prev.criteria] == [api.Criterion(row["name"]) for row in rows]
    assert prev.mode == api.ServingMode(fake.status["mode"])
    assert prev.phase is None  # the unknown phase alone is dropped


def test_unreadable_fields_are_dropped_one_by_one_and_the_rest_kept() -> None:
    prev = statuses.previous({"status": {"criteria": "garbage", "mode": "MoE", "phase": 7}})
    assert prev is not None and prev.mode == api.ServingMode.MOE and prev.criteria == []
    assert statuses.previous({"status": {}}) is None


async def test_a_switch_target_whose_pods_never_schedule_is_broken_after_a_deadline() -> None:
    plan, ev = plan_and_evaluation(replicas=1, nodes=4)
    fake = FakeApi()
    r = Reconciler(Config(), lambda: None)
    r.connect(fake)  # type: ignore[arg-type]
    moe = f"{plan.name}-moe"
    dense = f"{plan.name}-dense"
    fake.workload(rendered_kind(ev, api.ServingMode.DENSE, dense), dense, 1, 1)
    fake.workload(rendered_kind(ev, api.ServingMode.MOE, moe), moe, 1, 0)
    fake.pod_list = [
        {
            "metadata": {"name": f"{moe}-0"},
            "status": {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": 'persistentvolumeclaim "model-cache" not found',
                    }
                ],
            },
        }
    ]
    now = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)
    started = switching.rfc3339(now - dt.timedelta(hours=6))
    prev = api.ServingPlanStatus(
        mode=api.ServingMode.DENSE,
        target_mode=api.ServingMode.MOE,
        criteria=list(ev.decision.rows),
        switch=api.SwitchStatus.model_validate(
            {"from": "Dense", "to": "MoE", "startedAt": started, "step": "WaitingForTarget"}
        ),
    )
    seen = await r.observe(plan, ev, prev, now)
    assert seen[api.ServingMode.MOE].exists and seen[api.ServingMode.MOE].ready_replicas == 0
    step = switching.step(ev, prev, seen, now)
    # Six hours of Pending pods: the attempt should have failed into a reported back-off.
    assert seen[api.ServingMode.MOE].broken is not None
    assert step.moe_backoff is not None
    assert "not scheduled" in str(seen[api.ServingMode.MOE].broken)
    assert 'persistentvolumeclaim "model-cache" not found' in str(seen[api.ServingMode.MOE].broken)


def test_a_switch_target_that_never_served_is_not_broken_before_the_deadline() -> None:
    now = dt.datetime(2026, 11, 1, 12, tzinfo=dt.UTC)
    started = now - dt.timedelta(seconds=statuses.TARGET_READY_DEADLINE_S - 60)
    pending = [{"metadata": {"name": "p-0"}, "status": {"phase": "Pending"}}]
    assert statuses.broken(pending, None, 300.0, now, switching.rfc3339(started)) is None
    later = now + dt.timedelta(seconds=120)
    assert statuses.broken([], None, 300.0, later, switching.rfc3339(started)) == (
        f"no ready pod 2h after the switch began at {switching.rfc3339(started)}: "
        "no pods created (admission refused?)"
    )


async def test_plans_are_reconciled_when_a_read_takes_longer_than_the_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the chaos suite (Prometheus answering after 30 s, --interval 2): facts dated
    from the read's start arrived already stale, so no plan was ever reconciled."""
    from breakeven.shell import prometheus
    from breakeven.shell.runtime import TrafficCache

    _, _, body, _ = setup()

    async def slow_read(client: Any, queries: Any, **_: Any) -> dict[str, facts.Traffic]:
        await asyncio.sleep(0.3)  # three intervals
        return {q.key: facts.Traffic(errors=("timed out",)) for q in queries}

    monkeypatch.setattr(prometheus, "read_traffic", slow_read)
    config = Config(prometheus_url="http://prometheus:9090", interval=0.1)
    reconciled: list[str] = []

    async def reconcile(state: PlanState) -> bool:
        reconciled.append(state.body["metadata"]["name"])
        return False

    scheduler = Scheduler(config, reconcile, TrafficCache(config, None), lambda: True)  # type: ignore[arg-type]
    scheduler.remember(body)
    task = asyncio.create_task(scheduler.run())
    try:
        for _ in range(40):
            await asyncio.sleep(0.1)
            if reconciled:
                break
    finally:
        task.cancel()
        if scheduler.reading is not None:
            scheduler.reading.cancel()
    assert reconciled, "no reconcile while every read outlasted the interval"
