"""metrics.PlanGauge: the per-plan gauges in one dict, exposed exactly as prometheus-client's."""

from __future__ import annotations

import prometheus_client as prom
import pytest

from breakeven.shell import metrics


def exposition(registry: prom.CollectorRegistry) -> list[str]:
    return sorted(
        line for line in prom.generate_latest(registry).decode().splitlines() if line.strip()
    )


def test_a_plan_gauge_exposes_what_a_prometheus_client_gauge_does() -> None:
    ours, theirs = prom.CollectorRegistry(), prom.CollectorRegistry()
    mine = metrics.PlanGauge("x_verdict", "help text", ["plan", "criterion"], registry=ours)
    ref = prom.Gauge("x_verdict", "help text", ["plan", "criterion"], registry=theirs)
    for gauge in (mine, ref):
        gauge.labels(plan="ns/a", criterion="interconnect").set(1)
        gauge.labels("ns/a", "memory").set(0)
        gauge.labels(plan="ns/b", criterion="interconnect").set(2.5)
        gauge.labels(plan="ns/b", criterion="interconnect").set(0)  # set again: one series
        gauge.labels(plan='ns/"c"', criterion="x\ny").set(1)  # escaped like theirs
    assert exposition(ours) == exposition(theirs)
    mine.remove("ns/a", "memory")
    ref.remove("ns/a", "memory")
    assert exposition(ours) == exposition(theirs)
    assert ours.get_sample_value("x_verdict", {"plan": "ns/b", "criterion": "interconnect"}) == 0


def test_forget_plan_drops_every_series_of_the_plan_and_only_those() -> None:
    metrics.VERDICT.labels(plan="gone/p", criterion="c", verdict="Go").set(1)
    metrics.PLAN_MODE.labels(plan="gone/p", mode="Dense").set(1)
    metrics.PLAN_MODE.labels(plan="kept/p", mode="Dense").set(1)
    metrics.forget_plan("gone/p")
    sample = metrics.REGISTRY.get_sample_value
    assert sample("breakeven_criterion_verdict", {"plan": "gone/p", "criterion": "c",
                                                  "verdict": "Go"}) is None  # fmt: skip
    assert sample("breakeven_plan_mode", {"plan": "gone/p", "mode": "Dense"}) is None
    assert sample("breakeven_plan_mode", {"plan": "kept/p", "mode": "Dense"}) == 1
    metrics.forget_plan("kept/p")


def test_wrong_labels_are_refused_with_the_metric_named() -> None:
    with pytest.raises(ValueError, match="x_mode"):
        metrics.PlanGauge("x_mode", "h", ["plan", "mode"], prom.CollectorRegistry()).labels("a")
