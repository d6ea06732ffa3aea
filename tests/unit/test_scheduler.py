"""The scheduler (shell/runtime.py): which plans are reconciled when, with a fake reconcile and a
fake traffic source, driven by events rather than the clock."""

from __future__ import annotations

import asyncio
from typing import Any

from breakeven.core import facts
from breakeven.shell.runtime import Config, PlanState, Scheduler


def body(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "team", "generation": 1}}


class SlowPrometheus:
    """Facts are stale until read; a read hangs until `answer` is set."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.asked: list[str] = []

    def stale(self, state: PlanState) -> bool:
        return state.traffic is None

    async def refresh(self, states: list[PlanState]) -> None:
        self.asked += [s.body["metadata"]["name"] for s in states]
        await self.answer.wait()
        for state in states:
            state.traffic = facts.Traffic(source="test")


async def test_a_silent_prometheus_never_holds_up_plans_whose_facts_are_fresh() -> None:
    done: dict[str, asyncio.Event] = {"fresh": asyncio.Event(), "stale": asyncio.Event()}
    seen: list[tuple[str, bool]] = []

    async def reconcile(state: PlanState) -> bool:
        name = state.body["metadata"]["name"]
        seen.append((name, state.traffic is not None))
        done[name].set()
        return False

    prometheus = SlowPrometheus()
    scheduler = Scheduler(Config(interval=3600), reconcile, prometheus, lambda: True)
    scheduler.remember(body("fresh"))
    scheduler.remember(body("stale"))
    scheduler.plans[("team", "fresh")].traffic = facts.Traffic(source="cached")
    task = asyncio.create_task(scheduler.run())
    try:
        # The guards only turn a hang into a failure; events, not time, order what is checked.
        await asyncio.wait_for(done["fresh"].wait(), timeout=30)
        assert prometheus.asked == ["stale"]  # the read is in flight, and it blocks nothing
        assert not done["stale"].is_set()  # the stale plan waits for its facts...
        prometheus.answer.set()
        await asyncio.wait_for(done["stale"].wait(), timeout=30)
        assert seen == [("fresh", True), ("stale", True)]  # ...and is reconciled with them
    finally:
        task.cancel()
        if scheduler.reading is not None:
            scheduler.reading.cancel()


async def test_a_failed_read_still_lets_the_plan_be_reconciled() -> None:
    reconciled = asyncio.Event()

    class Broken(SlowPrometheus):
        async def refresh(self, states: list[PlanState]) -> None:
            raise RuntimeError("boom")

    async def reconcile(state: PlanState) -> bool:
        assert state.traffic is not None and state.traffic.errors
        reconciled.set()
        return False

    scheduler = Scheduler(Config(interval=3600), reconcile, Broken(), lambda: True)
    scheduler.remember(body("p"))
    task = asyncio.create_task(scheduler.run())
    try:
        await asyncio.wait_for(reconciled.wait(), timeout=30)
    finally:
        task.cancel()
