"""TrafficCache reads ahead (shell/runtime.py READ_AHEAD): a batched read also refreshes the plans
whose facts go stale within half an interval, so plans read together stay together and a sweep
costs about one batch whatever the number of plans."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from breakeven.core import facts
from breakeven.shell import prometheus, runtime
from breakeven.shell.runtime import Config, PlanState, TrafficCache


def plan(name: str, age: float | None, interval: float) -> PlanState:
    body = {
        "apiVersion": "breakeven.dev/v1alpha1",
        "kind": "ServingPlan",
        "metadata": {"name": name, "namespace": "team", "uid": name, "generation": 1},
        "spec": {"model": {"name": "Qwen/Qwen3-30B-A3B"}},
    }
    state = PlanState(body=body)
    if age is not None:
        state.traffic = facts.Traffic(source="old")
        state.traffic_at = time.monotonic() - age * interval
    return state


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The plan keys of each batched read (no Prometheus: read_traffic is replaced)."""
    seen: list[list[str]] = []

    async def read_traffic(
        http: Any, queries: Sequence[prometheus.TrafficQuery], **_: Any
    ) -> dict[str, facts.Traffic]:
        seen.append(sorted(q.key for q in queries))
        return {q.key: facts.Traffic(source="read") for q in queries}

    monkeypatch.setattr(prometheus, "read_traffic", read_traffic)
    return seen


async def test_a_read_also_refreshes_the_plans_about_to_go_stale(reads: list[list[str]]) -> None:
    config = Config(prometheus_url="http://prometheus:9090", interval=60)
    cache = TrafficCache(config, None)  # type: ignore[arg-type]
    due = plan("due", 1.05, 60)  # stale: the plan whose reconcile asked
    soon = plan("soon", 1 - runtime.READ_AHEAD / 2, 60)  # goes stale within the read-ahead
    fresh = plan("fresh", 0.1, 60)  # read a moment ago
    new = plan("new", None, 60)  # never read: read when it is queued, not ahead
    reading = plan("reading", 0.9, 60)
    reading.reading = True  # already waiting for the next read
    cache.others = lambda: [due, soon, fresh, new, reading]
    await cache.refresh([due])
    assert reads == [["team/due", "team/soon"]]
    assert due.traffic is not None and due.traffic.source == "read"
    assert soon.traffic is not None and soon.traffic.source == "read"
    assert fresh.traffic is not None and fresh.traffic.source == "old"
    assert new.traffic is None


async def test_no_stale_plan_no_read_even_with_plans_close_to_stale(
    reads: list[list[str]],
) -> None:
    config = Config(prometheus_url="http://prometheus:9090", interval=60)
    cache = TrafficCache(config, None)  # type: ignore[arg-type]
    read_just_now = plan("queued", 0.0, 60)  # its facts arrived while it waited
    soon = plan("soon", 0.9, 60)
    cache.others = lambda: [read_just_now, soon]
    await cache.refresh([read_just_now])
    assert reads == []
