"""The scheduler (shell/runtime.py): which plans are reconciled when, with a fake reconcile and a
fake traffic source, driven by events rather than the clock."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from breakeven.core import facts
from breakeven.shell.runtime import (
    PLAN,
    RETRY_BASE,
    RETRY_MAX,
    Config,
    PlanState,
    Scheduler,
    periodic_limit,
    retry_delay,
)


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


class Fresh(SlowPrometheus):
    """Facts never stale: every plan is reconciled at once."""

    def stale(self, state: PlanState) -> bool:
        return False


class Gate:
    """A reconcile that records who runs and blocks until released, per plan."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.most = 0
        self.order: list[str] = []
        self.release: dict[str, asyncio.Event] = {}
        self.started = asyncio.Event()

    def gate(self, name: str) -> asyncio.Event:
        return self.release.setdefault(name, asyncio.Event())

    async def __call__(self, state: PlanState) -> bool:
        name = state.body["metadata"]["name"]
        assert name not in self.running, f"{name} reconciled twice at once"
        self.running.add(name)
        self.most = max(self.most, len(self.running))
        self.order.append(name)
        self.started.set()
        try:
            await self.gate(name).wait()
        finally:
            self.running.discard(name)
        return False


async def until(check: Any) -> None:
    """Yield to the loop until `check()` holds (the guard only turns a hang into a failure)."""

    async def poll() -> None:
        while not check():
            await asyncio.sleep(0)

    await asyncio.wait_for(poll(), timeout=30)


async def test_at_most_the_configured_workers_reconcile_at_once() -> None:
    gate = Gate()
    scheduler = Scheduler(Config(interval=3600, workers=3), gate, Fresh(), lambda: True)
    for i in range(7):
        scheduler.remember(body(f"p{i}"))
    task = asyncio.create_task(scheduler.run())
    try:
        await until(lambda: len(gate.running) == 3)
        assert scheduler.depth() == 4  # the others wait in the queue
        for i in range(7):
            gate.gate(f"p{i}").set()
        await until(lambda: len(gate.order) == 7)
        assert gate.most == 3 and sorted(gate.order) == [f"p{i}" for i in range(7)]
    finally:
        task.cancel()


async def test_a_plan_triggered_while_reconciled_runs_again_after_never_beside_it() -> None:
    gate = Gate()
    scheduler = Scheduler(Config(interval=3600, workers=4), gate, Fresh(), lambda: True)
    scheduler.remember(body("p"))
    task = asyncio.create_task(scheduler.run())
    try:
        await until(lambda: gate.order == ["p"])
        for _ in range(5):  # de-duplicated: one more reconcile, not five, and not in parallel
            scheduler.trigger("team", "p")
        assert scheduler.depth() == 0
        gate.gate("p").set()  # the first ends; the triggers make exactly one more
        await until(lambda: len(gate.order) == 2 and not gate.running)
        for _ in range(3):  # no third reconcile comes of the five triggers
            await asyncio.sleep(0)
        assert gate.order == ["p", "p"]
    finally:
        task.cancel()


async def test_new_and_triggered_plans_go_before_periodic_re_evaluation() -> None:
    gate = Gate()
    scheduler = Scheduler(Config(interval=3600, workers=1), gate, Fresh(), lambda: True)
    scheduler.remember(body("first"))
    task = asyncio.create_task(scheduler.run())
    try:
        await until(lambda: gate.order == ["first"])  # the one worker is busy
        for name in ("old-1", "old-2"):  # plans known before, now due on their interval
            scheduler.plans[("team", name)] = PlanState(body=body(name))
            scheduler._enqueue(("team", name), urgent=False)
        scheduler.remember(body("new"))  # a plan just created
        scheduler.plans[("team", "triggered")] = PlanState(body=body("triggered"))
        scheduler._enqueue(("team", "triggered"), urgent=False)
        scheduler.trigger("team", "triggered")  # a child event promotes it
        for name in ("first", "old-1", "old-2", "new", "triggered"):
            gate.gate(name).set()
        await until(lambda: len(gate.order) == 5)
        assert gate.order == ["first", "new", "triggered", "old-1", "old-2"]
    finally:
        task.cancel()


def test_periodic_work_leaves_a_quarter_of_the_workers_free() -> None:
    assert [periodic_limit(n) for n in (0, 1, 2, 3, 4, 8, 16)] == [1, 1, 1, 2, 3, 6, 12]


async def test_a_new_plan_finds_a_worker_while_periodic_reconciles_fill_the_rest() -> None:
    gate = Gate()
    scheduler = Scheduler(Config(interval=3600, workers=4), gate, Fresh(), lambda: True)
    for i in range(6):  # plans known before, all due on their interval at once
        scheduler.plans[("team", f"old-{i}")] = PlanState(body=body(f"old-{i}"))
        scheduler._enqueue(("team", f"old-{i}"), urgent=False)
    task = asyncio.create_task(scheduler.run())
    try:
        await until(lambda: len(gate.running) == 3)  # periodic work takes 3 of the 4
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(gate.running) == 3 and scheduler.depth() == 3
        scheduler.remember(body("new"))  # created now: the fourth worker takes it at once
        await until(lambda: "new" in gate.running)
        assert len(gate.running) == 4
        gate.gate("new").set()
        await until(lambda: "new" not in gate.running)
        for _ in range(3):  # the freed worker is the urgent one: periodic work stays at 3
            await asyncio.sleep(0)
        assert len(gate.running) == 3 and scheduler.depth() == 3
        gate.gate("old-0").set()  # a periodic reconcile ends: the next periodic one starts
        await until(lambda: len(gate.order) == 5)
        assert gate.order[-1] == "old-3" and len(gate.running) == 3
        for i in range(6):
            gate.gate(f"old-{i}").set()
        await until(lambda: len(gate.order) == 7 and not gate.running)
    finally:
        task.cancel()


async def test_a_failing_reconcile_is_retried_and_the_others_go_on() -> None:
    attempts: list[str] = []
    done = asyncio.Event()

    async def reconcile(state: PlanState) -> bool:
        name = state.body["metadata"]["name"]
        attempts.append(name)
        if name == "bad" and attempts.count("bad") < 3:
            raise RuntimeError("the API server said no")
        if attempts.count("bad") == 3:
            done.set()
        return False

    scheduler = Scheduler(Config(interval=3600, workers=2), reconcile, Fresh(), lambda: True)
    scheduler.remember(body("bad"))
    scheduler.remember(body("good"))
    task = asyncio.create_task(scheduler.run())
    try:
        await asyncio.wait_for(done.wait(), timeout=30)  # retries after 0.5 s, then 1 s
        assert attempts.count("bad") == 3 and attempts.count("good") == 1
        assert scheduler.plans[("team", "bad")].failures == 0  # reset by the success
    finally:
        task.cancel()


def test_retries_back_off_exponentially_up_to_a_ceiling() -> None:
    delays = [retry_delay(n) for n in range(1, 14)]
    assert delays[:4] == [RETRY_BASE, 2 * RETRY_BASE, 4 * RETRY_BASE, 8 * RETRY_BASE]
    assert delays == sorted(delays) and delays[-1] == RETRY_MAX


def test_every_line_logged_while_a_plan_is_worked_on_names_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = PLAN.set("team/p")
    try:
        with caplog.at_level(logging.INFO, logger="breakeven"):
            logging.getLogger("breakeven").info("apply failed: %s", "no")
    finally:
        PLAN.reset(token)
    with caplog.at_level(logging.INFO, logger="breakeven"):
        logging.getLogger("breakeven").info("not about a plan")
    assert [r.getMessage() for r in caplog.records] == [
        "[team/p] apply failed: no",
        "not about a plan",
    ]
    assert [getattr(r, "plan", None) for r in caplog.records] == ["team/p", "-"]


async def test_a_periodic_plan_whose_facts_were_read_stays_behind_new_plans() -> None:
    order: list[str] = []
    go, read, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    class Reads(SlowPrometheus):
        def stale(self, state: PlanState) -> bool:
            return state.traffic is None

        async def refresh(self, states: list[PlanState]) -> None:
            await go.wait()
            for state in states:
                state.traffic = facts.Traffic(source="test")
            read.set()

    async def reconcile(state: PlanState) -> bool:
        name = state.body["metadata"]["name"]
        order.append(name)
        if name == "busy":
            await release.wait()
        return False

    def add(name: str, urgent: bool, fresh: bool) -> None:
        traffic = facts.Traffic(source="test") if fresh else None
        scheduler.plans[("team", name)] = PlanState(body=body(name), urgent=urgent, traffic=traffic)
        scheduler._enqueue(("team", name), urgent=urgent)

    scheduler = Scheduler(Config(interval=3600, workers=1), reconcile, Reads(), lambda: True)
    add("old", urgent=False, fresh=False)  # due on its interval, its facts stale: read first
    add("busy", urgent=False, fresh=True)  # keeps the one worker busy meanwhile
    task = asyncio.create_task(scheduler.run())
    try:
        await until(lambda: order == ["busy"])
        go.set()
        await asyncio.wait_for(read.wait(), timeout=30)
        await until(lambda: ("team", "old") in scheduler.queued)  # its facts are in
        add("new", urgent=True, fresh=True)  # a plan created meanwhile
        release.set()
        await until(lambda: len(order) == 3)
        assert order == ["busy", "new", "old"]
    finally:
        task.cancel()


class FleetReadHangs(SlowPrometheus):
    """A read of plans read before hangs until `answer` is set; a read of plans never read
    answers at once."""

    async def refresh(self, states: list[PlanState]) -> None:
        self.asked += [s.body["metadata"]["name"] for s in states]
        if any(s.traffic is not None for s in states):
            await self.answer.wait()
        for state in states:
            state.traffic = facts.Traffic(source="test")


async def test_a_new_plan_is_read_beside_a_fleet_read_in_flight_not_behind_it() -> None:
    new_done = asyncio.Event()
    seen: list[str] = []

    async def reconcile(state: PlanState) -> bool:
        seen.append(state.body["metadata"]["name"])
        if state.body["metadata"]["name"] == "new":
            new_done.set()
        return False

    prometheus = FleetReadHangs()
    prometheus.stale = lambda state: state.traffic is None or state.traffic.source == "old"  # type: ignore[method-assign]
    scheduler = Scheduler(Config(interval=3600), reconcile, prometheus, lambda: True)
    scheduler.remember(body("old"))
    scheduler.plans[("team", "old")].traffic = facts.Traffic(source="old")  # due again
    task = asyncio.create_task(scheduler.run())
    try:

        async def fleet_read_started() -> None:
            while prometheus.asked != ["old"]:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(fleet_read_started(), timeout=30)  # in flight, and it hangs
        scheduler.remember(body("new"))
        await asyncio.wait_for(new_done.wait(), timeout=30)
        assert prometheus.asked == ["old", "new"]  # read alone, nothing ahead
        assert seen == ["new"]  # reconciled while the fleet's read still hangs
        assert scheduler.reading is not None and not scheduler.reading.done()
        prometheus.answer.set()
        await asyncio.wait_for(scheduler.reading, timeout=30)
    finally:
        task.cancel()
        for reading in (scheduler.reading, scheduler.first_reading):
            if reading is not None:
                reading.cancel()
