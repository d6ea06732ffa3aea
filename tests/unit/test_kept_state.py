"""What the operator keeps per plan between reconciles (shell/runtime.py `kept`): enough for the
next reconcile and the traffic read, not the status or managedFields (docs/performance.md)."""

from __future__ import annotations

import copy
from typing import Any

from breakeven.core import api, traffic
from breakeven.shell.runtime import Config, Scheduler, kept


def full_body(generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "breakeven.dev/v1alpha1",
        "kind": "ServingPlan",
        "metadata": {
            "name": "web",
            "namespace": "team",
            "uid": "u-1",
            "generation": generation,
            "resourceVersion": "42",
            "managedFields": [{"manager": "breakeven", "fieldsV1": {"f:status": {}}}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
        },
        "spec": {
            "model": {"name": "Qwen/Qwen3-30B-A3B"},
            "traffic": {"selector": {"model_name": "web"}},
        },
        "status": {"placements": {"Dense": {"pool": {"nodes": [f"n{i}" for i in range(500)]}}}},
    }


def never(state: Any) -> bool:
    raise AssertionError("not reconciled in this test")


class NoTraffic:
    def stale(self, state: Any) -> bool:
        return False

    async def refresh(self, states: list[Any]) -> None:
        return None


def test_the_scheduler_keeps_identity_generation_and_spec_only() -> None:
    scheduler = Scheduler(Config(), never, NoTraffic(), lambda: False)  # type: ignore[arg-type]
    body = full_body()
    scheduler.remember(copy.deepcopy(body))
    state = scheduler.plans[("team", "web")]
    assert state.body == {
        "apiVersion": "breakeven.dev/v1alpha1",
        "kind": "ServingPlan",
        "metadata": {"name": "web", "namespace": "team", "uid": "u-1", "generation": 1},
        "spec": body["spec"],
    }
    assert kept(body) == state.body


def test_a_new_generation_still_drops_the_cached_traffic_facts() -> None:
    scheduler = Scheduler(Config(), never, NoTraffic(), lambda: False)  # type: ignore[arg-type]
    scheduler.remember(full_body(1))
    state = scheduler.plans[("team", "web")]
    state.traffic = traffic.facts.Traffic(source="cached")
    scheduler.remember(full_body(1))  # a status change: same generation
    assert state.traffic is not None
    scheduler.remember(full_body(2))  # a spec change
    assert state.traffic is None and state.body["metadata"]["generation"] == 2


def test_the_traffic_read_builds_the_same_query_from_the_kept_body() -> None:
    config = Config(prometheus_url="http://prometheus:9090")
    allowed = traffic.allowed_urls(config.prometheus_url, config.allowed_prometheus_urls)
    query_full = traffic.plan_query(
        api.ServingPlan.model_validate(full_body()), config.prometheus_url, allowed
    )
    query_kept = traffic.plan_query(
        api.ServingPlan.model_validate(kept(full_body())), config.prometheus_url, allowed
    )
    assert isinstance(query_kept, traffic.TrafficQuery) and query_kept == query_full


def test_an_event_body_is_held_only_for_a_new_plan_or_a_spec_change_until_taken() -> None:
    scheduler = Scheduler(Config(), never, NoTraffic(), lambda: False)  # type: ignore[arg-type]
    listed = full_body(1)  # listed at start, with its status: the reconcile GETs it
    scheduler.remember(copy.deepcopy(listed))
    state = scheduler.plans[("team", "web")]
    assert state.event_body is None
    scheduler.remember(full_body(1))  # our own status write: nothing to hold
    assert state.event_body is None
    scheduler.remember(full_body(2))  # a spec change: held, without managedFields
    assert state.event_body is not None and state.event_body["metadata"]["generation"] == 2
    assert "managedFields" not in state.event_body["metadata"]
    newer = full_body(2)
    newer["metadata"]["resourceVersion"] = "43"
    scheduler.remember(newer)  # a later event while it waits: the newer body is held
    assert state.event_body["metadata"]["resourceVersion"] == "43"
    created = {**full_body(1), "metadata": {**full_body(1)["metadata"], "name": "new"}}
    del created["status"]
    scheduler.remember(created)  # a plan just created (ADDED, no status yet)
    assert scheduler.plans[("team", "new")].event_body is not None
