"""The helpers of the control-plane benchmark's kopf variant (bench/kopf_operator.py) and its
burst figures (bench/controlplane.py): the per-plan gate across kopf's entry points, the plan
states it keeps, and the rate of a burst."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import kopf

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


default_registry = kopf.get_default_registry()
variant = _load("kopf_operator")
controlplane = _load("controlplane")


def test_loading_the_variant_leaves_kopfs_default_registry_alone() -> None:
    assert kopf.get_default_registry() is default_registry
    assert variant.REGISTRY is not default_registry


def plan(name: str = "p", uid: str = "u1", generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "breakeven.dev/v1alpha1",
        "kind": "ServingPlan",
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "generation": generation},
        "spec": {"model": {"name": "m"}},
        "status": {"phase": "Ready"},
    }


class FakeTraffic:
    others: Any = tuple

    def stale(self, state: Any) -> bool:
        return False


class FakeReconciler:
    """Reconciles by counting; the first `conflicts` status writes meet a newer plan (409)."""

    def __init__(self, conflicts: int) -> None:
        self.calls = 0
        self.conflicts = conflicts

    async def reconcile(self, state: Any) -> bool:
        self.calls += 1
        if self.calls <= self.conflicts:
            state.pending = True  # as Reconciler.write_status on a 409
        return False


class FakeRuntime:
    """What Plans uses of Runtime: the traffic cache and the reconciler."""

    def __init__(self, conflicts: int = 0) -> None:
        self.traffic = FakeTraffic()
        self.reconciler = FakeReconciler(conflicts)


async def test_gate_serialises_one_plan_and_folds_a_second_waiter_into_the_first() -> None:
    gate = variant.Gate()
    key = ("ns", "p")
    order: list[str] = []
    release = asyncio.Event()

    async def run(label: str, hold: bool = False) -> bool:
        async with gate.turn(key) as go:
            if go:
                order.append(f"{label} in")
                if hold:
                    await release.wait()
                order.append(f"{label} out")
            return bool(go)

    first = asyncio.create_task(run("a", hold=True))
    await asyncio.sleep(0)
    second = asyncio.create_task(run("b"))
    await asyncio.sleep(0)
    third = asyncio.create_task(run("c"))  # b already waits: folded into it
    await asyncio.sleep(0)
    assert gate.busy == 2
    release.set()
    assert await asyncio.gather(first, second, third) == [True, True, False]
    assert order == ["a in", "a out", "b in", "b out"]
    assert gate.busy == 0


async def test_gate_runs_different_plans_at_once() -> None:
    gate = variant.Gate()
    inside = 0
    most = 0

    async def run(name: str) -> None:
        nonlocal inside, most
        async with gate.turn(("ns", name)) as go:
            assert go
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(run("a"), run("b"), run("c"))
    assert most == 3
    for name in "abc":
        gate.forget(("ns", name))
    assert gate.locks == {}


async def test_plans_keep_one_state_per_plan_and_drop_traffic_on_a_spec_change() -> None:
    plans = variant.Plans(FakeRuntime())
    state = plans.remember(plan())
    assert state.body["metadata"] == {"name": "p", "namespace": "ns", "uid": "u1", "generation": 1}
    assert "status" not in state.body
    state.traffic = object()
    assert plans.remember(plan()) is state and state.traffic is not None  # our status write
    assert plans.remember(plan(generation=2)) is state and state.traffic is None
    assert state.body["metadata"]["generation"] == 2
    replaced = plans.remember(plan(uid="u2", generation=2))  # deleted and created again
    assert replaced is not state
    plans.forget(("ns", "p"))
    assert plans.states == {}


async def test_a_status_write_that_met_a_newer_plan_is_reconciled_again_at_once() -> None:
    runtime = FakeRuntime(conflicts=2)
    plans = variant.Plans(runtime)
    state = plans.remember(plan())
    assert await plans.reconcile(state) is False
    assert runtime.reconciler.calls == 3 and not state.pending


def test_burst_rate_counts_the_names_seen_and_the_span_to_the_last() -> None:
    seen = {"a": 11.0, "b": 12.0, "c": 14.0, "other": 100.0}
    assert controlplane.burst_rate(10.0, seen, ["a", "b", "c", "d"]) == (3, 4.0, 0.75)


def test_burst_rate_of_nothing_seen_is_not_a_number() -> None:
    done, span, rate = controlplane.burst_rate(10.0, {}, ["a"])
    assert (done, span) == (0, 0.0) and math.isnan(rate)
